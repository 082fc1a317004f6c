//! The instance's heartbeat: every second it renews its lease and writes
//! `instance/{name}` under it, with its view of every backend, the config it runs,
//! the shared-state revision it has applied and its per-pool traffic counters. The
//! lease is what the fleet knows it by: when the process dies, the lease expires
//! after `cluster.lease_ttl`, the key disappears and so does its rollout leadership.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use super::etcd::{Compare, EtcdError, Op};
use super::keys;
use super::records::{BackendView, Counters, Presence, unix_ms};
use super::{Cluster, Host};

/// How often the heartbeat is written (and the lease renewed).
pub const PERIOD: Duration = Duration::from_secs(1);

/// Why a heartbeat was not written.
#[derive(Debug, thiserror::Error)]
enum BeatError {
    #[error("{0}")]
    Etcd(#[from] EtcdError),
    #[error(
        "instance name `{0}` is held by another live process (a second instance with the same cluster.instance, or this one's previous run until its lease expires)"
    )]
    NameTaken(String),
    #[error("the lease expired before the heartbeat was written; taking a new one")]
    LeaseLost,
}

/// Writes heartbeats until the instance leaves.
pub(super) async fn run<H: Host>(server: Weak<H>, cluster: Arc<Cluster>) {
    let mut ticker = tokio::time::interval(PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_renewed = Instant::now();
    let mut failures = 0u32;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = cluster.publish.notified() => {}
            () = cluster.stop.cancelled() => break,
        }
        if cluster.connected() {
            let Some(live) = server.upgrade() else {
                break;
            };
            match beat(live.as_ref(), &cluster).await {
                Ok(()) => {
                    last_renewed = Instant::now();
                    failures = 0;
                    *cluster.heartbeat_error.lock() = None;
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        warn!(error = %e, "cannot write this instance's heartbeat to etcd");
                    }
                    *cluster.heartbeat_error.lock() = Some(e.to_string());
                    if failures == 2 && matches!(e, BeatError::Etcd(_)) {
                        // etcd answers reads but not writes (no quorum): treat it as
                        // unreachable, so changes are refused rather than lost.
                        cluster.reconnect.notify_one();
                    }
                }
            }
        }
        if cluster.lease.load(Ordering::Acquire) != 0
            && last_renewed.elapsed() >= cluster.config.lease_ttl
        {
            cluster.lease.store(0, Ordering::Release);
            if cluster.fence.swap(0, Ordering::AcqRel) != 0 {
                warn!(
                    "the lease expired while etcd was out of reach: no longer leading the fleet's rollouts"
                );
            }
        }
    }
}

/// One heartbeat: renew (or take) the lease, then write the instance's key.
async fn beat<H: Host>(server: &H, cluster: &Cluster) -> Result<(), BeatError> {
    let etcd = &cluster.etcd;
    let mut lease = cluster.lease.load(Ordering::Acquire);
    if lease != 0 && etcd.keep_alive(lease).await? <= 0 {
        warn!("this instance's lease expired; taking a new one");
        cluster.lease.store(0, Ordering::Release);
        cluster.fence.store(0, Ordering::Release);
        lease = 0;
    }
    let key = cluster.keys.full(&keys::instance(&cluster.config.instance));
    let value = serde_json::to_vec(&presence(server, cluster)).unwrap_or_default();
    if lease == 0 {
        let fresh = etcd.grant(cluster.config.lease_ttl).await?;
        // The name is ours if nobody holds it, or if it is this process's own key
        // from a lease it lost.
        let claim = etcd
            .txn(
                &[Compare::CreateRevision(key.clone(), 0)],
                &[Op::Put {
                    key: key.clone(),
                    value: value.clone(),
                    lease: Some(fresh),
                }],
                &[Op::Get(key.clone(), None)],
            )
            .await?;
        if !claim.succeeded {
            let holder = claim
                .responses
                .first()
                .and_then(|r| r.response_range.as_ref())
                .and_then(|r| r.kvs.first())
                .and_then(|kv| serde_json::from_slice::<Presence>(&kv.value).ok());
            if holder.is_some_and(|p| p.boot != cluster.boot) {
                let _ = etcd.revoke(fresh).await;
                return Err(BeatError::NameTaken(cluster.config.instance.clone()));
            }
        }
        cluster.lease.store(fresh, Ordering::Release);
        info!(instance = %cluster.config.instance, lease = fresh, "publishing this instance to the fleet");
        lease = fresh;
        if claim.succeeded {
            return Ok(());
        }
    }
    match etcd.put(&key, &value, Some(lease)).await {
        Err(EtcdError::Refused { message, .. }) if message.contains("lease not found") => {
            cluster.lease.store(0, Ordering::Release);
            cluster.fence.store(0, Ordering::Release);
            Err(BeatError::LeaseLost)
        }
        other => other.map(|_| ()).map_err(BeatError::from),
    }
}

/// This instance as the fleet sees it.
fn presence<H: Host>(server: &H, cluster: &Cluster) -> Presence {
    let snapshot = server.snapshot();
    let now = crate::clock::now_ms();
    let mut backends = BTreeMap::new();
    let mut pools = BTreeMap::new();
    for pool in snapshot.pools.iter_sorted() {
        for b in &pool.backends {
            let s = &b.state;
            backends.insert(
                format!("{}/{}", pool.name, b.key),
                BackendView {
                    health: s.health.status().as_str().to_string(),
                    breaker: s.breaker.state().as_str().to_string(),
                    admin_state: s.admin_state().as_str().to_string(),
                    usable: s.is_usable(now),
                },
            );
        }
        let sample = pool.traffic.sample();
        pools.insert(
            pool.name.to_string(),
            Counters {
                requests: sample.requests,
                failures: sample.failures,
                latency: sample.buckets().to_vec(),
            },
        );
    }
    Presence {
        instance: cluster.config.instance.clone(),
        boot: cluster.boot.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        admin: server.admin_address().map(|a| a.to_string()),
        heartbeat_ms: unix_ms(),
        state_revision: cluster.applied.load(Ordering::Acquire),
        config: cluster.config_view.lock().clone(),
        backends,
        pools,
    }
}
