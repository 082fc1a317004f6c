//! The last five minutes of each backend's traffic, kept in the proxy so a dashboard
//! (or anyone asking `/history`) sees the same curves after a reload of the page:
//! request rate, error rate and p99 latency, one point every [`INTERVAL`].
//!
//! Nothing here runs per request. The request path only bumps the backend's counters
//! and latency histogram, as it does anyway; a ticker of the server copies those
//! totals every [`INTERVAL`] and each backend's [`History`] turns two copies into a
//! point, keeping the newest [`POINTS`] in a fixed-size ring.

use std::collections::VecDeque;
use std::time::Duration;

use parking_lot::Mutex;

use crate::latency::LatencyCounts;

/// How often a point is taken.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// How many points a backend keeps: five minutes' worth.
pub const POINTS: usize = 150;

/// One interval of a backend's traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// When the interval ended, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Requests sent to the backend per second.
    pub requests_per_s: f64,
    /// Failed requests per request (0 without requests).
    pub error_rate: f64,
    /// The 99th percentile of answered requests, `None` without any.
    pub p99: Option<Duration>,
}

/// A backend's cumulative counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub failures: u64,
    pub latency: LatencyCounts,
}

/// One backend's points, newest last.
#[derive(Debug, Default)]
pub struct History {
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    /// The totals the next point is measured from, and when they were read.
    last: Option<(u64, Totals)>,
    points: VecDeque<Point>,
}

impl History {
    /// Takes the totals read at `at_ms` (Unix milliseconds): the first reading only
    /// sets where the next point starts; each later one adds the point between the
    /// two, dropping the oldest once [`POINTS`] are kept. A reading that goes back in
    /// time or in counts starts over from it.
    pub fn record(&self, at_ms: u64, totals: Totals) {
        let mut ring = self.inner.lock();
        let previous = ring.last.replace((at_ms, totals));
        let Some((since_ms, before)) = previous else {
            return;
        };
        if at_ms <= since_ms
            || totals.requests < before.requests
            || totals.failures < before.failures
        {
            return;
        }
        let requests = totals.requests - before.requests;
        let failures = totals.failures - before.failures;
        let seconds = (at_ms - since_ms) as f64 / 1000.0;
        let error_rate = match (requests, failures) {
            (0, 0) => 0.0,
            (0, _) => 1.0,
            (r, f) => (f as f64 / r as f64).min(1.0),
        };
        if ring.points.len() == POINTS {
            ring.points.pop_front();
        }
        ring.points.push_back(Point {
            at_ms,
            requests_per_s: requests as f64 / seconds,
            error_rate,
            p99: totals.latency.since(&before.latency).p99(),
        });
    }

    /// The points kept, oldest first.
    pub fn points(&self) -> Vec<Point> {
        self.inner.lock().points.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencyHistogram;

    fn totals(requests: u64, failures: u64, latency: &LatencyHistogram) -> Totals {
        Totals {
            requests,
            failures,
            latency: latency.counts(),
        }
    }

    #[test]
    fn points_are_rates_between_two_readings_and_the_ring_keeps_five_minutes() {
        let latency = LatencyHistogram::default();
        let history = History::default();
        history.record(10_000, totals(100, 0, &latency));
        assert!(history.points().is_empty(), "one reading is no interval");
        for _ in 0..20 {
            latency.observe(Duration::from_millis(4));
        }
        history.record(12_000, totals(120, 5, &latency));
        assert_eq!(
            history.points(),
            vec![Point {
                at_ms: 12_000,
                requests_per_s: 10.0,
                error_rate: 0.25,
                p99: Some(Duration::from_millis(5)),
            }]
        );
        history.record(14_000, totals(120, 5, &latency));
        let idle = history.points()[1];
        assert_eq!(
            (idle.requests_per_s, idle.error_rate, idle.p99),
            (0.0, 0.0, None)
        );
        // Counters that went back (a backend re-added) start over without a point.
        history.record(16_000, totals(3, 0, &latency));
        assert_eq!(history.points().len(), 2);
        for i in 1..=POINTS as u64 + 10 {
            history.record(16_000 + i * 2_000, totals(3 + i, 0, &latency));
        }
        let points = history.points();
        assert_eq!(points.len(), POINTS);
        assert_eq!(
            points.last().map(|p| p.at_ms),
            Some(16_000 + (POINTS as u64 + 10) * 2_000)
        );
        assert!(points.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    }
}
