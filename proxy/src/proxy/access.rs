//! The access log: one line per finished request, under the `switchyard::access`
//! target, with stable field names (see the README's Logs section).
//!
//! The line goes through `tracing` unless the binary attached an [`AccessSink`]
//! ([`attach_sink`]): the sink writes the same line without `tracing`'s field
//! visitors and formatter, which cost more than the rest of the line's journey.
//! Either way the `switchyard::access` target's level filter decides first, and a
//! line that is filtered out is never formatted.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use http::Method;

/// Writes finished access lines directly, in the shape the installed log output
/// would have given them; the log output belongs to the binary, above this layer,
/// so it hands one in at start.
pub trait AccessSink: Send + Sync {
    /// Formats and queues the line of `record`.
    fn write(&self, record: &AccessRecord<'_>);
}

/// The sink [`AccessRecord::emit`] writes to, when one is attached.
static SINK: OnceLock<Box<dyn AccessSink>> = OnceLock::new();

/// Sends every later access line to `sink` instead of `tracing`; only the first
/// sink counts. Returns whether this one was attached.
pub fn attach_sink(sink: Box<dyn AccessSink>) -> bool {
    SINK.set(sink).is_ok()
}

/// Whether the `switchyard::access` target is enabled at `info` for the current
/// subscriber.
fn enabled() -> bool {
    tracing::enabled!(target: "switchyard::access", tracing::Level::INFO)
}

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
    /// Emits the line (when the `switchyard::access` target is enabled), through
    /// the attached [`AccessSink`] if there is one, else through `tracing`.
    pub fn emit(&self) {
        match SINK.get() {
            Some(sink) => self.emit_to(&**sink),
            None => self.emit_traced(),
        }
    }

    /// Writes the line to `sink` when the `switchyard::access` target is enabled.
    pub fn emit_to(&self, sink: &dyn AccessSink) {
        if enabled() {
            sink.write(self);
        }
    }

    /// Emits the line as a `tracing` event: the reference shape of every sink.
    pub fn emit_traced(&self) {
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
