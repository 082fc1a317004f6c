//! Adding and removing backends at run time: recorded beside the loaded config and
//! laid over it (see [`crate::membership`]), then applied with one snapshot swap.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Server, StartError};
use crate::membership::Member;
use crate::policy::FileCheck;
use crate::upstream::Backend;

/// Why a backend could not be added or removed.
#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    #[error("no pool named `{0}`")]
    NoPool(String),
    #[error("pool `{pool}` has no backend {address}")]
    NoBackend { pool: String, address: SocketAddr },
    #[error("pool `{pool}` already has backend {address}")]
    Exists { pool: String, address: SocketAddr },
    #[error("{address} is the last backend of pool `{pool}`; a pool cannot be empty")]
    LastBackend { pool: String, address: SocketAddr },
    #[error(
        "{address} of pool `{pool}` comes from the DNS name {name}: drain or disable it, or change the name's records or the config"
    )]
    FromDns {
        pool: String,
        address: SocketAddr,
        name: String,
    },
    #[error("refused: {0}")]
    Refused(#[from] crate::address_policy::AddressRefused),
    #[error("cannot apply the change: {0}")]
    Apply(#[from] StartError),
}

impl Server {
    /// Rebuilds the snapshot from the loaded config and the current runtime changes.
    /// Plugins stay as loaded: their files are the watcher's business, and a route
    /// switch or rollout step should not re-read and hash every one of them.
    pub async fn reapply(&self) -> Result<(), StartError> {
        let base = Arc::clone(&self.base_config.lock());
        self.apply_with((*base).clone(), FileCheck::KeepLoaded)
            .await
    }

    /// Adds a backend to a pool; health checks start for it if the pool has them.
    /// The address must pass the [`AddressPolicy`](crate::address_policy::AddressPolicy):
    /// never this proxy's own listeners or admin address, never link-local or
    /// unspecified, inside `admin.backend_networks` when set.
    pub async fn add_backend(&self, pool: &str, member: Member) -> Result<Backend, MemberError> {
        let snapshot = self.snapshot();
        let p = snapshot
            .pools
            .get(pool)
            .ok_or_else(|| MemberError::NoPool(pool.to_string()))?;
        self.address_policy().check(member.address)?;
        if p.backends.iter().any(|b| b.address == member.address) {
            return Err(MemberError::Exists {
                pool: pool.to_string(),
                address: member.address,
            });
        }
        let base = Arc::clone(&self.base_config.lock());
        self.members.lock().add(&base, pool, member);
        self.reapply().await?;
        let snapshot = self.snapshot();
        let backend = snapshot
            .pools
            .get(pool)
            .and_then(|p| p.backends.iter().find(|b| b.address == member.address))
            .cloned()
            .ok_or(MemberError::NoBackend {
                pool: pool.to_string(),
                address: member.address,
            })?;
        backend.state.weight.store(member.weight, Ordering::Relaxed);
        Ok(backend)
    }

    /// The backend a removal would take out, if it may be removed (exists, not the last).
    pub fn removable(&self, pool: &str, address: SocketAddr) -> Result<Backend, MemberError> {
        let snapshot = self.snapshot();
        let p = snapshot
            .pools
            .get(pool)
            .ok_or_else(|| MemberError::NoPool(pool.to_string()))?;
        let backend = p
            .backends
            .iter()
            .find(|b| b.address == address)
            .cloned()
            .ok_or(MemberError::NoBackend {
                pool: pool.to_string(),
                address,
            })?;
        if let Some(name) = &backend.origin {
            return Err(MemberError::FromDns {
                pool: pool.to_string(),
                address,
                name: name.to_string(),
            });
        }
        if p.backends.len() < 2 {
            return Err(MemberError::LastBackend {
                pool: pool.to_string(),
                address,
            });
        }
        Ok(backend)
    }

    /// Takes a backend out of its pool now; requests already sent to it still finish.
    pub async fn remove_backend(&self, pool: &str, address: SocketAddr) -> Result<(), MemberError> {
        self.removable(pool, address)?;
        let base = Arc::clone(&self.base_config.lock());
        self.members.lock().remove(&base, pool, address);
        self.reapply().await?;
        Ok(())
    }
}
