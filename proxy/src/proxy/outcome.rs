//! Feeding the result of each attempt back into the backend's breaker and counters.

use std::sync::atomic::Ordering;

use crate::clock;
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::rollout::Observation;
use crate::upstream::{Backend, Pool, log_transition};

/// Records an outcome: counters, latency EWMA and histogram, and the breaker (logging any transition once).
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
        state.record_latency(latency, now);
        state.latency.observe(latency);
    } else {
        state.failures.fetch_add(1, Ordering::Relaxed);
        if outcome == Outcome::ConnectFailed {
            state.connect_errors.fetch_add(1, Ordering::Relaxed);
            metrics.connect_error(&pool.name, &backend.key, backend.name.as_deref());
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
