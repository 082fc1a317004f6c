//! Logging and counting a backend's breaker transitions, wherever they were decided:
//! by the native breaker on an outcome, at admission, or by a recovery plugin.

use std::sync::atomic::Ordering;

use tracing::{info, warn};

use super::backend::Backend;
use super::pool::Pool;
use crate::breaker::{BreakerState, Transition};
use crate::clock;
use crate::config::HumanDuration;
use crate::metrics::Metrics;
use crate::timeline::{EventKind, Happened};

/// Logs and counts a breaker transition; a close also starts slow start.
pub fn log_transition(pool: &Pool, backend: &Backend, transition: Transition, metrics: &Metrics) {
    match transition {
        Transition::Opened { reason, open_for } => {
            warn!(pool = %pool.name, backend = %backend.key, backend_name = backend.name.as_deref(), %reason, open_for_ms = open_for.as_millis() as u64,
                "circuit breaker opened: backend ejected");
            metrics.breaker_transition(
                &pool.name,
                &backend.key,
                backend.name.as_deref(),
                BreakerState::Open.as_str(),
            );
            metrics.timeline().record(
                Happened::backend(
                    EventKind::Breaker,
                    &pool.name,
                    &backend.key,
                    format!(
                        "circuit breaker opened ({reason}): ejected for {}",
                        HumanDuration(open_for)
                    ),
                )
                .warning(true),
            );
        }
        Transition::HalfOpened => {
            info!(pool = %pool.name, backend = %backend.key, backend_name = backend.name.as_deref(), "circuit breaker half-open: sending trial requests");
            metrics.breaker_transition(
                &pool.name,
                &backend.key,
                backend.name.as_deref(),
                BreakerState::HalfOpen.as_str(),
            );
            metrics.timeline().record(Happened::backend(
                EventKind::Breaker,
                &pool.name,
                &backend.key,
                "circuit breaker half-open: trial requests",
            ));
        }
        Transition::Closed => {
            info!(pool = %pool.name, backend = %backend.key, backend_name = backend.name.as_deref(), "circuit breaker closed: backend restored");
            backend
                .state
                .usable_since_ms
                .store(clock::now_ms(), Ordering::Relaxed);
            metrics.breaker_transition(
                &pool.name,
                &backend.key,
                backend.name.as_deref(),
                BreakerState::Closed.as_str(),
            );
            metrics.timeline().record(Happened::backend(
                EventKind::Breaker,
                &pool.name,
                &backend.key,
                "circuit breaker closed: backend restored",
            ));
        }
    }
}
