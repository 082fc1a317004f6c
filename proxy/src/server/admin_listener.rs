//! Where the admin listener runs, so a reload that changes `admin.listen` moves it:
//! the new socket is bound before anything changes (a failure keeps everything as
//! it was), and the old one stops, with its open connections, before the new
//! config's rules (its token) take effect.

use std::net::SocketAddr;

use tracing::info;

use super::admin_slot::{AdminMove, AdminServe, AdminSlot, duplicate};
use super::{Server, StartError, bind};
use crate::config::Config;

impl Server {
    /// Binds the admin listener on `address` and serves it with `serve`; a reload
    /// that changes `admin.listen` moves it. Returns the bound address.
    pub fn start_admin(
        &self,
        address: SocketAddr,
        serve: AdminServe,
    ) -> std::io::Result<SocketAddr> {
        let socket = match self.inherited.take_admin(address) {
            Some(inherited) => inherited?,
            None => bind(address)?,
        };
        let bound = socket.local_addr()?;
        let copy = duplicate(&socket);
        let stop = self.shutdown.child_token();
        serve(socket, stop.clone());
        let previous = self.admin.lock().replace(AdminSlot {
            configured: address,
            bound,
            stop,
            serve,
            copy,
        });
        if let Some(previous) = previous {
            previous.stop.cancel();
        }
        self.alerts.set_external_url(format!("http://{bound}/"));
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
        slot.copy = duplicate(&moved.socket);
        (slot.serve)(moved.socket, stop.clone());
        info!(from = %slot.bound, to = %moved.bound, "admin listener moved");
        self.alerts
            .set_external_url(format!("http://{}/", moved.bound));
        slot.configured = moved.configured;
        slot.bound = moved.bound;
        slot.stop = stop;
    }

    /// A duplicate of the admin socket and its configured address, for the next
    /// process in an upgrade.
    pub(super) fn admin_duplicate(
        &self,
    ) -> Option<std::io::Result<(SocketAddr, std::net::TcpListener)>> {
        let slot = self.admin.lock();
        let slot = slot.as_ref()?;
        let copy = slot.copy.as_ref()?;
        Some(
            copy.try_clone()
                .map(|fd| (slot.configured, std::net::TcpListener::from(fd))),
        )
    }

    /// Lets go of the admin socket's duplicate once the listener stopped for good.
    pub(super) fn release_admin_socket(&self) {
        if let Some(slot) = self.admin.lock().as_mut() {
            slot.copy = None;
        }
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
