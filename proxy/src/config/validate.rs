//! Whole-file validation: turns [`FileConfig`] into [`Config`] or a list of located problems.

use std::collections::{BTreeMap, HashSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::error::Reporter;
use super::file::{self, FileConfig, StatusSpec};
use super::plugin_limits::{DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, MAX_REQUEST_PATH_TIMEOUT};
use super::{
    AcmeChallenge, AcmeConfig, AdminConfig, AlertConfig, AlertTopic, BackendConfig, BalanceKind,
    BreakerConfig, CertificatePair, Config, ConfigError, ConfigLocations,
    DEFAULT_ADMIN_CONNECTIONS, DnsBackend, DnsConfig, FailoverConfig, HashOn, HealthConfig,
    LETSENCRYPT, LETSENCRYPT_STAGING, Limits, ListenerConfig, ListenerTlsConfig, MAX_WEIGHT,
    MIN_TOKEN_BYTES, OnError, PluginConfig, PoolConfig, ProbeKind, RetryConfig, RetryOn,
    RouteConfig, TlsVersion, UpstreamTlsConfig,
};
use super::{PluginKind, PluginSettings};

const BALANCE_CHOICES: &str = "round-robin, weighted, least-request, hash";
const RETRY_ON_CHOICES: &str = "connect-failure, reset, timeout, 502, 503, 504";
const ALPN_CHOICES: [&str; 2] = ["h2", "http/1.1"];

pub(super) fn validate(path: &Path, text: &str, file: FileConfig) -> Result<Config, ConfigError> {
    let mut r = Reporter::new(path, text);
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

    let limits = limits(&file.limits, &mut r);
    let mut listeners = listeners(&file.listeners, &base_dir, &mut r);
    let acme = file
        .acme
        .as_ref()
        .map(|a| acme(a, &mut listeners, &base_dir, &mut r));
    require_certificates(&file.listeners, &listeners, &mut r);
    let dns = dns(&file.dns, &mut r);
    let plugins = plugins(&file.plugins, &base_dir, &mut r);
    let pools = pools(&file.pools, &plugins, &base_dir, &mut r);
    let routes = routes(&file.routes, &listeners, &pools, &mut r);

    let admin_listen = *file.admin.listen.get_ref();
    if admin_listen.port() != 0 && listeners.iter().any(|l| l.listen == admin_listen) {
        r.at(
            file.admin.listen.span(),
            "admin.listen",
            "the admin listener must not share an address with a traffic listener",
        );
    }

    let admin = admin(&file.admin, &base_dir, &mut r);
    let cluster = file
        .cluster
        .as_ref()
        .map(|c| super::cluster::cluster(c, &base_dir, &mut r));
    let alerts = alerts(&file.alerts, &mut r);
    let locations = locations(&file, &r);
    let config = Config {
        source: path.to_path_buf(),
        admin,
        limits,
        listeners,
        routes,
        pools,
        plugins,
        cluster,
        digest: String::new(),
        alerts,
        acme,
        dns,
        locations,
    };
    r.finish(config)
}

/// The `[[alert]]` webhooks: an http URL each, known topics, sane timings.
fn alerts(sections: &[Spanned<file::AlertSection>], r: &mut Reporter<'_>) -> Vec<AlertConfig> {
    use super::alert_defaults as d;
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, spanned) in sections.iter().enumerate() {
        let s = spanned.get_ref();
        let field = format!("alert[{i}]");
        let url = match s.url.get_ref().parse::<http::Uri>() {
            Ok(url) if url.scheme_str() == Some("http") && url.authority().is_some() => url,
            Ok(url) if url.scheme_str() == Some("https") => {
                r.at(
                    s.url.span(),
                    format!("{field}.url"),
                    "https receivers are not supported yet: point url at a relay over http on a trusted network (such as one on loopback)",
                );
                url
            }
            _ => {
                r.at(
                    s.url.span(),
                    format!("{field}.url"),
                    format!(
                        "`{}` is not an http URL such as \"http://127.0.0.1:9093/hook\"",
                        s.url.get_ref()
                    ),
                );
                http::Uri::from_static("http://invalid/")
            }
        };
        let name = match &s.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                r.at(n.span(), format!("{field}.name"), "must not be empty");
                String::new()
            }
            Some(n) => n.get_ref().trim().to_string(),
            None => url
                .authority()
                .map_or_else(|| format!("alert{i}"), |a| a.to_string()),
        };
        if !names.insert(name.clone()) {
            let span = s.name.as_ref().map_or(s.url.span(), |n| n.span());
            r.at(
                span,
                format!("{field}.name"),
                format!("another [[alert]] is named `{name}`; give each a distinct name"),
            );
        }
        let topics = match &s.events {
            None => AlertTopic::ALL.to_vec(),
            Some(list) => list
                .get_ref()
                .iter()
                .filter_map(|e| {
                    let topic = AlertTopic::parse(e);
                    if topic.is_none() {
                        let known: Vec<&str> = AlertTopic::ALL.iter().map(|t| t.as_str()).collect();
                        r.at(
                            list.span(),
                            format!("{field}.events"),
                            format!("unknown event `{e}`; expected {}", known.join(", ")),
                        );
                    }
                    topic
                })
                .collect(),
        };
        let group_by = match &s.group_by {
            None => d::GROUP_BY.iter().map(|l| l.to_string()).collect(),
            Some(list) => {
                let labels: Vec<String> = list
                    .get_ref()
                    .iter()
                    .map(|l| l.trim().to_string())
                    .collect();
                if labels.iter().any(|l| {
                    l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                }) {
                    r.at(
                        list.span(),
                        format!("{field}.group_by"),
                        "expected label names such as [\"alertname\", \"pool\"]",
                    );
                }
                labels
            }
        };
        let duration = |value: &Option<Spanned<super::HumanDuration>>, default: Duration| {
            value.as_ref().map_or(default, |v| v.get_ref().0)
        };
        let group_wait = duration(&s.group_wait, d::GROUP_WAIT);
        let group_interval = duration(&s.group_interval, d::GROUP_INTERVAL);
        let repeat_interval = duration(&s.repeat_interval, d::REPEAT_INTERVAL);
        let timeout = duration(&s.timeout, d::TIMEOUT);
        for (key, value, spanned) in [
            ("group_interval", group_interval, &s.group_interval),
            ("timeout", timeout, &s.timeout),
        ] {
            if value.is_zero() {
                let span = spanned.as_ref().map_or(0..0, |v| v.span());
                r.at(span, format!("{field}.{key}"), "must be greater than zero");
            }
        }
        if repeat_interval < group_interval {
            let span = s.repeat_interval.as_ref().map_or(0..0, |v| v.span());
            r.at(
                span,
                format!("{field}.repeat_interval"),
                "must not be shorter than group_interval",
            );
        }
        let retries = s.retries.as_ref().map_or(d::RETRIES, |v| {
            if *v.get_ref() > 20 {
                r.at(v.span(), format!("{field}.retries"), "at most 20 retries");
            }
            *v.get_ref()
        });
        let queue = s.queue.as_ref().map_or(d::QUEUE, |v| {
            if !(1..=10_000).contains(v.get_ref()) {
                r.at(
                    v.span(),
                    format!("{field}.queue"),
                    "must be between 1 and 10000",
                );
            }
            (*v.get_ref()).max(1)
        });
        let mut headers = Vec::new();
        if let Some(map) = &s.headers {
            for (name, value) in map.get_ref() {
                let parsed = (
                    http::HeaderName::from_bytes(name.as_bytes()),
                    http::HeaderValue::from_str(value),
                );
                match parsed {
                    (Ok(n), Ok(v))
                        if n != http::header::HOST
                            && n != http::header::CONTENT_TYPE
                            && n != http::header::CONTENT_LENGTH =>
                    {
                        headers.push((n, v));
                    }
                    _ => r.at(
                        map.span(),
                        format!("{field}.headers"),
                        format!("header `{name}` is not valid here (Host, Content-Type and Content-Length are set by the proxy)"),
                    ),
                }
            }
        }
        out.push(AlertConfig {
            name,
            url,
            topics,
            group_by,
            group_wait,
            group_interval,
            repeat_interval,
            timeout,
            retries,
            queue,
            headers,
        });
    }
    out
}

/// The `[admin]` table: the token rules (mandatory off loopback, long enough), the
/// host names it answers to, the networks runtime backends may come from.
fn admin(section: &file::AdminSection, base_dir: &Path, r: &mut Reporter<'_>) -> AdminConfig {
    let listen = *section.listen.get_ref();
    let from_env = std::env::var("SWITCHYARD_ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    let token = match &section.token {
        Some(t) if !t.get_ref().is_empty() => Some((t.get_ref().clone(), t.span(), "admin.token")),
        _ => from_env.map(|t| (t, 0..0, "SWITCHYARD_ADMIN_TOKEN")),
    };
    if let Some((value, span, field)) = &token
        && value.len() < MIN_TOKEN_BYTES
    {
        r.at(
            span.clone(),
            *field,
            format!(
                "the bearer token is {} bytes; use at least {MIN_TOKEN_BYTES} (e.g. `openssl rand -hex 24`)",
                value.len()
            ),
        );
    }
    if !listen.ip().is_loopback() && token.is_none() {
        r.at(
            section.listen.span(),
            "admin.listen",
            format!(
                "the admin API on non-loopback address {listen} needs a bearer token: set admin.token or SWITCHYARD_ADMIN_TOKEN"
            ),
        );
    }
    let allowed_hosts = section
        .allowed_hosts
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, h)| {
            let host = h.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !valid {
                r.at(
                    h.span(),
                    format!("admin.allowed_hosts[{i}]"),
                    format!(
                        "`{}` is not a host name (no port, scheme or wildcard: e.g. \"admin.example.com\")",
                        h.get_ref()
                    ),
                );
            }
            host
        })
        .collect();
    let backend_networks = section
        .backend_networks
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, n)| match n.get_ref().trim().parse::<ipnet::IpNet>() {
            Ok(net) => Some(net.trunc()),
            Err(_) => {
                r.at(
                    n.span(),
                    format!("admin.backend_networks[{i}]"),
                    format!(
                        "`{}` is not a network in CIDR form such as \"10.0.0.0/8\" or \"fd00::/8\"",
                        n.get_ref()
                    ),
                );
                None
            }
        })
        .collect();
    let max_connections = section
        .max_connections
        .as_ref()
        .map_or(DEFAULT_ADMIN_CONNECTIONS, |m| {
            if *m.get_ref() == 0 {
                r.at(m.span(), "admin.max_connections", "must be at least 1");
            }
            (*m.get_ref()).max(1)
        });
    AdminConfig {
        listen,
        token: token.map(|(value, _, _)| value),
        state_file: section.state_file.as_ref().map(|f| base_dir.join(f)),
        allowed_hosts,
        backend_networks,
        max_connections,
    }
}

/// Where the settings that can only fail when applied are written (see
/// [`Config::locate`]).
fn locations(file: &FileConfig, r: &Reporter<'_>) -> BTreeMap<String, (usize, usize)> {
    let mut out = BTreeMap::new();
    out.insert(
        "admin.listen".to_string(),
        r.position(file.admin.listen.span()),
    );
    for (i, l) in file.listeners.iter().enumerate() {
        out.insert(format!("listener[{i}].listen"), r.position(l.listen.span()));
        if let Some(tls) = &l.tls {
            let field = format!("listener[{i}].tls");
            out.insert(field.clone(), r.position(tls.span()));
            let tls = tls.get_ref();
            for (key, value) in [
                ("cert", &tls.cert),
                ("key", &tls.key),
                ("directory", &tls.directory),
            ] {
                if let Some(value) = value {
                    out.insert(format!("{field}.{key}"), r.position(value.span()));
                }
            }
            for (j, pair) in tls.certificates.iter().enumerate() {
                let pair_field = format!("{field}.certificates[{j}]");
                out.insert(pair_field.clone(), r.position(pair.cert.span()));
                out.insert(format!("{pair_field}.cert"), r.position(pair.cert.span()));
                out.insert(format!("{pair_field}.key"), r.position(pair.key.span()));
            }
        }
    }
    if let Some(cluster) = &file.cluster {
        out.insert("cluster.etcd".to_string(), r.position(cluster.etcd.span()));
    }
    if let Some(servers) = &file.dns.servers {
        out.insert("dns.servers".to_string(), r.position(servers.span()));
    }
    for (name, p) in &file.plugins {
        out.insert(
            format!("plugin.{name}.path"),
            r.position(p.get_ref().path.span()),
        );
    }
    out
}

fn limits(section: &file::LimitsSection, r: &mut Reporter<'_>) -> Limits {
    let d = Limits::default();
    let limits = Limits {
        header_read_timeout: section
            .header_read_timeout
            .map_or(d.header_read_timeout, |v| v.0),
        idle_timeout: section.idle_timeout.map_or(d.idle_timeout, |v| v.0),
        max_header_bytes: section
            .max_header_bytes
            .map_or(d.max_header_bytes, |v| v.0 as usize),
        max_headers: section.max_headers.unwrap_or(d.max_headers),
        max_connections: section.max_connections.unwrap_or(d.max_connections),
        drain_timeout: section.drain_timeout.map_or(d.drain_timeout, |v| v.0),
        connect_timeout: section.connect_timeout.map_or(d.connect_timeout, |v| v.0),
        upstream_idle_per_backend: section
            .upstream_idle_per_backend
            .unwrap_or(d.upstream_idle_per_backend),
        upstream_idle_timeout: section
            .upstream_idle_timeout
            .map_or(d.upstream_idle_timeout, |v| v.0),
        body_idle_timeout: section
            .body_idle_timeout
            .map_or(d.body_idle_timeout, |v| v.0),
        body_timeout: section.body_timeout.map_or(d.body_timeout, |v| v.0),
        max_body_bytes: section.max_body_bytes.map(|v| v.0),
        max_uri_bytes: section
            .max_uri_bytes
            .map_or(d.max_uri_bytes, |v| v.0 as usize),
        tunnel_idle_timeout: section
            .tunnel_idle_timeout
            .map_or(d.tunnel_idle_timeout, |v| v.0),
        max_connections_per_ip: section.max_connections_per_ip,
    };
    if limits.max_header_bytes < 8 * 1024 {
        r.at(
            0..0,
            "limits.max_header_bytes",
            "must be at least 8KiB (the smallest buffer the HTTP parser accepts)",
        );
    }
    if limits.max_connections == 0 {
        r.at(0..0, "limits.max_connections", "must be at least 1");
    }
    if limits.max_connections_per_ip == Some(0) {
        r.at(
            0..0,
            "limits.max_connections_per_ip",
            "must be at least 1 (leave it out for no per-client cap)",
        );
    }
    if limits.max_body_bytes == Some(0) {
        r.at(
            0..0,
            "limits.max_body_bytes",
            "must be above 0 (leave it out for no limit)",
        );
    }
    if !(256..=64 * 1024).contains(&limits.max_uri_bytes) {
        r.at(
            0..0,
            "limits.max_uri_bytes",
            "must be between 256B and 64KiB",
        );
    }
    if limits.body_timeout < limits.body_idle_timeout {
        r.at(
            0..0,
            "limits.body_timeout",
            "must not be shorter than limits.body_idle_timeout",
        );
    }
    for (name, value) in [
        ("limits.header_read_timeout", limits.header_read_timeout),
        ("limits.idle_timeout", limits.idle_timeout),
        ("limits.connect_timeout", limits.connect_timeout),
        ("limits.body_idle_timeout", limits.body_idle_timeout),
        ("limits.body_timeout", limits.body_timeout),
        ("limits.tunnel_idle_timeout", limits.tunnel_idle_timeout),
    ] {
        if value.is_zero() {
            r.at(0..0, name, "must be greater than zero");
        }
    }
    limits
}

fn listeners(
    sections: &[file::ListenerSection],
    base_dir: &Path,
    r: &mut Reporter<'_>,
) -> Vec<ListenerConfig> {
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    let mut out = Vec::new();
    if sections.is_empty() {
        r.at(
            0..0,
            "listener",
            "no [[listener]] is defined: add one with a name and a listen address",
        );
    }
    for (i, l) in sections.iter().enumerate() {
        let field = format!("listener[{i}]");
        if !names.insert(l.name.get_ref().clone()) {
            r.at(
                l.name.span(),
                format!("{field}.name"),
                format!("duplicate listener name `{}`", l.name.get_ref()),
            );
        }
        // Port 0 asks for any free port: two such listeners never collide.
        if l.listen.get_ref().port() != 0 && !addrs.insert(*l.listen.get_ref()) {
            r.at(
                l.listen.span(),
                format!("{field}.listen"),
                format!("address {} is used by another listener", l.listen.get_ref()),
            );
        }
        let tls = l
            .tls
            .as_ref()
            .map(|t| listener_tls(&field, t.get_ref(), base_dir, r));
        let upgrades = match &l.upgrades {
            None => super::DEFAULT_UPGRADES.map(str::to_string).to_vec(),
            Some(list) => {
                let mut out = Vec::new();
                for token in list.get_ref() {
                    let token = token.trim().to_ascii_lowercase();
                    if token.eq_ignore_ascii_case("h2c") {
                        r.at(
                            list.span(),
                            format!("{field}.upgrades"),
                            "`h2c` cannot be allowed: an h2c upgrade would let a client talk HTTP/2 to the backend past the proxy",
                        );
                    } else if token.is_empty()
                        || !token.bytes().all(|b| b.is_ascii_graphic() && b != b',')
                    {
                        r.at(
                            list.span(),
                            format!("{field}.upgrades"),
                            format!("`{token}` is not a protocol name such as \"websocket\""),
                        );
                    } else if !out.contains(&token) {
                        out.push(token);
                    }
                }
                out
            }
        };
        out.push(ListenerConfig {
            name: l.name.get_ref().clone(),
            listen: *l.listen.get_ref(),
            tls,
            upgrades,
        });
    }
    out
}

/// A listener's `tls` table: certificate sources and handshake settings.
fn listener_tls(
    field: &str,
    t: &file::TlsSection,
    base_dir: &Path,
    r: &mut Reporter<'_>,
) -> ListenerTlsConfig {
    let field = format!("{field}.tls");
    let mut certificates = Vec::new();
    match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => certificates.push(CertificatePair {
            cert: existing_file(cert, base_dir, &format!("{field}.cert"), r),
            key: existing_file(key, base_dir, &format!("{field}.key"), r),
            field: field.clone(),
        }),
        (Some(cert), None) => r.at(
            cert.span(),
            format!("{field}.key"),
            "`cert` needs its private key in `key`",
        ),
        (None, Some(key)) => r.at(
            key.span(),
            format!("{field}.cert"),
            "`key` needs its certificate chain in `cert`",
        ),
        (None, None) => {}
    }
    for (i, pair) in t.certificates.iter().enumerate() {
        let pair_field = format!("{field}.certificates[{i}]");
        certificates.push(CertificatePair {
            field: pair_field,
            cert: existing_file(
                &pair.cert,
                base_dir,
                &format!("{field}.certificates[{i}].cert"),
                r,
            ),
            key: existing_file(
                &pair.key,
                base_dir,
                &format!("{field}.certificates[{i}].key"),
                r,
            ),
        });
    }
    let directory = t.directory.as_ref().map(|d| {
        let path = base_dir.join(d.get_ref());
        if !path.is_dir() {
            r.at(
                d.span(),
                format!("{field}.directory"),
                format!("directory {} does not exist", path.display()),
            );
        }
        path
    });
    let default = t.default.as_ref().map(|d| {
        let name = d.get_ref().trim().to_ascii_lowercase();
        if !is_host_name(name.strip_prefix("*.").unwrap_or(&name), false) {
            r.at(
                d.span(),
                format!("{field}.default"),
                "expected a host name such as www.example.com",
            );
        }
        name
    });
    let min_version = match t.min_version.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "1.2")) => TlsVersion::Tls12,
        Some((_, "1.3")) => TlsVersion::Tls13,
        Some((v, other)) => {
            r.at(
                v.span(),
                format!("{field}.min_version"),
                format!("unknown TLS version `{other}`; expected \"1.2\" or \"1.3\""),
            );
            TlsVersion::Tls12
        }
    };
    ListenerTlsConfig {
        certificates,
        directory,
        default,
        min_version,
        alpn: alpn(t.alpn.as_ref(), &format!("{field}.alpn"), r),
        acme: false,
        field,
    }
}

/// An `alpn` list: known protocols, at least one; `["h2", "http/1.1"]` by default.
fn alpn(value: Option<&Spanned<Vec<String>>>, field: &str, r: &mut Reporter<'_>) -> Vec<String> {
    let Some(list) = value else {
        return ALPN_CHOICES.iter().map(|p| p.to_string()).collect();
    };
    if list.get_ref().is_empty() {
        r.at(
            list.span(),
            field,
            "list at least one protocol: \"h2\" or \"http/1.1\"",
        );
    }
    for protocol in list.get_ref() {
        if !ALPN_CHOICES.contains(&protocol.as_str()) {
            r.at(
                list.span(),
                field,
                format!("unknown protocol `{protocol}`; expected \"h2\" or \"http/1.1\""),
            );
        }
    }
    list.get_ref().clone()
}

/// Every TLS listener must have a certificate source (files, a directory, or ACME).
fn require_certificates(
    sections: &[file::ListenerSection],
    listeners: &[ListenerConfig],
    r: &mut Reporter<'_>,
) {
    for (i, (section, listener)) in sections.iter().zip(listeners).enumerate() {
        let (Some(span), Some(tls)) = (section.tls.as_ref().map(Spanned::span), &listener.tls)
        else {
            continue;
        };
        if tls.certificates.is_empty() && tls.directory.is_none() && !tls.acme {
            r.at(
                span,
                format!("listener[{i}].tls"),
                "no certificate: set cert and key, certificates = [...], directory, or an [acme] section for this listener",
            );
        }
    }
}

/// `[acme]`: marks its listener as ACME-managed.
fn acme(
    spanned: &Spanned<file::AcmeSection>,
    listeners: &mut [ListenerConfig],
    base_dir: &Path,
    r: &mut Reporter<'_>,
) -> AcmeConfig {
    let a = spanned.get_ref();
    let directory = match a.directory.get_ref().trim() {
        "letsencrypt" => LETSENCRYPT.to_string(),
        "letsencrypt-staging" => LETSENCRYPT_STAGING.to_string(),
        url => {
            if !url.starts_with("https://") || url.parse::<http::Uri>().is_err() {
                r.at(
                    a.directory.span(),
                    "acme.directory",
                    "expected an https:// directory URL, \"letsencrypt\" or \"letsencrypt-staging\"",
                );
            }
            url.to_string()
        }
    };
    let contact = a
        .contact
        .iter()
        .map(|c| {
            if !c.get_ref().contains(':') {
                r.at(
                    c.span(),
                    "acme.contact",
                    format!(
                        "`{}` is not a URI: write mailto:{}",
                        c.get_ref(),
                        c.get_ref()
                    ),
                );
            }
            c.get_ref().clone()
        })
        .collect();
    let challenge = match a.challenge.as_ref().map(|c| (c, c.get_ref().as_str())) {
        None | Some((_, "http-01")) => AcmeChallenge::Http01,
        Some((_, "tls-alpn-01")) => AcmeChallenge::TlsAlpn01,
        Some((c, other)) => {
            r.at(
                c.span(),
                "acme.challenge",
                format!("unknown challenge `{other}`; expected \"http-01\" or \"tls-alpn-01\""),
            );
            AcmeChallenge::Http01
        }
    };
    let listener = a.listener.get_ref().clone();
    match listeners.iter_mut().find(|l| l.name == listener) {
        Some(l) => match &mut l.tls {
            Some(tls) => tls.acme = true,
            None => r.at(
                a.listener.span(),
                "acme.listener",
                format!("listener `{listener}` has no tls table: add `tls = {{}}` to it"),
            ),
        },
        None => r.at(
            a.listener.span(),
            "acme.listener",
            format!("no listener named `{listener}`"),
        ),
    }
    if challenge == AcmeChallenge::Http01 && listeners.iter().all(|l| l.tls.is_some()) {
        r.at(
            spanned.span(),
            "acme.challenge",
            "http-01 is answered on a plain listener (port 80): add one, or use challenge = \"tls-alpn-01\"",
        );
    }
    let mut names: Vec<String> = Vec::new();
    if a.names.get_ref().is_empty() {
        r.at(a.names.span(), "acme.names", "list at least one host name");
    }
    for name in a.names.get_ref() {
        let name = name.trim().to_ascii_lowercase();
        if name.starts_with("*.") {
            r.at(
                a.names.span(),
                "acme.names",
                format!("`{name}`: wildcard certificates need the DNS-01 challenge, which is not supported"),
            );
        } else if !is_host_name(&name, false) {
            r.at(
                a.names.span(),
                "acme.names",
                format!("`{name}` is not a host name"),
            );
        } else if !names.contains(&name) {
            names.push(name);
        }
    }
    let retry_min = a.retry_min.map_or(Duration::from_secs(60), |d| d.0);
    let retry_max = a.retry_max.map_or(Duration::from_secs(6 * 3600), |d| d.0);
    if retry_min.is_zero() || retry_max < retry_min {
        r.at(
            spanned.span(),
            "acme.retry_min",
            "retry_min must be above zero and at most retry_max",
        );
    }
    AcmeConfig {
        directory,
        contact,
        storage: base_dir.join(a.storage.get_ref()),
        listener,
        names,
        challenge,
        ca: a
            .ca
            .as_ref()
            .map(|c| existing_file(c, base_dir, "acme.ca", r)),
        renew_before: a
            .renew_before
            .map_or(Duration::from_secs(30 * 86400), |d| d.0),
        retry_min,
        retry_max,
    }
}

/// `[dns]`: name servers and the re-resolution bounds.
fn dns(s: &file::DnsSection, r: &mut Reporter<'_>) -> DnsConfig {
    let d = DnsConfig::default();
    let servers = s.servers.as_ref().map_or_else(Vec::new, |list| {
        list.get_ref()
            .iter()
            .filter_map(|text| {
                let parsed = text.parse::<std::net::SocketAddr>().ok().or_else(|| {
                    text.parse::<std::net::IpAddr>()
                        .ok()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                });
                if parsed.is_none() {
                    r.at(
                        list.span(),
                        "dns.servers",
                        format!("`{text}` is not an IP address or ip:port"),
                    );
                }
                parsed
            })
            .collect()
    });
    let config = DnsConfig {
        servers,
        min_ttl: s.min_ttl.map_or(d.min_ttl, |v| v.0),
        max_ttl: s.max_ttl.map_or(d.max_ttl, |v| v.0),
        timeout: s.timeout.map_or(d.timeout, |v| v.0),
    };
    if config.min_ttl.is_zero() || config.max_ttl < config.min_ttl {
        r.at(
            0..0,
            "dns.min_ttl",
            "min_ttl must be above zero and at most max_ttl",
        );
    }
    if config.timeout.is_zero() {
        r.at(0..0, "dns.timeout", "must be greater than zero");
    }
    config
}

/// A DNS host name: dot-separated labels of letters, digits and `-` (and `_` where
/// `underscore`, for SRV names), 1 to 63 bytes each, 253 in all.
fn is_host_name(name: &str, underscore: bool) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || (underscore && b == b'_'))
        })
        && name.parse::<std::net::IpAddr>().is_err()
}

/// A pool's `tls` table: the rustls client config is built here, so a missing or
/// broken CA or client certificate is reported at its line.
fn upstream_tls(
    field: &str,
    spanned: &Spanned<file::UpstreamTlsSection>,
    base_dir: &Path,
    r: &mut Reporter<'_>,
) -> Option<UpstreamTlsConfig> {
    let t = spanned.get_ref();
    let field = format!("{field}.tls");
    let before = r.problem_count();
    let sni = t.sni.as_ref().map(|s| {
        let name = s.get_ref().trim().to_ascii_lowercase();
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            r.at(
                s.span(),
                format!("{field}.sni"),
                format!("`{name}` is not a host name or IP address"),
            );
        }
        name
    });
    let ca =
        t.ca.as_ref()
            .map(|c| existing_file(c, base_dir, &format!("{field}.ca"), r));
    let (client_cert, client_key) = match (&t.client_cert, &t.client_key) {
        (Some(c), Some(k)) => (
            Some(existing_file(
                c,
                base_dir,
                &format!("{field}.client_cert"),
                r,
            )),
            Some(existing_file(
                k,
                base_dir,
                &format!("{field}.client_key"),
                r,
            )),
        ),
        (Some(c), None) => {
            r.at(
                c.span(),
                format!("{field}.client_key"),
                "`client_cert` needs `client_key`",
            );
            (None, None)
        }
        (None, Some(k)) => {
            r.at(
                k.span(),
                format!("{field}.client_cert"),
                "`client_key` needs `client_cert`",
            );
            (None, None)
        }
        (None, None) => (None, None),
    };
    let alpn = alpn(t.alpn.as_ref(), &format!("{field}.alpn"), r);
    let verify = t.verify.unwrap_or(true);
    if r.problem_count() > before {
        return None;
    }
    let params = crate::tls::ClientTlsParams {
        ca: ca.as_deref(),
        verify,
        client_auth: client_cert.as_deref().zip(client_key.as_deref()),
        alpn: alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
    };
    match crate::tls::client::build(&params) {
        Ok(built) => Some(UpstreamTlsConfig {
            sni,
            verify,
            ca,
            client_cert,
            client_key,
            alpn,
            client: built.config,
            fingerprint: built.fingerprint,
        }),
        Err(e) => {
            r.at(spanned.span(), field, e.to_string());
            None
        }
    }
}

fn existing_file(
    value: &Spanned<String>,
    base_dir: &Path,
    field: &str,
    r: &mut Reporter<'_>,
) -> PathBuf {
    let path = base_dir.join(value.get_ref());
    if !path.is_file() {
        r.at(
            value.span(),
            field,
            format!("file {} does not exist", path.display()),
        );
    }
    path
}

fn routes(
    sections: &[file::RouteSection],
    listeners: &[ListenerConfig],
    pools: &BTreeMap<String, PoolConfig>,
    r: &mut Reporter<'_>,
) -> Vec<RouteConfig> {
    let mut names = HashSet::new();
    let mut matches = HashSet::new();
    let mut out = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        let field = format!("route[{i}]");
        let name = s.name.get_ref().clone();
        if !names.insert(name.clone()) {
            r.at(
                s.name.span(),
                format!("{field}.name"),
                format!("duplicate route name `{name}`"),
            );
        }
        if !listeners.iter().any(|l| &l.name == s.listener.get_ref()) {
            let known: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            r.at(
                s.listener.span(),
                format!("{field}.listener"),
                format!(
                    "no listener named `{}`; defined: {}",
                    s.listener.get_ref(),
                    known.join(", ")
                ),
            );
        }
        if !pools.contains_key(s.pool.get_ref()) {
            let known: Vec<&str> = pools.keys().map(String::as_str).collect();
            r.at(
                s.pool.span(),
                format!("{field}.pool"),
                format!(
                    "no pool named `{}`; defined: {}",
                    s.pool.get_ref(),
                    known.join(", ")
                ),
            );
        }
        let host = s.host.as_ref().map(|h| {
            let host = h.get_ref().trim().to_ascii_lowercase();
            if host.is_empty() || host.contains('/') || host.contains(' ') {
                r.at(
                    h.span(),
                    format!("{field}.host"),
                    "expected a host name such as app.example.com",
                );
            }
            host
        });
        let path_prefix = match &s.path_prefix {
            Some(p) if !p.get_ref().starts_with('/') => {
                r.at(
                    p.span(),
                    format!("{field}.path_prefix"),
                    "must start with `/`",
                );
                p.get_ref().clone()
            }
            Some(p) => {
                match crate::path::normalize(p.get_ref()) {
                    Ok(normal) if normal != p.get_ref().as_str() => r.at(
                        p.span(),
                        format!("{field}.path_prefix"),
                        format!(
                            "request paths are matched after normalisation, so `{}` would never match; write `{normal}`",
                            p.get_ref()
                        ),
                    ),
                    Ok(_) => {}
                    Err(e) => r.at(p.span(), format!("{field}.path_prefix"), e.to_string()),
                }
                p.get_ref().clone()
            }
            None => "/".to_string(),
        };
        if !matches.insert((
            s.listener.get_ref().clone(),
            host.clone(),
            path_prefix.clone(),
        )) {
            r.at(
                s.name.span(),
                field.to_string(),
                "another route already matches the same listener, host and path_prefix",
            );
        }
        let forward_original_path = match s.forward_path.as_ref().map(|f| (f, f.get_ref().as_str()))
        {
            None | Some((_, "normalized" | "normalised")) => false,
            Some((_, "original")) => true,
            Some((f, other)) => {
                r.at(
                    f.span(),
                    format!("{field}.forward_path"),
                    format!("unknown forward_path `{other}`; expected normalized or original"),
                );
                false
            }
        };
        out.push(RouteConfig {
            name,
            listener: s.listener.get_ref().clone(),
            host,
            path_prefix,
            pool: s.pool.get_ref().clone(),
            forward_original_path,
        });
    }
    out
}

fn plugins(
    sections: &BTreeMap<String, Spanned<file::PluginSection>>,
    base_dir: &Path,
    r: &mut Reporter<'_>,
) -> BTreeMap<String, PluginConfig> {
    let mut out = BTreeMap::new();
    // The same text again, with a span on every key: where each `config` key is.
    let document = (!sections.is_empty())
        .then(|| toml::de::DeTable::parse(r.source()).ok())
        .flatten();
    for (name, spanned) in sections {
        let s = spanned.get_ref();
        let field = format!("plugin.{name}");
        let kind = match PluginKind::parse(s.kind.get_ref()) {
            Some(kind) => kind,
            None => {
                r.at(
                    s.kind.span(),
                    format!("{field}.kind"),
                    format!(
                        "unknown kind `{}`; expected routing, health-check or recovery",
                        s.kind.get_ref()
                    ),
                );
                PluginKind::Routing
            }
        };
        let path = existing_file(&s.path, base_dir, &format!("{field}.path"), r);
        let config_json = match &s.config {
            None => "{}".to_string(),
            Some(table) => serde_json::to_string(table).unwrap_or_else(|e| {
                r.at(spanned.span(), format!("{field}.config"), e.to_string());
                "{}".to_string()
            }),
        };
        let timeout = s.timeout.as_ref().map_or(DEFAULT_TIMEOUT, |t| {
            let (min, max) = super::plugin_limits::TIMEOUT_RANGE;
            let value = t.get_ref().0;
            if kind.on_request_path() && !(min..=MAX_REQUEST_PATH_TIMEOUT).contains(&value) {
                r.at(
                    t.span(),
                    format!("{field}.timeout"),
                    format!(
                        "must be between {min:?} and {MAX_REQUEST_PATH_TIMEOUT:?}: a {} plugin runs inline on the request path, where a call holds a worker thread",
                        kind.world()
                    ),
                );
            } else if !(min..=max).contains(&value) {
                r.at(
                    t.span(),
                    format!("{field}.timeout"),
                    format!("must be between {min:?} and {max:?}"),
                );
            }
            value
        });
        let memory_bytes = s.memory.as_ref().map_or(DEFAULT_MEMORY_BYTES, |m| {
            let value = m.get_ref().0;
            let (min, max) = (
                super::plugin_limits::MIN_MEMORY_BYTES,
                super::plugin_limits::MAX_MEMORY_BYTES,
            );
            if !(min..=max).contains(&value) {
                r.at(
                    m.span(),
                    format!("{field}.memory"),
                    format!("must be between {}MiB and {}MiB", min >> 20, max >> 20),
                );
            }
            value
        });
        let on_error = match s.on_error.as_ref().map(|o| (o, o.get_ref().as_str())) {
            None | Some((_, "fallback")) => OnError::Fallback,
            Some((_, "fail-closed")) => OnError::FailClosed,
            Some((o, other)) => {
                r.at(
                    o.span(),
                    format!("{field}.on_error"),
                    format!("unknown on_error `{other}`; expected fallback or fail-closed"),
                );
                OnError::Fallback
            }
        };
        let spec = PluginSettings {
            name: name.clone(),
            kind,
            path,
            config_json,
            timeout,
            memory_bytes,
        };
        let locations = config_locations(document.as_ref(), name, r);
        out.insert(
            name.clone(),
            PluginConfig {
                spec,
                on_error,
                locations,
            },
        );
    }
    out
}

/// Where the keys of `[plugin.NAME] config` are written (see [`ConfigLocations`]).
fn config_locations(
    document: Option<&Spanned<toml::de::DeTable<'_>>>,
    name: &str,
    r: &Reporter<'_>,
) -> ConfigLocations {
    let mut keys = BTreeMap::new();
    let table = document
        .and_then(|doc| doc.get_ref().get("plugin"))
        .and_then(|plugins| plugins.get_ref().get(name))
        .and_then(|plugin| match plugin.get_ref() {
            toml::de::DeValue::Table(t) => t.get_key_value("config"),
            _ => None,
        });
    let table_at = table.map(|(key, value)| {
        walk_locations(value, String::new(), r, &mut keys);
        r.position(key.span())
    });
    ConfigLocations::new(r.file().to_string(), table_at, keys)
}

/// Records the position of every key and element under `value`, by path.
fn walk_locations(
    value: &Spanned<toml::de::DeValue<'_>>,
    path: String,
    r: &Reporter<'_>,
    out: &mut BTreeMap<String, (usize, usize)>,
) {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => {
            for (key, child) in table.iter() {
                let name = key.get_ref().as_ref();
                let plain = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                let segment = if plain {
                    name.to_string()
                } else {
                    format!("{name:?}")
                };
                let child_path = if path.is_empty() {
                    segment
                } else {
                    format!("{path}.{segment}")
                };
                out.insert(child_path.clone(), r.position(key.span()));
                walk_locations(child, child_path, r, out);
            }
        }
        toml::de::DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let child_path = format!("{path}[{i}]");
                out.insert(child_path.clone(), r.position(item.span()));
                walk_locations(item, child_path, r, out);
            }
        }
        _ => {}
    }
}

/// Checks a `plugin:NAME` reference: the prefix, that the plugin exists, and that it
/// does the job the field needs.
fn plugin_ref(
    value: &Spanned<String>,
    field: &str,
    wanted: PluginKind,
    plugins: &BTreeMap<String, PluginConfig>,
    r: &mut Reporter<'_>,
) -> Option<String> {
    let Some(name) = value.get_ref().strip_prefix("plugin:") else {
        r.at(
            value.span(),
            field,
            format!("expected \"plugin:NAME\", found `{}`", value.get_ref()),
        );
        return None;
    };
    match plugins.get(name) {
        None => {
            let known: Vec<&str> = plugins.keys().map(String::as_str).collect();
            r.at(
                value.span(),
                field,
                if known.is_empty() {
                    format!("no plugin named `{name}`: declare it in a [plugin.{name}] table")
                } else {
                    format!("no plugin named `{name}` (declared: {})", known.join(", "))
                },
            );
            None
        }
        Some(p) if p.spec.kind != wanted => {
            r.at(
                value.span(),
                field,
                format!(
                    "plugin `{name}` is a {} plugin; this field needs a {} plugin",
                    p.spec.kind.world(),
                    wanted.world()
                ),
            );
            None
        }
        Some(_) => Some(name.to_string()),
    }
}

fn pools(
    sections: &BTreeMap<String, Spanned<file::PoolSection>>,
    plugins: &BTreeMap<String, PluginConfig>,
    base_dir: &Path,
    r: &mut Reporter<'_>,
) -> BTreeMap<String, PoolConfig> {
    let mut out = BTreeMap::new();
    for (name, spanned) in sections {
        let s = spanned.get_ref();
        let field = format!("pool.{name}");
        let (balance, routing_plugin) = if s.balance.get_ref().starts_with("plugin:") {
            let plugin = plugin_ref(
                &s.balance,
                &format!("{field}.balance"),
                PluginKind::Routing,
                plugins,
                r,
            );
            let fallback = s
                .fallback_balance
                .clone()
                .unwrap_or_else(super::file::default_balance);
            (balance(name, &fallback, s, r), plugin)
        } else {
            if let Some(f) = &s.fallback_balance {
                r.at(
                    f.span(),
                    format!("{field}.fallback_balance"),
                    "fallback_balance only applies with balance = \"plugin:NAME\"",
                );
            }
            (balance(name, &s.balance, s, r), None)
        };
        let shadow_plugin = s.shadow.as_ref().and_then(|v| {
            plugin_ref(
                v,
                &format!("{field}.shadow"),
                PluginKind::Routing,
                plugins,
                r,
            )
        });
        let (backends, dns) = backends(&field, &s.backends, r);
        let tls = s
            .tls
            .as_ref()
            .and_then(|t| upstream_tls(&field, t, base_dir, r));
        let mut health = s.health.as_ref().map(|h| health(&field, h, r));
        if let (Some(h), Some(cfg)) = (&s.health, health.as_mut()) {
            cfg.plugin = h.evaluate.as_ref().and_then(|v| {
                plugin_ref(
                    v,
                    &format!("{field}.health.evaluate"),
                    PluginKind::Health,
                    plugins,
                    r,
                )
            });
        }
        let mut breaker = breaker(&field, &s.breaker, r);
        breaker.plugin = s.breaker.policy.as_ref().and_then(|v| {
            plugin_ref(
                v,
                &format!("{field}.breaker.policy"),
                PluginKind::Recovery,
                plugins,
                r,
            )
        });
        let retry = retry(&field, &s.retry, r);
        breaker.trial_timeout = retry.per_try_timeout + super::TRIAL_GRACE;
        let failover = FailoverConfig {
            backup: s.failover.backup.as_ref().map(|b| b.get_ref().clone()),
            slow_start: s.failover.slow_start.map(|d| d.0),
            panic_threshold: s.failover.panic_threshold,
        };
        if let Some(backup) = &s.failover.backup {
            if backup.get_ref() == name {
                r.at(
                    backup.span(),
                    format!("{field}.failover.backup"),
                    "a pool cannot be its own backup",
                );
            } else if !sections.contains_key(backup.get_ref()) {
                r.at(
                    backup.span(),
                    format!("{field}.failover.backup"),
                    format!("no pool named `{}`", backup.get_ref()),
                );
            }
        }
        if failover.panic_threshold.is_some_and(|p| p > 100) {
            r.at(
                spanned.span(),
                format!("{field}.failover.panic_threshold"),
                "must be a percentage between 0 and 100",
            );
        }
        out.insert(
            name.clone(),
            PoolConfig {
                name: name.clone(),
                balance,
                routing_plugin,
                shadow_plugin,
                backends,
                dns,
                tls,
                drain_grace: s.drain_grace.map_or(super::DEFAULT_DRAIN_GRACE, |d| d.0),
                health,
                breaker,
                retry,
                failover,
            },
        );
    }
    out
}

/// The native algorithm named by `value` (`balance`, or `fallback_balance` when
/// `balance` names a plugin).
fn balance(
    name: &str,
    value: &Spanned<String>,
    s: &file::PoolSection,
    r: &mut Reporter<'_>,
) -> BalanceKind {
    let field = if std::ptr::eq(value, &s.balance) {
        format!("pool.{name}.balance")
    } else {
        format!("pool.{name}.fallback_balance")
    };
    let kind = match value.get_ref().as_str() {
        "" | "round-robin" => BalanceKind::RoundRobin,
        "weighted" => BalanceKind::Weighted,
        "least-request" => BalanceKind::LeastRequest,
        "hash" => match &s.hash_on {
            Some(on) => match parse_hash_on(on.get_ref()) {
                Ok(h) => BalanceKind::Hash(h),
                Err(msg) => {
                    r.at(on.span(), format!("pool.{name}.hash_on"), msg);
                    BalanceKind::RoundRobin
                }
            },
            None => {
                r.at(
                    value.span(),
                    field,
                    "balance = \"hash\" needs hash_on = \"header:NAME\", \"cookie:NAME\" or \"client-ip\"",
                );
                BalanceKind::RoundRobin
            }
        },
        other => {
            r.at(
                value.span(),
                field,
                format!("unknown balance `{other}`; expected one of {BALANCE_CHOICES}"),
            );
            BalanceKind::RoundRobin
        }
    };
    if let (Some(on), false) = (&s.hash_on, matches!(kind, BalanceKind::Hash(_)))
        && value.get_ref() != "hash"
    {
        r.at(
            on.span(),
            format!("pool.{name}.hash_on"),
            "hash_on only applies with balance = \"hash\"",
        );
    }
    kind
}

fn parse_hash_on(text: &str) -> Result<HashOn, String> {
    if text == "client-ip" {
        return Ok(HashOn::ClientIp);
    }
    if let Some(name) = text.strip_prefix("header:") {
        return HeaderName::from_bytes(name.trim().as_bytes())
            .map(HashOn::Header)
            .map_err(|_| format!("`{name}` is not a valid header name"));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        let name = name.trim();
        if name.is_empty() {
            return Err("cookie name is empty".into());
        }
        return Ok(HashOn::Cookie(name.to_string()));
    }
    Err(format!(
        "unknown hash_on `{text}`; expected \"header:NAME\", \"cookie:NAME\" or \"client-ip\""
    ))
}

/// A pool's `backends`: `ip:port` entries, and entries named by DNS (`host:port`
/// or `srv = "..."`) that are resolved at run time.
fn backends(
    field: &str,
    spanned: &Spanned<Vec<file::BackendSection>>,
    r: &mut Reporter<'_>,
) -> (Vec<BackendConfig>, Vec<DnsBackend>) {
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    if spanned.get_ref().is_empty() {
        r.at(
            spanned.span(),
            format!("{field}.backends"),
            "a pool needs at least one backend",
        );
    }
    let mut by_address = Vec::new();
    let mut by_name = Vec::new();
    for (i, b) in spanned.get_ref().iter().enumerate() {
        let entry = format!("{field}.backends[{i}]");
        let span = b
            .address
            .as_ref()
            .or(b.srv.as_ref())
            .map_or_else(|| spanned.span(), Spanned::span);
        if b.weight > MAX_WEIGHT {
            r.at(
                span.clone(),
                format!("{entry}.weight"),
                format!("weight {} is above the maximum {MAX_WEIGHT}", b.weight),
            );
        }
        match (&b.address, &b.srv) {
            (Some(address), None) => {
                let text = address.get_ref().trim();
                if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
                    if !seen.insert(socket) {
                        r.at(
                            span,
                            format!("{entry}.address"),
                            format!("backend {socket} is listed twice"),
                        );
                    }
                    by_address.push(BackendConfig {
                        address: socket,
                        weight: b.weight,
                        origin: None,
                    });
                    continue;
                }
                let parsed = text.rsplit_once(':').and_then(|(host, port)| {
                    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
                    let host = host.to_ascii_lowercase();
                    is_host_name(&host, false).then_some((host, port))
                });
                let Some((name, port)) = parsed else {
                    r.at(
                        span,
                        format!("{entry}.address"),
                        format!("`{text}` is neither ip:port nor host:port (e.g. 10.0.0.5:8080 or app.internal:8080)"),
                    );
                    continue;
                };
                if !names.insert((name.clone(), port)) {
                    r.at(
                        span,
                        format!("{entry}.address"),
                        format!("backend {name}:{port} is listed twice"),
                    );
                }
                by_name.push(DnsBackend {
                    name,
                    port,
                    srv: false,
                    weight: b.weight,
                });
            }
            (None, Some(srv)) => {
                let name = srv.get_ref().trim().to_ascii_lowercase();
                if !is_host_name(&name, true) {
                    r.at(
                        span,
                        format!("{entry}.srv"),
                        format!("`{name}` is not a DNS name such as _http._tcp.app.internal"),
                    );
                } else if !names.insert((name.clone(), 0)) {
                    r.at(
                        span,
                        format!("{entry}.srv"),
                        format!("SRV name {name} is listed twice"),
                    );
                }
                by_name.push(DnsBackend {
                    name,
                    port: 0,
                    srv: true,
                    weight: b.weight,
                });
            }
            (Some(_), Some(_)) => r.at(
                span,
                entry,
                "give either address or srv, not both",
            ),
            (None, None) => r.at(
                span,
                entry,
                "a backend needs address = \"ip:port\" (or \"host:port\") or srv = \"_service._tcp.name\"",
            ),
        }
    }
    (by_address, by_name)
}

fn health(field: &str, h: &file::HealthSection, r: &mut Reporter<'_>) -> HealthConfig {
    let field = format!("{field}.health");
    let interval = h.interval.map_or(Duration::from_secs(2), |d| d.0);
    let timeout = h
        .timeout
        .as_ref()
        .map_or(Duration::from_secs(1).min(interval), |d| d.get_ref().0);
    if let Some(t) = &h.timeout
        && t.get_ref().0 >= interval
    {
        r.at(
            t.span(),
            format!("{field}.timeout"),
            format!(
                "timeout ({}) must be shorter than interval ({})",
                t.get_ref(),
                super::HumanDuration(interval)
            ),
        );
    }
    if interval < Duration::from_millis(10) {
        r.at(0..0, format!("{field}.interval"), "must be at least 10ms");
    }
    let jitter = match &h.jitter {
        None => 0.1,
        Some(j) => match parse_percent(j.get_ref()) {
            Some(p) if (0.0..=50.0).contains(&p) => p / 100.0,
            _ => {
                r.at(
                    j.span(),
                    format!("{field}.jitter"),
                    "expected a percentage between \"0%\" and \"50%\"",
                );
                0.0
            }
        },
    };
    let probe = match h.kind.as_ref().map(|k| k.get_ref().as_str()) {
        None | Some("http") => {
            let method = h.method.as_deref().unwrap_or("GET");
            let method = http::Method::from_bytes(method.as_bytes()).unwrap_or_else(|_| {
                r.at(0..0, format!("{field}.method"), "not a valid HTTP method");
                http::Method::GET
            });
            let path = h.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                r.at(0..0, format!("{field}.path"), "must start with `/`");
            }
            let expect_status = match &h.expect_status {
                None => vec![200..=399],
                Some(list) => list
                    .iter()
                    .filter_map(|s| match parse_status(s) {
                        Ok(range) => Some(range),
                        Err(msg) => {
                            r.at(0..0, format!("{field}.expect_status"), msg);
                            None
                        }
                    })
                    .collect(),
            };
            ProbeKind::Http {
                method,
                path,
                host: h.host.clone(),
                expect_status,
                expect_body: h.expect_body.clone(),
            }
        }
        Some("tcp") => ProbeKind::Tcp,
        Some(other) => {
            let span = h.kind.as_ref().map(|k| k.span()).unwrap_or(0..0);
            r.at(
                span,
                format!("{field}.type"),
                format!("unknown check type `{other}`; expected http or tcp"),
            );
            ProbeKind::Tcp
        }
    };
    let rise = h.rise.unwrap_or(2);
    let fall = h.fall.unwrap_or(3);
    if rise == 0 || fall == 0 {
        r.at(
            0..0,
            format!("{field}.rise"),
            "rise and fall must be at least 1",
        );
    }
    HealthConfig {
        probe,
        interval,
        timeout,
        jitter,
        rise: rise.max(1),
        fall: fall.max(1),
        plugin: None,
    }
}

fn parse_percent(text: &str) -> Option<f64> {
    text.trim().strip_suffix('%')?.trim().parse().ok()
}

fn parse_status(spec: &StatusSpec) -> Result<RangeInclusive<u16>, String> {
    let valid = |c: u16| (100..=599).contains(&c);
    match spec {
        StatusSpec::Code(c) if valid(*c) => Ok(*c..=*c),
        StatusSpec::Code(c) => Err(format!("{c} is not an HTTP status (100-599)")),
        StatusSpec::Range(text) => {
            let parsed = match text.split_once('-') {
                Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
                None => text.trim().parse().ok().map(|c| (c, c)),
            };
            match parsed {
                Some((a, b)) if valid(a) && valid(b) && a <= b => Ok(a..=b),
                _ => Err(format!(
                    "`{text}` is not a status or range like \"200-399\""
                )),
            }
        }
    }
}

fn breaker(field: &str, b: &file::BreakerSection, r: &mut Reporter<'_>) -> BreakerConfig {
    let d = BreakerConfig::default();
    let field = format!("{field}.breaker");
    let config = BreakerConfig {
        consecutive_failures: b.consecutive_failures.unwrap_or(d.consecutive_failures),
        error_rate: b.error_rate,
        min_requests: b.min_requests.unwrap_or(d.min_requests),
        window: b.window.map_or(d.window, |v| v.0),
        open_for: b.open_for.map_or(d.open_for, |v| v.0),
        max_open_for: b.max_open_for.map_or(d.max_open_for, |v| v.0),
        half_open_requests: b.half_open_requests.unwrap_or(d.half_open_requests),
        max_ejected_percent: b.max_ejected_percent.unwrap_or(d.max_ejected_percent),
        trial_timeout: d.trial_timeout,
        plugin: None,
    };
    if let Some(rate) = config.error_rate
        && !(rate > 0.0 && rate <= 1.0)
    {
        r.at(
            0..0,
            format!("{field}.error_rate"),
            "must be a ratio above 0 and at most 1 (e.g. 0.5)",
        );
    }
    if config.max_ejected_percent > 100 {
        r.at(
            0..0,
            format!("{field}.max_ejected_percent"),
            "must be a percentage between 0 and 100",
        );
    }
    if config.half_open_requests == 0 {
        r.at(
            0..0,
            format!("{field}.half_open_requests"),
            "must be at least 1",
        );
    }
    if config.max_open_for < config.open_for {
        r.at(
            0..0,
            format!("{field}.max_open_for"),
            "must not be shorter than open_for",
        );
    }
    if config.window.is_zero() {
        r.at(0..0, format!("{field}.window"), "must be greater than zero");
    }
    config
}

fn retry(field: &str, s: &file::RetrySection, r: &mut Reporter<'_>) -> RetryConfig {
    let d = RetryConfig::default();
    let field = format!("{field}.retry");
    let on = match &s.on {
        None => d.on,
        Some(list) => {
            let mut on = RetryOn::default();
            for item in list.get_ref() {
                match item.as_str() {
                    "connect-failure" => on.connect_failure = true,
                    "reset" => on.reset = true,
                    "timeout" => on.timeout = true,
                    "502" => on.status_502 = true,
                    "503" => on.status_503 = true,
                    "504" => on.status_504 = true,
                    other => r.at(
                        list.span(),
                        format!("{field}.on"),
                        format!("unknown retry condition `{other}`; expected {RETRY_ON_CHOICES}"),
                    ),
                }
            }
            on
        }
    };
    let config = RetryConfig {
        attempts: s.attempts.unwrap_or(d.attempts),
        on,
        per_try_timeout: s.per_try_timeout.map_or(d.per_try_timeout, |v| v.0),
        budget_percent: s.budget_percent.unwrap_or(d.budget_percent),
        backoff: s.backoff.map_or(d.backoff, |v| v.0),
        buffer_body: s.buffer_body.map_or(d.buffer_body, |v| v.0),
    };
    if config.attempts > 10 {
        r.at(
            0..0,
            format!("{field}.attempts"),
            "at most 10 retries are allowed",
        );
    }
    if config.per_try_timeout.is_zero() {
        r.at(
            0..0,
            format!("{field}.per_try_timeout"),
            "must be greater than zero",
        );
    }
    config
}
