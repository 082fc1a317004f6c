//! The proxy's one clock: every timestamp of health, breaker, slow start, rollouts,
//! plugin quarantine and connection deadlines is read here.
//!
//! It is tokio's monotonic clock. In a running proxy a reading is one
//! `Instant::now()` (a vDSO call: no lock, no allocation). In a test whose runtime
//! pauses time (`#[tokio::test(start_paused = true)]`, `tokio::time::advance`) it
//! follows that paused time, and so do the timers (`tokio::time::sleep`) the same
//! code waits on: a breaker cool-down, a health-check interval or a rollout step
//! then takes milliseconds of real time in a test, and its result does not depend on
//! how loaded the machine is.
//!
//! Per-backend timestamps live in atomics as [`now_ms`] values, so the hot path
//! compares integers instead of locking around `Instant`s. Code that keeps an
//! `Instant` (a rollout step's deadline, a plugin's quarantine) uses [`Instant`],
//! which is `tokio::time::Instant`: the same clock. Durations of real work (a
//! probe's or a response's latency, a plugin call) are measured with
//! `std::time::Instant`: they are facts about the machine, not timers.

use std::sync::OnceLock;

/// The instant type of the clock: tokio's, so paused test time moves it.
pub use tokio::time::Instant;

/// What [`now_ms`] reads at its origin. Readings only ever mean something as
/// differences; starting a day up lets a test runtime whose paused time lags the
/// origin (it was built before the first reading) still read a time that moves,
/// instead of one stuck at the origin.
const ORIGIN_MS: u64 = 24 * 60 * 60 * 1000;

/// The real instant of the first reading (never a paused one, which may run ahead).
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(|| Instant::from_std(std::time::Instant::now()))
}

/// The current instant.
pub fn now() -> Instant {
    Instant::now()
}

/// The current time in milliseconds on the clock (never 0, so 0 can mean "never").
pub fn now_ms() -> u64 {
    ms_at(origin(), Instant::now())
}

/// `d` in milliseconds to the microsecond: what logs and JSON answers print for a
/// duration, `0.181` (three decimals at most) rather than `0.18085900000000002`.
pub fn millis(d: std::time::Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// `d` in microseconds to the nanosecond (three decimals at most), for the cost of
/// a plugin call.
pub fn micros(d: std::time::Duration) -> f64 {
    d.as_nanos() as f64 / 1000.0
}

/// `at` in whole milliseconds on a clock that reads [`ORIGIN_MS`] at `origin`,
/// rounded down the same way on both sides of the origin so that differences of
/// readings are exact. Whole seconds and the millisecond part are added in 64 bits:
/// no 128-bit division on a path every request takes several times.
fn ms_at(origin: Instant, at: Instant) -> u64 {
    let ms = match at.checked_duration_since(origin) {
        Some(after) => ORIGIN_MS.saturating_add(whole_ms(after)),
        // Before the origin: rounding the reading down means rounding the
        // distance back up.
        None => {
            let before = origin - at;
            let partial = !before.subsec_nanos().is_multiple_of(1_000_000);
            ORIGIN_MS.saturating_sub(whole_ms(before).saturating_add(u64::from(partial)))
        }
    };
    ms.max(1)
}

/// `d` in whole milliseconds, rounded down.
fn whole_ms(d: std::time::Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1000)
        .saturating_add(u64::from(d.subsec_millis()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations_print_with_three_decimals_at_most() {
        assert_eq!(
            millis(Duration::from_nanos(180_859_000)).to_string(),
            "180.859"
        );
        assert_eq!(millis(Duration::from_nanos(180_859)).to_string(), "0.18");
        assert_eq!(millis(Duration::from_nanos(180_999)).to_string(), "0.18");
        assert_eq!(millis(Duration::from_secs(2)).to_string(), "2000");
        assert_eq!(micros(Duration::from_nanos(12_345)).to_string(), "12.345");
        for n in 0..5_000u64 {
            let printed = millis(Duration::from_micros(n * 7919)).to_string();
            let decimals = printed.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(decimals <= 3, "{printed}");
        }
    }

    #[test]
    fn readings_on_both_sides_of_the_origin_round_alike() {
        let origin = Instant::now() + Duration::from_secs(5);
        let before = origin - Duration::from_micros(2_500);
        assert_eq!(ms_at(origin, before), ORIGIN_MS - 3);
        assert_eq!(
            ms_at(origin, before + Duration::from_millis(10)),
            ORIGIN_MS + 7
        );
        let early = ms_at(origin, origin - Duration::from_secs(3));
        let later = ms_at(origin, origin - Duration::from_secs(1));
        assert_eq!(later - early, 2000);
        assert_eq!(ms_at(origin, origin), ORIGIN_MS);
        // Whole milliseconds either side, and a reading past the origin by more
        // than a second.
        assert_eq!(
            ms_at(origin, origin - Duration::from_millis(4)),
            ORIGIN_MS - 4
        );
        assert_eq!(
            ms_at(origin, origin + Duration::from_nanos(3_007_999_999)),
            ORIGIN_MS + 3_007
        );
    }

    #[tokio::test(start_paused = true)]
    async fn follows_paused_time_to_the_millisecond() {
        let before = now_ms();
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(now_ms() - before, 1500);
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(now_ms() - before, 3_601_500);
    }
}
