//! Whole-file validation: turns [`FileConfig`] into [`Config`] or a list of located problems.

use std::collections::{BTreeMap, HashSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use toml::Spanned;

use super::error::Reporter;
use super::file::{self, FileConfig, StatusSpec};
use super::{
    AdminConfig, AlertConfig, AlertTopic, BackendConfig, BalanceKind, BreakerConfig, Config,
    ConfigError, DEFAULT_ADMIN_CONNECTIONS, FailoverConfig, HashOn, HealthConfig, Limits,
    ListenerConfig, MAX_WEIGHT, MIN_TOKEN_BYTES, OnError, PluginConfig, PoolConfig, ProbeKind,
    RetryConfig, RetryOn, RouteConfig, TlsConfig,
};
use crate::plugin::{
    DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, MAX_REQUEST_PATH_TIMEOUT, PluginKind, PluginSpec,
};

const BALANCE_CHOICES: &str = "round-robin, weighted, least-request, hash";
const RETRY_ON_CHOICES: &str = "connect-failure, reset, timeout, 502, 503, 504";

pub(super) fn validate(path: &Path, text: &str, file: FileConfig) -> Result<Config, ConfigError> {
    let mut r = Reporter::new(path, text);
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();

    let limits = limits(&file.limits, &mut r);
    let listeners = listeners(&file.listeners, &base_dir, &mut r);
    let plugins = plugins(&file.plugins, &base_dir, &mut r);
    let pools = pools(&file.pools, &plugins, &mut r);
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
        alerts,
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
            out.insert(
                format!("listener[{i}].tls.cert"),
                r.position(tls.cert.span()),
            );
            out.insert(format!("listener[{i}].tls.key"), r.position(tls.key.span()));
        }
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
    for (name, value) in [
        ("limits.header_read_timeout", limits.header_read_timeout),
        ("limits.idle_timeout", limits.idle_timeout),
        ("limits.connect_timeout", limits.connect_timeout),
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
        if !addrs.insert(*l.listen.get_ref()) {
            r.at(
                l.listen.span(),
                format!("{field}.listen"),
                format!("address {} is used by another listener", l.listen.get_ref()),
            );
        }
        let tls = l.tls.as_ref().map(|t| TlsConfig {
            cert: existing_file(&t.cert, base_dir, &format!("{field}.tls.cert"), r),
            key: existing_file(&t.key, base_dir, &format!("{field}.tls.key"), r),
        });
        out.push(ListenerConfig {
            name: l.name.get_ref().clone(),
            listen: *l.listen.get_ref(),
            tls,
        });
    }
    out
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
            Some(p) => p.get_ref().clone(),
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
        out.push(RouteConfig {
            name,
            listener: s.listener.get_ref().clone(),
            host,
            path_prefix,
            pool: s.pool.get_ref().clone(),
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
    for (name, spanned) in sections {
        let s = spanned.get_ref();
        let field = format!("plugin.{name}");
        let kind = match s.kind.get_ref().as_str() {
            "routing" => PluginKind::Routing,
            "health" | "health-check" => PluginKind::Health,
            "recovery" => PluginKind::Recovery,
            other => {
                r.at(
                    s.kind.span(),
                    format!("{field}.kind"),
                    format!("unknown kind `{other}`; expected routing, health or recovery"),
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
            let (min, max) = crate::plugin::TIMEOUT_RANGE;
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
                crate::plugin::MIN_MEMORY_BYTES,
                crate::plugin::MAX_MEMORY_BYTES,
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
        let mut spec = PluginSpec::new(name, kind, path);
        spec.config_json = config_json;
        spec.timeout = timeout;
        spec.memory_bytes = memory_bytes;
        out.insert(name.clone(), PluginConfig { spec, on_error });
    }
    out
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
        let backends = backends(&field, &s.backends, r);
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

fn backends(
    field: &str,
    spanned: &Spanned<Vec<file::BackendSection>>,
    r: &mut Reporter<'_>,
) -> Vec<BackendConfig> {
    let mut seen = HashSet::new();
    if spanned.get_ref().is_empty() {
        r.at(
            spanned.span(),
            format!("{field}.backends"),
            "a pool needs at least one backend",
        );
    }
    spanned
        .get_ref()
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if !seen.insert(*b.address.get_ref()) {
                r.at(
                    b.address.span(),
                    format!("{field}.backends[{i}].address"),
                    format!("backend {} is listed twice", b.address.get_ref()),
                );
            }
            if b.weight > MAX_WEIGHT {
                r.at(
                    b.address.span(),
                    format!("{field}.backends[{i}].weight"),
                    format!("weight {} is above the maximum {MAX_WEIGHT}", b.weight),
                );
            }
            BackendConfig {
                address: *b.address.get_ref(),
                weight: b.weight,
            }
        })
        .collect()
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
