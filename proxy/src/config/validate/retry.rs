//! `[pool.NAME.retry]`: which failures are retried, how often, and within what budget.

use crate::config::error::Reporter;
use crate::config::file::RetrySection;
use crate::config::suggest::unknown_choice;
use crate::config::{RetryConfig, RetryOn};

const RETRY_ON: [&str; 7] = [
    "connect-failure",
    "reset",
    "timeout",
    "500",
    "502",
    "503",
    "504",
];
/// The conditions a misspelling may have meant (a status code is not suggested: a
/// 501 is not a 500).
const RETRY_ON_WORDS: [&str; 3] = ["connect-failure", "reset", "timeout"];

pub(super) fn retry(field: &str, s: &RetrySection, r: &mut Reporter<'_>) -> RetryConfig {
    let d = RetryConfig::default();
    let field = format!("{field}.retry");
    let on = match &s.on {
        None => d.on,
        Some(list) => {
            let mut on = RetryOn::default();
            for (i, item) in list.get_ref().iter().enumerate() {
                match item.as_str() {
                    "connect-failure" => on.connect_failure = true,
                    "reset" => on.reset = true,
                    "timeout" => on.timeout = true,
                    "500" => on.status_500 = true,
                    "502" => on.status_502 = true,
                    "503" => on.status_503 = true,
                    "504" => on.status_504 = true,
                    other => r.at(
                        0..0,
                        format!("{field}.on[{i}]"),
                        unknown_choice("retry condition", other, &RETRY_ON, RETRY_ON_WORDS),
                    ),
                }
            }
            on
        }
    };
    let config = RetryConfig {
        attempts: s.attempts.unwrap_or(d.attempts),
        on,
        per_try_timeout: s.per_try_timeout.map_or(d.per_try_timeout, |v| v.0),
        budget_percent: s.budget_percent.unwrap_or(d.budget_percent),
        backoff: s.backoff.map_or(d.backoff, |v| v.0),
        buffer_body: s.buffer_body.map_or(d.buffer_body, |v| v.0),
    };
    if config.attempts > 10 {
        r.at(
            0..0,
            format!("{field}.attempts"),
            "at most 10 retries are allowed",
        );
    }
    if config.per_try_timeout.is_zero() {
        r.at(
            0..0,
            format!("{field}.per_try_timeout"),
            "must be greater than zero",
        );
    }
    config
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{problems_with, valid_with};

    #[test]
    fn conditions_replace_the_default_list() {
        let config =
            valid_with("[pool.app.retry]\non = [\"503\", \"reset\"]\nper_try_timeout = \"2s\"\n");
        let retry = &config.pools["app"].retry;
        assert!(retry.on.status_503 && retry.on.reset);
        assert!(!retry.on.connect_failure && !retry.on.status_502);
        assert_eq!(retry.per_try_timeout, Duration::from_secs(2));
        assert_eq!(
            config.pools["app"].breaker.trial_timeout,
            Duration::from_secs(3),
            "a half-open trial outlives the per-try timeout by a second"
        );
    }

    #[test]
    fn refuses_unknown_conditions_and_out_of_range_numbers() {
        assert_eq!(
            problems_with(
                "[pool.app.retry]\non = [\"reset\", \"connect_failure\", \"501\"]\nattempts = 11\nper_try_timeout = \"0\"\n"
            ),
            [
                "t.toml:11:16: pool.app.retry.on[1]: unknown retry condition `connect_failure`, did you mean `connect-failure`? Expected one of: connect-failure, reset, timeout, 500, 502, 503, 504",
                "t.toml:11:35: pool.app.retry.on[2]: unknown retry condition `501`; expected one of: connect-failure, reset, timeout, 500, 502, 503, 504",
                "t.toml:12:12: pool.app.retry.attempts: at most 10 retries are allowed",
                "t.toml:13:19: pool.app.retry.per_try_timeout: must be greater than zero",
            ]
        );
    }
}
