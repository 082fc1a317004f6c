//! The traffic listeners of a config, in two steps so that applying a config is
//! atomic: [`plan`] does everything that can fail (binds new sockets and holds them,
//! builds TLS acceptors) without touching what runs; [`ListenerSet::commit`] then
//! starts and stops accept loops and cannot fail.
//!
//! A listener whose address stays keeps its socket: a changed listener (TLS, limits)
//! gets a new accept loop on the same socket, so no connection is refused while it
//! moves over, and connections already open finish under the settings they started
//! with.
//!
//! A new listener first looks among the inherited sockets (socket activation, or
//! the previous process in an upgrade; see [`super::inherited`]) and binds only when
//! none fits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::inherited::InheritedSockets;
use super::listener::{self, ListenerContext, bind};
use super::{StartError, tls};
use crate::config::{Config, ListenerConfig};

/// A listener being served.
pub(super) struct Running {
    config: ListenerConfig,
    /// The bound address (differs from the configured one with port 0).
    pub(super) address: SocketAddr,
    socket: Arc<TcpListener>,
    stop: CancellationToken,
    /// The accept loop; finished only once told to stop (the watchdog checks it).
    accepting: tokio::task::JoinHandle<()>,
}

/// The running listeners, by name.
#[derive(Default)]
pub(super) struct ListenerSet {
    pub(super) running: HashMap<String, Running>,
    /// Sockets inherited at start, taken instead of binding.
    pub(super) inherited: Arc<InheritedSockets>,
}

/// A listener to (re)start once the whole config is known to apply.
pub(super) struct Start {
    config: ListenerConfig,
    socket: Arc<TcpListener>,
    address: SocketAddr,
    tls: Option<TlsAcceptor>,
    restart: bool,
}

/// Everything [`ListenerSet::commit`] needs: ready sockets and acceptors.
pub(super) struct Plan {
    start: Vec<Start>,
    keep: Vec<String>,
}

/// Builds the acceptor a listener config asks for (`None` for plain HTTP). The one
/// place a listener's TLS settings become an acceptor, at start and on reload.
fn acceptor_for(l: &ListenerConfig) -> Result<Option<TlsAcceptor>, tls::TlsError> {
    l.tls.as_ref().map(tls::acceptor).transpose()
}

/// Which field of listener `index` a TLS error is about.
fn tls_field(index: usize, l: &ListenerConfig, e: &tls::TlsError) -> String {
    let key = l.tls.as_ref().map(|t| t.key.as_path());
    let about_key = match e {
        tls::TlsError::NoKey { .. } => true,
        tls::TlsError::Read { path, .. } => Some(path.as_path()) == key,
        _ => false,
    };
    format!(
        "listener[{index}].tls.{}",
        if about_key { "key" } else { "cert" }
    )
}

impl ListenerSet {
    /// Prepares `config`'s listeners. A listener is restarted when its settings
    /// changed, when the limits changed (`limits_changed`), and, on a reload from the
    /// file (`reread_files`), when it uses TLS, so a renewed certificate takes effect.
    /// Fails (and changes nothing) when a socket cannot be bound or a certificate
    /// cannot be used; the error names the file, line and field.
    pub(super) fn plan(
        &self,
        config: &Config,
        limits_changed: bool,
        reread_files: bool,
    ) -> Result<Plan, StartError> {
        let mut plan = Plan {
            start: Vec::new(),
            keep: Vec::new(),
        };
        for (index, l) in config.listeners.iter().enumerate() {
            let same = self.running.get(&l.name).filter(|r| r.config == *l);
            let refresh_tls = reread_files && l.tls.is_some();
            if same.is_some() && !limits_changed && !refresh_tls {
                plan.keep.push(l.name.clone());
                continue;
            }
            let reusable = self
                .running
                .get(&l.name)
                .filter(|r| r.config.listen == l.listen)
                .or_else(|| {
                    self.running
                        .values()
                        .find(|r| r.config.listen == l.listen && l.listen.port() != 0)
                });
            let (socket, address, restart) = match reusable {
                Some(r) => (Arc::clone(&r.socket), r.address, true),
                None => {
                    let socket = self
                        .inherited
                        .take_listener(&l.name, l.listen)
                        .unwrap_or_else(|| bind(l.listen))
                        .map_err(|source| StartError::Bind {
                            at: Box::new(config.locate(&format!("listener[{index}].listen"))),
                            name: l.name.clone(),
                            address: l.listen,
                            source,
                        })?;
                    let address = socket.local_addr().unwrap_or(l.listen);
                    (Arc::new(socket), address, false)
                }
            };
            let tls = acceptor_for(l).map_err(|source| StartError::Tls {
                at: Box::new(config.locate(&tls_field(index, l, &source))),
                name: l.name.clone(),
                source,
            })?;
            plan.start.push(Start {
                config: l.clone(),
                socket,
                address,
                tls,
                restart,
            });
        }
        Ok(plan)
    }

    /// Stops the listeners the plan does not keep and starts its new accept loops,
    /// each with the context `context` makes for its config (the plan adds the TLS
    /// acceptor).
    pub(super) fn commit(
        &mut self,
        plan: Plan,
        context: impl Fn(&ListenerConfig) -> ListenerContext,
    ) {
        let Plan { start, keep } = plan;
        let restarted: Vec<&str> = start
            .iter()
            .filter(|s| s.restart)
            .map(|s| s.config.name.as_str())
            .collect();
        self.running.retain(|name, r| {
            let kept = keep.contains(name);
            if !kept {
                r.stop.cancel();
                if !restarted.contains(&name.as_str()) {
                    info!(listener = %name, address = %r.address, "listener stopped");
                }
            }
            kept
        });
        for s in start {
            let mut ctx = context(&s.config);
            ctx.tls = s.tls;
            let stop = ctx.stop_accepting.clone();
            if s.restart {
                debug!(listener = %s.config.name, address = %s.address, "listener settings applied");
            } else {
                info!(listener = %s.config.name, address = %s.address, tls = s.config.tls.is_some(), "listening");
            }
            let accepting = ctx
                .tracker
                .clone()
                .spawn(listener::accept_loop(Arc::clone(&s.socket), ctx));
            self.running.insert(
                s.config.name.clone(),
                Running {
                    config: s.config,
                    address: s.address,
                    socket: s.socket,
                    stop,
                    accepting,
                },
            );
        }
    }

    /// Stops every accept loop and lets go of the sockets, so they close (shutdown).
    pub(super) fn close_all(&mut self) {
        for r in self.running.values() {
            r.stop.cancel();
        }
        self.running.clear();
    }

    /// Whether every listener's accept loop is still running (none ended on its own).
    pub(super) fn all_accepting(&self) -> bool {
        self.running.values().all(|r| !r.accepting.is_finished())
    }

    /// A duplicate of every listening socket, with its listener's name and configured
    /// address, to hand to the next process in an upgrade.
    pub(super) fn duplicates(
        &self,
    ) -> std::io::Result<Vec<(String, SocketAddr, std::net::TcpListener)>> {
        use std::os::fd::AsFd;
        self.running
            .iter()
            .map(|(name, r)| {
                let fd = r.socket.as_fd().try_clone_to_owned()?;
                Ok((
                    name.clone(),
                    r.config.listen,
                    std::net::TcpListener::from(fd),
                ))
            })
            .collect()
    }

    /// Every running listener's name and bound address.
    pub(super) fn addresses(&self) -> Vec<(String, SocketAddr)> {
        self.running
            .iter()
            .map(|(name, r)| (name.clone(), r.address))
            .collect()
    }
}
