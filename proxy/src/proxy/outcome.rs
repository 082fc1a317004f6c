//! Feeding the result of each attempt back into the backend's breaker and counters.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tracing::{info, warn};

use crate::breaker::{BreakerState, Transition};
use crate::clock;
use crate::metrics::Metrics;
use crate::rollout::Observation;
use crate::upstream::{Backend, Pool};

/// What one attempt against one backend amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A non-5xx response, with the time to its headers.
    Success(Duration),
    /// The TCP connect failed.
    ConnectFailed,
    /// The connection broke after the request was sent.
    Reset,
    /// The answer was not valid HTTP or broke the framing rules (bad status line,
    /// conflicting lengths, a head over the limits, an HTTP/0.9-style answer).
    BadResponse,
    /// No response headers within the per-try timeout.
    TimedOut,
    /// A 5xx response.
    ServerError(u16),
    /// The response body broke midway.
    BodyFailed,
}

impl Outcome {
    /// Short name for logs and plugins.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success(_) => "success",
            Outcome::ConnectFailed => "connect-failure",
            Outcome::Reset => "reset",
            Outcome::BadResponse => "bad-response",
            Outcome::TimedOut => "timeout",
            Outcome::ServerError(_) => "5xx",
            Outcome::BodyFailed => "body-failure",
        }
    }
}

/// Records an outcome: counters, latency EWMA, and the breaker (logging any transition once).
pub fn record(pool: &Pool, backend: &Backend, outcome: Outcome, metrics: &Metrics) {
    let state = &backend.state;
    let now = clock::now_ms();
    let config = &pool.config.breaker;
    pool.traffic.observe(match outcome {
        Outcome::Success(latency) => Observation::Answered(latency),
        Outcome::BodyFailed => Observation::BodyFailed,
        _ => Observation::Failed,
    });
    if let Outcome::Success(latency) = outcome {
        state.record_latency(latency);
    } else {
        state.failures.fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::ConnectFailed {
            state.connect_errors.fetch_add(1, Ordering::Relaxed);
            metrics.connect_error(&pool.name, &backend.key);
        }
    }
    let transition = match (&pool.policies.recovery, outcome) {
        (Some(slot), _) => crate::policy::recovery::on_outcome(pool, backend, slot, outcome, now),
        (None, Outcome::Success(_)) => state.breaker.record_success(config, now),
        (None, _) => state
            .breaker
            .record_failure(config, now, || pool.may_eject()),
    };
    if let Some(t) = transition {
        log_transition(pool, backend, t, metrics);
    }
}

/// Logs and counts a breaker transition; a close also starts slow start.
pub fn log_transition(pool: &Pool, backend: &Backend, transition: Transition, metrics: &Metrics) {
    match transition {
        Transition::Opened { reason, open_for } => {
            warn!(pool = %pool.name, backend = %backend.key, %reason, open_for_ms = open_for.as_millis() as u64,
                "circuit breaker opened: backend ejected");
            metrics.breaker_transition(&pool.name, &backend.key, BreakerState::Open.as_str());
        }
        Transition::HalfOpened => {
            info!(pool = %pool.name, backend = %backend.key, "circuit breaker half-open: sending trial requests");
            metrics.breaker_transition(&pool.name, &backend.key, BreakerState::HalfOpen.as_str());
        }
        Transition::Closed => {
            info!(pool = %pool.name, backend = %backend.key, "circuit breaker closed: backend restored");
            backend
                .state
                .usable_since_ms
                .store(clock::now_ms(), Ordering::Relaxed);
            metrics.breaker_transition(&pool.name, &backend.key, BreakerState::Closed.as_str());
        }
    }
}
