//! The task that walks a rollout's steps, judges each window and rolls back on its own.
//!
//! The walk is the same whoever runs it; a [`Driver`] is what it acts through: the
//! local proxy (its routes and its own counters), or a fleet (the shared state in
//! etcd and the sum of every instance's counters).

use std::future::Future;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::{info, warn};

use super::{Rollout, RolloutState, step_target, tick};
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
