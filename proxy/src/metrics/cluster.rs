//! Metrics of a fleet member (`[cluster]`): whether etcd can be reached, whether
//! this instance leads the fleet's rollouts, the shared-state revision it applied,
//! and how its changes went. An instance without `[cluster]` exports none of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Outcomes of changes committed to etcd, the label values of
/// `switchyard_cluster_commits_total{result}`.
const RESULTS: [&str; 4] = ["committed", "conflict", "unavailable", "rejected"];

/// The values a fleet member keeps current; read at scrape time.
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    enabled: AtomicBool,
    connected: AtomicBool,
    leading: AtomicBool,
    revision: AtomicI64,
    instances: AtomicU64,
    losses: AtomicU64,
    commits: [AtomicU64; 4],
}

impl ClusterMetrics {
    /// From now on the metrics are exported (the instance joined a fleet).
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Release);
    }

    /// Whether etcd can be reached.
    pub fn set_connected(&self, connected: bool) {
        if !connected && self.connected.swap(false, Ordering::AcqRel) {
            self.losses.fetch_add(1, Ordering::Relaxed);
        }
        self.connected.store(connected, Ordering::Release);
    }

    /// Whether this instance runs the fleet's rollouts.
    pub fn set_leading(&self, leading: bool) {
        self.leading.store(leading, Ordering::Relaxed);
    }

    /// The shared-state revision applied here.
    pub fn set_revision(&self, revision: i64) {
        self.revision.store(revision, Ordering::Relaxed);
    }

    /// Live instances this one sees (itself included).
    pub fn set_instances(&self, n: u64) {
        self.instances.store(n, Ordering::Relaxed);
    }

    /// Counts a change by outcome (`committed`, `conflict`, `unavailable`, `rejected`).
    pub fn commit(&self, result: &str) {
        if let Some(i) = RESULTS.iter().position(|r| *r == result) {
            self.commits[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Encodes [`ClusterMetrics`] at scrape time.
#[derive(Debug)]
pub(super) struct ClusterCollector(pub Arc<ClusterMetrics>);

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &self.0;
        if !m.enabled.load(Ordering::Acquire) {
            return Ok(());
        }
        let gauges: [(&str, &str, i64); 4] = [
            (
                "cluster_connected",
                "1 while etcd can be reached (changes are accepted); 0 while the instance serves with the last state it had",
                i64::from(m.connected.load(Ordering::Acquire)),
            ),
            (
                "cluster_leader",
                "1 while this instance runs the fleet's rollouts",
                i64::from(m.leading.load(Ordering::Relaxed)),
            ),
            (
                "cluster_revision",
                "The etcd revision of the shared state this instance has applied",
                m.revision.load(Ordering::Relaxed),
            ),
            (
                "cluster_instances",
                "Instances of the fleet with a live heartbeat, as this one sees them",
                m.instances.load(Ordering::Relaxed) as i64,
            ),
        ];
        for (name, help, value) in gauges {
            let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            ConstGauge::new(value).encode(metric)?;
        }
        let losses = encoder.encode_descriptor(
            "cluster_connection_losses",
            "Times etcd became unreachable",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(m.losses.load(Ordering::Relaxed)).encode(losses)?;
        let mut commits = encoder.encode_descriptor(
            "cluster_commits",
            "Changes written to etcd through this instance, by result (committed, conflict, unavailable, rejected)",
            None,
            MetricType::Counter,
        )?;
        for (i, result) in RESULTS.iter().enumerate() {
            ConstCounter::new(m.commits[i].load(Ordering::Relaxed))
                .encode(commits.encode_family(&[("result", *result)])?)?;
        }
        Ok(())
    }
}
