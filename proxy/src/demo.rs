//! `switchyard demo`: three small backends on loopback, one of them flaky, fronted by
//! an embedded config, so a fresh clone shows health checks and failover in action.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};

/// The embedded demo config, with placeholders for addresses.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// How a demo backend behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Always answers 200.
    Steady,
    /// Alternates between healthy and failing (500s) every `period`.
    Flaky { period: Duration },
}

/// Starts a demo backend named `name` on `address` (port 0 for any) and returns where it listens.
pub async fn spawn_backend(
    name: &'static str,
    address: SocketAddr,
    behaviour: Behaviour,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let started = Instant::now();
    let served = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                    let failing = match behaviour {
                        Behaviour::Steady => false,
                        Behaviour::Flaky { period } => {
                            (started.elapsed().as_millis() / period.as_millis().max(1)) % 2 == 1
                        }
                    };
                    async move {
                        let (status, body) = if failing {
                            (
                                StatusCode::INTERNAL_SERVER_ERROR,
                                format!("{name} ({bound}) is having a bad moment\n"),
                            )
                        } else if request.uri().path() == "/health" {
                            (StatusCode::OK, "ok\n".to_string())
                        } else {
                            (
                                StatusCode::OK,
                                format!(
                                    "hello from {name} ({bound}), request #{n}, path {}\n",
                                    request.uri().path()
                                ),
                            )
                        };
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = status;
                        response
                            .headers_mut()
                            .insert("x-backend", http::HeaderValue::from_static(name));
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// Starts the three demo backends and returns the demo config pointing at them.
pub async fn prepare(
    listen: SocketAddr,
    admin: SocketAddr,
) -> std::io::Result<Result<Config, ConfigError>> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let alpha = spawn_backend("alpha", any, Behaviour::Steady).await?;
    let bravo = spawn_backend("bravo", any, Behaviour::Steady).await?;
    let charlie = spawn_backend(
        "charlie",
        any,
        Behaviour::Flaky {
            period: Duration::from_secs(10),
        },
    )
    .await?;
    let text = DEMO_CONFIG
        .replace("{{listen}}", &listen.to_string())
        .replace("{{admin}}", &admin.to_string())
        .replace("{{alpha}}", &alpha.to_string())
        .replace("{{bravo}}", &bravo.to_string())
        .replace("{{charlie}}", &charlie.to_string())
        .replace(
            "{{plugins}}",
            &crate::plugin::shipped_plugin_dir().display().to_string(),
        );
    Ok(Config::parse(Path::new("<demo>"), &text))
}
