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
use crate::timeline::{EventKind, Happened};
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
            metrics.health_transition(&pool, &backend.key, backend.name.as_deref(), now.as_str());
            let message = match now {
                HealthStatus::Down => format!("health check: DOWN ({result})"),
                _ => format!("health check: {}", now.as_str().to_uppercase()),
            };
            metrics.timeline().record(
                Happened::backend(EventKind::Health, &pool, &backend.key, message)
                    .warning(now == HealthStatus::Down),
            );
            match now {
                HealthStatus::Down => {
                    warn!(pool = %pool, backend = %backend.key, backend_name = backend.name.as_deref(), reason = %result,
                    latency_ms = clock::millis(latency), "backend is DOWN")
                }
                HealthStatus::Up => {
                    if before == HealthStatus::Down {
                        backend
                            .state
                            .usable_since_ms
                            .store(clock::now_ms(), Ordering::Relaxed);
                    }
                    info!(pool = %pool, backend = %backend.key, backend_name = backend.name.as_deref(), latency_ms = clock::millis(latency),
                        "backend is UP");
                }
                HealthStatus::Unknown => {}
            }
        }
        let spread = 1.0 + config.jitter * (2.0 * fastrand::f64() - 1.0);
        tokio::time::sleep(config.interval.mul_f64(spread)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use tokio::time::{Instant, sleep_until};

    use super::*;
    use crate::config::ProbeKind;

    const INTERVAL: Duration = Duration::from_secs(10);

    fn tcp_check(rise: u32, fall: u32) -> HealthConfig {
        HealthConfig {
            probe: ProbeKind::Tcp,
            interval: INTERVAL,
            timeout: Duration::from_secs(1),
            jitter: 0.0,
            rise,
            fall,
            plugin: None,
        }
    }

    /// The probe loop in paused time against a real listener on loopback: probes run
    /// exactly `interval` apart, it takes `fall` refused probes to go down and `rise`
    /// good ones to come back, and the recovery starts slow start at the probe that
    /// brought the backend back. Minutes of probing take milliseconds.
    #[tokio::test(start_paused = true)]
    async fn rise_and_fall_count_probes_taken_an_interval_apart() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let backend = Backend::new(address, 1);
        let health = &backend.state.health;
        let start = Instant::now();
        let start_ms = clock::now_ms();
        let at = |secs: f64| sleep_until(start + Duration::from_secs_f64(secs));
        let probe = tokio::spawn(check_loop(
            "app".into(),
            backend.clone(),
            tcp_check(2, 3),
            Arc::new(Metrics::new()),
            None,
            None,
        ));

        at(5.0).await;
        assert_eq!(health.status(), HealthStatus::Up, "the first probe passed");
        assert_eq!(health.last_check().unwrap().at_ms, start_ms);

        drop(listener);
        at(25.0).await;
        assert_eq!(health.consecutive_failed(), 2, "probes at 10 s and 20 s");
        assert_eq!(health.status(), HealthStatus::Up, "2 failures of fall = 3");
        at(35.0).await;
        assert_eq!(health.status(), HealthStatus::Down, "the third, at 30 s");
        let last = health.last_check().unwrap();
        assert_eq!(last.at_ms - start_ms, 30_000);
        assert_eq!(last.result, "refused");

        let listener = TcpListener::bind(address).unwrap();
        at(45.0).await;
        assert_eq!(health.consecutive_ok(), 1, "the probe at 40 s passed");
        assert_eq!(health.status(), HealthStatus::Down, "1 success of rise = 2");
        at(50.5).await;
        assert_eq!(health.status(), HealthStatus::Up, "the second, at 50 s");
        assert_eq!(health.transitions(), 2);
        let since = backend.state.usable_since_ms.load(Ordering::Relaxed);
        assert_eq!(
            since - start_ms,
            50_000,
            "slow start runs from the recovery"
        );

        // Slow start over 20 s: at least 5 %, else in proportion to the time up.
        let slow_start = Some(Duration::from_secs(20));
        let factor = || backend.state.slow_start_factor(slow_start, clock::now_ms());
        assert_eq!(factor(), 0.05, "half a second in: the 5 % floor");
        at(55.0).await;
        assert_eq!(factor(), 0.25, "5 s into the 20 s window");
        at(60.0).await;
        assert_eq!(factor(), 0.5);
        at(70.0).await;
        assert_eq!(factor(), 1.0);
        at(500.0).await;
        assert_eq!(factor(), 1.0);
        assert_eq!(health.status(), HealthStatus::Up);
        probe.abort();
        drop(listener);
    }
}
