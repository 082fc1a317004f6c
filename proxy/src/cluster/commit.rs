//! Writing a change to the fleet's shared state. A change is an edit of the state
//! as this instance last saw it; the keys it alters are written in one etcd
//! transaction that holds only if each of them is still at the revision the edit
//! was based on (and, with `If-Match`, was not changed after the revision the
//! operator looked at). So two operators changing the same thing at once cannot
//! overwrite each other: one change wins, the other is refused with the revision
//! that beat it. Nothing is applied anywhere before etcd has accepted it, and once it
//! has, this instance applies it before answering; the others get it from their
//! watch.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

use super::etcd::{Compare, EtcdError, Op};
use super::keys;
use super::mirror::Changed;
use super::records::{RolloutRecord, state_entries};
use super::{Cluster, Host};
use crate::persist::SavedState;

/// The fleet's shared state as a change sees it and edits it.
#[derive(Debug, Clone, Default)]
pub struct Draft {
    /// Drains, weights, route overrides, added and removed backends.
    pub state: SavedState,
    /// Fleet rollouts by route.
    pub rollouts: BTreeMap<String, RolloutRecord>,
}

/// An edit that refuses the change (answered with its status, as the local admin
/// API would).
#[derive(Debug, Clone)]
pub struct Rejected {
    pub status: StatusCode,
    pub message: String,
}

/// Why a change was not committed.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(
        "etcd cannot be reached ({0}); the change was not applied on any instance, and the fleet keeps serving with the last state"
    )]
    Disconnected(String),
    #[error(
        "etcd did not confirm the change ({0}); it may still reach every instance: look at GET /cluster before sending it again"
    )]
    Unconfirmed(String),
    #[error(
        "`{key}` was changed at revision {revision}, after revision {based_on} this change was based on; look at the new state and send the change again"
    )]
    Conflict {
        key: String,
        revision: i64,
        based_on: i64,
    },
    #[error("this instance no longer leads the fleet's rollouts")]
    NotLeader,
    #[error("etcd refused the change: {0}")]
    Store(String),
    #[error("{}", .0.message)]
    Rejected(Rejected),
}

impl CommitError {
    /// The HTTP status an admin answer carries.
    pub fn status(&self) -> StatusCode {
        match self {
            CommitError::Conflict { .. } | CommitError::NotLeader => StatusCode::CONFLICT,
            CommitError::Rejected(r) => r.status,
            _ => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A change etcd accepted (or found already made).
#[derive(Debug, Clone, Copy)]
pub struct Committed {
    /// The etcd revision of the change.
    pub revision: i64,
    /// `false` when the shared state already was what the change asked for.
    pub changed: bool,
}

/// Who is writing, which decides the extra condition of the transaction.
#[derive(Debug, Clone, Copy)]
pub(super) enum Author {
    /// An operator, optionally with the revision they looked at (`If-Match`).
    Operator { if_match: Option<i64> },
    /// The rollout leader: holds only while it still holds the leader key.
    Leader,
}

impl Cluster {
    /// Commits an operator's change (see the module docs); `if_match` is the etcd
    /// revision the operator based it on, when they sent one.
    pub async fn commit<H: Host>(
        &self,
        server: &H,
        if_match: Option<i64>,
        edit: impl FnOnce(&mut Draft) -> Result<(), Rejected>,
    ) -> Result<Committed, CommitError> {
        let result = self
            .commit_as(server, Author::Operator { if_match }, edit)
            .await;
        self.metrics.commit(match &result {
            Ok(_) => "committed",
            Err(CommitError::Conflict { .. } | CommitError::NotLeader) => "conflict",
            Err(CommitError::Rejected(_)) => "rejected",
            Err(_) => "unavailable",
        });
        result
    }

    pub(super) async fn commit_as<H: Host>(
        &self,
        server: &H,
        author: Author,
        edit: impl FnOnce(&mut Draft) -> Result<(), Rejected>,
    ) -> Result<Committed, CommitError> {
        if !self.connected() {
            let why = self
                .link
                .error
                .lock()
                .clone()
                .unwrap_or_else(|| "not connected yet".into());
            return Err(CommitError::Disconnected(why));
        }
        let (writes, based_on) = {
            let mirror = self.mirror.lock();
            let (state, _) = mirror.shared_state();
            let rollouts = mirror
                .rollouts()
                .into_iter()
                .map(|(route, (record, _))| (route, record))
                .collect();
            let base = Draft { state, rollouts };
            let mut next = base.clone();
            edit(&mut next).map_err(CommitError::Rejected)?;
            let writes = diff(&base, &next);
            let based_on: Vec<i64> = writes
                .iter()
                .map(|(rel, _)| mirror.mod_revision(rel))
                .collect();
            (writes, based_on)
        };
        if writes.is_empty() {
            return Ok(Committed {
                revision: self.revision(),
                changed: false,
            });
        }
        let mut compare: Vec<Compare> = Vec::new();
        let mut success = Vec::new();
        let mut failure = Vec::new();
        for ((rel, value), &rev) in writes.iter().zip(&based_on) {
            let key = self.keys.full(rel);
            compare.push(Compare::ModRevision(key.clone(), rev));
            if let Author::Operator {
                if_match: Some(seen),
            } = author
            {
                compare.push(Compare::ModifiedBefore(key.clone(), seen + 1));
            }
            success.push(match value {
                Some(v) => Op::Put {
                    key: key.clone(),
                    value: v.to_string().into_bytes(),
                    lease: None,
                },
                None => Op::Delete(key.clone()),
            });
            failure.push(Op::Get(key, None));
        }
        if let Author::Leader = author {
            let fence = self.fence.load(std::sync::atomic::Ordering::Acquire);
            if fence == 0 {
                return Err(CommitError::NotLeader);
            }
            compare.push(Compare::CreateRevision(self.keys.full(keys::LEADER), fence));
            failure.push(Op::Get(self.keys.full(keys::LEADER), None));
        }
        let answer = match self.etcd.txn(&compare, &success, &failure).await {
            Ok(answer) => answer,
            Err(e) if e.unconfirmed() => return Err(CommitError::Unconfirmed(e.to_string())),
            Err(e @ EtcdError::Unreachable { .. }) => {
                return Err(CommitError::Disconnected(e.to_string()));
            }
            Err(e) => return Err(CommitError::Store(e.to_string())),
        };
        if answer.succeeded {
            let revision = answer.header.revision;
            let changed = {
                let mut mirror = self.mirror.lock();
                writes.iter().fold(Changed::default(), |acc, (rel, value)| {
                    let value = value.as_ref().map(|v| Bytes::from(v.to_string()));
                    merge(acc, mirror.record(rel, value, revision))
                })
            };
            self.absorb(server, changed).await;
            return Ok(Committed {
                revision,
                changed: true,
            });
        }
        let current = |i: usize| {
            answer
                .responses
                .get(i)
                .and_then(|r| r.response_range.as_ref())
                .and_then(|r| r.kvs.first().cloned())
        };
        if let Author::Leader = author {
            let fence = self.fence.load(std::sync::atomic::Ordering::Acquire);
            if current(writes.len()).is_none_or(|kv| kv.create_revision != fence) {
                return Err(CommitError::NotLeader);
            }
        }
        let mut revision = 0;
        for (i, ((rel, wanted), &based)) in writes.iter().zip(&based_on).enumerate() {
            let now = current(i);
            let same = match (&now, wanted) {
                (None, None) => true,
                (Some(kv), Some(v)) => {
                    serde_json::from_slice::<Value>(&kv.value).ok().as_ref() == Some(v)
                }
                _ => false,
            };
            if !same {
                let revision = now.map_or(answer.header.revision, |kv| kv.mod_revision);
                // Name the revision whose check failed: the operator's If-Match, or
                // the one this instance had seen.
                let based_on = match author {
                    Author::Operator {
                        if_match: Some(seen),
                    } if revision == based => seen,
                    _ => based,
                };
                return Err(CommitError::Conflict {
                    key: rel.clone(),
                    revision,
                    based_on,
                });
            }
            revision = revision.max(now.map_or(0, |kv| kv.mod_revision));
        }
        // Every key already holds what this change asks for (the same change made
        // elsewhere, or this one landing before an answer got lost).
        Ok(Committed {
            revision,
            changed: false,
        })
    }
}

fn merge(a: Changed, b: Changed) -> Changed {
    Changed {
        state: a.state || b.state,
        rollouts: a.rollouts || b.rollouts,
        instances: a.instances || b.instances,
        leader: a.leader || b.leader,
        config: a.config || b.config,
    }
}

/// The keys an edit alters: `(key, new value)`, `None` for a deletion.
fn diff(base: &Draft, next: &Draft) -> Vec<(String, Option<Value>)> {
    let before = entries(base);
    let after = entries(next);
    let mut out: Vec<(String, Option<Value>)> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    out.extend(
        before
            .keys()
            .filter(|k| !after.contains_key(*k))
            .map(|k| (k.clone(), None)),
    );
    out
}

fn entries(draft: &Draft) -> BTreeMap<String, Value> {
    let mut out = state_entries(&draft.state);
    for (route, record) in &draft.rollouts {
        out.insert(
            keys::rollout(route),
            serde_json::to_value(record).unwrap_or(Value::Null),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::SavedBackend;

    #[test]
    fn an_edit_writes_only_the_keys_it_changes() {
        let mut base = Draft::default();
        base.state.backends.insert(
            "app/127.0.0.1:1".into(),
            SavedBackend {
                admin_state: "draining".into(),
                weight: 1,
                config_weight: 1,
            },
        );
        let mut next = base.clone();
        assert!(diff(&base, &next).is_empty());
        next.state.backends.remove("app/127.0.0.1:1");
        next.state.backends.insert(
            "app/127.0.0.1:2".into(),
            SavedBackend {
                admin_state: "disabled".into(),
                weight: 1,
                config_weight: 1,
            },
        );
        let writes = diff(&base, &next);
        assert_eq!(writes.len(), 2);
        assert!(writes.contains(&("state/backend/app/127.0.0.1:1".into(), None)));
        assert!(
            writes
                .iter()
                .any(|(k, v)| k == "state/backend/app/127.0.0.1:2" && v.is_some())
        );
    }
}
