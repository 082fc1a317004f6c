//! Backends added and removed through the admin API, kept beside the config file's
//! list and laid over it whenever a snapshot is built.
//!
//! The rule on reload: the config wins for any backend it mentions. A runtime
//! addition stays until the config itself lists that address (then the config's
//! entry is used); a runtime removal of a configured backend stays until the config
//! drops that backend or changes its entry (its weight), which puts it back.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::config::{BackendConfig, Config};

/// One backend address with a weight: the added weight, or for a removal the
/// configured weight it was removed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The backend's `ip:port`.
    pub address: SocketAddr,
    /// Added weight, or the configured weight at removal.
    pub weight: u32,
}

/// Runtime additions and removals, by pool name. Persisted in the state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeBackends {
    /// Backends the config does not list, added through the admin API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub added: BTreeMap<String, Vec<Member>>,
    /// Configured backends taken out through the admin API.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub removed: BTreeMap<String, Vec<Member>>,
}

fn configured(config: &Config, pool: &str, address: SocketAddr) -> Option<u32> {
    config.pools.get(pool)?.backend_weight(address)
}

impl RuntimeBackends {
    /// Nothing added or removed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }

    /// Records an addition against the config file's list (`base`). Re-adding a
    /// configured backend that was removed just cancels the removal.
    pub fn add(&mut self, base: &Config, pool: &str, member: Member) {
        if configured(base, pool, member.address).is_some() {
            self.forget(pool, member.address);
            return;
        }
        let list = self.added.entry(pool.to_string()).or_default();
        list.retain(|m| m.address != member.address);
        list.push(member);
    }

    /// Records a removal against the config file's list (`base`).
    pub fn remove(&mut self, base: &Config, pool: &str, address: SocketAddr) {
        self.forget(pool, address);
        if let Some(weight) = configured(base, pool, address) {
            self.removed
                .entry(pool.to_string())
                .or_default()
                .push(Member { address, weight });
        }
    }

    fn forget(&mut self, pool: &str, address: SocketAddr) {
        for map in [&mut self.added, &mut self.removed] {
            if let Some(list) = map.get_mut(pool) {
                list.retain(|m| m.address != address);
                if list.is_empty() {
                    map.remove(pool);
                }
            }
        }
    }

    /// Drops records a new config file overrides (see the module rule); returns
    /// whether anything was dropped.
    pub fn reconcile(&mut self, base: &Config) -> bool {
        let before = self.clone();
        self.added.retain(|pool, list| {
            list.retain(|m| {
                base.pools.contains_key(pool) && configured(base, pool, m.address).is_none()
            });
            !list.is_empty()
        });
        self.removed.retain(|pool, list| {
            list.retain(|m| configured(base, pool, m.address) == Some(m.weight));
            !list.is_empty()
        });
        *self != before
    }

    /// The config with runtime changes laid over it. A removal never empties a pool
    /// and never takes out a backend found in DNS.
    pub fn overlay(&self, mut config: Config) -> Config {
        for (name, pool) in &mut config.pools {
            if let Some(removed) = self.removed.get(name) {
                let keep: Vec<BackendConfig> = pool
                    .backends
                    .iter()
                    .filter(|b| {
                        // DNS decides the membership of the backends it gave.
                        b.origin.is_some()
                            || !removed
                                .iter()
                                .any(|m| m.address == b.address && m.weight == b.weight)
                    })
                    .cloned()
                    .collect();
                if !keep.is_empty() || self.added.get(name).is_some_and(|a| !a.is_empty()) {
                    pool.backends = keep;
                }
            }
            for m in self.added.get(name).into_iter().flatten() {
                if !pool.backends.iter().any(|b| b.address == m.address) {
                    pool.backends.push(BackendConfig {
                        address: m.address,
                        weight: m.weight,
                        origin: None,
                        name: None,
                    });
                }
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(backends: &[(&str, u32)]) -> Config {
        let list: Vec<String> = backends
            .iter()
            .map(|(a, w)| format!("{{ address = \"{a}\", weight = {w} }}"))
            .collect();
        let text = format!(
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[[route]]\nname = \"r\"\nlistener = \"web\"\npool = \"app\"\n[pool.app]\nbackends = [{}]\n",
            list.join(", ")
        );
        Config::parse(std::path::Path::new("t.toml"), &text).unwrap()
    }

    fn addresses(c: &Config) -> Vec<String> {
        c.pools["app"]
            .backends
            .iter()
            .map(|b| format!("{}/{}", b.address, b.weight))
            .collect()
    }

    #[test]
    fn additions_and_removals_follow_the_config_wins_rule() {
        let base = config(&[("127.0.0.1:1", 1), ("127.0.0.1:2", 1)]);
        let mut rt = RuntimeBackends::default();
        let added = Member {
            address: "127.0.0.1:3".parse().unwrap(),
            weight: 4,
        };
        rt.add(&base, "app", added);
        rt.remove(&base, "app", "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            addresses(&rt.overlay(base.clone())),
            ["127.0.0.1:2/1", "127.0.0.1:3/4"]
        );
        // A reload that lists the added backend takes it over; one that changes the
        // removed backend's weight brings it back.
        let next = config(&[("127.0.0.1:1", 5), ("127.0.0.1:2", 1), ("127.0.0.1:3", 2)]);
        assert!(rt.reconcile(&next));
        assert!(rt.is_empty(), "{rt:?}");
        // An unchanged config keeps both records.
        let mut rt = RuntimeBackends::default();
        rt.add(&base, "app", added);
        rt.remove(&base, "app", "127.0.0.1:1".parse().unwrap());
        assert!(!rt.reconcile(&base));
        // Re-adding a removed configured backend cancels the removal.
        rt.add(
            &base,
            "app",
            Member {
                address: "127.0.0.1:1".parse().unwrap(),
                weight: 1,
            },
        );
        assert!(rt.removed.is_empty());
    }

    #[test]
    fn a_removal_never_takes_out_a_backend_found_in_dns() {
        let base = config(&[("127.0.0.1:1", 1)]);
        let mut found = base.clone();
        let pool = found.pools.get_mut("app").unwrap();
        pool.backends.push(BackendConfig {
            address: "127.0.0.1:2".parse().unwrap(),
            weight: 1,
            origin: Some("app.test".into()),
            name: None,
        });
        let mut rt = RuntimeBackends::default();
        rt.removed.insert(
            "app".to_string(),
            vec![Member {
                address: "127.0.0.1:2".parse().unwrap(),
                weight: 1,
            }],
        );
        assert_eq!(
            addresses(&rt.overlay(found)),
            ["127.0.0.1:1/1", "127.0.0.1:2/1"]
        );
    }
}
