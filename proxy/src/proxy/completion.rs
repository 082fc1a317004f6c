//! The end of a request, whichever way it ends: the [`Completion`] a request holds
//! from its head to the end of its response body (or its tunnel) gives back what the
//! request took and writes its metrics and access-log line exactly once.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use tracing::info;

use super::access::AccessRecord;
use super::attempt::Attempt;
use super::body::{BodyEnd, BodyOutcome};
use super::failure::Failure;
use super::headers::REQUEST_ID;
use crate::conn::{ConnActivity, ConnInfo};
use crate::error::{ProxyBody, ProxyError};
use crate::metrics::Metrics;
use crate::router::Route;
use crate::upstream::Backend;

/// Everything to account for once a request is over: the request's [`Attempt`]
/// guard (in-flight counts, trial, retry), metrics, breaker feedback for a body
/// that failed midway, and the access-log line.
pub struct Completion {
    metrics: Arc<Metrics>,
    access_log: bool,
    conn: Arc<ConnActivity>,
    pub(super) route: Option<Arc<Route>>,
    pub(super) attempt: Attempt,
    started: Instant,
    pub(super) status: u16,
    pub(super) request_id: HeaderValue,
    method: Method,
    uri: Uri,
    version: Version,
    /// The normalised path when it differs from the request's.
    pub(super) path: Option<String>,
    /// Why the request got an error answer from the proxy itself (`refused`,
    /// `timeout`, `no-usable-backend`, ...), for the access log.
    pub(super) failure: Option<Cow<'static, str>>,
    client: SocketAddr,
    finished: bool,
}

impl Completion {
    /// Starts accounting for `request`, counted into `metrics` (and the access log
    /// when `access_log`).
    pub(super) fn new<B>(
        metrics: &Arc<Metrics>,
        access_log: bool,
        conn: &ConnInfo,
        request: &Request<B>,
        request_id: HeaderValue,
    ) -> Self {
        Self {
            metrics: Arc::clone(metrics),
            access_log,
            conn: Arc::clone(&conn.activity),
            route: None,
            attempt: Attempt::new(),
            started: Instant::now(),
            status: 0,
            request_id,
            method: request.method().clone(),
            uri: request.uri().clone(),
            version: request.version(),
            path: None,
            failure: None,
            client: conn.client,
            finished: false,
        }
    }

    /// Finishes a request the proxy answered itself.
    pub(super) fn local(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        self.status = response.status().as_u16();
        let mut response = response;
        response
            .headers_mut()
            .insert(REQUEST_ID.clone(), self.request_id.clone());
        self.finish(BodyOutcome::Complete);
        response
    }

    /// Refuses a request the client got wrong: its 4xx, a log line, the metric, and
    /// (on HTTP/1) the connection closed after the answer.
    pub(super) fn refuse(self, error: ProxyError) -> Response<ProxyBody> {
        let reason = match &error {
            ProxyError::Edge(e) => e.reason(),
            ProxyError::ClientBody(e) => e.reason(),
            _ => "other",
        };
        self.metrics.client_error(reason);
        if reason == "client_aborted" {
            tracing::debug!(request_id = self.request_id.to_str().unwrap_or("-"),
                client = %self.client, "the client went away during its request body");
        } else {
            info!(
                request_id = self.request_id.to_str().unwrap_or("-"),
                client = %self.client,
                method = %self.method,
                reason,
                status = error.status().as_u16(),
                error = %error,
                "refused a request",
            );
        }
        let mut response = error.response();
        if self.version <= Version::HTTP_11 {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        self.local(response)
    }
}

/// `127.0.0.1:9003 (charlie): 500; 127.0.0.1:9001: refused`: each failed try's
/// backend and why; `None` when no try failed.
fn failed_tries(failures: &[(Backend, Failure)]) -> Option<String> {
    if failures.is_empty() {
        return None;
    }
    let described: Vec<String> = failures
        .iter()
        .map(|(backend, failure)| match &backend.name {
            Some(name) => format!("{} ({name}): {failure}", backend.key),
            None => format!("{}: {failure}", backend.key),
        })
        .collect();
    Some(described.join("; "))
}

impl BodyEnd for Completion {
    fn finish(&mut self, outcome: BodyOutcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let metrics = &self.metrics;
        match outcome {
            BodyOutcome::UpstreamFailed => self.attempt.body_failed(metrics),
            BodyOutcome::Abandoned => metrics.client_error("client_aborted"),
            BodyOutcome::Complete => {}
        }
        metrics.in_flight().dec();
        self.conn.request_finished();
        if let Some(route) = &self.route {
            route.metrics.observe(self.status, elapsed.as_secs_f64());
        }
        if self.access_log {
            let failed = failed_tries(self.attempt.failures());
            let last = self.attempt.last_backend();
            AccessRecord {
                request_id: self.request_id.to_str().unwrap_or("-"),
                client: self.client,
                method: &self.method,
                path: self.path.as_deref().unwrap_or(self.uri.path()),
                route: self.route.as_ref().map_or("-", |r| &r.name),
                backend: last.map_or("-", |b| &b.key),
                backend_name: last.and_then(|b| b.name.as_deref()),
                status: self.status,
                failure: self.failure.as_deref(),
                tries: (self.attempt.tries() > 1).then_some(self.attempt.tries()),
                failed_tries: failed.as_deref(),
                elapsed,
                outcome: match outcome {
                    BodyOutcome::Complete => "complete",
                    BodyOutcome::UpstreamFailed => "upstream-aborted",
                    BodyOutcome::Abandoned => "client-aborted",
                },
            }
            .emit();
        }
        self.attempt.release();
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.finish(BodyOutcome::Abandoned);
    }
}
