//! The access log: one line per finished request, under the `switchyard::access`
//! target, with stable field names (see the README's Logs section).

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;

/// What the access log says about one finished request.
#[derive(Debug, Clone, Copy)]
pub struct AccessRecord<'a> {
    pub request_id: &'a str,
    pub client: SocketAddr,
    pub method: &'a Method,
    /// The normalised path, as routing saw it.
    pub path: &'a str,
    /// The route's name, `-` when none matched.
    pub route: &'a str,
    /// The backend's `ip:port`, `-` when none was tried.
    pub backend: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    /// `complete`, `upstream-aborted` or `client-aborted`.
    pub outcome: &'static str,
}

impl AccessRecord<'_> {
    /// Emits the line (when the `switchyard::access` target is enabled).
    pub fn emit(&self) {
        tracing::info!(
            target: "switchyard::access",
            request_id = self.request_id,
            client = %self.client,
            method = %self.method,
            path = self.path,
            route = self.route,
            backend = self.backend,
            status = self.status,
            // Whole microseconds: three decimals at most, and cheap to print.
            duration_ms = self.elapsed.as_micros() as f64 / 1000.0,
            outcome = self.outcome,
        );
    }
}
