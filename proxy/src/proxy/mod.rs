//! The per-request pipeline: edge checks → route → pool → forward (with retries) →
//! stream back. Everything a request takes is held by its [`Completion`] and the
//! [`attempt::Attempt`] guard inside it, so it is given back on every path out.

mod access;
mod attempt;
mod body;
mod edge;
mod forward;
mod headers;
pub mod outcome;
mod upgrade;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::info;

pub use access::AccessRecord;
pub use attempt::Attempt;
pub use body::{
    BodyEnd, BodyLimits, BodyOutcome, BodyWatch, ClientBody, ClientBodyError, RequestBody,
    TrackedBody,
};
pub use edge::EdgeError;
pub use headers::{REQUEST_ID, ensure_request_id, is_upgrade, set_forwarded, strip_hop_by_hop};
pub use upgrade::Tunnels;

use crate::clock;
use crate::error::{ProxyBody, ProxyError};
use crate::metrics::Metrics;
use crate::rollout::Observation;
use crate::router::Route;
use crate::server::{ConnActivity, ConnPermit};
use crate::state::Snapshot;
use crate::traffic::RouteTarget;
use crate::upstream::{Pool, UpstreamClient};

/// Shared by every connection: the live snapshot, the upstream client and metrics.
#[derive(Debug)]
pub struct Proxy {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub client: UpstreamClient,
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
    /// Upgraded connections, so shutdown can wait for them and then close them.
    pub tunnels: Tunnels,
    /// Open connections per client address, for `limits.max_connections_per_ip`.
    pub clients: Arc<crate::server::PerClient>,
}

/// What the pipeline knows about the client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub tls: bool,
    pub activity: Arc<ConnActivity>,
    /// The connection's place under the connection caps; an upgraded connection
    /// keeps it for as long as its tunnel lives.
    pub permit: Arc<ConnPermit>,
}

impl Proxy {
    /// Handles one request end to end. Never fails: every error becomes a response.
    pub async fn serve(
        self: &Arc<Self>,
        conn: &ConnInfo,
        mut request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        conn.activity.request_started();
        self.metrics.in_flight().inc();
        let request_id = ensure_request_id(request.headers_mut());
        let snapshot = self.snapshot.load_full();
        let mut done = Completion::new(self, conn, &request, request_id);

        // Edge rules: nothing below runs for a request that breaks them.
        let limits = &snapshot.config.limits;
        let (authority, normalized) = match edge::check(&request, limits) {
            Ok(checked) => (
                checked.authority,
                match checked.path {
                    Cow::Borrowed(_) => None,
                    Cow::Owned(path) => Some(path),
                },
            ),
            Err(e) => return done.refuse(e.into()),
        };
        done.path = normalized.clone();
        let path = normalized.as_deref().unwrap_or(request.uri().path());
        let host = authority
            .as_ref()
            .and_then(|h| h.to_str().ok())
            .map(strip_port);

        // Route, then the pool (a split may spill to its other side).
        let router = snapshot.router(&conn.listener);
        let Some(route) = router.and_then(|r| r.route(host, path)).cloned() else {
            return done.local(ProxyError::NoRoute.response());
        };
        done.route = Some(Arc::clone(&route));
        done.attempt.route(&route);
        let Some(pool) = choose_pool(&snapshot, &route, request.headers(), &self.metrics) else {
            let pool = Arc::clone(route.target.choose(request.headers()));
            return done.local(ProxyError::NoBackend { pool }.response());
        };

        let path_and_query = forwarded_path(request.uri(), normalized.as_deref(), &route);
        let upgrade = edge::filter_upgrade(request.headers_mut(), router);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, incoming) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        set_forwarded(
            &mut parts.headers,
            conn.client.ip(),
            if conn.tls { "https" } else { "http" },
            authority.as_ref(),
        );
        if let Some(authority) = &authority {
            parts.headers.insert(header::HOST, authority.clone());
        }

        let body_limits = BodyLimits {
            idle: limits.body_idle_timeout,
            total: limits.body_timeout,
            max_bytes: limits.max_body_bytes,
            buffer: pool.config.retry.buffer_body,
        };
        let body = match RequestBody::prepare(incoming, &parts.headers, body_limits).await {
            Ok(body) => body,
            Err(e) => return done.refuse(e.into()),
        };
        let target = forward::Target {
            parts: &parts,
            client_ip: conn.client.ip(),
            single_attempt: upgrade,
            path: normalized.as_deref().unwrap_or(parts.uri.path()),
            host: host.unwrap_or(""),
            path_and_query,
            max_answer_head: limits.max_header_bytes,
        };
        let forwarded = forward::forward(
            &self.client,
            &self.metrics,
            &snapshot,
            &mut done.attempt,
            pool,
            &target,
            &body,
        )
        .await;
        let mut response = match forwarded {
            Ok(response) => response,
            Err(e) if e.is_client_error() => return done.refuse(e),
            Err(e) => {
                tracing::debug!(request_id = ?done.request_id, error = %e, "request failed");
                return done.local(e.response());
            }
        };
        done.status = response.status().as_u16();

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        strip_hop_by_hop(response.headers_mut(), switching);
        response
            .headers_mut()
            .insert(REQUEST_ID.clone(), done.request_id.clone());
        if switching && let Some(client_upgrade) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut response);
            self.tunnels.spawn(
                client_upgrade,
                backend_upgrade,
                done,
                Arc::clone(&conn.permit),
                limits.tunnel_idle_timeout,
            );
            return response.map(|_| crate::error::full_body(bytes::Bytes::new()));
        }
        response.map(|incoming| TrackedBody::new(incoming, done).boxed())
    }
}

/// The pool for this request. During a split (a canary or a rollout step), a side
/// with no usable backend hands its request to a side that has one: the client
/// does not pay for it, while the side still sees it as a failure (so a rollout
/// guard rolls back) and the spill is counted.
fn choose_pool(
    snapshot: &Snapshot,
    route: &Route,
    headers: &http::HeaderMap,
    metrics: &Metrics,
) -> Option<Arc<Pool>> {
    let name = route.target.choose(headers);
    let pool = snapshot.pools.get(name)?;
    let RouteTarget::Split { pools, .. } = &route.target else {
        return Some(Arc::clone(pool));
    };
    let now = clock::now_ms();
    if pool.usable_count(now) > 0 {
        return Some(Arc::clone(pool));
    }
    let usable_side = |with_weight: bool| {
        pools
            .iter()
            .filter(|(p, w)| p != name && (*w > 0 || !with_weight))
            .filter_map(|(p, _)| snapshot.pools.get(p))
            .find(|p| p.usable_count(now) > 0)
    };
    let Some(other) = usable_side(true).or_else(|| usable_side(false)) else {
        return Some(Arc::clone(pool));
    };
    pool.traffic.observe(Observation::Failed);
    pool.traffic.spill();
    metrics.spill(&route.name, &pool.name, &other.name);
    Some(Arc::clone(other))
}

/// What goes on the backend's request line: the normalised path (or, with
/// `forward_path = "original"`, the client's own bytes) and the query untouched.
fn forwarded_path(uri: &Uri, normalized: Option<&str>, route: &Route) -> PathAndQuery {
    let original = uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let Some(normalized) = normalized.filter(|_| !route.forward_original_path) else {
        return original;
    };
    let rebuilt = match original.query() {
        Some(query) => format!("{normalized}?{query}"),
        None => normalized.to_string(),
    };
    PathAndQuery::try_from(rebuilt).unwrap_or(original)
}

/// `host` of `host:port` (IPv6 literals keep their brackets).
fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .split_once(']')
            .map_or(authority, |(h, _)| &authority[..h.len() + 1]);
    }
    authority
        .rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(authority, |(h, _)| h)
}

/// Everything to account for once a request is over: the request's [`Attempt`]
/// guard (in-flight counts, trial, retry), metrics, breaker feedback for a body
/// that failed midway, and the access-log line.
pub struct Completion {
    proxy: Arc<Proxy>,
    conn: Arc<ConnActivity>,
    route: Option<Arc<Route>>,
    attempt: Attempt,
    started: Instant,
    status: u16,
    request_id: HeaderValue,
    method: Method,
    uri: Uri,
    version: Version,
    /// The normalised path when it differs from the request's.
    path: Option<String>,
    client: SocketAddr,
    finished: bool,
}

impl Completion {
    fn new<B>(
        proxy: &Arc<Proxy>,
        conn: &ConnInfo,
        request: &Request<B>,
        request_id: HeaderValue,
    ) -> Self {
        Self {
            proxy: Arc::clone(proxy),
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
            client: conn.client,
            finished: false,
        }
    }

    /// Finishes a request the proxy answered itself.
    fn local(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
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
    fn refuse(self, error: ProxyError) -> Response<ProxyBody> {
        let reason = match &error {
            ProxyError::Edge(e) => e.reason(),
            ProxyError::ClientBody(e) => e.reason(),
            _ => "other",
        };
        self.proxy.metrics.client_error(reason);
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

impl BodyEnd for Completion {
    fn finish(&mut self, outcome: BodyOutcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let metrics = &self.proxy.metrics;
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
        if self.proxy.access_log {
            AccessRecord {
                request_id: self.request_id.to_str().unwrap_or("-"),
                client: self.client,
                method: &self.method,
                path: self.path.as_deref().unwrap_or(self.uri.path()),
                route: self.route.as_ref().map_or("-", |r| &r.name),
                backend: self.attempt.upstream().map_or("-", |(_, b)| &b.key),
                status: self.status,
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
