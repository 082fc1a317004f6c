//! The HTTP client that carries requests to backends.
//!
//! Every backend address has its own pool of idle keep-alive connections, a stack
//! ([`IdleStack`]): the connection given back last is taken next, under a lock
//! held for a push or a pop (and the sweep) and shared by no other backend; each
//! shard ([`crate::shard`]) has a stack of its own (and an HTTP/2 connection of its
//! own), so a connection is only ever used by the thread whose event loop it is
//! registered in. A request
//! takes an idle connection (or opens one: TCP with the connect timeout, TLS when
//! the pool asks for it, HTTP/2 when ALPN settles on it), sends, and the connection
//! goes back once its answer has been read to the end, unless something marked it
//! unfit ([`ResponseBody::poison`]: an answer whose framing cannot be trusted). A
//! request that could not even be written to a reused connection (the backend
//! closed it while it sat idle) is sent again on a fresh one. Connections idle
//! longer than `limits.upstream_idle_timeout`, and those beyond
//! `limits.upstream_idle_per_backend`, are closed.
//!
//! An HTTP/1 connection has no task of its own: the request that holds it drives
//! it, first while waiting for the answer's head, then from the answer's body
//! ([`ResponseBody`]) as the client reads it. Its bytes move where they are
//! wanted, without a hand-over between tasks. An HTTP/2 connection, shared by
//! many requests, and one that a request upgrades (WebSocket) run on their own
//! task.

// foldhash: the pools are looked up by backend address on every request; the
// addresses come from the config or discovery, never from clients.
use foldhash::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use http::header::{HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tracing::debug;

use super::connect::{self, ConnectError, PoolTls, TcpSettings, UpstreamIo, UpstreamStream};
use super::h1::{Decoder, H1Conn, H1Error, HeadLimits};
use super::idle::IdleStack;
use crate::clock;
use crate::config::Limits;
use crate::shard;

use super::outgoing::no_body;
pub use super::outgoing::{OutgoingHead, UpstreamBody};

/// How often idle connections are checked for expiry.
const SWEEP_EVERY: Duration = Duration::from_secs(2);

/// Keep-alive connections to backends, pooled per backend address.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    settings: Settings,
    target: Target,
    /// One pool per backend address; read without a lock, replaced whole when a
    /// backend is first seen or its pool is swept away.
    hosts: ArcSwap<HashMap<SocketAddr, Arc<HostPool>>>,
    sweeping: OnceLock<()>,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    tcp: TcpSettings,
    idle_timeout_ms: u64,
    idle_per_backend: usize,
    /// How large an answer head may get (over them it is a 502, never relayed).
    head: HeadLimits,
}

/// Where connections go.
#[derive(Debug)]
enum Target {
    /// Plain TCP to whatever address the request's head names.
    Plain,
    /// TLS to one backend, presenting and verifying `name`, whatever authority the
    /// requests carry (the client's host, as HTTP/2 wants it).
    Tls {
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    },
}

/// Why a request got no answer from the backend.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection could be opened (nothing was sent).
    #[error("{0}")]
    Connect(#[source] ConnectError),
    /// The connection was opened but HTTP could not start on it (nothing was sent).
    #[error("connection to the backend failed: {0}")]
    Handshake(#[source] hyper::Error),
    /// The exchange failed on an HTTP/2 or upgraded connection: the request could
    /// not be written in full, or the answer was missing, cut or invalid.
    #[error("{0}")]
    Send(#[source] hyper::Error),
    /// The exchange failed on an HTTP/1 connection.
    #[error("{0}")]
    Exchange(#[source] H1Error),
}

impl ClientError {
    /// Nothing reached the backend: the connection could not be opened.
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect(_) | ClientError::Handshake(_))
    }
}

impl UpstreamClient {
    /// A plain-HTTP client (each request's head names its backend) honouring the connect
    /// timeout, idle pool limits, and the head size and field count limits for answers.
    pub fn new(limits: &Limits) -> Self {
        Self::build(limits, Target::Plain)
    }

    /// A client for one backend over TLS (HTTP/2 where ALPN settles on it). Requests
    /// may carry any authority (the client's host): the connection always goes to
    /// `addr`, presenting the name the pool's TLS gives it.
    pub fn to_tls_backend(
        limits: &Limits,
        tls: &PoolTls,
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> Self {
        let target = Target::Tls {
            addr,
            config: Arc::clone(tls.config()),
            name: tls.server_name(addr, origin),
        };
        Self::build(limits, target)
    }

    fn build(limits: &Limits, target: Target) -> Self {
        let settings = Settings {
            tcp: tcp_settings(limits),
            idle_timeout_ms: limits.upstream_idle_timeout.as_millis() as u64,
            idle_per_backend: limits.upstream_idle_per_backend,
            head: HeadLimits {
                max_head: limits.max_header_bytes.max(8192),
                max_headers: limits.max_headers,
            },
        };
        Self {
            shared: Arc::new(Shared {
                settings,
                target,
                hosts: ArcSwap::default(),
                sweeping: OnceLock::new(),
            }),
        }
    }

    /// Sends a request to `head.addr` (or this client's TLS backend) and returns
    /// the answer's head; its body streams from the connection.
    pub async fn request(
        &self,
        head: OutgoingHead<'_>,
        mut body: UpstreamBody,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let shared = &*self.shared;
        let addr = match &shared.target {
            Target::Tls { addr, .. } => *addr,
            Target::Plain => head.addr,
        };
        let pool = self.host(addr);
        if head.headers.contains_key(UPGRADE) {
            // Boxed: rare, and its state would otherwise grow every request's future.
            return Box::pin(shared.upgrade(addr, head.to_request(body))).await;
        }
        loop {
            let now = clock::now_ms();
            let (conn, reused) = match pool.checkout(now, shared.settings.idle_timeout_ms) {
                Some(conn) => (conn, true),
                None => {
                    // Boxed: a new connection (TCP, TLS, HTTP/2 handshake) is rare
                    // next to a pooled one, and its state is the largest part.
                    let conn = Box::pin(shared.connect(addr)).await?;
                    // An HTTP/2 connection is shared from the start: later requests
                    // open streams on it while this one runs.
                    if let Conn::H2(sender) = &conn {
                        pool.put(Conn::H2(sender.clone()));
                    }
                    (conn, false)
                }
            };
            match conn {
                Conn::H2(mut sender) => {
                    if let Err(e) = sender.ready().await {
                        if reused {
                            continue;
                        }
                        return Err(ClientError::Send(e));
                    }
                    match sender.try_send_request(head.to_request(body)).await {
                        Ok(response) => return Ok(response.map(ResponseBody::hyper)),
                        Err(mut e) => match e.take_message() {
                            // Never written: the connection had closed meanwhile.
                            Some(unsent) if reused => {
                                debug!(backend = %addr, error = %e.error(), "a reused connection was closed; sending on another");
                                body = unsent.into_body();
                            }
                            _ => return Err(ClientError::Send(e.into_error())),
                        },
                    }
                }
                Conn::H1(mut conn) => match conn.exchange(&head, body).await {
                    Ok(answer) => {
                        let body = ResponseBody::h1(conn, answer.body, answer.keep_alive, pool);
                        return Ok(answer.response.map(|()| body));
                    }
                    // Nothing came back and nothing is lost by sending again: the
                    // backend had closed the reused connection.
                    Err(failed) if failed.may_resend && reused => {
                        debug!(backend = %addr, error = %failed.error, "a reused connection was closed; sending on another");
                        body = no_body();
                    }
                    Err(failed) => return Err(ClientError::Exchange(failed.error)),
                },
            }
        }
    }

    /// The pool of `addr`, created on first use.
    fn host(&self, addr: SocketAddr) -> Arc<HostPool> {
        let shared = &*self.shared;
        if let Some(pool) = shared.hosts.load().get(&addr) {
            return Arc::clone(pool);
        }
        self.start_sweeping();
        let capacity = shared.settings.idle_per_backend;
        let mut created = None;
        shared.hosts.rcu(|hosts| {
            let mut hosts = HashMap::clone(hosts);
            let pool = hosts
                .entry(addr)
                .or_insert_with(|| Arc::new(HostPool::new(capacity)));
            created = Some(Arc::clone(pool));
            hosts
        });
        created.unwrap_or_else(|| Arc::new(HostPool::new(capacity)))
    }

    /// Starts the task that closes expired idle connections (once, from a runtime).
    fn start_sweeping(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        self.shared.sweeping.get_or_init(|| {
            let shared = Arc::downgrade(&self.shared);
            tokio::spawn(sweep(shared));
        });
    }

    /// Idle connections held for `addr` right now (for tests and diagnostics).
    pub fn idle_connections(&self, addr: SocketAddr) -> usize {
        self.shared.hosts.load().get(&addr).map_or(0, |p| p.len())
    }
}

impl Shared {
    /// Opens a connection to `addr`.
    async fn open(&self, addr: SocketAddr) -> Result<UpstreamStream, ClientError> {
        let tls = match &self.target {
            Target::Plain => None,
            Target::Tls { config, name, .. } => Some((Arc::clone(config), name.clone())),
        };
        connect::connect(addr, tls, self.settings.tcp)
            .await
            .map_err(ClientError::Connect)
    }

    /// Opens a connection to `addr` and starts HTTP on it.
    async fn connect(&self, addr: SocketAddr) -> Result<Conn, ClientError> {
        let stream = self.open(addr).await?;
        if stream.negotiated_h2() {
            return Ok(Conn::H2(start_h2(addr, stream).await?));
        }
        Ok(Conn::H1(Box::new(H1Conn::new(stream, self.settings.head))))
    }

    /// A request that asks to switch protocols goes on a connection of its own,
    /// run by its own task (which hands the connection over after a 101), and
    /// never pooled.
    async fn upgrade(
        &self,
        addr: SocketAddr,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let stream = self.open(addr).await?;
        let response = if stream.negotiated_h2() {
            start_h2(addr, stream).await?.send_request(request).await
        } else {
            let (mut sender, driver) = http1::Builder::new()
                .max_buf_size(self.settings.head.max_head)
                .max_headers(self.settings.head.max_headers)
                .handshake(UpstreamIo::new(stream))
                .await
                .map_err(ClientError::Handshake)?;
            tokio::spawn(async move {
                if let Err(e) = driver.with_upgrades().await {
                    debug!(backend = %addr, error = %e, "upgraded connection to a backend ended");
                }
            });
            origin_form(&mut request);
            sender.send_request(request).await
        }
        .map_err(ClientError::Send)?;
        Ok(response.map(ResponseBody::hyper))
    }
}

/// Starts HTTP/2 on `stream` (ALPN settled on it), its connection run by a task of
/// its own.
async fn start_h2(
    addr: SocketAddr,
    stream: UpstreamStream,
) -> Result<http2::SendRequest<UpstreamBody>, ClientError> {
    let (sender, connection) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(UpstreamIo::new(stream))
        .await
        .map_err(ClientError::Handshake)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            debug!(backend = %addr, error = %e, "HTTP/2 connection to a backend ended");
        }
    });
    Ok(sender)
}

/// Closes idle connections past their time, every [`SWEEP_EVERY`], and forgets the
/// pools of backends unused for as long; ends with the client.
async fn sweep(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let now = clock::now_ms();
        let timeout = shared.settings.idle_timeout_ms;
        let mut unused = Vec::new();
        for (addr, pool) in shared.hosts.load().iter() {
            pool.expire(now, timeout);
            if pool.idle_is_empty() && now.saturating_sub(pool.used_ms()) > timeout {
                unused.push(*addr);
            }
        }
        if !unused.is_empty() {
            shared.hosts.rcu(|hosts| {
                let mut hosts = HashMap::clone(hosts);
                for addr in &unused {
                    if hosts.get(addr).is_some_and(|p| p.idle_is_empty()) {
                        hosts.remove(addr);
                    }
                }
                hosts
            });
        }
    }
}

/// One HTTP connection.
enum Conn {
    /// Boxed: it travels from pool to request to body and back.
    H1(Box<H1Conn>),
    /// Shared by every request on it (streams); stays in the pool while in use.
    H2(http2::SendRequest<UpstreamBody>),
}

/// The connections to one backend address: a set for each shard, and one for
/// requests off the shards (a proxy started without them). A connection is
/// registered in the event loop of the thread that opened it, so only that shard
/// takes it again.
struct HostPool {
    home: Conns,
    /// By shard number (from 1).
    shards: Box<[Conns]>,
    /// When a request last took a connection here (ms clock).
    used_ms: AtomicU64,
}

/// One thread's connections to a backend.
struct Conns {
    /// Idle HTTP/1 connections, each taken by one request at a time.
    idle: IdleStack<Box<H1Conn>>,
    /// The HTTP/2 connection, shared by every request: never taken out, so a
    /// request that comes while another is starting a stream still finds it.
    shared: ArcSwapOption<http2::SendRequest<UpstreamBody>>,
    /// When a request last used the shared connection (ms clock).
    shared_used_ms: AtomicU64,
}

impl std::fmt::Debug for HostPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPool")
            .field("idle", &self.all().map(|c| c.idle.len()).sum::<usize>())
            .field("shared", &self.all().filter(|c| c.has_shared()).count())
            .finish()
    }
}

impl HostPool {
    fn new(capacity: usize) -> Self {
        let now = clock::now_ms();
        let shards = shard::slots() - 1;
        // The ceiling is shared out: together the shards keep about `capacity`.
        let per_shard = capacity.div_ceil(shards.max(1));
        Self {
            home: Conns::new(capacity, now),
            shards: (0..shards).map(|_| Conns::new(per_shard, now)).collect(),
            used_ms: AtomicU64::new(now),
        }
    }

    fn used_ms(&self) -> u64 {
        self.used_ms.load(Ordering::Relaxed)
    }

    /// The connections of the shard running this thread (or those off the shards).
    fn here(&self) -> &Conns {
        self.shards
            .get(shard::current().wrapping_sub(1))
            .unwrap_or(&self.home)
    }

    fn all(&self) -> impl Iterator<Item = &Conns> {
        std::iter::once(&self.home).chain(self.shards.iter())
    }

    fn idle_is_empty(&self) -> bool {
        self.all().all(|c| c.idle.is_empty())
    }

    /// Connections held: idle HTTP/1 ones and the shared HTTP/2 ones.
    fn len(&self) -> usize {
        self.all()
            .map(|c| c.idle.len() + usize::from(c.has_shared()))
            .sum()
    }

    /// A connection of this thread's fit for a request, if there is one.
    fn checkout(&self, now_ms: u64, timeout_ms: u64) -> Option<Conn> {
        if self.used_ms.load(Ordering::Relaxed) != now_ms {
            self.used_ms.store(now_ms, Ordering::Relaxed);
        }
        self.here().checkout(now_ms, timeout_ms)
    }

    /// Gives a connection back to this thread's (an idle HTTP/1 one is closed
    /// when they are full), or shares a new HTTP/2 one there.
    fn put(&self, conn: Conn) {
        self.here().put(conn);
    }

    /// Closes the idle connections past `timeout_ms`, and those the backend closed.
    fn expire(&self, now_ms: u64, timeout_ms: u64) {
        for conns in self.all() {
            conns.expire(now_ms, timeout_ms);
        }
    }
}

impl Conns {
    fn new(capacity: usize, now_ms: u64) -> Self {
        Self {
            idle: IdleStack::new(capacity),
            shared: ArcSwapOption::empty(),
            shared_used_ms: AtomicU64::new(now_ms),
        }
    }

    fn has_shared(&self) -> bool {
        self.shared.load().is_some()
    }

    /// A connection fit for a request, if there is one: an idle HTTP/1 one, else
    /// the shared HTTP/2 connection.
    fn checkout(&self, now_ms: u64, timeout_ms: u64) -> Option<Conn> {
        // HTTP/1 first: a backend speaks one or the other, and the idle stack of
        // an HTTP/2 one stays empty.
        if let Some(conn) = self.idle.pop_fit(now_ms, timeout_ms, |conn| conn.settle()) {
            return Some(Conn::H1(conn));
        }
        let sender = self.shared_if_fit(now_ms, timeout_ms)?;
        // In use again: its idle time starts over.
        self.shared_used_ms.store(now_ms, Ordering::Relaxed);
        Some(Conn::H2(sender))
    }

    /// The shared HTTP/2 connection unless it closed or sat idle past `timeout_ms`,
    /// in which case it is let go.
    fn shared_if_fit(
        &self,
        now_ms: u64,
        timeout_ms: u64,
    ) -> Option<http2::SendRequest<UpstreamBody>> {
        let current = self.shared.load_full();
        let sender = current.as_deref()?;
        let idle_ms = now_ms.saturating_sub(self.shared_used_ms.load(Ordering::Relaxed));
        if sender.is_closed() || idle_ms > timeout_ms {
            // Only this one: a fresh connection stored meanwhile stays.
            self.shared.compare_and_swap(&current, None);
            return None;
        }
        Some(sender.clone())
    }

    /// Gives a connection back (an idle HTTP/1 one is closed when the stack is
    /// full), or shares a new HTTP/2 one.
    fn put(&self, conn: Conn) {
        match conn {
            Conn::H1(conn) => {
                // Full: this one is closed (dropped here, outside the lock).
                let _ = self.idle.push(conn, clock::now_ms());
            }
            Conn::H2(sender) => {
                self.shared_used_ms
                    .store(clock::now_ms(), Ordering::Relaxed);
                self.shared.store(Some(Arc::new(sender)));
            }
        }
    }

    /// Closes the idle connections past `timeout_ms`, and those the backend closed.
    fn expire(&self, now_ms: u64, timeout_ms: u64) {
        let _ = self.shared_if_fit(now_ms, timeout_ms);
        // An idle HTTP/1 connection is driven by nobody: look for a close.
        self.idle.expire(now_ms, timeout_ms, |conn| conn.settle());
    }
}

/// A backend's answer body. An HTTP/1 one is read from its connection by whoever
/// reads the body; read to its end, it gives the connection back.
pub struct ResponseBody {
    inner: Inner,
}

enum Inner {
    /// An HTTP/2 stream, or the answer on an upgraded connection.
    Hyper(Incoming),
    /// The rest of an answer on an HTTP/1 connection.
    H1 {
        /// `None` once the body ended (the connection went back or closed).
        conn: Option<Box<H1Conn>>,
        decoder: Decoder,
        /// Whether the connection may carry another exchange after this one.
        keep_alive: bool,
        pool: Arc<HostPool>,
    },
}

/// Why a backend's answer body broke off.
#[derive(Debug, thiserror::Error)]
pub enum ResponseBodyError {
    /// On an HTTP/2 stream or an upgraded connection.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// On an HTTP/1 connection.
    #[error(transparent)]
    H1(#[from] H1Error),
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("end", &self.is_end_stream())
            .finish()
    }
}

impl ResponseBody {
    fn hyper(inner: Incoming) -> Self {
        Self {
            inner: Inner::Hyper(inner),
        }
    }

    fn h1(conn: Box<H1Conn>, decoder: Decoder, keep_alive: bool, pool: Arc<HostPool>) -> Self {
        Self {
            inner: Inner::H1 {
                conn: Some(conn),
                decoder,
                keep_alive,
                pool,
            },
        }
    }

    /// The answer's framing cannot be trusted: its connection is closed when the
    /// body goes, never reused.
    pub fn poison(&mut self) {
        if let Inner::H1 { keep_alive, .. } = &mut self.inner {
            *keep_alive = false;
        }
    }

    /// The HTTP/1 exchange is over: a complete one whose connection can carry
    /// another gives it back to its pool; any other closes it.
    fn release(&mut self, complete: bool) {
        if let Inner::H1 {
            conn,
            keep_alive,
            pool,
            ..
        } = &mut self.inner
            && let Some(conn) = conn.take()
            && complete
            && *keep_alive
            && conn.reusable_after_answer()
        {
            pool.put(Conn::H1(conn));
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = ResponseBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ResponseBodyError>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Hyper(body) => {
                return Pin::new(body)
                    .poll_frame(cx)
                    .map(|frame| frame.map(|f| f.map_err(ResponseBodyError::Hyper)));
            }
            Inner::H1 { conn, decoder, .. } => {
                let Some(conn) = conn.as_mut() else {
                    return Poll::Ready(None);
                };
                conn.poll_body(cx, decoder)
            }
        };
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Ready(Ok(None)) => {
                this.release(true);
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                this.release(false);
                Poll::Ready(Some(Err(ResponseBodyError::H1(e))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Hyper(body) => body.is_end_stream(),
            Inner::H1 { conn, decoder, .. } => conn.is_none() || decoder.is_end(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper(body) => body.size_hint(),
            Inner::H1 { decoder, .. } => match decoder.remaining() {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        if let Inner::H1 { decoder, .. } = &self.inner {
            let complete = decoder.is_end();
            self.release(complete);
        }
    }
}

/// An HTTP/1 request line carries the path and query only; `Host` names the
/// authority when the request has none of its own.
fn origin_form<B>(request: &mut Request<B>) {
    let Some(authority) = request.uri().authority().cloned() else {
        return;
    };
    if !request.headers().contains_key(HOST)
        && let Ok(host) = HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(HOST, host);
    }
    let path = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
}

/// TCP settings for upstream connections from the configured limits.
pub fn tcp_settings(limits: &Limits) -> TcpSettings {
    TcpSettings {
        connect_timeout: limits.connect_timeout,
        keepalive: Duration::from_secs(60),
    }
}
