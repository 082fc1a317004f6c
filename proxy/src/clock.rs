//! A cheap monotonic millisecond clock shared by health, breaker and slow start.
//!
//! Per-backend timestamps live in atomics as milliseconds since process start, so
//! the hot path compares integers instead of locking around `Instant`s.

use std::sync::OnceLock;
use std::time::Instant;

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Milliseconds since the process started (never 0, so 0 can mean "never").
pub fn now_ms() -> u64 {
    origin().elapsed().as_millis() as u64 + 1
}
