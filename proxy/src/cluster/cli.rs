//! `switchyard cluster status`: the fleet read straight from etcd (no instance
//! needs to be up), as JSON or as a table.

use serde_json::{Value, json};

use super::etcd::{Etcd, EtcdError, wire};
use super::keys::{self, Keys};
use super::records::{LeaderRecord, Presence, RolloutRecord, SharedConfigRecord, unix_ms};

/// Reads the fleet under `keys`: the shared config, the instances and what they
/// run, the rollout leader and fleet rollouts.
pub async fn status(etcd: &Etcd, keys: &Keys) -> Result<Value, EtcdError> {
    let root = keys.root().as_bytes().to_vec();
    let read = etcd
        .range_between(&root, &keys.full(keys::PLUGIN), 0)
        .await?;
    let rest = etcd
        .range_between(
            &wire::prefix_end(&keys.full(keys::PLUGIN)),
            &wire::prefix_end(&root),
            read.header.revision,
        )
        .await?;
    let now = unix_ms();
    let mut shared = Value::Null;
    let mut leader = Value::Null;
    let mut instances = Vec::new();
    let mut rollouts = serde_json::Map::new();
    for kv in read.kvs.iter().chain(&rest.kvs) {
        let Some(rel) = keys.relative(&kv.key) else {
            continue;
        };
        if rel == keys::CONFIG {
            if let Ok(c) = serde_json::from_slice::<SharedConfigRecord>(&kv.value) {
                shared = json!({
                    "revision": kv.mod_revision, "file": c.file, "pushed_ms": c.pushed_ms,
                    "pushed_by": c.pushed_by, "plugins": c.plugins,
                });
            }
        } else if rel == keys::LEADER {
            if let Ok(l) = serde_json::from_slice::<LeaderRecord>(&kv.value) {
                leader = json!(l.instance);
            }
        } else if let Some(name) = keys::single(rel, keys::INSTANCE) {
            if let Ok(p) = serde_json::from_slice::<Presence>(&kv.value) {
                instances.push(json!({
                    "name": name,
                    "admin": p.admin,
                    "heartbeat_age_ms": now.saturating_sub(p.heartbeat_ms),
                    "state_revision": p.state_revision,
                    "config": p.config,
                }));
            }
        } else if let Some(route) = keys::single(rel, keys::ROLLOUT)
            && let Ok(r) = serde_json::from_slice::<RolloutRecord>(&kv.value)
        {
            rollouts.insert(route, r.to_status());
        }
    }
    Ok(json!({
        "revision": read.header.revision,
        "prefix": keys.root().trim_end_matches('/'),
        "shared_config": shared,
        "leader": leader,
        "instances": instances,
        "rollouts": rollouts,
    }))
}

/// The status as a table: which instance runs which config revision, and who
/// refused what.
pub fn render_status(status: &Value) -> String {
    let mut out = String::new();
    let current = status["shared_config"]["revision"].as_i64();
    out.push_str(&format!(
        "fleet {} at etcd revision {}\n",
        status["prefix"].as_str().unwrap_or(""),
        status["revision"]
    ));
    match current {
        Some(rev) => out.push_str(&format!(
            "shared config: revision {rev} ({}, pushed by {})\n",
            status["shared_config"]["file"].as_str().unwrap_or(""),
            status["shared_config"]["pushed_by"].as_str().unwrap_or("")
        )),
        None => out.push_str("shared config: none pushed\n"),
    }
    out.push_str(&format!(
        "rollout leader: {}\n\n",
        status["leader"].as_str().unwrap_or("none")
    ));
    out.push_str(&format!(
        "{:<20} {:>10} {:<28} {}\n",
        "INSTANCE", "HEARTBEAT", "CONFIG", "NOTE"
    ));
    for i in status["instances"].as_array().into_iter().flatten() {
        let config = &i["config"];
        let running = match config["revision"].as_i64() {
            Some(rev) => format!("cluster revision {rev}"),
            None => format!(
                "own file {}",
                config["digest"]
                    .as_str()
                    .unwrap_or("")
                    .get(..12)
                    .unwrap_or("")
            ),
        };
        let note = match (&config["refused"], current) {
            (Value::Object(r), _) => format!(
                "refused revision {}: {}",
                r.get("revision").unwrap_or(&Value::Null),
                r.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .lines()
                    .next()
                    .unwrap_or("")
            ),
            (_, Some(rev)) if config["revision"].as_i64() != Some(rev) => {
                "not on the current shared config".to_string()
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<20} {:>8}ms {:<28} {note}\n",
            i["name"].as_str().unwrap_or(""),
            i["heartbeat_age_ms"],
            running
        ));
    }
    out
}

/// Whether every instance runs the current shared config (the exit status of
/// `cluster status`).
pub fn converged(status: &Value) -> bool {
    let Some(current) = status["shared_config"]["revision"].as_i64() else {
        return true;
    };
    status["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|i| i["config"]["revision"].as_i64() == Some(current))
}
