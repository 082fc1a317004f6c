//! The `/status` document: every listener, route, pool and backend with its state.

use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::why;
use crate::clock;
use crate::config::BalanceKind;
use crate::server::Server;
use crate::state::Snapshot;
use crate::upstream::{Backend, Pool};

/// Builds the JSON status view from the live snapshot.
pub fn status(server: &Server) -> Value {
    let snapshot = server.snapshot();
    let now = clock::now_ms();
    let config = &snapshot.config;
    let listeners: Vec<Value> = config
        .listeners
        .iter()
        .map(|l| {
            let certificates: Vec<Value> = server
                .tls()
                .served_by(&l.name)
                .iter()
                .map(|c| json!({ "names": c.names, "not_after": c.not_after, "origin": c.origin }))
                .collect();
            json!({
                "name": l.name,
                "address": server.listener_address(&l.name).unwrap_or(l.listen).to_string(),
                "tls": l.tls.is_some(),
                "certificates": certificates,
            })
        })
        .collect();
    let routes: Vec<Value> = config
        .routes
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "listener": r.listener,
                "host": r.host,
                "path_prefix": r.path_prefix,
                "pool": r.pool,
                "target": snapshot.route(&r.name).map(|route| route.target.to_json()),
                "in_flight": snapshot.route(&r.name).map(|route| route.metrics.in_flight.get()),
                "rollout": server.rollout_json(&r.name),
            })
        })
        .collect();
    let pools: Vec<Value> = snapshot
        .pools
        .iter_sorted()
        .into_iter()
        .map(|p| pool(&snapshot, p, now))
        .collect();
    let mut view = json!({
        "ready": server.is_ready(),
        "process": crate::process::to_json(),
        "config": config.source.display().to_string(),
        "admin": server.admin_address().map(|a| a.to_string()),
        "listeners": listeners,
        "routes": routes,
        "pools": pools,
        "plugins": plugins(server),
    });
    if let Some(cluster) = server.cluster() {
        view["cluster"] = cluster.status_json();
    }
    view
}

/// Each loaded plugin: which version (digest, load time), its limits and how its
/// calls are going.
fn plugins(server: &Server) -> Vec<Value> {
    server
        .plugins()
        .slots()
        .iter()
        .map(|slot| {
            let active = slot.current_full();
            let stats = active.plugin.stats();
            let loaded_at = active
                .plugin
                .loaded_at()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            let errors: serde_json::Map<String, Value> = stats
                .errors()
                .iter()
                .map(|(kind, n)| ((*kind).to_string(), json!(n)))
                .collect();
            let last_reload_error = slot.last_failure().map(|f| {
                json!({
                    "at": f.at.duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64()),
                    "error": f.error,
                })
            });
            json!({
                "name": slot.name().as_ref(),
                "kind": active.plugin.kind().world(),
                "path": active.config.spec.path.display().to_string(),
                "digest": active.plugin.digest(),
                "loaded_at": loaded_at,
                "on_error": active.config.on_error.as_str(),
                "timeout_ms": clock::millis(active.config.spec.timeout),
                "memory_bytes": active.config.spec.memory_bytes,
                "calls": stats.calls(),
                "errors": errors,
                "quarantined": stats.is_quarantined(),
                "quarantines": stats.quarantines(),
                "probe_request": active.plugin.as_health().map(|h| h.has_probe_request()),
                "reloads": slot.reloads(),
                "reload_failures": slot.failures(),
                "last_reload_error": last_reload_error,
            })
        })
        .collect()
}

fn pool(snapshot: &Snapshot, pool: &Pool, now: u64) -> Value {
    let (routed, traffic) = why::pool_traffic(snapshot, pool);
    let native = match &pool.config.balance {
        BalanceKind::RoundRobin => "round-robin",
        BalanceKind::Weighted => "weighted",
        BalanceKind::LeastRequest => "least-request",
        BalanceKind::Hash(_) => "hash",
    };
    // As written in the config: `plugin:NAME` with the native policy it falls back
    // to beside it, or the native policy alone.
    let (balance, fallback_balance) = match &pool.config.routing_plugin {
        Some(plugin) => (format!("plugin:{plugin}"), Some(native)),
        None => (native.to_string(), None),
    };
    let name = |slot: &Option<std::sync::Arc<crate::plugin::PluginSlot>>| {
        slot.as_ref().map(|s| s.name().to_string())
    };
    let policies = &pool.policies;
    json!({
        "name": pool.name.as_ref(),
        "balance": balance,
        "fallback_balance": fallback_balance,
        "plugins": {
            "routing": name(&policies.routing),
            "shadow": policies.shadow.as_ref().map(|s| s.slot.name().to_string()),
            "health": name(&policies.health),
            "recovery": name(&policies.recovery),
        },
        "usable": pool.usable_count(now),
        "in_flight": pool.traffic.in_flight(),
        "spilled": pool.traffic.spilled(),
        "backup": pool.config.failover.backup,
        "health_checked": pool.config.health.is_some(),
        "traffic": traffic,
        "window_ms": pool.config.breaker.window.as_millis() as u64,
        "backends": pool
            .backends
            .iter()
            .enumerate()
            .map(|(index, b)| backend(pool, index, b, now, routed))
            .collect::<Vec<_>>(),
    })
}

/// One backend; `index` is the `candidate.index` routing plugins see for it.
fn backend(pool: &Pool, index: usize, b: &Backend, now: u64, routed: bool) -> Value {
    let s = &b.state;
    let (receiving, why) = why::backend(pool, b, now, routed);
    let (recent, recent_failures) = s.breaker.window_counts(pool.config.breaker.window, now);
    let config_weight = pool.config_weight(b.address);
    let last_check = s.health.last_check().map(|c| {
        json!({
            "result": c.result,
            "latency_ms": clock::millis(c.latency),
            "age_ms": now.saturating_sub(c.at_ms),
        })
    });
    let open_until = s.breaker.open_until_ms();
    json!({
        "index": index,
        "name": b.name.as_deref(),
        "address": b.key.as_ref(),
        "dns_name": b.origin.as_deref(),
        "weight": s.weight.load(Ordering::Relaxed),
        "config_weight": config_weight,
        "effective_weight": s.effective_weight(pool.config.failover.slow_start, now),
        "admin_state": s.admin_state().as_str(),
        "usable": s.is_usable(now),
        "health": s.health.status().as_str(),
        "health_consecutive_ok": s.health.consecutive_ok(),
        "health_consecutive_failed": s.health.consecutive_failed(),
        "health_transitions": s.health.transitions(),
        "last_check": last_check,
        "breaker": s.breaker.state().as_str(),
        "breaker_open_remaining_ms": open_until.saturating_sub(now),
        "consecutive_failures": s.breaker.consecutive_failures(),
        "ejections": s.breaker.ejections(),
        "in_flight": s.in_flight.load(Ordering::Relaxed),
        "tunnels": s.tunnels.load(Ordering::Relaxed),
        "requests": s.requests.load(Ordering::Relaxed),
        "failures": s.failures.load(Ordering::Relaxed),
        "connect_errors": s.connect_errors.load(Ordering::Relaxed),
        "latency_ewma_ms": f64::from(s.latency_ewma_us(now)) / 1000.0,
        "recent_requests": recent,
        "recent_failures": recent_failures,
        "receiving": receiving,
        "why": why,
    })
}
