//! Where the admin listener runs, so a reload that changes `admin.listen` moves it:
//! the new socket is bound before anything changes (a failure keeps everything as
//! it was), and the old one stops, with its open connections, before the new
//! config's rules (its token) take effect.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Server, StartError, bind};
use crate::config::Config;

/// Serves the admin API on a bound socket until the token fires (see
/// [`crate::admin::start`]). The server calls it again on each move.
pub type AdminServe = Arc<dyn Fn(TcpListener, CancellationToken) + Send + Sync>;

/// The running admin listener.
pub(super) struct AdminSlot {
    /// `admin.listen` as configured (a reload compares this, not the bound port).
    configured: SocketAddr,
    bound: SocketAddr,
    stop: CancellationToken,
    serve: AdminServe,
}

/// A new admin socket, bound and held until the config is committed.
pub(super) struct AdminMove {
    configured: SocketAddr,
    socket: TcpListener,
    bound: SocketAddr,
}

impl Server {
    /// Binds the admin listener on `address` and serves it with `serve`; a reload
    /// that changes `admin.listen` moves it. Returns the bound address.
    pub fn start_admin(
        &self,
        address: SocketAddr,
        serve: AdminServe,
    ) -> std::io::Result<SocketAddr> {
        let socket = bind(address)?;
        let bound = socket.local_addr()?;
        let stop = self.shutdown.child_token();
        serve(socket, stop.clone());
        let previous = self.admin.lock().replace(AdminSlot {
            configured: address,
            bound,
            stop,
            serve,
        });
        if let Some(previous) = previous {
            previous.stop.cancel();
        }
        info!(address = %bound, "admin listening");
        Ok(bound)
    }

    /// Binds the new admin socket when `config` moves the admin listener.
    pub(super) fn plan_admin(&self, config: &Config) -> Result<Option<AdminMove>, StartError> {
        let slot = self.admin.lock();
        let Some(slot) = slot.as_ref() else {
            return Ok(None);
        };
        let wanted = config.admin.listen;
        if slot.configured == wanted {
            return Ok(None);
        }
        let bind_error = |source| StartError::AdminBind {
            at: Box::new(config.locate("admin.listen")),
            address: wanted,
            source,
        };
        let socket = bind(wanted).map_err(bind_error)?;
        let bound = socket.local_addr().map_err(bind_error)?;
        Ok(Some(AdminMove {
            configured: wanted,
            socket,
            bound,
        }))
    }

    /// Stops the old admin listener and its connections: called before the new
    /// config (and its token rules) is published, so nothing accepted on the old
    /// socket is ever judged by the new rules.
    pub(super) fn stop_admin(&self) {
        if let Some(slot) = self.admin.lock().as_ref() {
            slot.stop.cancel();
        }
    }

    /// Starts serving the admin API on the moved socket.
    pub(super) fn commit_admin(&self, moved: AdminMove) {
        let mut slot = self.admin.lock();
        let Some(slot) = slot.as_mut() else {
            return;
        };
        let stop = self.shutdown.child_token();
        (slot.serve)(moved.socket, stop.clone());
        info!(from = %slot.bound, to = %moved.bound, "admin listener moved");
        slot.configured = moved.configured;
        slot.bound = moved.bound;
        slot.stop = stop;
    }

    /// The admin listener's connection cap (`admin.max_connections`, applied on
    /// reload like every other limit).
    pub fn admin_connections(&self) -> &super::ConnectionCap {
        &self.admin_connections
    }

    /// The admin listener's bound address, once started.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.lock().as_ref().map(|s| s.bound)
    }
}
