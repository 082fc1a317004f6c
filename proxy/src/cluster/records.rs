//! The values a fleet keeps in etcd (see [`super::keys`]), as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::membership::Member;
use crate::persist::{SavedBackend, SavedRoute, SavedState};

use super::keys;

/// `state/member/...`: a backend added to a pool or taken out of it at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberRecord {
    /// Added with this weight.
    Added(u32),
    /// Removed; the weight the config gave it then.
    Removed(u32),
}

/// The shared runtime state as etcd keys and JSON values (the inverse of
/// [`state_from_entries`]).
pub fn state_entries(state: &SavedState) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (key, backend) in &state.backends {
        if let Some((pool, address)) = key.split_once('/') {
            out.insert(keys::backend(pool, address), to_value(backend));
        }
    }
    for (route, saved) in &state.routes {
        out.insert(keys::route(route), to_value(saved));
    }
    let lists = [
        (
            &state.members.added,
            MemberRecord::Added as fn(u32) -> MemberRecord,
        ),
        (&state.members.removed, MemberRecord::Removed),
    ];
    for (map, record) in lists {
        for (pool, members) in map {
            for m in members {
                out.insert(
                    keys::member(pool, &m.address.to_string()),
                    to_value(&record(m.weight)),
                );
            }
        }
    }
    out
}

fn to_value<T: Serialize>(value: &T) -> Value {
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// Builds the shared runtime state from `state/...` entries. Entries that do not
/// parse are returned as `(key, reason)`; the rest is kept.
pub fn state_from_entries<'a>(
    entries: impl Iterator<Item = (&'a str, &'a [u8])>,
) -> (SavedState, Vec<(String, String)>) {
    let mut state = SavedState::default();
    let mut bad = Vec::new();
    for (rel, value) in entries {
        let parsed = if let Some((pool, address)) = keys::pair(rel, keys::BACKEND) {
            serde_json::from_slice::<SavedBackend>(value)
                .map(|b| {
                    state.backends.insert(format!("{pool}/{address}"), b);
                })
                .map_err(|e| e.to_string())
        } else if let Some(route) = keys::single(rel, keys::ROUTE) {
            serde_json::from_slice::<SavedRoute>(value)
                .map(|r| {
                    state.routes.insert(route, r);
                })
                .map_err(|e| e.to_string())
        } else if let Some((pool, address)) = keys::pair(rel, keys::MEMBER) {
            match (
                serde_json::from_slice::<MemberRecord>(value),
                address.parse(),
            ) {
                (Ok(record), Ok(address)) => {
                    let (map, weight) = match record {
                        MemberRecord::Added(w) => (&mut state.members.added, w),
                        MemberRecord::Removed(w) => (&mut state.members.removed, w),
                    };
                    map.entry(pool)
                        .or_default()
                        .push(Member { address, weight });
                    Ok(())
                }
                (Err(e), _) => Err(e.to_string()),
                (_, Err(_)) => Err(format!("`{address}` is not an IP:port address")),
            }
        } else {
            Err("not a key of the shared state".to_string())
        };
        if let Err(reason) = parsed {
            bad.push((rel.to_string(), reason));
        }
    }
    (state, bad)
}

/// `rollout/{route}`: a fleet rollout, its plan and how far it got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutRecord {
    pub route: String,
    pub from: String,
    pub to: String,
    /// The pool the config names for the route when the rollout began.
    pub config_pool: String,
    /// The request body, as [`crate::rollout::Plan::parse`] reads it.
    pub plan: Value,
    /// `running`, `completed`, `rolled_back` or `aborted`.
    pub state: String,
    pub step: usize,
    pub percent: u32,
    #[serde(default)]
    pub last_verdict: Option<Value>,
    #[serde(default)]
    pub reason: Option<String>,
    /// The instance running it (`None` until a leader picks it up).
    #[serde(default)]
    pub leader: Option<String>,
    /// The process of that instance (a restarted instance is a new leader).
    #[serde(default)]
    pub leader_boot: Option<String>,
    /// The instance whose admin API started it.
    pub started_by: String,
    /// Wall clock of the last change, in Unix milliseconds.
    pub updated_ms: u64,
}

impl RolloutRecord {
    /// Whether it is still walking its steps.
    pub fn running(&self) -> bool {
        self.state == "running"
    }

    /// The shape `/status` shows for a rollout (that of a local one), with the leader.
    pub fn to_status(&self) -> Value {
        let plan = crate::rollout::Plan::parse(self.plan.to_string().as_bytes()).ok();
        serde_json::json!({
            "from": self.from,
            "to": self.to,
            "steps": plan.as_ref().map(|p| p.steps.clone()),
            "interval_ms": plan.as_ref().map(|p| p.interval.as_millis() as u64),
            "guard": self.plan.get("guard"),
            "state": self.state,
            "step": self.step,
            "percent": self.percent,
            "last_verdict": self.last_verdict,
            "reason": self.reason,
            "leader": self.leader,
            "fleet": true,
        })
    }
}

/// `leader`: who runs the fleet's rollouts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderRecord {
    pub instance: String,
    pub boot: String,
}

/// One backend as an instance sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendView {
    pub health: String,
    pub breaker: String,
    pub admin_state: String,
    pub usable: bool,
}

/// Which config an instance runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConfigView {
    /// `file` (its own config file) or `cluster` (a pushed config).
    pub source: String,
    /// SHA-256 of the config text.
    pub digest: String,
    /// The pushed config's revision, when running one.
    #[serde(default)]
    pub revision: Option<i64>,
    /// The last pushed revision it refused, and why.
    #[serde(default)]
    pub refused: Option<Refusal>,
}

/// A pushed config an instance would not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub revision: i64,
    pub error: String,
}

/// `instance/{name}`: an instance's heartbeat, renewed every second under its lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Presence {
    pub instance: String,
    /// Random per process: counters restart with it.
    pub boot: String,
    pub version: String,
    /// The admin address, for operators.
    #[serde(default)]
    pub admin: Option<String>,
    /// Wall clock of this heartbeat, in Unix milliseconds.
    pub heartbeat_ms: u64,
    /// The etcd revision of the shared state it has applied.
    pub state_revision: i64,
    pub config: ConfigView,
    /// `pool/address` → its view of that backend.
    pub backends: BTreeMap<String, BackendView>,
    /// Pool → cumulative traffic counters since `boot` (see [`super::fleet`]).
    pub pools: BTreeMap<String, Counters>,
}

/// A pool's cumulative counters, as [`crate::rollout::TrafficSample`] holds them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Counters {
    pub requests: u64,
    pub failures: u64,
    pub latency: Vec<u64>,
}

/// `config`: the shared config pushed with `switchyard cluster push`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedConfigRecord {
    /// The file name it was pushed from, for messages.
    pub file: String,
    /// The config text, as validated by the push.
    pub text: String,
    /// Plugin name → its file by digest.
    pub plugins: BTreeMap<String, PluginBlob>,
    /// Wall clock of the push, in Unix milliseconds.
    pub pushed_ms: u64,
    /// The host that pushed it.
    pub pushed_by: String,
}

/// A plugin file stored as chunks under `plugin/{sha256}/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginBlob {
    pub sha256: String,
    pub size: u64,
    pub chunks: usize,
}

/// Now, in Unix milliseconds.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::RuntimeBackends;

    #[test]
    fn shared_state_round_trips_through_keys() {
        let mut state = SavedState::default();
        state.backends.insert(
            "app/127.0.0.1:1".into(),
            SavedBackend {
                admin_state: "draining".into(),
                weight: 3,
                config_weight: 1,
            },
        );
        state.routes.insert(
            "web".into(),
            SavedRoute {
                config_pool: "blue".into(),
                pools: BTreeMap::from([("blue".into(), 90), ("green".into(), 10)]),
                sticky: Some("header:x-user".into()),
            },
        );
        state.members = RuntimeBackends {
            added: BTreeMap::from([(
                "app".into(),
                vec![Member {
                    address: "127.0.0.1:2".parse().unwrap(),
                    weight: 4,
                }],
            )]),
            removed: BTreeMap::new(),
        };
        let entries = state_entries(&state);
        let bytes: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::to_vec(v).unwrap()))
            .collect();
        let (back, bad) = state_from_entries(bytes.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(back, state);
        let (_, bad) = state_from_entries([("state/route/x", b"nonsense".as_slice())].into_iter());
        assert_eq!(bad.len(), 1);
    }
}
