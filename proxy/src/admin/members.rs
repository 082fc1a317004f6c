//! `POST /pools/{pool}/backends` adds a backend; `DELETE /pools/{pool}/backends/{address}`
//! drains one and removes it once nothing is in flight (or after `limits.drain_timeout`).
//! Each change is logged with the caller. An added address must pass the
//! [`AddressPolicy`](crate::address_policy::AddressPolicy) (never the proxy's own
//! listeners or admin address, never link-local or unspecified, inside
//! `admin.backend_networks` when set): it is refused with 403 otherwise.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;
use tracing::{info, warn};

use super::respond::{json, method_not_allowed, mutation_body};
use crate::config::MAX_WEIGHT;
use crate::error::ProxyBody;
use crate::membership::Member;
use crate::server::{MemberError, Server};
use crate::timeline::{EventKind, Happened};
use crate::upstream::{AdminState, DrainEnd, wait_drained};

/// Which membership path was asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum MemberPath {
    /// `/pools/{pool}/backends`: add a backend.
    Pool(String),
    /// `/pools/{pool}/backends/{address}`: remove one.
    Backend(String, String),
}

/// Parses the two membership paths.
pub fn parse(path: &str) -> Option<MemberPath> {
    let rest = path.strip_prefix("/pools/")?;
    let mut parts = rest.split('/');
    let pool = parts.next().filter(|p| !p.is_empty())?.to_string();
    if parts.next()? != "backends" {
        return None;
    }
    match (parts.next(), parts.next()) {
        (None, _) => Some(MemberPath::Pool(pool)),
        (Some(address), None) if !address.is_empty() => {
            Some(MemberPath::Backend(pool, address.to_string()))
        }
        _ => None,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    address: String,
    #[serde(default = "one")]
    weight: u32,
}

fn one() -> u32 {
    1
}

/// Answers a membership request.
pub async fn handle(
    server: &Arc<Server>,
    caller: SocketAddr,
    path: MemberPath,
    request: Request<Incoming>,
    if_match: Option<i64>,
) -> Response<ProxyBody> {
    match path {
        MemberPath::Pool(pool) => {
            let body = match mutation_body(request).await {
                Ok(body) => body,
                Err(response) => return response,
            };
            add(server, caller, &pool, &body, if_match).await
        }
        MemberPath::Backend(pool, address) => {
            if request.method() != Method::DELETE {
                return method_not_allowed("DELETE");
            }
            remove(server, caller, &pool, &address, if_match).await
        }
    }
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<ProxyBody> {
    json(status, &json!({ "error": message.to_string() }))
}

fn member_error(e: &MemberError) -> Response<ProxyBody> {
    let status = match e {
        MemberError::NoPool(_) | MemberError::NoBackend { .. } => StatusCode::NOT_FOUND,
        MemberError::Exists { .. }
        | MemberError::LastBackend { .. }
        | MemberError::FromDns { .. } => StatusCode::CONFLICT,
        MemberError::Refused(_) => StatusCode::FORBIDDEN,
        MemberError::Apply(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e)
}

async fn add(
    server: &Server,
    caller: SocketAddr,
    pool: &str,
    body: &[u8],
    if_match: Option<i64>,
) -> Response<ProxyBody> {
    let body: AddBody = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "expected a JSON body like {{\"address\": \"127.0.0.1:8081\", \"weight\": 1}}: {e}"
                ),
            );
        }
    };
    let Ok(address) = body.address.parse::<SocketAddr>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("`{}` is not an IP:port address", body.address),
        );
    };
    if body.weight > MAX_WEIGHT {
        return error(
            StatusCode::BAD_REQUEST,
            format!("weight must be between 0 and {MAX_WEIGHT}"),
        );
    }
    let member = Member {
        address,
        weight: body.weight,
    };
    if let Some(cluster) = server.cluster() {
        if let Err(e) = server.addable(pool, member) {
            return member_error(&e);
        }
        let (status, value) =
            super::cluster::add_backend(server, cluster, caller, pool, member, if_match).await;
        return json(status, &value);
    }
    match server.add_backend(pool, member).await {
        Ok(backend) => {
            server.save_state_durably().await;
            info!(caller = %caller, pool, backend = %backend.key, backend_name = backend.name.as_deref(), weight = body.weight, "admin backend added");
            server.record_event(Happened::backend(
                EventKind::Backend,
                pool,
                &backend.key,
                format!(
                    "added with weight {} by an operator ({caller})",
                    body.weight
                ),
            ));
            json(
                StatusCode::CREATED,
                &json!({
                    "pool": pool,
                    "address": backend.key.as_ref(),
                    "state": "added",
                    "weight": backend.state.weight.load(Ordering::Relaxed),
                    "admin_state": backend.state.admin_state().as_str(),
                    "health": backend.state.health.status().as_str(),
                }),
            )
        }
        Err(e) => member_error(&e),
    }
}

async fn remove(
    server: &Arc<Server>,
    caller: SocketAddr,
    pool: &str,
    address: &str,
    if_match: Option<i64>,
) -> Response<ProxyBody> {
    let Some(found) = server.snapshot().pools.get(pool).cloned() else {
        return member_error(&MemberError::NoPool(pool.to_string()));
    };
    // A backend's configured name stands for its address.
    let named = found
        .backends
        .iter()
        .find(|b| b.name.as_deref() == Some(address))
        .map(|b| b.address);
    let Some(address) = named.or_else(|| address.parse::<SocketAddr>().ok()) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("pool `{pool}` has no backend {address}"),
        );
    };
    let backend = match server.removable(pool, address) {
        Ok(b) => b,
        Err(e) => return member_error(&e),
    };
    if let Some(cluster) = server.cluster() {
        let (status, value) =
            super::cluster::remove_backend(server, cluster, caller, pool, &backend, if_match).await;
        return json(status, &value);
    }
    backend.state.set_admin_state(AdminState::Draining);
    let in_flight = backend.state.in_flight.load(Ordering::Acquire);
    info!(caller = %caller, pool, backend = %backend.key, backend_name = backend.name.as_deref(), in_flight, "admin backend removal: draining");
    if in_flight > 0 {
        server.record_event(Happened::backend(
            EventKind::Backend,
            pool,
            &backend.key,
            format!("draining to be removed, by an operator ({caller})"),
        ));
    }
    if in_flight == 0 {
        return match server.remove_backend(pool, address).await {
            Ok(()) => {
                server.save_state_durably().await;
                info!(pool, backend = %backend.key, backend_name = backend.name.as_deref(), "backend removed");
                server.record_event(Happened::backend(
                    EventKind::Backend,
                    pool,
                    &backend.key,
                    format!("removed by an operator ({caller})"),
                ));
                json(
                    StatusCode::OK,
                    &json!({ "pool": pool, "address": backend.key.as_ref(), "state": "removed", "in_flight": 0 }),
                )
            }
            Err(e) => member_error(&e),
        };
    }
    let snapshot = server.snapshot();
    let grace = snapshot
        .pools
        .get(pool)
        .map_or(crate::config::DEFAULT_DRAIN_GRACE, |p| p.config.drain_grace);
    let timeout = snapshot.config.limits.drain_timeout;
    let server = Arc::clone(server);
    let (pool_name, key) = (pool.to_string(), Arc::clone(&backend.key));
    tokio::spawn(async move {
        match wait_drained(&backend, grace, Some(timeout)).await {
            DrainEnd::Interrupted => {
                warn!(pool = pool_name, backend = %key, "backend removal cancelled: it was enabled or disabled again");
                return;
            }
            DrainEnd::TimedOut => {
                warn!(pool = pool_name, backend = %key, in_flight = backend.state.in_flight.load(Ordering::Relaxed),
                    "drain timeout passed: removing the backend with requests still in flight");
            }
            DrainEnd::Drained => {}
        }
        match server.remove_backend(&pool_name, address).await {
            Ok(()) => {
                server.save_state();
                info!(pool = pool_name, backend = %key, "backend removed");
                server.record_event(Happened::backend(
                    EventKind::Backend,
                    &pool_name,
                    &key,
                    "removed after its drain",
                ));
            }
            Err(e) => warn!(pool = pool_name, backend = %key, error = %e, "backend removal failed"),
        }
    });
    json(
        StatusCode::ACCEPTED,
        &json!({
            "pool": pool,
            "address": address.to_string(),
            "state": "removing",
            "in_flight": in_flight,
            "drain_grace_ms": grace.as_millis() as u64,
            "timeout_ms": timeout.as_millis() as u64,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_membership_paths() {
        assert_eq!(
            parse("/pools/app/backends"),
            Some(MemberPath::Pool("app".into()))
        );
        assert_eq!(
            parse("/pools/app/backends/127.0.0.1:9001"),
            Some(MemberPath::Backend("app".into(), "127.0.0.1:9001".into()))
        );
        assert_eq!(parse("/pools/app/backends/127.0.0.1:9001/drain"), None);
        assert_eq!(parse("/pools//backends"), None);
    }
}
