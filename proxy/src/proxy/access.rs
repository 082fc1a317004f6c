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
    /// The `ip:port` of the backend that answered or was tried last, `-` when none was.
    pub backend: &'a str,
    /// That backend's name, when it has one.
    pub backend_name: Option<&'a str>,
    pub status: u16,
    /// Why the proxy answered with an error itself (`refused`, `timeout`, ...).
    pub failure: Option<&'a str>,
    /// How many backends were tried, when more than one.
    pub tries: Option<u32>,
    /// Every try that failed and why (`127.0.0.1:9003 (charlie): 500`).
    pub failed_tries: Option<&'a str>,
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
            backend_name = self.backend_name,
            status = self.status,
            failure = self.failure,
            tries = self.tries,
            failed_tries = self.failed_tries,
            // Whole microseconds: three decimals at most, and cheap to print.
            duration_ms = crate::clock::millis(self.elapsed),
            outcome = self.outcome,
        );
    }
}
