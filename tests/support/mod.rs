//! Real parts for integration tests: hyper backends on ephemeral loopback ports that
//! can be killed, revived, slowed down or made to fail, and a real proxy in front.

#![allow(dead_code)]

pub mod dns;
pub mod fleet;
pub mod spawned;
pub mod tls;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use parking_lot::Mutex;
use switchyard::config::Config;
use switchyard::server::{Server, ServerOptions};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestBody = BoxBody<Bytes, BoxError>;

/// How a test backend answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// 200 with the backend's name as the body.
    Ok,
    /// This status for every request (including /health).
    Status(u16),
    /// Accept, read the request, never answer.
    Hang,
    /// Answer after this delay.
    Slow(Duration),
}

struct Inner {
    name: String,
    mode: Mutex<Mode>,
    hits: AtomicU64,
    h2_hits: AtomicU64,
    connections: AtomicU64,
    tasks: Mutex<JoinSet<()>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A hyper backend on 127.0.0.1. Paths: `/headers` echoes request headers as JSON,
/// `/echo` streams the request body back, `/big?bytes=N` streams N bytes,
/// `/ws` accepts a WebSocket-style upgrade and echoes bytes, anything else answers per [`Mode`].
#[derive(Clone)]
pub struct TestBackend {
    pub addr: SocketAddr,
    inner: Arc<Inner>,
}

impl TestBackend {
    /// Starts a backend on a port of its own (see [`ports_for_tools`]): once killed,
    /// its port stays free for its revival, and nothing else in the tests takes it
    /// meanwhile (a server that did would answer the proxy's health checks).
    pub async fn start(name: &str) -> TestBackend {
        Self::start_on(
            name,
            SocketAddr::from(([127, 0, 0, 1], ports_for_tools(1)[0])),
        )
        .await
    }

    /// Starts a backend on `addr` (e.g. `127.0.0.2:PORT`, for DNS tests).
    pub async fn start_on(name: &str, addr: SocketAddr) -> TestBackend {
        Self::start_with(name, addr, None).await
    }

    /// Starts a backend that speaks TLS with `config` on a port of its own.
    pub async fn start_tls(name: &str, config: Arc<rustls::ServerConfig>) -> TestBackend {
        Self::start_with(
            name,
            SocketAddr::from(([127, 0, 0, 1], ports_for_tools(1)[0])),
            Some(tokio_rustls::TlsAcceptor::from(config)),
        )
        .await
    }

    async fn start_with(
        name: &str,
        addr: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> TestBackend {
        let inner = Arc::new(Inner {
            name: name.to_string(),
            mode: Mutex::new(Mode::Ok),
            hits: AtomicU64::new(0),
            h2_hits: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            tasks: Mutex::new(JoinSet::new()),
            tls,
        });
        let backend = TestBackend { addr, inner };
        backend.listen(addr).await
    }

    async fn listen(mut self, addr: SocketAddr) -> TestBackend {
        let listener = bind_retrying(addr).await;
        self.addr = listener.local_addr().unwrap();
        let inner = Arc::clone(&self.inner);
        let accept_inner = Arc::clone(&inner);
        inner.tasks.lock().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                accept_inner.connections.fetch_add(1, Ordering::Relaxed);
                let conn_inner = Arc::clone(&accept_inner);
                accept_inner.tasks.lock().spawn(async move {
                    let service_inner = Arc::clone(&conn_inner);
                    let service = service_fn(move |req| {
                        let inner = Arc::clone(&service_inner);
                        async move { Ok::<_, Infallible>(answer(&inner, req).await) }
                    });
                    let builder = auto::Builder::new(TokioExecutor::new());
                    match &conn_inner.tls {
                        None => {
                            let _ = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection_with_upgrades(TokioIo::new(tls), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        self
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Changes how it answers from now on.
    pub fn set_mode(&self, mode: Mode) {
        *self.inner.mode.lock() = mode;
    }

    /// Requests served so far.
    pub fn hits(&self) -> u64 {
        self.inner.hits.load(Ordering::Relaxed)
    }

    /// Requests that arrived over HTTP/2.
    pub fn h2_hits(&self) -> u64 {
        self.inner.h2_hits.load(Ordering::Relaxed)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.inner.connections.load(Ordering::Relaxed)
    }

    /// Closes the listener and every open connection (as if the process died).
    pub fn kill(&self) {
        self.inner.tasks.lock().abort_all();
    }

    /// Listens again on the same port.
    pub async fn revive(&self) -> TestBackend {
        self.inner.tasks.lock().abort_all();
        self.clone().listen(self.addr).await
    }
}

async fn bind_retrying(addr: SocketAddr) -> TcpListener {
    for _ in 0..100 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_reuseaddr(true).unwrap();
        if socket.bind(addr).is_ok()
            && let Ok(listener) = socket.listen(1024)
        {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind test backend on {addr}");
}

async fn answer(inner: &Inner, mut req: Request<Incoming>) -> Response<TestBody> {
    inner.hits.fetch_add(1, Ordering::Relaxed);
    if req.version() == http::Version::HTTP_2 {
        inner.h2_hits.fetch_add(1, Ordering::Relaxed);
    }
    let mode = inner.mode.lock().clone();
    match mode {
        Mode::Hang => {
            std::future::pending::<()>().await;
        }
        Mode::Status(code) => {
            return text(
                StatusCode::from_u16(code).unwrap(),
                &inner.name,
                format!("{} failing\n", inner.name),
            );
        }
        Mode::Slow(delay) => tokio::time::sleep(delay).await,
        Mode::Ok => {}
    }
    match req.uri().path() {
        "/headers" => {
            let mut map: HashMap<String, String> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect();
            // HTTP/2 carries the host as the `:authority` pseudo-header.
            if let Some(authority) = req.uri().authority() {
                map.insert(":authority".into(), authority.to_string());
            }
            text(
                StatusCode::OK,
                &inner.name,
                serde_json::to_string(&map).unwrap(),
            )
        }
        "/echo" => {
            let mut response =
                Response::new(req.into_body().map_err(|e| Box::new(e) as BoxError).boxed());
            response
                .headers_mut()
                .insert("x-backend", inner.name.parse().unwrap());
            response
        }
        "/big" => {
            let bytes: usize = req
                .uri()
                .query()
                .and_then(|q| q.strip_prefix("bytes="))
                .and_then(|n| n.parse().ok())
                .unwrap_or(1 << 20);
            let body = RepeatBody {
                chunk: Bytes::from(vec![b'x'; 64 * 1024]),
                left: bytes,
            };
            let mut response = Response::new(body.boxed());
            response
                .headers_mut()
                .insert("x-backend", inner.name.parse().unwrap());
            response
        }
        "/ws" => {
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut response =
                Response::new(Full::new(Bytes::new()).map_err(|e| match e {}).boxed());
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            response
                .headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            response
                .headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            response
        }
        _ => text(StatusCode::OK, &inner.name, inner.name.clone()),
    }
}

/// A body of `left` bytes sent in chunks, generated on the fly.
struct RepeatBody {
    chunk: Bytes,
    left: usize,
}

impl http_body::Body for RepeatBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(self.chunk.len());
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(self.chunk.slice(..n)))))
    }
}

fn text(status: StatusCode, name: &str, body: String) -> Response<TestBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("x-backend", name.parse().unwrap());
    response
}

/// Starts a plain HTTP server on 127.0.0.1 (HTTP/1.1 and HTTP/2) that answers each
/// request with `answer(request)`: for tests whose backend must judge a probe, record
/// what it saw or serve a page, in a few lines instead of a server loop of their own.
pub async fn serve_with<F>(answer: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let response = answer(req);
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

/// This test binary's log lines, kept as JSON by one global subscriber.
static JSON_LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();

/// Starts keeping this test binary's log lines that pass `filter` (an env-filter
/// directive) as JSON, so tests can assert what was logged. The subscriber is global:
/// the first call's filter holds for the whole binary; call it before the proxy starts.
pub fn capture_json_logs(filter: &str) {
    JSON_LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&logs);
        let subscriber = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_env_filter(filter)
            .with_writer(move || LogSink(Arc::clone(&sink)))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        logs
    });
}

/// The captured log lines (see [`capture_json_logs`]) that contain `text`, parsed.
pub fn captured_json_lines(text: &str) -> Vec<serde_json::Value> {
    let logs = JSON_LOGS
        .get()
        .map(|l| l.lock().clone())
        .unwrap_or_default();
    String::from_utf8_lossy(&logs)
        .lines()
        .filter(|l| l.contains(text))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Where [`capture_json_logs`]'s subscriber writes.
struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A running proxy with its traffic and admin addresses.
pub struct TestProxy {
    pub server: Arc<Server>,
    pub web: SocketAddr,
    pub admin: SocketAddr,
}

/// Starts a proxy from config text; `listen` and admin addresses should use port 0.
/// Its connections are served on the test's own runtime (no shards), whose paused
/// time then drives them.
pub async fn start_proxy(config_text: &str) -> TestProxy {
    start_proxy_with(
        config_text,
        ServerOptions {
            access_log: false,
            shards: 0,
        },
    )
    .await
}

/// [`start_proxy`] with `options`: `shards` > 0 serves connections on threads of
/// their own, as the binary does.
pub async fn start_proxy_with(config_text: &str, options: ServerOptions) -> TestProxy {
    let config = Config::parse(Path::new("test.toml"), config_text)
        .unwrap_or_else(|e| panic!("bad test config:\n{e}"));
    let admin_listen = config.admin.listen;
    let first = config.listeners[0].name.clone();
    let server = Server::start(config, options).await.expect("proxy starts");
    let admin = switchyard::admin::start(Arc::clone(&server), admin_listen).expect("admin starts");
    let web = server.listener_address(&first).unwrap();
    TestProxy { server, web, admin }
}

/// [`simple_config`] with `limits` (lines of the `[limits]` table) added.
pub fn simple_config_with_limits(
    backends: &[&TestBackend],
    limits: &str,
    pool_extra: &str,
) -> String {
    simple_config(backends, pool_extra).replace(
        "[[listener]]",
        &format!("[limits]\n{limits}\n\n[[listener]]"),
    )
}

/// A config with one listener, one catch-all route and pool `app` over `backends`;
/// `pool_extra` is appended inside `[pool.app]` (balance, tables...).
pub fn simple_config(backends: &[&TestBackend], pool_extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("  {{ address = \"{}\", weight = 1 }},", b.addr))
        .collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\n\
         [pool.app]\nbackends = [\n{}\n]\n{pool_extra}\n",
        list.join("\n")
    )
}

/// One listener, one catch-all route and pool `app` over the single `backend`,
/// whose breaker never opens and which never retries: every answer, and every
/// failure, of one try reaches the client and the backend's counters as it is.
pub fn single_try_config(backend: SocketAddr, per_try_timeout: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"{backend}\" }}]\n\
         [pool.app.breaker]\nconsecutive_failures = 0\n\
         [pool.app.retry]\nattempts = 0\nper_try_timeout = \"{per_try_timeout}\"\n"
    )
}

/// The keep-alive HTTP/1.1 client [`client`] builds.
pub type TestClient = Client<HttpConnector, Full<Bytes>>;

/// An HTTP/1.1 client with keep-alive.
pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// An HTTP/2 client connection (prior knowledge, or what ALPN chose) over `io`, its
/// driver running as a task: aborting the task drops the connection.
pub async fn h2_client<IO>(
    io: IO,
) -> (
    hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    tokio::task::JoinHandle<()>,
)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .expect("HTTP/2 handshake with the proxy");
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    (sender, driver)
}

/// GET `url`; returns status, the answering backend's name and the body.
pub async fn get(client: &TestClient, url: &str) -> (u16, String, Bytes) {
    get_with(client, url, None).await
}

/// GET `url` with one extra header; returns status, the answering backend's name and
/// the body.
pub async fn get_with(
    client: &TestClient,
    url: &str,
    header: Option<(&str, &str)>,
) -> (u16, String, Bytes) {
    let mut request = Request::get(url);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    let response = client
        .request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("request reaches the proxy");
    let status = response.status().as_u16();
    let backend = response
        .headers()
        .get("x-backend")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    (status, backend, body)
}

/// Waits for a state instead of sleeping a fixed time: polls `condition` every 10 ms
/// until it holds, and fails the test, naming `what` it waited for, when `within`
/// passes first. Deadlines are generous (a loaded 2-core CI machine is slow); a test
/// waits only as long as the state takes.
pub async fn wait_for(what: &str, within: Duration, mut condition: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls `condition` every 20 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `/status` JSON of a proxy.
pub async fn status(proxy: &TestProxy) -> serde_json::Value {
    let (code, _, body) = get(&client(), &format!("http://{}/status", proxy.admin)).await;
    assert_eq!(code, 200);
    serde_json::from_slice(&body).unwrap()
}

/// Steady background traffic: `clients` loops of GET `url`, each counting requests
/// that were not answered 200.
pub struct Load {
    stop: Arc<std::sync::atomic::AtomicBool>,
    served: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    /// Requests each client has finished, so a test can wait until every client
    /// finished one it started after some moment.
    per_client: Vec<Arc<AtomicU64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    /// Starts the clients.
    pub fn start(clients: usize, url: String) -> Load {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let per_client: Vec<Arc<AtomicU64>> = (0..clients).map(|_| Arc::default()).collect();
        let tasks = per_client
            .iter()
            .map(|mine| {
                let (stop, served, failed, mine, url) = (
                    stop.clone(),
                    served.clone(),
                    failed.clone(),
                    mine.clone(),
                    url.clone(),
                );
                tokio::spawn(async move {
                    let c = client();
                    while !stop.load(Ordering::Relaxed) {
                        if get(&c, &url).await.0 != 200 {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                        mine.fetch_add(1, Ordering::Release);
                    }
                })
            })
            .collect();
        Load {
            stop,
            served,
            failed,
            per_client,
            tasks,
        }
    }

    /// Waits until every client has finished a request it started after this call
    /// (each sends one at a time, so two more finished means one started after):
    /// then no request picked before the call is still on its way.
    pub async fn wait_round(&self) {
        let marks: Vec<u64> = self
            .per_client
            .iter()
            .map(|c| c.load(Ordering::Acquire))
            .collect();
        wait_for(
            "every client to finish a request started after now",
            Duration::from_secs(20),
            async || {
                self.per_client
                    .iter()
                    .zip(&marks)
                    .all(|(c, mark)| c.load(Ordering::Acquire) >= mark + 2)
            },
        )
        .await;
    }

    /// Requests not answered 200 so far.
    pub fn failures(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Requests answered so far, for waiting until load has really flowed.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// Stops the clients and returns (requests served, requests failed).
    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// Starts a proxy from a config file, with the file watcher that reloads it (and its
/// plugin files) on change. Keep the returned watcher alive.
pub async fn start_watched_proxy(
    file: &Path,
) -> (TestProxy, Arc<Mutex<notify::RecommendedWatcher>>) {
    let config = Config::load(file).unwrap_or_else(|e| panic!("bad test config:\n{e}"));
    let admin_listen = config.admin.listen;
    let options = ServerOptions {
        access_log: false,
        shards: 0,
    };
    let server = Server::start(config, options).await.expect("proxy starts");
    let admin = switchyard::admin::start(Arc::clone(&server), admin_listen).unwrap();
    let watcher = switchyard::reload::watch(Arc::clone(&server), file.to_path_buf()).unwrap();
    let web = server.listener_address("web").unwrap();
    (TestProxy { server, web, admin }, watcher)
}

/// `n` distinct loopback ports for a tool a test starts (pebble, etcd) or a
/// [`TestBackend`], each free when picked. They come from below the kernel's
/// ephemeral range (32768-60999 on Linux) so that no connection's source port and no
/// `bind(0)` (every other server in the tests) can take one between the pick and its
/// bind, or while a killed backend is down; and none is handed out twice in a process.
pub fn ports_for_tools(n: usize) -> Vec<u16> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let mut held = Vec::with_capacity(n);
    while held.len() < n {
        let port = fastrand::u16(20_000..32_000);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            handed_out.insert(port);
            held.push(listener);
        }
    }
    held.iter()
        .map(|l| {
            l.local_addr()
                .expect("a bound listener has an address")
                .port()
        })
        .collect()
}

/// Whether this run is CI: `CI` set to anything but empty, `0` or `false` (`.ci/run`
/// exports `CI=true`). There a test never skips for want of a tool.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .is_ok_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// The one way a test handles a missing outside tool (chromium, node, promtool, etcd,
/// pebble, h2load, systemd-analyze, curl, cargo-deb...): outside CI it prints `why`
/// and the caller skips that part; under CI (see [`in_ci`]) the missing tool is a
/// failure, so CI never passes a check it did not run.
#[track_caller]
pub fn skip_or_fail(why: &str) {
    use std::io::Write;
    if in_ci() {
        panic!("CI is set and a required tool is missing: {why}");
    }
    // Straight to the process's stderr: the test harness would hide an `eprintln!`
    // of a passing test, and a skip must be seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// The headless Chromium the browser tests drive (`apt-get install chromium`).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser test directory (`tests/browser`) when Chromium, node and its
/// `npm ci` are all there; otherwise [`skip_or_fail`] with what is missing.
pub fn browser() -> Option<std::path::PathBuf> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    let missing = if !Path::new(CHROMIUM).exists() {
        Some(format!(
            "no chromium at {CHROMIUM} (apt-get install chromium)"
        ))
    } else if !dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        Some(format!(
            "node_modules missing: run npm ci in {}",
            dir.display()
        ))
    } else if !std::process::Command::new("node")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        Some("node not found on PATH (install Node.js 20+)".to_string())
    } else {
        None
    };
    match missing {
        None => Some(dir),
        Some(why) => {
            skip_or_fail(&format!("skipping the browser check: {why}"));
            None
        }
    }
}

/// Runs `promtool check metrics` on an exposition (skipped, with a note, where promtool
/// is not installed outside CI; `.ci/run` installs it).
pub fn assert_promtool_accepts(metrics: &str) {
    use std::io::Write;
    let Ok(mut promtool) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        skip_or_fail(
            "promtool not installed (apt-get install prometheus): skipping `promtool check metrics`",
        );
        return;
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Calls the admin API as a tool does (`Content-Type: application/json`, like
/// `switchyard ctl`); returns the status and the JSON answer (`Null` when not JSON).
pub async fn admin_call(
    proxy: &TestProxy,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.admin))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// Opens a WebSocket-style tunnel through the proxy to a backend's `/ws` echo and
/// checks the `101` answer.
pub async fn open_tunnel(web: SocketAddr) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(web).await.unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

/// One request as a recording backend received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The request target as sent on the request line.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// Whether the whole body arrived (false: the connection broke midway).
    pub complete: bool,
}

impl Received {
    /// The first value of a header, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A hyper backend that records every request it receives (head, whole body) and
/// answers 200 `ok`. What it recorded is what the proxy forwarded.
#[derive(Clone)]
pub struct RecordingBackend {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    /// Request heads received, counted before their bodies are read.
    started: Arc<std::sync::atomic::AtomicUsize>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl RecordingBackend {
    /// Starts on an ephemeral port.
    pub async fn start() -> RecordingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let started: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let tasks: Arc<Mutex<JoinSet<()>>> = Arc::default();
        let (rec, conn_tasks) = (Arc::clone(&received), Arc::clone(&tasks));
        let heads = Arc::clone(&started);
        tasks.lock().spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let rec = Arc::clone(&rec);
                let heads = Arc::clone(&heads);
                conn_tasks.lock().spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let rec = Arc::clone(&rec);
                        heads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        async move {
                            let (parts, body) = req.into_parts();
                            let (body, complete) = match body.collect().await {
                                Ok(c) => (c.to_bytes(), true),
                                Err(_) => (Bytes::new(), false),
                            };
                            rec.lock().push(Received {
                                method: parts.method.to_string(),
                                target: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into(),
                                        )
                                    })
                                    .collect(),
                                body,
                                complete,
                            });
                            Ok::<_, Infallible>(text(StatusCode::OK, "recorder", "ok".into()))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        RecordingBackend {
            addr,
            received,
            started,
            tasks,
        }
    }

    /// Request heads received so far, whether or not their bodies have ended.
    pub fn started(&self) -> usize {
        self.started.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().clone()
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.received.lock().len()
    }
}

/// What the client of a raw exchange got back.
#[derive(Debug)]
pub struct RawAnswer {
    /// Everything read, as text.
    pub text: String,
    /// The status of the first response (0 when none was read).
    pub status: u16,
    /// Whether the proxy closed the connection (EOF or reset) before the timeout.
    pub closed: bool,
}

/// Writes `request` on a fresh connection and reads until the proxy closes it or
/// `idle` passes without a byte.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], idle: Duration) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(request).await;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    let closed = loop {
        match tokio::time::timeout(idle, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| text.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    RawAnswer {
        text,
        status,
        closed,
    }
}

/// The proxy's `/metrics` text.
pub async fn metrics_text(proxy: &TestProxy) -> String {
    let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// The value of the metric line that starts with `series` (name and labels), 0 if absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A backend's entry in `/status` (by address).
pub async fn backend_status(proxy: &TestProxy, addr: SocketAddr) -> serde_json::Value {
    let s = status(proxy).await;
    s["pools"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["backends"].as_array().unwrap().iter())
        .find(|b| b["address"] == addr.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("backend {addr} in /status: {s}"))
}
