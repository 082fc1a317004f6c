//! The mock host: what [`crate::host`] calls when a policy runs natively, as in
//! `cargo test`. Each test thread has its own: log lines are recorded (and
//! printed, so `cargo test -- --nocapture` shows them), the clock is real until
//! a test sets it, and random numbers come from a fixed seed so a test sees the
//! same draws on every run.
//!
//! ```
//! use switchyard_policy::{host, testing};
//!
//! testing::set_now_ns(1_000);
//! testing::advance_ns(500);
//! assert_eq!(host::now_ns(), 1_500);
//! host::warn("spilling over");
//! assert_eq!(testing::take_logs(), [(host::Level::Warn, "spilling over".to_string())]);
//! ```

use std::cell::{Cell, RefCell};
use std::time::Instant;

use crate::host::Level;

/// The seed random numbers start from on every test thread.
pub const DEFAULT_SEED: u64 = 0x5eed_5eed_5eed_5eed;

thread_local! {
    static LOGS: RefCell<Vec<(Level, String)>> = const { RefCell::new(Vec::new()) };
    static CLOCK: Cell<Option<u64>> = const { Cell::new(None) };
    static RANDOM: Cell<u64> = const { Cell::new(DEFAULT_SEED) };
    static ORIGIN: Instant = Instant::now();
}

/// The log lines written on this thread since the last [`take_logs`].
pub fn take_logs() -> Vec<(Level, String)> {
    LOGS.take()
}

/// Freezes the clock at `ns`; [`advance_ns`] moves it.
pub fn set_now_ns(ns: u64) {
    CLOCK.set(Some(ns));
}

/// Moves a frozen clock forward (freezing it first at the current time).
pub fn advance_ns(ns: u64) {
    CLOCK.set(Some(now_ns().saturating_add(ns)));
}

/// Restarts the random sequence from `seed`.
pub fn seed_random(seed: u64) {
    RANDOM.set(seed);
}

pub(crate) fn log(level: Level, message: &str) {
    eprintln!("[plugin {level:?}] {message}");
    LOGS.with_borrow_mut(|logs| logs.push((level, message.to_string())));
}

pub(crate) fn now_ns() -> u64 {
    CLOCK.get().unwrap_or_else(|| {
        ORIGIN.with(|origin| u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
    })
}

pub(crate) fn random_u64() -> u64 {
    // splitmix64: every seed gives a well-mixed sequence.
    let state = RANDOM.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
    RANDOM.set(state);
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
