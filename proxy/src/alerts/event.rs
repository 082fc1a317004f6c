//! What alerts are about: the events raised, the alerts (labels and annotations) they
//! become, and the settings the dispatcher works with.

use std::collections::BTreeMap;

use crate::config::{AlertConfig, AlertTopic};

/// One thing an operator should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertEvent {
    /// A backend's active health checks say it is down.
    BackendDown {
        pool: String,
        backend: String,
        reason: String,
    },
    /// That backend is up again.
    BackendUp { pool: String, backend: String },
    /// A backend's circuit breaker opened (it takes no traffic, or only trials).
    BreakerOpen { pool: String, backend: String },
    /// That breaker closed again.
    BreakerClosed { pool: String, backend: String },
    /// A pool has no usable backend: its requests fail (or go to its backup).
    PoolUnavailable { pool: String },
    /// That pool has a usable backend again.
    PoolRecovered { pool: String },
    /// A pool's requests go to its backup pool.
    FailoverStarted { pool: String, backup: String },
    /// That pool serves its own requests again.
    FailoverEnded { pool: String, backup: String },
    /// A plugin fails too often and the native policy stands in for it.
    PluginQuarantined { plugin: String },
    /// That plugin is called again.
    PluginReleased { plugin: String },
    /// A new version of a plugin file was refused; the running one stays.
    PluginRefused {
        plugin: String,
        file: String,
        error: String,
    },
    /// A rollout's guard broke and the route went back to its old pool.
    RolloutRolledBack {
        route: String,
        from: String,
        to: String,
        reason: String,
    },
    /// A config reload was refused; the running config stays.
    ConfigRefused { file: String, error: String },
}

/// Whether an alert begins, ends, or is a one-off incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Firing,
    Resolved,
    /// Fires once and is never resolved (nothing to wait for).
    Once,
}

/// An event as the receivers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    pub topic: AlertTopic,
    pub state: AlertState,
    /// `alertname`, `severity` and the subject (`pool`, `backend`, `route`, ...).
    pub labels: BTreeMap<String, String>,
    /// `summary` and `description`.
    pub annotations: BTreeMap<String, String>,
}

impl AlertEvent {
    /// The alert this event raises or resolves.
    pub fn alert(&self) -> Alert {
        use AlertEvent as E;
        let (topic, name, severity, state) = match self {
            E::BackendDown { .. } => (
                AlertTopic::Backend,
                "SwitchyardBackendDown",
                "warning",
                AlertState::Firing,
            ),
            E::BackendUp { .. } => (
                AlertTopic::Backend,
                "SwitchyardBackendDown",
                "warning",
                AlertState::Resolved,
            ),
            E::BreakerOpen { .. } => (
                AlertTopic::Breaker,
                "SwitchyardBreakerOpen",
                "warning",
                AlertState::Firing,
            ),
            E::BreakerClosed { .. } => (
                AlertTopic::Breaker,
                "SwitchyardBreakerOpen",
                "warning",
                AlertState::Resolved,
            ),
            E::PoolUnavailable { .. } => (
                AlertTopic::Pool,
                "SwitchyardPoolUnavailable",
                "critical",
                AlertState::Firing,
            ),
            E::PoolRecovered { .. } => (
                AlertTopic::Pool,
                "SwitchyardPoolUnavailable",
                "critical",
                AlertState::Resolved,
            ),
            E::FailoverStarted { .. } => (
                AlertTopic::Failover,
                "SwitchyardFailoverActive",
                "warning",
                AlertState::Firing,
            ),
            E::FailoverEnded { .. } => (
                AlertTopic::Failover,
                "SwitchyardFailoverActive",
                "warning",
                AlertState::Resolved,
            ),
            E::PluginQuarantined { .. } => (
                AlertTopic::Plugin,
                "SwitchyardPluginQuarantined",
                "warning",
                AlertState::Firing,
            ),
            E::PluginReleased { .. } => (
                AlertTopic::Plugin,
                "SwitchyardPluginQuarantined",
                "warning",
                AlertState::Resolved,
            ),
            E::PluginRefused { .. } => (
                AlertTopic::Plugin,
                "SwitchyardPluginRefused",
                "warning",
                AlertState::Once,
            ),
            E::RolloutRolledBack { .. } => (
                AlertTopic::Rollout,
                "SwitchyardRolloutRolledBack",
                "warning",
                AlertState::Once,
            ),
            E::ConfigRefused { .. } => (
                AlertTopic::Config,
                "SwitchyardConfigReloadFailed",
                "warning",
                AlertState::Once,
            ),
        };
        let mut labels = BTreeMap::from([
            ("alertname".to_string(), name.to_string()),
            ("severity".to_string(), severity.to_string()),
        ]);
        let mut label = |key: &str, value: &str| {
            labels.insert(key.to_string(), value.to_string());
        };
        let (summary, description) = match self {
            E::BackendDown {
                pool,
                backend,
                reason,
            } => {
                label("pool", pool);
                label("backend", backend);
                (
                    format!("backend {backend} of pool {pool} is down"),
                    format!("Active health checks fail: {reason}."),
                )
            }
            E::BackendUp { pool, backend } => {
                label("pool", pool);
                label("backend", backend);
                (
                    format!("backend {backend} of pool {pool} is down"),
                    "Health checks pass again.".to_string(),
                )
            }
            E::BreakerOpen { pool, backend } | E::BreakerClosed { pool, backend } => {
                label("pool", pool);
                label("backend", backend);
                (
                    format!("circuit breaker open for backend {backend} of pool {pool}"),
                    "Real traffic to this backend failed; it is ejected until trial requests succeed."
                        .to_string(),
                )
            }
            E::PoolUnavailable { pool } | E::PoolRecovered { pool } => {
                label("pool", pool);
                (
                    format!("pool {pool} has no usable backend"),
                    "Every backend is down, ejected, drained or disabled: requests get 503 unless a backup pool takes them."
                        .to_string(),
                )
            }
            E::FailoverStarted { pool, backup } | E::FailoverEnded { pool, backup } => {
                label("pool", pool);
                label("backup", backup);
                (
                    format!("pool {pool} fails over to {backup}"),
                    format!(
                        "Pool {pool} has no usable backend; its requests go to backup pool {backup}."
                    ),
                )
            }
            E::PluginQuarantined { plugin } | E::PluginReleased { plugin } => {
                label("plugin", plugin);
                (
                    format!("plugin {plugin} is quarantined"),
                    "It failed too many recent calls; the native policy stands in until the quarantine ends."
                        .to_string(),
                )
            }
            E::PluginRefused {
                plugin,
                file,
                error,
            } => {
                label("plugin", plugin);
                (
                    format!("new version of plugin {plugin} refused"),
                    format!("{file}: {error}. The running version stays."),
                )
            }
            E::RolloutRolledBack {
                route,
                from,
                to,
                reason,
            } => {
                label("route", route);
                label("from", from);
                label("to", to);
                (
                    format!("rollout of route {route} to {to} rolled back"),
                    format!("All traffic is back on {from}: {reason}."),
                )
            }
            E::ConfigRefused { file, error } => {
                label("file", file);
                (
                    format!("config reload of {file} refused"),
                    format!("{error}. The running config stays."),
                )
            }
        };
        Alert {
            topic,
            state,
            labels,
            annotations: BTreeMap::from([
                ("summary".to_string(), summary),
                ("description".to_string(), description),
            ]),
        }
    }
}

/// What the dispatcher works with: the receivers and where the proxy's admin API
/// is (for `externalURL` and each alert's `generatorURL`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub receivers: Vec<AlertConfig>,
    pub external_url: Option<String>,
}
