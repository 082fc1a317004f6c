//! `[cluster]`: several instances coordinated through etcd (see [`crate::cluster`]).
//! Without the table an instance stands alone, exactly as before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::duration::HumanDuration;
use super::error::Reporter;

/// Default key prefix in etcd.
pub const DEFAULT_PREFIX: &str = "/switchyard";
/// Default deadline of one etcd request.
pub const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(2);
/// Default lease: an instance (and a rollout leader) that stops renewing it for this
/// long is gone, and another instance takes over its rollouts.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);
const LEASE_TTL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(2)..=Duration::from_secs(60);
const TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
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

/// The host name, the default instance name (`switchyard` when it cannot be read).
pub fn host_name() -> String {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    from_proc
        .filter(|s| valid_instance(s))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| valid_instance(s)))
        .unwrap_or_else(|| "switchyard".to_string())
}

/// Instance names end up in etcd keys and in URLs of the fleet view.
fn valid_instance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

pub(super) fn cluster(
    section: &ClusterSection,
    base_dir: &Path,
    r: &mut Reporter<'_>,
) -> ClusterConfig {
    let mut etcd = Vec::new();
    if section.etcd.get_ref().is_empty() {
        r.at(
            section.etcd.span(),
            "cluster.etcd",
            "list at least one etcd client URL, e.g. [\"http://127.0.0.1:2379\"]",
        );
    }
    let mut https = false;
    for (i, url) in section.etcd.get_ref().iter().enumerate() {
        match endpoint(url.get_ref()) {
            Ok(uri) => {
                https |= uri.scheme_str() == Some("https");
                etcd.push(uri);
            }
            Err(why) => r.at(url.span(), format!("cluster.etcd[{i}]"), why),
        }
    }
    let prefix = section
        .prefix
        .as_ref()
        .map_or_else(|| DEFAULT_PREFIX.to_string(), |p| {
            let value = p.get_ref().trim_end_matches('/').to_string();
            let valid = value.starts_with('/')
                && value.len() > 1
                && !value.contains("//")
                && value.chars().all(|c| c.is_ascii_graphic());
            if !valid {
                r.at(
                    p.span(),
                    "cluster.prefix",
                    format!("`{}` is not a key prefix: it starts with `/` and has no spaces or empty segments, e.g. \"/switchyard/prod\"", p.get_ref()),
                );
            }
            value
        });
    let instance = match &section.instance {
        Some(name) => {
            if !valid_instance(name.get_ref()) {
                r.at(
                    name.span(),
                    "cluster.instance",
                    format!(
                        "`{}` is not an instance name: 1 to 64 letters, digits, `-`, `_` or `.`",
                        name.get_ref()
                    ),
                );
            }
            name.get_ref().clone()
        }
        None => host_name(),
    };
    let password = section
        .password
        .as_ref()
        .map(|p| p.get_ref().clone())
        .or_else(|| std::env::var("SWITCHYARD_ETCD_PASSWORD").ok())
        .filter(|p| !p.is_empty());
    let auth = match (&section.username, password) {
        (Some(user), Some(password)) => Some(EtcdAuth {
            username: user.get_ref().clone(),
            password,
        }),
        (Some(user), None) => {
            r.at(
                user.span(),
                "cluster.username",
                "an etcd user needs a password: set cluster.password or SWITCHYARD_ETCD_PASSWORD",
            );
            None
        }
        (None, Some(_)) => {
            if let Some(p) = &section.password {
                r.at(
                    p.span(),
                    "cluster.password",
                    "a password needs cluster.username",
                );
            }
            None
        }
        (None, None) => None,
    };
    let tls = section.tls.as_ref().map(|t| {
        let file = |value: &Spanned<String>, field: &str, r: &mut Reporter<'_>| {
            let path = base_dir.join(value.get_ref());
            if !path.is_file() {
                r.at(
                    value.span(),
                    field,
                    format!("file {} does not exist", path.display()),
                );
            }
            path
        };
        let ca = file(&t.ca, "cluster.tls.ca", r);
        let client = match (&t.cert, &t.key) {
            (Some(cert), Some(key)) => Some((
                file(cert, "cluster.tls.cert", r),
                file(key, "cluster.tls.key", r),
            )),
            (Some(one), None) | (None, Some(one)) => {
                r.at(
                    one.span(),
                    "cluster.tls",
                    "a client certificate needs both `cert` and `key`",
                );
                None
            }
            (None, None) => None,
        };
        EtcdTls { ca, client }
    });
    if https && tls.is_none() {
        r.at(
            section.etcd.span(),
            "cluster.etcd",
            "https:// endpoints need [cluster.tls] with the `ca` that signed etcd's certificates",
        );
    }
    let duration = |value: &Option<Spanned<HumanDuration>>,
                    default: Duration,
                    range: std::ops::RangeInclusive<Duration>,
                    field: &str,
                    r: &mut Reporter<'_>| {
        value.as_ref().map_or(default, |v| {
            let d = v.get_ref().0;
            if !range.contains(&d) {
                r.at(
                    v.span(),
                    field,
                    format!(
                        "must be between {} ms and {} s",
                        range.start().as_millis(),
                        range.end().as_secs()
                    ),
                );
            }
            d
        })
    };
    let timeout = duration(
        &section.timeout,
        DEFAULT_ETCD_TIMEOUT,
        TIMEOUT_RANGE,
        "cluster.timeout",
        r,
    );
    let lease_ttl = duration(
        &section.lease_ttl,
        DEFAULT_LEASE_TTL,
        LEASE_TTL_RANGE,
        "cluster.lease_ttl",
        r,
    );
    let on_leader_loss = match &section.on_leader_loss {
        None => LeaderLoss::default(),
        Some(v) => match v.get_ref().as_str() {
            "resume" => LeaderLoss::Resume,
            "roll-back" => LeaderLoss::RollBack,
            other => {
                r.at(
                    v.span(),
                    "cluster.on_leader_loss",
                    format!("unknown choice `{other}`; expected resume or roll-back"),
                );
                LeaderLoss::default()
            }
        },
    };
    let cache_dir = section.cache_dir.as_ref().map_or_else(
        || base_dir.join(".switchyard-cluster").join(&instance),
        |d| base_dir.join(d),
    );
    ClusterConfig {
        etcd,
        prefix,
        instance,
        auth,
        tls,
        timeout,
        lease_ttl,
        shared_config: section.shared_config.unwrap_or(false),
        on_leader_loss,
        cache_dir,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(cluster: &str) -> Result<Config, String> {
        let text = format!(
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[[route]]\nname = \"r\"\nlistener = \"web\"\npool = \"app\"\n[pool.app]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n{cluster}"
        );
        Config::parse(Path::new("/etc/switchyard/s.toml"), &text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_full_form() {
        let c = parse("[cluster]\netcd = [\"http://127.0.0.1:2379\"]\ninstance = \"edge-1\"\n")
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.instance, "edge-1");
        assert_eq!(c.timeout, DEFAULT_ETCD_TIMEOUT);
        assert_eq!(c.lease_ttl, DEFAULT_LEASE_TTL);
        assert!(!c.shared_config);
        assert_eq!(c.on_leader_loss, LeaderLoss::Resume);
        assert_eq!(
            c.cache_dir,
            Path::new("/etc/switchyard/.switchyard-cluster/edge-1")
        );
        let c = parse(
            "[cluster]\netcd = [\"http://a:2379\", \"http://b:2379\"]\nprefix = \"/switchyard/prod/\"\n\
             username = \"sy\"\npassword = \"secret\"\nlease_ttl = \"3s\"\nshared_config = true\n\
             on_leader_loss = \"roll-back\"\n",
        )
        .unwrap()
        .cluster
        .unwrap();
        assert_eq!(c.etcd.len(), 2);
        assert_eq!(c.prefix, "/switchyard/prod");
        assert_eq!(c.auth.as_ref().map(|a| a.username.as_str()), Some("sy"));
        assert!(!format!("{:?}", c.auth).contains("secret"));
        assert_eq!(c.lease_ttl, Duration::from_secs(3));
        assert_eq!(c.on_leader_loss, LeaderLoss::RollBack);
        assert!(parse("").unwrap().cluster.is_none());
        let unnamed = parse("[cluster]\netcd = [\"http://a:1\"]\n")
            .unwrap()
            .cluster
            .unwrap();
        assert_eq!(unnamed.instance, host_name(), "the host name by default");
        assert!(valid_instance(&unnamed.instance));
    }

    #[test]
    fn refuses_bad_values_with_their_place() {
        let err = parse("[cluster]\netcd = [\"127.0.0.1:2379\"]\n").unwrap_err();
        assert!(
            err.contains("cluster.etcd[0]") && err.contains("scheme"),
            "{err}"
        );
        let err = parse("[cluster]\netcd = [\"http://a\"]\n").unwrap_err();
        assert!(err.contains("no port"), "{err}");
        let err = parse("[cluster]\netcd = []\n").unwrap_err();
        assert!(err.contains("at least one"), "{err}");
        let err = parse("[cluster]\netcd = [\"http://a:1\"]\nprefix = \"prod\"\n").unwrap_err();
        assert!(err.contains("cluster.prefix"), "{err}");
        let err = parse("[cluster]\netcd = [\"http://a:1\"]\ninstance = \"edge 1\"\n").unwrap_err();
        assert!(err.contains("cluster.instance"), "{err}");
        let err = parse("[cluster]\netcd = [\"https://a:1\"]\n").unwrap_err();
        assert!(err.contains("[cluster.tls]"), "{err}");
        let err = parse("[cluster]\netcd = [\"http://a:1\"]\nlease_ttl = \"1s\"\n").unwrap_err();
        assert!(err.contains("cluster.lease_ttl"), "{err}");
        let err =
            parse("[cluster]\netcd = [\"http://a:1\"]\non_leader_loss = \"panic\"\n").unwrap_err();
        assert!(err.contains("resume or roll-back"), "{err}");
        let err = parse("[cluster]\netcd = [\"http://a:1\"]\nusername = \"u\"\n").unwrap_err();
        assert!(err.contains("SWITCHYARD_ETCD_PASSWORD"), "{err}");
        let err = parse("[cluster]\netcd = [\"http://a:1\"]\netcd_urls = 1\n").unwrap_err();
        assert!(err.contains("etcd_urls"), "{err}");
    }
}
