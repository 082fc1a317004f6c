//! Per-pool traffic counters for rollout guards: requests, failures and a small
//! fixed-bucket latency histogram. Cumulative atomics on the hot path; a rollout step
//! takes a [`TrafficSample`] at its start and end and judges the difference.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::latency::{LatencyCounts, LatencyHistogram};

/// What one attempt against a pool amounted to, as far as a rollout guard cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A non-5xx answer after this long.
    Answered(Duration),
    /// A 5xx, connect failure, reset, timeout, or no backend at all.
    Failed,
    /// A response body that broke after its headers were counted as a success.
    BodyFailed,
}

/// Cumulative counters of one pool, kept across snapshot rebuilds so a rollout can
/// measure a window that spans route switches.
#[derive(Debug, Default)]
pub struct PoolTraffic {
    requests: AtomicU64,
    failures: AtomicU64,
    latency: LatencyHistogram,
    /// Requests currently sent to this pool (its side of a split or rollout),
    /// held by each request's guard from the pool choice to the end of its answer.
    in_flight: AtomicU64,
    /// Requests that found this side of a split without a usable backend and were
    /// sent to another side instead.
    spilled: AtomicU64,
}

impl PoolTraffic {
    /// Requests in flight on this pool right now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// One more request on this pool; paired with [`PoolTraffic::leave`] by a guard.
    pub fn enter(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A request on this pool ended (only ever after its [`PoolTraffic::enter`]).
    pub fn leave(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Counts a request that left this side of a split for lack of a usable backend.
    pub fn spill(&self) {
        self.spilled.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests that left this side for another one so far.
    pub fn spilled(&self) -> u64 {
        self.spilled.load(Ordering::Relaxed)
    }

    /// Counts one observation (a few relaxed atomic adds).
    pub fn observe(&self, observation: Observation) {
        match observation {
            Observation::Answered(latency) => {
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.latency.observe(latency);
            }
            Observation::Failed => {
                self.requests.fetch_add(1, Ordering::Relaxed);
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
            Observation::BodyFailed => {
                self.failures.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters as of now.
    pub fn sample(&self) -> TrafficSample {
        TrafficSample {
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            latency: self.latency.counts(),
        }
    }
}

/// A copy of a pool's counters; subtracting two gives one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TrafficSample {
    /// Attempts answered or failed.
    pub requests: u64,
    /// 5xx, connection failures, timeouts, no backend, broken bodies.
    pub failures: u64,
    latency: LatencyCounts,
}

impl TrafficSample {
    /// A sample from published parts (a fleet's counters); `None` when the latency
    /// buckets do not match this build's.
    pub fn from_parts(requests: u64, failures: u64, latency: &[u64]) -> Option<TrafficSample> {
        let latency = LatencyCounts::from_slice(latency)?;
        Some(TrafficSample {
            requests,
            failures,
            latency,
        })
    }

    /// The latency bucket counts, for publishing.
    pub fn buckets(&self) -> &[u64] {
        self.latency.as_slice()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &TrafficSample) -> TrafficSample {
        TrafficSample {
            requests: self.requests.saturating_sub(earlier.requests),
            failures: self.failures.saturating_sub(earlier.failures),
            latency: self.latency.since(&earlier.latency),
        }
    }

    /// Failures per request (0 without requests; capped at 1).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        (self.failures as f64 / self.requests as f64).min(1.0)
    }

    /// The 99th percentile of answered requests, as the upper bound of its bucket
    /// (`None` without answered requests).
    pub fn p99(&self) -> Option<Duration> {
        self.latency.p99()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_subtract_and_p99_picks_the_tail_bucket() {
        let t = PoolTraffic::default();
        t.observe(Observation::Answered(Duration::from_millis(100)));
        let start = t.sample();
        for _ in 0..98 {
            t.observe(Observation::Answered(Duration::from_micros(800)));
        }
        t.observe(Observation::Answered(Duration::from_millis(40)));
        t.observe(Observation::Answered(Duration::from_millis(40)));
        t.observe(Observation::Failed);
        let window = t.sample().since(&start);
        assert_eq!((window.requests, window.failures), (101, 1));
        assert_eq!(window.p99(), Some(Duration::from_millis(50)));
        assert!((window.error_rate() - 1.0 / 101.0).abs() < 1e-9);
        assert_eq!(TrafficSample::default().p99(), None);
        assert_eq!(TrafficSample::default().error_rate(), 0.0);
    }
}
