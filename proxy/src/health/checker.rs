//! Runs one probe loop per backend of every pool with a `[health]` table, and keeps
//! the set of loops in step with the live snapshot's pools across reloads.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{CheckRecord, HealthStatus, Verdict, native_verdict, probe_as};
use crate::clock;
use crate::config::HealthConfig;
use crate::metrics::Metrics;
use crate::upstream::{Backend, PoolSet};

/// The pool's health-check plugin, if it has one.
type Plugin = Option<Arc<crate::plugin::PluginSlot>>;

/// The pool's TLS to its backends, which probes use too.
type Tls = Option<Arc<crate::upstream::PoolTls>>;

/// What one probe loop runs with.
type LoopSpec = (Backend, HealthConfig, Plugin, Tls);

struct Running {
    fingerprint: String,
    cancel: CancellationToken,
}

/// Owns the probe loops; [`HealthSupervisor::sync`] starts, restarts and stops them.
pub struct HealthSupervisor {
    tasks: Mutex<HashMap<(Arc<str>, SocketAddr), Running>>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl HealthSupervisor {
    /// A supervisor whose loops all stop when `shutdown` fires.
    pub fn new(metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        Self {
            tasks: Mutex::new(HashMap::new()),
            metrics,
            shutdown,
        }
    }

    /// Makes the running loops match `pools` (the live snapshot's): new backends get
    /// a loop, removed ones lose theirs, and a changed `[health]` table restarts the
    /// pool's loops. Backends whose check did not change keep their loop and state.
    pub fn sync(&self, pools: &PoolSet) {
        let mut wanted: HashMap<(Arc<str>, SocketAddr), LoopSpec> = HashMap::new();
        for pool in pools.iter_sorted() {
            let Some(health) = &pool.config.health else {
                continue;
            };
            for backend in &pool.backends {
                wanted.insert(
                    (Arc::clone(&pool.name), backend.address),
                    (
                        backend.clone(),
                        health.clone(),
                        pool.policies.health.clone(),
                        pool.tls.clone(),
                    ),
                );
            }
        }
        let mut tasks = self.tasks.lock();
        tasks.retain(|key, running| {
            let keep = wanted
                .get(key)
                .is_some_and(|(_, cfg, _, tls)| fingerprint(cfg, tls) == running.fingerprint);
            if !keep {
                running.cancel.cancel();
            }
            keep
        });
        for (key, (backend, config, plugin, tls)) in wanted {
            if tasks.contains_key(&key) {
                continue;
            }
            let cancel = self.shutdown.child_token();
            tasks.insert(
                key.clone(),
                Running {
                    fingerprint: fingerprint(&config, &tls),
                    cancel: cancel.clone(),
                },
            );
            let metrics = Arc::clone(&self.metrics);
            tokio::spawn(async move {
                tokio::select! {
                    () = check_loop(key.0, backend, config, metrics, plugin, tls) => {}
                    () = cancel.cancelled() => {}
                }
            });
        }
    }
}

/// What a probe loop was started with; a change restarts it.
fn fingerprint(config: &HealthConfig, tls: &Tls) -> String {
    format!(
        "{config:?} {:?}",
        tls.as_ref().map(|t| t.config() as *const _)
    )
}

async fn check_loop(
    pool: Arc<str>,
    backend: Backend,
    config: HealthConfig,
    metrics: Arc<Metrics>,
    plugin: Plugin,
    tls: Tls,
) {
    // Spread the first probes of many backends over a fraction of the interval.
    let first = config.interval.mul_f64(config.jitter * fastrand::f64());
    tokio::time::sleep(first.min(Duration::from_millis(100))).await;
    loop {
        let custom = match &plugin {
            Some(slot) if matches!(config.probe, crate::config::ProbeKind::Http { .. }) => {
                super::plugin::probe_request(slot, &pool, &backend.key).await
            }
            _ => None,
        };
        let probe_tls = tls.as_deref().map(|t| (t, backend.origin.as_deref()));
        let report = probe_as(
            &config.probe,
            custom.as_ref(),
            backend.address,
            config.timeout,
            probe_tls,
        )
        .await;
        let latency = report.latency;
        let verdict = match &plugin {
            Some(slot) => super::plugin::evaluate(slot, &config, report).await,
            None => native_verdict(&config, &report),
        };
        let (ok, result) = match &verdict {
            Verdict::Up => (true, "ok".to_string()),
            Verdict::Degraded(p) => (true, format!("degraded {p}%")),
            Verdict::Down(reason) => (false, reason.clone()),
        };
        if let Verdict::Degraded(p) = verdict {
            backend.state.health.set_weight_percent(p);
        } else if ok {
            backend.state.health.set_weight_percent(100);
        }
        let record = CheckRecord {
            result: result.clone(),
            latency,
            at_ms: clock::now_ms(),
        };
        let before = backend.state.health.status();
        if let Some(now) = backend
            .state
            .health
            .observe(record, ok, config.rise, config.fall)
        {
            metrics.health_transition(&pool, &backend.key, now.as_str());
            match now {
                HealthStatus::Down => warn!(pool = %pool, backend = %backend.key, reason = %result,
                    latency_ms = latency.as_millis() as u64, "backend is DOWN"),
                HealthStatus::Up => {
                    if before == HealthStatus::Down {
                        backend
                            .state
                            .usable_since_ms
                            .store(clock::now_ms(), Ordering::Relaxed);
                    }
                    info!(pool = %pool, backend = %backend.key, latency_ms = latency.as_millis() as u64,
                        "backend is UP");
                }
                HealthStatus::Unknown => {}
            }
        }
        let spread = 1.0 + config.jitter * (2.0 * fastrand::f64() - 1.0);
        tokio::time::sleep(config.interval.mul_f64(spread)).await;
    }
}
