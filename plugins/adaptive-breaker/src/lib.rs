//! Adaptive circuit breaker.
//!
//! Opens when either `consecutive-failures` failures happen in a row, or the
//! failure share of the sliding window reaches `error-rate-permille` with at
//! least `min-requests` requests in it. Each opening lasts twice as long as
//! the previous one (`base-open-ms`, doubled per earlier opening, capped at
//! `max-open-ms`), so a backend that keeps failing is probed less and less
//! often. In half-open, one success closes the breaker and one failure opens
//! it again.
//!
//! The plugin keeps no state of its own: everything it needs is in the
//! stats the proxy passes, so every instance decides alike.
//!
//! ```toml
//! config = { consecutive-failures = 5, error-rate-permille = 500, min-requests = 20,
//!            base-open-ms = 1000, max-open-ms = 60000 }
//! ```

use serde::Deserialize;
use switchyard_policy::recovery::{Action, BackendStats, BreakerState, Outcome};
use switchyard_policy::{ConfigError, RecoveryPolicy, recovery_policy};

/// The plugin's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// Failures in a row that open the breaker.
    consecutive_failures: u32,
    /// Window failure share, in thousandths, that opens the breaker.
    error_rate_permille: u32,
    /// Requests the window needs before its failure share counts.
    min_requests: u32,
    /// First open period.
    base_open_ms: u32,
    /// Longest open period.
    max_open_ms: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            error_rate_permille: 500,
            min_requests: 20,
            base_open_ms: 1_000,
            max_open_ms: 60_000,
        }
    }
}

/// The policy: its configuration.
pub struct AdaptiveBreaker(Config);

impl RecoveryPolicy for AdaptiveBreaker {
    type Config = Config;

    fn init(cfg: Config) -> Result<Self, ConfigError> {
        if cfg.consecutive_failures == 0 && cfg.min_requests == 0 {
            return Err(ConfigError::whole("no trip condition left"));
        }
        if cfg.error_rate_permille > 1000 {
            return Err(ConfigError::field(
                "error-rate-permille",
                "must be 0..=1000",
            ));
        }
        if cfg.base_open_ms == 0 || cfg.max_open_ms < cfg.base_open_ms {
            return Err(ConfigError::field(
                "base-open-ms",
                "need 0 < base-open-ms <= max-open-ms",
            ));
        }
        Ok(Self(cfg))
    }

    fn on_outcome(&mut self, stats: &BackendStats, outcome: Outcome) -> Action {
        let cfg = &self.0;
        match (stats.state, outcome) {
            (BreakerState::HalfOpen, Outcome::Success(_)) => Action::Close,
            (BreakerState::HalfOpen, Outcome::Failure(_)) => Action::Open(open_for(cfg, stats)),
            (BreakerState::Closed, Outcome::Failure(_)) if tripped(cfg, stats) => {
                Action::Open(open_for(cfg, stats))
            }
            _ => Action::Keep,
        }
    }

    fn on_tick(&mut self, stats: &BackendStats) -> Action {
        if stats.state == BreakerState::Closed && rate_tripped(&self.0, stats) {
            Action::Open(open_for(&self.0, stats))
        } else {
            Action::Keep
        }
    }
}

/// Whether a closed breaker should open.
fn tripped(cfg: &Config, stats: &BackendStats) -> bool {
    (cfg.consecutive_failures > 0 && stats.consecutive_failures >= cfg.consecutive_failures)
        || rate_tripped(cfg, stats)
}

/// Whether the window's failure share is over the limit.
fn rate_tripped(cfg: &Config, stats: &BackendStats) -> bool {
    cfg.min_requests > 0
        && stats.requests_in_window >= cfg.min_requests
        && u64::from(stats.failures_in_window) * 1000
            >= u64::from(cfg.error_rate_permille) * u64::from(stats.requests_in_window)
}

/// Exponential back-off: base, 2 x base, 4 x base, ..., capped.
fn open_for(cfg: &Config, stats: &BackendStats) -> u32 {
    let ms = u64::from(cfg.base_open_ms) << stats.times_opened.min(31);
    ms.min(u64::from(cfg.max_open_ms)) as u32
}

recovery_policy!(AdaptiveBreaker);

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_policy::recovery::FailureKind;

    #[test]
    fn opens_after_consecutive_failures_with_exponential_periods() {
        let mut p = AdaptiveBreaker::from_json(r#"{"consecutive-failures": 2}"#).unwrap();
        let fail = Outcome::Failure(FailureKind::ServerError);
        let one = BackendStats::closed()
            .with_consecutive_failures(1)
            .with_window(1, 1);
        assert_eq!(p.on_outcome(&one, fail), Action::Keep);
        let two = one.with_consecutive_failures(2).with_window(2, 2);
        assert_eq!(p.on_outcome(&two, fail), Action::Open(1_000));
        let again = two.with_times_opened(3);
        assert_eq!(p.on_outcome(&again, fail), Action::Open(8_000));
        let half_open = BackendStats::closed().in_state(BreakerState::HalfOpen);
        assert_eq!(
            p.on_outcome(&half_open, Outcome::Success(900)),
            Action::Close
        );
    }

    #[test]
    fn the_error_rate_trips_on_tick() {
        let mut p = AdaptiveBreaker::from_json("{}").unwrap();
        assert_eq!(
            p.on_tick(&BackendStats::closed().with_window(19, 19)),
            Action::Keep
        );
        assert_eq!(
            p.on_tick(&BackendStats::closed().with_window(20, 10)),
            Action::Open(1_000)
        );
    }
}
