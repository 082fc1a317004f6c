//! Recovery plugins: drive a backend's circuit breaker.
#![forbid(unsafe_code)]

use std::time::Duration;

use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::recovery::switchyard::policy::recovery_types as wit;
use super::bindings::recovery::{Recovery, RecoveryPre};
use super::error::PluginError;
use super::host::HostState;
use super::instance::{Instances, world};
use super::limits;
use super::stats::PluginStats;

/// Breaker state. "Open" means traffic is blocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BreakerState {
    /// Traffic flows.
    #[default]
    Closed,
    /// Traffic is blocked.
    Open,
    /// Trial requests are let through.
    HalfOpen,
}

/// What the proxy knows about one backend, passed to every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BreakerStats {
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Requests in the sliding window.
    pub requests_in_window: u32,
    /// Failures in the sliding window.
    pub failures_in_window: u32,
    /// Latency moving average, in microseconds.
    pub latency_ewma_us: u32,
    /// Current state.
    pub state: BreakerState,
    /// Times the breaker opened since the backend was added.
    pub times_opened: u32,
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Could not connect.
    Connect,
    /// No response in time.
    Timeout,
    /// Connection reset mid-request.
    Reset,
    /// The backend answered 5xx.
    ServerError,
    /// Anything else.
    Other,
}

/// The result of one proxied request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Success, with its latency.
    Success(Duration),
    /// Failure.
    Failure(FailureKind),
}

/// A validated breaker action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryAction {
    /// Stay in the current state.
    Keep,
    /// Block traffic for this long (1 ms ..= 1 h); then the proxy moves the
    /// breaker to half-open by itself.
    Open(Duration),
    /// Let trial requests through.
    HalfOpen,
    /// Resume normal traffic.
    Close,
}

/// A recovery world instance.
pub(crate) struct RecoveryInstance {
    bindings: Recovery,
}

world!(
    RecoveryInstance {},
    RecoveryPre,
    "recovery",
    ["init", "on-outcome", "on-tick"]
);

/// A loaded recovery plugin. Calls may run concurrently.
#[derive(Debug)]
pub struct RecoveryPlugin {
    instances: Instances<RecoveryInstance>,
}

impl RecoveryPlugin {
    pub(crate) fn load(instances: Instances<RecoveryInstance>) -> Result<Self, PluginError> {
        instances.smoke(|_| Ok(()))?;
        Ok(Self { instances })
    }

    /// Live statistics of this plugin version.
    pub fn stats(&self) -> &PluginStats {
        self.instances.stats()
    }

    /// Called after each request to the backend; `stats` already count
    /// this outcome.
    pub fn on_outcome(
        &self,
        stats: &BreakerStats,
        outcome: Outcome,
    ) -> Result<RecoveryAction, PluginError> {
        let stats = to_wit(stats);
        let outcome = match outcome {
            Outcome::Success(latency) => {
                wit::Outcome::Success(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX))
            }
            Outcome::Failure(kind) => wit::Outcome::Failure(match kind {
                FailureKind::Connect => wit::FailureKind::Connect,
                FailureKind::Timeout => wit::FailureKind::Timeout,
                FailureKind::Reset => wit::FailureKind::Reset,
                FailureKind::ServerError => wit::FailureKind::ServerError,
                FailureKind::Other => wit::FailureKind::Other,
            }),
        };
        self.instances.call(
            |slot| {
                slot.world
                    .bindings
                    .call_on_outcome(&mut slot.store, stats, outcome)
            },
            validate,
        )
    }

    /// Called periodically, also without traffic.
    pub fn on_tick(&self, stats: &BreakerStats) -> Result<RecoveryAction, PluginError> {
        let stats = to_wit(stats);
        self.instances.call(
            |slot| slot.world.bindings.call_on_tick(&mut slot.store, stats),
            validate,
        )
    }
}

fn to_wit(s: &BreakerStats) -> wit::BackendStats {
    wit::BackendStats {
        consecutive_failures: s.consecutive_failures,
        requests_in_window: s.requests_in_window,
        failures_in_window: s.failures_in_window,
        latency_ewma_us: s.latency_ewma_us,
        state: match s.state {
            BreakerState::Closed => wit::BreakerState::Closed,
            BreakerState::Open => wit::BreakerState::Open,
            BreakerState::HalfOpen => wit::BreakerState::HalfOpen,
        },
        times_opened: s.times_opened,
    }
}

fn validate(action: wit::Action) -> Result<RecoveryAction, PluginError> {
    Ok(match action {
        wit::Action::Keep => RecoveryAction::Keep,
        wit::Action::HalfOpen => RecoveryAction::HalfOpen,
        wit::Action::Close => RecoveryAction::Close,
        wit::Action::Open(ms) => {
            let d = Duration::from_millis(u64::from(ms));
            if d.is_zero() || d > limits::MAX_OPEN {
                return Err(PluginError::Invalid(format!(
                    "open period of {ms} ms is outside 1 ms ..= {:?}",
                    limits::MAX_OPEN
                )));
            }
            RecoveryAction::Open(d)
        }
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn action() -> impl Strategy<Value = wit::Action> {
        prop_oneof![
            Just(wit::Action::Keep),
            Just(wit::Action::HalfOpen),
            Just(wit::Action::Close),
            any::<u32>().prop_map(wit::Action::Open),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

        /// An open period is only used when it is from 1 ms to the maximum.
        #[test]
        fn only_bounded_open_periods_pass(action in action()) {
            let valid = match &action {
                wit::Action::Open(ms) => {
                    *ms > 0 && Duration::from_millis(u64::from(*ms)) <= limits::MAX_OPEN
                }
                _ => true,
            };
            match validate(action) {
                Ok(RecoveryAction::Open(d)) => {
                    prop_assert!(!d.is_zero() && d <= limits::MAX_OPEN);
                }
                Ok(_) => prop_assert!(valid),
                Err(e) => {
                    prop_assert!(!valid);
                    prop_assert!(matches!(e, PluginError::Invalid(_)));
                }
            }
        }
    }
}
