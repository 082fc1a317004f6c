//! `[pool.NAME]`: the balance (native or `plugin:NAME`), the shadow plugin, and the
//! failover settings; backends, TLS, health, breaker and retry have their own
//! modules.

use std::collections::BTreeMap;

use http::HeaderName;
use toml::Spanned;

use super::plugins::plugin_ref;
use super::{backends, breaker, health, retry, sticky, upstream_tls};
use crate::config::error::Reporter;
use crate::config::file::{PoolSection, default_balance};
use crate::config::resolve::Reads;
use crate::config::suggest::{closest, unknown_choice, unknown_choice_near, unknown_reference};
use crate::config::{
    BalanceKind, DEFAULT_DRAIN_GRACE, FailoverConfig, HashOn, PluginConfig, PluginKind, PoolConfig,
    TRIAL_GRACE,
};

/// The native balances.
const NATIVE_BALANCES: [&str; 4] = ["round-robin", "weighted", "least-request", "hash"];
/// What `balance` accepts, as messages list it.
const BALANCES: [&str; 5] = [
    "round-robin",
    "weighted",
    "least-request",
    "hash",
    "plugin:NAME",
];
const HASH_ON: [&str; 3] = ["header:NAME", "cookie:NAME", "client-ip"];

pub(super) fn pools(
    sections: &BTreeMap<String, Spanned<PoolSection>>,
    plugins: &BTreeMap<String, PluginConfig>,
    reads: &mut Reads,
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
            let fallback = s.fallback_balance.clone().unwrap_or_else(default_balance);
            let kind = balance(&format!("{field}.fallback_balance"), &fallback, s, &[], r);
            (kind, plugin)
        } else {
            if let Some(f) = &s.fallback_balance {
                r.at(
                    f.span(),
                    format!("{field}.fallback_balance"),
                    "fallback_balance only applies with balance = \"plugin:NAME\"",
                );
            }
            let routing: Vec<&str> = plugins
                .values()
                .filter(|p| p.spec.kind == PluginKind::Routing)
                .map(|p| p.spec.name.as_str())
                .collect();
            let kind = balance(&format!("{field}.balance"), &s.balance, s, &routing, r);
            (kind, None)
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
        let (backends, dns) = backends::backends(&field, &s.backends, r);
        if let Some(t) = &s.tls {
            upstream_tls::upstream_tls(name, &field, t, reads, r);
        }
        let mut health = s.health.as_ref().map(|h| health::health(&field, h, r));
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
        let mut breaker = breaker::breaker(&field, &s.breaker, r);
        breaker.plugin = s.breaker.policy.as_ref().and_then(|v| {
            plugin_ref(
                v,
                &format!("{field}.breaker.policy"),
                PluginKind::Recovery,
                plugins,
                r,
            )
        });
        let retry = retry::retry(&field, &s.retry, r);
        breaker.trial_timeout = retry.per_try_timeout + TRIAL_GRACE;
        let failover = failover(name, s, sections, r);
        let sticky = s.sticky.as_ref().map(|t| sticky::sticky(&field, t, r));
        out.insert(
            name.clone(),
            PoolConfig {
                name: name.clone(),
                balance,
                routing_plugin,
                shadow_plugin,
                backends,
                dns,
                // Built from its files by the load step.
                tls: None,
                drain_grace: s.drain_grace.map_or(DEFAULT_DRAIN_GRACE, |d| d.0),
                health,
                breaker,
                retry,
                failover,
                sticky,
            },
        );
    }
    out
}

/// The native algorithm named by `value` at `field` (`balance`, or
/// `fallback_balance` when `balance` names a plugin). `plugins` are the routing
/// plugins a near miss may have meant (as `plugin:NAME`).
fn balance(
    field: &str,
    value: &Spanned<String>,
    s: &PoolSection,
    plugins: &[&str],
    r: &mut Reporter<'_>,
) -> BalanceKind {
    let pool = field.rsplit_once('.').map_or(field, |(pool, _)| pool);
    let kind = match value.get_ref().as_str() {
        "" | "round-robin" => BalanceKind::RoundRobin,
        "weighted" => BalanceKind::Weighted,
        "least-request" => BalanceKind::LeastRequest,
        "hash" => match &s.hash_on {
            Some(on) => match parse_hash_on(on.get_ref()) {
                Ok(h) => BalanceKind::Hash(h),
                Err(msg) => {
                    r.at(on.span(), format!("{pool}.hash_on"), msg);
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
            // A fallback must be native: `plugin:NAME` is not offered there.
            let shown: &[&str] = if field.ends_with(".fallback_balance") {
                &NATIVE_BALANCES
            } else {
                &BALANCES
            };
            let prefixed: Vec<String> = plugins.iter().map(|p| format!("plugin:{p}")).collect();
            let near = closest(
                other,
                NATIVE_BALANCES
                    .into_iter()
                    .chain(prefixed.iter().map(String::as_str)),
            )
            .map(str::to_string)
            .or_else(|| closest(other, plugins.iter().copied()).map(|p| format!("plugin:{p}")));
            r.at(
                value.span(),
                field,
                unknown_choice_near("balance", other, shown, near.as_deref()),
            );
            BalanceKind::RoundRobin
        }
    };
    if let (Some(on), false) = (&s.hash_on, matches!(kind, BalanceKind::Hash(_)))
        && value.get_ref() != "hash"
    {
        r.at(
            on.span(),
            format!("{pool}.hash_on"),
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
    // `headers:x-user` meant `header:x-user`: offer the same name after the right prefix.
    let rest = text.split_once(':').map(|(_, rest)| rest);
    let candidates: Vec<String> = match rest {
        Some(rest) => vec![format!("header:{rest}"), format!("cookie:{rest}")],
        None => vec!["client-ip".to_string()],
    };
    Err(unknown_choice(
        "hash_on",
        text,
        &HASH_ON,
        candidates.iter().map(String::as_str),
    ))
}

/// `[pool.NAME.failover]`: the backup pool (another pool), slow start and the panic
/// threshold.
fn failover(
    name: &str,
    s: &PoolSection,
    sections: &BTreeMap<String, Spanned<PoolSection>>,
    r: &mut Reporter<'_>,
) -> FailoverConfig {
    let field = format!("pool.{name}.failover");
    if let Some(backup) = &s.failover.backup {
        if backup.get_ref() == name {
            r.at(
                backup.span(),
                format!("{field}.backup"),
                "a pool cannot be its own backup",
            );
        } else if !sections.contains_key(backup.get_ref()) {
            let others = sections.keys().map(String::as_str).filter(|p| *p != name);
            r.at(
                backup.span(),
                format!("{field}.backup"),
                unknown_reference("pool", backup.get_ref(), others),
            );
        }
    }
    let failover = FailoverConfig {
        backup: s.failover.backup.as_ref().map(|b| b.get_ref().clone()),
        slow_start: s.failover.slow_start.map(|d| d.0),
        panic_threshold: s.failover.panic_threshold,
    };
    if failover.panic_threshold.is_some_and(|p| p > 100) {
        r.at(
            0..0,
            format!("{field}.panic_threshold"),
            "must be a percentage between 0 and 100",
        );
    }
    failover
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{problems, problems_with, valid_with};
    use crate::config::{BalanceKind, HashOn};

    fn pool(body: &str) -> Vec<String> {
        problems_with(&format!(
            "[pool.web]\nbackends = [{{ address = \"127.0.0.1:2\" }}]\n{body}"
        ))
    }

    #[test]
    fn balances_and_failover() {
        let config = valid_with(
            "[pool.web]\nbalance = \"hash\"\nhash_on = \"header:X-User\"\nbackends = [{ address = \"127.0.0.1:2\" }]\n\
             drain_grace = \"5s\"\n[pool.web.failover]\nbackup = \"app\"\nslow_start = \"10s\"\npanic_threshold = 50\n",
        );
        let web = &config.pools["web"];
        assert_eq!(
            web.balance,
            BalanceKind::Hash(HashOn::Header(http::HeaderName::from_static("x-user")))
        );
        assert_eq!(web.drain_grace, Duration::from_secs(5));
        assert_eq!(web.failover.backup.as_deref(), Some("app"));
        assert_eq!(web.failover.panic_threshold, Some(50));
        assert_eq!(config.pools["app"].balance, BalanceKind::RoundRobin);
    }

    #[test]
    fn an_unknown_balance_suggests_and_lists_every_choice() {
        assert_eq!(
            pool("balance = \"round-robn\"\n"),
            [
                "t.toml:12:11: pool.web.balance: unknown balance `round-robn`, did you mean `round-robin`? Expected one of: round-robin, weighted, least-request, hash, plugin:NAME"
            ]
        );
        assert_eq!(
            pool("balance = \"fastest\"\n"),
            [
                "t.toml:12:11: pool.web.balance: unknown balance `fastest`; expected one of: round-robin, weighted, least-request, hash, plugin:NAME"
            ]
        );
        // A plugin's name without its prefix.
        assert_eq!(
            pool("balance = \"canary\"\n[plugin.canary]\nkind = \"routing\"\npath = \"c.wasm\"\n"),
            [
                "t.toml:12:11: pool.web.balance: unknown balance `canary`, did you mean `plugin:canary`? Expected one of: round-robin, weighted, least-request, hash, plugin:NAME"
            ]
        );
    }

    #[test]
    fn hash_needs_its_key_and_fallbacks_need_a_plugin() {
        assert_eq!(
            pool("balance = \"hash\"\nfallback_balance = \"weighted\"\n"),
            [
                "t.toml:12:11: pool.web.balance: balance = \"hash\" needs hash_on = \"header:NAME\", \"cookie:NAME\" or \"client-ip\"",
                "t.toml:13:20: pool.web.fallback_balance: fallback_balance only applies with balance = \"plugin:NAME\"",
            ]
        );
        assert_eq!(
            pool("balance = \"hash\"\nhash_on = \"headers:x-user\"\n"),
            [
                "t.toml:13:11: pool.web.hash_on: unknown hash_on `headers:x-user`, did you mean `header:x-user`? Expected one of: header:NAME, cookie:NAME, client-ip"
            ]
        );
        assert_eq!(
            pool("hash_on = \"client-ip\"\n"),
            ["t.toml:12:11: pool.web.hash_on: hash_on only applies with balance = \"hash\""]
        );
        assert_eq!(
            pool(
                "balance = \"plugin:canary\"\nfallback_balance = \"random\"\n[plugin.canary]\nkind = \"routing\"\npath = \"c.wasm\"\n"
            ),
            [
                "t.toml:13:20: pool.web.fallback_balance: unknown balance `random`; expected one of: round-robin, weighted, least-request, hash"
            ]
        );
    }

    #[test]
    fn a_backup_must_be_another_pool() {
        assert_eq!(
            pool("[pool.web.failover]\nbackup = \"ap\"\npanic_threshold = 101\n"),
            [
                "t.toml:13:10: pool.web.failover.backup: no pool named `ap`, did you mean `app`? Defined: app",
                "t.toml:14:19: pool.web.failover.panic_threshold: must be a percentage between 0 and 100",
            ]
        );
        assert_eq!(
            pool("[pool.web.failover]\nbackup = \"web\"\n"),
            ["t.toml:13:10: pool.web.failover.backup: a pool cannot be its own backup"]
        );
        assert_eq!(
            problems(
                "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[pool.app]\nbackends = []\n"
            ),
            ["t.toml:5:12: pool.app.backends: a pool needs at least one backend"]
        );
    }
}
