//! Per-plugin call statistics and quarantine.
//!
//! Counters are plain atomics so the hot path pays a few relaxed increments.
//! Call durations go into fixed buckets that map one-to-one onto a
//! Prometheus histogram. Quarantine has two triggers: a sliding window of
//! one-second buckets (when too large a share of recent calls failed), and a
//! run of failed calls in a row (so a plugin that breaks after a long healthy
//! stretch is not shielded by its good past). Then the plugin is not called at
//! all for a cool-off period, so a broken plugin costs neither CPU (traps are
//! not free) nor log noise.
#![forbid(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::error::PluginError;
use crate::clock::{self, Instant};

/// Upper bounds (inclusive) of the call-duration buckets, in nanoseconds.
/// A last, implicit bucket holds everything slower.
pub const DURATION_BUCKETS_NS: [u64; 12] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000,
];

/// Labels of the call-error counters, in [`PluginStats::errors`] order.
pub const ERROR_KINDS: [&str; 6] = [
    "trap",
    "timeout",
    "memory",
    "invalid",
    "quarantined",
    "other",
];

/// When a plugin is taken out of service, and for how long.
///
/// Quarantined when either holds:
/// - the calls of the last `window` (whole seconds, the current one included)
///   number at least `min_calls` and more than `max_error_ratio` of them failed;
/// - the last `consecutive_failures` calls all failed.
///
/// The first alone would let a plugin that served 1,000 calls well and then
/// failed 60 in a row keep running (60 of 1,060 is under half); the second
/// catches it after `consecutive_failures` calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuarantinePolicy {
    /// Length of the sliding window (rounded to whole seconds, 1..=60).
    pub window: Duration,
    /// Calls the window needs before the error share counts.
    pub min_calls: u32,
    /// Error share (0.0..=1.0) above which the plugin is quarantined.
    pub max_error_ratio: f64,
    /// Failed calls in a row that quarantine the plugin whatever the window says
    /// (0 disables this trigger).
    pub consecutive_failures: u32,
    /// How long a quarantine lasts.
    pub cool_off: Duration,
}

impl Default for QuarantinePolicy {
    /// More than half of at least 20 calls in 10 s failed, or 20 calls in a row
    /// failed: 30 s out.
    fn default() -> Self {
        Self {
            window: Duration::from_secs(10),
            min_calls: 20,
            max_error_ratio: 0.5,
            consecutive_failures: 20,
            cool_off: Duration::from_secs(30),
        }
    }
}

const MAX_WINDOW_SECS: usize = 60;

/// One second of the sliding window.
#[derive(Debug, Default)]
struct Second {
    /// Which second (since `PluginStats::origin`) this slot holds, plus one
    /// (zero means empty).
    stamp: AtomicU64,
    calls: AtomicU32,
    errors: AtomicU32,
}

/// Live statistics of one plugin version.
#[derive(Debug)]
pub struct PluginStats {
    origin: Instant,
    policy: QuarantinePolicy,
    window_secs: usize,
    calls: AtomicU64,
    errors: [AtomicU64; ERROR_KINDS.len()],
    buckets: [AtomicU64; DURATION_BUCKETS_NS.len() + 1],
    duration_sum_ns: AtomicU64,
    window: Box<[Second]>,
    /// Failed calls since the last successful one.
    failures_in_a_row: AtomicU32,
    /// Nanoseconds since `origin` until which the plugin is quarantined.
    quarantined_until: AtomicU64,
    quarantined: AtomicBool,
    quarantines: AtomicU64,
    name: String,
}

/// A consistent-enough copy of the duration histogram, for exporters.
#[derive(Debug, Clone, PartialEq)]
pub struct DurationSummary {
    /// Count per bucket; `buckets[i]` counts calls of at most
    /// `DURATION_BUCKETS_NS[i]`, the last entry counts the rest.
    pub buckets: Vec<u64>,
    /// Sum of all call durations, in nanoseconds.
    pub sum_ns: u64,
    /// Number of calls observed.
    pub count: u64,
}

impl PluginStats {
    pub(crate) fn new(name: &str, policy: QuarantinePolicy) -> Self {
        let window_secs = usize::try_from(policy.window.as_secs())
            .unwrap_or(MAX_WINDOW_SECS)
            .clamp(1, MAX_WINDOW_SECS);
        Self {
            origin: clock::now(),
            policy,
            window_secs,
            calls: AtomicU64::new(0),
            errors: Default::default(),
            buckets: Default::default(),
            duration_sum_ns: AtomicU64::new(0),
            window: (0..window_secs).map(|_| Second::default()).collect(),
            failures_in_a_row: AtomicU32::new(0),
            quarantined_until: AtomicU64::new(0),
            quarantined: AtomicBool::new(false),
            quarantines: AtomicU64::new(0),
            name: name.to_owned(),
        }
    }

    /// Calls that ran the plugin (successful or not; quarantined calls are
    /// not counted here).
    pub fn calls(&self) -> u64 {
        self.calls.load(Relaxed)
    }

    /// Errors by kind, labelled by [`ERROR_KINDS`].
    pub fn errors(&self) -> [(&'static str, u64); ERROR_KINDS.len()] {
        let mut out = [("", 0); ERROR_KINDS.len()];
        for (i, label) in ERROR_KINDS.iter().enumerate() {
            out[i] = (label, self.errors[i].load(Relaxed));
        }
        out
    }

    /// Errors of one kind label (see [`PluginError::kind_label`]).
    pub fn errors_of(&self, label: &str) -> u64 {
        ERROR_KINDS
            .iter()
            .position(|l| *l == label)
            .map_or(0, |i| self.errors[i].load(Relaxed))
    }

    /// The call-duration histogram.
    pub fn durations(&self) -> DurationSummary {
        let buckets: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        DurationSummary {
            count: buckets.iter().sum(),
            buckets,
            sum_ns: self.duration_sum_ns.load(Relaxed),
        }
    }

    /// How many times the plugin entered quarantine.
    pub fn quarantines(&self) -> u64 {
        self.quarantines.load(Relaxed)
    }

    /// Whether calls are currently refused. Logs once when a quarantine ends.
    pub fn is_quarantined(&self) -> bool {
        self.quarantined_at(clock::now())
    }

    pub(crate) fn quarantined_at(&self, now: Instant) -> bool {
        if !self.quarantined.load(Relaxed) {
            return false;
        }
        if self.nanos(now) < self.quarantined_until.load(Relaxed) {
            return true;
        }
        if self.quarantined.swap(false, Relaxed) {
            // Start afresh: the failures that caused the quarantine must not
            // cause the next one.
            for s in self.window.iter() {
                s.stamp.store(0, Relaxed);
            }
            self.failures_in_a_row.store(0, Relaxed);
            tracing::info!(plugin = %self.name, "plugin quarantine ended, calling it again");
        }
        false
    }

    pub(crate) fn record_ok(&self, started: Instant, elapsed: Duration) {
        self.calls.fetch_add(1, Relaxed);
        // Read first: a healthy plugin never writes this shared line.
        if self.failures_in_a_row.load(Relaxed) != 0 {
            self.failures_in_a_row.store(0, Relaxed);
        }
        self.observe(elapsed);
        self.second(started).calls.fetch_add(1, Relaxed);
    }

    pub(crate) fn record_error(&self, started: Instant, elapsed: Duration, error: &PluginError) {
        let kind = match error {
            PluginError::Trap(_) => 0,
            PluginError::Timeout { .. } => 1,
            PluginError::Memory { .. } => 2,
            PluginError::Invalid(_) => 3,
            PluginError::Quarantined => 4,
            _ => 5,
        };
        self.errors[kind].fetch_add(1, Relaxed);
        if matches!(error, PluginError::Quarantined) {
            return;
        }
        self.calls.fetch_add(1, Relaxed);
        self.observe(elapsed);
        let second = self.second(started);
        second.calls.fetch_add(1, Relaxed);
        second.errors.fetch_add(1, Relaxed);
        let in_a_row = self
            .failures_in_a_row
            .fetch_add(1, Relaxed)
            .saturating_add(1);
        self.check_quarantine(started, in_a_row);
    }

    fn observe(&self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let i = DURATION_BUCKETS_NS.partition_point(|b| *b < ns);
        self.buckets[i].fetch_add(1, Relaxed);
        self.duration_sum_ns.fetch_add(ns, Relaxed);
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }

    /// The window slot of the second containing `t`, cleared if stale.
    fn second(&self, t: Instant) -> &Second {
        let sec = self.nanos(t) / 1_000_000_000;
        let stamp = sec + 1;
        let slot = &self.window[(sec % self.window_secs as u64) as usize];
        let old = slot.stamp.load(Relaxed);
        if old != stamp
            && slot
                .stamp
                .compare_exchange(old, stamp, Relaxed, Relaxed)
                .is_ok()
        {
            // A racing increment may be lost here; the window is a heuristic.
            slot.calls.store(0, Relaxed);
            slot.errors.store(0, Relaxed);
        }
        slot
    }

    fn check_quarantine(&self, now: Instant, in_a_row: u32) {
        let current = self.nanos(now) / 1_000_000_000 + 1;
        let oldest = current.saturating_sub(self.window_secs as u64 - 1);
        let (mut calls, mut errors) = (0u64, 0u64);
        for s in self.window.iter() {
            let stamp = s.stamp.load(Relaxed);
            if stamp >= oldest && stamp <= current {
                calls += u64::from(s.calls.load(Relaxed));
                errors += u64::from(s.errors.load(Relaxed));
            }
        }
        let by_share = calls >= u64::from(self.policy.min_calls)
            && (errors as f64) > self.policy.max_error_ratio * calls as f64;
        let by_run =
            self.policy.consecutive_failures > 0 && in_a_row >= self.policy.consecutive_failures;
        if !by_share && !by_run {
            return;
        }
        let until = self
            .nanos(now)
            .saturating_add(u64::try_from(self.policy.cool_off.as_nanos()).unwrap_or(u64::MAX));
        self.quarantined_until.store(until, Relaxed);
        if !self.quarantined.swap(true, Relaxed) {
            self.quarantines.fetch_add(1, Relaxed);
            tracing::warn!(
                plugin = %self.name,
                errors, calls, in_a_row,
                cool_off_ms = self.policy.cool_off.as_millis() as u64,
                "plugin failing too often, quarantined"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(cool_off: Duration) -> QuarantinePolicy {
        QuarantinePolicy {
            window: Duration::from_secs(10),
            min_calls: 4,
            max_error_ratio: 0.5,
            consecutive_failures: 0,
            cool_off,
        }
    }

    #[test]
    fn a_run_of_failures_after_a_good_stretch_is_quarantined() {
        let s = PluginStats::new("t", QuarantinePolicy::default());
        let now = Instant::now();
        for _ in 0..1000 {
            s.record_ok(now, Duration::ZERO);
        }
        let trap = PluginError::Trap("x".into());
        for _ in 0..19 {
            s.record_error(now, Duration::ZERO, &trap);
        }
        assert!(
            !s.quarantined_at(now),
            "19 in a row, 19 of 1019 in the window"
        );
        s.record_ok(now, Duration::ZERO);
        for _ in 0..19 {
            s.record_error(now, Duration::ZERO, &trap);
        }
        assert!(!s.quarantined_at(now), "a success restarts the run");
        s.record_error(now, Duration::ZERO, &trap);
        assert!(s.quarantined_at(now), "20 in a row");
        assert_eq!(s.quarantines(), 1);
    }

    #[test]
    fn buckets_and_sum() {
        let s = PluginStats::new("t", QuarantinePolicy::default());
        let now = Instant::now();
        s.record_ok(now, Duration::from_nanos(400));
        s.record_ok(now, Duration::from_micros(3));
        s.record_ok(now, Duration::from_secs(1));
        let d = s.durations();
        assert_eq!(d.count, 3);
        assert_eq!(d.buckets[0], 1);
        assert_eq!(d.buckets[3], 1);
        assert_eq!(d.buckets[DURATION_BUCKETS_NS.len()], 1);
        assert_eq!(s.calls(), 3);
    }

    #[test]
    fn quarantine_needs_enough_calls_and_errors() {
        let s = PluginStats::new("t", policy(Duration::from_secs(60)));
        let now = Instant::now();
        let trap = PluginError::Trap("x".into());
        s.record_error(now, Duration::ZERO, &trap);
        s.record_error(now, Duration::ZERO, &trap);
        assert!(!s.quarantined_at(now), "too few calls");
        s.record_ok(now, Duration::ZERO);
        s.record_ok(now, Duration::ZERO);
        assert!(!s.quarantined_at(now), "exactly half is not over half");
        s.record_error(now, Duration::ZERO, &trap);
        assert!(s.quarantined_at(now));
        assert_eq!(s.quarantines(), 1);
        assert_eq!(s.errors_of("trap"), 3);
    }

    fn trap() -> PluginError {
        PluginError::Trap("x".into())
    }

    /// Quarantine on the proxy's clock in paused time: it lasts exactly `cool_off`,
    /// then the plugin is called again with a clean slate.
    #[tokio::test(start_paused = true)]
    async fn quarantine_lasts_exactly_the_cool_off() {
        use tokio::time::advance;
        let s = PluginStats::new("t", policy(Duration::from_secs(30)));
        for _ in 0..4 {
            s.record_error(clock::now(), Duration::ZERO, &trap());
        }
        assert!(s.is_quarantined());
        advance(Duration::from_millis(29_999)).await;
        assert!(s.is_quarantined(), "still within the cool-off");
        advance(Duration::from_millis(1)).await;
        assert!(!s.is_quarantined(), "released after exactly 30 s");
        assert_eq!(s.quarantines(), 1);
        // The failures that caused it were forgotten: it takes a full new share.
        for _ in 0..3 {
            s.record_error(clock::now(), Duration::ZERO, &trap());
            assert!(!s.is_quarantined());
        }
        s.record_error(clock::now(), Duration::ZERO, &trap());
        assert!(s.is_quarantined());
        assert_eq!(s.quarantines(), 2);
    }

    /// The error share is taken over the last `window` seconds of the clock:
    /// failures that slid out of it no longer count.
    #[tokio::test(start_paused = true)]
    async fn failures_outside_the_window_do_not_count() {
        use tokio::time::advance;
        let s = PluginStats::new("t", policy(Duration::from_secs(30)));
        for _ in 0..3 {
            s.record_error(clock::now(), Duration::ZERO, &trap());
        }
        advance(Duration::from_secs(10)).await;
        s.record_error(clock::now(), Duration::ZERO, &trap());
        assert!(
            !s.is_quarantined(),
            "3 failures 10 s ago are out of the 10 s window: 1 call in it"
        );
        advance(Duration::from_secs(9)).await;
        for _ in 0..2 {
            s.record_error(clock::now(), Duration::ZERO, &trap());
        }
        assert!(!s.is_quarantined(), "3 calls in the window, 4 needed");
        s.record_error(clock::now(), Duration::ZERO, &trap());
        assert!(s.is_quarantined(), "4 failed calls within 10 s");
    }

    /// A run of failures quarantines whatever the window says, and the run is
    /// counted across seconds.
    #[tokio::test(start_paused = true)]
    async fn a_run_of_failures_spread_over_time_is_quarantined() {
        use tokio::time::advance;
        let s = PluginStats::new(
            "t",
            QuarantinePolicy {
                consecutive_failures: 5,
                min_calls: 1000,
                ..policy(Duration::from_secs(5))
            },
        );
        for _ in 0..4 {
            s.record_error(clock::now(), Duration::ZERO, &trap());
            advance(Duration::from_secs(20)).await;
        }
        assert!(!s.is_quarantined());
        s.record_error(clock::now(), Duration::ZERO, &trap());
        assert!(s.is_quarantined(), "5 failures in a row, 80 s apart");
        advance(Duration::from_secs(5)).await;
        assert!(!s.is_quarantined());
    }

    #[test]
    fn quarantine_ends_after_cool_off() {
        let s = PluginStats::new("t", policy(Duration::from_millis(1)));
        let now = Instant::now();
        for _ in 0..4 {
            s.record_error(
                now,
                Duration::ZERO,
                &PluginError::Timeout {
                    limit: Duration::ZERO,
                },
            );
        }
        assert!(s.quarantined_at(now));
        assert!(!s.quarantined_at(now + Duration::from_millis(5)));
        // The window was cleared, so one more failure does not re-quarantine.
        s.record_error(
            now,
            Duration::ZERO,
            &PluginError::Timeout {
                limit: Duration::ZERO,
            },
        );
        assert!(!s.quarantined_at(now + Duration::from_millis(5)));
    }
}
