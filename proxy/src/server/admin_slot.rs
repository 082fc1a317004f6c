//! The admin listener as the server holds it: where it was configured and bound,
//! how to stop it, and a copy of its socket for an upgrade. Starting and moving it
//! is in `admin_listener`.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Serves the admin API on a bound socket until the token fires (see
/// [`crate::admin::start`]). The server calls it again on each move.
pub type AdminServe = Arc<dyn Fn(TcpListener, CancellationToken) + Send + Sync>;

/// The running admin listener.
pub(super) struct AdminSlot {
    /// `admin.listen` as configured (a reload compares this, not the bound port).
    pub(super) configured: SocketAddr,
    pub(super) bound: SocketAddr,
    pub(super) stop: CancellationToken,
    pub(super) serve: AdminServe,
    /// A duplicate of the listening socket, to hand to the next process in an
    /// upgrade; dropped with the slot's socket when the listener moves or stops.
    pub(super) copy: Option<std::os::fd::OwnedFd>,
}

/// A new admin socket, bound and held until the config is committed.
pub(super) struct AdminMove {
    pub(super) configured: SocketAddr,
    pub(super) socket: TcpListener,
    pub(super) bound: SocketAddr,
}

/// A duplicate descriptor of a listening socket (`None`, logged, if the process is
/// out of descriptors: only an upgrade would miss it).
pub(super) fn duplicate(socket: &TcpListener) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    match socket.as_fd().try_clone_to_owned() {
        Ok(fd) => Some(fd),
        Err(e) => {
            tracing::warn!(error = %e, "cannot keep a copy of the admin socket for upgrades");
            None
        }
    }
}
