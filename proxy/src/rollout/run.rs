//! The task that walks a rollout's steps, judges each window and rolls back on its own.

use std::sync::Arc;

use tokio::time::Instant;
use tracing::{info, warn};

use super::{Rollout, RolloutState, step_target, tick};
use crate::rollout::PoolTraffic;
use crate::server::Server;
use crate::traffic::RouteTarget;

/// A step that has not seen `min_requests` on the new side is held this many extra
/// intervals; a rollout never advances on a step it could not judge.
const MAX_EXTENSIONS: u32 = 3;

/// Runs `rollout` to completion, rollback or cancellation. Owned by the server
/// (cancelled on shutdown, abort, a new switch or split, or a reload that invalidates it).
pub async fn run(server: Arc<Server>, rollout: Arc<Rollout>) {
    let token = rollout.cancelled().clone();
    let route = rollout.route.as_str();
    let steps = rollout.plan.steps.clone();
    for (index, percent) in steps.into_iter().enumerate() {
        // The step is reported (in /status) once its split is in effect, not before.
        match server
            .set_route_target_unless(route, step_target(&rollout, percent), &token)
            .await
        {
            Ok(true) => {
                rollout.enter_step(index, percent);
                server.save_state();
            }
            Ok(false) => {
                stopped(&rollout);
                return;
            }
            Err(e) => {
                roll_back(
                    &server,
                    &rollout,
                    format!("cannot apply step {percent}%: {e}"),
                )
                .await;
                return;
            }
        }
        info!(route, step = index, percent, to = %rollout.to, "rollout step");
        let (Some(green), Some(blue)) = (
            traffic(&server, &rollout.to),
            traffic(&server, &rollout.from),
        ) else {
            roll_back(
                &server,
                &rollout,
                "a pool of the rollout disappeared".into(),
            )
            .await;
            return;
        };
        let (green_start, blue_start) = (green.sample(), blue.sample());
        let mut deadline = Instant::now() + rollout.plan.interval;
        let mut extensions = 0;
        let every = tick(rollout.plan.interval);
        loop {
            let now = Instant::now();
            let wait = deadline.saturating_duration_since(now).min(every);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = token.cancelled() => {
                    stopped(&rollout);
                    return;
                }
            }
            let verdict = rollout.plan.guard.judge(
                green.sample().since(&green_start),
                blue.sample().since(&blue_start),
            );
            let (healthy, judged) = (verdict.healthy, verdict.judged);
            let detail = verdict.detail.clone();
            rollout.record(verdict);
            if !healthy {
                warn!(route, step = index, percent, from = %rollout.from, to = %rollout.to,
                    reason = %detail, "rollout guard broken: rolling back");
                roll_back(
                    &server,
                    &rollout,
                    format!("step {index} ({percent}%): {detail}"),
                )
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
                roll_back(&server, &rollout, reason).await;
                return;
            }
            extensions += 1;
            deadline += rollout.plan.interval;
            info!(route, step = index, percent, verdict = %detail,
                "not enough traffic to judge the step yet: holding it one more interval");
        }
    }
    if rollout.finish(RolloutState::Completed, None) {
        server.metrics().rollout_finished(route, "completed");
        info!(route, to = %rollout.to, "rollout completed: all traffic on the new pool");
    }
}

/// Marks a rollout whose token was cancelled from outside (shutdown) as aborted;
/// one stopped by abort, supersede or reload is already marked.
fn stopped(rollout: &Rollout) {
    if rollout.finish(
        RolloutState::Aborted,
        Some("stopped: the proxy is shutting down".into()),
    ) {
        info!(route = %rollout.route, "rollout stopped by shutdown");
    }
}

/// The traffic counters of a pool in the live snapshot (shared across rebuilds).
fn traffic(server: &Server, pool: &str) -> Option<Arc<PoolTraffic>> {
    server
        .snapshot()
        .pools
        .get(pool)
        .map(|p| Arc::clone(&p.traffic))
}

/// Sends every request of the route back to the old pool and records why.
async fn roll_back(server: &Server, rollout: &Rollout, reason: String) {
    let token = rollout.cancelled().clone();
    let target = RouteTarget::Pool(Arc::clone(&rollout.from));
    match server
        .set_route_target_unless(&rollout.route, target, &token)
        .await
    {
        Ok(false) => return,
        Ok(true) => server.save_state(),
        Err(e) => warn!(route = %rollout.route, error = %e, "cannot roll back the route"),
    }
    if rollout.finish(RolloutState::RolledBack, Some(reason.clone())) {
        warn!(route = %rollout.route, from = %rollout.from, %reason, "rollout rolled back: all traffic on the old pool");
        server
            .metrics()
            .rollout_finished(&rollout.route, "rolled_back");
        server
            .alerts()
            .send(crate::alerts::AlertEvent::RolloutRolledBack {
                route: rollout.route.clone(),
                from: rollout.from.to_string(),
                to: rollout.to.to_string(),
                reason,
            });
    }
}
