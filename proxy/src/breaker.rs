//! Per-backend circuit breaker fed by real traffic: closed → open → half-open → closed.
//!
//! "Open" means traffic is *blocked* (the electrical sense). The hot path reads a
//! few atomics; the state transitions, which are rare, take a short lock so two
//! racing failures cannot open the breaker twice. Open periods grow exponentially
//! with each re-open from half-open and are capped by `max_open_for`.
//!
//! A half-open breaker hands out [`Trial`] tokens. A trial ends by reporting an
//! outcome, or by being given back ([`Breaker::return_trial`]) when its request was
//! cancelled; a trial that does neither expires after `trial_timeout`, and the
//! breaker then admits fresh trials, so a lost one can never wedge it half-open.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;

use crate::config::BreakerConfig;

const BUCKETS: u64 = 10;

/// The breaker's state as shown in `/status` and metrics.
#[repr(u8)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

impl BreakerState {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }

    /// Lower-case name for JSON and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half-open",
        }
    }
}

/// Why the breaker opened, for the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TripReason {
    ConsecutiveFailures(u32),
    ErrorRate {
        failures: u32,
        requests: u32,
    },
    TrialFailed,
    /// A recovery plugin decided.
    Policy,
}

impl std::fmt::Display for TripReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TripReason::ConsecutiveFailures(n) => write!(f, "{n} consecutive failures"),
            TripReason::ErrorRate { failures, requests } => {
                write!(f, "{failures} of {requests} requests failed in the window")
            }
            TripReason::TrialFailed => write!(f, "a half-open trial request failed"),
            TripReason::Policy => write!(f, "the recovery policy decided"),
        }
    }
}

/// The breaker refused a request: open, or half-open with no trial left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker is open")]
pub struct Rejected;

/// A half-open trial handed to one request. Report its outcome (which consumes it)
/// or give it back with [`Breaker::return_trial`]; it belongs to one half-open
/// period, so a late return never adds a permit to a later one.
#[must_use = "a trial is reported or returned to the breaker"]
#[derive(Debug, PartialEq, Eq)]
pub struct Trial {
    epoch: u64,
}

/// What [`Breaker::try_acquire`] granted: maybe a transition to log, and the trial
/// token when the request is a half-open trial.
#[derive(Debug, PartialEq, Eq)]
pub struct Admission {
    pub transition: Option<Transition>,
    pub trial: Option<Trial>,
}

/// A state change the caller should log and export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Opened {
        reason: TripReason,
        open_for: Duration,
    },
    HalfOpened,
    Closed,
}

/// One time bucket of the sliding error-rate window.
#[derive(Debug, Default)]
struct Bucket {
    epoch: AtomicU64,
    total: AtomicU32,
    failed: AtomicU32,
}

/// Breaker state of one backend; the policy (thresholds) is passed in on each call so a
/// config reload can change it without losing the state.
#[derive(Debug, Default)]
pub struct Breaker {
    state: AtomicU8,
    open_until_ms: AtomicU64,
    trial_permits: AtomicU32,
    trial_successes: AtomicU32,
    /// Counts half-open periods (and trial re-arms); a [`Trial`] carries the value
    /// it was taken under.
    trial_epoch: AtomicU64,
    /// When the trials handed out in this half-open period expire (clock ms).
    trial_deadline_ms: AtomicU64,
    consecutive_failures: AtomicU32,
    /// Re-opens in a row without a full recovery; drives the exponential open period.
    reopen_streak: AtomicU32,
    ejections: AtomicU64,
    buckets: [Bucket; BUCKETS as usize],
    transition: Mutex<()>,
}

impl Breaker {
    /// Current state.
    pub fn state(&self) -> BreakerState {
        BreakerState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Failures in a row from real traffic.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures.load(Ordering::Relaxed)
    }

    /// How many times this backend has been ejected.
    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }

    /// Milliseconds (clock) until which an open breaker blocks traffic.
    pub fn open_until_ms(&self) -> u64 {
        self.open_until_ms.load(Ordering::Relaxed)
    }

    /// Requests and failures currently in the sliding window.
    pub fn window_counts(&self, window: Duration, now_ms: u64) -> (u32, u32) {
        let bucket_ms = bucket_ms(window);
        let current = now_ms / bucket_ms;
        let mut total = 0;
        let mut failed = 0;
        for b in &self.buckets {
            let epoch = b.epoch.load(Ordering::Acquire);
            if epoch + BUCKETS > current && epoch <= current {
                total += b.total.load(Ordering::Relaxed);
                failed += b.failed.load(Ordering::Relaxed);
            }
        }
        (total, failed)
    }

    /// Whether a request could be admitted now. No side effects: selection calls it on
    /// every candidate and only the chosen one calls [`Breaker::try_acquire`].
    pub fn may_admit(&self, now_ms: u64) -> bool {
        match self.state() {
            BreakerState::Closed => true,
            BreakerState::Open => now_ms >= self.open_until_ms.load(Ordering::Relaxed),
            BreakerState::HalfOpen => {
                self.trial_permits.load(Ordering::Relaxed) > 0
                    || now_ms >= self.trial_deadline_ms.load(Ordering::Relaxed)
            }
        }
    }

    /// Claims admission for one request. An expired open period turns half-open here,
    /// and a half-open breaker hands out at most `half_open_requests` trials at once;
    /// trials that neither report nor come back within `trial_timeout` expire.
    pub fn try_acquire(&self, config: &BreakerConfig, now_ms: u64) -> Result<Admission, Rejected> {
        match self.state() {
            BreakerState::Closed => Ok(Admission {
                transition: None,
                trial: None,
            }),
            BreakerState::Open => {
                if now_ms < self.open_until_ms.load(Ordering::Relaxed) {
                    return Err(Rejected);
                }
                let transition = {
                    let _guard = self.transition.lock();
                    if self.state() == BreakerState::Open {
                        self.arm_trials(config.half_open_requests, config, now_ms);
                        self.state
                            .store(BreakerState::HalfOpen as u8, Ordering::Release);
                        Some(Transition::HalfOpened)
                    } else {
                        None
                    }
                };
                self.take_trial_permit(config, now_ms)
                    .map(|trial| Admission { transition, trial })
            }
            BreakerState::HalfOpen => {
                self.take_trial_permit(config, now_ms)
                    .map(|trial| Admission {
                        transition: None,
                        trial,
                    })
            }
        }
    }

    /// Gives back a trial whose request ended without an outcome (the client went
    /// away, or the failure was the client's): the next request may take it.
    pub fn return_trial(&self, trial: Trial) {
        if self.state() != BreakerState::HalfOpen
            || self.trial_epoch.load(Ordering::Acquire) != trial.epoch
        {
            return;
        }
        let _guard = self.transition.lock();
        if self.state() == BreakerState::HalfOpen
            && self.trial_epoch.load(Ordering::Acquire) == trial.epoch
        {
            self.trial_permits.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Starts a fresh set of `trials` trials (a new epoch); the caller holds the lock.
    fn arm_trials(&self, trials: u32, config: &BreakerConfig, now_ms: u64) {
        self.trial_epoch.fetch_add(1, Ordering::AcqRel);
        self.trial_permits.store(trials.max(1), Ordering::Relaxed);
        self.trial_successes.store(0, Ordering::Relaxed);
        self.trial_deadline_ms.store(
            now_ms.saturating_add(config.trial_timeout.as_millis() as u64),
            Ordering::Relaxed,
        );
    }

    fn take_trial_permit(
        &self,
        config: &BreakerConfig,
        now_ms: u64,
    ) -> Result<Option<Trial>, Rejected> {
        loop {
            if self.state() == BreakerState::Closed {
                return Ok(None);
            }
            let epoch = self.trial_epoch.load(Ordering::Acquire);
            if self
                .trial_permits
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |p| p.checked_sub(1))
                .is_ok()
            {
                return Ok(Some(Trial { epoch }));
            }
            if now_ms < self.trial_deadline_ms.load(Ordering::Relaxed) {
                return Err(Rejected);
            }
            // Every trial of this period is out and none reported in time: they
            // are lost (a cancelled request whose token never came back). Admit
            // a fresh set rather than stay half-open for good.
            let _guard = self.transition.lock();
            if self.state() == BreakerState::HalfOpen
                && self.trial_epoch.load(Ordering::Acquire) == epoch
                && now_ms >= self.trial_deadline_ms.load(Ordering::Relaxed)
            {
                self.arm_trials(config.half_open_requests, config, now_ms);
            }
        }
    }

    /// Counts one outcome (consecutive failures and the sliding window) without
    /// deciding anything; returns the consecutive failures after it. A recovery plugin
    /// reads these counts and decides itself.
    pub fn observe(&self, window: Duration, now_ms: u64, failed: bool) -> u32 {
        self.count(window, now_ms, failed);
        if failed {
            self.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.consecutive_failures.store(0, Ordering::Relaxed);
            0
        }
    }

    /// Records a successful request.
    pub fn record_success(&self, config: &BreakerConfig, now_ms: u64) -> Option<Transition> {
        self.observe(config.window, now_ms, false);
        self.after_success(config)
    }

    /// The native decision after a counted success: enough half-open trials close.
    pub fn after_success(&self, config: &BreakerConfig) -> Option<Transition> {
        if self.state() != BreakerState::HalfOpen {
            return None;
        }
        let successes = self.trial_successes.fetch_add(1, Ordering::AcqRel) + 1;
        if successes < config.half_open_requests.max(1) {
            return None;
        }
        let _guard = self.transition.lock();
        if self.state() != BreakerState::HalfOpen {
            return None;
        }
        self.reset_window();
        self.reopen_streak.store(0, Ordering::Relaxed);
        self.state
            .store(BreakerState::Closed as u8, Ordering::Release);
        Some(Transition::Closed)
    }

    /// Records a failed request (5xx, connect error, reset, timeout). `may_eject` is
    /// asked only when the thresholds are crossed, so the pool can enforce its
    /// `max_ejected_percent` without work on every request.
    pub fn record_failure(
        &self,
        config: &BreakerConfig,
        now_ms: u64,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Transition> {
        let consecutive = self.observe(config.window, now_ms, true);
        self.after_failure(config, now_ms, consecutive, may_eject)
    }

    /// The native decision after a counted failure: the thresholds of `config`.
    pub fn after_failure(
        &self,
        config: &BreakerConfig,
        now_ms: u64,
        consecutive: u32,
        may_eject: impl FnOnce() -> bool,
    ) -> Option<Transition> {
        let reason = match self.state() {
            BreakerState::Open => return None,
            BreakerState::HalfOpen => TripReason::TrialFailed,
            BreakerState::Closed => {
                if config.consecutive_failures > 0 && consecutive >= config.consecutive_failures {
                    TripReason::ConsecutiveFailures(consecutive)
                } else if let Some(rate) = config.error_rate {
                    let (requests, failures) = self.window_counts(config.window, now_ms);
                    if requests >= config.min_requests.max(1)
                        && f64::from(failures) >= rate * f64::from(requests)
                    {
                        TripReason::ErrorRate { failures, requests }
                    } else {
                        return None;
                    }
                } else {
                    return None;
                }
            }
        };
        if reason != TripReason::TrialFailed && !may_eject() {
            return None;
        }
        let _guard = self.transition.lock();
        let state = self.state();
        if state == BreakerState::Open
            || (state == BreakerState::Closed && reason == TripReason::TrialFailed)
        {
            return None;
        }
        let streak = if reason == TripReason::TrialFailed {
            self.reopen_streak.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.reopen_streak.load(Ordering::Relaxed)
        };
        let open_for = open_period(config, streak);
        self.open_until_ms
            .store(now_ms + open_for.as_millis() as u64, Ordering::Relaxed);
        self.trial_permits.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.state
            .store(BreakerState::Open as u8, Ordering::Release);
        Some(Transition::Opened { reason, open_for })
    }

    /// Forces the breaker open (used by recovery plugins).
    pub fn force_open(&self, open_for: Duration, now_ms: u64) -> Option<Transition> {
        let _guard = self.transition.lock();
        if self.state() == BreakerState::Open {
            return None;
        }
        self.open_until_ms
            .store(now_ms + open_for.as_millis() as u64, Ordering::Relaxed);
        self.trial_permits.store(0, Ordering::Relaxed);
        self.ejections.fetch_add(1, Ordering::Relaxed);
        self.state
            .store(BreakerState::Open as u8, Ordering::Release);
        Some(Transition::Opened {
            reason: TripReason::Policy,
            open_for,
        })
    }

    /// Moves an open breaker to half-open now, with `trials` trial requests (used by
    /// recovery plugins).
    pub fn force_half_open(
        &self,
        trials: u32,
        config: &BreakerConfig,
        now_ms: u64,
    ) -> Option<Transition> {
        let _guard = self.transition.lock();
        if self.state() == BreakerState::HalfOpen {
            return None;
        }
        self.arm_trials(trials, config, now_ms);
        self.state
            .store(BreakerState::HalfOpen as u8, Ordering::Release);
        Some(Transition::HalfOpened)
    }

    /// Forces the breaker closed (used by recovery plugins and the admin API).
    pub fn force_close(&self) -> Option<Transition> {
        let _guard = self.transition.lock();
        if self.state() == BreakerState::Closed {
            return None;
        }
        self.reset_window();
        self.consecutive_failures.store(0, Ordering::Relaxed);
        self.reopen_streak.store(0, Ordering::Relaxed);
        self.state
            .store(BreakerState::Closed as u8, Ordering::Release);
        Some(Transition::Closed)
    }

    fn count(&self, window: Duration, now_ms: u64, failed: bool) {
        let current = now_ms / bucket_ms(window);
        let bucket = &self.buckets[(current % BUCKETS) as usize];
        let epoch = bucket.epoch.load(Ordering::Acquire);
        if epoch != current
            && bucket
                .epoch
                .compare_exchange(epoch, current, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            bucket.total.store(0, Ordering::Relaxed);
            bucket.failed.store(0, Ordering::Relaxed);
        }
        bucket.total.fetch_add(1, Ordering::Relaxed);
        if failed {
            bucket.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn reset_window(&self) {
        for b in &self.buckets {
            b.total.store(0, Ordering::Relaxed);
            b.failed.store(0, Ordering::Relaxed);
        }
    }
}

fn bucket_ms(window: Duration) -> u64 {
    (window.as_millis() as u64 / BUCKETS).max(1)
}

/// `open_for * 2^streak`, capped by `max_open_for`.
fn open_period(config: &BreakerConfig, streak: u32) -> Duration {
    let factor = 1u32.checked_shl(streak.min(20)).unwrap_or(u32::MAX);
    config
        .open_for
        .checked_mul(factor)
        .unwrap_or(config.max_open_for)
        .min(config.max_open_for)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            error_rate: None,
            min_requests: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_millis(100),
            max_open_for: Duration::from_millis(350),
            half_open_requests: 2,
            max_ejected_percent: 50,
            trial_timeout: Duration::from_millis(500),
            plugin: None,
        }
    }

    fn trip(b: &Breaker, c: &BreakerConfig, now: u64) {
        for _ in 0..c.consecutive_failures {
            let _ = b.record_failure(c, now, || true);
        }
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn opens_after_consecutive_failures_then_half_opens_and_closes() {
        let b = Breaker::default();
        let c = config();
        assert_eq!(b.record_failure(&c, 1000, || true), None);
        assert_eq!(b.record_failure(&c, 1000, || true), None);
        assert!(matches!(
            b.record_failure(&c, 1000, || true),
            Some(Transition::Opened { open_for, .. }) if open_for == Duration::from_millis(100)
        ));
        assert!(!b.may_admit(1050));
        assert!(b.try_acquire(&c, 1050).is_err());
        let first = b.try_acquire(&c, 1100).unwrap();
        assert_eq!(first.transition, Some(Transition::HalfOpened));
        assert!(first.trial.is_some());
        let second = b.try_acquire(&c, 1100).unwrap();
        assert_eq!(second.transition, None);
        assert!(second.trial.is_some());
        assert!(b.try_acquire(&c, 1100).is_err(), "only two trials");
        assert_eq!(b.record_success(&c, 1110), None);
        assert_eq!(b.record_success(&c, 1120), Some(Transition::Closed));
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_returned_trial_admits_the_next_request() {
        let b = Breaker::default();
        let c = BreakerConfig {
            half_open_requests: 1,
            ..config()
        };
        trip(&b, &c, 0);
        let trial = b.try_acquire(&c, 100).unwrap().trial.unwrap();
        assert!(b.try_acquire(&c, 110).is_err());
        assert!(!b.may_admit(110));
        b.return_trial(trial);
        assert!(b.may_admit(120));
        let again = b.try_acquire(&c, 120).unwrap();
        assert!(again.trial.is_some());
        assert_eq!(b.record_success(&c, 130), Some(Transition::Closed));
    }

    #[test]
    fn a_lost_trial_expires_and_fresh_trials_are_admitted() {
        let b = Breaker::default();
        let c = BreakerConfig {
            half_open_requests: 1,
            ..config()
        };
        trip(&b, &c, 0);
        // The trial is taken and never reported nor returned.
        let lost = b.try_acquire(&c, 100).unwrap().trial.unwrap();
        assert!(
            b.try_acquire(&c, 599).is_err(),
            "still within trial_timeout"
        );
        assert!(b.may_admit(600));
        let fresh = b.try_acquire(&c, 600).unwrap();
        assert!(fresh.trial.is_some(), "expired trials are re-armed");
        // The lost trial comes back late: it belongs to the old epoch and adds nothing.
        b.return_trial(lost);
        assert!(b.try_acquire(&c, 610).is_err());
        assert_eq!(b.record_success(&c, 620), Some(Transition::Closed));
    }

    #[test]
    fn a_trial_returned_after_a_reopen_adds_nothing() {
        let b = Breaker::default();
        let c = config();
        trip(&b, &c, 0);
        let a = b.try_acquire(&c, 100).unwrap().trial.unwrap();
        let _b2 = b.try_acquire(&c, 100).unwrap().trial.unwrap();
        assert!(matches!(
            b.record_failure(&c, 105, || true),
            Some(Transition::Opened {
                reason: TripReason::TrialFailed,
                ..
            })
        ));
        b.return_trial(a);
        assert!(
            !b.may_admit(150),
            "open again: a returned trial does not admit"
        );
        let until = b.open_until_ms();
        let next = b.try_acquire(&c, until).unwrap();
        assert_eq!(next.transition, Some(Transition::HalfOpened));
        let _ = b.try_acquire(&c, until).unwrap();
        assert!(
            b.try_acquire(&c, until).is_err(),
            "exactly half_open_requests trials"
        );
    }

    #[test]
    fn failed_trial_reopens_for_longer_up_to_the_cap() {
        let b = Breaker::default();
        let c = config();
        for _ in 0..3 {
            b.record_failure(&c, 0, || true);
        }
        let mut now = 0;
        let mut periods = Vec::new();
        for _ in 0..3 {
            now = b.open_until_ms();
            let _trial = b.try_acquire(&c, now).unwrap().trial;
            match b.record_failure(&c, now, || true) {
                Some(Transition::Opened { open_for, .. }) => periods.push(open_for.as_millis()),
                other => panic!("expected re-open, got {other:?}"),
            }
        }
        assert_eq!(periods, vec![200, 350, 350]);
        assert!(now > 0);
    }

    #[test]
    fn error_rate_needs_min_requests() {
        let b = Breaker::default();
        let c = BreakerConfig {
            consecutive_failures: 0,
            error_rate: Some(0.5),
            ..config()
        };
        for i in 0..9 {
            let t = if i % 2 == 0 {
                b.record_failure(&c, 500, || true)
            } else {
                b.record_success(&c, 500)
            };
            assert_eq!(t, None);
        }
        assert!(matches!(
            b.record_failure(&c, 500, || true),
            Some(Transition::Opened {
                reason: TripReason::ErrorRate {
                    failures: 6,
                    requests: 10
                },
                ..
            })
        ));
    }

    /// The breaker driven by the proxy's clock in paused time: each period is exact
    /// to the millisecond, and a cool-down of seconds takes none of the test's time.
    #[tokio::test(start_paused = true)]
    async fn cool_down_trials_and_close_follow_the_clock() {
        use crate::clock::now_ms;
        use tokio::time::advance;
        let b = Breaker::default();
        let c = BreakerConfig {
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(300),
            trial_timeout: Duration::from_secs(10),
            ..config()
        };
        trip(&b, &c, now_ms());

        advance(Duration::from_millis(29_999)).await;
        assert!(!b.may_admit(now_ms()), "open for the whole cool-down");
        assert_eq!(b.try_acquire(&c, now_ms()), Err(Rejected));
        advance(Duration::from_millis(1)).await;
        assert!(b.may_admit(now_ms()), "the cool-down is over");
        let first = b.try_acquire(&c, now_ms()).unwrap();
        assert_eq!(first.transition, Some(Transition::HalfOpened));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let second = b.try_acquire(&c, now_ms()).unwrap();
        assert!(first.trial.is_some() && second.trial.is_some());
        assert_eq!(
            b.try_acquire(&c, now_ms()),
            Err(Rejected),
            "half_open_requests = 2 trials at once"
        );

        // Neither trial reports: they stay out until trial_timeout, then fresh
        // trials are admitted.
        advance(Duration::from_millis(9_999)).await;
        assert!(!b.may_admit(now_ms()));
        advance(Duration::from_millis(1)).await;
        let fresh = b.try_acquire(&c, now_ms()).unwrap();
        assert!(
            fresh.trial.is_some(),
            "lost trials expire after trial_timeout"
        );
        let _ = b.try_acquire(&c, now_ms()).unwrap();

        assert_eq!(b.record_success(&c, now_ms()), None, "one of two trials");
        assert_eq!(b.record_success(&c, now_ms()), Some(Transition::Closed));
        assert!(b.may_admit(now_ms()));
        assert_eq!(b.consecutive_failures(), 0);
    }

    /// A failed trial re-opens for twice as long each time, up to `max_open_for`,
    /// and a full recovery starts the next ejection from `open_for` again.
    #[tokio::test(start_paused = true)]
    async fn reopen_periods_double_up_to_the_cap_in_paused_time() {
        use crate::clock::now_ms;
        use tokio::time::{advance, sleep};
        let b = Breaker::default();
        let c = BreakerConfig {
            open_for: Duration::from_secs(10),
            max_open_for: Duration::from_secs(60),
            half_open_requests: 1,
            ..config()
        };
        trip(&b, &c, now_ms());
        let mut periods = Vec::new();
        for _ in 0..4 {
            let opened = now_ms();
            let until = b.open_until_ms();
            periods.push(until - opened);
            advance(Duration::from_millis(until - opened - 1)).await;
            assert!(!b.may_admit(now_ms()));
            advance(Duration::from_millis(1)).await;
            let _trial = b.try_acquire(&c, now_ms()).unwrap().trial;
            assert!(matches!(
                b.record_failure(&c, now_ms(), || true),
                Some(Transition::Opened {
                    reason: TripReason::TrialFailed,
                    ..
                })
            ));
        }
        assert_eq!(periods, vec![10_000, 20_000, 40_000, 60_000]);

        sleep(Duration::from_secs(60)).await;
        let _trial = b.try_acquire(&c, now_ms()).unwrap().trial;
        assert_eq!(b.record_success(&c, now_ms()), Some(Transition::Closed));
        trip(&b, &c, now_ms());
        assert_eq!(b.open_until_ms() - now_ms(), 10_000, "the streak was reset");
    }

    #[test]
    fn ejection_cap_keeps_it_closed() {
        let b = Breaker::default();
        let c = config();
        for _ in 0..10 {
            assert_eq!(b.record_failure(&c, 0, || false), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
    }
}
