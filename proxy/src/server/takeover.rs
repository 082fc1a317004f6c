//! The server's side of a zero-downtime upgrade: what it hands to the next process
//! (the listening sockets, each backend's health, and the runtime changes: drains,
//! weights, switches, splits, added and removed backends) and how it starts from
//! what it was handed. The transport (a Unix socket, descriptors passed with `SCM_RIGHTS`) is
//! in [`crate::upgrade`].

use std::time::Duration;

use super::Server;
use super::inherited::{Handover, HealthSeed};
use crate::health::HealthStatus;

impl Server {
    /// Duplicates of the listening sockets, health and runtime changes, for the next
    /// process.
    pub fn handover(&self) -> std::io::Result<Handover> {
        let listeners = self.listeners.lock().duplicates()?;
        let admin = self.admin_duplicate().transpose()?;
        Ok(Handover {
            listeners,
            admin,
            health: self.health_seeds(),
            state: self.runtime_state(),
        })
    }

    /// Every backend whose health checks concluded, with its status.
    pub fn health_seeds(&self) -> Vec<HealthSeed> {
        let snapshot = self.snapshot.load_full();
        let mut seeds = Vec::new();
        for pool in snapshot.pools.iter_sorted() {
            for b in &pool.backends {
                let status = b.state.health.status();
                if status == HealthStatus::Unknown {
                    continue;
                }
                seeds.push(HealthSeed {
                    pool: pool.name.to_string(),
                    backend: b.key.to_string(),
                    status: status.as_str().to_string(),
                    consecutive_ok: b.state.health.consecutive_ok(),
                    consecutive_failed: b.state.health.consecutive_failed(),
                });
            }
        }
        seeds
    }

    /// Applies handed-over health to the backends of the live snapshot that have
    /// health checks and no verdict of their own yet.
    pub(super) fn seed_health(&self, seeds: &[HealthSeed]) {
        let snapshot = self.snapshot.load_full();
        for seed in seeds {
            let backend = snapshot
                .pools
                .get(&seed.pool)
                .filter(|p| p.config.health.is_some())
                .and_then(|p| p.backends.iter().find(|b| *b.key == *seed.backend));
            if let Some(b) = backend {
                b.state.health.seed(
                    HealthStatus::parse(&seed.status),
                    seed.consecutive_ok,
                    seed.consecutive_failed,
                );
            }
        }
    }

    /// Waits until every backend with health checks has a verdict or a first probe
    /// result (the first health round), or `limit` passes. `true` when the round
    /// completed. Used before telling systemd the proxy is ready.
    pub async fn first_health_round(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let snapshot = self.snapshot.load_full();
            let done = snapshot.pools.iter_sorted().into_iter().all(|pool| {
                pool.config.health.is_none()
                    || pool.backends.iter().all(|b| {
                        b.state.health.status() != HealthStatus::Unknown
                            || b.state.health.last_check().is_some()
                    })
            });
            if done {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// How long the first health round may take: the slowest probe timeout, plus
    /// the first probe's spread and scheduling slack.
    pub fn first_health_round_limit(&self) -> Duration {
        let snapshot = self.snapshot.load_full();
        let slowest = snapshot
            .pools
            .iter_sorted()
            .into_iter()
            .filter_map(|p| p.config.health.as_ref().map(|h| h.timeout))
            .max()
            .unwrap_or_default();
        (slowest + Duration::from_secs(1)).min(Duration::from_secs(30))
    }
}
