//! Converging on a fleet's shared runtime state (see [`crate::cluster`]): the routes,
//! added and removed backends, drains and weights every instance of the fleet
//! follows, applied here whole, as often as it changes.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tracing::warn;

use super::Server;
use crate::persist::{self, SavedBackend, SavedState, Skipped};
use crate::traffic::Overrides;
use crate::upstream::{AdminState, Backend, Pool, wait_drained};

impl Server {
    /// Makes this instance's runtime state equal `shared`: route overrides and
    /// backend additions and removals replace the current ones (one snapshot swap
    /// when they differ); every backend gets the admin state and weight `shared`
    /// gives it, and a backend `shared` does not mention is active at its config
    /// weight. A drain starts a drain (tunnels closed after the pool's grace); a
    /// removed backend stops taking requests at once and its in-flight ones finish.
    /// Entries that do not fit this instance's config are returned, not applied.
    /// The state file is updated: it is the cache used when etcd cannot be reached
    /// at the next start.
    pub async fn converge_runtime_state(&self, shared: &SavedState) -> Vec<Skipped> {
        let mut skipped = Vec::new();
        let before = self.snapshot();
        // Checked against the running config, which holds the backends found in DNS.
        let members = persist::valid_members(
            &shared.members,
            &before.config,
            &self.address_policy(),
            &mut skipped,
        );
        let overrides = persist::route_overrides(&before, shared, &mut skipped);
        let members_changed = *self.members.lock() != members;
        let overrides_changed = !same_overrides(&self.overrides.lock(), &overrides);
        if members_changed || overrides_changed {
            *self.members.lock() = members;
            *self.overrides.lock() = overrides;
            if let Err(e) = self.reapply().await {
                warn!(error = %e, "cannot apply the fleet's shared state");
            }
            // Whatever the new snapshot no longer holds has left its pool.
            let staying: HashSet<(String, SocketAddr)> = self
                .snapshot()
                .pools
                .iter_sorted()
                .into_iter()
                .flat_map(|p| p.backends.iter().map(|b| (p.name.to_string(), b.address)))
                .collect();
            let timeout = before.config.limits.drain_timeout;
            for pool in before.pools.iter_sorted() {
                for b in &pool.backends {
                    if !staying.contains(&(pool.name.to_string(), b.address)) {
                        drain_leaving(b, pool, timeout);
                    }
                }
            }
        }
        let snapshot = self.snapshot();
        let mut known = HashSet::new();
        for pool in snapshot.pools.iter_sorted() {
            for b in &pool.backends {
                let key = format!("{}/{}", pool.name, b.key);
                converge_backend(pool, b, shared.backends.get(&key));
                known.insert(key);
            }
        }
        for key in shared.backends.keys().filter(|k| !known.contains(*k)) {
            skipped.push(Skipped::new(
                "backend",
                key.clone(),
                "no such backend in this instance's config",
            ));
        }
        self.save_state();
        skipped
    }
}

fn same_overrides(a: &Overrides, b: &Overrides) -> bool {
    a.len() == b.len()
        && a.iter().all(|(route, o)| {
            b.get(route)
                .is_some_and(|p| p.target == o.target && p.config_pool == o.config_pool)
        })
}

/// Applies one backend's shared admin state and weight.
fn converge_backend(pool: &Pool, b: &Backend, shared: Option<&SavedBackend>) {
    let config_weight = pool.config_weight(b.address).unwrap_or(1);
    let (admin, weight) = match shared {
        None => ("active", config_weight),
        Some(s) if s.config_weight == config_weight => (s.admin_state.as_str(), s.weight),
        // The config changed this backend's weight since the change was made: the
        // config's weight wins, as on a restart.
        Some(s) => (s.admin_state.as_str(), config_weight),
    };
    let state = &b.state;
    let current = state.admin_state();
    match admin {
        "draining" | "drained" => {
            if matches!(current, AdminState::Active | AdminState::Disabled) {
                state.set_admin_state(AdminState::Draining);
                let (backend, grace) = (b.clone(), pool.config.drain_grace);
                tokio::spawn(async move {
                    wait_drained(&backend, grace, None).await;
                });
            }
        }
        "disabled" => state.set_admin_state(AdminState::Disabled),
        _ => state.set_admin_state(AdminState::Active),
    }
    if state.weight.load(Ordering::Relaxed) != weight {
        state.weight.store(weight, Ordering::Relaxed);
    }
}

/// A backend the shared state removed from its pool: no request picks it any more
/// (it left the snapshot); the ones in flight finish, and its tunnels get the pool's
/// drain grace.
fn drain_leaving(b: &Backend, pool: &Pool, timeout: std::time::Duration) {
    b.state.set_admin_state(AdminState::Draining);
    let (backend, grace) = (b.clone(), pool.config.drain_grace);
    tokio::spawn(async move {
        wait_drained(&backend, grace, Some(timeout)).await;
    });
}
