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

use std::cell::RefCell;

use serde::Deserialize;

wit_bindgen::generate!({ world: "recovery", path: "../../wit" });

use switchyard::policy::recovery_types::BreakerState;

/// The plugin's configuration, decoded from the JSON the proxy passes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
struct Config {
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

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

struct AdaptiveBreaker;

impl Guest for AdaptiveBreaker {
    fn init(config: String) -> Result<(), String> {
        let cfg: Config =
            serde_json::from_str(&config).map_err(|e| format!("adaptive-breaker config: {e}"))?;
        if cfg.consecutive_failures == 0 && cfg.min_requests == 0 {
            return Err("adaptive-breaker config: no trip condition left".into());
        }
        if cfg.error_rate_permille > 1000 {
            return Err("adaptive-breaker config: error-rate-permille must be 0..=1000".into());
        }
        if cfg.base_open_ms == 0 || cfg.max_open_ms < cfg.base_open_ms {
            return Err("adaptive-breaker config: need 0 < base-open-ms <= max-open-ms".into());
        }
        CONFIG.set(cfg);
        Ok(())
    }

    fn on_outcome(stats: BackendStats, outcome: Outcome) -> Action {
        CONFIG.with_borrow(|cfg| match (stats.state, outcome) {
            (BreakerState::HalfOpen, Outcome::Success(_)) => Action::Close,
            (BreakerState::HalfOpen, Outcome::Failure(_)) => Action::Open(open_for(cfg, &stats)),
            (BreakerState::Closed, Outcome::Failure(_)) if tripped(cfg, &stats) => {
                Action::Open(open_for(cfg, &stats))
            }
            _ => Action::Keep,
        })
    }

    fn on_tick(stats: BackendStats) -> Action {
        CONFIG.with_borrow(|cfg| {
            if stats.state == BreakerState::Closed && rate_tripped(cfg, &stats) {
                Action::Open(open_for(cfg, &stats))
            } else {
                Action::Keep
            }
        })
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
    let doublings = stats.times_opened.min(31);
    let ms = u64::from(cfg.base_open_ms) << doublings;
    ms.min(u64::from(cfg.max_open_ms)) as u32
}

export!(AdaptiveBreaker);
