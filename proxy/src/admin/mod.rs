//! The admin listener: liveness, readiness, Prometheus metrics, a JSON status view,
//! each backend's recent history and the event timeline, runtime control and the
//! live dashboard at `/`.
//!
//! It is a separate socket (loopback by default), never reachable through a traffic
//! listener, and the hardest part of the proxy to misuse: every request passes the
//! [`guard`] checks (Host allow-list; changes need JSON and no cross-site origin)
//! and the bearer token ([`auth`], with a per-client limit on wrong tokens) before
//! an endpoint sees it, and every change is written to the [`audit`] trail. No CORS
//! header is ever sent. Connections get the same head and idle timeouts as traffic
//! listeners and their own small cap, and accept errors back off.

mod audit;
mod auth;
mod cluster;
mod control;
mod dashboard;
mod guard;
mod history;
mod members;
mod plugins;
mod respond;
mod rollout;
mod status;
mod why;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::clock;
use crate::conn::{ActivityIo, ConnActivity, Expiry};
use crate::error::{ProxyBody, full_body, text_response};
use crate::server::Server;
pub use respond::json;
use respond::{method_not_allowed, mutation_body};

/// First pause after a failed accept (such as EMFILE); doubles up to [`MAX_ACCEPT_PAUSE`].
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between accepts while they keep failing.
const MAX_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

/// What every connection of the admin listener shares, across moves of the listener.
struct Shared {
    server: Arc<Server>,
    failures: auth::FailureLimiter,
}

/// Binds the admin listener and serves it until the server shuts down. A reload
/// that changes `admin.listen` moves it (see [`Server::start_admin`]).
pub fn start(server: Arc<Server>, address: SocketAddr) -> std::io::Result<SocketAddr> {
    let shared = Arc::new(Shared {
        failures: auth::FailureLimiter::default(),
        server: Arc::clone(&server),
    });
    // The server keeps this closure; it holds the shared state only weakly, so the
    // server and its admin listener do not keep each other alive.
    let weak = Arc::downgrade(&shared);
    let keep = Arc::clone(&shared);
    let bound = server.start_admin(
        address,
        Arc::new(move |listener, stop| {
            if let Some(shared) = weak.upgrade() {
                tokio::spawn(accept_loop(shared, listener, stop));
            }
        }),
    )?;
    // The accept loop holds `Shared` while it runs; this holds it between moves.
    tokio::spawn(async move {
        keep.server.shutdown_token().cancelled().await;
        drop(keep);
    });
    Ok(bound)
}

/// Accepts within the admin connection cap until `stop` fires. A failed accept
/// (out of file descriptors, most often) pauses the loop, longer each time, instead
/// of spinning on a socket that stays readable.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, stop: CancellationToken) {
    let mut pause = FIRST_ACCEPT_PAUSE;
    loop {
        let permit = tokio::select! {
            permit = shared.server.admin_connections().semaphore().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                pause = FIRST_ACCEPT_PAUSE;
                pair
            }
            Err(e) => {
                shared.server.metrics().control().accept_error();
                warn!(error = %e, pause_ms = pause.as_millis() as u64, "admin accept failed; pausing");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stop.cancelled() => break,
                }
                pause = (pause * 2).min(MAX_ACCEPT_PAUSE);
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        let stop = stop.clone();
        tokio::spawn(async move {
            serve_connection(&shared, stream, peer, stop).await;
            drop(permit);
        });
    }
    debug!("admin listener stopped accepting");
}

/// Serves one admin connection under the proxy's head and idle timeouts. When the
/// listener moves (or the proxy stops), the connection finishes its request and
/// closes.
async fn serve_connection(
    shared: &Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let limits = shared.server.snapshot().config.limits.clone();
    let activity = ConnActivity::new();
    let service = {
        let (shared, activity, stop) = (Arc::clone(shared), Arc::clone(&activity), stop.clone());
        service_fn(move |request| {
            let (shared, activity, stop) =
                (Arc::clone(&shared), Arc::clone(&activity), stop.clone());
            async move {
                activity.request_started();
                let response = handle(&shared, peer, &stop, request).await;
                activity.request_finished();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let io = TokioIo::new(ActivityIo::new(
        stream,
        Arc::clone(&activity),
        limits.max_header_bytes,
    ));
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let watchdog = activity.watchdog(limits.header_read_timeout, limits.idle_timeout);
    tokio::pin!(watchdog);
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(client = %peer, error = %e, "admin connection error");
                }
                break;
            }
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            expiry = &mut watchdog, if !closing => match expiry {
                Expiry::HeaderTimeout => {
                    shared.server.metrics().client_error("header_timeout");
                    info!(client = %peer, "closing admin connection: request head not received in time");
                    break;
                }
                Expiry::Idle => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            },
        }
    }
}

/// Every admin request: the guards, the token, then the endpoint; changes are
/// audited.
async fn handle(
    shared: &Shared,
    peer: SocketAddr,
    stop: &CancellationToken,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let server = &shared.server;
    let metrics = server.metrics().control();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    if stop.is_cancelled() {
        // Accepted on a socket the admin listener has left: the new config's rules
        // are not this socket's to apply.
        metrics.refused("moved");
        let mut response = text_response(
            StatusCode::MISDIRECTED_REQUEST,
            "the admin listener has moved or is stopping\n",
        );
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    let snapshot = server.snapshot();
    let admin = &snapshot.config.admin;
    let host = guard::host(&request);
    if !guard::host_allowed(host, server.admin_address(), &admin.allowed_hosts) {
        metrics.refused("host");
        let why = format!("Host `{}` is not this admin listener", host.unwrap_or(""));
        audit::refused(peer, &method, &path, StatusCode::MISDIRECTED_REQUEST, &why);
        return text_response(
            StatusCode::MISDIRECTED_REQUEST,
            "this admin API only answers to its own address, loopback names and admin.allowed_hosts\n",
        );
    }
    // The dashboard's static files hold no data; its data calls need the token as usual.
    if let Some(response) = dashboard::serve(&method, &path) {
        return response;
    }
    let mutation = method != Method::GET && method != Method::HEAD;
    if mutation {
        if let Some(why) = guard::cross_site(request.headers(), host) {
            metrics.refused("cross_site");
            audit::refused(peer, &method, &path, StatusCode::FORBIDDEN, &why);
            return text_response(
                StatusCode::FORBIDDEN,
                "cross-site requests may not change the proxy\n",
            );
        }
        if !guard::json_body(request.headers()) {
            metrics.refused("content_type");
            audit::refused(
                peer,
                &method,
                &path,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "no Content-Type: application/json",
            );
            return text_response(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "changes need Content-Type: application/json\n",
            );
        }
    }
    let via = if admin.token.is_some() {
        "token"
    } else {
        "open"
    };
    if path != "/health" && admin.token.is_some() {
        if let Some(wait) = shared.failures.blocked(peer.ip()) {
            metrics.refused("rate_limited");
            audit::refused(
                peer,
                &method,
                &path,
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong tokens",
            );
            let mut response = text_response(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong bearer tokens from this address; try again later\n",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
            return response;
        }
        let verdict = auth::check(request.headers(), admin.token.as_deref());
        if verdict != auth::Verdict::Valid {
            let wrong = verdict == auth::Verdict::Wrong;
            metrics.auth_failure(if wrong { "wrong" } else { "missing" });
            if wrong {
                shared.failures.failed(peer.ip());
            }
            warn!(caller = %peer, path, wrong, "admin request without a valid bearer token");
            if mutation {
                audit::refused(
                    peer,
                    &method,
                    &path,
                    StatusCode::UNAUTHORIZED,
                    "no valid bearer token",
                );
            }
            let mut response =
                text_response(StatusCode::UNAUTHORIZED, "missing or wrong bearer token\n");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    drop(snapshot);
    if !mutation {
        return route(server, peer, request).await;
    }
    let caller = audit::Caller { address: peer, via };
    let entry = audit::Entry::begin(server, caller, &method, &path);
    let response = route(server, peer, request).await;
    entry.finish(server, response.status());
    response
}

/// The endpoint for a request that passed every check.
async fn route(
    server: &Arc<Server>,
    peer: SocketAddr,
    request: Request<Incoming>,
) -> Response<ProxyBody> {
    let path = request.uri().path().to_string();
    if let Some(plugin) = plugins::parse_samples(&path) {
        return plugins::samples(server, request.method(), plugin);
    }
    let changes = rollout::parse(&path).is_some()
        || members::parse(&path).is_some()
        || control::parse_route(&path).is_some()
        || control::parse(&path).is_some();
    // In a fleet, a change may name the revision it was based on.
    let if_match = match server.cluster() {
        Some(_) if changes => match cluster::if_match(request.headers()) {
            Ok(revision) => revision,
            Err((status, value)) => return json(status, &value),
        },
        _ => None,
    };
    if let Some((route, abort)) = rollout::parse(&path) {
        return rollout::handle(server, peer, &route, abort, request, if_match).await;
    }
    if let Some(target) = members::parse(&path) {
        return members::handle(server, peer, target, request, if_match).await;
    }
    if let Some((route, action)) = control::parse_route(&path) {
        let body = match mutation_body(request).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let (status, value) =
            control::apply_route(server, peer, &route, action, &body, if_match).await;
        server.save_state_durably().await;
        return json(status, &value);
    }
    if let Some((pool, address, action)) = control::parse(&path) {
        let body = match mutation_body(request).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let (status, value) =
            control::apply(server, peer, &pool, &address, action, &body, if_match).await;
        server.save_state_durably().await;
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
        (&Method::GET, "/history") => json(
            StatusCode::OK,
            &history::history(server, history::since(request.uri().query())),
        ),
        (&Method::GET, "/events") => json(StatusCode::OK, &history::events(server)),
        (&Method::GET, "/cluster") => match server.cluster() {
            Some(cluster) => json(StatusCode::OK, &cluster.view_json()),
            None => json(
                StatusCode::NOT_FOUND,
                &serde_json::json!({"error": "this instance is not part of a fleet: its config has no [cluster] table"}),
            ),
        },
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
        (&Method::POST, "/upgrade") => upgrade(server, peer).await,
        (_, "/reload" | "/upgrade") => method_not_allowed("POST"),
        (
            _,
            "/health" | "/health/ready" | "/metrics" | "/status" | "/cluster" | "/history"
            | "/events",
        ) => method_not_allowed("GET"),
        _ => {
            warn!(path, "unknown admin path");
            text_response(StatusCode::NOT_FOUND, "not found\n")
        }
    }
}

/// `POST /upgrade`: hands over to a new process of the binary at this one's path,
/// then this one drains and exits. Answers once the new process serves (the next
/// request on this address reaches it).
async fn upgrade(server: &Arc<Server>, peer: SocketAddr) -> Response<ProxyBody> {
    use crate::upgrade::UpgradeError;
    info!(caller = %peer, "upgrade requested");
    match crate::upgrade::upgrade(server).await {
        Ok(upgraded) => {
            server.request_exit(true);
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "upgraded": true,
                    "pid": upgraded.pid,
                    "previous_pid": std::process::id(),
                }),
            )
        }
        Err(e) => {
            let status = match &e {
                UpgradeError::InProgress | UpgradeError::ShuttingDown => StatusCode::CONFLICT,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if e.is_fatal() {
                server.request_exit(false);
            }
            json(
                status,
                &serde_json::json!({
                    "error": e.to_string(),
                    "kept": if e.is_fatal() { "nothing: this process stopped accepting and exits" } else { "this process keeps serving" },
                }),
            )
        }
    }
}

/// `/health/ready`: 200 when the proxy serves (config loaded, listeners up, not
/// stopping) and every pool can take a request, with a usable backend of its own or
/// of its backup pool. A backend is usable unless it is drained or disabled, its
/// health checks say down, or its breaker ejected it; in a pool without `[health]`
/// nothing probes it, so it counts as usable until requests to it fail (a dead one
/// is found by traffic, and the breaker ejects it). The body says, pool by pool,
/// what was counted and how.
fn ready(server: &Server) -> Response<ProxyBody> {
    if !server.is_ready() {
        return text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: starting or stopping\n",
        );
    }
    let snapshot = server.snapshot();
    let now = clock::now_ms();
    let mut unusable = Vec::new();
    let mut lines = String::new();
    for pool in snapshot.pools.iter_sorted() {
        let usable = pool.usable_count(now);
        let judged = if pool.config.health.is_some() {
            "health-checked"
        } else {
            "no health check: backends count as usable until requests to them fail"
        };
        lines.push_str(&format!(
            "{}: {usable} of {} backends usable ({judged})",
            pool.name,
            pool.backends.len()
        ));
        if usable == 0 {
            let backup = pool
                .config
                .failover
                .backup
                .as_deref()
                .and_then(|b| snapshot.pools.get(b))
                .filter(|b| b.usable_count(now) > 0);
            match backup {
                Some(backup) => lines.push_str(&format!(", served by backup pool {}", backup.name)),
                None => unusable.push(pool.name.to_string()),
            }
        }
        lines.push('\n');
    }
    let (status, text) = if unusable.is_empty() {
        (StatusCode::OK, format!("ready\n{lines}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: no usable backend in pool(s) {}\n{lines}",
                unusable.join(", ")
            ),
        )
    };
    let mut response = Response::new(full_body(Bytes::from(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
