//! Joining the fleet: the instance's membership is set up and its tasks started
//! (following etcd, heartbeats, leadership, the shared config).

use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use tracing::{info, warn};

use super::fleet::FleetCounters;
use super::keys::Keys;
use super::mirror::Mirror;
use super::records::ConfigView;
use super::{Cluster, Etcd, EtcdError, Host, Link, leader, presence, shared_config, sync};
use crate::config::{ClusterConfig, Config};

/// Joins the fleet: starts following etcd and publishing this instance, and waits
/// (at most twice `cluster.timeout` and a second) for the first read of the fleet's
/// state. If etcd cannot be reached the instance starts anyway, from its state file,
/// and catches up once etcd answers.
pub async fn join<H: Host>(
    server: &Arc<H>,
    file: &Config,
    config: ClusterConfig,
) -> Result<Arc<Cluster>, EtcdError> {
    let etcd = Etcd::new(&config)?;
    let cluster = Arc::new(Cluster {
        keys: Keys::new(&config.prefix),
        boot: format!("{:016x}", fastrand::u64(..)),
        mirror: Mutex::new(Mirror::default()),
        fleet: Mutex::new(FleetCounters::default()),
        link: Link::default(),
        lease: AtomicI64::new(0),
        fence: AtomicI64::new(0),
        applied: AtomicI64::new(0),
        converge_lock: tokio::sync::Mutex::new(()),
        changes: watch::Sender::new(0),
        reconnect: Notify::new(),
        publish: Notify::new(),
        heartbeat_error: Mutex::new(None),
        config_view: Mutex::new(ConfigView {
            source: "file".into(),
            digest: file.digest.clone(),
            revision: None,
            refused: None,
        }),
        local: Mutex::new(file.clone()),
        shared: Mutex::new(None),
        shared_attempt: AtomicI64::new(0),
        stop: server.shutdown_token().child_token(),
        metrics: Arc::clone(server.metrics().cluster()),
        first_sync: watch::Sender::new(false),
        etcd,
        config,
    });
    cluster.metrics.enable();
    let weak: Weak<H> = Arc::downgrade(server);
    tokio::spawn(sync::run(weak.clone(), Arc::clone(&cluster)));
    tokio::spawn(presence::run(weak.clone(), Arc::clone(&cluster)));
    tokio::spawn(leader::run(weak.clone(), Arc::clone(&cluster)));
    let wait = cluster.config.timeout * 2 + Duration::from_secs(1);
    let mut synced = cluster.first_sync.subscribe();
    let _ = tokio::time::timeout(wait, synced.wait_for(|done| *done)).await;
    if cluster.config.shared_config {
        // The shared config is in place before the instance reports ready.
        let current = cluster.mirror.lock().shared_config();
        match current {
            Some((record, revision)) if cluster.connected() => {
                shared_config::apply_revision(server.as_ref(), &cluster, &record, revision).await;
            }
            None if cluster.connected() => {}
            _ => shared_config::apply_cached(server.as_ref(), &cluster).await,
        }
        tokio::spawn(shared_config::run(weak, Arc::clone(&cluster)));
    }
    if cluster.connected() {
        info!(instance = %cluster.config.instance, prefix = %cluster.config.prefix,
            revision = cluster.revision(), "joined the fleet");
    } else {
        warn!(instance = %cluster.config.instance, etcd = %cluster.etcd.endpoints(),
            error = cluster.link.error.lock().as_deref().unwrap_or("no answer yet"),
            "etcd cannot be reached: serving with the state file; changes are refused until etcd answers");
    }
    Ok(cluster)
}
