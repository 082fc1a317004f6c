//! The state file: runtime changes made through the admin API (drain, disable,
//! weights, route switches and splits, added and removed backends) written atomically after each change and read
//! back at start, so a restart does not undo a deploy in progress (HAProxy's
//! `server-state-file`, always on when configured).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::state::Snapshot;
use crate::traffic::{RouteOverride, RouteTarget};
use crate::upstream::AdminState;

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Switchyard state file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// What the file holds.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SavedState {
    /// `pool/address` → runtime state of that backend.
    #[serde(default)]
    pub backends: BTreeMap<String, SavedBackend>,
    /// Route name → override.
    #[serde(default)]
    pub routes: BTreeMap<String, SavedRoute>,
    /// Backends added or removed at run time (see [`crate::membership`]).
    #[serde(default)]
    pub members: crate::membership::RuntimeBackends,
}

/// A backend's operator-set state.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedBackend {
    pub admin_state: String,
    pub weight: u32,
    pub config_weight: u32,
}

/// A route override and the config pool it was made against.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedRoute {
    pub config_pool: String,
    pub pools: BTreeMap<String, u32>,
    #[serde(default)]
    pub sticky: Option<String>,
}

/// Captures the runtime state that differs from the config.
pub fn capture(snapshot: &Snapshot, overrides: &crate::traffic::Overrides) -> SavedState {
    let mut saved = SavedState::default();
    for pool in snapshot.pools.iter_sorted() {
        for b in &pool.backends {
            let config_weight = pool.config_weight(b.address).unwrap_or(1);
            let weight = b.state.weight.load(Ordering::Relaxed);
            let admin = b.state.admin_state();
            if admin != AdminState::Active || weight != config_weight {
                saved.backends.insert(
                    format!("{}/{}", pool.name, b.key),
                    SavedBackend {
                        admin_state: admin.as_str().to_string(),
                        weight,
                        config_weight,
                    },
                );
            }
        }
    }
    for (route, o) in overrides {
        let (pools, sticky) = match &o.target {
            RouteTarget::Pool(p) => (BTreeMap::from([(p.to_string(), 100)]), None),
            RouteTarget::Split { pools, sticky } => (
                pools.iter().map(|(p, w)| (p.to_string(), *w)).collect(),
                sticky.as_ref().map(crate::traffic::sticky_name),
            ),
        };
        saved.routes.insert(
            route.clone(),
            SavedRoute {
                config_pool: o.config_pool.clone(),
                pools,
                sticky,
            },
        );
    }
    saved
}

/// Writes the file atomically: a temp file in the same directory, fsync, rename.
pub fn write(path: &Path, state: &SavedState) -> Result<(), StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_vec_pretty(state).map_err(|source| StateFileError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(&text).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads the file; a missing file is an empty state.
pub fn read(path: &Path) -> Result<SavedState, StateFileError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateFileError::Parse {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedState::default()),
        Err(source) => Err(StateFileError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Applies saved backend state to a snapshot; returns the route overrides to restore.
/// A backend whose configured weight changed since the save keeps the new config weight.
pub fn restore(snapshot: &Snapshot, saved: &SavedState) -> crate::traffic::Overrides {
    for pool in snapshot.pools.iter_sorted() {
        for b in &pool.backends {
            let Some(s) = saved.backends.get(&format!("{}/{}", pool.name, b.key)) else {
                continue;
            };
            let admin = match s.admin_state.as_str() {
                "draining" | "drained" => AdminState::Drained,
                "disabled" => AdminState::Disabled,
                _ => AdminState::Active,
            };
            b.state.set_admin_state(admin);
            let config_weight = pool.config_weight(b.address).unwrap_or(1);
            if config_weight == s.config_weight {
                b.state.weight.store(s.weight, Ordering::Relaxed);
            }
        }
    }
    saved
        .routes
        .iter()
        .map(|(route, r)| {
            let pools: Vec<(Arc<str>, u32)> = r
                .pools
                .iter()
                .map(|(p, w)| (Arc::from(p.as_str()), *w))
                .collect();
            let target = if pools.len() == 1 {
                RouteTarget::Pool(Arc::clone(&pools[0].0))
            } else {
                RouteTarget::Split {
                    pools,
                    sticky: r
                        .sticky
                        .as_deref()
                        .and_then(|s| crate::traffic::parse_sticky(s).ok()),
                }
            };
            (
                route.clone(),
                RouteOverride {
                    target,
                    config_pool: r.config_pool.clone(),
                },
            )
        })
        .collect()
}
