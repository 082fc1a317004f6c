//! The per-request pipeline: route → pool → forward (with retries) → stream back.

mod body;
mod forward;
mod headers;
pub mod outcome;
mod upgrade;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::info;

pub use body::{BodyEnd, BodyOutcome, RequestBody, TrackedBody};
pub use headers::{REQUEST_ID, ensure_request_id, is_upgrade, set_forwarded, strip_hop_by_hop};

use crate::error::{ProxyBody, ProxyError};
use crate::metrics::Metrics;
use crate::router::Route;
use crate::server::ConnActivity;
use crate::state::Snapshot;
use crate::upstream::{Backend, Pool, UpstreamClient};
use outcome::Outcome;

/// Shared by every connection: the live snapshot, the upstream client and metrics.
#[derive(Debug)]
pub struct Proxy {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    pub client: UpstreamClient,
    pub metrics: Arc<Metrics>,
    pub access_log: bool,
}

/// What the pipeline knows about the client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub client: SocketAddr,
    pub tls: bool,
    pub activity: Arc<ConnActivity>,
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
        let mut done = Completion {
            proxy: Arc::clone(self),
            conn: Arc::clone(&conn.activity),
            route: None,
            upstream: None,
            started: Instant::now(),
            status: 0,
            request_id: request_id.clone(),
            method: request.method().clone(),
            uri: request.uri().clone(),
            client: conn.client,
            finished: false,
        };

        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().host());
        let route = snapshot
            .router(&conn.listener)
            .and_then(|router| router.route(host, request.uri().path()))
            .cloned();
        let Some(route) = route else {
            return done.local(ProxyError::NoRoute.response());
        };
        done.route = Some(Arc::clone(&route));
        let pool_name = route.target.choose(request.headers());
        let Some(pool) = snapshot.pools.get(pool_name).cloned() else {
            return done.local(
                ProxyError::NoBackend {
                    pool: Arc::clone(pool_name),
                }
                .response(),
            );
        };

        let upgrade = is_upgrade(request.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));
        let (mut parts, incoming) = request.into_parts();
        let original_host = parts.headers.get(header::HOST).cloned().or_else(|| {
            parts
                .uri
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        strip_hop_by_hop(&mut parts.headers, upgrade);
        set_forwarded(
            &mut parts.headers,
            conn.client.ip(),
            if conn.tls { "https" } else { "http" },
            original_host.as_ref(),
        );
        if let Some(host) = &original_host {
            parts.headers.insert(header::HOST, host.clone());
        }

        let body =
            match RequestBody::prepare(incoming, &parts.headers, pool.config.retry.buffer_body)
                .await
            {
                Ok(body) => body,
                Err(e) => return done.local(e.response()),
            };
        let target = forward::Target {
            parts: &parts,
            client_ip: conn.client.ip(),
            single_attempt: upgrade,
        };
        let forwarded =
            forward::forward(&self.client, &self.metrics, &snapshot, pool, &target, &body).await;
        let forwarded = match forwarded {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(request_id = ?request_id, error = %e, "request failed");
                return done.local(e.response());
            }
        };
        let forward::Forwarded {
            mut response,
            pool,
            backend,
        } = forwarded;
        done.status = response.status().as_u16();
        done.upstream = Some((pool, backend));

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        strip_hop_by_hop(response.headers_mut(), switching);
        response
            .headers_mut()
            .insert(REQUEST_ID.clone(), request_id);
        if switching && let Some(client_upgrade) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut response);
            upgrade::spawn_tunnel(client_upgrade, backend_upgrade, done);
            return response.map(|_| crate::error::full_body(bytes::Bytes::new()));
        }
        response.map(|incoming| TrackedBody::new(incoming, done).boxed())
    }
}

/// Everything to account for once a request is over: in-flight counters, metrics,
/// breaker feedback for a body that failed midway, and the access-log line.
pub struct Completion {
    proxy: Arc<Proxy>,
    conn: Arc<ConnActivity>,
    route: Option<Arc<Route>>,
    upstream: Option<(Arc<Pool>, Backend)>,
    started: Instant,
    status: u16,
    request_id: HeaderValue,
    method: Method,
    uri: Uri,
    client: SocketAddr,
    finished: bool,
}

impl Completion {
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
}

impl BodyEnd for Completion {
    fn finish(&mut self, outcome: BodyOutcome) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.started.elapsed();
        let metrics = &self.proxy.metrics;
        metrics.in_flight().dec();
        self.conn.request_finished();
        if let Some((pool, backend)) = &self.upstream {
            backend.state.in_flight.fetch_sub(1, Ordering::AcqRel);
            if outcome == BodyOutcome::UpstreamFailed {
                outcome::record(pool, backend, Outcome::BodyFailed, metrics);
            }
        }
        if let Some(route) = &self.route {
            route.metrics.observe(self.status, elapsed.as_secs_f64());
        }
        if self.proxy.access_log {
            info!(
                target: "switchyard::access",
                request_id = self.request_id.to_str().unwrap_or("-"),
                client = %self.client,
                method = %self.method,
                path = self.uri.path(),
                route = self.route.as_ref().map_or("-", |r| &r.name),
                backend = self.upstream.as_ref().map_or("-", |(_, b)| &b.key),
                status = self.status,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                outcome = match outcome {
                    BodyOutcome::Complete => "complete",
                    BodyOutcome::UpstreamFailed => "upstream-aborted",
                    BodyOutcome::Abandoned => "client-aborted",
                },
            );
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.finish(BodyOutcome::Abandoned);
    }
}
