//! The traffic listeners of a config, in two steps so that applying a config is
//! atomic: [`ListenerSet::plan`] does everything that can fail (binds new sockets
//! and holds them, loads the certificates of new or changed `tls` tables) without
//! touching what runs; [`ListenerSet::commit`] then starts and stops accept loops
//! and cannot fail.
//!
//! A listener whose address stays keeps its socket: a changed listener (TLS, limits)
//! gets a new accept loop on the same socket, so no connection is refused while it
//! moves over, and connections already open finish under the settings they started
//! with. A listener whose `tls` table stays keeps its certificate store, which
//! follows its files on its own: a certificate on disk never fails a plan.
//!
//! A new listener first looks among the inherited sockets (socket activation, or
//! the previous process in an upgrade; see [`super::inherited`]) and binds only when
//! none fits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::StartError;
use super::inherited::InheritedSockets;
use super::listener::{self, ListenerContext, bind};
use super::tls::{self, ListenerTls, TlsSlot};
use crate::config::{Config, ListenerConfig};
use crate::tls::{CertStore, TlsRegistry};

/// A listener being served.
pub(super) struct Running {
    config: ListenerConfig,
    /// The bound address (differs from the configured one with port 0).
    pub(super) address: SocketAddr,
    socket: Arc<TcpListener>,
    stop: CancellationToken,
    /// The accept loop; finished only once told to stop (the watchdog checks it).
    accepting: tokio::task::JoinHandle<()>,
    /// The TLS its accept loop serves with (`None` for plain HTTP).
    tls: Option<TlsSlot>,
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
    tls: Option<StartTls>,
    restart: bool,
}

/// The TLS a listener (re)starts with.
enum StartTls {
    /// The running listener's, its `tls` table unchanged.
    Keep(TlsSlot),
    /// Certificates just loaded for a new or changed `tls` table; watched once committed.
    New(ListenerTls),
}

/// Everything [`ListenerSet::commit`] needs: ready sockets and acceptors.
pub(super) struct Plan {
    start: Vec<Start>,
    keep: Vec<String>,
}

/// The TLS a listener config asks for (`None` for plain HTTP): the running one when
/// the listener already serves this `tls` table, else freshly loaded certificates.
/// The one place a listener's TLS settings become an acceptor, at start and on reload.
fn tls_for(
    l: &ListenerConfig,
    running: Option<&Running>,
    registry: &TlsRegistry,
) -> Result<Option<StartTls>, tls::TlsError> {
    let Some(t) = &l.tls else {
        return Ok(None);
    };
    if let Some(r) = running
        && r.config.tls.as_ref() == Some(t)
        && let Some(slot) = &r.tls
    {
        return Ok(Some(StartTls::Keep(slot.clone())));
    }
    tls::build_acceptor(&l.name, t, registry)
        .map(StartTls::New)
        .map(Some)
}

impl ListenerSet {
    /// Prepares `config`'s listeners. A listener is restarted when its settings
    /// changed or when the limits changed (`limits_changed`); the certificates of a
    /// new or changed `tls` table are loaded (through `registry`), an unchanged one's
    /// store is kept. Fails (and changes nothing) when a socket cannot be bound or a
    /// certificate cannot be used; the error names the file, line and field.
    pub(super) fn plan(
        &self,
        config: &Config,
        limits_changed: bool,
        registry: &TlsRegistry,
    ) -> Result<Plan, StartError> {
        let mut plan = Plan {
            start: Vec::new(),
            keep: Vec::new(),
        };
        for (index, l) in config.listeners.iter().enumerate() {
            let same = self.running.get(&l.name).filter(|r| r.config == *l);
            if same.is_some() && !limits_changed {
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
            let tls = tls_for(l, self.running.get(&l.name), registry).map_err(|source| {
                let field = source
                    .field()
                    .unwrap_or_else(|| format!("listener[{index}].tls"));
                StartError::Tls {
                    at: Box::new(config.locate(&field)),
                    name: l.name.clone(),
                    source,
                }
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
    /// each with the context `context` makes for its config (the plan adds the TLS).
    /// Newly loaded certificates are watched from here until `shutdown`, or until
    /// nothing serves them any more. Returns the certificate stores that were running
    /// before and stay (their `tls` table unchanged).
    pub(super) fn commit(
        &mut self,
        plan: Plan,
        shutdown: &CancellationToken,
        context: impl Fn(&ListenerConfig) -> ListenerContext,
    ) -> Vec<Arc<CertStore>> {
        let Plan { start, keep } = plan;
        let mut kept_stores: Vec<Arc<CertStore>> = keep
            .iter()
            .filter_map(|name| self.running.get(name)?.tls.as_ref())
            .map(|slot| Arc::clone(slot.store()))
            .collect();
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
            ctx.tls = s.tls.map(|tls| match tls {
                StartTls::Keep(slot) => {
                    kept_stores.push(Arc::clone(slot.store()));
                    slot
                }
                StartTls::New(mut tls) => {
                    tls.watch(shutdown);
                    TlsSlot::new(tls)
                }
            });
            let stop = ctx.stop_accepting.clone();
            if s.restart {
                debug!(listener = %s.config.name, address = %s.address, "listener settings applied");
            } else {
                info!(listener = %s.config.name, address = %s.address, tls = s.config.tls.is_some(), "listening");
            }
            let ctx_tls = ctx.tls.clone();
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
                    tls: ctx_tls,
                },
            );
        }
        kept_stores
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
