//! Rise/fall hysteresis over probe results, readable from the hot path without locks.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

/// What the active checks currently say about a backend.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// No check configured, or none has concluded yet: traffic is allowed.
    Unknown = 0,
    Up = 1,
    Down = 2,
}

impl HealthStatus {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => HealthStatus::Up,
            2 => HealthStatus::Down,
            _ => HealthStatus::Unknown,
        }
    }

    /// Parses [`HealthStatus::as_str`] back (anything else is unknown).
    pub fn parse(text: &str) -> Self {
        match text {
            "up" => HealthStatus::Up,
            "down" => HealthStatus::Down,
            _ => HealthStatus::Unknown,
        }
    }

    /// Lower-case name for JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "unknown",
            HealthStatus::Up => "up",
            HealthStatus::Down => "down",
        }
    }
}

/// The outcome of one probe, kept for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRecord {
    /// `ok`, or the failure reason (`status 500`, `timeout`, `refused`, `body mismatch`, ...).
    pub result: String,
    pub latency: Duration,
    /// Milliseconds on [`crate::clock`] when it finished.
    pub at_ms: u64,
}

/// Health of one backend: updated only by its checker task, read by everyone.
#[derive(Debug, Default)]
pub struct HealthState {
    status: AtomicU8,
    consecutive_ok: AtomicU32,
    consecutive_failed: AtomicU32,
    /// Weight share in percent reported by a health evaluator (100 = full).
    weight_percent: AtomicU8,
    transitions: AtomicU64,
    last: Mutex<Option<CheckRecord>>,
}

impl HealthState {
    /// Current status.
    pub fn status(&self) -> HealthStatus {
        HealthStatus::from_u8(self.status.load(Ordering::Relaxed))
    }

    /// Only a backend known to be down is kept from traffic.
    pub fn allows_traffic(&self) -> bool {
        self.status() != HealthStatus::Down
    }

    /// Successes in a row so far.
    pub fn consecutive_ok(&self) -> u32 {
        self.consecutive_ok.load(Ordering::Relaxed)
    }

    /// Failures in a row so far.
    pub fn consecutive_failed(&self) -> u32 {
        self.consecutive_failed.load(Ordering::Relaxed)
    }

    /// How many times the status flipped.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    /// Weight share (percent) from the last verdict; 100 unless degraded.
    pub fn weight_percent(&self) -> u8 {
        match self.weight_percent.load(Ordering::Relaxed) {
            0 => 100,
            p => p,
        }
    }

    /// Sets the degraded share (1..=100).
    pub fn set_weight_percent(&self, percent: u8) {
        self.weight_percent
            .store(percent.clamp(1, 100), Ordering::Relaxed);
    }

    /// The last probe's result.
    pub fn last_check(&self) -> Option<CheckRecord> {
        self.last.lock().clone()
    }

    /// Starts from a status the previous process of an upgrade measured, so the new
    /// process neither sends traffic to a backend known down nor holds back a healthy
    /// one until its first probes conclude. Only an unknown status is replaced.
    pub fn seed(&self, status: HealthStatus, consecutive_ok: u32, consecutive_failed: u32) {
        if status == HealthStatus::Unknown
            || self
                .status
                .compare_exchange(
                    HealthStatus::Unknown as u8,
                    status as u8,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return;
        }
        self.consecutive_ok.store(consecutive_ok, Ordering::Relaxed);
        self.consecutive_failed
            .store(consecutive_failed, Ordering::Relaxed);
    }

    /// Forgets the status, e.g. when checks are removed from the config.
    pub fn reset(&self) {
        self.status
            .store(HealthStatus::Unknown as u8, Ordering::Relaxed);
        self.consecutive_ok.store(0, Ordering::Relaxed);
        self.consecutive_failed.store(0, Ordering::Relaxed);
    }

    /// Records one probe. Returns the new status when this probe flipped it.
    ///
    /// `Unknown` becomes `Up` on the first success and `Down` after `fall` failures;
    /// afterwards it takes `rise` successes or `fall` failures in a row to flip.
    pub fn observe(
        &self,
        record: CheckRecord,
        ok: bool,
        rise: u32,
        fall: u32,
    ) -> Option<HealthStatus> {
        *self.last.lock() = Some(record);
        let current = self.status();
        let next = if ok {
            self.consecutive_failed.store(0, Ordering::Relaxed);
            let n = self.consecutive_ok.fetch_add(1, Ordering::Relaxed) + 1;
            match current {
                HealthStatus::Unknown => Some(HealthStatus::Up),
                HealthStatus::Down if n >= rise => Some(HealthStatus::Up),
                _ => None,
            }
        } else {
            self.consecutive_ok.store(0, Ordering::Relaxed);
            let n = self.consecutive_failed.fetch_add(1, Ordering::Relaxed) + 1;
            match current {
                HealthStatus::Up | HealthStatus::Unknown if n >= fall => Some(HealthStatus::Down),
                _ => None,
            }
        };
        if let Some(status) = next {
            self.status.store(status as u8, Ordering::Relaxed);
            if current != HealthStatus::Unknown || status == HealthStatus::Down {
                self.transitions.fetch_add(1, Ordering::Relaxed);
            }
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec() -> CheckRecord {
        CheckRecord {
            result: "ok".into(),
            latency: Duration::ZERO,
            at_ms: 1,
        }
    }

    #[test]
    fn needs_fall_failures_to_go_down_and_rise_successes_to_come_back() {
        let h = HealthState::default();
        assert_eq!(h.observe(rec(), true, 2, 3), Some(HealthStatus::Up));
        assert_eq!(h.observe(rec(), false, 2, 3), None);
        assert_eq!(h.observe(rec(), false, 2, 3), None);
        assert_eq!(h.observe(rec(), false, 2, 3), Some(HealthStatus::Down));
        assert!(!h.allows_traffic());
        assert_eq!(h.observe(rec(), true, 2, 3), None);
        assert_eq!(h.observe(rec(), true, 2, 3), Some(HealthStatus::Up));
        assert_eq!(h.transitions(), 2);
    }

    #[test]
    fn a_seed_replaces_only_an_unknown_status() {
        let h = HealthState::default();
        h.seed(HealthStatus::Down, 0, 3);
        assert_eq!(h.status(), HealthStatus::Down);
        assert_eq!(h.consecutive_failed(), 3);
        // Two successes bring it back as after any down period (rise = 2).
        assert_eq!(h.observe(rec(), true, 2, 3), None);
        assert_eq!(h.observe(rec(), true, 2, 3), Some(HealthStatus::Up));
        h.seed(HealthStatus::Down, 0, 3);
        assert_eq!(h.status(), HealthStatus::Up, "a measured status wins");
    }

    #[test]
    fn alternating_results_never_flip() {
        let h = HealthState::default();
        h.observe(rec(), true, 2, 3);
        for i in 0..50 {
            assert_eq!(h.observe(rec(), i % 2 == 0, 2, 3), None);
        }
        assert_eq!(h.status(), HealthStatus::Up);
    }
}
