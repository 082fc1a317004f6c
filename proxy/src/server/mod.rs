//! The running proxy: listeners, admin endpoint, health checks and the live snapshot,
//! with config application (start and reload) and graceful shutdown.

mod activity;
mod caps;
mod h2_flood;
mod listener;
mod members;
mod rollouts;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use activity::{ActivityIo, ConnActivity, Expiry};
pub use caps::{ClientSlot, ConnPermit, PerClient};
pub use h2_flood::Flood;
pub use listener::bind;
pub use members::MemberError;
pub use tls::TlsError;

use crate::config::{Config, ListenerConfig};
use crate::health::HealthSupervisor;
use crate::metrics::Metrics;
use crate::policy::{FileCheck, PluginLoadError, PluginRegistry};
use crate::proxy::Proxy;
use crate::state::Snapshot;
use crate::traffic::{Overrides, RouteOverride, RouteTarget};
use crate::upstream::UpstreamClient;

/// Why the server could not start or apply a config.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("listener `{name}`: cannot listen on {address}: {source}")]
    Bind {
        name: String,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("listener `{name}`: {source}")]
    Tls {
        name: String,
        #[source]
        source: TlsError,
    },
    #[error("{0}")]
    Plugin(#[from] PluginLoadError),
}

/// Settings that come from the command line rather than the config file.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Emit one access-log line per request.
    pub access_log: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self { access_log: true }
    }
}

struct RunningListener {
    config: ListenerConfig,
    address: SocketAddr,
    stop: CancellationToken,
}

/// A started proxy. Cheap to share (`Arc<Server>`); the admin API and the reloader use it.
pub struct Server {
    proxy: Arc<Proxy>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    listeners: Mutex<HashMap<String, RunningListener>>,
    apply_lock: tokio::sync::Mutex<()>,
    overrides: Mutex<Overrides>,
    plugins: Arc<PluginRegistry>,
    health: HealthSupervisor,
    connections: Arc<Semaphore>,
    tracker: TaskTracker,
    drain: CancellationToken,
    shutdown: CancellationToken,
    ready: AtomicBool,
    admin_address: Mutex<Option<SocketAddr>>,
    config_path: Mutex<Option<std::path::PathBuf>>,
    /// The config as loaded, before runtime backend changes are laid over it.
    base_config: Mutex<Arc<Config>>,
    members: Mutex<crate::membership::RuntimeBackends>,
    rollouts: crate::rollout::Rollouts,
}

impl Server {
    /// Binds every listener of `config` and starts serving. The admin listener is
    /// started separately by [`crate::admin::start`].
    pub async fn start(config: Config, options: ServerOptions) -> Result<Arc<Server>, StartError> {
        let metrics = Arc::new(Metrics::new());
        let plugins = Arc::new(PluginRegistry::new());
        let prepared = plugins.prepare(&config, FileCheck::Reread).await?;
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::build(
            config.clone(),
            None,
            &metrics,
            &Overrides::new(),
            &plugins.commit(prepared),
        )));
        metrics.attach(Arc::clone(&snapshot));
        metrics.attach_plugins(Arc::clone(&plugins));
        let proxy = Arc::new(Proxy {
            snapshot: Arc::clone(&snapshot),
            client: UpstreamClient::new(&config.limits),
            metrics: Arc::clone(&metrics),
            access_log: options.access_log,
            tunnels: crate::proxy::Tunnels::default(),
            clients: Arc::default(),
        });
        let shutdown = CancellationToken::new();
        let server = Arc::new(Server {
            proxy,
            snapshot: Arc::clone(&snapshot),
            listeners: Mutex::new(HashMap::new()),
            apply_lock: tokio::sync::Mutex::new(()),
            overrides: Mutex::new(Overrides::new()),
            plugins,
            health: HealthSupervisor::new(Arc::clone(&metrics), shutdown.child_token()),
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
            tracker: TaskTracker::new(),
            drain: CancellationToken::new(),
            shutdown,
            ready: AtomicBool::new(false),
            admin_address: Mutex::new(None),
            config_path: Mutex::new(None),
            base_config: Mutex::new(Arc::new(config.clone())),
            members: Mutex::new(crate::membership::RuntimeBackends::default()),
            rollouts: crate::rollout::Rollouts::default(),
        });
        server.sync_listeners(&config)?;
        server.restore_state(&config).await;
        server.health.sync(&server.snapshot.load());
        tokio::spawn(crate::policy::recovery::run_ticker(
            Arc::clone(&server.snapshot),
            Arc::clone(&server.proxy.metrics),
            server.shutdown.child_token(),
        ));
        server.ready.store(true, Ordering::Release);
        Ok(server)
    }

    /// Applies a new, already validated config: listeners are started or stopped as
    /// needed (unchanged ones keep their sockets), then the new snapshot is published
    /// in one swap with backend state carried over, then health loops are re-synced.
    /// On error nothing is changed. Plugin files are re-read, and changed ones loaded.
    pub async fn apply(&self, config: Config) -> Result<(), StartError> {
        self.apply_with(config, FileCheck::Reread).await
    }

    /// [`Server::apply`], choosing whether plugin files are re-read.
    async fn apply_with(&self, config: Config, files: FileCheck) -> Result<(), StartError> {
        let _serialised = self.apply_lock.lock().await;
        let old = self.snapshot.load_full();
        let overrides = self.overrides.lock().clone();
        let prepared = self.plugins.prepare(&config, files).await?;
        let base = config.clone();
        let config = self.members.lock().overlay(config);
        self.prepare_listeners(&config)?;
        let plugins = self.plugins.commit(prepared);
        let next = Snapshot::build(
            config.clone(),
            Some(&old),
            &self.proxy.metrics,
            &overrides,
            &plugins,
        );
        self.snapshot.store(Arc::new(next));
        self.sync_listeners(&config)?;
        self.health.sync(&self.snapshot.load());
        let dropped = self.members.lock().reconcile(&base);
        *self.base_config.lock() = Arc::new(base);
        self.rollouts.abort_invalid(&config);
        if dropped && self.is_ready() {
            self.save_state();
        }
        info!(source = %config.source.display(), "configuration applied");
        Ok(())
    }

    /// Hot-swaps the plugins loaded from `path` after the file changed. A file that
    /// fails to load (corrupt, wrong world, too large, too slow to compile) leaves the
    /// running version in place; the failure is logged and counted.
    pub async fn reload_plugin_file(&self, path: &std::path::Path) -> Vec<PluginLoadError> {
        let _serialised = self.apply_lock.lock().await;
        let (swapped, failures) = self.plugins.reload_file(path).await;
        for name in &swapped {
            self.proxy.metrics.plugin_reload(name, true);
        }
        for failure in &failures {
            self.proxy
                .metrics
                .plugin_reload(failure.plugin().unwrap_or(""), false);
            tracing::error!(file = %path.display(), error = %failure,
                "plugin reload failed, keeping the running version");
        }
        failures
    }

    /// The plugin registry (for `/status` and the file watcher).
    pub fn plugins(&self) -> &Arc<PluginRegistry> {
        &self.plugins
    }

    /// Points a route at another pool or split (blue/green, canary) until the config
    /// changes that route. Takes effect with one snapshot swap; stops a rollout of
    /// that route.
    pub async fn set_route_target(
        &self,
        route: &str,
        target: RouteTarget,
    ) -> Result<RouteTarget, String> {
        self.rollouts
            .abort(route, "superseded by a switch or split of the route");
        self.route_target(route, target, None).await
    }

    /// [`Server::set_route_target`] for a rollout step: does nothing (`Ok(false)`)
    /// once `token` is cancelled, so a stopped rollout never overwrites a later change.
    pub async fn set_route_target_unless(
        &self,
        route: &str,
        target: RouteTarget,
        token: &CancellationToken,
    ) -> Result<bool, String> {
        match self.route_target(route, target, Some(token)).await {
            Ok(_) => Ok(!token.is_cancelled()),
            Err(e) if token.is_cancelled() => {
                tracing::debug!(route, error = %e, "stopped rollout step not applied");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    async fn route_target(
        &self,
        route: &str,
        target: RouteTarget,
        unless: Option<&CancellationToken>,
    ) -> Result<RouteTarget, String> {
        let current = self.snapshot.load_full();
        let Some(route_config) = current.config.routes.iter().find(|r| r.name == route) else {
            return Err(format!("no route named `{route}`"));
        };
        if let Some(missing) = target
            .pools()
            .into_iter()
            .find(|p| current.pools.get(p).is_none())
        {
            return Err(format!("no pool named `{missing}`"));
        }
        let target = match target {
            RouteTarget::Split { pools, .. } if pools.iter().all(|(_, w)| *w == 0) => {
                return Err("a split needs at least one pool with a weight above 0".into());
            }
            RouteTarget::Split { pools, .. } if pools.len() == 1 => {
                RouteTarget::Pool(Arc::clone(&pools[0].0))
            }
            other => other,
        };
        {
            let mut overrides = self.overrides.lock();
            if unless.is_some_and(CancellationToken::is_cancelled) {
                return Ok(target);
            }
            overrides.insert(
                route.to_string(),
                RouteOverride {
                    target: target.clone(),
                    config_pool: route_config.pool.clone(),
                },
            );
        }
        self.reapply().await.map_err(|e| e.to_string())?;
        info!(route, target = %target.to_json(), "route switched");
        Ok(target)
    }

    /// Reads the state file (if configured) and re-applies drains, weights and route
    /// overrides. A broken file is logged and ignored: serving beats refusing to start.
    async fn restore_state(&self, config: &Config) {
        let Some(path) = &config.admin.state_file else {
            return;
        };
        match crate::persist::read(path) {
            Ok(saved) => {
                if !saved.members.is_empty() {
                    *self.members.lock() = saved.members.clone();
                    if let Err(e) = self.apply(config.clone()).await {
                        tracing::warn!(error = %e, "cannot re-apply saved backend additions and removals");
                    }
                }
                let overrides = crate::persist::restore(&self.snapshot.load(), &saved);
                if !overrides.is_empty() {
                    *self.overrides.lock() = overrides;
                    if let Err(e) = self.apply(config.clone()).await {
                        tracing::warn!(error = %e, "cannot re-apply saved route overrides");
                    }
                }
                info!(file = %path.display(), backends = saved.backends.len(), routes = saved.routes.len(),
                    "runtime state restored");
            }
            Err(e) => tracing::error!(error = %e, "ignoring the state file"),
        }
    }

    /// Writes runtime changes to the state file, if one is configured.
    pub fn save_state(&self) {
        let snapshot = self.snapshot.load_full();
        let Some(path) = &snapshot.config.admin.state_file else {
            return;
        };
        let mut saved = crate::persist::capture(&snapshot, &self.overrides.lock());
        saved.members = self.members.lock().clone();
        if let Err(e) = crate::persist::write(path, &saved) {
            tracing::error!(error = %e, "cannot write the state file; runtime changes will not survive a restart");
        }
    }

    /// Checks that every new listener can bind before anything is changed.
    fn prepare_listeners(&self, config: &Config) -> Result<(), StartError> {
        let running = self.listeners.lock();
        for l in &config.listeners {
            let unchanged = running
                .get(&l.name)
                .is_some_and(|r| r.config.same_socket(l));
            let moved_within = running
                .values()
                .any(|r| r.config.listen == l.listen && l.listen.port() != 0);
            if !unchanged && !moved_within {
                let probe = bind(l.listen).map_err(|source| StartError::Bind {
                    name: l.name.clone(),
                    address: l.listen,
                    source,
                })?;
                drop(probe);
            }
            if let Some(tls) = &l.tls {
                tls::acceptor(tls).map_err(|source| StartError::Tls {
                    name: l.name.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn sync_listeners(&self, config: &Config) -> Result<(), StartError> {
        let mut running = self.listeners.lock();
        running.retain(|name, r| {
            let keep = config
                .listeners
                .iter()
                .any(|l| &l.name == name && l.same_socket(&r.config));
            if !keep {
                info!(listener = %name, address = %r.address, "listener stopped");
                r.stop.cancel();
            }
            keep
        });
        let limits = config.limits.clone();
        for l in &config.listeners {
            if running.contains_key(&l.name) {
                continue;
            }
            let tls = l
                .tls
                .as_ref()
                .map(tls::acceptor)
                .transpose()
                .map_err(|source| StartError::Tls {
                    name: l.name.clone(),
                    source,
                })?;
            let socket = bind(l.listen).map_err(|source| StartError::Bind {
                name: l.name.clone(),
                address: l.listen,
                source,
            })?;
            let address = socket.local_addr().unwrap_or(l.listen);
            let stop = self.shutdown.child_token();
            let ctx = listener::ListenerContext {
                name: l.name.as_str().into(),
                tls,
                proxy: Arc::clone(&self.proxy),
                limits: limits.clone(),
                connections: Arc::clone(&self.connections),
                tracker: self.tracker.clone(),
                stop_accepting: stop.clone(),
                drain: self.drain.clone(),
            };
            info!(listener = %l.name, %address, tls = l.tls.is_some(), "listening");
            self.tracker.spawn(listener::accept_loop(socket, ctx));
            running.insert(
                l.name.clone(),
                RunningListener {
                    config: l.clone(),
                    address,
                    stop,
                },
            );
        }
        Ok(())
    }

    /// The bound address of a traffic listener (useful with port 0).
    pub fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.lock().get(name).map(|l| l.address)
    }

    /// The live snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.proxy.metrics
    }

    /// Config loaded and listeners up (and not shutting down).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire) && !self.shutdown.is_cancelled()
    }

    /// Records where the admin listener ended up.
    pub fn set_admin_address(&self, address: SocketAddr) {
        *self.admin_address.lock() = Some(address);
    }

    /// Remembers the file the config came from, for `POST /reload`.
    pub fn set_config_path(&self, path: std::path::PathBuf) {
        *self.config_path.lock() = Some(path);
    }

    /// The config file, when running from one.
    pub fn config_path(&self) -> Option<std::path::PathBuf> {
        self.config_path.lock().clone()
    }

    /// The admin listener's bound address, once started.
    pub fn admin_address(&self) -> Option<SocketAddr> {
        *self.admin_address.lock()
    }

    /// A token cancelled when shutdown begins; background tasks hang off it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Graceful shutdown: stop accepting, let in-flight requests finish for up to
    /// `deadline`, then return. `true` when everything finished in time.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.ready.store(false, Ordering::Release);
        self.shutdown.cancel();
        self.drain.cancel();
        self.tracker.close();
        let drained = tokio::time::timeout(deadline, async {
            self.tracker.wait().await;
            self.proxy.tunnels.wait().await;
        })
        .await
        .is_ok();
        // Upgraded connections got the drain timeout like everything else.
        self.proxy.tunnels.close_all();
        if drained {
            info!("all connections drained");
        } else {
            tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "drain deadline passed with requests still in flight"
            );
        }
        drained
    }
}
