//! The HTTP client that carries requests to backends.
//!
//! Every backend address has its own pool of idle keep-alive connections, a
//! lock-free queue: taking a connection and giving it back are one atomic
//! operation each, with no lock shared between backends or workers. A request
//! takes an idle connection (or opens one: TCP with the connect timeout, TLS when
//! the pool asks for it, HTTP/2 when ALPN settles on it), sends, and the connection
//! goes back once its answer has been read to the end, unless something marked it
//! unfit ([`CaptureConnection`]: an answer whose framing cannot be trusted). A
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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use http::header::{HOST, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tracing::debug;

use super::connect::{self, ConnectError, PoolTls, TcpSettings, UpstreamIo};
use crate::clock;
use crate::config::Limits;
use crate::error::BoxError;

/// The body type sent to backends.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

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
    max_buf_size: usize,
    max_headers: usize,
}

/// Where connections go.
#[derive(Debug)]
enum Target {
    /// Plain TCP to whatever `ip:port` the request URI names.
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
    /// The exchange failed: the request could not be written in full, or the
    /// answer was missing, cut or invalid.
    #[error("{0}")]
    Send(#[source] hyper::Error),
    /// The request names no `ip:port` to connect to.
    #[error("`{0}` does not name a backend address")]
    Address(String),
}

impl ClientError {
    /// Nothing reached the backend: the connection could not be opened.
    pub fn is_connect(&self) -> bool {
        matches!(self, ClientError::Connect(_) | ClientError::Handshake(_))
    }
}

impl UpstreamClient {
    /// A plain-HTTP client (the request URI names the backend) honouring the connect
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
            // An answer head over the request limits is a 502, never relayed.
            max_buf_size: limits.max_header_bytes.max(8192),
            max_headers: limits.max_headers,
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

    /// Sends `request` to the backend its URI names (or this client's TLS backend)
    /// and returns the answer's head; its body streams from the connection.
    pub async fn request(
        &self,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let shared = &*self.shared;
        let addr = match &shared.target {
            Target::Tls { addr, .. } => *addr,
            Target::Plain => backend_address(request.uri())?,
        };
        let capture = request.extensions_mut().remove::<CaptureSlot>();
        let pool = self.host(addr);
        if request.headers().contains_key(UPGRADE) {
            // Boxed: rare, and its state would otherwise grow every request's future.
            return Box::pin(shared.upgrade(addr, request)).await;
        }
        let uri = request.uri().clone();
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
            let sent = match conn {
                Conn::H2(mut sender) => {
                    if let Err(e) = sender.ready().await {
                        if reused {
                            continue;
                        }
                        return Err(ClientError::Send(e));
                    }
                    sender
                        .try_send_request(request)
                        .await
                        .map(|response| (response, None))
                }
                Conn::H1(mut conn) => {
                    origin_form(&mut request);
                    match conn.exchange(request).await {
                        Ok(response) => Ok((response, Some(conn))),
                        Err(e) => Err(e),
                    }
                }
            };
            match sent {
                Ok((response, conn)) => {
                    let gate = conn.map(|conn| Gate::new(Arc::clone(&pool), conn));
                    if let (Some(slot), Some((gate, _))) = (&capture, &gate) {
                        let _ = slot.0.set(Arc::clone(gate));
                    }
                    let status = response.status();
                    return Ok(response.map(|body| ResponseBody::new(body, gate, status)));
                }
                Err(mut e) => match e.take_message() {
                    // Never written: the reused connection had been closed.
                    Some(unsent) if reused => {
                        debug!(backend = %addr, error = %e.error(), "a reused connection was closed; sending on another");
                        request = unsent;
                        *request.uri_mut() = uri.clone();
                    }
                    _ => return Err(ClientError::Send(e.into_error())),
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
        let capacity = shared.settings.idle_per_backend.max(1);
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
    /// Opens a connection to `addr` and starts HTTP on it.
    async fn connect(&self, addr: SocketAddr) -> Result<Conn, ClientError> {
        let tls = match &self.target {
            Target::Plain => None,
            Target::Tls { config, name, .. } => Some((Arc::clone(config), name.clone())),
        };
        let stream = connect::connect(addr, tls, self.settings.tcp)
            .await
            .map_err(ClientError::Connect)?;
        let io = UpstreamIo::new(stream);
        if io.negotiated_h2() {
            let (sender, connection) = http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .handshake(io)
                .await
                .map_err(ClientError::Handshake)?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    debug!(backend = %addr, error = %e, "HTTP/2 connection to a backend ended");
                }
            });
            return Ok(Conn::H2(sender));
        }
        let (sender, driver) = self.handshake_h1(io).await?;
        Ok(Conn::H1(Box::new(H1Conn {
            sender,
            driver: Some(driver),
        })))
    }

    async fn handshake_h1(
        &self,
        io: UpstreamIo,
    ) -> Result<(http1::SendRequest<UpstreamBody>, H1Driver), ClientError> {
        http1::Builder::new()
            .max_buf_size(self.settings.max_buf_size)
            .max_headers(self.settings.max_headers)
            .handshake(io)
            .await
            .map_err(ClientError::Handshake)
    }

    /// A request that asks to switch protocols goes on a connection of its own,
    /// run by its own task (which hands the connection over after a 101), and
    /// never pooled.
    async fn upgrade(
        &self,
        addr: SocketAddr,
        mut request: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, ClientError> {
        let mut sender = match self.connect(addr).await? {
            Conn::H1(conn) => {
                let H1Conn { sender, driver } = *conn;
                if let Some(driver) = driver {
                    tokio::spawn(async move {
                        if let Err(e) = driver.with_upgrades().await {
                            debug!(backend = %addr, error = %e, "upgraded connection to a backend ended");
                        }
                    });
                }
                origin_form(&mut request);
                Conn::H1(Box::new(H1Conn {
                    sender,
                    driver: None,
                }))
            }
            h2 => h2,
        };
        let response = match &mut sender {
            Conn::H1(conn) => conn.sender.send_request(request).await,
            Conn::H2(sender) => sender.send_request(request).await,
        }
        .map_err(ClientError::Send)?;
        let status = response.status();
        Ok(response.map(|body| ResponseBody::new(body, None, status)))
    }
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
            if pool.idle.is_empty() && now.saturating_sub(pool.used_ms()) > timeout {
                unused.push(*addr);
            }
        }
        if !unused.is_empty() {
            shared.hosts.rcu(|hosts| {
                let mut hosts = HashMap::clone(hosts);
                for addr in &unused {
                    if hosts.get(addr).is_some_and(|p| p.idle.is_empty()) {
                        hosts.remove(addr);
                    }
                }
                hosts
            });
        }
    }
}

/// The future that runs one HTTP/1 connection.
type H1Driver = http1::Connection<UpstreamIo, UpstreamBody>;

/// One HTTP connection.
enum Conn {
    /// Boxed: it travels from pool to request to body and back.
    H1(Box<H1Conn>),
    /// Shared by every request on it (streams); stays in the pool while in use.
    H2(http2::SendRequest<UpstreamBody>),
}

/// An HTTP/1 connection and the future that runs it, driven by its user.
struct H1Conn {
    sender: http1::SendRequest<UpstreamBody>,
    /// `None` once the connection ended (or when a task of its own runs it).
    driver: Option<H1Driver>,
}

impl H1Conn {
    /// Runs the connection for a moment: reads a close or an error that arrived
    /// while it sat idle, or finishes taking in that an answer ended. Whether it
    /// can take a request.
    fn settle(&mut self) -> bool {
        if let Some(driver) = self.driver.as_mut() {
            let mut cx = Context::from_waker(Waker::noop());
            if Pin::new(driver).poll(&mut cx).is_ready() {
                self.driver = None;
            }
        }
        self.driver.is_some() && !self.sender.is_closed() && self.sender.is_ready()
    }

    /// Drives the connection; `Ready` once it ended.
    fn drive(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let Some(driver) = self.driver.as_mut() else {
            return Poll::Ready(());
        };
        match Pin::new(driver).poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(result) => {
                if let Err(e) = result {
                    debug!(error = %e, "connection to a backend ended");
                }
                // Gone with it, a request still waiting learns it ended.
                self.driver = None;
                Poll::Ready(())
            }
        }
    }

    /// Sends `request` and drives the connection until the answer's head arrives.
    async fn exchange(
        &mut self,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, hyper::client::conn::TrySendError<Request<UpstreamBody>>> {
        let response = self.sender.try_send_request(request);
        tokio::pin!(response);
        std::future::poll_fn(|cx| {
            let _ = self.drive(cx);
            response.as_mut().poll(cx)
        })
        .await
    }
}

/// An idle HTTP/1 connection and when it was last given back.
struct Idle {
    conn: Box<H1Conn>,
    since_ms: u64,
}

impl Idle {
    /// Idle past `timeout_ms` (whether the backend closed it is [`H1Conn::settle`]'s).
    fn expired(&self, now_ms: u64, timeout_ms: u64) -> bool {
        now_ms.saturating_sub(self.since_ms) > timeout_ms
    }
}

/// The connections to one backend address.
struct HostPool {
    /// Idle HTTP/1 connections, each taken by one request at a time.
    idle: ArrayQueue<Idle>,
    /// The HTTP/2 connection, shared by every request: never taken out, so a
    /// request that comes while another is starting a stream still finds it.
    shared: ArcSwapOption<http2::SendRequest<UpstreamBody>>,
    /// When a request last used the shared connection (ms clock).
    shared_used_ms: AtomicU64,
    /// When a request last took a connection here (ms clock).
    used_ms: AtomicU64,
}

impl std::fmt::Debug for HostPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPool")
            .field("idle", &self.idle.len())
            .field("shared", &self.shared.load().is_some())
            .finish()
    }
}

impl HostPool {
    fn new(capacity: usize) -> Self {
        let now = clock::now_ms();
        Self {
            idle: ArrayQueue::new(capacity),
            shared: ArcSwapOption::empty(),
            shared_used_ms: AtomicU64::new(now),
            used_ms: AtomicU64::new(now),
        }
    }

    fn used_ms(&self) -> u64 {
        self.used_ms.load(Ordering::Relaxed)
    }

    /// Connections held: idle HTTP/1 ones and the shared HTTP/2 one.
    fn len(&self) -> usize {
        self.idle.len() + usize::from(self.shared.load().is_some())
    }

    /// A connection fit for a request, if there is one: an idle HTTP/1 one, else
    /// the shared HTTP/2 connection.
    fn checkout(&self, now_ms: u64, timeout_ms: u64) -> Option<Conn> {
        if self.used_ms.load(Ordering::Relaxed) != now_ms {
            self.used_ms.store(now_ms, Ordering::Relaxed);
        }
        // HTTP/1 first: a backend speaks one or the other, and the queue of an
        // HTTP/2 one is empty, which costs less to see than the shared slot.
        while let Some(mut idle) = self.idle.pop() {
            if !idle.expired(now_ms, timeout_ms) && idle.conn.settle() {
                return Some(Conn::H1(idle.conn));
            }
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

    /// Gives a connection back (an idle HTTP/1 one is closed when the pool is
    /// full), or shares a new HTTP/2 one.
    fn put(&self, conn: Conn) {
        match conn {
            Conn::H1(conn) => {
                let _ = self.idle.push(Idle {
                    conn,
                    since_ms: clock::now_ms(),
                });
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
        for _ in 0..self.idle.len() {
            let Some(mut idle) = self.idle.pop() else {
                break;
            };
            // An idle HTTP/1 connection is driven by nobody: look for a close.
            if idle.expired(now_ms, timeout_ms) || !idle.conn.settle() {
                continue;
            }
            if self.idle.push(idle).is_err() {
                break;
            }
        }
    }
}

/// The way an HTTP/1 connection goes back to its pool after one exchange: when
/// the last holder lets go (the answer's body, and a [`CaptureConnection`] if the
/// request had one), provided the answer was read to its end and nothing marked
/// the connection unfit.
pub struct Gate {
    pool: Arc<HostPool>,
    /// Left here by the body once it was read to its end.
    conn: parking_lot::Mutex<Option<Box<H1Conn>>>,
    poisoned: AtomicBool,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("poisoned", &self.poisoned.load(Ordering::Relaxed))
            .finish()
    }
}

impl Gate {
    fn new(pool: Arc<HostPool>, conn: Box<H1Conn>) -> (Arc<Self>, Box<H1Conn>) {
        let gate = Arc::new(Self {
            pool,
            conn: parking_lot::Mutex::new(None),
            poisoned: AtomicBool::new(false),
        });
        (gate, conn)
    }

    /// The connection's framing cannot be trusted: it is closed, never reused.
    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::Relaxed);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        if self.poisoned.load(Ordering::Relaxed) {
            return;
        }
        if let Some(mut conn) = self.conn.get_mut().take()
            && conn.settle()
        {
            self.pool.put(Conn::H1(conn));
        }
    }
}

/// A backend's answer body. While it is read it drives its HTTP/1 connection;
/// read to its end, it gives the connection back.
pub struct ResponseBody {
    inner: Incoming,
    conn: Option<Box<H1Conn>>,
    gate: Option<Arc<Gate>>,
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("end", &self.inner.is_end_stream())
            .finish()
    }
}

impl ResponseBody {
    fn new(inner: Incoming, gate: Option<(Arc<Gate>, Box<H1Conn>)>, status: StatusCode) -> Self {
        let (gate, conn) = match gate {
            // After a 101 the connection is no longer HTTP.
            Some(_) if status == StatusCode::SWITCHING_PROTOCOLS => (None, None),
            Some((gate, conn)) => (Some(gate), Some(conn)),
            None => (None, None),
        };
        Self { inner, conn, gate }
    }

    /// The exchange is over: a complete one leaves the connection at its gate.
    fn release(&mut self, complete: bool) {
        let conn = self.conn.take();
        if let Some(gate) = self.gate.take()
            && complete
        {
            *gate.conn.lock() = conn;
        }
    }

    fn on(&mut self, polled: &Poll<Option<Result<Frame<Bytes>, hyper::Error>>>) {
        match polled {
            Poll::Ready(None) => self.release(true),
            Poll::Ready(Some(Err(_))) => self.release(false),
            _ => {}
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if polled.is_pending()
            && let Some(conn) = this.conn.as_mut()
        {
            // Nothing yet: read from the backend, then look again.
            let _ = conn.drive(cx);
            let polled = Pin::new(&mut this.inner).poll_frame(cx);
            this.on(&polled);
            return polled;
        }
        this.on(&polled);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let complete = self.inner.is_end_stream();
        self.release(complete);
    }
}

/// What [`capture_connection`] puts in a request for the client to fill.
#[derive(Clone)]
struct CaptureSlot(Arc<OnceLock<Arc<Gate>>>);

/// The connection a request went out on, once it has been sent (HTTP/1 only).
/// While held, the connection does not go back to its pool, so the caller can
/// judge the answer first and [`Gate::poison`] it.
#[derive(Debug)]
pub struct CaptureConnection(Arc<OnceLock<Arc<Gate>>>);

impl CaptureConnection {
    /// The connection, if the request was sent on one that may be reused.
    pub fn connection_metadata(&self) -> Option<&Arc<Gate>> {
        self.0.get()
    }
}

/// Asks the client to report the connection `request` goes out on.
pub fn capture_connection<B>(request: &mut Request<B>) -> CaptureConnection {
    let slot = Arc::new(OnceLock::new());
    request
        .extensions_mut()
        .insert(CaptureSlot(Arc::clone(&slot)));
    CaptureConnection(slot)
}

/// The backend's `ip:port` from a request URI's authority.
fn backend_address(uri: &Uri) -> Result<SocketAddr, ClientError> {
    uri.authority()
        .and_then(|a| a.as_str().parse().ok())
        .ok_or_else(|| ClientError::Address(uri.to_string()))
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
