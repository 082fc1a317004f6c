//! Sending one request to a pool: pick a backend, try it, and on a retryable failure
//! try another one, within the retry policy and budget; fail over to the backup pool
//! when the pool has no usable backend left.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, Uri};
use hyper::body::Incoming;
use tracing::debug;

use super::body::RequestBody;
use super::outcome::{self, Outcome};
use crate::balance::{PickContext, request_key_hash};
use crate::clock;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::plugin::RouteRequest;
use crate::policy::routing::Selection;
use crate::state::Snapshot;
use crate::upstream::{Backend, Pool, UpstreamClient};

/// A backend's answer, with where it came from.
pub struct Forwarded {
    pub response: Response<Incoming>,
    pub pool: Arc<Pool>,
    pub backend: Backend,
}

/// Per-request inputs that selection needs besides the pool.
pub struct Target<'a> {
    pub parts: &'a Parts,
    pub client_ip: std::net::IpAddr,
    /// Upgrade requests get exactly one attempt.
    pub single_attempt: bool,
}

/// The request as a routing plugin sees it.
fn route_request<'a>(target: &'a Target<'a>) -> RouteRequest<'a> {
    let parts = target.parts;
    let host = parts
        .uri
        .host()
        .or_else(|| {
            parts
                .headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name))
        })
        .unwrap_or("");
    RouteRequest {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        host,
        client_ip: target.client_ip,
        headers: &parts.headers,
    }
}

/// Backends already tried by this request, so no backend is tried twice.
#[derive(Default)]
struct Tried {
    low: u64,
    rest: Vec<usize>,
}

impl Tried {
    fn contains(&self, i: usize) -> bool {
        if i < 64 {
            self.low & (1 << i) != 0
        } else {
            self.rest.contains(&i)
        }
    }

    fn insert(&mut self, i: usize) {
        if i < 64 {
            self.low |= 1 << i;
        } else {
            self.rest.push(i);
        }
    }

    fn clear(&mut self) {
        self.low = 0;
        self.rest.clear();
    }
}

/// Runs the attempt loop for one request.
pub async fn forward(
    client: &UpstreamClient,
    metrics: &Metrics,
    snapshot: &Snapshot,
    first_pool: Arc<Pool>,
    target: &Target<'_>,
    body: &RequestBody,
) -> Result<Forwarded, ProxyError> {
    let retry = first_pool.config.retry.clone();
    let idempotent = is_idempotent(&target.parts.method);
    let max_attempts = if target.single_attempt {
        1
    } else {
        1 + retry.attempts
    };
    first_pool.deposit_retry_budget();

    let mut pool = first_pool;
    let mut on_backup = false;
    let mut tried = Tried::default();
    let mut attempts = 0;
    let mut last_error: Option<ProxyError> = None;

    loop {
        let now = clock::now_ms();
        let ctx = PickContext {
            hash: request_hash(&pool, target),
            now_ms: now,
            slow_start: pool.config.failover.slow_start,
        };
        let view = pool.policies.routes().then(|| route_request(target));
        let index = match pool.select(&ctx, view.as_ref(), |i| tried.contains(i)) {
            Selection::Backend(index) => Some(index),
            Selection::Exhausted => None,
            Selection::Respond { status, body } => {
                return Err(ProxyError::PolicyResponse { status, body });
            }
            Selection::Reject => return Err(ProxyError::Rejected),
            Selection::PolicyFailed => {
                return Err(ProxyError::PolicyFailed {
                    pool: Arc::clone(&pool.name),
                });
            }
        };
        let Some(index) = index else {
            if !on_backup
                && let Some(backup) = pool
                    .config
                    .failover
                    .backup
                    .as_deref()
                    .and_then(|name| snapshot.pools.get(name))
                && pool.usable_count(now) == 0
            {
                debug!(pool = %pool.name, backup = %backup.name, "failing over to backup pool");
                metrics.failover(&pool.name);
                pool = Arc::clone(backup);
                on_backup = true;
                tried.clear();
                continue;
            }
            if last_error.is_none() {
                metrics.no_backend(&pool.name);
                pool.traffic.observe(crate::rollout::Observation::Failed);
            }
            return Err(last_error.unwrap_or(ProxyError::NoBackend {
                pool: Arc::clone(&pool.name),
            }));
        };
        tried.insert(index);
        let backend = pool.backends[index].clone();
        match backend.state.breaker.try_acquire(&pool.config.breaker, now) {
            Err(_rejected) => continue,
            Ok(Some(transition)) => outcome::log_transition(&pool, &backend, transition, metrics),
            Ok(None) => {}
        }
        let Some(attempt_body) = body.for_attempt() else {
            return Err(last_error.unwrap_or(ProxyError::NoBackend {
                pool: Arc::clone(&pool.name),
            }));
        };
        attempts += 1;
        let request = upstream_request(target.parts, &backend, attempt_body);
        backend.state.requests.fetch_add(1, Ordering::Relaxed);
        backend.state.in_flight.fetch_add(1, Ordering::AcqRel);
        let started = Instant::now();
        let result = tokio::time::timeout(
            retry.per_try_timeout,
            backend.client(client).inner().request(request),
        )
        .await;
        let (outcome, error) = match result {
            Ok(Ok(response)) => {
                let status = response.status();
                if status.is_server_error() {
                    let retryable = retry.on.status(status.as_u16()) && idempotent;
                    outcome::record(
                        &pool,
                        &backend,
                        Outcome::ServerError(status.as_u16()),
                        metrics,
                    );
                    if !(retryable
                        && attempts < max_attempts
                        && body.can_replay()
                        && pool.withdraw_retry_budget())
                    {
                        return Ok(Forwarded {
                            response,
                            pool,
                            backend,
                        });
                    }
                    backend.state.in_flight.fetch_sub(1, Ordering::AcqRel);
                    last_error = Some(ProxyError::Status {
                        backend: Arc::clone(&backend.key),
                        status,
                    });
                    metrics.retry(&pool.name);
                    backoff(retry.backoff, attempts).await;
                    continue;
                }
                outcome::record(
                    &pool,
                    &backend,
                    Outcome::Success(started.elapsed()),
                    metrics,
                );
                return Ok(Forwarded {
                    response,
                    pool,
                    backend,
                });
            }
            Ok(Err(err)) if err.is_connect() => (
                Outcome::ConnectFailed,
                ProxyError::Connect {
                    backend: Arc::clone(&backend.key),
                    source: root_cause(&err),
                },
            ),
            Ok(Err(err)) => (
                Outcome::Reset,
                ProxyError::Upstream {
                    backend: Arc::clone(&backend.key),
                    source: root_cause(&err),
                },
            ),
            Err(_elapsed) => (
                Outcome::TimedOut,
                ProxyError::Timeout {
                    backend: Arc::clone(&backend.key),
                    timeout: retry.per_try_timeout,
                },
            ),
        };
        backend.state.in_flight.fetch_sub(1, Ordering::AcqRel);
        outcome::record(&pool, &backend, outcome, metrics);
        debug!(pool = %pool.name, backend = %backend.key, error = %error, attempt = attempts, "attempt failed");
        let allowed = match outcome {
            Outcome::ConnectFailed => retry.on.connect_failure,
            Outcome::Reset => retry.on.reset && idempotent,
            Outcome::TimedOut => retry.on.timeout && idempotent,
            _ => false,
        };
        last_error = Some(error);
        if !(allowed
            && attempts < max_attempts
            && body.can_replay()
            && pool.withdraw_retry_budget())
        {
            return Err(last_error.unwrap_or(ProxyError::NoBackend {
                pool: Arc::clone(&pool.name),
            }));
        }
        metrics.retry(&pool.name);
        if outcome != Outcome::ConnectFailed {
            backoff(retry.backoff, attempts).await;
        }
    }
}

/// Jittered exponential backoff: `base * 2^(n-1)`, times 0.5..1.5.
async fn backoff(base: Duration, attempt: u32) {
    if base.is_zero() {
        return;
    }
    let exp = base.saturating_mul(1 << attempt.saturating_sub(1).min(6));
    tokio::time::sleep(exp.mul_f64(0.5 + fastrand::f64())).await;
}

/// Methods whose repetition is harmless (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// The consistent-hashing key of the request, if the pool hashes.
fn request_hash(pool: &Pool, target: &Target<'_>) -> Option<u64> {
    let crate::config::BalanceKind::Hash(on) = &pool.config.balance else {
        return None;
    };
    request_key_hash(on, &target.parts.headers, Some(target.client_ip))
}

/// Builds the request for one attempt: same head, absolute URI to the backend.
fn upstream_request(
    parts: &Parts,
    backend: &Backend,
    body: crate::upstream::UpstreamBody,
) -> Request<crate::upstream::UpstreamBody> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = Uri::builder()
        .scheme(backend.scheme.clone())
        .authority(backend.request_authority(&parts.headers))
        .path_and_query(path)
        .build()
        .unwrap_or_else(|_| Uri::from_static("/"));
    let mut request = Request::new(body);
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = uri;
    *request.headers_mut() = parts.headers.clone();
    *request.version_mut() = http::Version::HTTP_11;
    request
}

/// The innermost error, which names what actually happened (refused, reset, ...).
fn root_cause(err: &hyper_util::client::legacy::Error) -> crate::upstream::client::BoxError {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().into()
}
