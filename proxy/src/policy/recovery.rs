//! Breaker decisions by a recovery plugin: called with each outcome of real traffic
//! and on a timer, with the backend's recent stats; the native thresholds stand in
//! when the plugin cannot answer.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::breaker::{self, Transition};
use crate::clock;
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::plugin::{
    self, BreakerStats, FailureKind, PluginError, PluginSlot, Recourse, RecoveryAction, recourse,
};
use crate::upstream::{Backend, Pool, log_transition};

/// How often `on-tick` runs for every backend of a pool with a recovery plugin.
pub const TICK_INTERVAL: Duration = Duration::from_secs(1);

/// Counts the outcome, asks the plugin what to do, and applies its answer. Returns
/// the transition to log, if any.
pub fn on_outcome(
    pool: &Pool,
    backend: &Backend,
    slot: &PluginSlot,
    outcome: Outcome,
    now_ms: u64,
) -> Option<Transition> {
    let config = &pool.config.breaker;
    let failed = !matches!(outcome, Outcome::Success(_));
    let breaker = &backend.state.breaker;
    let consecutive = breaker.observe(config.window, now_ms, failed);
    let active = slot.current();
    let result = match active.plugin.as_recovery() {
        Some(recovery) => recovery.on_outcome(&stats(pool, backend, now_ms), to_plugin(outcome)),
        None => Err(not_recovery()),
    };
    match result {
        Ok(action) => apply(pool, backend, action, now_ms),
        Err(e) => match recourse(&e, active.config.on_error) {
            Recourse::Native if failed => {
                breaker.after_failure(config, now_ms, consecutive, || pool.may_eject())
            }
            Recourse::Native => breaker.after_success(config),
            Recourse::FailClosed => None,
        },
    }
}

/// Runs `on-tick` for every backend of every pool with a recovery plugin, once per
/// [`TICK_INTERVAL`], on a blocking thread, until `stop` fires. `live_pools` gives
/// the pools of the live snapshot at each tick.
pub async fn run_ticker(
    live_pools: impl Fn() -> Vec<Arc<Pool>> + Send + 'static,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut interval = tokio::time::interval(TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = stop.cancelled() => return,
        }
        let mut pools = live_pools();
        pools.retain(|p| p.policies.recovery.is_some());
        if pools.is_empty() {
            continue;
        }
        let metrics = Arc::clone(&metrics);
        let _ = tokio::task::spawn_blocking(move || tick_all(&pools, &metrics)).await;
    }
}

fn tick_all(pools: &[Arc<Pool>], metrics: &Metrics) {
    for pool in pools {
        let Some(slot) = &pool.policies.recovery else {
            continue;
        };
        let active = slot.current();
        let Some(recovery) = active.plugin.as_recovery() else {
            continue;
        };
        for backend in &pool.backends {
            let now = clock::now_ms();
            // A failed tick changes nothing: the next outcome or tick decides.
            if let Ok(action) = recovery.on_tick(&stats(pool, backend, now))
                && let Some(t) = apply(pool, backend, action, now)
            {
                log_transition(pool, backend, t, metrics);
            }
        }
    }
}

/// Applies a plugin's action to the backend's breaker. Opening still respects the
/// pool's `max_ejected_percent`, so a plugin cannot eject the whole pool.
fn apply(
    pool: &Pool,
    backend: &Backend,
    action: RecoveryAction,
    now_ms: u64,
) -> Option<Transition> {
    let breaker = &backend.state.breaker;
    match action {
        RecoveryAction::Keep => None,
        RecoveryAction::Open(open_for) => {
            let state = breaker.state();
            let allowed = match state {
                breaker::BreakerState::Open => false,
                breaker::BreakerState::HalfOpen => true,
                breaker::BreakerState::Closed => pool.may_eject(),
            };
            if allowed {
                breaker.force_open(open_for, now_ms)
            } else {
                None
            }
        }
        RecoveryAction::HalfOpen => breaker.force_half_open(
            pool.config.breaker.half_open_requests,
            &pool.config.breaker,
            now_ms,
        ),
        RecoveryAction::Close => breaker.force_close(),
    }
}

/// What the plugin is told about a backend.
fn stats(pool: &Pool, backend: &Backend, now_ms: u64) -> BreakerStats {
    let s = &backend.state;
    let (requests, failures) = s.breaker.window_counts(pool.config.breaker.window, now_ms);
    BreakerStats {
        consecutive_failures: s.breaker.consecutive_failures(),
        requests_in_window: requests,
        failures_in_window: failures,
        latency_ewma_us: s.latency_ewma_us(now_ms),
        state: match s.breaker.state() {
            breaker::BreakerState::Closed => plugin::BreakerState::Closed,
            breaker::BreakerState::Open => plugin::BreakerState::Open,
            breaker::BreakerState::HalfOpen => plugin::BreakerState::HalfOpen,
        },
        times_opened: u32::try_from(s.breaker.ejections()).unwrap_or(u32::MAX),
    }
}

fn to_plugin(outcome: Outcome) -> plugin::Outcome {
    match outcome {
        Outcome::Success(latency) => plugin::Outcome::Success(latency),
        Outcome::ConnectFailed => plugin::Outcome::Failure(FailureKind::Connect),
        Outcome::Reset => plugin::Outcome::Failure(FailureKind::Reset),
        Outcome::TimedOut => plugin::Outcome::Failure(FailureKind::Timeout),
        Outcome::ServerError(_) => plugin::Outcome::Failure(FailureKind::ServerError),
        Outcome::BodyFailed | Outcome::BadResponse => plugin::Outcome::Failure(FailureKind::Other),
    }
}

fn not_recovery() -> PluginError {
    PluginError::Invalid("not a recovery plugin".into())
}
