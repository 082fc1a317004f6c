//! Clients walk away: 200 requests aborted at random points (before the head,
//! mid-body, while the backend is slow, during a retry, during a half-open trial,
//! inside a WebSocket, HTTP/2 streams cancelled alone or with their connection)
//! under steady load. Afterwards every in-flight count is 0, a
//! drain reaches `drained`, the breaker closes once its backend recovers, and no
//! backend's failure counter moved because of a client.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::*;
use switchyard::server::ServerOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ABORTS: usize = 200;
/// The backend's delay for `/slow`, `/retry` and trials: aborts land inside it.
const SLOW: Duration = Duration::from_millis(400);

/// A backend that reads a request head and closes the connection (a reset after the
/// request was sent), so the proxy retries elsewhere.
async fn resetting_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    addr
}

struct Backends {
    fast: TestBackend,
    slow_a: TestBackend,
    slow_b: TestBackend,
    after_reset: TestBackend,
    resetter: SocketAddr,
    trial: TestBackend,
    ws: TestBackend,
}

fn config(b: &Backends) -> String {
    let route = |name: &str, prefix: &str, pool: &str| {
        format!(
            "[[route]]\nname = \"{name}\"\nlistener = \"web\"\npath_prefix = \"{prefix}\"\npool = \"{pool}\"\n"
        )
    };
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[limits]\nheader_read_timeout = \"2s\"\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         {}{}{}{}{}\
         [pool.fast]\nbackends = [{{ address = \"{}\" }}]\n\
         [pool.slow]\nbackends = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\
         [pool.slow.breaker]\nconsecutive_failures = 1\n\
         [pool.retry]\nbackends = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\
         [pool.retry.breaker]\nconsecutive_failures = 0\n\
         [pool.retry.retry]\nattempts = 1\non = [\"reset\"]\nbackoff = \"150ms\"\nbudget_percent = 100\n\
         [pool.trial]\nbackends = [{{ address = \"{}\" }}]\n\
         [pool.trial.breaker]\nconsecutive_failures = 1\nopen_for = \"100ms\"\nmax_open_for = \"100ms\"\nhalf_open_requests = 1\n\
         [pool.trial.retry]\nattempts = 0\n\
         [pool.ws]\nbackends = [{{ address = \"{}\" }}]\n\
         [pool.ws.breaker]\nconsecutive_failures = 1\n",
        route("fast", "/", "fast"),
        route("slow", "/slow", "slow"),
        route("retry", "/retry", "retry"),
        route("trial", "/trial", "trial"),
        route("ws", "/ws", "ws"),
        b.fast.addr,
        b.slow_a.addr,
        b.slow_b.addr,
        b.resetter,
        b.after_reset.addr,
        b.trial.addr,
        b.ws.addr,
    )
}

/// Closes `stream` as an impatient client does: a FIN, or a reset.
fn walk_away(stream: TcpStream, reset: bool) {
    if reset {
        let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    }
    drop(stream);
}

/// How many kinds of abort [`abort_once`] knows.
const KINDS: usize = 6;

/// One abort of the given kind; `rng` picks the moment and the way.
async fn abort_once(web: SocketAddr, kind: usize, rng: &mut fastrand::Rng) {
    let reset = rng.bool();
    let mut s = TcpStream::connect(web).await.unwrap();
    if kind == KINDS - 1 {
        return abort_h2(s, reset, rng).await;
    }
    match kind {
        // Before the head is complete.
        0 => {
            let _ = s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Par").await;
            tokio::time::sleep(Duration::from_millis(rng.u64(0..50))).await;
        }
        // Mid-body: a small body the proxy buffers, or a large one it streams.
        1 => {
            let declared = if rng.bool() { 1_000 } else { 1_000_000 };
            let head =
                format!("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n\r\n");
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&vec![b'b'; 500]).await;
            tokio::time::sleep(Duration::from_millis(rng.u64(0..150))).await;
        }
        // While the backend is slow.
        2 => {
            let _ = s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(rng.u64(20..350))).await;
        }
        // During a retry: the first try is reset, the backoff is 150 ms, the
        // second try is slow.
        3 => {
            let _ = s.write_all(b"GET /retry HTTP/1.1\r\nHost: x\r\n\r\n").await;
            tokio::time::sleep(Duration::from_millis(rng.u64(0..500))).await;
        }
        // Inside a WebSocket.
        _ => {
            let _ = s
                .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
                .await;
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).await.unwrap_or(0);
            assert!(
                String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"),
                "tunnel opened"
            );
            let _ = s.write_all(b"ping").await;
            let mut echo = [0u8; 4];
            let _ = s.read_exact(&mut echo).await;
            tokio::time::sleep(Duration::from_millis(rng.u64(0..100))).await;
        }
    }
    walk_away(s, reset);
}

/// HTTP/2: one to four streams on one connection, to the slow and the retrying
/// pools; each stream may be cancelled alone (a `RST_STREAM`) at a random moment,
/// and then the whole connection goes, with whatever streams are still open.
async fn abort_h2(s: TcpStream, reset: bool, rng: &mut fastrand::Rng) {
    if reset {
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    }
    let (mut sender, driver) = h2_client(s).await;
    let mut streams = Vec::new();
    for _ in 0..rng.usize(1..5) {
        if sender.ready().await.is_err() {
            break;
        }
        let path = if rng.bool() { "/slow" } else { "/retry" };
        let request = http::Request::get(format!("http://x{path}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .expect("request");
        let answer = sender.send_request(request);
        // Dropping the answer's future before it completes cancels the stream.
        let cancel_after = Duration::from_millis(rng.u64(0..500));
        streams.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(cancel_after, answer).await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(rng.u64(0..350))).await;
    driver.abort();
    let _ = driver.await;
    for stream in streams {
        let _ = stream.await;
    }
}

/// Opens the trial pool's breaker with one deliberate failure; returns when open.
async fn open_trial_breaker(proxy: &TestProxy, trial: &TestBackend, deliberate: &AtomicU64) {
    let c = client();
    trial.set_mode(Mode::Status(503));
    loop {
        let (code, _, _) = get(&c, &format!("http://{}/trial", proxy.web)).await;
        if code == 503 && trial_breaker(proxy, trial).await == "open" {
            // Only answers from the backend count as its failures, not the proxy's
            // own fast 503 while the breaker is open.
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deliberate.store(
        backend_status(proxy, trial.addr).await["failures"]
            .as_u64()
            .unwrap(),
        Ordering::Relaxed,
    );
}

async fn trial_breaker(proxy: &TestProxy, trial: &TestBackend) -> String {
    backend_status(proxy, trial.addr).await["breaker"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Aborts a request that is the half-open trial: the breaker is open, its open
/// period ends, the next request is the only one admitted, and it is cut off.
async fn abort_trial(proxy: &TestProxy, trial: &TestBackend, rng: &mut fastrand::Rng) {
    trial.set_mode(Mode::Slow(SLOW));
    // The first request after the open period is the trial. (A poll loop rather
    // than `wait_for`: this runs in a spawned task, where an async closure that
    // borrows the proxy is not `Send`.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while backend_status(proxy, trial.addr).await["breaker_open_remaining_ms"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the trial breaker's open period never ended"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut s = TcpStream::connect(proxy.web).await.unwrap();
    let _ = s.write_all(b"GET /trial HTTP/1.1\r\nHost: x\r\n\r\n").await;
    tokio::time::sleep(Duration::from_millis(rng.u64(30..300))).await;
    walk_away(s, rng.bool());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_aborts_leave_nothing_in_flight_and_nothing_blamed() {
    let seed = std::env::var("ABORT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("abort test seed: {seed} (rerun with ABORT_SEED={seed})");
    let b = Backends {
        fast: TestBackend::start("fast").await,
        slow_a: TestBackend::start("slow-a").await,
        slow_b: TestBackend::start("slow-b").await,
        after_reset: TestBackend::start("after-reset").await,
        resetter: resetting_backend().await,
        trial: TestBackend::start("trial").await,
        ws: TestBackend::start("ws").await,
    };
    for slow in [&b.slow_a, &b.slow_b, &b.after_reset] {
        slow.set_mode(Mode::Slow(SLOW));
    }
    // Served on two shards, as the binary serves them: each connection, and the
    // backend connections its requests take, on a thread of its own.
    let options = ServerOptions {
        access_log: false,
        shards: 2,
    };
    let proxy = Arc::new(start_proxy_with(&config(&b), options).await);
    let load = Load::start(4, format!("http://{}/", proxy.web));

    // Half-open trials are aborted one after another, beside the other aborts.
    let deliberate = Arc::new(AtomicU64::new(0));
    let trials = 20;
    let trial_task = {
        let (proxy, trial, deliberate) =
            (Arc::clone(&proxy), b.trial.clone(), Arc::clone(&deliberate));
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed ^ 0x0074_7269_616c);
            for _ in 0..trials {
                open_trial_breaker(&proxy, &trial, &deliberate).await;
                abort_trial(&proxy, &trial, &mut rng).await;
            }
        })
    };

    // The other 180, twenty at a time.
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kinds = [0usize; KINDS];
    let mut remaining = ABORTS - trials;
    while remaining > 0 {
        let batch = remaining.min(20);
        let mut tasks = Vec::new();
        for _ in 0..batch {
            let kind = rng.usize(0..KINDS);
            kinds[kind] += 1;
            let mut task_rng = fastrand::Rng::with_seed(rng.u64(..));
            let web = proxy.web;
            tasks.push(tokio::spawn(async move {
                abort_once(web, kind, &mut task_rng).await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        remaining -= batch;
    }
    trial_task.await.unwrap();
    eprintln!(
        "aborts by kind (head, body, slow, retry, websocket, h2): {kinds:?}, trials: {trials}"
    );
    assert!(
        kinds.iter().all(|&k| k > 0),
        "every kind was exercised: {kinds:?}"
    );

    let (served, failed) = load.stop().await;
    assert!(served > 0);
    assert_eq!(failed, 0, "aborts cost the steady load nothing");

    // Every in-flight count returns to 0: backends, pools, routes, tunnels, global.
    // Requests cut off client-side may still be finishing inside the proxy for up to
    // the slow backend's delay, so wait for the condition, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let s = loop {
        let s = status(&proxy).await;
        let metrics = metrics_text(&proxy).await;
        let busy = s["pools"].as_array().unwrap().iter().any(|p| {
            p["in_flight"] != 0
                || p["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|b| b["in_flight"] != 0 || b["tunnels"] != 0)
        }) || s["routes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["in_flight"] != 0)
            || metric_value(&metrics, "switchyard_requests_in_flight") != 0.0;
        if !busy || tokio::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for p in s["pools"].as_array().unwrap() {
        assert_eq!(p["in_flight"], 0, "pool {}: {p}", p["name"]);
        for be in p["backends"].as_array().unwrap() {
            assert_eq!(be["in_flight"], 0, "backend {}: {be}", be["address"]);
            assert_eq!(be["tunnels"], 0, "backend {}: {be}", be["address"]);
        }
    }
    for r in s["routes"].as_array().unwrap() {
        assert_eq!(r["in_flight"], 0, "route {}: {r}", r["name"]);
    }
    let metrics = metrics_text(&proxy).await;
    assert_eq!(metric_value(&metrics, "switchyard_requests_in_flight"), 0.0);
    // Every aborted connection gave back its seat on its shard.
    wait_for(
        "every shard to serve no connection",
        Duration::from_secs(10),
        async || proxy.server.shard_loads() == [0, 0],
    )
    .await;
    assert!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"client_aborted\"}"
        ) > 0.0
    );

    // No backend was blamed for a client walking away.
    for (name, addr) in [
        ("slow-a", b.slow_a.addr),
        ("slow-b", b.slow_b.addr),
        ("after-reset", b.after_reset.addr),
        ("ws", b.ws.addr),
        ("fast", b.fast.addr),
    ] {
        let be = backend_status(&proxy, addr).await;
        assert_eq!(be["failures"], 0, "{name}: {be}");
        assert_eq!(be["breaker"], "closed", "{name}: {be}");
    }
    let trial_failures = backend_status(&proxy, b.trial.addr).await["failures"]
        .as_u64()
        .unwrap();
    assert_eq!(
        trial_failures,
        deliberate.load(Ordering::Relaxed),
        "only the deliberate 503s count against the trial backend, never an aborted trial"
    );

    // The breaker closes once its backend recovers: the aborted trials came back.
    b.trial.set_mode(Mode::Ok);
    let c = client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while trial_breaker(&proxy, &b.trial).await != "closed" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "breaker stuck: {}",
            backend_status(&proxy, b.trial.addr).await
        );
        get(&c, &format!("http://{}/trial", proxy.web)).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }

    // A drain of every backend that saw aborts reaches `drained`.
    for (pool, addr) in [
        ("slow", b.slow_a.addr),
        ("slow", b.slow_b.addr),
        ("retry", b.after_reset.addr),
        ("trial", b.trial.addr),
        ("ws", b.ws.addr),
    ] {
        let (code, answer) = admin_call(
            &proxy,
            "POST",
            &format!("/pools/{pool}/backends/{addr}/drain"),
            "",
        )
        .await;
        assert_eq!(code, 200, "{answer}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let states: Vec<String> = [
            b.slow_a.addr,
            b.slow_b.addr,
            b.after_reset.addr,
            b.trial.addr,
            b.ws.addr,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let s = status(&proxy).await;
        let drained = s["pools"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["backends"].as_array().unwrap().iter())
            .filter(|be| states.contains(&be["address"].as_str().unwrap().to_string()))
            .all(|be| be["admin_state"] == "drained");
        if drained {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "drain stuck: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
