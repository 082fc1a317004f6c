//! Accepting client connections on a traffic listener and serving them with hyper.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::activity::{ActivityIo, ConnActivity, Expiry};
use crate::config::Limits;
use crate::proxy::{ConnInfo, Proxy};

/// How long a connection accepted just before a drain may take to send its first
/// request before it is closed (hyper closes a connection that sent nothing at once).
const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

/// Binds a listening socket with `SO_REUSEADDR` and a deep accept backlog.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Everything a listener's accept loop shares with its connections.
#[derive(Clone)]
pub struct ListenerContext {
    pub name: Arc<str>,
    pub tls: Option<TlsAcceptor>,
    pub proxy: Arc<Proxy>,
    pub limits: Limits,
    pub connections: Arc<Semaphore>,
    pub tracker: TaskTracker,
    /// Stops this listener's accept loop (config reload removed it, or shutdown).
    pub stop_accepting: CancellationToken,
    /// Asks every connection to finish its in-flight requests and close.
    pub drain: CancellationToken,
}

/// Accepts until `stop_accepting` fires, within the global connection cap.
pub async fn accept_loop(listener: Arc<TcpListener>, ctx: ListenerContext) {
    let builder = Arc::new(http_builder(&ctx.limits));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&ctx.connections).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            () = ctx.stop_accepting.cancelled() => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = ctx.stop_accepting.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                warn!(listener = %ctx.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        let builder = Arc::clone(&builder);
        ctx.tracker.clone().spawn(async move {
            serve_stream(stream, peer, ctx, builder).await;
            drop(permit);
        });
    }
    debug!(listener = %ctx.name, "stopped accepting");
}

async fn serve_stream(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: ListenerContext,
    builder: Arc<auto::Builder<TokioExecutor>>,
) {
    match ctx.tls.clone() {
        None => serve_io(stream, peer, false, &ctx, &builder).await,
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(ctx.limits.header_read_timeout, acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls)) => serve_io(tls, peer, true, &ctx, &builder).await,
                Ok(Err(e)) => {
                    ctx.proxy.metrics.client_error("tls_handshake");
                    debug!(client = %peer, error = %e, "TLS handshake failed");
                }
                Err(_) => {
                    ctx.proxy.metrics.client_error("tls_handshake");
                    debug!(client = %peer, "TLS handshake timed out");
                }
            }
        }
    }
}

async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    tls: bool,
    ctx: &ListenerContext,
    builder: &auto::Builder<TokioExecutor>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = ConnActivity::new();
    let info = ConnInfo {
        listener: Arc::clone(&ctx.name),
        client: peer,
        tls,
        activity: Arc::clone(&activity),
    };
    let proxy = Arc::clone(&ctx.proxy);
    let service = service_fn(move |request| {
        let proxy = Arc::clone(&proxy);
        let info = info.clone();
        async move { Ok::<_, Infallible>(proxy.serve(&info, request).await) }
    });
    let io = TokioIo::new(ActivityIo::new(io, Arc::clone(&activity)));
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let watchdog = activity.watchdog(ctx.limits.header_read_timeout, ctx.limits.idle_timeout);
    tokio::pin!(watchdog);
    // A connection accepted just before a drain began has its first request on the
    // way: hyper would close it unread (the client sees a reset), so it gets a
    // moment to arrive, and is then answered with `Connection: close`.
    let first_request_grace = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(first_request_grace);
    let mut awaiting_first_request = false;
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    report_connection_error(&ctx.proxy, peer, &*e);
                }
                break;
            }
            () = ctx.drain.cancelled(), if !closing && !awaiting_first_request => {
                if activity.received_nothing() {
                    awaiting_first_request = true;
                    first_request_grace.as_mut().reset(
                        tokio::time::Instant::now()
                            + FIRST_REQUEST_GRACE.min(ctx.limits.header_read_timeout),
                    );
                } else {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
            () = &mut first_request_grace, if awaiting_first_request && !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            expiry = &mut watchdog, if !closing => match expiry {
                Expiry::HeaderTimeout => {
                    ctx.proxy.metrics.client_error("header_timeout");
                    info!(client = %peer, timeout_ms = ctx.limits.header_read_timeout.as_millis() as u64,
                        "closing connection: request head not received in time");
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

fn report_connection_error(
    proxy: &Proxy,
    peer: SocketAddr,
    error: &(dyn std::error::Error + 'static),
) {
    let Some(hyper_error) = error.downcast_ref::<hyper::Error>() else {
        debug!(client = %peer, error = %error, "connection ended with an error");
        return;
    };
    let kind = if hyper_error.is_parse_too_large() {
        "header_too_large"
    } else if hyper_error.is_parse() || hyper_error.is_parse_status() {
        "malformed"
    } else if hyper_error.is_timeout() {
        "timeout"
    } else {
        debug!(client = %peer, error = %error, "client connection closed");
        return;
    };
    proxy.metrics.client_error(kind);
    info!(client = %peer, kind, error = %error, "rejected a malformed request");
}

/// hyper settings from the configured limits: head size and field count (431 beyond),
/// HTTP/2 stream and window limits.
fn http_builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .keep_alive(true)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(100)
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(4 * 1024 * 1024)
        .max_header_list_size(limits.max_header_bytes as u32)
        .max_pending_accept_reset_streams(50)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}
