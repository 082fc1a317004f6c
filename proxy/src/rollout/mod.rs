//! Progressive rollouts: a route moves from its current pool (blue) to another
//! (green) in steps of increasing percentage, each step held for an interval and
//! judged by a guard on the green side's error rate and tail latency. A broken guard
//! sends all traffic back to blue at once.
//!
//! [`Rollouts`] is the registry the server owns (one rollout per route, the last one
//! kept for `/status`); [`run`] is the task that walks the steps.

mod guard;
mod run;
mod spec;
mod stats;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use guard::{Guard, Verdict};
pub use run::run;
pub use spec::{DEFAULT_INTERVAL, DEFAULT_STEPS, Plan, SpecError};
pub use stats::{Observation, PoolTraffic, TrafficSample};

use crate::config::Config;

/// Where a rollout is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutState {
    /// Walking its steps.
    Running,
    /// All traffic is on the new pool.
    Completed,
    /// The guard broke; all traffic went back to the old pool.
    RolledBack,
    /// Stopped by an operator, a new switch or split, a reload or shutdown.
    Aborted,
}

impl RolloutState {
    /// Lower-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Completed => "completed",
            RolloutState::RolledBack => "rolled_back",
            RolloutState::Aborted => "aborted",
        }
    }
}

/// Why a rollout could not start (answered with 404 or 409).
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum StartError {
    #[error("no route named `{0}`")]
    NoRoute(String),
    #[error("no pool named `{0}`")]
    NoPool(String),
    #[error("a rollout of route `{0}` is already running; abort it first")]
    Running(String),
    #[error("route `{0}` is split across pools; switch it to one pool before a rollout")]
    Split(String),
    #[error("route `{route}` already sends all traffic to `{pool}`")]
    SamePool { route: String, pool: String },
    #[error(
        "{reason}; a rollout would send its share into failures (add \"force\": true to start anyway)"
    )]
    Unusable { pool: String, reason: String },
}

#[derive(Debug)]
struct Progress {
    state: RolloutState,
    step: usize,
    percent: u32,
    verdict: Option<Verdict>,
    reason: Option<String>,
}

/// One rollout of one route: its plan and where it got to.
#[derive(Debug)]
pub struct Rollout {
    /// The route being moved.
    pub route: String,
    /// The pool traffic moves away from (the route's pool when the rollout began).
    pub from: Arc<str>,
    /// The pool traffic moves to.
    pub to: Arc<str>,
    /// The pool the config names for the route; a reload that changes it ends the rollout.
    pub config_pool: String,
    /// What was asked for: steps, interval, stickiness, guard.
    pub plan: Plan,
    cancel: CancellationToken,
    progress: Mutex<Progress>,
}

impl Rollout {
    /// The current state.
    pub fn state(&self) -> RolloutState {
        self.progress.lock().state
    }

    /// Cancelled when the rollout stops for any reason.
    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Records the step now in effect.
    fn enter_step(&self, step: usize, percent: u32) {
        let mut p = self.progress.lock();
        p.step = step;
        p.percent = percent;
    }

    /// Records the latest guard verdict.
    fn record(&self, verdict: Verdict) {
        self.progress.lock().verdict = Some(verdict);
    }

    /// Moves a running rollout to a final state; `false` if it had already ended.
    fn finish(&self, state: RolloutState, reason: Option<String>) -> bool {
        let mut p = self.progress.lock();
        if p.state != RolloutState::Running {
            return false;
        }
        p.state = state;
        p.reason = reason;
        if state == RolloutState::RolledBack || state == RolloutState::Aborted {
            p.percent = 0;
        }
        drop(p);
        self.cancel.cancel();
        true
    }

    /// JSON for `/status` and admin answers.
    pub fn to_json(&self) -> Value {
        let p = self.progress.lock();
        json!({
            "from": self.from.as_ref(),
            "to": self.to.as_ref(),
            "steps": self.plan.steps,
            "interval_ms": self.plan.interval.as_millis() as u64,
            "guard": {
                "max_error_rate": self.plan.guard.max_error_rate,
                "max_p99_ratio": self.plan.guard.max_p99_ratio,
                "min_requests": self.plan.guard.min_requests,
            },
            "state": p.state.as_str(),
            "step": p.step,
            "percent": p.percent,
            "last_verdict": p.verdict.as_ref().map(Verdict::to_json),
            "reason": p.reason,
        })
    }
}

/// Every route's latest rollout, running or finished.
#[derive(Debug, Default)]
pub struct Rollouts {
    by_route: Mutex<HashMap<String, Arc<Rollout>>>,
}

impl Rollouts {
    /// Registers a new running rollout; refuses when one is already running on the route.
    /// Its token is a child of `parent`, so shutdown stops it.
    pub fn begin(
        &self,
        route: &str,
        from: Arc<str>,
        config_pool: String,
        plan: Plan,
        parent: &CancellationToken,
    ) -> Result<Arc<Rollout>, StartError> {
        let mut map = self.by_route.lock();
        if map
            .get(route)
            .is_some_and(|r| r.state() == RolloutState::Running)
        {
            return Err(StartError::Running(route.to_string()));
        }
        let rollout = Arc::new(Rollout {
            route: route.to_string(),
            from,
            to: plan.to.as_str().into(),
            config_pool,
            plan,
            cancel: parent.child_token(),
            progress: Mutex::new(Progress {
                state: RolloutState::Running,
                step: 0,
                // Nothing has moved until the first step's split is in effect.
                percent: 0,
                verdict: None,
                reason: None,
            }),
        });
        map.insert(route.to_string(), Arc::clone(&rollout));
        Ok(rollout)
    }

    /// The latest rollout of a route.
    pub fn get(&self, route: &str) -> Option<Arc<Rollout>> {
        self.by_route.lock().get(route).cloned()
    }

    /// Stops the running rollout of `route`, if any, marking it aborted with `reason`.
    pub fn abort(&self, route: &str, reason: &str) -> Option<Arc<Rollout>> {
        let rollout = self.get(route)?;
        rollout
            .finish(RolloutState::Aborted, Some(reason.to_string()))
            .then(|| {
                info!(route, reason, "rollout aborted");
                rollout
            })
    }

    /// Aborts rollouts a new config makes meaningless: the route is gone, its
    /// configured pool changed (the runtime override no longer applies), or one of
    /// its pools is gone.
    pub fn abort_invalid(&self, config: &Config) {
        let running: Vec<Arc<Rollout>> = self
            .by_route
            .lock()
            .values()
            .filter(|r| r.state() == RolloutState::Running)
            .cloned()
            .collect();
        for r in running {
            let reason = match config.routes.iter().find(|c| c.name == r.route) {
                None => "the route was removed by a config reload",
                Some(c) if c.pool != r.config_pool => "a config reload changed the route's pool",
                Some(_)
                    if !config.pools.contains_key(r.from.as_ref())
                        || !config.pools.contains_key(r.to.as_ref()) =>
                {
                    "a config reload removed one of the rollout's pools"
                }
                Some(_) => continue,
            };
            self.abort(&r.route, reason);
        }
    }
}

/// The split that puts `percent` of traffic on the new side.
fn step_target(rollout: &Rollout, percent: u32) -> crate::traffic::RouteTarget {
    use crate::traffic::RouteTarget;
    if percent >= 100 {
        return RouteTarget::Pool(Arc::clone(&rollout.to));
    }
    RouteTarget::Split {
        pools: vec![
            (Arc::clone(&rollout.from), 100 - percent),
            (Arc::clone(&rollout.to), percent),
        ],
        sticky: rollout.plan.sticky.clone(),
    }
}

/// How often a step's window is judged while it is held: early enough to roll back
/// within the window, rarely enough to cost nothing.
fn tick(interval: Duration) -> Duration {
    (interval / 5).clamp(Duration::from_millis(20), Duration::from_secs(1))
}
