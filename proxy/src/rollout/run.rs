//! The task that walks a rollout's steps, judges each window and rolls back on its own.
//!
//! The walk is the same whoever runs it; a [`Driver`] is what it acts through: the
//! local proxy (its routes and its own counters), or a fleet (the shared state in
//! etcd and the sum of every instance's counters).

use std::future::Future;
use std::sync::Arc;

use tracing::{info, warn};

use super::{Rollout, RolloutState, step_target, tick};
use crate::clock::Instant;
use crate::rollout::TrafficSample;
use crate::traffic::RouteTarget;

/// A step that has not seen `min_requests` on the new side is held this many extra
/// intervals; a rollout never advances on a step it could not judge.
const MAX_EXTENSIONS: u32 = 3;

/// What a rollout acts through.
pub trait Driver: Send + Sync + 'static {
    /// Points the route at the `target` of step `index` (`percent` on the new side).
    /// `Ok(false)` when the rollout was stopped meanwhile; an error rolls the rollout
    /// back.
    fn set_step(
        &self,
        rollout: &Rollout,
        index: usize,
        percent: u32,
        target: RouteTarget,
    ) -> impl Future<Output = Result<bool, String>> + Send;

    /// A pool's cumulative traffic counters (`None`: the pool is gone).
    fn traffic(&self, pool: &str) -> Option<TrafficSample>;

    /// Sends the route back to the old pool and marks the rollout rolled back.
    fn roll_back(&self, rollout: &Rollout, reason: String) -> impl Future<Output = ()> + Send;

    /// Marks the rollout completed (the last step already put all traffic on the new pool).
    fn complete(&self, rollout: &Rollout) -> impl Future<Output = ()> + Send;

    /// The rollout's token fired from outside (shutdown, lost leadership).
    fn stopped(&self, rollout: &Rollout);
}

/// Runs `rollout` from its first step to completion, rollback or cancellation.
pub async fn run<D: Driver>(driver: D, rollout: Arc<Rollout>) {
    run_from(driver, rollout, 0).await;
}

/// Runs `rollout` from step `first` on (a fleet rollout taken over by a new leader
/// resumes where it stood; the step is held a full interval again).
pub async fn run_from<D: Driver>(driver: D, rollout: Arc<Rollout>, first: usize) {
    let token = rollout.cancelled().clone();
    let route = rollout.route.as_str();
    let steps = rollout.plan.steps.clone();
    for (index, percent) in steps.into_iter().enumerate().skip(first) {
        // The step is reported (in /status) once its split is in effect.
        match driver
            .set_step(&rollout, index, percent, step_target(&rollout, percent))
            .await
        {
            Ok(true) => rollout.enter_step(index, percent),
            Ok(false) => {
                driver.stopped(&rollout);
                return;
            }
            Err(e) => {
                driver
                    .roll_back(&rollout, format!("cannot apply step {percent}%: {e}"))
                    .await;
                return;
            }
        }
        info!(route, step = index, percent, to = %rollout.to, "rollout step");
        let (Some(green_start), Some(blue_start)) =
            (driver.traffic(&rollout.to), driver.traffic(&rollout.from))
        else {
            driver
                .roll_back(&rollout, "a pool of the rollout disappeared".into())
                .await;
            return;
        };
        let mut deadline = Instant::now() + rollout.plan.interval;
        let mut extensions = 0;
        let every = tick(rollout.plan.interval);
        loop {
            let now = Instant::now();
            let wait = deadline.saturating_duration_since(now).min(every);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = token.cancelled() => {
                    driver.stopped(&rollout);
                    return;
                }
            }
            let (Some(green), Some(blue)) =
                (driver.traffic(&rollout.to), driver.traffic(&rollout.from))
            else {
                driver
                    .roll_back(&rollout, "a pool of the rollout disappeared".into())
                    .await;
                return;
            };
            let verdict = rollout
                .plan
                .guard
                .judge(green.since(&green_start), blue.since(&blue_start));
            let (healthy, judged) = (verdict.healthy, verdict.judged);
            let detail = verdict.detail.clone();
            rollout.record(verdict);
            if !healthy {
                warn!(route, step = index, percent, from = %rollout.from, to = %rollout.to,
                    reason = %detail, "rollout guard broken: rolling back");
                driver
                    .roll_back(&rollout, format!("step {index} ({percent}%): {detail}"))
                    .await;
                return;
            }
            if Instant::now() < deadline {
                continue;
            }
            if judged {
                info!(route, step = index, percent, verdict = %detail, "rollout step held");
                break;
            }
            if extensions == MAX_EXTENSIONS {
                warn!(route, step = index, percent, reason = %detail,
                    "rollout step could not be judged: rolling back");
                let reason = format!(
                    "step {index} ({percent}%): {detail} after {} intervals",
                    MAX_EXTENSIONS + 1
                );
                driver.roll_back(&rollout, reason).await;
                return;
            }
            extensions += 1;
            deadline += rollout.plan.interval;
            info!(route, step = index, percent, verdict = %detail,
                "not enough traffic to judge the step yet: holding it one more interval");
        }
    }
    driver.complete(&rollout).await;
}

/// Marks a rollout whose token was cancelled from outside (shutdown) as aborted;
/// one stopped by abort, supersede or reload is already marked.
pub fn stopped_by_shutdown(rollout: &Rollout) {
    if rollout.finish(
        RolloutState::Aborted,
        Some("stopped: the proxy is shutting down".into()),
    ) {
        info!(route = %rollout.route, "rollout stopped by shutdown");
    }
}

/// Marks a rollout completed and logs it; `false` if it had already ended.
pub fn completed(rollout: &Rollout) -> bool {
    let done = rollout.finish(RolloutState::Completed, None);
    if done {
        info!(route = %rollout.route, to = %rollout.to, "rollout completed: all traffic on the new pool");
    }
    done
}

/// Marks a rollout rolled back and logs it; `false` if it had already ended.
pub fn rolled_back(rollout: &Rollout, reason: &str) -> bool {
    let done = rollout.finish(RolloutState::RolledBack, Some(reason.to_string()));
    if done {
        warn!(route = %rollout.route, from = %rollout.from, %reason, "rollout rolled back: all traffic on the old pool");
    }
    done
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::time::Duration;

    use parking_lot::Mutex;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::clock;
    use crate::rollout::{Guard, Observation, Plan, PoolTraffic};

    /// What the walk did, in milliseconds of the clock since the rollout began.
    #[derive(Debug, Clone, PartialEq)]
    enum Event {
        Step { at_ms: u64, percent: u32 },
        RolledBack { at_ms: u64, reason: String },
        Completed { at_ms: u64 },
    }

    /// A route over two pools whose counters a traffic task feeds, split as the walk
    /// last said; it records what the walk did and when.
    struct Route {
        start_ms: u64,
        percent: AtomicU32,
        blue: PoolTraffic,
        green: PoolTraffic,
        green_fails: AtomicBool,
        events: Mutex<Vec<Event>>,
    }

    impl Route {
        fn new() -> Arc<Route> {
            Arc::new(Route {
                start_ms: clock::now_ms(),
                percent: AtomicU32::new(0),
                blue: PoolTraffic::default(),
                green: PoolTraffic::default(),
                green_fails: AtomicBool::new(false),
                events: Mutex::new(Vec::new()),
            })
        }

        fn at_ms(&self) -> u64 {
            clock::now_ms() - self.start_ms
        }

        fn events(&self) -> Vec<Event> {
            self.events.lock().clone()
        }

        /// Ten requests every 100 ms, spread evenly by the current step.
        async fn serve(self: Arc<Self>) {
            let mut sent = 0u32;
            loop {
                for _ in 0..10 {
                    sent += 1;
                    let percent = self.percent.load(Ordering::Relaxed);
                    let on_green = (sent * percent) % 100 < percent;
                    let answered = Observation::Answered(Duration::from_millis(2));
                    if !on_green {
                        self.blue.observe(answered);
                    } else if self.green_fails.load(Ordering::Relaxed) {
                        self.green.observe(Observation::Failed);
                    } else {
                        self.green.observe(answered);
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    impl Driver for Arc<Route> {
        fn set_step(
            &self,
            _: &Rollout,
            _: usize,
            percent: u32,
            _: RouteTarget,
        ) -> impl Future<Output = Result<bool, String>> + Send {
            self.percent.store(percent, Ordering::Relaxed);
            let at_ms = self.at_ms();
            self.events.lock().push(Event::Step { at_ms, percent });
            std::future::ready(Ok(true))
        }

        fn traffic(&self, pool: &str) -> Option<TrafficSample> {
            Some(
                if pool == "green" {
                    &self.green
                } else {
                    &self.blue
                }
                .sample(),
            )
        }

        fn roll_back(&self, rollout: &Rollout, reason: String) -> impl Future<Output = ()> + Send {
            self.percent.store(0, Ordering::Relaxed);
            let at_ms = self.at_ms();
            rolled_back(rollout, &reason);
            self.events.lock().push(Event::RolledBack { at_ms, reason });
            std::future::ready(())
        }

        fn complete(&self, rollout: &Rollout) -> impl Future<Output = ()> + Send {
            let at_ms = self.at_ms();
            completed(rollout);
            self.events.lock().push(Event::Completed { at_ms });
            std::future::ready(())
        }

        fn stopped(&self, rollout: &Rollout) {
            stopped_by_shutdown(rollout);
        }
    }

    fn rollout(steps: &[u32], interval: Duration) -> Arc<Rollout> {
        let plan = Plan {
            to: "green".into(),
            steps: steps.to_vec(),
            interval,
            sticky: None,
            guard: Guard::default(),
            force: false,
        };
        Arc::new(Rollout::running(
            "app",
            "blue".into(),
            "blue".into(),
            plan,
            CancellationToken::new(),
            0,
            0,
        ))
    }

    /// Each step is held exactly one interval; after the last the rollout completes.
    /// Thirty seconds of rollout take milliseconds.
    #[tokio::test(start_paused = true)]
    async fn each_step_is_held_one_interval_then_the_rollout_completes() {
        let route = Route::new();
        let traffic = tokio::spawn(Arc::clone(&route).serve());
        let r = rollout(&[10, 50, 100], Duration::from_secs(10));
        run(Arc::clone(&route), Arc::clone(&r)).await;
        traffic.abort();
        assert_eq!(
            route.events(),
            vec![
                Event::Step {
                    at_ms: 0,
                    percent: 10
                },
                Event::Step {
                    at_ms: 10_000,
                    percent: 50
                },
                Event::Step {
                    at_ms: 20_000,
                    percent: 100
                },
                Event::Completed { at_ms: 30_000 },
            ]
        );
        assert_eq!(r.state(), RolloutState::Completed);
    }

    /// A guard broken in the middle of a step rolls back at the next judgement (a
    /// fifth of the interval, at most a second), not at the end of the step.
    #[tokio::test(start_paused = true)]
    async fn a_broken_guard_rolls_back_at_the_next_tick() {
        let route = Route::new();
        let traffic = tokio::spawn(Arc::clone(&route).serve());
        let r = rollout(&[10, 50, 100], Duration::from_secs(10));
        let walk = tokio::spawn(run(Arc::clone(&route), Arc::clone(&r)));
        tokio::time::sleep(Duration::from_millis(15_500)).await;
        route.green_fails.store(true, Ordering::Relaxed);
        walk.await.unwrap();
        traffic.abort();
        let events = route.events();
        assert_eq!(events.len(), 3, "{events:?}");
        assert_eq!(
            events[1],
            Event::Step {
                at_ms: 10_000,
                percent: 50
            }
        );
        let Event::RolledBack { at_ms, reason } = &events[2] else {
            panic!("{events:?}");
        };
        assert_eq!(
            *at_ms, 16_000,
            "the first judgement after the failures began"
        );
        assert!(reason.starts_with("step 1 (50%): error rate"), "{reason}");
        assert_eq!(r.state(), RolloutState::RolledBack);
    }

    /// A step that never sees `min_requests` on the new side is held three more
    /// intervals, then rolled back: a rollout never advances on a step it could
    /// not judge.
    #[tokio::test(start_paused = true)]
    async fn an_unjudged_step_is_extended_then_rolled_back() {
        let route = Route::new();
        let r = rollout(&[10, 100], Duration::from_secs(10));
        run(Arc::clone(&route), Arc::clone(&r)).await;
        let events = route.events();
        assert_eq!(events.len(), 2, "{events:?}");
        let Event::RolledBack { at_ms, reason } = &events[1] else {
            panic!("{events:?}");
        };
        assert_eq!(*at_ms, 40_000);
        assert!(reason.ends_with("after 4 intervals"), "{reason}");
    }
}
