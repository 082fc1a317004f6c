//! The rollout guard: judges one step window of the new side against thresholds and
//! against the old side, and says why when it breaks.

use std::time::Duration;

use serde_json::{Value, json};

use super::stats::TrafficSample;

/// Thresholds a step must stay within to advance.
#[derive(Debug, Clone, PartialEq)]
pub struct Guard {
    /// Highest tolerated share of failed requests on the new side.
    pub max_error_rate: f64,
    /// Highest tolerated new-side p99 as a multiple of the old side's (`None` = unchecked).
    pub max_p99_ratio: Option<f64>,
    /// Requests a side needs in the window before its numbers are trusted.
    pub min_requests: u64,
}

impl Default for Guard {
    fn default() -> Self {
        Self {
            max_error_rate: 0.05,
            max_p99_ratio: None,
            min_requests: 20,
        }
    }
}

/// The result of judging one window, with the numbers behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// `false` when a threshold was crossed.
    pub healthy: bool,
    /// Whether the new side had enough requests for the error-rate check.
    pub judged: bool,
    /// The new side's window.
    pub green: TrafficSample,
    /// The old side's window.
    pub blue: TrafficSample,
    /// A sentence for logs and `/status`.
    pub detail: String,
}

impl Verdict {
    /// JSON for `/status`.
    pub fn to_json(&self) -> Value {
        json!({
            "healthy": self.healthy,
            "judged": self.judged,
            "detail": self.detail,
            "green": side_json(&self.green),
            "blue": side_json(&self.blue),
        })
    }
}

fn side_json(s: &TrafficSample) -> Value {
    json!({
        "requests": s.requests,
        "failures": s.failures,
        "error_rate": s.error_rate(),
        "p99_ms": s.p99().map(millis),
    })
}

fn millis(d: Duration) -> f64 {
    crate::clock::millis(d)
}

impl Guard {
    /// Judges the new side (`green`) against the thresholds and the old side (`blue`).
    pub fn judge(&self, green: TrafficSample, blue: TrafficSample) -> Verdict {
        let verdict = |healthy, judged, detail: String| Verdict {
            healthy,
            judged,
            green,
            blue,
            detail,
        };
        if green.requests < self.min_requests {
            return verdict(
                true,
                false,
                format!(
                    "not judged: {} requests on the new side, {} needed",
                    green.requests, self.min_requests
                ),
            );
        }
        let rate = green.error_rate();
        if rate > self.max_error_rate {
            return verdict(
                false,
                true,
                format!(
                    "error rate {:.1}% ({} of {}) above the {:.1}% limit",
                    rate * 100.0,
                    green.failures,
                    green.requests,
                    self.max_error_rate * 100.0
                ),
            );
        }
        if let Some(ratio) = self.max_p99_ratio
            && blue.requests >= self.min_requests
            && let (Some(g), Some(b)) = (green.p99(), blue.p99())
            && g.as_secs_f64() > b.as_secs_f64() * ratio
        {
            return verdict(
                false,
                true,
                format!(
                    "p99 {:.1} ms is above {ratio} x the old side's {:.1} ms",
                    millis(g),
                    millis(b)
                ),
            );
        }
        verdict(
            true,
            true,
            format!(
                "error rate {:.1}% over {} requests",
                rate * 100.0,
                green.requests
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rollout::stats::{Observation, PoolTraffic};

    fn window(ok: u64, failed: u64, latency: Duration) -> TrafficSample {
        let t = PoolTraffic::default();
        for _ in 0..ok {
            t.observe(Observation::Answered(latency));
        }
        for _ in 0..failed {
            t.observe(Observation::Failed);
        }
        t.sample()
    }

    #[test]
    fn error_rate_breaks_only_with_enough_requests() {
        let guard = Guard::default();
        let fast = Duration::from_millis(1);
        let blue = window(100, 0, fast);
        let few = guard.judge(window(5, 5, fast), blue);
        assert!(few.healthy && !few.judged, "{}", few.detail);
        let bad = guard.judge(window(90, 10, fast), blue);
        assert!(!bad.healthy, "{}", bad.detail);
        assert!(bad.detail.contains("error rate 10.0%"), "{}", bad.detail);
        assert!(guard.judge(window(99, 1, fast), blue).healthy);
    }

    #[test]
    fn p99_ratio_compares_with_the_old_side() {
        let guard = Guard {
            max_p99_ratio: Some(2.0),
            ..Guard::default()
        };
        let blue = window(100, 0, Duration::from_millis(10));
        let slow = guard.judge(window(100, 0, Duration::from_millis(80)), blue);
        assert!(!slow.healthy, "{}", slow.detail);
        assert!(slow.detail.contains("p99"), "{}", slow.detail);
        assert!(
            guard
                .judge(window(100, 0, Duration::from_millis(15)), blue)
                .healthy
        );
        // Without enough traffic on the old side there is nothing to compare with.
        let quiet_blue = window(3, 0, Duration::from_millis(1));
        assert!(
            guard
                .judge(window(100, 0, Duration::from_millis(80)), quiet_blue)
                .healthy
        );
    }
}
