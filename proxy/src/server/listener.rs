//! Accepting client connections on a traffic listener and serving them with hyper.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use socket2::{Domain, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::park::{PARK_AFTER, Parkable, Readiness};
use super::streams::{ConnExecutor, ConnStreams};
use super::tls::TlsSlot;
use crate::config::Limits;
use crate::conn::{ActivityIo, ConnActivity, ConnInfo, ConnPermit, Expiry, Watch};
use crate::proxy::Proxy;
use crate::shard::Shards;
use crate::tls::{ACME_TLS_ALPN, Challenges};

/// First pause after a failed accept; doubled on each failure in a row.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
/// Longest pause between accepts while they keep failing (e.g. out of file descriptors).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// At most one accept-failure log line per listener this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(5);

/// HTTP/2 streams a client may have open on one connection (HAProxy and Envoy's edge
/// setting).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Streams a client may reset before the proxy accepted them (rapid reset) before
/// the connection is closed.
pub const H2_MAX_PENDING_ACCEPT_RESETS: usize = 50;
/// Streams the proxy may have to reset for the client's own errors before the
/// connection is closed.
pub const H2_MAX_LOCAL_ERROR_RESETS: usize = 128;

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
    pub tls: Option<TlsSlot>,
    /// ACME HTTP-01 answers, served before routing.
    pub challenges: Arc<Challenges>,
    pub proxy: Arc<Proxy>,
    pub limits: Limits,
    pub connections: Arc<Semaphore>,
    /// The threads that serve connections; `None` serves them on this runtime.
    pub shards: Option<Arc<Shards>>,
    pub tracker: TaskTracker,
    /// Stops this listener's accept loop (config reload removed it, or shutdown).
    pub stop_accepting: CancellationToken,
    /// Asks every connection to finish its in-flight requests and close.
    pub drain: CancellationToken,
}

/// Accepts until `stop_accepting` fires, within the global connection cap and the
/// per-client cap. A failing accept (out of file descriptors) backs off instead of
/// spinning, and is logged once per streak.
pub async fn accept_loop(listener: Arc<TcpListener>, ctx: ListenerContext) {
    // Shared by every connection's task rather than copied into each.
    let ctx = Arc::new(ctx);
    let builder = Arc::new(http_builder(&ctx.limits));
    let mut backoff = AcceptBackoff::default();
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
            Ok(pair) => {
                backoff.succeeded(&ctx.name);
                pair
            }
            Err(e) => {
                ctx.proxy.metrics.accept_error(&ctx.name);
                drop(permit);
                if let Some(pause) = backoff.failed(&ctx.name, &e) {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = ctx.stop_accepting.cancelled() => break,
                    }
                }
                continue;
            }
        };
        let limit = ctx
            .proxy
            .snapshot
            .load()
            .config
            .limits
            .max_connections_per_ip;
        let client = match limit {
            None => None,
            Some(limit) => match ctx.proxy.clients.try_acquire(peer.ip(), limit) {
                Some(slot) => Some(slot),
                None => {
                    ctx.proxy.metrics.connection_refused("per_client_cap");
                    debug!(listener = %ctx.name, client = %peer, limit,
                        "connection refused: the client is at its connection cap");
                    continue;
                }
            },
        };
        let permit = ConnPermit::new(permit, client);
        let _ = stream.set_nodelay(true);
        let Some(shards) = ctx.shards.clone() else {
            // The connection's own function is the task: no wrapper holding a
            // second copy of its arguments.
            ctx.tracker.clone().spawn(serve_stream(
                stream,
                peer,
                Arc::clone(&ctx),
                Arc::clone(&builder),
                Arc::new(permit),
            ));
            continue;
        };
        // Runs on the shard: the connection's task is spawned on its runtime.
        let serve = {
            let (ctx, builder) = (Arc::clone(&ctx), Arc::clone(&builder));
            move |stream, seat| {
                let permit = Arc::new(permit.seated(seat));
                ctx.tracker
                    .clone()
                    .spawn(serve_stream(stream, peer, ctx, builder, permit));
            }
        };
        if let Err(e) = shards.hand_over(stream, serve) {
            warn!(listener = %ctx.name, client = %peer, error = %e,
                "connection closed: no shard could take it");
        }
    }
    debug!(listener = %ctx.name, "stopped accepting");
}

/// Pauses between failing accepts: none for errors about one connection (it was
/// reset before we took it), growing pauses for errors about the process (file
/// descriptors, memory), with one log line per streak and per [`ACCEPT_LOG_EVERY`].
#[derive(Debug, Default)]
struct AcceptBackoff {
    streak: u32,
    last_log: Option<tokio::time::Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    fn failed(&mut self, listener: &str, error: &io::Error) -> Option<Duration> {
        use io::ErrorKind;
        if matches!(
            error.kind(),
            ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
        ) {
            debug!(listener, error = %error, "accept: the connection was gone before it was taken");
            return None;
        }
        let pause = ACCEPT_BACKOFF_MIN
            .saturating_mul(1 << self.streak.min(10))
            .min(ACCEPT_BACKOFF_MAX);
        self.streak += 1;
        let now = tokio::time::Instant::now();
        if self
            .last_log
            .is_none_or(|at| now.duration_since(at) >= ACCEPT_LOG_EVERY)
        {
            warn!(listener, error = %error, failures = self.streak, suppressed = self.suppressed,
                pause_ms = pause.as_millis() as u64, "accept failed: backing off");
            self.last_log = Some(now);
            self.suppressed = 0;
        } else {
            self.suppressed += 1;
        }
        Some(pause)
    }

    fn succeeded(&mut self, listener: &str) {
        if self.streak > 0 {
            info!(
                listener,
                failures = self.streak,
                "accepting again after failed accepts"
            );
        }
        self.streak = 0;
        self.suppressed = 0;
    }
}

async fn serve_stream(
    stream: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerContext>,
    builder: Arc<auto::Builder<ConnExecutor>>,
    permit: Arc<ConnPermit>,
) {
    match &ctx.tls {
        None => serve_io(stream, peer, false, &ctx, &builder, permit).await,
        // Boxed: a plain connection's task does not carry the room a TLS one needs.
        Some(slot) => Box::pin(serve_tls(stream, peer, slot, &ctx, &builder, permit)).await,
    }
}

async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    slot: &TlsSlot,
    ctx: &ListenerContext,
    builder: &auto::Builder<ConnExecutor>,
    permit: Arc<ConnPermit>,
) {
    let acceptor = slot.acceptor();
    let handshake =
        tokio::time::timeout(ctx.limits.header_read_timeout, acceptor.accept(stream)).await;
    match handshake {
        // An ACME TLS-ALPN-01 validation: the handshake was the whole answer.
        Ok(Ok(tls)) if tls.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) => {
            debug!(client = %peer, "answered an ACME tls-alpn-01 validation");
        }
        Ok(Ok(tls)) => serve_io(tls, peer, true, ctx, builder, permit).await,
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

/// Serves one client connection: hyper over the stream, the watchdog's deadlines,
/// drains, and parking while idle (see [`super::park`]): a keep-alive connection
/// quiet for [`PARK_AFTER`] gives up its hyper connection and waits on the bare
/// socket; its next request starts a fresh one.
async fn serve_io<I>(
    io: I,
    peer: SocketAddr,
    tls: bool,
    ctx: &ListenerContext,
    builder: &auto::Builder<ConnExecutor>,
    permit: Arc<ConnPermit>,
) where
    I: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
{
    let activity = ConnActivity::new();
    // Shared by every request of the connection, across its spells.
    let info = Arc::new(ConnInfo {
        listener: Arc::clone(&ctx.name),
        client: peer,
        forwarded_for: crate::proxy::forwarded_for(peer.ip()),
        tls,
        activity: Arc::clone(&activity),
        permit,
    });
    let stream = Parkable::new(ActivityIo::new(
        io,
        Arc::clone(&activity),
        ctx.limits.max_header_bytes,
    ));
    let limits = &ctx.limits;
    loop {
        // On the heap, so a parked connection's task keeps neither hyper's state nor
        // the room that serving needs: a parked connection costs little memory.
        let served = Box::pin(ConnStreams::scope(serve_until_parked(
            &stream, &info, ctx, builder,
        )))
        .await;
        if served == Served::Closed {
            return;
        }
        // Parked: only the socket, until the client speaks, the idle timeout, or a drain.
        let counted = Counted::new(ctx.proxy.metrics.parked());
        let resume = tokio::select! {
            ready = stream.readable() => ready.is_ok(),
            () = ctx.drain.cancelled() => false,
            () = tokio::time::sleep(activity.idle_left(limits.idle_timeout)) => false,
        };
        drop(counted);
        if !resume {
            return;
        }
    }
}

/// How a spell of serving a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Served {
    /// The connection is done (closed, drained, timed out or upgraded).
    Closed,
    /// Idle and parked: the socket is open and hyper let go of it.
    Parked,
}

/// One hyper connection over the stream, until the connection ends or is parked.
async fn serve_until_parked<I>(
    stream: &Parkable<ActivityIo<I>>,
    info: &Arc<ConnInfo>,
    ctx: &ListenerContext,
    builder: &auto::Builder<ConnExecutor>,
) -> Served
where
    I: AsyncRead + AsyncWrite + Readiness + Unpin + Send + 'static,
{
    let activity = &info.activity;
    let peer = info.client;
    let limits = &ctx.limits;
    let watch = activity.watch(
        limits.header_read_timeout,
        limits.idle_timeout,
        Some(PARK_AFTER),
    );
    tokio::pin!(watch);
    // A connection accepted just before a drain began has its first request on the
    // way: hyper would close it unread (the client sees a reset), so it gets a
    // moment to arrive, and is then answered with `Connection: close`.
    let first_request_grace = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(first_request_grace);
    let mut awaiting_first_request = false;
    let mut closing = false;
    let mut conn = pin!(
        builder.serve_connection_with_upgrades(TokioIo::new(stream.handle()), service(ctx, info))
    );
    let mut parking = false;
    loop {
        tokio::select! {
            // The connection first, then its HTTP/2 streams: a stream it accepted in
            // this poll starts in the same one (nothing else would wake this task).
            biased;
            result = conn.as_mut() => {
                if let Some(flood) = activity.flood() {
                    ctx.proxy.metrics.client_error(flood.reason());
                    info!(client = %peer, reason = flood.reason(), "closing connection: {flood}");
                } else if let Err(e) = result {
                    report_connection_error(&ctx.proxy, peer, &*e);
                }
                break;
            }
            () = ctx.drain.cancelled(), if !closing && !awaiting_first_request => {
                // Only a connection's first spell can have received nothing: a
                // parked one has served a request.
                if activity.received_nothing() {
                    awaiting_first_request = true;
                    first_request_grace.as_mut().reset(
                        tokio::time::Instant::now()
                            + FIRST_REQUEST_GRACE.min(limits.header_read_timeout),
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
            watched = &mut watch, if !closing && !parking => match watched {
                Watch::Expired(Expiry::HeaderTimeout) => {
                    ctx.proxy.metrics.client_error("header_timeout");
                    info!(client = %peer, timeout_ms = limits.header_read_timeout.as_millis() as u64,
                        "closing connection: request head not received in time");
                    return Served::Closed;
                }
                Watch::Expired(Expiry::Idle) => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                Watch::Park => {
                    stream.park();
                    parking = true;
                    watch.set(activity.watch(limits.header_read_timeout, limits.idle_timeout, None));
                }
            },
            () = std::future::poll_fn(ConnStreams::poll_running) => {}
        }
    }
    if closing || !stream.parked() {
        Served::Closed
    } else {
        Served::Parked
    }
}

/// Counts one in a gauge for as long as it lives.
struct Counted<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> Counted<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The hyper service of one connection: ACME HTTP-01 answers, else the proxy.
fn service(
    ctx: &ListenerContext,
    info: &Arc<ConnInfo>,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<crate::error::ProxyBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<crate::error::ProxyBody>, Infallible>>
             + Send
             + 'static,
> + Clone
+ Send
+ 'static {
    let proxy = Arc::clone(&ctx.proxy);
    let challenges = Arc::clone(&ctx.challenges);
    // One reference count per request rather than one for each of its fields.
    let info = Arc::clone(info);
    service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
        let proxy = Arc::clone(&proxy);
        let info = Arc::clone(&info);
        let challenge = challenges.http_answer(request.uri().path());
        async move {
            if let Some(answer) = challenge {
                return Ok::<_, Infallible>(acme_answer(answer));
            }
            Ok::<_, Infallible>(proxy.serve(&info, request).await)
        }
    })
}

/// The reply to an ACME HTTP-01 validation request: the key authorization.
fn acme_answer(key_authorization: String) -> hyper::Response<crate::error::ProxyBody> {
    let mut response = hyper::Response::new(crate::error::full_body(bytes::Bytes::from(
        key_authorization,
    )));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

fn report_connection_error(
    proxy: &Proxy,
    peer: SocketAddr,
    error: &(dyn std::error::Error + 'static),
) {
    if let Some(reason) = h2_abuse(error) {
        proxy.metrics.client_error(reason);
        info!(client = %peer, reason, error = %error, "closing an HTTP/2 connection that broke the protocol limits");
        return;
    }
    let Some(hyper_error) = error.downcast_ref::<hyper::Error>() else {
        debug!(client = %peer, error = %error, "connection ended with an error");
        return;
    };
    let reason = if hyper_error.is_parse_too_large() {
        "header_too_large"
    } else if hyper_error.is_parse() || hyper_error.is_parse_status() {
        "malformed"
    } else if hyper_error.is_timeout() {
        "timeout"
    } else {
        debug!(client = %peer, error = %error, "client connection closed");
        return;
    };
    proxy.metrics.client_error(reason);
    info!(client = %peer, reason, error = %error, "rejected a malformed request");
}

/// An HTTP/2 connection the h2 crate itself ended for abuse (too many resets of
/// unaccepted streams or of streams it had to refuse, an oversized header list, a
/// CONTINUATION run): its GOAWAY reason, as a metric reason.
fn h2_abuse(error: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if !(h2.is_go_away() && h2.is_library()) {
                return None;
            }
            return match h2.reason() {
                Some(h2::Reason::ENHANCE_YOUR_CALM) => Some("h2_enhance_your_calm"),
                Some(_) => Some("h2_protocol_error"),
                None => None,
            };
        }
        cause = e.source();
    }
    None
}

/// hyper settings from the configured limits: head size and field count (431 beyond),
/// HTTP/2 stream, window, header-list and reset limits.
fn http_builder(limits: &Limits) -> auto::Builder<ConnExecutor> {
    let mut builder = auto::Builder::new(ConnExecutor);
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
        .max_concurrent_streams(H2_MAX_CONCURRENT_STREAMS)
        .initial_stream_window_size(1024 * 1024)
        .initial_connection_window_size(4 * 1024 * 1024)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_pending_accept_reset_streams(H2_MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(H2_MAX_LOCAL_ERROR_RESETS)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}
