//! Connection caps: the global `limits.max_connections` and the optional
//! per-client `limits.max_connections_per_ip`. A [`ConnPermit`] holds a
//! connection's place under both, and its seat on the shard serving it; an
//! upgraded connection (WebSocket) keeps it for its tunnel's whole life.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::OwnedSemaphorePermit;

use crate::shard::Seat;

/// One connection's place under the caps; released when the last holder drops it.
#[derive(Debug)]
pub struct ConnPermit {
    _global: Option<OwnedSemaphorePermit>,
    _client: Option<ClientSlot>,
    _seat: Option<Seat>,
}

impl ConnPermit {
    /// A permit from the global cap and, when capped, the client's slot.
    pub fn new(global: OwnedSemaphorePermit, client: Option<ClientSlot>) -> Self {
        Self {
            _global: Some(global),
            _client: client,
            _seat: None,
        }
    }

    /// The same permit, also counting the connection on the shard serving it.
    pub fn seated(self, seat: Seat) -> Self {
        Self {
            _seat: Some(seat),
            ..self
        }
    }

    /// A permit outside any cap (for connections not accepted by a listener).
    pub fn unlimited() -> Self {
        Self {
            _global: None,
            _client: None,
            _seat: None,
        }
    }
}

/// Open connections per client address, across all listeners.
#[derive(Debug, Default)]
pub struct PerClient {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection counted against its client address.
#[derive(Debug)]
pub struct ClientSlot {
    owner: Arc<PerClient>,
    ip: IpAddr,
}

impl PerClient {
    /// Counts a new connection from `ip`, unless it already has `limit` open.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<ClientSlot> {
        let ip = ip.to_canonical();
        let mut counts = self.counts.lock();
        let count = counts.entry(ip).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            owner: Arc::clone(self),
            ip,
        })
    }

    /// Connections open from `ip` right now.
    pub fn open(&self, ip: IpAddr) -> usize {
        self.counts
            .lock()
            .get(&ip.to_canonical())
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut counts = self.owner.counts.lock();
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_each_address_and_frees_on_drop() {
        let per = Arc::new(PerClient::default());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let one = per.try_acquire(a, 2).unwrap();
        let two = per.try_acquire(mapped, 2).unwrap();
        assert!(
            per.try_acquire(a, 2).is_none(),
            "mapped v6 counts as the same client"
        );
        assert!(per.try_acquire(b, 2).is_some());
        drop(one);
        assert_eq!(per.open(a), 1);
        assert!(per.try_acquire(a, 2).is_some());
        drop(two);
    }
}
