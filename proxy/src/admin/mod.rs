//! The admin listener: liveness, readiness, Prometheus metrics, a JSON status view and
//! the live dashboard at `/`.
//! It is a separate socket (loopback by default) and never reachable through a
//! traffic listener.

mod control;
mod dashboard;
mod members;
mod plugins;
mod rollout;
mod status;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tracing::{debug, info, warn};

use crate::clock;
use crate::error::{ProxyBody, full_body, text_response};
use crate::server::{Server, bind};

/// Binds the admin listener and serves it until the server shuts down.
pub fn start(server: Arc<Server>, address: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = bind(address)?;
    let bound = listener.local_addr()?;
    server.set_admin_address(bound);
    info!(address = %bound, "admin listening");
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        let builder = auto::Builder::new(TokioExecutor::new());
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = shutdown.cancelled() => break,
            };
            let Ok((stream, peer)) = accepted else {
                continue;
            };
            let server = Arc::clone(&server);
            let builder = builder.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let server = Arc::clone(&server);
                    async move { Ok::<_, Infallible>(handle(&server, peer, request).await) }
                });
                if let Err(e) = builder
                    .serve_connection(TokioIo::new(stream), service)
                    .await
                {
                    debug!(error = %e, "admin connection error");
                }
            });
        }
    });
    Ok(bound)
}

async fn handle(
    server: &Arc<Server>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let path = request.uri().path().to_string();
    // The dashboard's static files hold no data; its data calls need the token as usual.
    if let Some(response) = dashboard::serve(request.method(), &path) {
        return response;
    }
    if path != "/health" && !authorised(server, &request) {
        warn!(caller = %peer, path, "admin request without a valid bearer token");
        let mut response =
            text_response(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    if let Some(plugin) = plugins::parse_samples(&path) {
        return plugins::samples(server, request.method(), plugin);
    }
    if let Some((route, abort)) = rollout::parse(&path) {
        return rollout::handle(server, peer, &route, abort, request).await;
    }
    if let Some(target) = members::parse(&path) {
        return members::handle(server, peer, target, request).await;
    }
    if let Some((route, action)) = control::parse_route(&path) {
        let body = match mutation_body(request).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let (status, value) = control::apply_route(server, peer, &route, action, &body).await;
        server.save_state();
        return json(status, &value);
    }
    if let Some((pool, address, action)) = control::parse(&path) {
        let body = match mutation_body(request).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let (status, value) = control::apply(server, peer, &pool, &address, action, &body);
        server.save_state();
        return json(status, &value);
    }
    let path = path.as_str();
    match (request.method(), path) {
        (&Method::GET, "/health") => text_response(StatusCode::OK, "ok\n"),
        (&Method::GET, "/health/ready") => ready(server),
        (&Method::GET, "/metrics") => {
            let openmetrics = request
                .headers()
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("application/openmetrics-text"));
            let (text, content_type) = if openmetrics {
                (
                    server.metrics().encode(),
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
            } else {
                (
                    server.metrics().encode_prometheus(),
                    "text/plain; version=0.0.4; charset=utf-8",
                )
            };
            let mut response = Response::new(full_body(Bytes::from(text)));
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            response
        }
        (&Method::GET, "/status") => json(StatusCode::OK, &status::status(server)),
        (&Method::POST, "/reload") => match server.config_path() {
            None => json(
                StatusCode::CONFLICT,
                &serde_json::json!({"error": "not running from a config file"}),
            ),
            Some(path) => match crate::reload::reload(server, &path).await {
                Ok(()) => {
                    info!(caller = %peer, "config reloaded on request");
                    json(
                        StatusCode::OK,
                        &serde_json::json!({"reloaded": path.display().to_string()}),
                    )
                }
                Err(e) => json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &serde_json::json!({"error": e.to_string(), "kept": "the running config"}),
                ),
            },
        },
        (_, "/reload") => method_not_allowed("POST"),
        (_, "/health" | "/health/ready" | "/metrics" | "/status") => method_not_allowed("GET"),
        _ => {
            warn!(path, "unknown admin path");
            text_response(StatusCode::NOT_FOUND, "not found\n")
        }
    }
}

fn method_not_allowed(allow: &'static str) -> Response<ProxyBody> {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The body of a mutation: POST only (405 otherwise), at most 64 KiB (400 otherwise).
async fn mutation_body(request: Request<Incoming>) -> Result<Bytes, Response<ProxyBody>> {
    if request.method() != Method::POST {
        return Err(method_not_allowed("POST"));
    }
    http_body_util::Limited::new(request.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| text_response(StatusCode::BAD_REQUEST, "unreadable or oversized body\n"))
}

/// Whether the request carries the configured bearer token (always true without one).
fn authorised(server: &Server, request: &Request<Incoming>) -> bool {
    let snapshot = server.snapshot();
    let Some(token) = snapshot.config.admin.token.as_deref() else {
        return true;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    constant_time_eq(presented.as_bytes(), token.as_bytes())
}

/// Compares secrets without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// 200 when the config is loaded and every pool has a usable backend (or a usable backup).
fn ready(server: &Server) -> Response<ProxyBody> {
    if !server.is_ready() {
        return text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or stopping\n",
        );
    }
    let snapshot = server.snapshot();
    let now = clock::now_ms();
    let unusable: Vec<String> = snapshot
        .pools
        .iter_sorted()
        .into_iter()
        .filter(|p| p.usable_count(now) == 0)
        .map(|p| p.name.to_string())
        .collect();
    if unusable.is_empty() {
        text_response(StatusCode::OK, "ready\n")
    } else {
        let mut response = Response::new(full_body(Bytes::from(format!(
            "not ready: no usable backend in pool(s) {}\n",
            unusable.join(", ")
        ))));
        *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        response
    }
}

/// A JSON response.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(full_body(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
