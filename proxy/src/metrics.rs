//! Every Prometheus metric the proxy exports, defined in one place.
//!
//! Request-path metrics are pre-resolved per route when a snapshot is built (no label
//! hashing or allocation per request). Per-backend state (up, breaker, in-flight) is
//! read from the live snapshot at scrape time by a collector, so removed backends
//! disappear from `/metrics` without bookkeeping.

mod cluster;
mod control;

use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::breaker::BreakerState;
use crate::clock;
use crate::health::HealthStatus;
use crate::plugin::DURATION_BUCKETS_NS;
use crate::policy::PluginRegistry;
use crate::state::Snapshot;
use crate::tls::TlsRegistry;

pub use cluster::ClusterMetrics;
pub use control::ControlMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteClassLabels {
    route: String,
    class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    pool: String,
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabels {
    pool: String,
    backend: String,
    to: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SpillLabels {
    route: String,
    from: String,
    to: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WhatLabels {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NameResultLabels {
    name: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    route: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReceiverLabels {
    receiver: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DroppedLabels {
    receiver: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
    revision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    pool: String,
    plugin: String,
    agree: &'static str,
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Handles for one route, resolved once per snapshot.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    by_class: [Counter; 5],
    duration: Histogram,
    /// Requests of this route in flight; shared by every snapshot's copy of the route.
    pub in_flight: Gauge,
}

impl RouteMetrics {
    /// Counts a finished request.
    pub fn observe(&self, status: u16, seconds: f64) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].inc();
        self.duration.observe(seconds);
    }
}

/// The registry and the metric families.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteClassLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    in_flight: Gauge,
    parked: Gauge,
    route_in_flight: Family<RouteLabels, Gauge>,
    spills: Family<SpillLabels, Counter>,
    accept_errors: Family<ListenerLabels, Counter>,
    connections_refused: Family<ReasonLabels, Counter>,
    connect_errors: Family<BackendLabels, Counter>,
    retries: Family<PoolLabels, Counter>,
    unavailable: Family<PoolLabels, Counter>,
    failovers: Family<PoolLabels, Counter>,
    health_transitions: Family<TransitionLabels, Counter>,
    breaker_transitions: Family<TransitionLabels, Counter>,
    client_errors: Family<ReasonLabels, Counter>,
    reloads: Family<KindLabels, Counter>,
    reload_failures: Family<WhatLabels, Counter>,
    shadow: Family<ShadowLabels, Counter>,
    rollouts: Family<RolloutLabels, Counter>,
    alerts_sent: Family<ReceiverLabels, Counter>,
    alerts_dropped: Family<DroppedLabels, Counter>,
    dns: Family<NameResultLabels, Counter>,
    snapshot: Arc<OnceLock<Arc<ArcSwap<Snapshot>>>>,
    plugins: Arc<OnceLock<Arc<PluginRegistry>>>,
    tls: Arc<OnceLock<Arc<TlsRegistry>>>,
    control: ControlMetrics,
    cluster: Arc<ClusterMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family under the `switchyard` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let requests = Family::<RouteClassLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests answered, by route and status class",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time from request head to the end of the response body, by route",
            duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being proxied right now",
            in_flight.clone(),
        );
        let parked = Gauge::default();
        registry.register(
            "connections_parked",
            "Idle HTTP/1 keep-alive client connections parked without their HTTP buffers until their next request",
            parked.clone(),
        );
        let route_in_flight = Family::<RouteLabels, Gauge>::default();
        registry.register(
            "route_in_flight",
            "Requests of the route being proxied right now",
            route_in_flight.clone(),
        );
        let spills = Family::<SpillLabels, Counter>::default();
        registry.register(
            "split_spills",
            "Requests of a split or rollout step whose side had no usable backend, sent to another side",
            spills.clone(),
        );
        let accept_errors = Family::<ListenerLabels, Counter>::default();
        registry.register(
            "accept_errors",
            "Failed accepts on a traffic listener (e.g. out of file descriptors), by listener",
            accept_errors.clone(),
        );
        let connections_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "connections_refused",
            "Client connections closed at accept, by reason",
            connections_refused.clone(),
        );
        let connect_errors = Family::<BackendLabels, Counter>::default();
        registry.register(
            "upstream_connect_errors",
            "Failed TCP connects to a backend",
            connect_errors.clone(),
        );
        let retries = Family::<PoolLabels, Counter>::default();
        registry.register(
            "retries",
            "Attempts retried on another backend",
            retries.clone(),
        );
        let unavailable = Family::<PoolLabels, Counter>::default();
        registry.register(
            "no_backend",
            "Requests answered 503 because no backend was usable",
            unavailable.clone(),
        );
        let failovers = Family::<PoolLabels, Counter>::default();
        registry.register(
            "failovers",
            "Requests sent to a backup pool because this pool had no usable backend",
            failovers.clone(),
        );
        let health_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "health_transitions",
            "Active health check state changes",
            health_transitions.clone(),
        );
        let breaker_transitions = Family::<TransitionLabels, Counter>::default();
        registry.register(
            "breaker_transitions",
            "Circuit breaker state changes",
            breaker_transitions.clone(),
        );
        let client_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "client_errors",
            "Client requests refused as malformed, too large or too slow, or abandoned by the client, by reason",
            client_errors.clone(),
        );
        let reloads = Family::<KindLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Config reload attempts, by result",
            reloads.clone(),
        );
        let reload_failures = Family::<WhatLabels, Counter>::default();
        registry.register(
            "reload_failures",
            "Config or plugin reloads refused (the running version stayed), by what was reloaded",
            reload_failures.clone(),
        );
        // Present (at 0) from the start, so alerts on an increase work before the
        // first failure.
        for what in ["config", "plugin"] {
            let _ = reload_failures.get_or_create(&WhatLabels { what });
        }
        let shadow = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "plugin_shadow_decisions",
            "Decisions of a shadow routing plugin, by whether they matched the live policy",
            shadow.clone(),
        );
        let rollouts = Family::<RolloutLabels, Counter>::default();
        registry.register(
            "rollouts_finished",
            "Progressive rollouts that ended, by route and result (completed, rolled_back)",
            rollouts.clone(),
        );
        let alerts_sent = Family::<ReceiverLabels, Counter>::default();
        registry.register(
            "alerts_sent",
            "Alerts delivered to a webhook receiver (each alert of a notification counts)",
            alerts_sent.clone(),
        );
        let alerts_dropped = Family::<DroppedLabels, Counter>::default();
        registry.register(
            "alerts_dropped",
            "Alerts given up on, by receiver and reason: queue_full (the receiver's queue was full), failed (every delivery attempt failed), overflow (too many events at once)",
            alerts_dropped.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: crate::process::VERSION,
                revision: crate::process::REVISION,
            })
            .set(1);
        registry.register(
            "build_info",
            "The running build (always 1), with its version and git revision",
            build,
        );
        let dns = Family::<NameResultLabels, Counter>::default();
        registry.register(
            "dns_resolutions",
            "DNS lookups of backend names, by name and result (a failed one keeps the last good addresses)",
            dns.clone(),
        );
        let snapshot = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(BackendCollector {
            snapshot: Arc::clone(&snapshot),
        }));
        let plugins = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(PluginCollector {
            registry: Arc::clone(&plugins),
        }));
        let tls = Arc::new(OnceLock::new());
        registry.register_collector(Box::new(TlsCollector {
            registry: Arc::clone(&tls),
        }));
        registry.register_collector(Box::new(LogCollector));
        let control = ControlMetrics::register(&mut registry);
        let cluster = Arc::new(ClusterMetrics::default());
        registry.register_collector(Box::new(cluster::ClusterCollector(Arc::clone(&cluster))));
        Self {
            registry,
            requests,
            duration,
            in_flight,
            parked,
            route_in_flight,
            spills,
            accept_errors,
            connections_refused,
            connect_errors,
            retries,
            unavailable,
            failovers,
            health_transitions,
            breaker_transitions,
            client_errors,
            reloads,
            reload_failures,
            shadow,
            rollouts,
            alerts_sent,
            alerts_dropped,
            dns,
            snapshot,
            plugins,
            tls,
            control,
            cluster,
        }
    }

    /// The fleet metrics (exported once the instance joins a fleet).
    pub fn cluster(&self) -> &Arc<ClusterMetrics> {
        &self.cluster
    }

    /// Counts a rollout that ended on its own (`completed` or `rolled_back`).
    pub fn rollout_finished(&self, route: &str, result: &'static str) {
        self.rollouts
            .get_or_create(&RolloutLabels {
                route: route.to_string(),
                result,
            })
            .inc();
    }

    /// Counts alerts a receiver accepted.
    pub fn alerts_sent(&self, receiver: &str, alerts: u64) {
        self.alerts_sent
            .get_or_create(&ReceiverLabels {
                receiver: receiver.to_string(),
            })
            .inc_by(alerts);
    }

    /// Counts alerts given up on (`queue_full`, `failed`, `overflow`).
    pub fn alerts_dropped(&self, receiver: &str, reason: &'static str, alerts: u64) {
        self.alerts_dropped
            .get_or_create(&DroppedLabels {
                receiver: receiver.to_string(),
                reason,
            })
            .inc_by(alerts);
    }

    /// The control plane's counters (admin API, state file, shed plugin calls).
    pub fn control(&self) -> &ControlMetrics {
        &self.control
    }

    /// Lets the scrape-time collector read certificates, reloads and ACME state.
    pub fn attach_tls(&self, registry: Arc<TlsRegistry>) {
        let _ = self.tls.set(registry);
    }

    /// Counts a DNS lookup of a backend name.
    pub fn dns_resolution(&self, name: &str, ok: bool) {
        self.dns
            .get_or_create(&NameResultLabels {
                name: name.to_string(),
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// Lets the scrape-time collector read plugin call statistics.
    pub fn attach_plugins(&self, registry: Arc<PluginRegistry>) {
        let _ = self.plugins.set(registry);
    }

    /// The (agree, disagree) counters of a pool's shadow plugin.
    pub fn shadow_counters(&self, pool: &str, plugin: &str) -> (Counter, Counter) {
        let get = |agree| {
            self.shadow
                .get_or_create(&ShadowLabels {
                    pool: pool.to_string(),
                    plugin: plugin.to_string(),
                    agree,
                })
                .clone()
        };
        (get("true"), get("false"))
    }

    /// Counts a plugin file change that could not be loaded (the running version
    /// stayed) in `reload_failures{what="plugin"}`. Versions swapped in or refused
    /// per plugin are read from the registry at scrape time
    /// (`plugin_reloads{plugin,result}`).
    pub fn plugin_reload(&self, _plugin: &str, ok: bool) {
        if !ok {
            self.reload_failures
                .get_or_create(&WhatLabels { what: "plugin" })
                .inc();
        }
    }

    /// Lets the scrape-time collector read live backend state.
    pub fn attach(&self, snapshot: Arc<ArcSwap<Snapshot>>) {
        let _ = self.snapshot.set(snapshot);
    }

    /// Pre-resolved handles for a route.
    pub fn route(&self, route: &str) -> RouteMetrics {
        let by_class = STATUS_CLASSES.map(|class| {
            self.requests
                .get_or_create(&RouteClassLabels {
                    route: route.to_string(),
                    class,
                })
                .clone()
        });
        let labels = RouteLabels {
            route: route.to_string(),
        };
        let duration = self.duration.get_or_create(&labels).clone();
        let in_flight = self.route_in_flight.get_or_create(&labels).clone();
        RouteMetrics {
            by_class,
            duration,
            in_flight,
        }
    }

    /// The global in-flight gauge.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Idle client connections parked right now (see `server::park`).
    pub fn parked(&self) -> &Gauge {
        &self.parked
    }

    /// Counts a failed connect to a backend.
    pub fn connect_error(&self, pool: &str, backend: &str) {
        self.connect_errors
            .get_or_create(&BackendLabels {
                pool: pool.to_string(),
                backend: backend.to_string(),
            })
            .inc();
    }

    /// Counts a retry in a pool.
    pub fn retry(&self, pool: &str) {
        self.retries.get_or_create(&pool_labels(pool)).inc();
    }

    /// Counts a request refused for lack of a usable backend.
    pub fn no_backend(&self, pool: &str) {
        self.unavailable.get_or_create(&pool_labels(pool)).inc();
    }

    /// Counts a request moved to the backup pool.
    pub fn failover(&self, pool: &str) {
        self.failovers.get_or_create(&pool_labels(pool)).inc();
    }

    /// Counts a health state change.
    pub fn health_transition(&self, pool: &str, backend: &str, to: HealthStatus) {
        self.health_transitions
            .get_or_create(&TransitionLabels {
                pool: pool.to_string(),
                backend: backend.to_string(),
                to: to.as_str(),
            })
            .inc();
    }

    /// Counts a breaker state change.
    pub fn breaker_transition(&self, pool: &str, backend: &str, to: BreakerState) {
        self.breaker_transitions
            .get_or_create(&TransitionLabels {
                pool: pool.to_string(),
                backend: backend.to_string(),
                to: to.as_str(),
            })
            .inc();
    }

    /// Counts a client request refused at the edge or abandoned, by reason.
    pub fn client_error(&self, reason: &'static str) {
        self.client_errors
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a request that spilled from one side of a split to another.
    pub fn spill(&self, route: &str, from: &str, to: &str) {
        self.spills
            .get_or_create(&SpillLabels {
                route: route.to_string(),
                from: from.to_string(),
                to: to.to_string(),
            })
            .inc();
    }

    /// Counts a failed accept on a listener.
    pub fn accept_error(&self, listener: &str) {
        self.accept_errors
            .get_or_create(&ListenerLabels {
                listener: listener.to_string(),
            })
            .inc();
    }

    /// Counts a client connection closed at accept (e.g. its address is over its cap).
    pub fn connection_refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a config reload by result (`ok` or `failed`).
    pub fn reload(&self, result: &'static str) {
        self.reloads
            .get_or_create(&KindLabels { kind: result })
            .inc();
        if result == "failed" {
            self.reload_failures
                .get_or_create(&WhatLabels { what: "config" })
                .inc();
        }
    }

    /// Prometheus text format 0.0.4, which `promtool check metrics` and every scraper
    /// accept: counter HELP/TYPE lines name the `_total` series and there is no `# EOF`.
    pub fn encode_prometheus(&self) -> String {
        to_prometheus_text(&self.encode())
    }

    /// OpenMetrics text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Rewrites OpenMetrics text as Prometheus text format 0.0.4.
fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        match rewritten {
            Some(l) => out.push_str(&l),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

fn pool_labels(pool: &str) -> PoolLabels {
    PoolLabels {
        pool: pool.to_string(),
    }
}

/// Reads per-backend state from the live snapshot on each scrape.
#[derive(Debug)]
struct BackendCollector {
    snapshot: Arc<OnceLock<Arc<ArcSwap<Snapshot>>>>,
}

impl Collector for BackendCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(shared) = self.snapshot.get() else {
            return Ok(());
        };
        let snapshot = shared.load_full();
        let now = clock::now_ms();
        let pools = snapshot.pools.iter_sorted();

        let gauge = |encoder: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     value: &dyn Fn(&crate::upstream::Backend) -> i64|
         -> Result<(), std::fmt::Error> {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            for pool in &pools {
                for b in &pool.backends {
                    let labels = [("pool", pool.name.as_ref()), ("backend", b.key.as_ref())];
                    ConstGauge::new(value(b)).encode(family.encode_family(&labels)?)?;
                }
            }
            Ok(())
        };
        gauge(
            &mut encoder,
            "backend_up",
            "1 unless active health checks say the backend is down",
            &|b| i64::from(b.state.health.status() != HealthStatus::Down),
        )?;
        gauge(
            &mut encoder,
            "backend_usable",
            "1 when the backend may take new requests (health, breaker and admin state)",
            &|b| i64::from(b.state.is_usable(now)),
        )?;
        gauge(
            &mut encoder,
            "backend_breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 half-open",
            &|b| b.state.breaker.state() as i64,
        )?;
        gauge(
            &mut encoder,
            "backend_in_flight",
            "Requests in flight to the backend",
            &|b| i64::from(b.state.in_flight.load(std::sync::atomic::Ordering::Relaxed)),
        )?;
        gauge(
            &mut encoder,
            "backend_weight",
            "Current weight of the backend",
            &|b| i64::from(b.state.weight.load(std::sync::atomic::Ordering::Relaxed)),
        )?;

        let mut ejections = encoder.encode_descriptor(
            "backend_ejections",
            "Times the circuit breaker ejected the backend",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for pool in &pools {
            for b in &pool.backends {
                let labels = [("pool", pool.name.as_ref()), ("backend", b.key.as_ref())];
                ConstCounter::new(b.state.breaker.ejections())
                    .encode(ejections.encode_family(&labels)?)?;
            }
        }

        let mut pool_in_flight = encoder.encode_descriptor(
            "pool_in_flight",
            "Requests sent to the pool (one side of a split or rollout) and not finished",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for pool in &pools {
            let labels = [("pool", pool.name.as_ref())];
            ConstGauge::new(i64::try_from(pool.traffic.in_flight()).unwrap_or(i64::MAX))
                .encode(pool_in_flight.encode_family(&labels)?)?;
        }

        let mut usable = encoder.encode_descriptor(
            "pool_usable_backends",
            "Backends of the pool that may take new requests",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for pool in &pools {
            let labels = [("pool", pool.name.as_ref())];
            ConstGauge::new(pool.usable_count(now) as i64)
                .encode(usable.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Reads every plugin's call statistics on each scrape.
#[derive(Debug)]
struct PluginCollector {
    registry: Arc<OnceLock<Arc<PluginRegistry>>>,
}

impl Collector for PluginCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        let Some(registry) = self.registry.get() else {
            return Ok(());
        };
        let slots = registry.slots();
        let actives: Vec<_> = slots.iter().map(|s| s.current_full()).collect();

        let mut calls = encoder.encode_descriptor(
            "plugin_calls",
            "Calls that ran a plugin (quarantined calls excluded), by plugin",
            None,
            MetricType::Counter,
        )?;
        for a in &actives {
            let labels = [("plugin", a.plugin.name())];
            ConstCounter::new(a.plugin.stats().calls()).encode(calls.encode_family(&labels)?)?;
        }

        let mut errors = encoder.encode_descriptor(
            "plugin_errors",
            "Failed plugin calls, by plugin and kind (trap, timeout, memory, invalid, ...)",
            None,
            MetricType::Counter,
        )?;
        for a in &actives {
            for (kind, count) in a.plugin.stats().errors() {
                let labels = [("plugin", a.plugin.name()), ("kind", kind)];
                ConstCounter::new(count).encode(errors.encode_family(&labels)?)?;
            }
        }

        let mut durations = encoder.encode_descriptor(
            "plugin_call_duration_seconds",
            "Time spent in one plugin call, by plugin",
            None,
            MetricType::Histogram,
        )?;
        for a in &actives {
            let summary = a.plugin.stats().durations();
            let buckets: Vec<(f64, u64)> = summary
                .buckets
                .iter()
                .enumerate()
                .map(|(i, count)| {
                    let bound = DURATION_BUCKETS_NS
                        .get(i)
                        .map_or(f64::MAX, |ns| *ns as f64 / 1e9);
                    (bound, *count)
                })
                .collect();
            let labels = [("plugin", a.plugin.name())];
            durations
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    summary.sum_ns as f64 / 1e9,
                    summary.count,
                    &buckets,
                    None,
                )?;
        }

        let mut quarantined = encoder.encode_descriptor(
            "plugin_quarantined",
            "1 while a plugin is quarantined after repeated failures (the native policy stands in)",
            None,
            MetricType::Gauge,
        )?;
        for a in &actives {
            let labels = [("plugin", a.plugin.name())];
            ConstGauge::new(i64::from(a.plugin.stats().is_quarantined()))
                .encode(quarantined.encode_family(&labels)?)?;
        }

        let mut reloads = encoder.encode_descriptor(
            "plugin_reloads",
            "New versions of each plugin (file change or config reload) swapped in (ok) or refused (failed)",
            None,
            MetricType::Counter,
        )?;
        for slot in &slots {
            for (result, count) in [("ok", slot.reloads()), ("failed", slot.failures())] {
                let labels = [("plugin", slot.name().as_ref()), ("result", result)];
                ConstCounter::new(count).encode(reloads.encode_family(&labels)?)?;
            }
        }

        let mut info = encoder.encode_descriptor(
            "plugin_loaded",
            "The loaded version of each plugin (always 1), with its kind and file digest",
            None,
            MetricType::Gauge,
        )?;
        for a in &actives {
            let labels = [
                ("plugin", a.plugin.name()),
                ("kind", a.plugin.kind().world()),
                ("digest", a.plugin.digest()),
            ];
            ConstGauge::new(1).encode(info.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Reads certificate expiry, certificate reloads and ACME state on each scrape.
#[derive(Debug)]
struct TlsCollector {
    registry: Arc<OnceLock<Arc<TlsRegistry>>>,
}

impl Collector for TlsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        let Some(registry) = self.registry.get() else {
            return Ok(());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let expiry = registry.expiry_by_name(now);
        if !expiry.is_empty() {
            let mut family = encoder.encode_descriptor(
                "tls_certificate_expiry_seconds",
                "Seconds until the served certificate for a host name expires (negative once expired)",
                None,
                MetricType::Gauge,
            )?;
            for (name, left) in &expiry {
                let labels = [("name", name.as_str())];
                ConstGauge::new(*left).encode(family.encode_family(&labels)?)?;
            }
        }
        let reloads = registry.reload_totals();
        if !reloads.is_empty() {
            let mut family = encoder.encode_descriptor(
                "tls_certificate_reloads",
                "Certificate file changes picked up, by listener and result (failed: the old certificate kept serving)",
                None,
                MetricType::Counter,
            )?;
            for (listener, ok, failed) in &reloads {
                for (result, count) in [("ok", *ok), ("failed", *failed)] {
                    let labels = [("listener", listener.as_str()), ("result", result)];
                    ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let slots = registry.acme_slots();
        if !slots.is_empty() {
            let mut orders = encoder.encode_descriptor(
                "acme_orders",
                "ACME certificate orders, by listener and result",
                None,
                MetricType::Counter,
            )?;
            for (listener, slot) in &slots {
                use std::sync::atomic::Ordering::Relaxed;
                for (result, count) in [
                    ("issued", slot.issued.load(Relaxed)),
                    ("failed", slot.failed.load(Relaxed)),
                ] {
                    let labels = [("listener", listener.as_str()), ("result", result)];
                    ConstCounter::new(count).encode(orders.encode_family(&labels)?)?;
                }
            }
            let mut failing = encoder.encode_descriptor(
                "acme_consecutive_failures",
                "ACME orders failed in a row for a listener (0 once one succeeds); alert when above 0 for long",
                None,
                MetricType::Gauge,
            )?;
            for (listener, slot) in &slots {
                let labels = [("listener", listener.as_str())];
                ConstGauge::new(i64::from(
                    slot.consecutive_failures
                        .load(std::sync::atomic::Ordering::Relaxed),
                ))
                .encode(failing.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// Reads the log writer's dropped-line count on each scrape.
#[derive(Debug)]
struct LogCollector;

impl Collector for LogCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = encoder.encode_descriptor(
            "log_lines_dropped",
            "Log lines (access log included) dropped because stderr could not keep up; requests never wait for the log",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        ConstCounter::new(crate::logging::dropped_lines()).encode(family)
    }
}
