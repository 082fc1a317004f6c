//! Starting and stopping progressive rollouts; the rollout tasks are owned here and
//! hang off the server's shutdown token.

use std::sync::Arc;

use tracing::{info, warn};

use super::{RouteChangeError, Server};
use crate::rollout::{Driver, Plan, Rollout, StartError, TrafficSample};
use crate::timeline::{EventKind, Happened};
use crate::traffic::RouteTarget;

/// The proxy itself as what a rollout acts through: its own routes (saved to the
/// state file) and its own pools' counters.
pub struct LocalDriver(pub Arc<Server>);

impl Driver for LocalDriver {
    async fn set_step(
        &self,
        rollout: &Rollout,
        index: usize,
        percent: u32,
        target: RouteTarget,
    ) -> Result<bool, String> {
        let applied = self
            .0
            .set_route_target_unless(&rollout.route, target, rollout.cancelled())
            .await
            .map_err(|e| e.to_string())?;
        if applied {
            self.0.save_state();
            self.0.record_event(Happened::new(
                EventKind::Rollout,
                format!(
                    "route {}: rollout step {} of {}, {percent}% on {}",
                    rollout.route,
                    index + 1,
                    rollout.plan.steps.len(),
                    rollout.to
                ),
            ));
        }
        Ok(applied)
    }

    fn traffic(&self, pool: &str) -> Option<TrafficSample> {
        self.0
            .snapshot()
            .pools
            .get(pool)
            .map(|p| p.traffic.sample())
    }

    async fn roll_back(&self, rollout: &Rollout, reason: String) {
        let target = RouteTarget::Pool(Arc::clone(&rollout.from));
        match self
            .0
            .set_route_target_unless(&rollout.route, target, rollout.cancelled())
            .await
        {
            Ok(false) => return,
            Ok(true) => self.0.save_state(),
            Err(e) => warn!(route = %rollout.route, error = %e, "cannot roll back the route"),
        }
        if crate::rollout::rolled_back(rollout, &reason) {
            self.0.rollout_ended(rollout, Some(reason));
        }
    }

    async fn complete(&self, rollout: &Rollout) {
        if crate::rollout::completed(rollout) {
            self.0.rollout_ended(rollout, None);
        }
    }

    fn stopped(&self, rollout: &Rollout) {
        crate::rollout::stopped_by_shutdown(rollout);
    }
}

impl Server {
    /// Counts a rollout that ended on its own and, when it was rolled back (with
    /// `reason`), tells the alert receivers. Called by whichever driver ended it.
    pub(crate) fn rollout_ended(&self, rollout: &Rollout, rolled_back: Option<String>) {
        let result = if rolled_back.is_some() {
            "rolled_back"
        } else {
            "completed"
        };
        self.metrics().rollout_finished(&rollout.route, result);
        let ended = match &rolled_back {
            Some(reason) => Happened::new(
                EventKind::Rollout,
                format!(
                    "route {}: rollout to {} rolled back to {}: {reason}",
                    rollout.route, rollout.to, rollout.from
                ),
            )
            .warning(true),
            None => Happened::new(
                EventKind::Rollout,
                format!(
                    "route {}: rollout completed, all traffic on {}",
                    rollout.route, rollout.to
                ),
            ),
        };
        self.record_event(ended);
        if let Some(reason) = rolled_back {
            self.alerts()
                .send(crate::alerts::AlertEvent::RolloutRolledBack {
                    route: rollout.route.clone(),
                    from: rollout.from.to_string(),
                    to: rollout.to.to_string(),
                    reason,
                });
        }
    }

    /// Starts a rollout of `route` from its current pool to `plan.to`.
    pub fn start_rollout(
        self: &Arc<Self>,
        route: &str,
        plan: Plan,
    ) -> Result<Arc<Rollout>, StartError> {
        let (from, config_pool) = self.rollout_origin(route, &plan)?;
        let rollout = self
            .rollouts
            .begin(route, from, config_pool, plan, &self.shutdown)?;
        tokio::spawn(crate::rollout::run(
            LocalDriver(Arc::clone(self)),
            Arc::clone(&rollout),
        ));
        let steps: Vec<String> = rollout.plan.steps.iter().map(|p| format!("{p}%")).collect();
        self.record_event(Happened::new(
            EventKind::Rollout,
            format!(
                "route {route}: rollout from {} to {} started, steps {} every {}",
                rollout.from,
                rollout.to,
                steps.join(", "),
                crate::config::HumanDuration(rollout.plan.interval)
            ),
        ));
        Ok(rollout)
    }

    /// Checks that `plan` may start on `route` now: the route exists and sends all
    /// its traffic to one pool (returned, with the pool its config names), `to` is
    /// another pool that has a usable backend (unless forced).
    pub fn rollout_origin(
        &self,
        route: &str,
        plan: &Plan,
    ) -> Result<(Arc<str>, String), StartError> {
        let snapshot = self.snapshot();
        let (Some(live), Some(config)) = (
            snapshot.route(route),
            snapshot.config.routes.iter().find(|r| r.name == route),
        ) else {
            return Err(StartError::NoRoute(route.to_string()));
        };
        let RouteTarget::Pool(from) = &live.target else {
            return Err(StartError::Split(route.to_string()));
        };
        let Some(to) = snapshot.pools.get(&plan.to) else {
            return Err(StartError::NoPool(plan.to.clone()));
        };
        if from.as_ref() == plan.to {
            return Err(StartError::SamePool {
                route: route.to_string(),
                pool: plan.to.clone(),
            });
        }
        if !plan.force
            && let Some(reason) = to.unusable_reason(crate::clock::now_ms())
        {
            return Err(StartError::Unusable {
                pool: plan.to.clone(),
                reason,
            });
        }
        Ok((Arc::clone(from), config.pool.clone()))
    }

    /// The latest rollout of a route (running or finished), for `/status`.
    pub fn rollout(&self, route: &str) -> Option<Arc<Rollout>> {
        self.rollouts.get(route)
    }

    /// The latest rollout of a route as `/status` shows it: the fleet's when this
    /// instance is in one, its own otherwise.
    pub fn rollout_json(&self, route: &str) -> Option<serde_json::Value> {
        match self.cluster() {
            Some(cluster) => cluster.rollout_status(route),
            None => self.rollouts.get(route).map(|r| r.to_json()),
        }
    }

    /// Stops the running rollout of `route` and sends all its traffic back to the old
    /// pool; `Ok(None)` when none is running.
    pub async fn abort_rollout(
        &self,
        route: &str,
    ) -> Result<Option<Arc<Rollout>>, RouteChangeError> {
        if self.snapshot().route(route).is_none() {
            return Err(RouteChangeError::NoRoute(route.to_string()));
        }
        let Some(rollout) = self.rollouts.abort(route, "aborted by an operator") else {
            return Ok(None);
        };
        self.route_target(route, RouteTarget::Pool(Arc::clone(&rollout.from)), None)
            .await?;
        info!(route, pool = %rollout.from, "rollout aborted: all traffic back on the old pool");
        self.record_event(Happened::new(
            EventKind::Rollout,
            format!(
                "route {route}: rollout to {} aborted, all traffic back on {}",
                rollout.to, rollout.from
            ),
        ));
        Ok(Some(rollout))
    }
}
