//! What one process of the proxy hands to the next in a zero-downtime upgrade, and
//! what the next one starts from: the listening sockets, each backend's health, and
//! the runtime changes (drains, weights, switches, splits, added and removed
//! backends). The transport (a Unix socket, descriptors passed with `SCM_RIGHTS`) is
//! in [`crate::upgrade`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Server;
use super::inherited::InheritedSockets;
use crate::health::HealthStatus;
use crate::persist::SavedState;

/// How a new process starts from what an old one (or systemd) handed it. The
/// default is a cold start.
#[derive(Debug, Default)]
pub struct Takeover {
    /// Listening sockets to use instead of binding.
    pub sockets: Arc<InheritedSockets>,
    /// Health as the previous process last saw it.
    pub health: Vec<HealthSeed>,
    /// Runtime changes of the previous process (used instead of the state file).
    pub state: Option<SavedState>,
}

/// One backend's health, as handed over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthSeed {
    pub pool: String,
    /// `ip:port`.
    pub backend: String,
    /// `up` or `down`.
    pub status: String,
    pub consecutive_ok: u32,
    pub consecutive_failed: u32,
}

/// Everything an old process hands over. The sockets are duplicates: the old
/// process keeps accepting on its own copies until the new one is serving.
#[derive(Debug)]
pub struct Handover {
    /// Traffic listeners: name, configured address, socket.
    pub listeners: Vec<(String, SocketAddr, std::net::TcpListener)>,
    /// The admin listener: configured address, socket.
    pub admin: Option<(SocketAddr, std::net::TcpListener)>,
    pub health: Vec<HealthSeed>,
    pub state: SavedState,
}

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
