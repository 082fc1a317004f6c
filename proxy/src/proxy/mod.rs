//! The per-request pipeline: edge checks → route → pool → forward (with retries) →
//! stream back. Everything a request takes is held by its [`Completion`] and the
//! [`attempt::Attempt`] guard inside it, so it is given back on every path out.

mod access;
mod attempt;
mod body;
mod completion;
mod edge;
mod failure;
mod forward;
mod headers;
pub mod outcome;
mod upgrade;

use std::borrow::Cow;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

pub use access::{AccessRecord, AccessSink, attach_sink};
pub use attempt::Attempt;
pub use body::{BodyEnd, BodyLimits, BodyOutcome, BodyWatch, ClientBody, RequestBody, TrackedBody};
pub use completion::Completion;
pub use failure::Failure;
pub use headers::{
    REQUEST_ID, ensure_request_id, forwarded_for, is_upgrade, set_forwarded, strip_hop_by_hop,
};
pub use upgrade::Tunnels;

use crate::clock;
use crate::conn::ConnInfo;
use crate::error::{ProxyBody, ProxyError};
use crate::metrics::Metrics;
use crate::rollout::Observation;
use crate::router::Route;
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
    pub clients: Arc<crate::conn::PerClient>,
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
        // Room for the request id and the three `X-Forwarded-*` fields added below,
        // so the map grows (and rehashes) once at most.
        request.headers_mut().reserve(4);
        let request_id = ensure_request_id(request.headers_mut());
        let snapshot = self.snapshot.load_full();
        let mut done = Completion::new(&self.metrics, self.access_log, conn, &request, request_id);

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
            done.failure = Some("no-route".into());
            return done.local(ProxyError::NoRoute.response());
        };
        done.route = Some(Arc::clone(&route));
        done.attempt.route(&route);
        let Some(pool) = choose_pool(&snapshot, &route, request.headers(), &self.metrics) else {
            let pool = Arc::clone(route.target.choose(request.headers()));
            done.failure = Some("no-usable-backend".into());
            return done.local(ProxyError::NoBackend { pool }.response());
        };

        let path_and_query = forwarded_path(request.uri(), normalized.as_deref(), &route);
        let upgrade = edge::filter_upgrade(request.headers_mut(), router);
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, incoming) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers, upgrade);
        set_forwarded(
            &mut parts.headers,
            &conn.forwarded_for,
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
            connect_timeout: limits.connect_timeout,
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
                done.failure = failure_of(&e, &done.attempt);
                return done.local(e.response());
            }
        };
        done.status = response.status().as_u16();
        set_sticky_cookie(&done.attempt, &parts.headers, response.headers_mut());

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

/// Why the proxy answered a request with `error`, as the access log says it: the
/// reason the last try failed when backends were tried, else what stopped the
/// request before any was. `None` for the routing policy's own answers.
fn failure_of(error: &ProxyError, attempt: &Attempt) -> Option<Cow<'static, str>> {
    let last_try = || {
        attempt
            .failures()
            .last()
            .map(|(_, failure)| Cow::Owned(failure.to_string()))
    };
    match error {
        ProxyError::NoBackend { .. } => Some("no-usable-backend".into()),
        ProxyError::PolicyFailed { .. } => Some("routing-policy-failed".into()),
        ProxyError::Connect { .. } => last_try().or(Some("connect-error".into())),
        ProxyError::Upstream { .. } => last_try().or(Some("reset".into())),
        ProxyError::Timeout { .. } => last_try().or(Some("timeout".into())),
        ProxyError::BadResponse { .. } => last_try().or(Some("bad-response".into())),
        ProxyError::Status { status, .. } => {
            last_try().or_else(|| Some(Cow::Owned(status.as_u16().to_string())))
        }
        ProxyError::NoRoute => Some("no-route".into()),
        ProxyError::PolicyResponse { .. }
        | ProxyError::Rejected
        | ProxyError::ClientBody(_)
        | ProxyError::Edge(_) => None,
    }
}

/// The answer step of a sticky pool: an answer from a backend other than the one the
/// request's cookie named (or to a request without one) carries the cookie naming
/// the backend that answered, so the client's next requests go there.
fn set_sticky_cookie(attempt: &Attempt, request: &http::HeaderMap, answer: &mut http::HeaderMap) {
    let Some((pool, backend)) = attempt.upstream() else {
        return;
    };
    let Some(sticky) = &pool.sticky else {
        return;
    };
    let Some(index) = pool.backends.iter().position(|b| b.key == backend.key) else {
        return;
    };
    if let Some(cookie) = sticky.set_cookie_for(index, sticky.pinned(request)) {
        answer.append(header::SET_COOKIE, cookie.clone());
    }
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
