//! The fleet's rollout leader: one instance, elected by creating the `leader` key
//! under its lease, runs every fleet rollout. Each step is written to the shared
//! state (every instance applies it from its watch) in a transaction that holds only
//! while the leader key is still the one this instance created, so a leader that
//! lost its lease cannot write over its successor. The guard judges the fleet's
//! counters (the sum over every instance's heartbeats).
//!
//! When the leader dies its lease expires, the key goes, another instance wins the
//! election and adopts the running rollouts: it resumes each from the step it stood
//! at (that step is held a full interval again, judged on a fresh window), or with
//! `cluster.on_leader_loss = "roll-back"` sends the route back to the old pool.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use http::StatusCode;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::commit::{Author, CommitError, Rejected};
use super::etcd::{Compare, EtcdError, Op};
use super::records::{LeaderRecord, RolloutRecord, unix_ms};
use super::{Cluster, Host, edits, keys};
use crate::config::LeaderLoss;
use crate::rollout::{Driver, Plan, Rollout, TrafficSample};
use crate::traffic::RouteTarget;

/// How often the leader re-checks its rollouts when nothing changes.
const RECHECK: Duration = Duration::from_millis(500);
/// Heartbeats write a revision per instance per second; the leader drops history
/// older than this (at most twice this old is kept), so etcd's database stays small
/// without `--auto-compaction-retention`.
const COMPACT_EVERY: Duration = Duration::from_secs(300);
/// Pause before retrying a write etcd could not take.
const WRITE_RETRY: Duration = Duration::from_millis(250);

struct Runner {
    token: CancellationToken,
    task: JoinHandle<()>,
}

/// Campaigns for leadership and, while leading, runs the fleet's rollouts.
pub(super) async fn run<H: Host>(server: Weak<H>, cluster: Arc<Cluster>) {
    let mut changes = cluster.changes.subscribe();
    let mut runners: HashMap<String, Runner> = HashMap::new();
    let mut compactor = Compactor::default();
    loop {
        if cluster.stop.is_cancelled() {
            break;
        }
        let lease = cluster.lease.load(Ordering::Acquire);
        if cluster.connected() && lease != 0 && !cluster.leading() {
            let vacant = cluster.mirror.lock().get(keys::LEADER).is_none();
            if vacant {
                match campaign(&cluster, lease).await {
                    Ok(true) => {
                        info!(instance = %cluster.config.instance, "elected to run the fleet's rollouts")
                    }
                    Ok(false) => {}
                    Err(e) => warn!(error = %e, "cannot campaign for rollout leadership"),
                }
            }
        }
        if cluster.leading() && !still_leading(&cluster) {
            cluster.fence.store(0, Ordering::Release);
            warn!("no longer leading the fleet's rollouts");
        }
        cluster.metrics.set_leading(cluster.leading());
        if cluster.leading() {
            reconcile(&server, &cluster, &mut runners);
            compactor.tick(&cluster).await;
        } else {
            compactor = Compactor::default();
            for (_, runner) in runners.drain() {
                runner.token.cancel();
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = tokio::time::sleep(RECHECK) => {}
            () = cluster.stop.cancelled() => break,
        }
    }
    for (_, runner) in runners.drain() {
        runner.token.cancel();
    }
}

/// Keeps etcd's history of the fleet short: every [`COMPACT_EVERY`] the leader
/// compacts to the revision it noted at the previous turn.
#[derive(Default)]
struct Compactor {
    next: Option<tokio::time::Instant>,
    noted: Option<i64>,
    /// etcd refused (compaction needs the root role): not tried again.
    refused: bool,
}

impl Compactor {
    async fn tick(&mut self, cluster: &Cluster) {
        let now = tokio::time::Instant::now();
        if self.refused || self.next.is_some_and(|next| now < next) {
            return;
        }
        if let Some(revision) = self.noted.take() {
            match cluster.etcd.compact(revision).await {
                Ok(()) => info!(revision, "compacted etcd's history"),
                Err(EtcdError::Refused { message, .. }) if message.contains("compacted") => {}
                Err(EtcdError::Refused { message, .. }) => {
                    self.refused = true;
                    warn!(error = %message,
                        "cannot compact etcd's history; run etcd with --auto-compaction-retention (heartbeats add a revision per instance per second)");
                }
                Err(e) => {
                    warn!(error = %e, "cannot compact etcd's history now; trying again later")
                }
            }
        }
        self.noted = Some(cluster.revision());
        self.next = Some(now + COMPACT_EVERY);
    }
}

/// Creates the leader key under this instance's lease if nobody holds it.
async fn campaign(cluster: &Cluster, lease: i64) -> Result<bool, EtcdError> {
    let key = cluster.keys.full(keys::LEADER);
    let record = LeaderRecord {
        instance: cluster.config.instance.clone(),
        boot: cluster.boot.clone(),
    };
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let answer = cluster
        .etcd
        .txn(
            &[Compare::CreateRevision(key.clone(), 0)],
            &[Op::Put {
                key,
                value: value.clone(),
                lease: Some(lease),
            }],
            &[],
        )
        .await?;
    if !answer.succeeded {
        return Ok(false);
    }
    let revision = answer.header.revision;
    // Known at once, before the watch brings it, so the leader sees its own key.
    cluster
        .mirror
        .lock()
        .record(keys::LEADER, Some(value.into()), revision);
    cluster.fence.store(revision, Ordering::Release);
    cluster.bump();
    Ok(true)
}

/// The leader key is still the one this instance created, under a live lease.
fn still_leading(cluster: &Cluster) -> bool {
    let fence = cluster.fence.load(Ordering::Acquire);
    cluster.lease.load(Ordering::Acquire) != 0
        && cluster
            .mirror
            .lock()
            .leader()
            .is_some_and(|(_, created)| created == fence)
}

/// Starts a runner for every running rollout without one; stops runners whose
/// rollout ended elsewhere (aborted, superseded).
fn reconcile<H: Host>(
    server: &Weak<H>,
    cluster: &Arc<Cluster>,
    runners: &mut HashMap<String, Runner>,
) {
    runners.retain(|_, r| !r.task.is_finished());
    let records = cluster.mirror.lock().rollouts();
    runners.retain(|route, runner| {
        let running = records.get(route).is_some_and(|(r, _)| r.running());
        if !running {
            runner.token.cancel();
        }
        running
    });
    for (route, (record, _)) in records {
        if !record.running() || runners.contains_key(&route) {
            continue;
        }
        let token = cluster.stop.child_token();
        let driver = FleetDriver {
            server: server.clone(),
            cluster: Arc::clone(cluster),
        };
        let task = tokio::spawn(adopt(driver, record, token.clone()));
        runners.insert(route, Runner { token, task });
    }
}

/// Takes charge of a running rollout: from its start, where its previous leader
/// left it, or back to the old pool.
async fn adopt<H: Host>(driver: FleetDriver<H>, record: RolloutRecord, token: CancellationToken) {
    let cluster = Arc::clone(&driver.cluster);
    let plan = match Plan::parse(record.plan.to_string().as_bytes()) {
        Ok(plan) => plan,
        Err(e) => {
            warn!(route = %record.route, error = %e, "fleet rollout has an unreadable plan: aborting it");
            let reason = format!("unreadable plan: {e}");
            let _ = driver
                .write(|d| {
                    edits::end_rollout(d, &record.route, "aborted", Some(reason.clone()));
                    Ok(())
                })
                .await;
            return;
        }
    };
    let rollout = Arc::new(Rollout::running(
        &record.route,
        record.from.as_str().into(),
        record.config_pool.clone(),
        plan,
        token,
        record.step,
        record.percent,
    ));
    let orphaned = record.leader.is_some()
        && (record.leader.as_deref() != Some(cluster.config.instance.as_str())
            || record.leader_boot.as_deref() != Some(cluster.boot.as_str()));
    if orphaned {
        let previous = record.leader.clone().unwrap_or_default();
        match cluster.config.on_leader_loss {
            LeaderLoss::RollBack => {
                warn!(route = %record.route, previous, "taking over a fleet rollout whose leader went away: rolling it back");
                let reason = format!(
                    "its leader `{previous}` went away at step {} ({}%); rolled back by `{}` (cluster.on_leader_loss = \"roll-back\")",
                    record.step, record.percent, cluster.config.instance
                );
                driver.roll_back(&rollout, reason).await;
                return;
            }
            LeaderLoss::Resume => {
                info!(route = %record.route, previous, step = record.step, percent = record.percent,
                    "taking over a fleet rollout whose leader went away: resuming it");
            }
        }
    }
    crate::rollout::run_from(driver, rollout, record.step).await;
}

/// A fleet rollout acts through the shared state in etcd and the fleet's counters.
struct FleetDriver<H: Host> {
    server: Weak<H>,
    cluster: Arc<Cluster>,
}

/// How a leader's write went.
enum Wrote {
    Done,
    /// The rollout was stopped elsewhere, or leadership lost.
    Stopped,
}

impl<H: Host> FleetDriver<H> {
    /// Commits an edit as the leader, retrying while etcd cannot take it; gives up
    /// when the rollout stopped or this instance stopped leading.
    async fn write(
        &self,
        mut edit: impl FnMut(&mut super::Draft) -> Result<(), Rejected> + Send,
    ) -> Wrote {
        let mut warned = false;
        loop {
            let Some(server) = self.server.upgrade() else {
                return Wrote::Stopped;
            };
            let result = self
                .cluster
                .commit_as(server.as_ref(), Author::Leader, &mut edit)
                .await;
            drop(server);
            match result {
                Ok(_) => return Wrote::Done,
                Err(
                    CommitError::Rejected(_)
                    | CommitError::Conflict { .. }
                    | CommitError::NotLeader,
                ) => {
                    return Wrote::Stopped;
                }
                Err(e) => {
                    if !warned {
                        warn!(error = %e, "fleet rollout: cannot write to etcd; holding the step and retrying");
                        warned = true;
                    }
                    tokio::select! {
                        () = tokio::time::sleep(WRITE_RETRY) => {}
                        () = self.cluster.stop.cancelled() => return Wrote::Stopped,
                    }
                    if !self.cluster.leading() {
                        return Wrote::Stopped;
                    }
                }
            }
        }
    }

    /// The record's progress fields from the local rollout object.
    fn progress(&self, record: &mut RolloutRecord, rollout: &Rollout) {
        let view = rollout.to_json();
        record.step = view["step"].as_u64().unwrap_or(0) as usize;
        record.percent = view["percent"].as_u64().unwrap_or(0) as u32;
        record.last_verdict = view.get("last_verdict").filter(|v| !v.is_null()).cloned();
        record.leader = Some(self.cluster.config.instance.clone());
        record.leader_boot = Some(self.cluster.boot.clone());
        record.updated_ms = unix_ms();
    }
}

impl<H: Host> Driver for FleetDriver<H> {
    async fn set_step(
        &self,
        rollout: &Rollout,
        index: usize,
        percent: u32,
        target: RouteTarget,
    ) -> Result<bool, String> {
        let wrote = self
            .write(|draft| {
                let record = edits::running(draft, &rollout.route)?;
                self.progress(record, rollout);
                // The record says which step the route is now at, in the same write.
                record.step = index;
                record.percent = percent;
                edits::set_route(
                    &mut draft.state,
                    &rollout.route,
                    &rollout.config_pool,
                    &target,
                );
                Ok(())
            })
            .await;
        Ok(matches!(wrote, Wrote::Done) && !rollout.cancelled().is_cancelled())
    }

    fn traffic(&self, pool: &str) -> Option<TrafficSample> {
        let server = self.server.upgrade()?;
        server.snapshot().pools.get(pool)?;
        Some(self.cluster.fleet.lock().sample(pool))
    }

    async fn roll_back(&self, rollout: &Rollout, reason: String) {
        let back = RouteTarget::Pool(Arc::clone(&rollout.from));
        let wrote = self
            .write(|draft| {
                let record = edits::running(draft, &rollout.route)?;
                self.progress(record, rollout);
                edits::end_rollout(draft, &rollout.route, "rolled_back", Some(reason.clone()));
                edits::set_route(
                    &mut draft.state,
                    &rollout.route,
                    &rollout.config_pool,
                    &back,
                );
                Ok(())
            })
            .await;
        if matches!(wrote, Wrote::Done)
            && crate::rollout::rolled_back(rollout, &reason)
            && let Some(server) = self.server.upgrade()
        {
            server.rollout_ended(rollout, Some(reason));
        }
    }

    async fn complete(&self, rollout: &Rollout) {
        let wrote = self
            .write(|draft| {
                let record = edits::running(draft, &rollout.route)?;
                self.progress(record, rollout);
                if !edits::end_rollout(draft, &rollout.route, "completed", None) {
                    return Err(Rejected {
                        status: StatusCode::CONFLICT,
                        message: "stopped".into(),
                    });
                }
                Ok(())
            })
            .await;
        if matches!(wrote, Wrote::Done)
            && crate::rollout::completed(rollout)
            && let Some(server) = self.server.upgrade()
        {
            server.rollout_ended(rollout, None);
        }
    }

    fn stopped(&self, rollout: &Rollout) {
        info!(route = %rollout.route, "fleet rollout no longer run here (stopped elsewhere, or leadership moved)");
    }
}
