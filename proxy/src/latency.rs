//! A fixed-bucket latency histogram in atomics, for percentiles the proxy reads
//! itself (a rollout guard's p99, a backend's p99 over the last minutes): one relaxed
//! add per observation on the request path, no lock, no allocation. Windows are the
//! difference of two copies of the counts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (the last bucket is open).
const BOUNDS_US: [u64; 23] = [
    500, 1_000, 2_000, 3_000, 5_000, 7_500, 10_000, 15_000, 20_000, 30_000, 50_000, 75_000,
    100_000, 150_000, 200_000, 300_000, 500_000, 750_000, 1_000_000, 1_500_000, 2_000_000,
    5_000_000, 10_000_000,
];

/// How many buckets a histogram has (the bounds and the open one above them).
pub const BUCKETS: usize = BOUNDS_US.len() + 1;

/// Cumulative counts of latencies by bucket, shared by every request that records one.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
}

impl LatencyHistogram {
    /// Counts one latency.
    pub fn observe(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_US.partition_point(|&b| b < us);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts as of now.
    pub fn counts(&self) -> LatencyCounts {
        LatencyCounts(std::array::from_fn(|i| {
            self.buckets[i].load(Ordering::Relaxed)
        }))
    }
}

/// A copy of a histogram's counts; subtracting two gives one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencyCounts([u64; BUCKETS]);

impl LatencyCounts {
    /// Counts from published parts (another instance's); `None` when the number of
    /// buckets does not match this build's.
    pub fn from_slice(counts: &[u64]) -> Option<LatencyCounts> {
        counts.try_into().ok().map(LatencyCounts)
    }

    /// The counts by bucket, for publishing.
    pub fn as_slice(&self) -> &[u64] {
        &self.0
    }

    /// What was counted between `earlier` and `self`.
    pub fn since(&self, earlier: &LatencyCounts) -> LatencyCounts {
        LatencyCounts(std::array::from_fn(|i| {
            self.0[i].saturating_sub(earlier.0[i])
        }))
    }

    /// How many latencies were counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The 99th percentile, as the upper bound of its bucket (`None` when nothing was
    /// counted).
    pub fn p99(&self) -> Option<Duration> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        let rank = total.saturating_mul(99).div_ceil(100);
        let mut seen = 0;
        for (i, count) in self.0.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let bound = BOUNDS_US
                    .get(i)
                    .copied()
                    .unwrap_or(BOUNDS_US[BUCKETS - 2] * 2);
                return Some(Duration::from_micros(bound));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p99_is_the_bound_of_the_tail_bucket_of_a_window() {
        let h = LatencyHistogram::default();
        h.observe(Duration::from_secs(60));
        let start = h.counts();
        for _ in 0..98 {
            h.observe(Duration::from_micros(800));
        }
        h.observe(Duration::from_millis(40));
        h.observe(Duration::from_millis(40));
        let window = h.counts().since(&start);
        assert_eq!(window.total(), 100);
        assert_eq!(window.p99(), Some(Duration::from_millis(50)));
        assert_eq!(
            start.p99(),
            Some(Duration::from_secs(20)),
            "the open bucket"
        );
        assert_eq!(LatencyCounts::default().p99(), None);
        assert_eq!(LatencyCounts::from_slice(window.as_slice()), Some(window));
        assert_eq!(LatencyCounts::from_slice(&[1, 2]), None);
    }
}
