//! Every Prometheus metric the proxy exports, defined in one place.
//!
//! Request-path metrics are pre-resolved per route when a snapshot is built (no label
//! hashing or allocation per request). Per-backend state (up, breaker, in-flight),
//! plugin statistics and certificate state are read at scrape time by collectors the
//! server attaches (`crate::scrape`), so removed backends disappear from `/metrics`
//! without bookkeeping. This module is a leaf: every layer may count into it.

mod cluster;
mod control;

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeMetric, LabelSetEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

/// A backend's series: its pool and address, and its configured name when it has
/// one (no empty `name` label on unnamed backends).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct BackendLabels {
    pool: String,
    backend: String,
    name: Option<String>,
}

impl BackendLabels {
    fn new(pool: &str, backend: &str, name: Option<&str>) -> Self {
        Self {
            pool: pool.to_string(),
            backend: backend.to_string(),
            name: name.map(str::to_string),
        }
    }

    fn pairs(&self) -> Vec<(&'static str, &str)> {
        let mut pairs = vec![
            ("pool", self.pool.as_str()),
            ("backend", self.backend.as_str()),
        ];
        if let Some(name) = &self.name {
            pairs.push(("name", name));
        }
        pairs
    }
}

impl EncodeLabelSet for BackendLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        self.pairs().as_slice().encode(encoder)
    }
}

/// A backend's state change: [`BackendLabels`] and the state it went to.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct TransitionLabels {
    backend: BackendLabels,
    to: &'static str,
}

impl EncodeLabelSet for TransitionLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        let mut pairs = self.backend.pairs();
        pairs.push(("to", self.to));
        pairs.as_slice().encode(encoder)
    }
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
    backends: Attached,
    plugins: Attached,
    tls: Attached,
    control: ControlMetrics,
    cluster: Arc<ClusterMetrics>,
    timeline: crate::timeline::Timeline,
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
        let backends = Attached::default();
        registry.register_collector(Box::new(backends.clone()));
        let plugins = Attached::default();
        registry.register_collector(Box::new(plugins.clone()));
        let tls = Attached::default();
        registry.register_collector(Box::new(tls.clone()));
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
            backends,
            plugins,
            tls,
            control,
            cluster,
            timeline: crate::timeline::Timeline::default(),
        }
    }

    /// The timeline of recent events, which every holder of the metrics can add to.
    pub fn timeline(&self) -> &crate::timeline::Timeline {
        &self.timeline
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

    /// Installs the scrape-time reader of certificates, reloads and ACME state
    /// (`tls_*`, `acme_*`); see `crate::scrape`. Only the first one counts.
    pub fn attach_tls(&self, collector: Box<dyn Collector>) {
        self.tls.attach(collector);
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

    /// Installs the scrape-time reader of plugin call statistics (`plugin_*`); see
    /// `crate::scrape`. Only the first one counts.
    pub fn attach_plugins(&self, collector: Box<dyn Collector>) {
        self.plugins.attach(collector);
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

    /// Installs the scrape-time reader of live backend and pool state (`backend_*`,
    /// `pool_*`); see `crate::scrape`. Only the first one counts.
    pub fn attach_backends(&self, collector: Box<dyn Collector>) {
        self.backends.attach(collector);
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
    pub fn connect_error(&self, pool: &str, backend: &str, name: Option<&str>) {
        self.connect_errors
            .get_or_create(&BackendLabels::new(pool, backend, name))
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

    /// Counts a health state change (`to`: the new status's name).
    pub fn health_transition(
        &self,
        pool: &str,
        backend: &str,
        name: Option<&str>,
        to: &'static str,
    ) {
        self.health_transitions
            .get_or_create(&TransitionLabels {
                backend: BackendLabels::new(pool, backend, name),
                to,
            })
            .inc();
    }

    /// Counts a breaker state change (`to`: the new state's name).
    pub fn breaker_transition(
        &self,
        pool: &str,
        backend: &str,
        name: Option<&str>,
        to: &'static str,
    ) {
        self.breaker_transitions
            .get_or_create(&TransitionLabels {
                backend: BackendLabels::new(pool, backend, name),
                to,
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

/// A collector slot registered at start, filled once what it reads exists: metric
/// families keep their place in the output, and this module needs to know nothing of
/// snapshots, plugins or certificates.
#[derive(Debug, Clone, Default)]
struct Attached(Arc<OnceLock<Box<dyn Collector>>>);

impl Attached {
    fn attach(&self, collector: Box<dyn Collector>) {
        let _ = self.0.set(collector);
    }
}

impl Collector for Attached {
    fn encode(&self, encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        match self.0.get() {
            Some(collector) => collector.encode(encoder),
            None => Ok(()),
        }
    }
}

fn pool_labels(pool: &str) -> PoolLabels {
    PoolLabels {
        pool: pool.to_string(),
    }
}

/// Where [`LogCollector`] reads the count of dropped log lines: the log writer sits
/// above this module (it belongs to the binary), so it hands in a reader at start.
static LOG_LINES_DROPPED: OnceLock<fn() -> u64> = OnceLock::new();

/// Installs the reader of the log writer's dropped-line count
/// (`switchyard_log_lines_dropped_total`); only the first one counts.
pub fn attach_log_drops(reader: fn() -> u64) {
    let _ = LOG_LINES_DROPPED.set(reader);
}

/// Reads the log writer's dropped-line count on each scrape (0 before a writer
/// is attached).
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
        let dropped = LOG_LINES_DROPPED.get().map_or(0, |read| read());
        ConstCounter::new(dropped).encode(family)
    }
}
