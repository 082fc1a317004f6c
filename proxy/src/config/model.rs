//! The typed, validated configuration the rest of the proxy reads; built by the
//! validation steps, defined apart from them so no step imports back the module that
//! runs it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;

use super::cluster::ClusterConfig;
use super::plugin_settings::PluginConfig;

/// A complete, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from, for messages (`<demo>` for the embedded one).
    pub source: PathBuf,
    pub admin: AdminConfig,
    pub limits: Limits,
    pub listeners: Vec<ListenerConfig>,
    pub routes: Vec<RouteConfig>,
    pub pools: BTreeMap<String, PoolConfig>,
    /// WebAssembly policy plugins, by name.
    pub plugins: BTreeMap<String, PluginConfig>,
    /// `[cluster]`: when set, runtime changes and rollouts are shared with the other
    /// instances through etcd.
    pub cluster: Option<ClusterConfig>,
    /// SHA-256 of the file's text (hex), so instances can tell whether they run the
    /// same config.
    pub digest: String,
    /// Webhooks told about incidents (`[[alert]]`).
    pub alerts: Vec<AlertConfig>,
    /// Certificates obtained from an ACME CA, when configured.
    pub acme: Option<AcmeConfig>,
    /// The resolver for backends named by host name.
    pub dns: DnsConfig,
    /// Where every setting is written (line and column, by dotted path), so failures
    /// found at run time (addresses to bind, files to read) name file, line and field.
    pub locations: BTreeMap<String, (usize, usize)>,
}

/// The hex SHA-256 of a config text.
pub fn text_digest(text: &str) -> String {
    use sha2::Digest;
    let hash = sha2::Sha256::digest(text.as_bytes());
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// A webhook receiving alerts in Alertmanager's webhook format: what it hears
/// about, how alerts are grouped and how often they go out, and how hard delivery
/// tries.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertConfig {
    /// The receiver's name (`receiver` in the payload, the metrics label).
    pub name: String,
    /// An `http://` URL.
    pub url: http::Uri,
    pub topics: Vec<AlertTopic>,
    /// Labels whose values form a group (`alertname` and `pool` by default).
    pub group_by: Vec<String>,
    /// How long a new group waits for more alerts before its first notification.
    pub group_wait: Duration,
    /// How long a group waits before telling about changes after a notification.
    pub group_interval: Duration,
    /// How often a group whose alerts still fire is told again.
    pub repeat_interval: Duration,
    /// Per delivery attempt.
    pub timeout: Duration,
    /// Attempts after the first, with exponential backoff.
    pub retries: u32,
    /// Notifications waiting for delivery; beyond it they are dropped and counted.
    pub queue: usize,
    /// Extra request headers (an `Authorization` for the receiver, say).
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
}

/// Defaults of `[[alert]]`.
pub mod alert_defaults {
    use std::time::Duration;

    pub const GROUP_BY: [&str; 2] = ["alertname", "pool"];
    pub const GROUP_WAIT: Duration = Duration::from_secs(10);
    pub const GROUP_INTERVAL: Duration = Duration::from_secs(60);
    pub const REPEAT_INTERVAL: Duration = Duration::from_secs(4 * 3600);
    pub const TIMEOUT: Duration = Duration::from_secs(5);
    pub const RETRIES: u32 = 5;
    pub const QUEUE: usize = 64;
}

/// What an alert is about; `[[alert]] events` picks among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertTopic {
    /// A backend's health checks say down / up again.
    Backend,
    /// A backend's circuit breaker opened / closed.
    Breaker,
    /// A pool has no usable backend / has one again.
    Pool,
    /// A pool's traffic goes to its backup pool / came back.
    Failover,
    /// A rollout was rolled back.
    Rollout,
    /// A plugin was quarantined (and released), or a new version refused.
    Plugin,
    /// A config reload was refused.
    Config,
}

impl AlertTopic {
    /// Every topic, in config spelling order.
    pub const ALL: [AlertTopic; 7] = [
        AlertTopic::Backend,
        AlertTopic::Breaker,
        AlertTopic::Pool,
        AlertTopic::Failover,
        AlertTopic::Rollout,
        AlertTopic::Plugin,
        AlertTopic::Config,
    ];

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertTopic::Backend => "backend",
            AlertTopic::Breaker => "breaker",
            AlertTopic::Pool => "pool",
            AlertTopic::Failover => "failover",
            AlertTopic::Rollout => "rollout",
            AlertTopic::Plugin => "plugin",
            AlertTopic::Config => "config",
        }
    }

    /// Parses the config spelling.
    pub fn parse(text: &str) -> Option<AlertTopic> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// The admin listener's settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Bearer token from `admin.token` or `SWITCHYARD_ADMIN_TOKEN`.
    pub token: Option<String>,
    /// State file for runtime changes, resolved against the config's directory.
    pub state_file: Option<PathBuf>,
    /// Lower-case host names the admin API answers to besides its own address and
    /// loopback names (`Host` checks stop DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// When not empty, backends added at run time must be inside one of these.
    pub backend_networks: Vec<ipnet::IpNet>,
    /// Admin connections served at once; more wait in the kernel's backlog.
    pub max_connections: usize,
}

/// Shortest bearer token accepted: 16 bytes keeps guessing out of reach of the
/// per-client failure limit.
pub const MIN_TOKEN_BYTES: usize = 16;

/// Default of `admin.max_connections`: the admin API is for a few operators and tools.
pub const DEFAULT_ADMIN_CONNECTIONS: usize = 64;

/// Timeouts and caps; defaults follow `shared/reference/limits-and-defaults.md`.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// A client must send a whole request head within this time.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight is closed after this long.
    pub idle_timeout: Duration,
    /// Largest request head accepted; beyond it the client gets 431.
    pub max_header_bytes: usize,
    /// Most header fields accepted; beyond it the client gets 431.
    pub max_headers: usize,
    /// Client connections accepted at once across all listeners.
    pub max_connections: usize,
    /// How long in-flight requests may take to finish on shutdown.
    pub drain_timeout: Duration,
    /// Upstream TCP connect timeout.
    pub connect_timeout: Duration,
    /// Idle keep-alive connections kept per backend: a ceiling, above what the
    /// busiest moment needs, so steady load never closes connections it will want
    /// again (those a burst left over age out after `upstream_idle_timeout`).
    /// Shared out evenly between the worker threads, each of which keeps its own.
    pub upstream_idle_per_backend: usize,
    /// How long an idle upstream connection is kept.
    pub upstream_idle_timeout: Duration,
    /// A request body that sends nothing for this long is cut off (408).
    pub body_idle_timeout: Duration,
    /// A request body must arrive in full within this time (408).
    pub body_timeout: Duration,
    /// Largest request body accepted (413 beyond); `None` = no limit.
    pub max_body_bytes: Option<u64>,
    /// Longest request target (path and query) accepted (414 beyond).
    pub max_uri_bytes: usize,
    /// An upgraded (WebSocket) connection with no bytes either way for this long is closed.
    pub tunnel_idle_timeout: Duration,
    /// Connections one client address may hold at once; `None` = no per-client cap.
    pub max_connections_per_ip: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_connections: 10_000,
            drain_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(3),
            upstream_idle_per_backend: 1024,
            upstream_idle_timeout: Duration::from_secs(90),
            body_idle_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_body_bytes: None,
            max_uri_bytes: 8 * 1024,
            tunnel_idle_timeout: Duration::from_secs(600),
            max_connections_per_ip: None,
        }
    }
}

/// A traffic listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    pub name: String,
    pub listen: SocketAddr,
    pub tls: Option<ListenerTlsConfig>,
    /// Protocols a client may upgrade to (lower-case `Upgrade` tokens); other
    /// upgrade requests are forwarded as plain requests without their upgrade headers.
    pub upgrades: Vec<String>,
}

/// Default of `[[listener]] upgrades`.
pub const DEFAULT_UPGRADES: [&str; 1] = ["websocket"];

/// TLS on a listener: where its certificates come from and what handshakes allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsConfig {
    /// Certificate chain and key files (PEM): `cert`/`key` first, then `certificates`.
    pub certificates: Vec<CertificatePair>,
    /// A directory of certificates (`NAME.pem` or `.crt`, key in `NAME.key` or the same file).
    pub directory: Option<PathBuf>,
    /// Host name whose certificate is served when SNI matches none (lower case).
    pub default: Option<String>,
    /// Oldest protocol version accepted.
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<String>,
    /// `[acme]` obtains certificates for this listener (and TLS-ALPN-01 is answered).
    pub acme: bool,
    /// Where the table is in the file (`listener[0].tls`), for errors found when the
    /// certificates are loaded.
    pub field: String,
}

/// A certificate chain file and its private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificatePair {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Where the pair is in the file: `listener[0].tls` (its `cert` and `key`) or
    /// `listener[0].tls.certificates[1]`.
    pub field: String,
}

/// A TLS protocol version floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// `[acme]`: one certificate for `names`, obtained from an ACME CA and renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeConfig {
    /// The CA's directory URL.
    pub directory: String,
    pub contact: Vec<String>,
    /// Account key and certificates live here (files 0600).
    pub storage: PathBuf,
    /// The TLS listener serving the certificate.
    pub listener: String,
    /// Lower-cased host names on the certificate.
    pub names: Vec<String>,
    pub challenge: AcmeChallenge,
    /// Extra CA to trust for the ACME server's HTTPS.
    pub ca: Option<PathBuf>,
    pub renew_before: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

/// How domain control is proven to the ACME CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcmeChallenge {
    /// A token served over plain HTTP on port 80 (every plain listener answers).
    Http01,
    /// A special certificate served to `acme-tls/1` handshakes on port 443.
    TlsAlpn01,
}

/// Let's Encrypt's production directory (`directory = "letsencrypt"`).
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory (`directory = "letsencrypt-staging"`).
pub const LETSENCRYPT_STAGING: &str = "https://acme-staging-v02.api.letsencrypt.org/directory";

/// `[dns]`: how backend host names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers to ask; empty means the system's (`/etc/resolv.conf`).
    pub servers: Vec<SocketAddr>,
    /// A name is re-resolved after its records' TTL, but never sooner than this...
    pub min_ttl: Duration,
    /// ...nor later than this.
    pub max_ttl: Duration,
    /// Per-query timeout.
    pub timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            min_ttl: Duration::from_secs(5),
            max_ttl: Duration::from_secs(300),
            timeout: Duration::from_secs(2),
        }
    }
}

/// A named route from (listener, host, path prefix) to a pool.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    pub name: String,
    pub listener: String,
    /// Lower-cased host without port; `None` matches any host.
    pub host: Option<String>,
    /// Always starts with `/`; `/` matches everything.
    pub path_prefix: String,
    pub pool: String,
    /// `forward_path = "original"`: send the backend the path bytes the client sent
    /// instead of the normalised path the route matched.
    pub forward_original_path: bool,
}

/// A pool of backends and its policies.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub name: String,
    /// The native algorithm; with a routing plugin, the one it falls back to.
    pub balance: BalanceKind,
    /// `balance = "plugin:NAME"`: the routing plugin choosing backends.
    pub routing_plugin: Option<String>,
    /// `shadow = "plugin:NAME"`: a routing plugin evaluated but never obeyed.
    pub shadow_plugin: Option<String>,
    /// Backends by `ip:port`; with [`PoolConfig::dns`] names resolved, the addresses
    /// found are added here (with their `origin`) when a snapshot is built.
    pub backends: Vec<BackendConfig>,
    /// Backends named by DNS: each resolved address becomes a backend.
    pub dns: Vec<DnsBackend>,
    /// TLS to the backends.
    pub tls: Option<UpstreamTlsConfig>,
    /// Upgraded (WebSocket) connections to a draining backend are closed after this
    /// long, so a drain (or a removal) ends even with long-lived tunnels open.
    pub drain_grace: Duration,
    pub health: Option<HealthConfig>,
    pub breaker: BreakerConfig,
    pub retry: RetryConfig,
    pub failover: FailoverConfig,
    /// Sticky sessions by cookie (`[pool.NAME.sticky]`).
    pub sticky: Option<StickyConfig>,
}

/// Sticky sessions: the proxy sets a cookie carrying an opaque id of the backend that
/// answered, and sends the client's later requests there while that backend is usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConfig {
    /// The cookie's name.
    pub cookie: String,
    pub secure: bool,
    pub http_only: bool,
    pub same_site: SameSite,
    /// `Max-Age`; `None` makes it a session cookie.
    pub max_age: Option<Duration>,
    /// The cookie's `Path`.
    pub path: String,
}

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    /// Sent on cross-site requests too; browsers require `Secure` with it.
    None,
}

impl SameSite {
    /// The attribute's value as written in `Set-Cookie`.
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

impl PoolConfig {
    /// The weight this pool's config gives the backend at `address`, if it lists it.
    pub fn backend_weight(&self, address: SocketAddr) -> Option<u32> {
        self.backends
            .iter()
            .find(|b| b.address == address)
            .map(|b| b.weight)
    }
}

/// Default of `[pool.NAME] drain_grace`.
pub const DEFAULT_DRAIN_GRACE: Duration = Duration::from_secs(30);

/// Highest backend weight, in the config file and through the admin API.
pub const MAX_WEIGHT: u32 = 10_000;

/// A backend as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    pub address: SocketAddr,
    pub weight: u32,
    /// The DNS name this address was resolved from (`None` when listed by address).
    pub origin: Option<Arc<str>>,
    /// The operator's name for it (`name = "alpha"`), unique in its pool.
    pub name: Option<Arc<str>>,
}

/// A pool entry named by DNS.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DnsBackend {
    /// `app.internal` (A/AAAA records), or the SRV name `_http._tcp.app.internal`.
    pub name: String,
    /// The port of every address found; unused for SRV (targets carry theirs).
    pub port: u16,
    /// Look up SRV records instead of addresses.
    pub srv: bool,
    pub weight: u32,
}

/// TLS from the proxy to a pool's backends. The rustls config is built (files read
/// and checked) when the config is validated; two configs are equal when their
/// settings and file contents are.
#[derive(Clone)]
pub struct UpstreamTlsConfig {
    /// Server name to send and verify; else the backend's DNS name, else its IP.
    pub sni: Option<String>,
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub alpn: Vec<String>,
    /// The built client config (roots, client certificate, ALPN).
    pub client: Arc<rustls::ClientConfig>,
    /// Digest of the settings and file contents.
    pub fingerprint: [u8; 32],
}

impl PartialEq for UpstreamTlsConfig {
    fn eq(&self, other: &Self) -> bool {
        self.fingerprint == other.fingerprint && self.sni == other.sni
    }
}

impl std::fmt::Debug for UpstreamTlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsConfig")
            .field("sni", &self.sni)
            .field("verify", &self.verify)
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .field("alpn", &self.alpn)
            .field("fingerprint", &&self.fingerprint[..4])
            .finish()
    }
}

/// The load-balancing algorithm of a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BalanceKind {
    /// Each backend in turn.
    RoundRobin,
    /// Smooth weighted round-robin (nginx's algorithm).
    Weighted,
    /// Power of two random choices by in-flight requests per weight.
    LeastRequest,
    /// Consistent hashing on a request key.
    Hash(HashOn),
}

/// The request key consistent hashing uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashOn {
    Header(HeaderName),
    Cookie(String),
    ClientIp,
}

/// Active health checking of each backend.
#[derive(Debug, Clone)]
pub struct HealthConfig {
    pub probe: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
    /// Fraction of `interval` (0.0..=0.5) by which each probe is spread.
    pub jitter: f64,
    pub rise: u32,
    pub fall: u32,
    /// `evaluate = "plugin:NAME"`: a health-check plugin judging each probe.
    pub plugin: Option<String>,
}

/// What a health probe does.
#[derive(Debug, Clone)]
pub enum ProbeKind {
    /// Connect only.
    Tcp,
    /// An HTTP request whose status (and optionally body) is checked.
    Http {
        method: http::Method,
        path: String,
        host: Option<String>,
        expect_status: Vec<RangeInclusive<u16>>,
        expect_body: Option<String>,
    },
}

/// Passive outlier detection settings.
#[derive(Debug, Clone)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (0 disables this trigger).
    pub consecutive_failures: u32,
    /// Failure ratio over `window` that opens the breaker (`None` disables it).
    pub error_rate: Option<f64>,
    pub min_requests: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub max_open_for: Duration,
    pub half_open_requests: u32,
    pub max_ejected_percent: u32,
    /// How long a half-open trial may go without reporting before it counts as lost
    /// and fresh trials are admitted. Not a file key: the pool's per-try timeout
    /// plus a second, since a trial that is still sending by then has timed out.
    pub trial_timeout: Duration,
    /// `policy = "plugin:NAME"`: a recovery plugin deciding when to open and close.
    pub plugin: Option<String>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            error_rate: None,
            min_requests: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(30),
            max_open_for: Duration::from_secs(300),
            half_open_requests: 3,
            max_ejected_percent: 50,
            trial_timeout: RetryConfig::default().per_try_timeout + TRIAL_GRACE,
            plugin: None,
        }
    }
}

/// Added to the per-try timeout to give a half-open trial its own expiry.
pub const TRIAL_GRACE: Duration = Duration::from_secs(1);

/// Which failures of an attempt may be retried on another backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn {
    pub connect_failure: bool,
    pub reset: bool,
    pub timeout: bool,
    /// A 500: what an application answers when it fails inside (an exception, a
    /// dependency down), so a retry elsewhere often succeeds; only for idempotent
    /// requests, like every status condition.
    pub status_500: bool,
    pub status_502: bool,
    pub status_503: bool,
    pub status_504: bool,
}

impl RetryOn {
    /// Whether a response status is retryable under this policy.
    pub fn status(&self, status: u16) -> bool {
        match status {
            500 => self.status_500,
            502 => self.status_502,
            503 => self.status_503,
            504 => self.status_504,
            _ => false,
        }
    }
}

/// Retry policy of a pool.
#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Extra tries after the first, each on a backend not tried yet.
    pub attempts: u32,
    pub on: RetryOn,
    pub per_try_timeout: Duration,
    /// Retries may add at most this share (percent) of the pool's request rate.
    pub budget_percent: u32,
    pub backoff: Duration,
    /// Request bodies up to this size are buffered so they can be replayed.
    pub buffer_body: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 2,
            on: RetryOn {
                connect_failure: true,
                reset: true,
                timeout: true,
                status_500: false,
                status_502: false,
                status_503: false,
                status_504: false,
            },
            per_try_timeout: Duration::from_secs(15),
            budget_percent: 20,
            backoff: Duration::from_millis(25),
            buffer_body: 64 * 1024,
        }
    }
}

/// What to do when the pool has no usable backend.
#[derive(Debug, Clone, Default)]
pub struct FailoverConfig {
    pub backup: Option<String>,
    pub slow_start: Option<Duration>,
    /// Below this percentage of usable backends, spread over all of them (Envoy's panic mode).
    pub panic_threshold: Option<u32>,
}
