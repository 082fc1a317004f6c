//! Sending one request to a pool, as named steps around the request's [`Attempt`]
//! guard: **pick** a backend, **admit** it (breaker, in-flight), **send**, **judge**
//! the answer, and on a retryable failure **retry** on another backend within the
//! retry policy and budget; fail over to the backup pool when the pool has no usable
//! backend left.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, header};
use tracing::debug;

use super::attempt::Attempt;
use super::body::{BodyWatch, ClientBodyError, RequestBody};
use super::outcome::{self, Outcome};
use crate::balance::{PickContext, request_key_hash};
use crate::clock;
use crate::config::RetryConfig;
use crate::error::ProxyError;
use crate::metrics::Metrics;
use crate::plugin::RouteRequest;
use crate::policy::routing::Selection;
use crate::state::Snapshot;
use crate::upstream::{
    Backend, ClientError, Pool, ResponseBody, UpstreamClient, capture_connection,
};

/// `HTTP/1.1 200 OK\r\n` and the final `\r\n`, as counted against the head limit.
const STATUS_LINE: usize = 19;

/// How often a per-try timeout that fired while the client was still sending its
/// body checks again: the backend is not late while it waits for the client.
const CLIENT_RECHECK: Duration = Duration::from_millis(100);

/// Per-request inputs that selection needs besides the pool.
pub struct Target<'a> {
    pub parts: &'a Parts,
    pub client_ip: std::net::IpAddr,
    /// Upgrade requests get exactly one attempt.
    pub single_attempt: bool,
    /// The normalised path, as routing plugins see it.
    pub path: &'a str,
    /// The host the request is for (no port), as routing plugins see it.
    pub host: &'a str,
    /// What the backend's request line carries (normalised or original path, and query).
    pub path_and_query: PathAndQuery,
    /// Largest answer head relayed (`limits.max_header_bytes`).
    pub max_answer_head: usize,
}

/// The request as a routing plugin sees it.
fn route_request<'a>(target: &'a Target<'a>) -> RouteRequest<'a> {
    let parts = target.parts;
    RouteRequest {
        method: parts.method.as_str(),
        path: target.path,
        host: target.host,
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

/// What a send step came back with.
enum Sent {
    Response(Response<ResponseBody>),
    Error(ClientError),
    TimedOut,
}

/// What the judge step made of a send.
enum Judged {
    /// A usable answer (not 5xx).
    Answer(Response<ResponseBody>),
    /// A 5xx answer: relayed unless it is retried.
    ServerError(Response<ResponseBody>),
    /// The backend failed (connect, reset, timeout, an invalid answer).
    Failed(Outcome, ProxyError),
    /// The client's body broke, stalled or was too large: not the backend's doing.
    ClientFault(ClientBodyError),
}

/// Runs the attempt loop for one request; `attempt` holds everything it takes.
pub async fn forward(
    client: &UpstreamClient,
    metrics: &Metrics,
    snapshot: &Snapshot,
    attempt: &mut Attempt,
    first_pool: Arc<Pool>,
    target: &Target<'_>,
    body: &RequestBody,
) -> Result<Response<ResponseBody>, ProxyError> {
    let retry = first_pool.config.retry.clone();
    let idempotent = is_idempotent(&target.parts.method);
    let max_tries = if target.single_attempt {
        1
    } else {
        1 + retry.attempts
    };
    first_pool.deposit_retry_budget();

    let mut pool = first_pool;
    attempt.enter(&pool);
    let mut on_backup = false;
    let mut tried = Tried::default();
    let mut last_error: Option<ProxyError> = None;

    loop {
        let now = clock::now_ms();
        // Pick.
        let Some(index) = pick(&pool, target, &tried, now)? else {
            if !on_backup && let Some(backup) = usable_backup(&pool, snapshot, now) {
                debug!(pool = %pool.name, backup = %backup.name, "failing over to backup pool");
                metrics.failover(&pool.name);
                pool = backup;
                attempt.enter(&pool);
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

        // Admit.
        match attempt.admit(&pool, &backend, now) {
            Err(_rejected) => continue,
            Ok(Some(transition)) => outcome::log_transition(&pool, &backend, transition, metrics),
            Ok(None) => {}
        }
        let Some(attempt_body) = body.for_attempt() else {
            attempt.end_try();
            return Err(last_error.unwrap_or(ProxyError::NoBackend {
                pool: Arc::clone(&pool.name),
            }));
        };

        // Send.
        let started = Instant::now();
        let mut request = upstream_request(target, &backend, attempt_body);
        let connection = capture_connection(&mut request);
        let sent = send(
            backend.client(client),
            request,
            retry.per_try_timeout,
            body.watch(),
        )
        .await;

        // Judge.
        let judged = judge(sent, &backend, &retry, target, body.watch());
        if let Judged::Failed(Outcome::BadResponse, _) = &judged
            && let Some(connected) = connection.connection_metadata().as_ref()
        {
            // Its framing cannot be trusted: never reuse the connection.
            connected.poison();
        }
        let (outcome, error) = match judged {
            Judged::Answer(response) => {
                attempt.settle(Outcome::Success(started.elapsed()), metrics);
                return Ok(response);
            }
            Judged::ClientFault(error) => {
                attempt.client_fault();
                return Err(ProxyError::ClientBody(error));
            }
            Judged::ServerError(response) => {
                let status = response.status();
                attempt.settle(Outcome::ServerError(status.as_u16()), metrics);
                let retryable = retry.on.status(status.as_u16()) && idempotent;
                if !(retryable
                    && attempt.tries() < max_tries
                    && body.can_replay()
                    && attempt.take_retry(&pool))
                {
                    return Ok(response);
                }
                (
                    Outcome::ServerError(status.as_u16()),
                    ProxyError::Status {
                        backend: Arc::clone(&backend.key),
                        status,
                    },
                )
            }
            Judged::Failed(outcome, error) => {
                attempt.settle(outcome, metrics);
                debug!(pool = %pool.name, backend = %backend.key, error = %error, attempt = attempt.tries(), "attempt failed");
                let allowed = match outcome {
                    Outcome::ConnectFailed => retry.on.connect_failure,
                    Outcome::Reset | Outcome::BadResponse => retry.on.reset && idempotent,
                    Outcome::TimedOut => retry.on.timeout && idempotent,
                    _ => false,
                };
                if !(allowed
                    && attempt.tries() < max_tries
                    && body.can_replay()
                    && attempt.take_retry(&pool))
                {
                    return Err(error);
                }
                (outcome, error)
            }
        };

        // Retry.
        attempt.end_try();
        last_error = Some(error);
        metrics.retry(&pool.name);
        if outcome != Outcome::ConnectFailed {
            backoff(retry.backoff, attempt.tries()).await;
        }
    }
}

/// The pick step: a backend index not tried yet, `None` when the pool has none
/// usable, or the routing plugin's own answer as an error.
fn pick(
    pool: &Pool,
    target: &Target<'_>,
    tried: &Tried,
    now_ms: u64,
) -> Result<Option<usize>, ProxyError> {
    let ctx = PickContext {
        hash: request_hash(pool, target),
        now_ms,
        slow_start: pool.config.failover.slow_start,
    };
    let view = pool.policies.routes().then(|| route_request(target));
    match pool.select(&ctx, view.as_ref(), |i| tried.contains(i)) {
        Selection::Backend(index) => Ok(Some(index)),
        Selection::Exhausted => Ok(None),
        Selection::Respond { status, body } => Err(ProxyError::PolicyResponse { status, body }),
        Selection::Reject => Err(ProxyError::Rejected),
        Selection::PolicyFailed => Err(ProxyError::PolicyFailed {
            pool: Arc::clone(&pool.name),
        }),
    }
}

/// The backup pool to fail over to, when this pool has nothing usable.
fn usable_backup(pool: &Pool, snapshot: &Snapshot, now_ms: u64) -> Option<Arc<Pool>> {
    let backup = snapshot
        .pools
        .get(pool.config.failover.backup.as_deref()?)?;
    (pool.usable_count(now_ms) == 0).then(|| Arc::clone(backup))
}

/// The send step: the request with its per-try timeout. The timeout only runs
/// while the backend has what it needs: while the client is still sending its body
/// (or within `per_try` of it finishing), the backend is not late.
async fn send(
    client: &UpstreamClient,
    request: Request<crate::upstream::UpstreamBody>,
    per_try: Duration,
    watch: Option<&Arc<BodyWatch>>,
) -> Sent {
    let response = client.request(request);
    tokio::pin!(response);
    let mut deadline = tokio::time::Instant::now() + per_try;
    loop {
        tokio::select! {
            result = &mut response => {
                return match result {
                    Ok(response) => Sent::Response(response),
                    Err(error) => Sent::Error(error),
                };
            }
            () = tokio::time::sleep_until(deadline) => {
                let Some(watch) = watch else { return Sent::TimedOut };
                if watch.awaiting_client() {
                    deadline = tokio::time::Instant::now() + CLIENT_RECHECK;
                    continue;
                }
                // Still sending (neither waiting on the client nor finished): late
                // only when the backend has not taken a byte for `per_try`.
                let ago = watch
                    .finished_ms_ago()
                    .unwrap_or_else(|| watch.progress_ms_ago());
                if ago >= per_try {
                    return Sent::TimedOut;
                }
                deadline = tokio::time::Instant::now() + (per_try - ago);
            }
        }
    }
}

/// The judge step: whose fault, and whether the answer may be relayed at all.
fn judge(
    sent: Sent,
    backend: &Backend,
    retry: &RetryConfig,
    target: &Target<'_>,
    watch: Option<&Arc<BodyWatch>>,
) -> Judged {
    match sent {
        Sent::Response(response) => {
            if let Err(reason) =
                check_answer(&response, target.single_attempt, target.max_answer_head)
            {
                return Judged::Failed(
                    Outcome::BadResponse,
                    ProxyError::BadResponse {
                        backend: Arc::clone(&backend.key),
                        reason,
                    },
                );
            }
            if response.status().is_server_error() {
                Judged::ServerError(response)
            } else {
                Judged::Answer(response)
            }
        }
        Sent::Error(error) => {
            if let Some(fault) = watch.and_then(|w| w.failure()) {
                return Judged::ClientFault(fault);
            }
            let source = root_cause(&error);
            let backend = Arc::clone(&backend.key);
            if error.is_connect() {
                Judged::Failed(
                    Outcome::ConnectFailed,
                    ProxyError::Connect { backend, source },
                )
            } else if is_invalid_answer(&error) {
                Judged::Failed(
                    Outcome::BadResponse,
                    ProxyError::Upstream { backend, source },
                )
            } else {
                Judged::Failed(Outcome::Reset, ProxyError::Upstream { backend, source })
            }
        }
        Sent::TimedOut => Judged::Failed(
            Outcome::TimedOut,
            ProxyError::Timeout {
                backend: Arc::clone(&backend.key),
                timeout: retry.per_try_timeout,
            },
        ),
    }
}

/// Framing and status rules an answer must meet to be relayed (RFC 9112 §6):
/// `Transfer-Encoding` exactly `chunked` and never with `Content-Length`, a status
/// from 100 to 599, `101` only to a request that asked to upgrade, and a head no
/// larger than `limits.max_header_bytes` (hyper's read buffer bounds it only roughly).
fn check_answer(
    response: &Response<ResponseBody>,
    upgrade: bool,
    max_head: usize,
) -> Result<(), &'static str> {
    let status = response.status();
    if status.as_u16() > 599 {
        return Err("status code outside 100-599");
    }
    if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err("101 Switching Protocols to a request that did not ask to upgrade");
    }
    let headers = response.headers();
    let head: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if head + STATUS_LINE > max_head {
        return Err("response head larger than limits.max_header_bytes");
    }
    let mut codings = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .map(|t| t.trim_matches([' ', '\t']));
    if let Some(first) = codings.next() {
        if !first.eq_ignore_ascii_case("chunked") || codings.next().is_some() {
            return Err("Transfer-Encoding other than a single chunked");
        }
        if headers.contains_key(header::CONTENT_LENGTH) {
            return Err("both Transfer-Encoding and Content-Length");
        }
    }
    Ok(())
}

/// hyper could not parse the answer: a bad status line, a head over the limits,
/// invalid or conflicting lengths, HTTP/0.9.
fn is_invalid_answer(error: &ClientError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return h.is_parse() || h.is_parse_status() || h.is_parse_too_large();
        }
        cause = e.source();
    }
    false
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
    target: &Target<'_>,
    backend: &Backend,
    body: crate::upstream::UpstreamBody,
) -> Request<crate::upstream::UpstreamBody> {
    let parts = target.parts;
    let uri = Uri::builder()
        .scheme(backend.scheme.clone())
        .authority(backend.request_authority(&parts.headers))
        .path_and_query(target.path_and_query.clone())
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
fn root_cause(err: &ClientError) -> crate::upstream::client::BoxError {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().into()
}
