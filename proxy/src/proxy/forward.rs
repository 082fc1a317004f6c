//! Sending one request to a pool, as named steps around the request's [`Attempt`]
//! guard: **pick** a backend (failing over to the backup pool when the pool has no
//! usable backend left), **admit** it (breaker, in-flight), **send**, **judge** the
//! answer, the **retry decision** (policy, replayable body, budget) and the **retry**
//! on another backend. [`forward`] is the loop; each step is a method of [`Steps`],
//! tested on its own in `forward/tests.rs`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Response, StatusCode, header};
use tracing::debug;

use super::attempt::Attempt;
use super::body::{BodyWatch, RequestBody};
use super::failure::Failure;
use crate::balance::{PickContext, request_key_hash};
use crate::clock;
use crate::config::RetryConfig;
use crate::error::{BoxError, ClientBodyError, ProxyError};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::plugin::RouteRequest;
use crate::policy::routing::{self, Selection};
use crate::rollout::Observation;
use crate::state::Snapshot;
use crate::upstream::{
    Backend, ClientError, H1Error, OutgoingHead, Pool, ResponseBody, UpstreamBody, UpstreamClient,
    is_idempotent, log_transition,
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
    /// Longest TCP (and TLS) connect to a backend (`limits.connect_timeout`).
    pub connect_timeout: Duration,
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
    /// The backend failed (connect, reset, timeout, an invalid answer), for this reason.
    Failed(Outcome, Failure, ProxyError),
    /// The client's body broke, stalled or was too large: not the backend's doing.
    ClientFault(ClientBodyError),
}

/// Runs one request through its pool: pick a backend, admit it, send, judge the
/// answer, and retry on another backend (or fail over to the backup pool) until an
/// answer can be relayed or nothing is left to try. `attempt` holds everything the
/// request takes, so every way out (a return, an error, or this future dropped
/// because the client went away) gives it back.
pub async fn forward(
    client: &UpstreamClient,
    metrics: &Metrics,
    snapshot: &Snapshot,
    attempt: &mut Attempt,
    first_pool: Arc<Pool>,
    target: &Target<'_>,
    body: &RequestBody,
) -> Result<Response<ResponseBody>, ProxyError> {
    let steps = Steps {
        client,
        metrics,
        snapshot,
        target,
        body,
        rules: RetryRules::new(&first_pool.config.retry, target),
    };
    first_pool.deposit_retry_budget();
    attempt.enter(&first_pool);
    let mut search = Search::new(first_pool);
    loop {
        let now = clock::now_ms();
        let Some(backend) = steps.pick(&mut search, attempt, now)? else {
            continue; // Failed over: pick again in the backup pool.
        };
        if !steps.admit(attempt, &search.pool, &backend, now) {
            continue;
        }
        let Some(attempt_body) = body.for_attempt() else {
            attempt.end_try();
            return Err(search.give_up());
        };
        let started = Instant::now();
        let judged = steps.exchange(&backend, attempt_body).await;
        match steps.decide(judged, started, attempt, &search.pool, &backend) {
            Decision::Relay(response) => return Ok(response),
            Decision::Fail(error) => return Err(error),
            Decision::Retry(outcome, error) => {
                steps.retry(&mut search, attempt, outcome, error).await;
            }
        }
    }
}

/// What every step of one request reads: the client, the live snapshot (for a
/// backup pool), the request and its body, and its retry rules.
struct Steps<'a> {
    client: &'a UpstreamClient,
    metrics: &'a Metrics,
    snapshot: &'a Snapshot,
    target: &'a Target<'a>,
    body: &'a RequestBody,
    rules: RetryRules,
}

/// Where the search for an answering backend stands: the pool the request is on
/// (its own, or the backup once it failed over), the backends tried there, and the
/// error of the last failed try, returned if nothing else answers.
struct Search {
    pool: Arc<Pool>,
    on_backup: bool,
    tried: Tried,
    last_error: Option<ProxyError>,
}

impl Search {
    fn new(pool: Arc<Pool>) -> Self {
        Self {
            pool,
            on_backup: false,
            tried: Tried::default(),
            last_error: None,
        }
    }

    /// The error to return when nothing is left to try: the last try's, or that the
    /// pool had no usable backend at all.
    fn give_up(&mut self) -> ProxyError {
        self.last_error.take().unwrap_or(ProxyError::NoBackend {
            pool: Arc::clone(&self.pool.name),
        })
    }
}

/// What the pool's retry policy allows this request.
#[derive(Debug, Clone)]
struct RetryRules {
    retry: RetryConfig,
    /// Whether the method may be repeated (RFC 9110 §9.2.2).
    idempotent: bool,
    /// The first try and its retries; upgrade requests get exactly one.
    max_tries: u32,
}

impl RetryRules {
    fn new(retry: &RetryConfig, target: &Target<'_>) -> Self {
        Self {
            retry: retry.clone(),
            idempotent: is_idempotent(&target.parts.method),
            max_tries: if target.single_attempt {
                1
            } else {
                1 + retry.attempts
            },
        }
    }

    /// Whether a try that ended in `outcome`, the `tries`th, may be retried as far as
    /// the policy goes; the body must still be replayable and the pool's budget must
    /// grant the retry.
    fn allow(&self, outcome: Outcome, tries: u32) -> bool {
        let on = &self.retry.on;
        let by_outcome = match outcome {
            Outcome::ServerError(status) => on.status(status) && self.idempotent,
            Outcome::ConnectFailed => on.connect_failure,
            Outcome::Reset | Outcome::BadResponse => on.reset && self.idempotent,
            Outcome::TimedOut => on.timeout && self.idempotent,
            Outcome::Success(_) | Outcome::BodyFailed => false,
        };
        by_outcome && tries < self.max_tries
    }
}

/// What the retry decision made of a judged try.
enum Decision {
    /// Relay this answer (a success, or a 5xx that is not retried).
    Relay(Response<ResponseBody>),
    /// Answer the client with this error.
    Fail(ProxyError),
    /// Try another backend; the try ended with this outcome and error.
    Retry(Outcome, ProxyError),
}

impl Steps<'_> {
    /// The pick step: the next backend of the current pool the request has not tried
    /// (the routing plugin's choice, or the native balancer's). With nothing usable
    /// left, the request fails over to the pool's backup once (`Ok(None)`: pick again
    /// there), else the search gives up. A routing plugin that answers or refuses the
    /// request itself ends it here too.
    fn pick(
        &self,
        search: &mut Search,
        attempt: &mut Attempt,
        now_ms: u64,
    ) -> Result<Option<Backend>, ProxyError> {
        if let Some(index) = select(&search.pool, self.target, &search.tried, now_ms)? {
            search.tried.insert(index);
            return Ok(Some(search.pool.backends[index].clone()));
        }
        let backup = match search.on_backup {
            false => usable_backup(&search.pool, self.snapshot, now_ms),
            true => None,
        };
        let Some(backup) = backup else {
            if search.last_error.is_none() {
                self.metrics.no_backend(&search.pool.name);
                search.pool.traffic.observe(Observation::Failed);
            }
            return Err(search.give_up());
        };
        debug!(pool = %search.pool.name, backup = %backup.name, "failing over to backup pool");
        self.metrics.failover(&search.pool.name);
        attempt.enter(&backup);
        search.pool = backup;
        search.on_backup = true;
        search.tried.clear();
        Ok(None)
    }

    /// The admit step: the backend's breaker lets the request in (taking a half-open
    /// trial when it needs one) and the backend counts it in flight. `false`: refused,
    /// pick again.
    fn admit(
        &self,
        attempt: &mut Attempt,
        pool: &Arc<Pool>,
        backend: &Backend,
        now_ms: u64,
    ) -> bool {
        match attempt.admit(pool, backend, now_ms) {
            Err(_rejected) => false,
            Ok(transition) => {
                if let Some(transition) = transition {
                    log_transition(pool, backend, transition, self.metrics);
                }
                true
            }
        }
    }

    /// The send and judge steps of one try: the request goes out with its per-try
    /// timeout, and what comes back is judged. A connection whose answer broke the
    /// framing is never reused.
    async fn exchange(&self, backend: &Backend, body: UpstreamBody) -> Judged {
        let retry = &self.rules.retry;
        let watch = self.body.watch();
        let parts = self.target.parts;
        let authority = backend.request_authority(&parts.headers);
        let head = OutgoingHead {
            method: &parts.method,
            scheme: &backend.scheme,
            authority: &authority,
            path_and_query: &self.target.path_and_query,
            headers: &parts.headers,
            addr: backend.address,
        };
        let sent = send(
            backend.client(self.client),
            head,
            body,
            retry.per_try_timeout,
            self.target.connect_timeout,
            watch,
        )
        .await;
        judge(sent, backend, retry, self.target, watch)
    }

    /// The retry decision: the try's outcome is settled (counters, breaker, rollout
    /// guard), then the answer is relayed, the error returned, or the request goes
    /// round again.
    fn decide(
        &self,
        judged: Judged,
        started: Instant,
        attempt: &mut Attempt,
        pool: &Arc<Pool>,
        backend: &Backend,
    ) -> Decision {
        match judged {
            Judged::Answer(response) => {
                attempt.settle(Outcome::Success(started.elapsed()), self.metrics);
                Decision::Relay(response)
            }
            Judged::ClientFault(error) => {
                attempt.client_fault();
                Decision::Fail(ProxyError::ClientBody(error))
            }
            Judged::ServerError(response) => {
                let status = response.status();
                let outcome = Outcome::ServerError(status.as_u16());
                attempt.settle(outcome, self.metrics);
                if !self.may_retry(outcome, attempt, pool) {
                    return Decision::Relay(response);
                }
                attempt.failed(Failure::Status(status.as_u16()));
                let backend = Arc::clone(&backend.key);
                Decision::Retry(outcome, ProxyError::Status { backend, status })
            }
            Judged::Failed(outcome, failure, error) => {
                attempt.settle(outcome, self.metrics);
                attempt.failed(failure);
                debug!(pool = %pool.name, backend = %backend.key, error = %error, attempt = attempt.tries(), "attempt failed");
                if !self.may_retry(outcome, attempt, pool) {
                    return Decision::Fail(error);
                }
                Decision::Retry(outcome, error)
            }
        }
    }

    /// Whether the request goes round again after a try that ended in `outcome`: the
    /// policy allows it, the body can be sent again, and the pool's budget grants a
    /// retry (taken from it here, given back if the request ends before using it).
    fn may_retry(&self, outcome: Outcome, attempt: &mut Attempt, pool: &Arc<Pool>) -> bool {
        self.rules.allow(outcome, attempt.tries())
            && self.body.can_replay()
            && attempt.take_retry(pool)
    }

    /// The retry step: the failed try ends (its in-flight count and trial go back),
    /// its error is kept in case nothing else answers, and the next try waits out the
    /// backoff, unless the backend refused the connection (nothing reached it).
    async fn retry(
        &self,
        search: &mut Search,
        attempt: &mut Attempt,
        outcome: Outcome,
        error: ProxyError,
    ) {
        attempt.end_try();
        search.last_error = Some(error);
        self.metrics.retry(&search.pool.name);
        if outcome != Outcome::ConnectFailed {
            backoff(self.rules.retry.backoff, attempt.tries()).await;
        }
    }
}

/// Asks the pool's select step (routing plugin or native balancer) for a backend
/// index not tried yet: `None` when the pool has none usable, the routing plugin's
/// own answer as an error.
fn select(
    pool: &Pool,
    target: &Target<'_>,
    tried: &Tried,
    now_ms: u64,
) -> Result<Option<usize>, ProxyError> {
    let ctx = PickContext {
        hash: request_hash(pool, target),
        now_ms,
        slow_start: pool.config.failover.slow_start,
        pinned: pool
            .sticky
            .as_ref()
            .and_then(|s| s.pinned(&target.parts.headers)),
    };
    let view = pool.policies.routes().then(|| route_request(target));
    match routing::select(pool, &ctx, view.as_ref(), |i| tried.contains(i)) {
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
/// (or within `per_try` of it finishing), the backend is not late. Before the
/// connection has asked for a streamed body, the try is still connecting, which
/// `connect` bounds: a busy proxy is then not taken for a late backend.
async fn send(
    client: &UpstreamClient,
    head: OutgoingHead<'_>,
    body: UpstreamBody,
    per_try: Duration,
    connect: Duration,
    watch: Option<&Arc<BodyWatch>>,
) -> Sent {
    let response = client.request(head, body);
    tokio::pin!(response);
    let started = tokio::time::Instant::now();
    let mut deadline = started + per_try;
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
                let connecting = !watch.handed_over();
                if connecting && started.elapsed() >= connect + per_try {
                    return Sent::TimedOut;
                }
                if connecting || watch.awaiting_client() {
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
        Sent::Response(mut response) => {
            if let Err(reason) =
                check_answer(&response, target.single_attempt, target.max_answer_head)
            {
                // Its connection is never reused: its framing cannot be trusted.
                response.body_mut().poison();
                return Judged::Failed(
                    Outcome::BadResponse,
                    Failure::BadResponse,
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
            let invalid = is_invalid_answer(&error);
            let failure = Failure::of_send(&error, invalid);
            if error.is_connect() {
                Judged::Failed(
                    Outcome::ConnectFailed,
                    failure,
                    ProxyError::Connect { backend, source },
                )
            } else if invalid {
                Judged::Failed(
                    Outcome::BadResponse,
                    failure,
                    ProxyError::Upstream { backend, source },
                )
            } else {
                Judged::Failed(
                    Outcome::Reset,
                    failure,
                    ProxyError::Upstream { backend, source },
                )
            }
        }
        Sent::TimedOut => Judged::Failed(
            Outcome::TimedOut,
            Failure::Timeout,
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

/// The answer could not be parsed: a bad status line, a head over the limits,
/// invalid or conflicting lengths, HTTP/0.9.
fn is_invalid_answer(error: &ClientError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            return h.is_parse() || h.is_parse_status() || h.is_parse_too_large();
        }
        if let Some(h1) = e.downcast_ref::<H1Error>() {
            return h1.is_invalid_answer();
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

/// The consistent-hashing key of the request, if the pool hashes.
fn request_hash(pool: &Pool, target: &Target<'_>) -> Option<u64> {
    let crate::config::BalanceKind::Hash(on) = &pool.config.balance else {
        return None;
    };
    request_key_hash(on, &target.parts.headers, Some(target.client_ip))
}

/// The innermost error, which names what actually happened (refused, reset, ...).
fn root_cause(err: &ClientError) -> BoxError {
    let mut cause: &dyn std::error::Error = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string().into()
}

#[cfg(test)]
mod tests;
