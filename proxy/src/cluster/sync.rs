//! Following the fleet's keys: a full read at every (re)connect, then a watch from
//! the revision after it. A broken watch is restarted on the next etcd member at
//! once; only when no member answers is the instance disconnected (mutations are
//! refused, traffic goes on with the last state), and it retries with a backoff of
//! up to two seconds. Reconnecting reads everything again, so whatever changed while
//! the instance was away (or was compacted out of etcd's history) is caught up.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tracing::debug;

use super::etcd::{EtcdError, KeyValue, wire};
use super::keys;
use super::{Cluster, Host};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// How one connection ended.
enum Ended {
    /// The instance is leaving (or the server is gone).
    Stopped,
    /// etcd was followed for a while, then the watch broke.
    Broke(String),
    /// etcd could not be read or watched at all.
    Failed(String),
}

/// Follows the fleet's keys until the instance leaves.
pub(super) async fn run<H: Host>(server: Weak<H>, cluster: Arc<Cluster>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        match follow(&server, &cluster).await {
            Ended::Stopped => break,
            Ended::Broke(why) => {
                // Another member may well answer: try again at once (after a pause
                // that keeps a flapping stream from spinning) before calling the
                // link lost.
                debug!(reason = %why, "etcd watch ended; reconnecting");
                backoff = FIRST_BACKOFF;
                tokio::select! {
                    () = tokio::time::sleep(RETRY_PAUSE) => continue,
                    () = cluster.stop.cancelled() => break,
                }
            }
            Ended::Failed(why) => {
                cluster.set_connected(false, Some(why));
                cluster.first_sync.send_replace(true);
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = cluster.stop.cancelled() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Reads everything, then follows the watch until it ends.
async fn follow<H: Host>(server: &Weak<H>, cluster: &Arc<Cluster>) -> Ended {
    let (kvs, revision) = tokio::select! {
        read = read_all(cluster) => match read {
            Ok(read) => read,
            Err(e) => return Ended::Failed(e.to_string()),
        },
        () = cluster.stop.cancelled() => return Ended::Stopped,
    };
    let mut watch = tokio::select! {
        watch = cluster.etcd.watch_prefix(cluster.keys.root().as_bytes(), revision + 1) => match watch {
            Ok(w) => w,
            Err(e) => return Ended::Failed(e.to_string()),
        },
        () = cluster.stop.cancelled() => return Ended::Stopped,
    };
    let Some(live) = server.upgrade() else {
        return Ended::Stopped;
    };
    let changed = cluster.mirror.lock().replace(kvs, revision);
    cluster.absorb(live.as_ref(), changed).await;
    drop(live);
    cluster.set_connected(true, None);
    cluster.first_sync.send_replace(true);
    loop {
        let message = tokio::select! {
            m = watch.next() => m,
            () = cluster.reconnect.notified() => return Ended::Failed("etcd does not accept writes".into()),
            () = cluster.stop.cancelled() => return Ended::Stopped,
        };
        let response = match message {
            Ok(Some(response)) => response,
            Ok(None) => return Ended::Broke("the watch stream ended".into()),
            Err(EtcdError::Compacted(at)) => {
                return Ended::Broke(format!("history compacted at {at}"));
            }
            Err(e) => return Ended::Broke(e.to_string()),
        };
        let events = response
            .events
            .into_iter()
            .filter_map(|e| Some((cluster.keys.relative(&e.kv.key)?.to_string(), e)))
            .collect();
        let Some(live) = server.upgrade() else {
            return Ended::Stopped;
        };
        let changed = cluster
            .mirror
            .lock()
            .apply(events, response.header.revision);
        cluster.absorb(live.as_ref(), changed).await;
    }
}

/// Every key of the fleet but the plugin chunks, at one revision.
async fn read_all(cluster: &Cluster) -> Result<(Vec<(String, KeyValue)>, i64), EtcdError> {
    let root = cluster.keys.root().as_bytes().to_vec();
    let plugins = cluster.keys.full(keys::PLUGIN);
    let first = cluster.etcd.range_between(&root, &plugins, 0).await?;
    let revision = first.header.revision;
    let second = cluster
        .etcd
        .range_between(
            &wire::prefix_end(&plugins),
            &wire::prefix_end(&root),
            revision,
        )
        .await?;
    let kvs = first
        .kvs
        .into_iter()
        .chain(second.kvs)
        .filter_map(|kv| Some((cluster.keys.relative(&kv.key)?.to_string(), kv)))
        .collect();
    Ok((kvs, revision))
}
