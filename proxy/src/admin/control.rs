//! Runtime control of backends during deploys: drain, enable, disable, weight.
//! Mutations are POST only; each answers with the backend's new state and is logged
//! with the caller's address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::info;

use crate::config::MAX_WEIGHT;
use crate::server::Server;
use crate::timeline::{EventKind, Happened};
use crate::traffic::RouteTarget;
use crate::upstream::{AdminState, Backend};

/// A control request the admin router recognised.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    Drain,
    Enable,
    Disable,
    Weight,
}

/// Parses `/pools/{pool}/backends/{address}/{action}`.
pub fn parse(path: &str) -> Option<(String, String, Action)> {
    let rest = path.strip_prefix("/pools/")?;
    let mut parts = rest.split('/');
    let pool = parts.next()?.to_string();
    if parts.next()? != "backends" {
        return None;
    }
    let address = parts.next()?.to_string();
    let action = match parts.next()? {
        "drain" => Action::Drain,
        "enable" => Action::Enable,
        "disable" => Action::Disable,
        "weight" => Action::Weight,
        _ => return None,
    };
    parts.next().is_none().then_some((pool, address, action))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WeightBody {
    weight: u32,
}

/// Applies a control action (in a fleet: commits it for every instance); returns
/// the status and JSON answer.
pub async fn apply(
    server: &Server,
    caller: SocketAddr,
    pool: &str,
    address: &str,
    action: Action,
    body: &Bytes,
    if_match: Option<i64>,
) -> (StatusCode, Value) {
    let snapshot = server.snapshot();
    let Some(p) = snapshot.pools.get(pool) else {
        return (
            StatusCode::NOT_FOUND,
            json!({"error": format!("no pool named `{pool}`")}),
        );
    };
    let Some(backend) = p.backends.iter().find(|b| b.is_called(address)) else {
        return (
            StatusCode::NOT_FOUND,
            json!({"error": format!("pool `{pool}` has no backend {address}")}),
        );
    };
    if let Some(cluster) = server.cluster() {
        let (admin, weight) = match action {
            Action::Drain => (Some("draining"), None),
            Action::Enable => (Some("active"), None),
            Action::Disable => (Some("disabled"), None),
            Action::Weight => match weight_body(body) {
                Ok(w) => (None, Some(w)),
                Err(answer) => return answer,
            },
        };
        let config_weight = p.config_weight(backend.address).unwrap_or(1);
        let (status, answer) = super::cluster::backend(
            server,
            cluster,
            caller,
            pool,
            backend,
            config_weight,
            admin,
            weight,
            if_match,
        )
        .await;
        if status == StatusCode::OK {
            server.record_event(backend_event(
                pool,
                &backend.key,
                &action,
                answer["admin_state"].as_str().unwrap_or_default(),
                answer["weight"]
                    .as_u64()
                    .and_then(|w| u32::try_from(w).ok())
                    .unwrap_or_default(),
                caller,
            ));
        }
        return (status, answer);
    }
    let state = &backend.state;
    match action {
        Action::Drain => {
            state.set_admin_state(AdminState::Draining);
            spawn_drain_watch(backend.clone(), p.config.drain_grace);
        }
        Action::Enable => state.set_admin_state(AdminState::Active),
        Action::Disable => state.set_admin_state(AdminState::Disabled),
        Action::Weight => match weight_body(body) {
            Ok(w) => state.weight.store(w, Ordering::Relaxed),
            Err(answer) => return answer,
        },
    }
    let admin_state = state.settle_drain();
    info!(caller = %caller, pool, backend = %backend.key, backend_name = backend.name.as_deref(),
        action = ?action, admin_state = admin_state.as_str(),
        weight = state.weight.load(Ordering::Relaxed), "admin change");
    server.record_event(backend_event(
        pool,
        &backend.key,
        &action,
        admin_state.as_str(),
        state.weight.load(Ordering::Relaxed),
        caller,
    ));
    (
        StatusCode::OK,
        json!({
            "pool": pool,
            "address": backend.key.as_ref(),
            "name": backend.name.as_deref(),
            "admin_state": admin_state.as_str(),
            "weight": state.weight.load(Ordering::Relaxed),
            "in_flight": state.in_flight.load(Ordering::Relaxed),
        }),
    )
}

/// The timeline's entry for an operator's change of a backend.
pub fn backend_event(
    pool: &str,
    address: &str,
    action: &Action,
    admin_state: &str,
    weight: u32,
    caller: SocketAddr,
) -> Happened {
    let what = match action {
        Action::Weight => format!("weight set to {weight}"),
        _ => admin_state.to_string(),
    };
    Happened::backend(
        EventKind::Backend,
        pool,
        address,
        format!("{what} by an operator ({caller})"),
    )
}

/// The weight of `{"weight": N}`, within range.
fn weight_body(body: &Bytes) -> Result<u32, (StatusCode, Value)> {
    match serde_json::from_slice::<WeightBody>(body) {
        Ok(w) if w.weight <= MAX_WEIGHT => Ok(w.weight),
        Ok(_) => Err((
            StatusCode::BAD_REQUEST,
            json!({"error": format!("weight must be between 0 and {MAX_WEIGHT}")}),
        )),
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            json!({"error": format!("expected a JSON body like {{\"weight\": 5}}: {e}")}),
        )),
    }
}

/// Marks a draining backend `drained` once its last in-flight request ends, closing
/// its upgraded connections once the pool's drain grace is over.
fn spawn_drain_watch(backend: Backend, grace: Duration) {
    tokio::spawn(async move {
        crate::upstream::wait_drained(&backend, grace, None).await;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_control_paths() {
        assert_eq!(
            parse("/pools/app/backends/127.0.0.1:9001/drain"),
            Some(("app".into(), "127.0.0.1:9001".into(), Action::Drain))
        );
        assert_eq!(parse("/pools/app/backends/127.0.0.1:9001/explode"), None);
        assert_eq!(parse("/pools/app/127.0.0.1:9001/drain"), None);
    }
}

/// A route-level control request: `/routes/{route}/switch` or `/routes/{route}/split`.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteAction {
    Switch,
    Split,
}

/// Parses `/routes/{route}/{switch|split}`.
pub fn parse_route(path: &str) -> Option<(String, RouteAction)> {
    let rest = path.strip_prefix("/routes/")?;
    let (route, action) = rest.split_once('/')?;
    let action = match action {
        "switch" => RouteAction::Switch,
        "split" => RouteAction::Split,
        _ => return None,
    };
    (!route.is_empty()).then(|| (route.to_string(), action))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchBody {
    pool: String,
    #[serde(default)]
    force: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitBody {
    pools: std::collections::BTreeMap<String, u32>,
    sticky: Option<String>,
    #[serde(default)]
    force: bool,
}

/// Applies a route switch or split; returns the status and JSON answer.
pub async fn apply_route(
    server: &Server,
    caller: SocketAddr,
    route: &str,
    action: RouteAction,
    body: &Bytes,
    if_match: Option<i64>,
) -> (StatusCode, Value) {
    let (target, force) = match action {
        RouteAction::Switch => match serde_json::from_slice::<SwitchBody>(body) {
            Ok(b) => (RouteTarget::Pool(b.pool.as_str().into()), b.force),
            Err(e) => return bad_request(format!("expected {{\"pool\": \"green\"}}: {e}")),
        },
        RouteAction::Split => match serde_json::from_slice::<SplitBody>(body) {
            Ok(b) if b.pools.is_empty() => return bad_request("`pools` is empty".into()),
            Ok(b) => {
                let sticky = match b
                    .sticky
                    .as_deref()
                    .map(crate::traffic::parse_sticky)
                    .transpose()
                {
                    Ok(s) => s,
                    Err(e) => return bad_request(e),
                };
                (
                    RouteTarget::Split {
                        pools: b
                            .pools
                            .into_iter()
                            .map(|(p, w)| (Arc::from(p.as_str()), w))
                            .collect(),
                        sticky,
                    },
                    b.force,
                )
            }
            Err(e) => {
                return bad_request(format!(
                    "expected {{\"pools\": {{\"blue\": 90, \"green\": 10}}, \"sticky\": \"header:x-user\"}}: {e}"
                ));
            }
        },
    };
    if let Err(e) = server.checked_route_target(route, target.clone()) {
        return super::respond::route_change_refused(&e);
    }
    if !force && let Some((pool, reason)) = unusable_target(server, &target) {
        info!(caller = %caller, route, pool, %reason, "admin route change refused");
        return (
            StatusCode::CONFLICT,
            json!({
                "error": format!("{reason}; add \"force\": true to switch anyway"),
                "route": route,
                "pool": pool,
            }),
        );
    }
    if let Some(cluster) = server.cluster() {
        return super::cluster::route(server, cluster, caller, route, target, if_match).await;
    }
    match server.set_route_target(route, target).await {
        Ok(target) => {
            info!(caller = %caller, route, target = %target.to_json(), "admin route change");
            (
                StatusCode::OK,
                json!({ "route": route, "target": target.to_json() }),
            )
        }
        Err(e) => super::respond::route_change_refused(&e),
    }
}

/// The first pool the target would send traffic to that has no usable backend,
/// with the reason. Names are checked before (404).
fn unusable_target(server: &Server, target: &RouteTarget) -> Option<(String, String)> {
    let snapshot = server.snapshot();
    let now = crate::clock::now_ms();
    let receiving: Vec<&Arc<str>> = match target {
        RouteTarget::Pool(p) => vec![p],
        RouteTarget::Split { pools, .. } => pools
            .iter()
            .filter(|(_, w)| *w > 0)
            .map(|(p, _)| p)
            .collect(),
    };
    receiving.into_iter().find_map(|name| {
        let pool = snapshot.pools.get(name)?;
        pool.unusable_reason(now)
            .map(|reason| (name.to_string(), reason))
    })
}

fn bad_request(message: String) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, json!({ "error": message }))
}
