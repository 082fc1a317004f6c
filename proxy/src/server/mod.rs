//! The running proxy: listeners, admin endpoint, health checks and the live snapshot,
//! with config application (start and reload) and graceful shutdown.

mod admin_listener;
mod admin_slot;
mod cap;
mod error;
mod fleet;
mod history;
mod inherited;
mod listener;
mod listeners;
mod members;
mod park;
mod rollouts;
mod shared;
mod state_file;
mod streams;
mod takeover;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

pub use admin_slot::AdminServe;
pub use cap::ConnectionCap;
pub use error::{RouteChangeError, StartError};
pub use inherited::{
    ADMIN_SOCKET_NAME, Handover, HealthSeed, InheritedSocket, InheritedSockets, Takeover,
};
pub use listener::bind;
pub use members::MemberError;
pub use rollouts::LocalDriver;
pub use tls::{ListenerTls, TlsError, TlsSlot, build_acceptor};

use crate::acme::AcmeManager;
use crate::config::Config;
use crate::discovery::Discovery;
use crate::health::HealthSupervisor;
use crate::metrics::Metrics;
use crate::policy::{FileCheck, PluginLoadError, PluginRegistry};
use crate::proxy::Proxy;
use crate::shard::Shards;
use crate::state::Snapshot;
use crate::timeline::{EventKind, Happened};
use crate::tls::{CertStore, TlsRegistry};
use crate::traffic::{Overrides, RouteOverride, RouteTarget};
use crate::upstream::UpstreamClient;

/// Settings that come from the command line rather than the config file.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Emit one access-log line per request.
    pub access_log: bool,
    /// Threads that serve client connections, each with its own event loop (see
    /// [`crate::shard`]); 0 serves them on the runtime that started the server,
    /// whose paused time a test can then drive.
    pub shards: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            access_log: true,
            shards: 0,
        }
    }
}

/// A started proxy. Cheap to share (`Arc<Server>`); the admin API and the reloader use it.
pub struct Server {
    proxy: Arc<Proxy>,
    snapshot: Arc<ArcSwap<Snapshot>>,
    listeners: Mutex<listeners::ListenerSet>,
    apply_lock: tokio::sync::Mutex<()>,
    overrides: Mutex<Overrides>,
    plugins: Arc<PluginRegistry>,
    health: HealthSupervisor,
    connections: ConnectionCap,
    tracker: TaskTracker,
    drain: CancellationToken,
    shutdown: CancellationToken,
    ready: AtomicBool,
    admin: Mutex<Option<admin_slot::AdminSlot>>,
    admin_connections: ConnectionCap,
    config_path: Mutex<Option<std::path::PathBuf>>,
    /// The config as loaded, before runtime backend changes are laid over it.
    base_config: Mutex<Arc<Config>>,
    members: Mutex<crate::membership::RuntimeBackends>,
    rollouts: crate::rollout::Rollouts,
    state_writer: crate::persist::StateWriter,
    state_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// The fleet this instance belongs to, with `[cluster]`; its tasks stop when the
    /// server does (or is dropped).
    cluster: std::sync::OnceLock<(Arc<crate::cluster::Cluster>, tokio_util::sync::DropGuard)>,
    /// Sockets inherited at start (socket activation, upgrade), taken by listeners.
    inherited: Arc<InheritedSockets>,
    /// Fired when this process should drain and exit: it handed over to a new one.
    exit: CancellationToken,
    /// Whether that exit follows a successful handover (else a failed one).
    exit_ok: AtomicBool,
    /// Where incidents are raised (`[[alert]]` webhooks).
    alerts: crate::alerts::Alerts,
    /// Certificates of every TLS listener, ACME slots and challenges.
    tls: Arc<TlsRegistry>,
    acme: AcmeManager,
    /// Backends named by DNS.
    discovery: Discovery,
    /// The threads serving client connections, when the server has its own.
    shards: Option<Arc<Shards>>,
}

impl Server {
    /// Binds every listener of `config` and starts serving. The admin listener is
    /// started separately by [`crate::admin::start`].
    pub async fn start(config: Config, options: ServerOptions) -> Result<Arc<Server>, StartError> {
        Self::start_with(config, options, Takeover::default()).await
    }

    /// [`Server::start`] from what systemd or a previous process handed over:
    /// inherited sockets are used instead of binding, handed-over health seeds the
    /// backends, and handed-over runtime changes replace the state file's.
    pub async fn start_with(
        config: Config,
        options: ServerOptions,
        takeover: Takeover,
    ) -> Result<Arc<Server>, StartError> {
        let shards = match options.shards {
            0 => None,
            count => Some(Arc::new(Shards::start(count).map_err(StartError::Shards)?)),
        };
        let metrics = Arc::new(Metrics::new());
        let plugins = Arc::new(PluginRegistry::new());
        let prepared = plugins
            .prepare(&config, FileCheck::Reread)
            .await
            .map_err(|e| StartError::plugin(&config, e))?;
        let shutdown = CancellationToken::new();
        let tls = TlsRegistry::new();
        metrics.attach_tls(crate::scrape::TlsCollector::new(Arc::clone(&tls)));
        let discovery = Discovery::new(Arc::clone(&metrics), shutdown.child_token());
        let dns = discovery
            .prepare(&config)
            .await
            .map_err(|e| StartError::dns(&config, e))?;
        let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::build(
            discovery.overlay(&dns, config.clone()),
            None,
            &metrics,
            &Overrides::new(),
            &plugins.commit(prepared),
        )));
        metrics.attach_backends(crate::scrape::BackendCollector::new(Arc::clone(&snapshot)));
        metrics.attach_plugins(crate::scrape::PluginCollector::new(Arc::clone(&plugins)));
        let proxy = Arc::new(Proxy {
            snapshot: Arc::clone(&snapshot),
            client: UpstreamClient::new(&config.limits),
            metrics: Arc::clone(&metrics),
            access_log: options.access_log,
            tunnels: crate::proxy::Tunnels::default(),
            clients: Arc::default(),
        });
        let alerts = crate::alerts::Alerts::start(Arc::clone(&metrics), shutdown.child_token());
        alerts.configure(&config.alerts);
        let acme = AcmeManager::new(Arc::clone(&tls), shutdown.child_token());
        let server = Arc::new(Server {
            proxy,
            snapshot: Arc::clone(&snapshot),
            listeners: Mutex::new(listeners::ListenerSet {
                inherited: Arc::clone(&takeover.sockets),
                ..Default::default()
            }),
            apply_lock: tokio::sync::Mutex::new(()),
            overrides: Mutex::new(Overrides::new()),
            plugins,
            health: HealthSupervisor::new(Arc::clone(&metrics), shutdown.child_token()),
            connections: ConnectionCap::new(config.limits.max_connections),
            tracker: TaskTracker::new(),
            drain: CancellationToken::new(),
            shutdown,
            ready: AtomicBool::new(false),
            admin: Mutex::new(None),
            admin_connections: ConnectionCap::new(config.admin.max_connections),
            config_path: Mutex::new(None),
            base_config: Mutex::new(Arc::new(config.clone())),
            members: Mutex::new(crate::membership::RuntimeBackends::default()),
            rollouts: crate::rollout::Rollouts::default(),
            state_writer: crate::persist::StateWriter::default(),
            state_task: Mutex::new(None),
            cluster: std::sync::OnceLock::new(),
            inherited: Arc::clone(&takeover.sockets),
            exit: CancellationToken::new(),
            exit_ok: AtomicBool::new(true),
            alerts,
            acme,
            tls,
            discovery,
            shards,
        });
        let plan = server.listeners.lock().plan(&config, true, &server.tls)?;
        server.commit_listeners(plan, &config);
        server.discovery.commit(dns);
        server.acme.sync(config.acme.as_ref());
        server.follow_discovery();
        server.start_state_writer();
        match &takeover.state {
            Some(saved) => {
                server
                    .restore_saved(&config, saved, "the previous process")
                    .await
            }
            None => server.restore_state(&config).await,
        }
        server.seed_health(&takeover.health);
        if let Some(cluster) = &config.cluster {
            let joined = crate::cluster::join(&server, &config, cluster.clone())
                .await
                .map_err(|source| StartError::Cluster {
                    at: Box::new(config.locate("cluster.etcd")),
                    source,
                })?;
            let _ = server
                .cluster
                .set((Arc::clone(&joined), joined.stop_token().drop_guard()));
        }
        server.health.sync(&server.snapshot.load().pools);
        crate::alerts::watch(
            server.alerts.clone(),
            Arc::clone(&server.snapshot),
            Arc::clone(&server.plugins),
            server.shutdown.child_token(),
        );
        let snapshot = Arc::clone(&server.snapshot);
        tokio::spawn(crate::policy::recovery::run_ticker(
            move || {
                snapshot
                    .load()
                    .pools
                    .iter_sorted()
                    .into_iter()
                    .cloned()
                    .collect()
            },
            Arc::clone(&server.proxy.metrics),
            server.shutdown.child_token(),
        ));
        tokio::spawn(history::run(
            Arc::clone(&server.snapshot),
            server.shutdown.child_token(),
        ));
        server.ready.store(true, Ordering::Release);
        Ok(server)
    }

    /// Applies a new, already validated config atomically. First everything that can
    /// fail is built without touching what runs: plugins loaded, DNS names of new
    /// pool entries looked up (a failed lookup is retried once applied; only a
    /// resolver that cannot be set up fails), new listener sockets bound and held,
    /// certificates of new or changed `tls` tables loaded, the admin listener's new
    /// socket bound when `admin.listen` changed. Any failure returns here, naming
    /// file, line and field, with the running config whole. Then one snapshot swap
    /// publishes the config (backend state carried over), listeners start and stop on
    /// the prepared sockets, DNS names are followed and ACME orders run for the new
    /// config, the connection cap follows `limits.max_connections`, and health loops
    /// are re-synced. Plugin files are re-read, and changed ones loaded.
    pub async fn apply(&self, config: Config) -> Result<(), StartError> {
        self.apply_with(config, FileCheck::Reread).await
    }

    /// [`Server::apply`], choosing whether plugin files are re-read.
    async fn apply_with(&self, config: Config, files: FileCheck) -> Result<(), StartError> {
        let _serialised = self.apply_lock.lock().await;
        let old = self.snapshot.load_full();
        let overrides = self.overrides.lock().clone();
        let prepared = self
            .plugins
            .prepare(&config, files)
            .await
            .map_err(|e| StartError::plugin(&config, e))?;
        let base = config.clone();
        let dns = self
            .discovery
            .prepare(&config)
            .await
            .map_err(|e| StartError::dns(&config, e))?;
        let config = self.discovery.overlay(&dns, config);
        let config = self.members.lock().overlay(config);
        let limits_changed = old.config.limits != config.limits;
        let listeners = self
            .listeners
            .lock()
            .plan(&config, limits_changed, &self.tls)?;
        let admin_move = self.plan_admin(&config)?;
        // Nothing below can fail: the config is applied whole from here on.
        if admin_move.is_some() {
            self.stop_admin();
        }
        let plugins = self.plugins.commit(prepared);
        let next = Snapshot::build(
            config.clone(),
            Some(&old),
            &self.proxy.metrics,
            &overrides,
            &plugins,
        );
        self.snapshot.store(Arc::new(next));
        let kept_certificates = self.commit_listeners(listeners, &config);
        self.discovery.commit(dns);
        self.acme.sync(config.acme.as_ref());
        if let Some(moved) = admin_move {
            self.commit_admin(moved);
        }
        self.connections.resize(config.limits.max_connections);
        self.admin_connections.resize(config.admin.max_connections);
        self.alerts.configure(&config.alerts);
        self.health.sync(&self.snapshot.load().pools);
        let dropped = self.members.lock().reconcile(&base);
        *self.base_config.lock() = Arc::new(base);
        self.rollouts.abort_invalid(&config);
        if files == FileCheck::Reread && !kept_certificates.is_empty() {
            // A reload from the file also re-reads the certificates whose `tls` table
            // it left alone (as their watch would), so a renewed pair is served when
            // the reload returns. A pair that does not load is refused and the old one
            // keeps serving: certificates on disk never fail a reload.
            let _ = tokio::task::spawn_blocking(move || {
                for store in kept_certificates {
                    store.reload();
                }
            })
            .await;
        }
        if dropped && self.is_ready() {
            self.save_state_durably().await;
        }
        info!(source = %config.source.display(), "configuration applied");
        Ok(())
    }

    /// Rebuilds the snapshot whenever a DNS answer for a backend name changes.
    fn follow_discovery(self: &Arc<Self>) {
        let mut changes = self.discovery.subscribe();
        let server = Arc::downgrade(self);
        let stop = self.shutdown.child_token();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    changed = changes.changed() => if changed.is_err() { break },
                }
                let Some(server) = server.upgrade() else {
                    break;
                };
                if let Err(e) = server.reapply().await {
                    tracing::warn!(error = %e, "cannot apply the new DNS answer");
                }
            }
        });
    }

    /// The process's TLS state: certificate stores, ACME slots and challenges.
    pub fn tls(&self) -> &Arc<TlsRegistry> {
        &self.tls
    }

    /// Hot-swaps the plugins loaded from `path` after the file changed. A file that
    /// fails to load (corrupt, wrong world, too large, too slow to compile) leaves the
    /// running version in place; the failure is logged and counted.
    pub async fn reload_plugin_file(&self, path: &std::path::Path) -> Vec<PluginLoadError> {
        let _serialised = self.apply_lock.lock().await;
        let (swapped, failures) = self.plugins.reload_file(path).await;
        for name in &swapped {
            self.proxy.metrics.plugin_reload(name, true);
            self.record_event(Happened::new(
                EventKind::Plugin,
                format!("plugin {name}: new version swapped in"),
            ));
        }
        for failure in &failures {
            self.proxy
                .metrics
                .plugin_reload(failure.plugin().unwrap_or(""), false);
            tracing::error!(file = %path.display(), error = %failure,
                "plugin reload failed, keeping the running version");
            self.record_event(
                Happened::new(
                    EventKind::Plugin,
                    format!("plugin reload refused, the running version stays: {failure}"),
                )
                .warning(true),
            );
            self.alerts.send(crate::alerts::AlertEvent::PluginRefused {
                plugin: failure.plugin().unwrap_or("").to_string(),
                file: path.display().to_string(),
                error: failure.to_string(),
            });
        }
        failures
    }

    /// The fleet this instance coordinates with, when `[cluster]` is configured.
    pub fn cluster(&self) -> Option<&Arc<crate::cluster::Cluster>> {
        self.cluster.get().map(|(cluster, _)| cluster)
    }

    /// Where incidents are raised; see [`crate::alerts`].
    pub fn alerts(&self) -> &crate::alerts::Alerts {
        &self.alerts
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
    ) -> Result<RouteTarget, RouteChangeError> {
        // A change that would be refused leaves a running rollout alone.
        self.checked_route_target(route, target.clone())?;
        self.rollouts
            .abort(route, "superseded by a switch or split of the route");
        let target = self.route_target(route, target, None).await?;
        self.record_event(Happened::new(
            EventKind::Switch,
            format!("route {route}: {}", target.describe()),
        ));
        Ok(target)
    }

    /// Adds an event to the timeline `/events` and the dashboard show.
    pub fn record_event(&self, happened: Happened) {
        self.proxy.metrics.timeline().record(happened);
    }

    /// Checks a switch or split of `route` against the live config: the route and
    /// every pool it names exist, a split adds up. Returns the pool the config gives
    /// the route and the target as it would be applied.
    pub fn checked_route_target(
        &self,
        route: &str,
        target: RouteTarget,
    ) -> Result<(String, RouteTarget), RouteChangeError> {
        let current = self.snapshot.load_full();
        let Some(route_config) = current.config.routes.iter().find(|r| r.name == route) else {
            return Err(RouteChangeError::NoRoute(route.to_string()));
        };
        if let Some(missing) = target
            .pools()
            .into_iter()
            .find(|p| current.pools.get(p).is_none())
        {
            return Err(RouteChangeError::NoPool(missing.to_string()));
        }
        let target = crate::traffic::checked(target).map_err(RouteChangeError::Invalid)?;
        Ok((route_config.pool.clone(), target))
    }

    /// [`Server::set_route_target`] for a rollout step: does nothing (`Ok(false)`)
    /// once `token` is cancelled, so a stopped rollout never overwrites a later change.
    pub async fn set_route_target_unless(
        &self,
        route: &str,
        target: RouteTarget,
        token: &CancellationToken,
    ) -> Result<bool, RouteChangeError> {
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
    ) -> Result<RouteTarget, RouteChangeError> {
        let (config_pool, target) = self.checked_route_target(route, target)?;
        {
            let mut overrides = self.overrides.lock();
            if unless.is_some_and(CancellationToken::is_cancelled) {
                return Ok(target);
            }
            overrides.insert(
                route.to_string(),
                RouteOverride {
                    target: target.clone(),
                    config_pool,
                },
            );
        }
        self.reapply()
            .await
            .map_err(|e| RouteChangeError::Apply(e.to_string()))?;
        info!(route, target = %target.to_json(), "route switched");
        Ok(target)
    }

    /// Starts the accept loops of a listener plan with the config's limits; returns
    /// the certificate stores of TLS listeners whose `tls` table stayed.
    fn commit_listeners(&self, plan: listeners::Plan, config: &Config) -> Vec<Arc<CertStore>> {
        let limits = config.limits.clone();
        self.listeners
            .lock()
            .commit(plan, &self.shutdown, |l| listener::ListenerContext {
                name: l.name.as_str().into(),
                tls: None,
                challenges: Arc::clone(self.tls.challenges()),
                proxy: Arc::clone(&self.proxy),
                limits: limits.clone(),
                connections: self.connections.semaphore(),
                shards: self.shards.clone(),
                tracker: self.tracker.clone(),
                stop_accepting: self.shutdown.child_token(),
                drain: self.drain.clone(),
            })
    }

    /// The addresses runtime backends may not use (this proxy's own) and the networks
    /// they must come from, as of now.
    pub fn address_policy(&self) -> crate::address_policy::AddressPolicy {
        let snapshot = self.snapshot.load();
        let admin = &snapshot.config.admin;
        let mut listeners: Vec<(String, SocketAddr)> = snapshot
            .config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), l.listen))
            .collect();
        listeners.extend(self.listeners.lock().addresses());
        crate::address_policy::AddressPolicy {
            listeners,
            admin: std::iter::once(admin.listen)
                .chain(self.admin_address())
                .collect(),
            networks: admin.backend_networks.clone(),
        }
    }

    /// Client connections (and tunnels) each shard serves right now, in shard
    /// order; empty when connections are served on the starting runtime. For tests
    /// and diagnostics: every way a connection ends gives its seat back.
    pub fn shard_loads(&self) -> Vec<usize> {
        self.shards.as_ref().map_or_else(Vec::new, |s| s.loads())
    }

    /// The bound address of a traffic listener (useful with port 0).
    pub fn listener_address(&self, name: &str) -> Option<SocketAddr> {
        self.listeners.lock().running.get(name).map(|l| l.address)
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

    /// Remembers the file the config came from, for `POST /reload`.
    pub fn set_config_path(&self, path: std::path::PathBuf) {
        *self.config_path.lock() = Some(path);
    }

    /// The config file, when running from one.
    pub fn config_path(&self) -> Option<std::path::PathBuf> {
        self.config_path.lock().clone()
    }

    /// A token cancelled when shutdown begins; background tasks hang off it.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Whether the proxy is serving: ready, not stopping, and every listener's
    /// accept loop alive. The systemd watchdog is fed only while this holds.
    pub fn serving(&self) -> bool {
        self.is_ready() && self.listeners.lock().all_accepting()
    }

    /// The sockets inherited at start that no listener has taken yet.
    pub fn inherited_sockets(&self) -> &Arc<InheritedSockets> {
        &self.inherited
    }

    /// Asks the process to drain and exit: it handed over to a new process
    /// (`handed_over`), or an upgrade failed after it had stopped accepting.
    pub fn request_exit(&self, handed_over: bool) {
        self.exit_ok.store(handed_over, Ordering::Release);
        self.exit.cancel();
    }

    /// Fires once [`Server::request_exit`] was called.
    pub fn exit_requested(&self) -> CancellationToken {
        self.exit.clone()
    }

    /// Whether the requested exit follows a successful handover.
    pub fn handed_over(&self) -> bool {
        self.exit.is_cancelled() && self.exit_ok.load(Ordering::Acquire)
    }

    /// The first half of [`Server::shutdown`]: stop accepting (traffic and admin),
    /// stop health checks and background tasks, and tell every connection to finish
    /// its in-flight requests and close. Idempotent.
    pub fn stop_accepting(&self) {
        self.ready.store(false, Ordering::Release);
        self.shutdown.cancel();
        self.listeners.lock().close_all();
        self.release_admin_socket();
        self.drain.cancel();
        self.tracker.close();
    }

    /// Graceful shutdown: stop accepting, let in-flight requests and tunnels finish
    /// for up to `deadline`, then return. `true` when everything finished in time.
    pub async fn shutdown(&self, deadline: Duration) -> bool {
        self.ready.store(false, Ordering::Release);
        if let Some(cluster) = self.cluster() {
            // Leave the fleet first: another instance takes over rollouts at once.
            cluster.leave().await;
        }
        self.stop_accepting();
        let started = tokio::time::Instant::now();
        let drained = tokio::time::timeout(deadline, async {
            self.tracker.wait().await;
            self.proxy.tunnels.wait().await;
        })
        .await
        .is_ok();
        // Upgraded connections got the drain timeout like everything else.
        self.proxy.tunnels.close_all();
        self.flush_state(deadline.saturating_sub(started.elapsed()))
            .await;
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
