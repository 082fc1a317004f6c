//! Several instances acting as one, coordinated through etcd (`[cluster]`).
//!
//! Every runtime change made through any instance's admin API (drain, enable,
//! disable, weight, switch, split, backends added or removed, rollouts started or
//! aborted) is first written to etcd in a transaction that holds only if the keys it
//! touches are still at the revision the change was based on ([`commit`]): of two
//! conflicting changes one wins and the other is refused (409); with etcd out of
//! reach nothing is written or applied (503). Every instance follows the fleet's keys
//! with a watch ([`sync`]) and converges on the shared state within milliseconds,
//! keeping its state file as the cache it starts from when etcd cannot be reached.
//!
//! Each instance publishes a heartbeat under its lease every second ([`presence`]):
//! its view of every backend, the config it runs and its per-pool traffic counters.
//! One instance, elected with the same lease ([`leader`]), runs the fleet's
//! rollouts: it judges each step on the sum of every instance's counters
//! ([`fleet`]) and writes each step to the shared state. When it dies, another
//! instance takes over where the rollout stood, or rolls it back
//! (`cluster.on_leader_loss`). `switchyard cluster push` stores a config and its
//! plugins for instances that opt in ([`shared_config`]). [`view`] is `GET /cluster`.
//!
//! etcd is reached through its JSON gateway ([`etcd`]), so the build needs no
//! protobuf compiler.

pub mod cli;
mod commit;
pub mod edits;
pub mod etcd;
mod fleet;
mod host;
mod join;
pub mod keys;
mod leader;
mod mirror;
mod presence;
pub mod records;
pub mod shared_config;
mod sync;
mod view;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use commit::{CommitError, Committed, Draft, Rejected};
pub use etcd::{Etcd, EtcdError};
pub use host::Host;
pub use join::join;

use crate::config::{ClusterConfig, Config};
use fleet::FleetCounters;
use keys::Keys;
use mirror::Mirror;
use records::{ConfigView, RolloutRecord};

/// One instance's membership in its fleet: the etcd client, the mirror of the
/// fleet's keys, the connection state, and the tasks that keep them current.
pub struct Cluster {
    config: ClusterConfig,
    etcd: Etcd,
    keys: Keys,
    /// Random per process, so the fleet can tell a restarted instance from a live one.
    boot: String,
    mirror: Mutex<Mirror>,
    fleet: Mutex<FleetCounters>,
    link: Link,
    /// This instance's lease (0: none).
    lease: AtomicI64,
    /// The create revision of the leader key this instance holds (0: not leading).
    fence: AtomicI64,
    /// The mirror revision whose shared state the server has applied.
    applied: AtomicI64,
    converge_lock: tokio::sync::Mutex<()>,
    /// Bumped whenever the mirror changes; the leader and config tasks wait on it.
    changes: watch::Sender<u64>,
    /// Asks the watch to start over (a heartbeat found etcd unwilling to write).
    reconnect: Notify,
    /// Asks for a heartbeat now (the config this instance runs changed).
    publish: Notify,
    /// Why the last heartbeat could not be written, if it could not.
    heartbeat_error: Mutex<Option<String>>,
    /// Which config this instance runs.
    config_view: Mutex<ConfigView>,
    /// This instance's own config file, as last loaded.
    local: Mutex<Config>,
    /// The shared config running here (plugin paths at the fetched files).
    shared: Mutex<Option<Config>>,
    /// The newest shared config revision tried here.
    shared_attempt: AtomicI64,
    stop: CancellationToken,
    metrics: Arc<crate::metrics::ClusterMetrics>,
    /// Set once the first attempt to reach etcd is over.
    first_sync: watch::Sender<bool>,
}

/// Whether the fleet's store can be reached, since when, and why not.
#[derive(Default)]
struct Link {
    connected: AtomicBool,
    since_ms: AtomicU64,
    error: Mutex<Option<String>>,
    losses: AtomicU64,
}

impl Cluster {
    /// This instance's name in the fleet.
    pub fn instance(&self) -> &str {
        &self.config.instance
    }

    /// The `[cluster]` settings.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Whether etcd can be reached (the watch of the fleet's keys is up).
    pub fn connected(&self) -> bool {
        self.link.connected.load(Ordering::Acquire)
    }

    /// The etcd revision the mirror has reached.
    pub fn revision(&self) -> i64 {
        self.mirror.lock().revision()
    }

    /// Whether this instance runs the fleet's rollouts.
    pub fn leading(&self) -> bool {
        self.fence.load(Ordering::Acquire) != 0
    }

    /// Times the connection to etcd was lost.
    pub fn losses(&self) -> u64 {
        self.link.losses.load(Ordering::Relaxed)
    }

    /// Cancelled when the instance leaves the fleet.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }

    /// The fleet rollout of a route, in the shape `/status` shows rollouts.
    pub fn rollout_status(&self, route: &str) -> Option<Value> {
        let mirror = self.mirror.lock();
        let rel = keys::rollout(route);
        let e = mirror.get(&rel)?;
        let record: RolloutRecord = serde_json::from_slice(&e.value).ok()?;
        Some(record.to_status())
    }

    /// The `cluster` section of `/status`.
    pub fn status_json(&self) -> Value {
        let (revision, leader) = {
            let mirror = self.mirror.lock();
            (mirror.revision(), mirror.leader().map(|(l, _)| l.instance))
        };
        json!({
            "instance": self.config.instance,
            "prefix": self.config.prefix,
            "etcd": self.etcd.endpoints(),
            "connected": self.connected(),
            "since_ms": self.link.since_ms.load(Ordering::Relaxed),
            "error": *self.link.error.lock(),
            "heartbeat_error": *self.heartbeat_error.lock(),
            "revision": revision,
            "applied_revision": self.applied.load(Ordering::Relaxed),
            "leader": leader,
            "leading": self.leading(),
            "shared_config": self.config.shared_config,
            "config": *self.config_view.lock(),
        })
    }

    /// Leaves the fleet at shutdown: the lease is revoked, so this instance's keys
    /// (and its rollout leadership) go at once rather than when the lease expires.
    pub async fn leave(&self) {
        self.stop.cancel();
        self.fence.store(0, Ordering::Release);
        let lease = self.lease.swap(0, Ordering::AcqRel);
        if lease != 0 {
            match tokio::time::timeout(Duration::from_secs(1), self.etcd.revoke(lease)).await {
                Ok(Ok(())) => info!(instance = %self.config.instance, "left the fleet"),
                Ok(Err(e)) => warn!(error = %e, "cannot revoke the lease; it expires on its own"),
                Err(_) => warn!("etcd did not answer the lease revocation; it expires on its own"),
            }
        }
    }

    /// Records the connection state (logged on change).
    fn set_connected(&self, connected: bool, error: Option<String>) {
        let was = self.link.connected.swap(connected, Ordering::AcqRel);
        self.metrics.set_connected(connected);
        // Where an [[alert]] hook would announce etcd lost and regained.
        if was != connected {
            self.link
                .since_ms
                .store(records::unix_ms(), Ordering::Relaxed);
            if connected {
                info!(etcd = %self.etcd.endpoints(), revision = self.revision(),
                    "etcd reachable: following the fleet's state");
            } else {
                self.link.losses.fetch_add(1, Ordering::Relaxed);
                warn!(etcd = %self.etcd.endpoints(), error = error.as_deref().unwrap_or(""),
                    "lost etcd: serving with the last state; changes are refused until it is back");
            }
        }
        *self.link.error.lock() = error;
    }

    /// Wakes the tasks that follow the mirror.
    fn bump(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Applies the shared state to the server (serialised), after a change in it.
    async fn converge<H: Host>(&self, server: &H) {
        let _serialised = self.converge_lock.lock().await;
        let (state, bad, revision) = {
            let mirror = self.mirror.lock();
            let (state, bad) = mirror.shared_state();
            (state, bad, mirror.revision())
        };
        for (key, reason) in bad {
            warn!(
                key,
                reason, "ignoring a shared state entry that does not parse"
            );
        }
        let skipped = server.converge_runtime_state(&state).await;
        for s in skipped {
            warn!(
                kind = s.kind,
                entry = s.entry,
                reason = s.reason,
                "shared state entry does not fit this instance's config; not applied here"
            );
        }
        self.applied.fetch_max(revision, Ordering::AcqRel);
        self.metrics
            .set_revision(self.applied.load(Ordering::Acquire));
    }

    /// Takes in a batch of mirror changes: counters, the shared state, wake-ups.
    async fn absorb<H: Host>(&self, server: &H, changed: mirror::Changed) {
        if changed.instances {
            let instances = self.mirror.lock().instances();
            let now = records::unix_ms();
            let ttl = self.config.lease_ttl.as_millis() as u64;
            let live = instances
                .values()
                .filter(|p| now.saturating_sub(p.heartbeat_ms) <= ttl)
                .count();
            self.metrics.set_instances(live as u64);
            let mut fleet = self.fleet.lock();
            for (name, presence) in &instances {
                fleet.observe(name, presence);
            }
        }
        if changed.state {
            self.converge(server).await;
        } else {
            let revision = self.revision();
            self.applied.fetch_max(revision, Ordering::AcqRel);
            self.metrics
                .set_revision(self.applied.load(Ordering::Acquire));
        }
        if changed.any() {
            self.bump();
        }
    }
}
