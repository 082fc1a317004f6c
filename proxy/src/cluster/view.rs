//! `GET /cluster`: the fleet as this instance knows it: every instance with its
//! heartbeat, the config and shared-state revision it runs and its view of each
//! backend, the rollout leader and fleet rollouts, and the disagreements between
//! live instances (one sees a backend down that the others see up, different
//! configs, a drain one has not applied).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use super::Cluster;
use super::records::{Presence, unix_ms};

impl Cluster {
    /// The fleet view (see the module docs).
    pub fn view_json(&self) -> Value {
        let now = unix_ms();
        let stale_after = self.config.lease_ttl.as_millis() as u64;
        let (instances, leader, shared, rollouts, revision) = {
            let mirror = self.mirror.lock();
            (
                mirror.instances(),
                mirror.leader().map(|(l, _)| l.instance),
                mirror.shared_config(),
                mirror.rollouts(),
                mirror.revision(),
            )
        };
        let live: BTreeMap<&String, &Presence> = instances
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.heartbeat_ms) <= stale_after)
            .collect();
        let list: Vec<Value> = instances
            .iter()
            .map(|(name, p)| {
                let age = now.saturating_sub(p.heartbeat_ms);
                json!({
                    "name": name,
                    "self": *name == self.config.instance,
                    "leader": leader.as_ref() == Some(name),
                    "admin": p.admin,
                    "version": p.version,
                    "heartbeat_ms": p.heartbeat_ms,
                    "heartbeat_age_ms": age,
                    "stale": age > stale_after,
                    "state_revision": p.state_revision,
                    "config": p.config,
                    "backends": p.backends,
                })
            })
            .collect();
        json!({
            "instance": self.config.instance,
            "prefix": self.config.prefix,
            "connected": self.connected(),
            "error": *self.link.error.lock(),
            "revision": revision,
            "leader": leader,
            "shared_config": shared.map(|(c, rev)| json!({
                "revision": rev,
                "file": c.file,
                "pushed_ms": c.pushed_ms,
                "pushed_by": c.pushed_by,
                "plugins": c.plugins,
            })),
            "instances": list,
            "disagreements": disagreements(&live),
            "rollouts": rollouts
                .iter()
                .map(|(route, (r, _))| (route.clone(), r.to_status()))
                .collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// Reads one field of an instance's view of a backend.
type ReadField = fn(&super::records::BackendView) -> Value;

/// Where live instances see things differently: per backend (health, usable, admin
/// state, or the backend missing on some) and the config they run.
fn disagreements(live: &BTreeMap<&String, &Presence>) -> Vec<Value> {
    let mut out = Vec::new();
    let backends: BTreeSet<&String> = live.values().flat_map(|p| p.backends.keys()).collect();
    for backend in backends {
        let fields: [(&str, ReadField); 3] = [
            ("health", |b| json!(b.health)),
            ("usable", |b| json!(b.usable)),
            ("admin_state", |b| json!(b.admin_state)),
        ];
        for (field, read) in fields {
            let views: BTreeMap<&str, Value> = live
                .iter()
                .map(|(name, p)| {
                    let value = p.backends.get(backend).map_or(json!("absent"), read);
                    (name.as_str(), value)
                })
                .collect();
            if distinct(views.values()) {
                out.push(json!({ "backend": backend, "field": field, "views": views }));
            }
        }
    }
    // Instances running their own files differ by nature (names, addresses); once
    // a shared config runs somewhere, every instance should run the same revision.
    if live.values().any(|p| p.config.revision.is_some()) {
        let configs: BTreeMap<&str, Value> = live
            .iter()
            .map(|(name, p)| {
                let which = match p.config.revision {
                    Some(rev) => format!("cluster revision {rev}"),
                    None => "its own file".to_string(),
                };
                (name.as_str(), json!(which))
            })
            .collect();
        if distinct(configs.values()) {
            out.push(json!({ "field": "config", "views": configs }));
        }
    }
    out
}

fn distinct<'a>(mut values: impl Iterator<Item = &'a Value>) -> bool {
    let Some(first) = values.next() else {
        return false;
    };
    values.any(|v| v != first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::records::{BackendView, ConfigView};

    fn presence(health: &str, digest: &str) -> Presence {
        Presence {
            instance: String::new(),
            boot: String::new(),
            version: String::new(),
            admin: None,
            heartbeat_ms: 0,
            state_revision: 0,
            config: ConfigView {
                source: "file".into(),
                digest: digest.into(),
                revision: None,
                refused: None,
            },
            backends: BTreeMap::from([(
                "app/127.0.0.1:1".to_string(),
                BackendView {
                    health: health.into(),
                    breaker: "closed".into(),
                    admin_state: "active".into(),
                    usable: health == "up",
                },
            )]),
            pools: BTreeMap::new(),
        }
    }

    #[test]
    fn one_instance_seeing_a_backend_down_is_a_disagreement() {
        let (a, b, c) = ("a".to_string(), "b".to_string(), "c".to_string());
        let (up, down) = (presence("up", "d1"), presence("down", "d1"));
        let agree = BTreeMap::from([(&a, &up), (&b, &up)]);
        assert!(disagreements(&agree).is_empty());
        let split = BTreeMap::from([(&a, &up), (&b, &up), (&c, &down)]);
        let found = disagreements(&split);
        let fields: Vec<&str> = found.iter().filter_map(|d| d["field"].as_str()).collect();
        assert_eq!(fields, ["health", "usable"]);
        assert_eq!(found[0]["views"]["c"], "down");
        let other_file = presence("up", "d2");
        let files = BTreeMap::from([(&a, &up), (&b, &other_file)]);
        assert!(
            disagreements(&files).is_empty(),
            "instances on their own files are not compared"
        );
        let mut pushed = presence("up", "d3");
        pushed.config.revision = Some(9);
        let mixed = BTreeMap::from([(&a, &up), (&b, &pushed)]);
        assert_eq!(disagreements(&mixed)[0]["field"], "config");
    }
}
