//! The upstream client's connection pools, seen from real backends on loopback: a
//! kept connection carries sequential requests, one whose answer was not read to
//! the end is never reused, a backend closing a kept connection costs no client an
//! error, a client walking away mid-answer gives back the backend's in-flight
//! count, HTTP/2 backends carry concurrent requests as streams of one
//! connection, a burst's connections are kept for the next burst, and the ones it
//! left over age out while steady traffic reuses the newest; with shards, each
//! keeps backend connections of its own.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use support::{TestClient, backend_status, client, get, start_proxy, start_proxy_with, wait_for};
use switchyard::server::ServerOptions;

/// Generous bound for conditions on a loaded 2-core machine.
const WITHIN: Duration = Duration::from_secs(20);

/// How a [`RawBackend`] answers a request whose path is `/stall`: the head and
/// the first chunk of a chunked body, then nothing more until the peer leaves.
const STALL_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n";

/// The path on which a [`RawBackend`] started with a gathering count holds each
/// request until that many wait together.
const GATHER: &str = "/gather";

/// The path on which a [`RawBackend`] answers with the number of the connection the
/// request came on (1 for the first one it accepted).
const NUMBER: &str = "/number";

/// An HTTP/1.1 backend on a raw socket: answers `200 ok` (keep-alive) to each
/// request, stalls on `/stall`, names the connection on [`NUMBER`], counts the
/// connections it accepted and reports each connection's end.
struct RawBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    closed: mpsc::UnboundedReceiver<()>,
}

impl RawBackend {
    /// `close_after_answer`: close each connection right after its first answer,
    /// without saying so in the answer (as a backend with a short keep-alive
    /// timeout does).
    async fn start(close_after_answer: bool) -> RawBackend {
        Self::start_gathering(close_after_answer, 1).await
    }

    /// As [`RawBackend::start`], holding each request to [`GATHER`] until
    /// `gather` of them wait at once (so they need that many connections).
    async fn start_gathering(close_after_answer: bool, gather: usize) -> RawBackend {
        let gathering = Arc::new(tokio::sync::Barrier::new(gather));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&accepted);
        let (closed_tx, closed) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let number = count.fetch_add(1, Ordering::SeqCst) + 1;
                let closed_tx = closed_tx.clone();
                let gathering = Arc::clone(&gathering);
                tokio::spawn(async move {
                    serve_raw(&mut stream, number, close_after_answer, &gathering).await;
                    drop(stream);
                    let _ = closed_tx.send(());
                });
            }
        });
        RawBackend {
            addr,
            accepted,
            closed,
        }
    }

    fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Connection ends reported so far and not yet counted.
    fn closed_since(&mut self) -> usize {
        std::iter::from_fn(|| self.closed.try_recv().ok()).count()
    }

    /// Waits until one more connection has ended.
    async fn one_closed(&mut self, what: &str) {
        tokio::time::timeout(WITHIN, self.closed.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: no backend connection ended"))
            .expect("backend running");
    }
}

/// Serves requests on connection `number` until the peer leaves (or after the
/// first answer when `close_after_answer`).
async fn serve_raw(
    stream: &mut tokio::net::TcpStream,
    number: u64,
    close_after_answer: bool,
    gathering: &tokio::sync::Barrier,
) {
    let mut buf = vec![0u8; 8192];
    let mut seen = Vec::new();
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = seen.drain(..end + 4).collect();
            if head.starts_with(b"GET /stall ") {
                if stream.write_all(STALL_HEAD).await.is_err() {
                    return;
                }
                // Nothing more: wait for the peer to leave.
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
            if head.starts_with(format!("GET {GATHER} ").as_bytes()) {
                gathering.wait().await;
            }
            let body = match head.starts_with(format!("GET {NUMBER} ").as_bytes()) {
                true => number.to_string(),
                false => "ok".to_string(),
            };
            let answer = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if stream.write_all(answer.as_bytes()).await.is_err() || close_after_answer {
                return;
            }
        }
    }
}

/// One listener, one route and pool `app` over `backend`, with no retries (so only
/// the client's handling of its connections can save a request).
fn config(backend: SocketAddr, pool_extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"{backend}\" }}]\n{pool_extra}\n[pool.app.retry]\nattempts = 0\n"
    )
}

/// Sends `GET /stall` over a raw connection to `web`, reads the answer's head and
/// first chunk, and walks away (closes the connection) in the middle of the body.
async fn walk_away_mid_answer(web: SocketAddr) {
    let mut stream = tokio::net::TcpStream::connect(web).await.unwrap();
    stream
        .write_all(b"GET /stall HTTP/1.1\r\nHost: app\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        while !got.windows(5).any(|w| w == b"first") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the proxy closed before relaying the first chunk");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(WITHIN, read)
        .await
        .expect("the first chunk was relayed");
    assert!(
        got.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    drop(stream);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequential_requests_reuse_one_backend_connection() {
    let backend = RawBackend::start(false).await;
    let proxy = start_proxy(&config(backend.addr, "")).await;
    let c = client();
    for i in 0..10 {
        let (status, _, body) = get(&c, &format!("http://{}/item/{i}", proxy.web)).await;
        assert_eq!(
            (status, body.as_ref()),
            (200, b"ok".as_ref()),
            "request {i}"
        );
    }
    assert_eq!(
        backend.accepted(),
        1,
        "ten sequential requests went out on one kept connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_answer_was_not_read_to_the_end_is_not_reused() {
    let mut backend = RawBackend::start(false).await;
    let proxy = start_proxy(&config(backend.addr, "")).await;
    walk_away_mid_answer(proxy.web).await;
    // The proxy closes the connection that still has the rest of an answer on it.
    backend
        .one_closed("the half-read connection was kept")
        .await;
    let c = client();
    let (status, _, body) = get(&c, &format!("http://{}/", proxy.web)).await;
    assert_eq!((status, body.as_ref()), (200, b"ok".as_ref()));
    assert_eq!(
        backend.accepted(),
        2,
        "the next request opened a new connection"
    );
    // That one was read to its end, so it is kept.
    let (status, _, _) = get(&c, &format!("http://{}/", proxy.web)).await;
    assert_eq!(status, 200);
    assert_eq!(backend.accepted(), 2, "a fully read connection is reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_closing_its_idle_connections_costs_no_client_an_error() {
    let mut backend = RawBackend::start(true).await;
    let proxy = start_proxy(&config(backend.addr, "")).await;
    let c = client();
    for i in 0..10 {
        let (status, _, body) = get(&c, &format!("http://{}/", proxy.web)).await;
        assert_eq!(
            (status, body.as_ref()),
            (200, b"ok".as_ref()),
            "request {i}"
        );
        // The backend has closed the connection the proxy keeps for the next one.
        backend.one_closed("the backend's close").await;
    }
    assert_eq!(
        backend.accepted(),
        10,
        "each request went out on a fresh connection"
    );
}

/// Sends `n` concurrent GETs of `path` through `web` and checks each answer.
async fn burst(c: &TestClient, web: SocketAddr, path: &str, n: usize) {
    let requests = (0..n).map(|i| {
        let c = c.clone();
        let url = format!("http://{web}{path}");
        tokio::spawn(async move {
            let (status, _, body) = get(&c, &url).await;
            assert_eq!(
                (status, body.as_ref()),
                (200, b"ok".as_ref()),
                "request {i}"
            );
        })
    });
    for request in futures_util::future::join_all(requests).await {
        request.expect("request task");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_keeps_its_backend_connections_for_the_next_one() {
    // More than a small idle ceiling (64 per backend until it was raised) would keep.
    const AT_ONCE: usize = 100;
    let backend = RawBackend::start_gathering(false, AT_ONCE).await;
    let proxy = start_proxy(&config(backend.addr, "")).await;
    let c = client();
    for round in 0..3 {
        tokio::time::timeout(WITHIN, burst(&c, proxy.web, GATHER, AT_ONCE))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the burst was not answered"));
        assert_eq!(
            backend.accepted(),
            AT_ONCE as u64,
            "round {round}: every connection of the first burst was kept for the next"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_burst_steady_traffic_reuses_the_newest_connection_and_the_rest_age_out() {
    const AT_ONCE: usize = 8;
    let mut backend = RawBackend::start_gathering(false, AT_ONCE).await;
    let config = config(backend.addr, "").replace(
        "[[listener]]",
        "[limits]\nupstream_idle_timeout = \"1s\"\n[[listener]]",
    );
    let proxy = start_proxy(&config).await;
    let c = client();
    tokio::time::timeout(WITHIN, burst(&c, proxy.web, GATHER, AT_ONCE))
        .await
        .expect("the burst was answered");
    // One request every 50 ms: were the kept connections handed out in turn, each
    // would be reused every 400 ms, well within the 1 s idle timeout, and none
    // would ever close.
    let deadline = tokio::time::Instant::now() + WITHIN;
    let mut closed = 0;
    while closed < AT_ONCE - 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{closed} of the {} connections steady traffic did not need were closed",
            AT_ONCE - 1
        );
        let (status, _, _) = get(&c, &format!("http://{}/", proxy.web)).await;
        assert_eq!(status, 200);
        closed += backend.closed_since();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, _) = get(&c, &format!("http://{}/", proxy.web)).await;
    assert_eq!(status, 200);
    assert_eq!(
        (backend.accepted(), closed + backend.closed_since()),
        (AT_ONCE as u64, AT_ONCE - 1),
        "steady traffic ran on one connection of the burst, opening none"
    );
}

/// Sends `GET path` on a kept-alive client connection and returns the answer's
/// body (its head has a `Content-Length`).
async fn ask(stream: &mut tokio::net::TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: app\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                assert!(head.starts_with("http/1.1 200"), "{head}");
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .expect("a Content-Length");
                if got.len() >= end + 4 + length {
                    return String::from_utf8_lossy(&got[end + 4..end + 4 + length]).into_owned();
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the proxy closed the connection");
            got.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(WITHIN, read).await.expect("an answer")
}

/// The binary serves connections on shards (one thread and event loop each); a
/// backend connection is registered in the event loop of the shard that opened
/// it, so only that shard may use it again. Two keep-alive clients, one on each
/// shard, take turns: each is always answered on its own backend connection. A
/// pool shared by the shards would hand the one idle connection to both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_reuses_only_the_backend_connections_it_opened() {
    let backend = RawBackend::start(false).await;
    let options = ServerOptions {
        access_log: false,
        shards: 2,
    };
    let proxy = start_proxy_with(&config(backend.addr, ""), options).await;
    let mut first = tokio::net::TcpStream::connect(proxy.web).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(proxy.web).await.unwrap();
    wait_for("one client on each shard", WITHIN, async || {
        proxy.server.shard_loads() == [1, 1]
    })
    .await;
    let (mut on_first, mut on_second) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        on_first.push(ask(&mut first, NUMBER).await);
        on_second.push(ask(&mut second, NUMBER).await);
    }
    on_first.dedup();
    on_second.dedup();
    assert_eq!(
        on_first.len(),
        1,
        "one backend connection for the first client: {on_first:?}"
    );
    assert_eq!(on_second.len(), 1, "one for the second: {on_second:?}");
    assert_ne!(
        on_first, on_second,
        "each shard on a backend connection of its own"
    );
    assert_eq!(proxy.server.shard_loads(), [1, 1]);

    drop((first, second));
    wait_for("the shards to let both clients go", WITHIN, async || {
        proxy.server.shard_loads() == [0, 0]
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_walking_away_mid_answer_gives_back_the_backends_in_flight_count() {
    let mut backend = RawBackend::start(false).await;
    let proxy = start_proxy(&config(backend.addr, "")).await;
    let addr = backend.addr;
    let in_flight = async |proxy: &support::TestProxy| {
        backend_status(proxy, addr).await["in_flight"]
            .as_u64()
            .expect("in_flight in /status")
    };
    for round in 0..3 {
        walk_away_mid_answer(proxy.web).await;
        backend.one_closed("the abandoned exchange").await;
        wait_for(
            &format!("round {round}: in-flight back to 0"),
            WITHIN,
            async || in_flight(&proxy).await == 0,
        )
        .await;
    }
    // The backend still takes requests: nothing was left counted against it.
    let (status, _, _) = get(&client(), &format!("http://{}/", proxy.web)).await;
    assert_eq!(status, 200);
    assert_eq!(in_flight(&proxy).await, 0);
}

/// An HTTP/2 (by ALPN) TLS backend that holds each answer for `hold`, counting the
/// TCP connections it accepted and the most streams it had open at once on one.
async fn h2_backend(
    server: &support::tls::Issued,
    hold: Duration,
) -> (SocketAddr, Arc<AtomicU64>, Arc<AtomicUsize>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use rustls::pki_types::pem::PemObject;
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(server.cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let most_streams = Arc::new(AtomicUsize::new(0));
    let (count, most) = (Arc::clone(&accepted), Arc::clone(&most_streams));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let (acceptor, most) = (acceptor.clone(), Arc::clone(&most));
            let open = Arc::new(AtomicUsize::new(0));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    let (open, most) = (Arc::clone(&open), Arc::clone(&most));
                    async move {
                        let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        tokio::time::sleep(hold).await;
                        open.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"h2")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (addr, accepted, most_streams)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_backends_carry_concurrent_requests_as_streams_of_one_connection() {
    let ca = support::tls::TestCa::new("backend CA");
    let dir = support::tls::temp_dir("upstream-pool-h2");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (backend, accepted, most_streams) =
        h2_backend(&ca.server(&["backend.test"]), Duration::from_millis(300)).await;
    let tls = format!(
        "tls = {{ sni = \"backend.test\", ca = \"{}\" }}",
        ca_file.display()
    );
    let proxy = start_proxy(&config(backend, &tls)).await;
    let c = client();
    let (status, _, body) = get(&c, &format!("http://{}/", proxy.web)).await;
    assert_eq!((status, body.as_ref()), (200, b"h2".as_ref()));
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // Sixteen clients at once, each on its own client connection: every request
    // becomes a stream of the one connection the proxy keeps to the backend.
    let requests: Vec<_> = (0..16)
        .map(|_| {
            let url = format!("http://{}/", proxy.web);
            tokio::spawn(async move { get(&client(), &url).await })
        })
        .collect();
    for request in requests {
        let (status, _, body) = request.await.unwrap();
        assert_eq!((status, body.as_ref()), (200, b"h2".as_ref()));
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "concurrent requests opened connections of their own"
    );
    assert!(
        most_streams.load(Ordering::SeqCst) > 1,
        "the requests did not overlap as streams on the connection"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// With two shards each keeps an HTTP/2 connection of its own to a backend that
/// speaks it, as each keeps its own HTTP/1 ones: two clients, one on each shard,
/// are carried on two backend connections, and a second round opens none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_shard_keeps_an_http2_backend_connection_of_its_own() {
    let ca = support::tls::TestCa::new("backend CA");
    let dir = support::tls::temp_dir("upstream-pool-h2-shards");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (backend, accepted, _) = h2_backend(&ca.server(&["backend.test"]), Duration::ZERO).await;
    let tls = format!(
        "tls = {{ sni = \"backend.test\", ca = \"{}\" }}",
        ca_file.display()
    );
    let options = ServerOptions {
        access_log: false,
        shards: 2,
    };
    let proxy = start_proxy_with(&config(backend, &tls), options).await;
    let mut first = tokio::net::TcpStream::connect(proxy.web).await.unwrap();
    let mut second = tokio::net::TcpStream::connect(proxy.web).await.unwrap();
    wait_for("one client on each shard", WITHIN, async || {
        proxy.server.shard_loads() == [1, 1]
    })
    .await;
    for round in 0..3 {
        assert_eq!(ask(&mut first, "/").await, "h2", "round {round}");
        assert_eq!(ask(&mut second, "/").await, "h2", "round {round}");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            2,
            "round {round}: one backend connection per shard, reused"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
