//! The admin API's changes on an instance of a fleet (`[cluster]`): each is checked
//! exactly as on a standalone instance, then committed to etcd (see
//! [`crate::cluster`]) rather than applied here alone. The answer comes once etcd
//! took the change and this instance applied it; the other instances apply it from
//! their watch. `If-Match: REVISION` (the `revision` of `GET /cluster` or of an
//! earlier answer) refuses the change with 409 if what it touches changed since.
//! With etcd out of reach every change is refused with 503.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use tracing::info;

use crate::cluster::{Cluster, CommitError, Committed, Rejected, records::RolloutRecord};
use crate::membership::Member;
use crate::rollout::{Plan, StartError};
use crate::server::Server;
use crate::traffic::RouteTarget;
use crate::upstream::Backend;

/// The revision an operator based a change on: `If-Match: 57` (quotes allowed).
pub fn if_match(headers: &HeaderMap) -> Result<Option<i64>, (StatusCode, Value)> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .map(|v| v.trim().trim_start_matches("W/").trim_matches('"'))
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v >= 0)
        .map(Some)
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                json!({"error": "If-Match must be the etcd revision the change is based on, e.g. If-Match: 57"}),
            )
        })
}

/// The answer to a change etcd did not take.
fn refused(e: &CommitError) -> (StatusCode, Value) {
    let mut body = json!({ "error": e.to_string() });
    if let CommitError::Conflict {
        key,
        revision,
        based_on,
    } = e
    {
        body["key"] = json!(key);
        body["revision"] = json!(revision);
        body["based_on"] = json!(based_on);
    }
    (e.status(), body)
}

fn committed(mut value: Value, c: Committed) -> Value {
    value["revision"] = json!(c.revision);
    value
}

/// Drain, enable, disable or weight of one backend, for the whole fleet.
#[allow(clippy::too_many_arguments)]
pub async fn backend(
    server: &Server,
    cluster: &Cluster,
    caller: SocketAddr,
    pool: &str,
    backend: &Backend,
    config_weight: u32,
    admin: Option<&str>,
    weight: Option<u32>,
    if_match: Option<i64>,
) -> (StatusCode, Value) {
    let address = backend.key.to_string();
    let result = cluster
        .commit(server, if_match, |draft| {
            crate::cluster::edits::set_backend(
                &mut draft.state,
                pool,
                &address,
                config_weight,
                admin,
                weight,
            );
            Ok(())
        })
        .await;
    match result {
        Ok(c) => {
            let state = &backend.state;
            let admin_state = state.settle_drain();
            info!(caller = %caller, pool, backend = address, admin_state = admin_state.as_str(),
                weight = state.weight.load(Ordering::Relaxed), revision = c.revision, "fleet admin change");
            (
                StatusCode::OK,
                committed(
                    json!({
                        "pool": pool,
                        "address": address,
                        "admin_state": admin_state.as_str(),
                        "weight": state.weight.load(Ordering::Relaxed),
                        "in_flight": state.in_flight.load(Ordering::Relaxed),
                    }),
                    c,
                ),
            )
        }
        Err(e) => refused(&e),
    }
}

/// A switch or split of a route for the whole fleet; stops a fleet rollout of it.
pub async fn route(
    server: &Server,
    cluster: &Cluster,
    caller: SocketAddr,
    route: &str,
    target: RouteTarget,
    if_match: Option<i64>,
) -> (StatusCode, Value) {
    let (config_pool, target) = match server.checked_route_target(route, target) {
        Ok(checked) => checked,
        Err(e) => return super::respond::route_change_refused(&e),
    };
    let who = cluster.instance().to_string();
    let result = cluster
        .commit(server, if_match, |draft| {
            crate::cluster::edits::set_route(&mut draft.state, route, &config_pool, &target);
            crate::cluster::edits::end_rollout(
                draft,
                route,
                "aborted",
                Some(format!(
                    "superseded by a switch or split of the route on `{who}`"
                )),
            );
            Ok(())
        })
        .await;
    match result {
        Ok(c) => {
            info!(caller = %caller, route, target = %target.to_json(), revision = c.revision, "fleet route change");
            server.record_event(crate::timeline::Happened::new(
                crate::timeline::EventKind::Switch,
                format!(
                    "route {route}: {} (fleet revision {})",
                    target.describe(),
                    c.revision
                ),
            ));
            (
                StatusCode::OK,
                committed(json!({ "route": route, "target": target.to_json() }), c),
            )
        }
        Err(e) => refused(&e),
    }
}

/// Adds a backend to a pool on every instance.
pub async fn add_backend(
    server: &Server,
    cluster: &Cluster,
    caller: SocketAddr,
    pool: &str,
    member: Member,
    if_match: Option<i64>,
) -> (StatusCode, Value) {
    let base = server.base_config();
    let result = cluster
        .commit(server, if_match, |draft| {
            draft.state.members.add(&base, pool, member);
            draft
                .state
                .backends
                .remove(&format!("{pool}/{}", member.address));
            Ok(())
        })
        .await;
    match result {
        Ok(c) => {
            info!(caller = %caller, pool, backend = %member.address, weight = member.weight, revision = c.revision, "fleet backend added");
            let snapshot = server.snapshot();
            let backend = snapshot
                .pools
                .get(pool)
                .and_then(|p| p.backends.iter().find(|b| b.address == member.address));
            (
                StatusCode::CREATED,
                committed(
                    json!({
                        "pool": pool,
                        "address": member.address.to_string(),
                        "state": "added",
                        "weight": member.weight,
                        "admin_state": backend.map(|b| b.state.admin_state().as_str()),
                        "health": backend.map(|b| b.state.health.status().as_str()),
                    }),
                    c,
                ),
            )
        }
        Err(e) => refused(&e),
    }
}

/// Takes a backend out of its pool on every instance; each lets its own in-flight
/// requests finish.
pub async fn remove_backend(
    server: &Server,
    cluster: &Cluster,
    caller: SocketAddr,
    pool: &str,
    backend: &Backend,
    if_match: Option<i64>,
) -> (StatusCode, Value) {
    let base = server.base_config();
    let address = backend.address;
    let result = cluster
        .commit(server, if_match, |draft| {
            draft.state.members.remove(&base, pool, address);
            draft.state.backends.remove(&format!("{pool}/{address}"));
            Ok(())
        })
        .await;
    match result {
        Ok(c) => {
            let in_flight = backend.state.in_flight.load(Ordering::Acquire);
            info!(caller = %caller, pool, backend = %address, in_flight, revision = c.revision, "fleet backend removed");
            let (status, state) = if in_flight == 0 {
                (StatusCode::OK, "removed")
            } else {
                (StatusCode::ACCEPTED, "removing")
            };
            (
                status,
                committed(
                    json!({ "pool": pool, "address": address.to_string(), "state": state, "in_flight": in_flight }),
                    c,
                ),
            )
        }
        Err(e) => refused(&e),
    }
}

/// Starts a fleet rollout: recorded in etcd, run by the fleet's elected leader.
pub async fn start_rollout(
    server: &Arc<Server>,
    cluster: &Cluster,
    caller: SocketAddr,
    route: &str,
    plan: Plan,
    if_match: Option<i64>,
) -> (StatusCode, Value) {
    let (from, config_pool) = match server.rollout_origin(route, &plan) {
        Ok(origin) => origin,
        Err(e) => {
            let status = match e {
                StartError::NoRoute(_) | StartError::NoPool(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            return (status, json!({ "error": e.to_string() }));
        }
    };
    let record = RolloutRecord {
        route: route.to_string(),
        from: from.to_string(),
        to: plan.to.clone(),
        config_pool,
        plan: plan.to_json(),
        state: "running".into(),
        step: 0,
        // Nothing moves until the leader puts the first step's split in effect.
        percent: 0,
        last_verdict: None,
        reason: None,
        leader: None,
        leader_boot: None,
        started_by: cluster.instance().to_string(),
        updated_ms: crate::cluster::records::unix_ms(),
    };
    let result = cluster
        .commit(server.as_ref(), if_match, |draft| {
            if draft
                .rollouts
                .get(route)
                .is_some_and(RolloutRecord::running)
            {
                return Err(Rejected {
                    status: StatusCode::CONFLICT,
                    message: StartError::Running(route.to_string()).to_string(),
                });
            }
            draft.rollouts.insert(route.to_string(), record.clone());
            Ok(())
        })
        .await;
    match result {
        Ok(c) => {
            info!(caller = %caller, route, from = %record.from, to = %record.to, revision = c.revision, "fleet rollout started");
            (
                StatusCode::ACCEPTED,
                committed(json!({ "route": route, "rollout": record.to_status() }), c),
            )
        }
        Err(e) => refused(&e),
    }
}

/// Stops a fleet rollout and sends the route back to its old pool everywhere.
pub async fn abort_rollout(
    server: &Server,
    cluster: &Cluster,
    caller: SocketAddr,
    route: &str,
    if_match: Option<i64>,
) -> (StatusCode, Value) {
    if server.snapshot().route(route).is_none() {
        let e = crate::server::RouteChangeError::NoRoute(route.to_string());
        return super::respond::route_change_refused(&e);
    }
    let who = cluster.instance().to_string();
    let mut stopped = None;
    let result = cluster
        .commit(server, if_match, |draft| {
            let record = crate::cluster::edits::running(draft, route)?.clone();
            crate::cluster::edits::end_rollout(
                draft,
                route,
                "aborted",
                Some(format!("aborted by an operator on `{who}`")),
            );
            crate::cluster::edits::set_route(
                &mut draft.state,
                route,
                &record.config_pool,
                &RouteTarget::Pool(record.from.as_str().into()),
            );
            stopped = draft.rollouts.get(route).cloned();
            Ok(())
        })
        .await;
    match (result, stopped) {
        (Ok(c), Some(record)) => {
            info!(caller = %caller, route, pool = %record.from, revision = c.revision, "fleet rollout aborted");
            (
                StatusCode::OK,
                committed(
                    json!({ "route": route, "target": {"pool": record.from}, "rollout": record.to_status() }),
                    c,
                ),
            )
        }
        (Ok(c), None) => (StatusCode::OK, committed(json!({ "route": route }), c)),
        (Err(e), _) => refused(&e),
    }
}
