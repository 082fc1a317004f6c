//! `[pool.NAME.breaker]`: passive outlier detection's thresholds and timings.

use crate::config::BreakerConfig;
use crate::config::error::Reporter;
use crate::config::file::BreakerSection;

pub(super) fn breaker(field: &str, b: &BreakerSection, r: &mut Reporter<'_>) -> BreakerConfig {
    let d = BreakerConfig::default();
    let field = format!("{field}.breaker");
    let config = BreakerConfig {
        consecutive_failures: b.consecutive_failures.unwrap_or(d.consecutive_failures),
        error_rate: b.error_rate,
        min_requests: b.min_requests.unwrap_or(d.min_requests),
        window: b.window.map_or(d.window, |v| v.0),
        open_for: b.open_for.map_or(d.open_for, |v| v.0),
        max_open_for: b.max_open_for.map_or(d.max_open_for, |v| v.0),
        half_open_requests: b.half_open_requests.unwrap_or(d.half_open_requests),
        max_ejected_percent: b.max_ejected_percent.unwrap_or(d.max_ejected_percent),
        trial_timeout: d.trial_timeout,
        plugin: None,
    };
    if let Some(rate) = config.error_rate
        && !(rate > 0.0 && rate <= 1.0)
    {
        r.at(
            0..0,
            format!("{field}.error_rate"),
            "must be a ratio above 0 and at most 1 (e.g. 0.5)",
        );
    }
    if config.max_ejected_percent > 100 {
        r.at(
            0..0,
            format!("{field}.max_ejected_percent"),
            "must be a percentage between 0 and 100",
        );
    }
    if config.half_open_requests == 0 {
        r.at(
            0..0,
            format!("{field}.half_open_requests"),
            "must be at least 1",
        );
    }
    if config.max_open_for < config.open_for {
        r.at(
            0..0,
            format!("{field}.max_open_for"),
            "must not be shorter than open_for",
        );
    }
    if config.window.is_zero() {
        r.at(0..0, format!("{field}.window"), "must be greater than zero");
    }
    config
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{problems_with, valid_with};

    #[test]
    fn settings_over_defaults() {
        let config = valid_with("[pool.app.breaker]\nerror_rate = 0.5\nopen_for = \"10s\"\n");
        let b = &config.pools["app"].breaker;
        assert_eq!(b.error_rate, Some(0.5));
        assert_eq!(b.open_for, Duration::from_secs(10));
        assert_eq!(b.consecutive_failures, 5);
    }

    #[test]
    fn refuses_out_of_range_settings_at_their_line() {
        assert_eq!(
            problems_with(
                "[pool.app.breaker]\nerror_rate = 1.5\nmax_ejected_percent = 101\nhalf_open_requests = 0\nwindow = \"0\"\n"
            ),
            [
                "t.toml:11:14: pool.app.breaker.error_rate: must be a ratio above 0 and at most 1 (e.g. 0.5)",
                "t.toml:12:23: pool.app.breaker.max_ejected_percent: must be a percentage between 0 and 100",
                "t.toml:13:22: pool.app.breaker.half_open_requests: must be at least 1",
                "t.toml:14:10: pool.app.breaker.window: must be greater than zero",
            ]
        );
        // The default max_open_for (5m) is shorter: reported at the table.
        assert_eq!(
            problems_with("[pool.app.breaker]\nopen_for = \"10m\"\n"),
            ["t.toml:10:1: pool.app.breaker.max_open_for: must not be shorter than open_for"]
        );
    }
}
