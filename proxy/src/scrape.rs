//! What `/metrics` reads at scrape time rather than counting as it happens: the state
//! of every backend and pool of the live snapshot, plugin call statistics, and
//! certificates. The server attaches these collectors to [`crate::metrics::Metrics`]
//! once the snapshot and registries exist; they sit above the snapshot, so the
//! metric handles below stay a leaf every layer can count into.

use std::sync::Arc;

use arc_swap::ArcSwap;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::clock;
use crate::health::HealthStatus;
use crate::plugin::DURATION_BUCKETS_NS;
use crate::policy::PluginRegistry;
use crate::state::Snapshot;
use crate::tls::TlsRegistry;

/// Reads per-backend and per-pool state from the live snapshot on each scrape.
#[derive(Debug)]
pub struct BackendCollector {
    snapshot: Arc<ArcSwap<Snapshot>>,
}

impl BackendCollector {
    /// A collector that reads whichever snapshot is live when scraped.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>) -> Box<Self> {
        Box::new(Self { snapshot })
    }
}

impl Collector for BackendCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self.snapshot.load_full();
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
                    let labels = backend_labels(&pool.name, b);
                    ConstGauge::new(value(b)).encode(family.encode_family(&labels.as_slice())?)?;
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
                let labels = backend_labels(&pool.name, b);
                ConstCounter::new(b.state.breaker.ejections())
                    .encode(ejections.encode_family(&labels.as_slice())?)?;
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

/// A backend series' labels: pool and address, and `name` when the backend has one.
fn backend_labels<'a>(
    pool: &'a str,
    b: &'a crate::upstream::Backend,
) -> Vec<(&'static str, &'a str)> {
    let mut labels = vec![("pool", pool), ("backend", b.key.as_ref())];
    if let Some(name) = &b.name {
        labels.push(("name", name));
    }
    labels
}

/// Reads every plugin's call statistics on each scrape.
#[derive(Debug)]
pub struct PluginCollector {
    registry: Arc<PluginRegistry>,
}

impl PluginCollector {
    /// A collector over the plugins `registry` holds when scraped.
    pub fn new(registry: Arc<PluginRegistry>) -> Box<Self> {
        Box::new(Self { registry })
    }
}

impl Collector for PluginCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        let registry = &self.registry;
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
pub struct TlsCollector {
    registry: Arc<TlsRegistry>,
}

impl TlsCollector {
    /// A collector over the certificates `registry` holds when scraped.
    pub fn new(registry: Arc<TlsRegistry>) -> Box<Self> {
        Box::new(Self { registry })
    }
}

impl Collector for TlsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::MetricType;
        let registry = &self.registry;
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
