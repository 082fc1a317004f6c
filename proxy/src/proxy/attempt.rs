//! The guard a request holds while it is proxied: every count and permit it takes
//! (its route's, pool's and backend's in-flight counts, a half-open trial, a retry
//! taken from the budget) and whether its current try has recorded an outcome.
//!
//! Everything is given back on drop, so a client that goes away, a timeout that
//! drops the future, or any early return releases what was taken. A try dropped
//! before it recorded an outcome was cut short by the client: its trial goes back
//! to the breaker, and nothing is counted against the backend, its breaker or a
//! rollout guard.
//!
//! The forward loop drives it one step at a time: [`Attempt::enter`] a pool,
//! [`Attempt::admit`] a backend, send, [`Attempt::settle`] the outcome (or
//! [`Attempt::client_fault`]), then [`Attempt::take_retry`] and go round again.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::metrics::gauge::Gauge;

use super::failure::Failure;
use super::outcome;
use crate::breaker::{Rejected, Transition, Trial};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::router::Route;
use crate::upstream::{Backend, Pool};

/// Everything one request holds; see the module docs.
pub struct Attempt {
    route: Option<Gauge>,
    side: Option<Arc<Pool>>,
    current: Option<Try>,
    retry: Option<RetryToken>,
    tries: u32,
    /// The backend of the latest try once that try has ended, so the access log
    /// names the backend a failed request last tried.
    last: Option<Backend>,
    /// The tries that failed, in order, and why (empty, without an allocation,
    /// while none has).
    failures: Vec<(Backend, Failure)>,
}

/// How the current try stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TryState {
    /// Admitted, no outcome yet: dropping it now means the client went away.
    Pending,
    /// Its outcome went to the backend's counters and breaker.
    Settled,
    /// It ended by the client's fault (a broken or stalled request body).
    ClientFault,
}

/// One try at one backend: its in-flight count and, when half-open, its trial.
struct Try {
    pool: Arc<Pool>,
    backend: Backend,
    trial: Option<Trial>,
    state: TryState,
}

impl Drop for Try {
    fn drop(&mut self) {
        let state = &self.backend.state;
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
        if let Some(trial) = self.trial.take() {
            state.breaker.return_trial(trial);
        }
    }
}

/// A retry taken from a pool's budget and not yet sent; refunded if dropped unsent.
struct RetryToken {
    pool: Arc<Pool>,
    spent: bool,
}

impl Drop for RetryToken {
    fn drop(&mut self) {
        if !self.spent {
            self.pool.refund_retry_budget();
        }
    }
}

impl Default for Attempt {
    fn default() -> Self {
        Self::new()
    }
}

impl Attempt {
    /// A request that holds nothing yet.
    pub fn new() -> Self {
        Self {
            route: None,
            side: None,
            current: None,
            retry: None,
            tries: 0,
            last: None,
            failures: Vec::new(),
        }
    }

    /// Counts the request in flight on its route.
    pub fn route(&mut self, route: &Route) {
        let gauge = route.metrics.in_flight.clone();
        gauge.inc();
        if let Some(old) = self.route.replace(gauge) {
            old.dec();
        }
    }

    /// Moves the request to `pool` (its first pool, a backup, the other side of a
    /// split): counted in flight there, no longer on the pool it leaves.
    pub fn enter(&mut self, pool: &Arc<Pool>) {
        if self.side.as_ref().is_some_and(|p| Arc::ptr_eq(p, pool)) {
            return;
        }
        pool.traffic.enter();
        if let Some(old) = self.side.replace(Arc::clone(pool)) {
            old.traffic.leave();
        }
    }

    /// Admits the request to `backend`: takes a half-open trial if the breaker is
    /// half-open (or refuses), counts it in flight and as a request, and spends the
    /// retry taken for it. Ends the previous try first.
    pub fn admit(
        &mut self,
        pool: &Arc<Pool>,
        backend: &Backend,
        now_ms: u64,
    ) -> Result<Option<Transition>, Rejected> {
        self.end_try();
        let admission = backend
            .state
            .breaker
            .try_acquire(&pool.config.breaker, now_ms)?;
        backend.state.requests.fetch_add(1, Ordering::Relaxed);
        backend.state.in_flight.fetch_add(1, Ordering::AcqRel);
        if let Some(mut token) = self.retry.take() {
            token.spent = true;
        }
        self.tries += 1;
        self.current = Some(Try {
            pool: Arc::clone(pool),
            backend: backend.clone(),
            trial: admission.trial,
            state: TryState::Pending,
        });
        Ok(admission.transition)
    }

    /// Records how the current try went (counters, latency, breaker, rollout
    /// traffic); a half-open trial is consumed by it. At most once per try.
    pub fn settle(&mut self, outcome: Outcome, metrics: &Metrics) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if current.state != TryState::Pending {
            return;
        }
        current.state = TryState::Settled;
        // The breaker counts this outcome as the trial's result.
        current.trial = None;
        outcome::record(&current.pool, &current.backend, outcome, metrics);
    }

    /// The current try ended by the client's fault: nothing is recorded against the
    /// backend and its trial (if any) goes back to the breaker.
    pub fn client_fault(&mut self) {
        if let Some(current) = self.current.as_mut()
            && current.state == TryState::Pending
        {
            current.state = TryState::ClientFault;
        }
        self.end_try();
    }

    /// A response whose head was recorded as a success broke midway: counts against
    /// the backend (its breaker and the rollout guard see it).
    pub fn body_failed(&mut self, metrics: &Metrics) {
        if let Some(current) = &self.current
            && current.state == TryState::Settled
        {
            outcome::record(
                &current.pool,
                &current.backend,
                Outcome::BodyFailed,
                metrics,
            );
        }
    }

    /// Ends the current try (after a failure, before looking for another backend).
    pub fn end_try(&mut self) {
        if let Some(ended) = self.current.take() {
            self.last = Some(ended.backend.clone());
        }
    }

    /// Notes why the current try failed, for the access log.
    pub fn failed(&mut self, failure: Failure) {
        if let Some(current) = &self.current {
            self.failures.push((current.backend.clone(), failure));
        }
    }

    /// The tries that failed, in order, and why.
    pub fn failures(&self) -> &[(Backend, Failure)] {
        &self.failures
    }

    /// The backend the request is on, or the one it last tried: what the access log
    /// names.
    pub fn last_backend(&self) -> Option<&Backend> {
        self.current
            .as_ref()
            .map(|t| &t.backend)
            .or(self.last.as_ref())
    }

    /// Takes one retry from `pool`'s budget for the next try; `false` when the
    /// budget is spent. Refunded if the request ends before another try is admitted.
    pub fn take_retry(&mut self, pool: &Arc<Pool>) -> bool {
        if !pool.withdraw_retry_budget() {
            return false;
        }
        self.retry = Some(RetryToken {
            pool: Arc::clone(pool),
            spent: false,
        });
        true
    }

    /// The pool and backend of the current try.
    pub fn upstream(&self) -> Option<(&Arc<Pool>, &Backend)> {
        self.current.as_ref().map(|t| (&t.pool, &t.backend))
    }

    /// Tries admitted so far.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// Whether the current try is waiting for its outcome.
    pub fn pending(&self) -> bool {
        self.current
            .as_ref()
            .is_some_and(|t| t.state == TryState::Pending)
    }
}

impl Attempt {
    /// Gives back everything the request holds (also done on drop); the request is over.
    pub fn release(&mut self) {
        self.current = None;
        self.retry = None;
        if let Some(pool) = self.side.take() {
            pool.traffic.leave();
        }
        if let Some(gauge) = self.route.take() {
            gauge.dec();
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        self.release();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::breaker::BreakerState;
    use crate::config::Config;
    use crate::upstream::PoolPolicies;

    fn pool(breaker: &str) -> Arc<Pool> {
        let text = format!(
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
             [pool.app]\nbackends = [{{ address = \"127.0.0.1:9\" }}, {{ address = \"127.0.0.1:10\" }}]\n\
             [pool.app.breaker]\n{breaker}\n"
        );
        let config = Config::parse(std::path::Path::new("t.toml"), &text).unwrap();
        let pool = config.pools["app"].clone();
        Arc::new(Pool::build(pool, None, PoolPolicies::default()))
    }

    fn in_flight(pool: &Pool) -> Vec<u32> {
        pool.backends
            .iter()
            .map(|b| b.state.in_flight.load(Ordering::Relaxed))
            .collect()
    }

    #[test]
    fn dropping_a_pending_try_releases_everything_and_records_nothing() {
        let metrics = Arc::new(Metrics::new());
        let pool = pool("consecutive_failures = 1");
        let route = Route {
            name: "r".into(),
            target: crate::traffic::RouteTarget::Pool("app".into()),
            path_prefix: "/".into(),
            forward_original_path: false,
            metrics: metrics.route("r"),
        };
        let mut attempt = Attempt::new();
        attempt.route(&route);
        attempt.enter(&pool);
        attempt
            .admit(&pool, &pool.backends[0], crate::clock::now_ms())
            .unwrap();
        assert_eq!(in_flight(&pool), [1, 0]);
        assert_eq!(pool.traffic.in_flight(), 1);
        assert_eq!(route.metrics.in_flight.get(), 1);
        drop(attempt);
        assert_eq!(in_flight(&pool), [0, 0]);
        assert_eq!(pool.traffic.in_flight(), 0);
        assert_eq!(route.metrics.in_flight.get(), 0);
        let state = &pool.backends[0].state;
        assert_eq!(state.failures.load(Ordering::Relaxed), 0);
        assert_eq!(state.breaker.state(), BreakerState::Closed);
        assert_eq!(
            pool.traffic.sample().requests,
            0,
            "the rollout guard saw nothing"
        );
    }

    #[test]
    fn an_aborted_trial_goes_back_to_the_breaker() {
        let metrics = Arc::new(Metrics::new());
        let pool = pool("consecutive_failures = 1\nhalf_open_requests = 1\nopen_for = \"10ms\"");
        let backend = &pool.backends[0];
        let config = &pool.config.breaker;
        let now = crate::clock::now_ms();
        let _ = backend.state.breaker.record_failure(config, now, || true);
        let later = now + 20;
        let mut attempt = Attempt::new();
        attempt.enter(&pool);
        assert_eq!(
            attempt.admit(&pool, backend, later),
            Ok(Some(Transition::HalfOpened))
        );
        let mut second = Attempt::new();
        assert!(second.admit(&pool, backend, later).is_err(), "one trial");
        drop(attempt);
        assert!(
            second.admit(&pool, backend, later).is_ok(),
            "the trial came back"
        );
        second.settle(Outcome::Success(Duration::from_millis(1)), &metrics);
        assert_eq!(backend.state.breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_retry_never_sent_is_refunded() {
        let pool = pool("");
        let before = pool.retry_budget();
        let mut attempt = Attempt::new();
        assert!(attempt.take_retry(&pool));
        assert_eq!(pool.retry_budget(), before - 1);
        drop(attempt);
        assert_eq!(pool.retry_budget(), before, "cancelled during the backoff");

        let mut sent = Attempt::new();
        assert!(sent.take_retry(&pool));
        sent.admit(&pool, &pool.backends[1], crate::clock::now_ms())
            .unwrap();
        drop(sent);
        assert_eq!(pool.retry_budget(), before - 1, "a sent retry is spent");
    }

    #[test]
    fn a_client_fault_counts_nothing_against_the_backend() {
        let metrics = Arc::new(Metrics::new());
        let pool = pool("consecutive_failures = 1");
        let mut attempt = Attempt::new();
        attempt.enter(&pool);
        attempt
            .admit(&pool, &pool.backends[0], crate::clock::now_ms())
            .unwrap();
        attempt.client_fault();
        attempt.settle(Outcome::Reset, &metrics);
        assert_eq!(in_flight(&pool), [0, 0]);
        let state = &pool.backends[0].state;
        assert_eq!(state.failures.load(Ordering::Relaxed), 0);
        assert_eq!(state.breaker.state(), BreakerState::Closed);
    }
}
