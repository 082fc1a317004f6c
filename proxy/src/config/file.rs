//! The config file as written by operators: plain serde structs, no runtime types.
//!
//! Every table denies unknown fields so a typo is an error with a line number,
//! never a silently ignored setting. Fields that refer to other parts of the file
//! keep their source span so validation errors can point at them too. Addresses are
//! read as text and parsed by validation, so a mistyped one is reported with the
//! rest of the file's problems instead of hiding them.

use std::collections::BTreeMap;

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
    /// `[cluster]`: coordination with other instances through etcd.
    pub cluster: Option<super::cluster::ClusterSection>,
    #[serde(default, rename = "alert")]
    pub alerts: Vec<Spanned<AlertSection>>,
    /// Certificates obtained and renewed from an ACME CA.
    pub acme: Option<Spanned<AcmeSection>>,
    /// How backend host names are resolved.
    #[serde(default)]
    pub dns: DnsSection,
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

/// `[acme]`: certificates for the names of one TLS listener from an ACME CA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcmeSection {
    /// Directory URL, or `letsencrypt` / `letsencrypt-staging`.
    pub directory: Spanned<String>,
    /// Contact URIs (`mailto:ops@example.com`).
    #[serde(default)]
    pub contact: Vec<Spanned<String>>,
    /// Where the account key and certificates are kept (relative to this file).
    pub storage: Spanned<String>,
    /// The TLS listener that serves the certificate.
    pub listener: Spanned<String>,
    /// Host names on the certificate.
    pub names: Spanned<Vec<String>>,
    /// `http-01` (answered on the plain listeners) or `tls-alpn-01`.
    pub challenge: Option<Spanned<String>>,
    /// A CA bundle to trust for the ACME server's own HTTPS (test or private CAs).
    pub ca: Option<Spanned<String>>,
    /// Renew this long before expiry.
    pub renew_before: Option<HumanDuration>,
    /// First retry delay after a failure; doubles up to `retry_max`.
    pub retry_min: Option<HumanDuration>,
    pub retry_max: Option<HumanDuration>,
}

/// `[dns]`: the resolver for backends named by host name.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DnsSection {
    /// Name servers (`ip` or `ip:port`); the system's resolv.conf when absent.
    pub servers: Option<Spanned<Vec<String>>>,
    /// Bounds on the re-resolution interval taken from record TTLs.
    pub min_ttl: Option<HumanDuration>,
    pub max_ttl: Option<HumanDuration>,
    /// Per-query timeout.
    pub timeout: Option<HumanDuration>,
}

/// `[plugin.NAME]`: a WebAssembly policy component and its limits.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// `routing`, `health-check` (or `health`) or `recovery`: the world it implements.
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
    /// `ip:port`; `127.0.0.1:9901` by default.
    #[serde(default = "default_admin_listen")]
    pub listen: Spanned<String>,
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

fn default_admin_listen() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_ADMIN_LISTEN.to_string())
}

/// Where the admin listener listens unless `admin.listen` says otherwise.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

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
    pub body_idle_timeout: Option<HumanDuration>,
    pub body_timeout: Option<HumanDuration>,
    pub max_body_bytes: Option<ByteSize>,
    pub max_uri_bytes: Option<ByteSize>,
    pub tunnel_idle_timeout: Option<HumanDuration>,
    pub max_connections_per_ip: Option<usize>,
}

/// `[[listener]]`: one traffic socket.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    pub name: Spanned<String>,
    /// `ip:port`.
    pub listen: Spanned<String>,
    pub tls: Option<Spanned<TlsSection>>,
    /// Protocols clients may upgrade to; default `["websocket"]`.
    pub upgrades: Option<Spanned<Vec<String>>>,
}

/// `tls = { ... }` on a listener: `cert`/`key` (the default certificate), more
/// pairs in `certificates`, a `directory` of them, and handshake settings.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    #[serde(default)]
    pub certificates: Vec<CertificatePairSection>,
    pub directory: Option<Spanned<String>>,
    /// The certificate served when SNI names none (or is absent), by host name.
    pub default: Option<Spanned<String>>,
    /// `"1.2"` or `"1.3"`.
    pub min_version: Option<Spanned<String>>,
    /// Protocols offered by ALPN, in preference order.
    pub alpn: Option<Spanned<Vec<String>>>,
}

/// One `{ cert = ..., key = ... }` of `certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificatePairSection {
    pub cert: Spanned<String>,
    pub key: Spanned<String>,
}

/// `tls = { ... }` on a pool: TLS to its backends.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// Server name sent and verified; defaults to the backend's host name.
    pub sni: Option<Spanned<String>>,
    /// CA bundle to verify against; the system roots when absent.
    pub ca: Option<Spanned<String>>,
    /// Verify the backend's certificate (default true).
    pub verify: Option<bool>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
    /// Protocols offered by ALPN (default `["h2", "http/1.1"]`).
    pub alpn: Option<Spanned<Vec<String>>>,
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
    /// `normalized` (default) or `original`.
    pub forward_path: Option<Spanned<String>>,
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
    /// TLS to the backends.
    pub tls: Option<Spanned<UpstreamTlsSection>>,
    /// How long upgraded (WebSocket) connections may stay open on a draining backend.
    pub drain_grace: Option<HumanDuration>,
    pub health: Option<HealthSection>,
    #[serde(default)]
    pub breaker: BreakerSection,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub failover: FailoverSection,
    /// Sticky sessions: a cookie keeps each client on the backend that served it.
    pub sticky: Option<StickySection>,
}

/// `[pool.NAME.sticky]`: the cookie naming the backend a client stays on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StickySection {
    /// The cookie's name (`sy_srv`).
    pub cookie: Spanned<String>,
    /// Send it over HTTPS only (default false).
    pub secure: Option<bool>,
    /// Hide it from scripts (default true).
    pub http_only: Option<bool>,
    /// `lax` (default), `strict` or `none` (which needs `secure`).
    pub same_site: Option<Spanned<String>>,
    /// How long browsers keep it; a session cookie when absent.
    pub max_age: Option<HumanDuration>,
    /// The cookie's `Path` (default `/`).
    pub path: Option<Spanned<String>>,
}

pub(super) fn default_balance() -> Spanned<String> {
    Spanned::new(0..0, "round-robin".to_string())
}

/// One entry of `backends = [...]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSection {
    /// `ip:port`, or `host:port` resolved through DNS.
    pub address: Option<Spanned<String>>,
    /// A DNS SRV name (`_http._tcp.app.internal`) giving targets and ports.
    pub srv: Option<Spanned<String>>,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// What people call this backend (`alpha`): shown beside its address in
    /// `/status`, logs and metrics, and accepted in its place by the admin API.
    pub name: Option<Spanned<String>>,
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
