//! Listening sockets this process did not bind itself: opened by systemd (socket
//! activation) or handed over by the previous process in a zero-downtime upgrade.
//! Listeners take them instead of binding, so the address never stops accepting
//! and a privileged port needs no privilege here.
//!
//! A traffic listener takes, in this order: the socket with its name (a systemd
//! `FileDescriptorName=`, or the same listener of the old process when it asked for
//! the same address), then a socket for its address (bound there by systemd, or
//! configured there in the old process). The admin listener takes the old admin
//! socket, a systemd socket named `admin`, or one bound at its address. Sockets no
//! listener took are closed at the end of start-up, with a warning.
//!
//! What a process starts from ([`Takeover`]: these sockets, handed-over health and
//! runtime changes) and what an old process hands over ([`Handover`]) are here too;
//! producing and applying them is the server's side, in `takeover`.

use std::net::SocketAddr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::persist::SavedState;

/// The name that marks a systemd socket for the admin listener.
pub const ADMIN_SOCKET_NAME: &str = "admin";

/// Where an inherited socket came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Socket activation (`LISTEN_FDS`).
    Systemd,
    /// The previous process, during a zero-downtime upgrade.
    Upgrade,
}

impl Origin {
    fn as_str(self) -> &'static str {
        match self {
            Origin::Systemd => "systemd",
            Origin::Upgrade => "upgrade",
        }
    }
}

/// One listening socket waiting for its listener.
#[derive(Debug)]
pub struct InheritedSocket {
    origin: Origin,
    name: Option<String>,
    /// For a handed-over socket: the address the old config asked for (it differs
    /// from the bound one with port 0).
    configured: Option<SocketAddr>,
    admin: bool,
    bound: Option<SocketAddr>,
    listener: std::net::TcpListener,
}

impl InheritedSocket {
    /// A socket from systemd, with its `FileDescriptorName=` if it has one.
    pub fn activated(name: Option<String>, listener: std::net::TcpListener) -> Self {
        Self {
            origin: Origin::Systemd,
            bound: listener.local_addr().ok(),
            name,
            configured: None,
            admin: false,
            listener,
        }
    }

    /// A socket of the previous process: a traffic listener's (`admin` false, with
    /// its name) or the admin listener's, and the address its config asked for.
    pub fn handed_over(
        name: Option<String>,
        admin: bool,
        configured: SocketAddr,
        listener: std::net::TcpListener,
    ) -> Self {
        Self {
            origin: Origin::Upgrade,
            bound: listener.local_addr().ok(),
            name,
            configured: Some(configured),
            admin,
            listener,
        }
    }

    fn named(&self, name: &str) -> bool {
        self.name.as_deref() == Some(name)
    }

    /// Whether this socket serves a traffic listener `name` configured at `wanted`.
    fn fits_listener_by_name(&self, name: &str, wanted: SocketAddr) -> bool {
        match self.origin {
            Origin::Systemd => self.named(name) && name != ADMIN_SOCKET_NAME,
            Origin::Upgrade => !self.admin && self.named(name) && self.configured == Some(wanted),
        }
    }

    fn fits_address(&self, wanted: SocketAddr, admin: bool) -> bool {
        if wanted.port() == 0 {
            return false;
        }
        match self.origin {
            Origin::Systemd => self.bound == Some(wanted),
            Origin::Upgrade => self.admin == admin && self.configured == Some(wanted),
        }
    }

    fn fits_admin(&self, wanted: SocketAddr) -> bool {
        match self.origin {
            Origin::Systemd => self.named(ADMIN_SOCKET_NAME),
            Origin::Upgrade => self.admin && self.configured == Some(wanted),
        }
    }
}

/// The sockets inherited at start, until listeners take them.
#[derive(Debug, Default)]
pub struct InheritedSockets {
    sockets: Mutex<Vec<InheritedSocket>>,
}

impl InheritedSockets {
    /// Holds `sockets` for the listeners to take.
    pub fn new(sockets: Vec<InheritedSocket>) -> Self {
        Self {
            sockets: Mutex::new(sockets),
        }
    }

    /// How many sockets are still waiting.
    pub fn len(&self) -> usize {
        self.sockets.lock().len()
    }

    /// Whether no socket is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The socket for traffic listener `name` at `wanted`, if one was inherited.
    pub(super) fn take_listener(
        &self,
        name: &str,
        wanted: SocketAddr,
    ) -> Option<std::io::Result<TcpListener>> {
        self.take(name, |s| s.fits_listener_by_name(name, wanted))
            .or_else(|| self.take(name, |s| s.fits_address(wanted, false)))
    }

    /// The socket for the admin listener at `wanted`, if one was inherited.
    pub(super) fn take_admin(&self, wanted: SocketAddr) -> Option<std::io::Result<TcpListener>> {
        self.take("admin", |s| s.fits_admin(wanted))
            .or_else(|| self.take("admin", |s| s.fits_address(wanted, true)))
    }

    fn take(
        &self,
        listener: &str,
        fits: impl Fn(&InheritedSocket) -> bool,
    ) -> Option<std::io::Result<TcpListener>> {
        let socket = {
            let mut sockets = self.sockets.lock();
            let index = sockets.iter().position(fits)?;
            sockets.remove(index)
        };
        info!(listener, origin = socket.origin.as_str(), name = socket.name.as_deref().unwrap_or(""),
            address = %socket.bound.map_or_else(|| "?".to_string(), |a| a.to_string()),
            "listening on an inherited socket");
        Some(
            socket
                .listener
                .set_nonblocking(true)
                .and_then(|()| TcpListener::from_std(socket.listener)),
        )
    }

    /// Closes the sockets no listener took (each logged), once start-up is done.
    pub fn close_unused(&self) {
        for socket in self.sockets.lock().drain(..) {
            warn!(origin = socket.origin.as_str(), name = socket.name.as_deref().unwrap_or(""),
                address = %socket.bound.map_or_else(|| "?".to_string(), |a| a.to_string()),
                "no listener uses this inherited socket; closing it");
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn socket() -> std::net::TcpListener {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    }

    #[tokio::test]
    async fn systemd_sockets_match_by_name_then_address() {
        let by_name = socket();
        let by_address = socket();
        let address = by_address.local_addr().unwrap();
        let named_address = by_name.local_addr().unwrap();
        let set = InheritedSockets::new(vec![
            InheritedSocket::activated(Some("web".into()), by_name),
            InheritedSocket::activated(Some("switchyard.socket".into()), by_address),
        ]);
        let web = set
            .take_listener("web", "0.0.0.0:80".parse().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(web.local_addr().unwrap(), named_address);
        let other = set.take_listener("api", address).unwrap().unwrap();
        assert_eq!(other.local_addr().unwrap(), address);
        assert!(set.is_empty());
        assert!(set.take_listener("api", address).is_none());
    }

    #[tokio::test]
    async fn handed_over_sockets_follow_the_configured_address() {
        let old = socket();
        let bound = old.local_addr().unwrap();
        let configured: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let set = InheritedSockets::new(vec![InheritedSocket::handed_over(
            Some("web".into()),
            false,
            configured,
            old,
        )]);
        // Same name, but the new config moved the listener: bind anew.
        assert!(
            set.take_listener("web", "127.0.0.1:1".parse().unwrap())
                .is_none()
        );
        // The admin listener never takes a traffic socket.
        assert!(set.take_admin(configured).is_none());
        let web = set.take_listener("web", configured).unwrap().unwrap();
        assert_eq!(web.local_addr().unwrap(), bound);
    }

    #[tokio::test]
    async fn a_renamed_listener_keeps_the_old_socket_of_its_address() {
        let old = socket();
        let bound = old.local_addr().unwrap();
        let set = InheritedSockets::new(vec![InheritedSocket::handed_over(
            Some("web".into()),
            false,
            bound,
            old,
        )]);
        let www = set.take_listener("www", bound).unwrap().unwrap();
        assert_eq!(www.local_addr().unwrap(), bound);
    }
}
