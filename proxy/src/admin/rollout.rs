//! `POST /routes/{route}/rollout` starts a progressive rollout; `POST
//! /routes/{route}/rollout/abort` or `DELETE /routes/{route}/rollout` stops it and
//! sends the route back to its old pool. Each change is logged with the caller.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tracing::info;

use super::respond::{json, method_not_allowed, mutation_body};
use crate::error::ProxyBody;
use crate::rollout::{Plan, StartError};
use crate::server::Server;

/// Parses `/routes/{route}/rollout` (`false`) and `/routes/{route}/rollout/abort` (`true`).
pub fn parse(path: &str) -> Option<(String, bool)> {
    let rest = path.strip_prefix("/routes/")?;
    let (route, action) = rest.split_once('/')?;
    let abort = match action {
        "rollout" => false,
        "rollout/abort" => true,
        _ => return None,
    };
    (!route.is_empty()).then(|| (route.to_string(), abort))
}

/// Answers a rollout request.
pub async fn handle(
    server: &Arc<Server>,
    caller: SocketAddr,
    route: &str,
    abort: bool,
    request: Request<Incoming>,
    if_match: Option<i64>,
) -> Response<ProxyBody> {
    let method = request.method().clone();
    if abort || method == Method::DELETE {
        if method != Method::POST && method != Method::DELETE {
            return method_not_allowed(if abort { "POST" } else { "POST, DELETE" });
        }
        if let Some(cluster) = server.cluster() {
            let (status, value) =
                super::cluster::abort_rollout(server, cluster, caller, route, if_match).await;
            return json(status, &value);
        }
        return stop(server, caller, route).await;
    }
    if method != Method::POST {
        return method_not_allowed("POST, DELETE");
    }
    let body = match mutation_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let plan = match Plan::parse(&body) {
        Ok(plan) => plan,
        Err(e) => return json(StatusCode::BAD_REQUEST, &json!({ "error": e.to_string() })),
    };
    if let Some(cluster) = server.cluster() {
        let (status, value) =
            super::cluster::start_rollout(server, cluster, caller, route, plan, if_match).await;
        return json(status, &value);
    }
    let (to, steps, interval) = (plan.to.clone(), plan.steps.clone(), plan.interval);
    match server.start_rollout(route, plan) {
        Ok(rollout) => {
            info!(caller = %caller, route, from = %rollout.from, to, ?steps,
                interval_ms = interval.as_millis() as u64, "admin rollout started");
            json(
                StatusCode::ACCEPTED,
                &json!({ "route": route, "rollout": rollout.to_json() }),
            )
        }
        Err(e) => {
            let status = match e {
                StartError::NoRoute(_) | StartError::NoPool(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::CONFLICT,
            };
            json(status, &json!({ "error": e.to_string() }))
        }
    }
}

async fn stop(server: &Server, caller: SocketAddr, route: &str) -> Response<ProxyBody> {
    match server.abort_rollout(route).await {
        Ok(Some(rollout)) => {
            server.save_state_durably().await;
            info!(caller = %caller, route, pool = %rollout.from, "admin rollout aborted");
            json(
                StatusCode::OK,
                &json!({ "route": route, "target": {"pool": rollout.from.as_ref()}, "rollout": rollout.to_json() }),
            )
        }
        Ok(None) => json(
            StatusCode::CONFLICT,
            &json!({ "error": format!("no rollout of route `{route}` is running") }),
        ),
        Err(e) => {
            let (status, value) = super::respond::route_change_refused(&e);
            json(status, &value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rollout_paths() {
        assert_eq!(parse("/routes/web/rollout"), Some(("web".into(), false)));
        assert_eq!(
            parse("/routes/web/rollout/abort"),
            Some(("web".into(), true))
        );
        assert_eq!(parse("/routes/web/switch"), None);
        assert_eq!(parse("/routes//rollout"), None);
    }
}
