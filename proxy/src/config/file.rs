//! The config file as written by operators: plain serde structs, no runtime types.
//!
//! Every table denies unknown fields so a typo is an error with a line number,
//! never a silently ignored setting. Fields that refer to other parts of the file
//! keep their source span so validation errors can point at them too.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::duration::{ByteSize, HumanDuration};

/// The whole file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub limits: LimitsSection,
    #[serde(default, rename = "listener")]
    pub listeners: Vec<ListenerSection>,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteSection>,
    #[serde(default, rename = "pool")]
    pub pools: BTreeMap<String, Spanned<PoolSection>>,
    #[serde(default, rename = "plugin")]
    pub plugins: BTreeMap<String, Spanned<PluginSection>>,
    #[serde(default, rename = "alert")]
    pub alerts: Vec<Spanned<AlertSection>>,
}

/// `[[alert]]`: a webhook (Alertmanager's webhook format) told about incidents.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSection {
    /// The receiver's name in the payload (default: the URL's host and port).
    pub name: Option<Spanned<String>>,
    /// `http://host:port/path`.
    pub url: Spanned<String>,
    /// Which incidents: backend, breaker, pool, failover, rollout, plugin, config.
    pub events: Option<Spanned<Vec<String>>>,
    /// Labels whose values form a group: alerts of one group go out together.
    pub group_by: Option<Spanned<Vec<String>>>,
    pub group_wait: Option<Spanned<HumanDuration>>,
    pub group_interval: Option<Spanned<HumanDuration>>,
    pub repeat_interval: Option<Spanned<HumanDuration>>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub retries: Option<Spanned<u32>>,
    pub queue: Option<Spanned<usize>>,
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
}

/// `[plugin.NAME]`: a WebAssembly policy component and its limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// `routing`, `health` or `recovery`.
    pub kind: Spanned<String>,
    /// The `.wasm` component, relative to this file.
    pub path: Spanned<String>,
    /// Passed to the plugin's `init` as JSON.
    pub config: Option<toml::Table>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub memory: Option<Spanned<ByteSize>>,
    /// `fallback` (to the native policy) or `fail-closed`.
    pub on_error: Option<Spanned<String>>,
}

/// `[admin]`: the loopback control listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    #[serde(default = "default_admin_listen")]
    pub listen: Spanned<SocketAddr>,
    /// Bearer token required on admin requests; mandatory off loopback.
    pub token: Option<Spanned<String>>,
    /// Where runtime changes are kept across restarts (relative to this file).
    pub state_file: Option<String>,
    /// Host names (besides the listener's address and loopback names) the admin API
    /// answers to; any other `Host` is refused, which stops DNS rebinding.
    pub allowed_hosts: Option<Vec<Spanned<String>>>,
    /// CIDR networks that backends added at run time must belong to.
    pub backend_networks: Option<Vec<Spanned<String>>>,
    /// Admin connections served at once.
    pub max_connections: Option<Spanned<usize>>,
}

fn default_admin_listen() -> Spanned<SocketAddr> {
    Spanned::new(0..0, SocketAddr::from(([127, 0, 0, 1], 9901)))
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
            token: None,
            state_file: None,
            allowed_hosts: None,
            backend_networks: None,
            max_connections: None,
        }
    }
}

/// `[limits]`: timeouts and caps that protect the proxy from slow or greedy clients.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub header_read_timeout: Option<HumanDuration>,
    pub idle_timeout: Option<HumanDuration>,
    pub max_header_bytes: Option<ByteSize>,
    pub max_headers: Option<usize>,
    pub max_connections: Option<usize>,
    pub drain_timeout: Option<HumanDuration>,
    pub connect_timeout: Option<HumanDuration>,
    pub upstream_idle_per_backend: Option<usize>,
    pub upstream_idle_timeout: Option<HumanDuration>,
}

/// `[[listener]]`: one traffic socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    pub name: Spanned<String>,
    pub listen: Spanned<SocketAddr>,
    pub tls: Option<TlsSection>,
}

/// `tls = { cert = ..., key = ... }` on a listener.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `[[route]]`: which requests of a listener go to which pool.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: Spanned<String>,
    pub listener: Spanned<String>,
    pub host: Option<Spanned<String>>,
    pub path_prefix: Option<Spanned<String>>,
    pub pool: Spanned<String>,
}

/// `[pool.NAME]`: a set of interchangeable backends and the policies over them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    #[serde(default = "default_balance")]
    pub balance: Spanned<String>,
    /// The native algorithm used when `balance = "plugin:..."` cannot answer.
    pub fallback_balance: Option<Spanned<String>>,
    pub hash_on: Option<Spanned<String>>,
    /// A routing plugin run beside the live policy without acting on it.
    pub shadow: Option<Spanned<String>>,
    pub backends: Spanned<Vec<BackendSection>>,
    /// How long upgraded (WebSocket) connections may stay open on a draining backend.
    pub drain_grace: Option<HumanDuration>,
    pub health: Option<HealthSection>,
    #[serde(default)]
    pub breaker: BreakerSection,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub failover: FailoverSection,
}

pub(super) fn default_balance() -> Spanned<String> {
    Spanned::new(0..0, "round-robin".to_string())
}

/// One entry of `backends = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    pub address: Spanned<SocketAddr>,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// `[pool.NAME.health]`: the active check.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthSection {
    #[serde(rename = "type", default)]
    pub kind: Option<Spanned<String>>,
    pub path: Option<String>,
    pub method: Option<String>,
    pub expect_status: Option<Vec<StatusSpec>>,
    pub expect_body: Option<String>,
    pub host: Option<String>,
    pub interval: Option<HumanDuration>,
    pub timeout: Option<Spanned<HumanDuration>>,
    pub jitter: Option<Spanned<String>>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    /// `plugin:NAME` to judge probes with a health-check plugin.
    pub evaluate: Option<Spanned<String>>,
}

/// An expected status: `200` or a range `"200-399"`.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u16),
    Range(String),
}

/// `[pool.NAME.breaker]`: passive outlier detection from real traffic.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    pub consecutive_failures: Option<u32>,
    pub error_rate: Option<f64>,
    pub min_requests: Option<u32>,
    pub window: Option<HumanDuration>,
    pub open_for: Option<HumanDuration>,
    pub max_open_for: Option<HumanDuration>,
    pub half_open_requests: Option<u32>,
    pub max_ejected_percent: Option<u32>,
    /// `plugin:NAME` to let a recovery plugin drive the breaker.
    pub policy: Option<Spanned<String>>,
}

/// `[pool.NAME.retry]`: how failed attempts move to another backend.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    pub attempts: Option<u32>,
    pub on: Option<Spanned<Vec<String>>>,
    pub per_try_timeout: Option<HumanDuration>,
    pub budget_percent: Option<u32>,
    pub backoff: Option<HumanDuration>,
    pub buffer_body: Option<ByteSize>,
}

/// `[pool.NAME.failover]`: what happens when the whole pool is unusable.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FailoverSection {
    pub backup: Option<Spanned<String>>,
    pub slow_start: Option<HumanDuration>,
    pub panic_threshold: Option<u32>,
}
