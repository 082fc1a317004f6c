//! `[cluster]`: several instances coordinated through etcd (see [`crate::cluster`]).
//! Without the table an instance stands alone, exactly as before.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::duration::HumanDuration;
use super::environment::host_name;

/// Default key prefix in etcd.
pub const DEFAULT_PREFIX: &str = "/switchyard";
/// Default deadline of one etcd request.
pub const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(2);
/// Default lease: an instance (and a rollout leader) that stops renewing it for this
/// long is gone, and another instance takes over its rollouts.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
/// Accepted `lease_ttl` values.
pub(super) const LEASE_TTL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(2)..=Duration::from_secs(60);
/// Accepted `timeout` values.
pub(super) const TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(30);

/// `[cluster]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// etcd client URLs, e.g. `["http://10.0.0.1:2379", "http://10.0.0.2:2379"]`.
    pub etcd: Spanned<Vec<Spanned<String>>>,
    /// Every key of this fleet lives under it; fleets sharing an etcd use different ones.
    pub prefix: Option<Spanned<String>>,
    /// This instance's name in the fleet (default: the host name).
    pub instance: Option<Spanned<String>>,
    /// etcd user (with `password` or `SWITCHYARD_ETCD_PASSWORD`).
    pub username: Option<Spanned<String>>,
    pub password: Option<Spanned<String>>,
    /// TLS to etcd (`https://` endpoints): CA bundle, optional client certificate.
    pub tls: Option<ClusterTlsSection>,
    /// Deadline of one etcd request.
    pub timeout: Option<Spanned<HumanDuration>>,
    /// How long the instance's lease outlives its last renewal.
    pub lease_ttl: Option<Spanned<HumanDuration>>,
    /// Follow the config pushed with `switchyard cluster push` (opt-in).
    pub shared_config: Option<bool>,
    /// What a new rollout leader does with a rollout its predecessor left running:
    /// `resume` (default) or `roll-back`.
    pub on_leader_loss: Option<Spanned<String>>,
    /// Where pushed configs and plugins are kept on this machine (relative to this file).
    pub cache_dir: Option<String>,
}

/// `[cluster.tls]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTlsSection {
    pub ca: Spanned<String>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
}

/// A validated `[cluster]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// etcd client URLs (`http://host:port` or `https://host:port`), tried in order.
    pub etcd: Vec<http::Uri>,
    /// Key prefix, starting with `/`, without a trailing `/`.
    pub prefix: String,
    /// This instance's name.
    pub instance: String,
    /// etcd user name and password.
    pub auth: Option<EtcdAuth>,
    /// TLS settings for `https://` endpoints.
    pub tls: Option<EtcdTls>,
    /// Deadline of one etcd request.
    pub timeout: Duration,
    /// Lease TTL of this instance's keys and of rollout leadership.
    pub lease_ttl: Duration,
    /// Whether configs pushed with `switchyard cluster push` are applied here.
    pub shared_config: bool,
    /// What a new leader does with an orphaned rollout.
    pub on_leader_loss: LeaderLoss,
    /// Where pushed configs and plugin files are kept.
    pub cache_dir: PathBuf,
}

/// etcd credentials.
#[derive(Clone, PartialEq)]
pub struct EtcdAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for EtcdAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdAuth")
            .field("username", &self.username)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// Files for TLS to etcd, resolved against the config's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTls {
    /// CA bundle that signed the etcd server certificates.
    pub ca: PathBuf,
    /// Client certificate chain and key, when etcd asks for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// What happens to a running rollout whose leader disappeared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeaderLoss {
    /// The new leader carries on from the step the rollout stood at.
    #[default]
    Resume,
    /// The new leader sends the route back to the old pool.
    RollBack,
}

impl LeaderLoss {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LeaderLoss::Resume => "resume",
            LeaderLoss::RollBack => "roll-back",
        }
    }
}

impl ClusterConfig {
    /// Settings for talking to a fleet's etcd from the command line, without a
    /// config file (no auth, no TLS, default timeouts).
    pub fn for_tools(etcd: Vec<http::Uri>, prefix: &str) -> ClusterConfig {
        ClusterConfig {
            etcd,
            prefix: prefix.trim_end_matches('/').to_string(),
            instance: host_name(),
            auth: None,
            tls: None,
            timeout: DEFAULT_ETCD_TIMEOUT,
            lease_ttl: DEFAULT_LEASE_TTL,
            shared_config: false,
            on_leader_loss: LeaderLoss::default(),
            cache_dir: PathBuf::new(),
        }
    }
}

/// An etcd client URL: `http` or `https`, a host and port, no path or query.
pub fn endpoint(text: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not a URL such as \"http://127.0.0.1:2379\""))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(format!(
                "`{text}` needs an http:// or https:// scheme (etcd's client URL)"
            ));
        }
    }
    let Some(authority) = uri.authority() else {
        return Err(format!("`{text}` has no host"));
    };
    if authority.port_u16().is_none() {
        return Err(format!(
            "`{text}` has no port (etcd clients usually use 2379)"
        ));
    }
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err(format!(
            "`{text}` has a path; give only scheme, host and port"
        ));
    }
    Ok(uri)
}
