//! The instance's copy of its fleet's keys, kept by a full read at every (re)connect
//! and a watch in between. Every change carries the etcd revision that made it, so a
//! change this instance committed itself and the same change arriving later through
//! the watch apply once.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::etcd::{Event, KeyValue};
use super::keys;
use super::records::{LeaderRecord, Presence, RolloutRecord, SharedConfigRecord};
use crate::persist::SavedState;

/// One key as last seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub value: Bytes,
    pub mod_revision: i64,
    pub create_revision: i64,
    pub lease: i64,
}

/// Which groups of keys a batch of changes touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changed {
    pub state: bool,
    pub rollouts: bool,
    pub instances: bool,
    pub leader: bool,
    pub config: bool,
}

impl Changed {
    fn mark(&mut self, rel: &str) {
        if rel.starts_with(keys::STATE) {
            self.state = true;
        } else if rel.starts_with(keys::ROLLOUT) {
            self.rollouts = true;
        } else if rel.starts_with(keys::INSTANCE) {
            self.instances = true;
        } else if rel == keys::LEADER {
            self.leader = true;
        } else if rel == keys::CONFIG {
            self.config = true;
        }
    }

    /// Whether anything changed.
    pub fn any(&self) -> bool {
        self.state || self.rollouts || self.instances || self.leader || self.config
    }
}

/// The fleet's keys (plugin chunks excepted: they are read when needed).
#[derive(Debug, Default)]
pub struct Mirror {
    /// The revision the watch has reached.
    revision: i64,
    entries: BTreeMap<String, Entry>,
    /// Keys deleted, with the revision of the deletion.
    deleted: BTreeMap<String, i64>,
}

impl Mirror {
    /// The revision every change up to which is in the mirror.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// Replaces everything with a full read at `revision`; returns what differs.
    pub fn replace(&mut self, kvs: Vec<(String, KeyValue)>, revision: i64) -> Changed {
        let mut next = BTreeMap::new();
        for (rel, kv) in kvs {
            if rel.starts_with(keys::PLUGIN) {
                continue;
            }
            next.insert(rel, entry(kv));
        }
        let mut changed = Changed::default();
        for (rel, e) in &next {
            if self.entries.get(rel) != Some(e) {
                changed.mark(rel);
            }
        }
        for rel in self.entries.keys() {
            if !next.contains_key(rel) {
                changed.mark(rel);
            }
        }
        self.entries = next;
        self.deleted.clear();
        self.revision = revision;
        changed
    }

    /// Applies watched events up to `revision`.
    pub fn apply(&mut self, events: Vec<(String, Event)>, revision: i64) -> Changed {
        let mut changed = Changed::default();
        for (rel, event) in events {
            if rel.starts_with(keys::PLUGIN) {
                continue;
            }
            let at = event.kv.mod_revision;
            let applied = if event.is_delete() {
                self.delete(&rel, at)
            } else {
                self.put(&rel, entry(event.kv))
            };
            if applied {
                changed.mark(&rel);
            }
        }
        self.revision = self.revision.max(revision);
        changed
    }

    /// Records a write this instance committed at `revision` (`None`: a deletion),
    /// before the watch brings it.
    pub fn record(&mut self, rel: &str, value: Option<Bytes>, revision: i64) -> Changed {
        let mut changed = Changed::default();
        let applied = match value {
            Some(value) => {
                let create_revision = self
                    .entries
                    .get(rel)
                    .map_or(revision, |e| e.create_revision);
                self.put(
                    rel,
                    Entry {
                        value,
                        mod_revision: revision,
                        create_revision,
                        lease: 0,
                    },
                )
            }
            None => self.delete(rel, revision),
        };
        if applied {
            changed.mark(rel);
        }
        changed
    }

    fn put(&mut self, rel: &str, e: Entry) -> bool {
        let newer = self
            .entries
            .get(rel)
            .is_none_or(|old| old.mod_revision < e.mod_revision)
            && self.deleted.get(rel).is_none_or(|&d| d < e.mod_revision);
        if newer {
            self.deleted.remove(rel);
            self.entries.insert(rel.to_string(), e);
        }
        newer
    }

    fn delete(&mut self, rel: &str, at: i64) -> bool {
        match self.entries.get(rel) {
            Some(old) if old.mod_revision < at => {
                self.entries.remove(rel);
                self.deleted.insert(rel.to_string(), at);
                true
            }
            _ => false,
        }
    }

    /// A key as last seen.
    pub fn get(&self, rel: &str) -> Option<&Entry> {
        self.entries.get(rel)
    }

    /// The revision a key was last modified at (0: it does not exist).
    pub fn mod_revision(&self, rel: &str) -> i64 {
        self.entries.get(rel).map_or(0, |e| e.mod_revision)
    }

    /// The shared runtime state, with entries that do not parse as `(key, reason)`.
    pub fn shared_state(&self) -> (SavedState, Vec<(String, String)>) {
        super::records::state_from_entries(
            self.entries
                .range(keys::STATE.to_string()..)
                .take_while(|(k, _)| k.starts_with(keys::STATE))
                .map(|(k, e)| (k.as_str(), e.value.as_ref())),
        )
    }

    /// Every fleet rollout by route.
    pub fn rollouts(&self) -> BTreeMap<String, (RolloutRecord, i64)> {
        self.group(keys::ROLLOUT)
            .filter_map(|(rel, e)| {
                let route = keys::single(rel, keys::ROLLOUT)?;
                let record: RolloutRecord = serde_json::from_slice(&e.value).ok()?;
                Some((route, (record, e.mod_revision)))
            })
            .collect()
    }

    /// Every instance's last heartbeat by name.
    pub fn instances(&self) -> BTreeMap<String, Presence> {
        self.group(keys::INSTANCE)
            .filter_map(|(rel, e)| {
                let name = keys::single(rel, keys::INSTANCE)?;
                let presence: Presence = serde_json::from_slice(&e.value).ok()?;
                Some((name, presence))
            })
            .collect()
    }

    /// The rollout leader and the revision it was elected at.
    pub fn leader(&self) -> Option<(LeaderRecord, i64)> {
        let e = self.entries.get(keys::LEADER)?;
        let record = serde_json::from_slice(&e.value).ok()?;
        Some((record, e.create_revision))
    }

    /// The shared config and its revision.
    pub fn shared_config(&self) -> Option<(SharedConfigRecord, i64)> {
        let e = self.entries.get(keys::CONFIG)?;
        let record = serde_json::from_slice(&e.value).ok()?;
        Some((record, e.mod_revision))
    }

    fn group<'a>(&'a self, group: &'a str) -> impl Iterator<Item = (&'a str, &'a Entry)> + 'a {
        self.entries
            .range(group.to_string()..)
            .take_while(move |(k, _)| k.starts_with(group))
            .map(|(k, e)| (k.as_str(), e))
    }
}

fn entry(kv: KeyValue) -> Entry {
    Entry {
        value: kv.value,
        mod_revision: kv.mod_revision,
        create_revision: kv.create_revision,
        lease: kv.lease,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(value: &str, rev: i64) -> KeyValue {
        KeyValue {
            key: Bytes::new(),
            value: Bytes::from(value.to_string()),
            create_revision: 1,
            mod_revision: rev,
            lease: 0,
        }
    }

    fn put(rel: &str, value: &str, rev: i64) -> (String, Event) {
        (
            rel.to_string(),
            Event {
                kind: None,
                kv: kv(value, rev),
            },
        )
    }

    #[test]
    fn a_change_applies_once_whichever_path_brings_it_first() {
        let mut m = Mirror::default();
        let changed = m.replace(vec![("state/route/web".into(), kv("a", 5))], 5);
        assert!(changed.state && !changed.rollouts);
        // This instance committed revision 7 itself...
        let changed = m.record("state/route/web", Some(Bytes::from_static(b"b")), 7);
        assert!(changed.state);
        // ...then the watch brings revision 6 (another key) and 7 (the same write).
        let changed = m.apply(
            vec![put("rollout/web", "r", 6), put("state/route/web", "b", 7)],
            7,
        );
        assert!(changed.rollouts && !changed.state, "{changed:?}");
        assert_eq!(m.revision(), 7);
        // An older write never overwrites a newer one, nor revives a deleted key.
        m.record("state/route/web", None, 9);
        let changed = m.apply(vec![put("state/route/web", "stale", 8)], 9);
        assert!(!changed.any());
        assert!(m.get("state/route/web").is_none());
        // Plugin chunks are not kept.
        let changed = m.apply(vec![put("plugin/ab/00000", "x", 10)], 10);
        assert!(!changed.any());
        // A full read reports only what differs.
        let changed = m.replace(vec![("rollout/web".into(), kv("r", 6))], 12);
        assert!(!changed.any(), "{changed:?}");
    }
}
