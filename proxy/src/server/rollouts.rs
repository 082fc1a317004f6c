//! Starting and stopping progressive rollouts; the rollout tasks are owned here and
//! hang off the server's shutdown token.

use std::sync::Arc;

use tracing::info;

use super::Server;
use crate::rollout::{Plan, Rollout, StartError};
use crate::traffic::RouteTarget;

impl Server {
    /// Starts a rollout of `route` from its current pool to `plan.to`.
    pub fn start_rollout(
        self: &Arc<Self>,
        route: &str,
        plan: Plan,
    ) -> Result<Arc<Rollout>, StartError> {
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
        let rollout = self.rollouts.begin(
            route,
            Arc::clone(from),
            config.pool.clone(),
            plan,
            &self.shutdown,
        )?;
        tokio::spawn(crate::rollout::run(Arc::clone(self), Arc::clone(&rollout)));
        Ok(rollout)
    }

    /// The latest rollout of a route (running or finished), for `/status`.
    pub fn rollout(&self, route: &str) -> Option<Arc<Rollout>> {
        self.rollouts.get(route)
    }

    /// Stops the running rollout of `route` and sends all its traffic back to the old
    /// pool; `Ok(None)` when none is running.
    pub async fn abort_rollout(&self, route: &str) -> Result<Option<Arc<Rollout>>, String> {
        let Some(rollout) = self.rollouts.abort(route, "aborted by an operator") else {
            return Ok(None);
        };
        self.route_target(route, RouteTarget::Pool(Arc::clone(&rollout.from)), None)
            .await?;
        info!(route, pool = %rollout.from, "rollout aborted: all traffic back on the old pool");
        Ok(Some(rollout))
    }
}
