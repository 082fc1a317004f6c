//! The `recovery` world: drive one backend's circuit breaker.

use serde::de::DeserializeOwned;

use crate::config::{self, ConfigError};

pub use crate::bindings::recovery::switchyard::policy::recovery_types::{
    Action, BackendStats, BreakerState, FailureKind, Outcome,
};

/// A recovery (circuit-breaker) policy. Implement it, then export it with
/// [`recovery_policy!`](crate::recovery_policy).
///
/// Everything the proxy knows about the backend arrives with each call, so a
/// policy can decide from `stats` alone and every instance decides alike.
pub trait RecoveryPolicy: Sized + 'static {
    /// The `config` table, decoded (use `#[derive(Deserialize)]`).
    type Config: DeserializeOwned;

    /// Builds the policy from its configuration; an error refuses the load.
    fn init(config: Self::Config) -> Result<Self, ConfigError>;

    /// After each request to the backend; `stats` already count `outcome`.
    fn on_outcome(&mut self, stats: &BackendStats, outcome: Outcome) -> Action;

    /// Periodically (every second), also without traffic. Keeps the state by
    /// default.
    fn on_tick(&mut self, stats: &BackendStats) -> Action {
        let _ = stats;
        Action::Keep
    }

    /// `init` from the JSON the proxy passes (what unit tests call too).
    fn from_json(json: &str) -> Result<Self, ConfigError> {
        Self::init(config::parse(json)?)
    }
}

impl BackendStats {
    /// A closed breaker with empty counters: a starting point for tests.
    pub fn closed() -> Self {
        Self {
            consecutive_failures: 0,
            requests_in_window: 0,
            failures_in_window: 0,
            latency_ewma_us: 0,
            state: BreakerState::Closed,
            times_opened: 0,
        }
    }

    /// With this many failures in a row.
    pub fn with_consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = n;
        self
    }

    /// With this window: `requests`, of which `failures` failed.
    pub fn with_window(mut self, requests: u32, failures: u32) -> Self {
        self.requests_in_window = requests;
        self.failures_in_window = failures;
        self
    }

    /// In this breaker state.
    pub fn in_state(mut self, state: BreakerState) -> Self {
        self.state = state;
        self
    }

    /// Opened this many times before.
    pub fn with_times_opened(mut self, n: u32) -> Self {
        self.times_opened = n;
        self
    }
}
