//! Watches the live state, off the request path, for conditions worth an alert:
//! a backend down, a breaker open, a pool with no usable backend, a failover to a
//! backup pool, a quarantined plugin. Each is raised when it begins and resolved
//! when it ends (or when its subject leaves the config).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::Alerts;
use super::event::AlertEvent;
use crate::breaker::BreakerState;
use crate::clock;
use crate::health::HealthStatus;
use crate::policy::PluginRegistry;
use crate::state::Snapshot;

/// How often the state is looked at.
const EVERY: Duration = Duration::from_millis(500);

/// A condition, by what it is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Condition {
    BackendDown { pool: String, backend: String },
    BreakerOpen { pool: String, backend: String },
    PoolUnavailable { pool: String },
    Failover { pool: String, backup: String },
    Quarantined { plugin: String },
}

impl Condition {
    fn resolved(&self) -> AlertEvent {
        match self.clone() {
            Condition::BackendDown { pool, backend } => AlertEvent::BackendUp { pool, backend },
            Condition::BreakerOpen { pool, backend } => AlertEvent::BreakerClosed { pool, backend },
            Condition::PoolUnavailable { pool } => AlertEvent::PoolRecovered { pool },
            Condition::Failover { pool, backup } => AlertEvent::FailoverEnded { pool, backup },
            Condition::Quarantined { plugin } => AlertEvent::PluginReleased { plugin },
        }
    }
}

/// Looks at the live snapshot and the plugins every half second until `stop`
/// fires, raising and resolving alerts as conditions begin and end.
pub fn watch(
    alerts: Alerts,
    snapshot: Arc<ArcSwap<Snapshot>>,
    plugins: Arc<PluginRegistry>,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut firing: BTreeMap<Condition, AlertEvent> = BTreeMap::new();
        let mut interval = tokio::time::interval(EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = stop.cancelled() => break,
            }
            let now = conditions(&snapshot.load(), &plugins);
            for (condition, event) in &now {
                if !firing.contains_key(condition) {
                    alerts.send(event.clone());
                }
            }
            for condition in firing.keys() {
                if !now.contains_key(condition) {
                    alerts.send(condition.resolved());
                }
            }
            firing = now;
        }
    });
}

/// The conditions that hold now, each with the event that raises it.
fn conditions(snapshot: &Snapshot, plugins: &PluginRegistry) -> BTreeMap<Condition, AlertEvent> {
    let now = clock::now_ms();
    let mut out = BTreeMap::new();
    for pool in snapshot.pools.iter_sorted() {
        let name = pool.name.to_string();
        for b in &pool.backends {
            let backend = b.key.to_string();
            if b.state.health.status() == HealthStatus::Down {
                let reason = b
                    .state
                    .health
                    .last_check()
                    .map_or_else(|| "no answer".to_string(), |c| c.result);
                out.insert(
                    Condition::BackendDown {
                        pool: name.clone(),
                        backend: backend.clone(),
                    },
                    AlertEvent::BackendDown {
                        pool: name.clone(),
                        backend: backend.clone(),
                        reason,
                    },
                );
            }
            if b.state.breaker.state() != BreakerState::Closed {
                out.insert(
                    Condition::BreakerOpen {
                        pool: name.clone(),
                        backend: backend.clone(),
                    },
                    AlertEvent::BreakerOpen {
                        pool: name.clone(),
                        backend,
                    },
                );
            }
        }
        if pool.usable_count(now) == 0 {
            out.insert(
                Condition::PoolUnavailable { pool: name.clone() },
                AlertEvent::PoolUnavailable { pool: name.clone() },
            );
            if let Some(backup) = &pool.config.failover.backup {
                out.insert(
                    Condition::Failover {
                        pool: name.clone(),
                        backup: backup.clone(),
                    },
                    AlertEvent::FailoverStarted {
                        pool: name.clone(),
                        backup: backup.clone(),
                    },
                );
            }
        }
    }
    for slot in plugins.slots() {
        let active = slot.current_full();
        if active.plugin.stats().is_quarantined() {
            let plugin = active.plugin.name().to_string();
            out.insert(
                Condition::Quarantined {
                    plugin: plugin.clone(),
                },
                AlertEvent::PluginQuarantined { plugin },
            );
        }
    }
    out
}
