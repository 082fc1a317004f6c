//! The core proxy seen from a client: balancing, streaming, protocols, headers, limits,
//! admin, config errors and graceful drain. Everything runs on loopback against real
//! hyper backends and a real proxy.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn spread(proxy: &TestProxy, n: usize, path: &str) -> HashMap<String, usize> {
    let c = client();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let (status, backend, _) = get(&c, &format!("http://{}{path}", proxy.web)).await;
        assert_eq!(status, 200);
        *counts.entry(backend).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_evenly() {
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    let proxy = start_proxy(&simple_config(&[&a, &b, &c], "balance = \"round-robin\"")).await;
    let counts = spread(&proxy, 300, "/").await;
    for name in ["a", "b", "c"] {
        assert_eq!(counts[name], 100, "{counts:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_follows_weights() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let config =
        simple_config(&[&a, &b], "balance = \"weighted\"").replacen("weight = 1", "weight = 3", 1);
    let proxy = start_proxy(&config).await;
    let counts = spread(&proxy, 400, "/").await;
    assert_eq!(counts["a"], 300, "{counts:?}");
    assert_eq!(counts["b"], 100, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_the_slow_backend() {
    let (fast, slow) = (
        TestBackend::start("fast").await,
        TestBackend::start("slow").await,
    );
    slow.set_mode(Mode::Slow(Duration::from_millis(200)));
    let proxy = start_proxy(&simple_config(
        &[&fast, &slow],
        "balance = \"least-request\"",
    ))
    .await;
    let url = format!("http://{}/", proxy.web);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..15 {
                assert_eq!(get(&c, &url).await.0, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(
        fast.hits() > 3 * slow.hits(),
        "fast {} slow {}",
        fast.hits(),
        slow.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_is_sticky_and_adding_a_backend_moves_few_keys() {
    let backends = [
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
        TestBackend::start("d").await,
    ];
    let refs: Vec<&TestBackend> = backends.iter().take(3).collect();
    let proxy = start_proxy(&simple_config(
        &refs,
        "balance = \"hash\"\nhash_on = \"header:x-user\"",
    ))
    .await;
    let c = client();
    let owner = |users: usize| {
        let c = c.clone();
        let web = proxy.web;
        async move {
            let mut map = Vec::new();
            for u in 0..users {
                let req = Request::get(format!("http://{web}/"))
                    .header("x-user", format!("user-{u}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                let resp = c.request(req).await.unwrap();
                map.push(resp.headers()["x-backend"].to_str().unwrap().to_string());
            }
            map
        }
    };
    let before = owner(300).await;
    assert_eq!(
        before,
        owner(300).await,
        "the same key must stay on the same backend"
    );
    let all: Vec<&TestBackend> = backends.iter().collect();
    let config = switchyard::config::Config::parse(
        std::path::Path::new("test.toml"),
        &simple_config(&all, "balance = \"hash\"\nhash_on = \"header:x-user\""),
    )
    .unwrap();
    proxy.server.apply(config).await.unwrap();
    let after = owner(300).await;
    let moved = before.iter().zip(&after).filter(|(x, y)| x != y).count();
    assert!(after.iter().any(|b| b == "d"), "the new backend gets keys");
    assert!(
        after.iter().zip(&before).all(|(a, b)| a == b || a == "d"),
        "keys only move to the new backend"
    );
    assert!(
        (30..=120).contains(&moved),
        "about 1/4 of 300 keys should move, moved {moved}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_stream_both_ways() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let c = client();
    // 32 MiB down.
    let resp = c
        .get(
            format!("http://{}/big?bytes={}", proxy.web, 32 << 20)
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        total += frame.unwrap().into_data().map(|d| d.len()).unwrap_or(0);
    }
    assert_eq!(total, 32 << 20);
    // 8 MiB up and echoed back (above the retry buffer, so it streams).
    let payload: Vec<u8> = (0..(8 << 20)).map(|i| (i % 251) as u8).collect();
    let req = Request::post(format!("http://{}/echo", proxy.web))
        .body(Full::new(Bytes::from(payload.clone())))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let echoed = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(echoed == payload, "echoed body differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge_is_proxied() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let h2: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let resp = h2
        .get(format!("http://{}/", proxy.web).parse().unwrap())
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "a");
}

/// A backend whose `/slow` answers only once `release` is notified (each request on
/// its own connection, so the proxy sends it several at once); anything else
/// answers at once. Counts the `/slow` requests it holds.
async fn gated_backend(
    release: Arc<tokio::sync::Notify>,
) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let held = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let release = Arc::clone(&release);
            let held = Arc::clone(&counter);
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let release = Arc::clone(&release);
                        let held = Arc::clone(&held);
                        async move {
                            if req.uri().path() == "/slow" {
                                // Waiting before it is counted: a release sent as soon
                                // as the count is reached reaches this request too.
                                let released = release.notified();
                                held.fetch_add(1, Ordering::SeqCst);
                                released.await;
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::from(req.uri().path().to_owned()),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, held)
}

fn h2_get(proxy: &TestProxy, path: &str) -> Request<Full<Bytes>> {
    Request::get(format!("http://{}{path}", proxy.web))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_streams_of_one_connection_are_served_side_by_side() {
    use std::sync::atomic::Ordering;
    let release = Arc::new(tokio::sync::Notify::new());
    let (backend, held) = gated_backend(Arc::clone(&release)).await;
    let proxy = start_proxy(&single_try_config(backend, "10s")).await;
    let (sender, _driver) = h2_client(TcpStream::connect(proxy.web).await.unwrap()).await;

    // Three streams wait on the backend; a fourth on the same connection is
    // answered meanwhile: no stream waits for another.
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let mut sender = sender.clone();
            let request = h2_get(&proxy, "/slow");
            tokio::spawn(async move { sender.send_request(request).await })
        })
        .collect();
    wait_for(
        "the backend to hold three requests",
        Duration::from_secs(10),
        async || held.load(Ordering::SeqCst) == 3,
    )
    .await;
    let mut fast_sender = sender.clone();
    let fast = tokio::time::timeout(
        Duration::from_secs(5),
        fast_sender.send_request(h2_get(&proxy, "/fast")),
    )
    .await
    .expect("a stream was held up by the slow ones on its connection")
    .unwrap();
    assert_eq!(fast.status(), 200);
    assert_eq!(
        fast.into_body().collect().await.unwrap().to_bytes(),
        "/fast"
    );

    release.notify_waiters();
    for answer in slow {
        let answer = answer.await.unwrap().unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.into_body().collect().await.unwrap().to_bytes(),
            "/slow"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_gone_mid_request_leaves_nothing_in_flight() {
    use std::sync::atomic::Ordering;
    let release = Arc::new(tokio::sync::Notify::new());
    let (backend, held) = gated_backend(Arc::clone(&release)).await;
    let proxy = start_proxy(&single_try_config(backend, "30s")).await;
    // The h2 crate's client: its connection future owns the socket, so ending the
    // task that drives it closes the connection at once, streams open.
    let tcp = TcpStream::connect(proxy.web).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await.unwrap();
    let mut waiting = Vec::new();
    for _ in 0..4 {
        let request = Request::get(format!("http://{}/slow", proxy.web))
            .body(())
            .unwrap();
        let (answer, _) = client.send_request(request, true).unwrap();
        waiting.push(answer);
        client = client.ready().await.unwrap();
    }
    wait_for(
        "the backend to hold four requests",
        Duration::from_secs(10),
        async || held.load(Ordering::SeqCst) == 4,
    )
    .await;
    let metrics = metrics_text(&proxy).await;
    assert_eq!(metric_value(&metrics, "switchyard_requests_in_flight"), 4.0);

    // The client's connection goes away with four streams waiting on the backend:
    // every one of them gives its in-flight count back, well before the 30 s try
    // timeout, and none is blamed on the backend.
    driver.abort();
    drop((client, waiting));
    wait_for(
        "the streams to be released",
        Duration::from_secs(10),
        async || {
            let metrics = metrics_text(&proxy).await;
            metric_value(&metrics, "switchyard_requests_in_flight") == 0.0
        },
    )
    .await;
    let pool = &status(&proxy).await["pools"][0];
    assert_eq!(pool["in_flight"], 0, "{pool}");
    assert_eq!(pool["backends"][0]["in_flight"], 0, "{pool}");
    let backend_seen = backend_status(&proxy, backend).await;
    assert_eq!(backend_seen["failures"], 0, "{backend_seen}");

    // The proxy goes on serving on a new connection.
    let (mut sender, _driver) = h2_client(TcpStream::connect(proxy.web).await.unwrap()).await;
    let answer = sender.send_request(h2_get(&proxy, "/fast")).await.unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_kept_alive_and_reused() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let c = client();
    for _ in 0..50 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    assert_eq!(a.hits(), 50);
    assert!(
        a.connections() <= 2,
        "50 sequential requests used {} connections",
        a.connections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_are_rewritten_for_the_backend() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let req = Request::get(format!("http://{}/headers", proxy.web))
        .header("host", "app.example.com")
        .header("connection", "keep-alive, x-drop-me")
        .header("x-drop-me", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic Zm9vOmJhcg==")
        .header("x-forwarded-for", "203.0.113.7")
        .header("x-custom", "kept")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let generated_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let seen: HashMap<String, String> = serde_json::from_slice(&body).unwrap();
    assert!(!seen.contains_key("x-drop-me"), "{seen:?}");
    assert!(!seen.contains_key("keep-alive"));
    assert!(!seen.contains_key("proxy-authorization"));
    assert_eq!(seen["x-custom"], "kept");
    assert_eq!(seen["host"], "app.example.com");
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "app.example.com");
    assert_eq!(seen["x-request-id"], generated_id);
    assert_eq!(generated_id.len(), 32);

    let req = Request::get(format!("http://{}/headers", proxy.web))
        .header("x-request-id", "abc-123")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let seen: HashMap<String, String> =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(seen["x-request-id"], "abc-123");
}

async fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_get_431() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let answer = raw(proxy.web, big.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(80)]
    );
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let answer = raw(proxy.web, many.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..answer.len().min(80)]
    );
    assert_eq!(a.hits(), 0);
    let (_, _, metrics) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("switchyard_client_errors_total{reason=\"header_too_large\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_heads_are_cut_off_but_idle_keepalive_is_not() {
    let a = TestBackend::start("a").await;
    let config = simple_config_with_limits(
        &[&a],
        "header_read_timeout = \"300ms\"\nidle_timeout = \"2s\"",
        "",
    );
    let proxy = start_proxy(&config).await;
    // A slowloris client: starts a head and never finishes it.
    let mut slow = TcpStream::connect(proxy.web).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "connection should be closed");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A keep-alive connection idle for longer than the header timeout stays usable.
    let mut idle = TcpStream::connect(proxy.web).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(800)).await;
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = idle.read(&mut buf).await.unwrap();
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "idle keep-alive connection was closed too early"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrades_pass_through() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let mut s = open_tunnel(proxy.web).await;
    s.write_all(b"ping through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"ping through the tunnel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_longest_prefix_and_404_otherwise() {
    let (api, web, admin_app) = (
        TestBackend::start("api").await,
        TestBackend::start("web").await,
        TestBackend::start("app").await,
    );
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"api\"\nlistener = \"web\"\npath_prefix = \"/api\"\npool = \"api\"\n\
         [[route]]\nname = \"site\"\nlistener = \"web\"\nhost = \"www.example.com\"\npool = \"web\"\n\
         [[route]]\nname = \"app\"\nlistener = \"web\"\nhost = \"app.example.com\"\npath_prefix = \"/\"\npool = \"app\"\n\
         [pool.api]\nbackends = [{{ address = \"{}\" }}]\n[pool.web]\nbackends = [{{ address = \"{}\" }}]\n[pool.app]\nbackends = [{{ address = \"{}\" }}]\n",
        api.addr, web.addr, admin_app.addr
    );
    let proxy = start_proxy(&config).await;
    let c = client();
    let ask = |host: &'static str, path: &'static str| {
        let c = c.clone();
        let url = format!("http://{}{path}", proxy.web);
        async move {
            let req = Request::get(url)
                .header("host", host)
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = c.request(req).await.unwrap();
            (
                resp.status().as_u16(),
                resp.headers()
                    .get("x-backend")
                    .map(|v| v.to_str().unwrap().to_string()),
            )
        }
    };
    assert_eq!(
        ask("other.example.com", "/api/users").await,
        (200, Some("api".into()))
    );
    assert_eq!(
        ask("www.example.com", "/index.html").await,
        (200, Some("web".into()))
    );
    assert_eq!(
        ask("APP.example.com:8080", "/x").await,
        (200, Some("app".into()))
    );
    assert_eq!(ask("other.example.com", "/apiary").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_usable_backend_answers_503_fast() {
    let a = TestBackend::start("a").await;
    a.kill();
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let c = client();
    let started = Instant::now();
    let resp = c
        .get(format!("http://{}/", proxy.web).parse().unwrap())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        resp.status(),
        502,
        "a refused connect with nothing to retry on is a bad gateway"
    );
    // Once the breaker has ejected it, the answer is an immediate 503 with Retry-After.
    for _ in 0..5 {
        let _ = c
            .get(format!("http://{}/", proxy.web).parse().unwrap())
            .await
            .unwrap();
    }
    let started = Instant::now();
    let resp = c
        .get(format!("http://{}/", proxy.web).parse().unwrap())
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_report_health_readiness_metrics_and_status() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let c = client();
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    assert_eq!(
        get(&c, &format!("http://{}/health", proxy.admin)).await.0,
        200
    );
    assert_eq!(
        get(&c, &format!("http://{}/health/ready", proxy.admin))
            .await
            .0,
        200
    );
    let (_, _, metrics) = get(&c, &format!("http://{}/metrics", proxy.admin)).await;
    let metrics = String::from_utf8_lossy(&metrics);
    for needle in [
        "switchyard_requests_total{route=\"all\",class=\"2xx\"} 1",
        "switchyard_request_duration_seconds_bucket",
        "switchyard_requests_in_flight 0",
        &format!(
            "switchyard_backend_up{{pool=\"app\",backend=\"{}\"}} 1",
            a.addr
        ),
        "# TYPE switchyard_requests_total counter",
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    assert!(
        !metrics.contains("# EOF"),
        "Prometheus text format by default"
    );
    assert_promtool_accepts(&metrics);
    let status = status(&proxy).await;
    let backend = &status["pools"][0]["backends"][0];
    assert_eq!(backend["address"], a.addr.to_string());
    assert_eq!(backend["requests"], 1);
    assert_eq!(backend["breaker"], "closed");
    // The admin API is not reachable through the traffic listener.
    let (code, backend_name, _) = get(&c, &format!("http://{}/status", proxy.web)).await;
    assert_eq!(
        (code, backend_name.as_str()),
        (200, "a"),
        "traffic goes to the backend, not the admin API"
    );
    // Readiness fails once the only backend is ejected.
    a.kill();
    for _ in 0..6 {
        let _ = c
            .get(format!("http://{}/", proxy.web).parse().unwrap())
            .await;
    }
    assert_eq!(
        get(&c, &format!("http://{}/health/ready", proxy.admin))
            .await
            .0,
        503
    );
}

#[test]
fn check_reports_file_line_column_and_field() {
    let dir = std::env::temp_dir().join(format!("switchyard-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n\n[[route]]\nname = \"r\"\nlistener = \"web\"\npool = \"nope\"\n\n[pool.app]\nbalance = \"fastest\"\nbackends = [{ address = \"127.0.0.1:9001\" }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let file = bad.display().to_string();
    assert!(
        stderr.contains(&format!("{file}:8:8: route[0].pool: no pool named `nope`")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{file}:11:11: pool.app.balance: unknown balance `fastest`"
        )),
        "{stderr}"
    );

    std::fs::write(
        &bad,
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\ncolour = \"blue\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{file}:4:1: listener[0].colour: unknown field; expected one of: name, listen, tls, upgrades"
        ),
        "{stderr}"
    );

    let good = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "check",
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../config/switchyard.toml"),
        ])
        .output()
        .unwrap();
    assert!(
        good.status.success(),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_drain_finishes_in_flight_requests() {
    let a = TestBackend::start("a").await;
    a.set_mode(Mode::Slow(Duration::from_millis(800)));
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let url = format!("http://{}/", proxy.web);
    let in_flight = tokio::spawn(async move { get(&client(), &url).await });
    wait_for(
        "the request in flight",
        Duration::from_secs(10),
        async || status(&proxy).await["pools"][0]["backends"][0]["in_flight"] == 1,
    )
    .await;
    let server = Arc::clone(&proxy.server);
    let drained = tokio::spawn(async move { server.shutdown(Duration::from_secs(5)).await });
    wait_for(
        "no new connections once draining",
        Duration::from_secs(10),
        async || TcpStream::connect(proxy.web).await.is_err(),
    )
    .await;
    let (status, backend, _) = in_flight.await.unwrap();
    assert_eq!((status, backend.as_str()), (200, "a"));
    assert!(drained.await.unwrap(), "drain finished within the deadline");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    use std::io::{BufRead, BufReader};
    let rt = tokio::runtime::Runtime::new().unwrap();
    let backend = rt.block_on(TestBackend::start("a"));
    let dir = std::env::temp_dir().join(format!("switchyard-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("proxy.toml");
    std::fs::write(&file, simple_config(&[&backend], "")).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["--no-access-log", "--config"])
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let line = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|l| l.contains("listener `web` on"))
        .expect("the proxy prints its listener");
    let addr = line
        .split("http://")
        .nth(1)
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    let ok = rt.block_on(async { get(&client(), &format!("http://{addr}/")).await.0 });
    assert_eq!(ok, 200);
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend that takes one request and answers it only when told: a request held
/// in flight exactly as long as a test needs, with no timing guesses.
fn held_backend() -> (std::net::SocketAddr, std::sync::mpsc::Sender<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let (release, released) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = released.recv();
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nheld");
    });
    (address, release)
}

#[test]
fn sigint_stops_accepting_lets_the_request_in_flight_finish_and_exits_zero() {
    use support::spawned::{Spawned, binary, http_get, status_of, temp_dir, wait_until};
    let (backend, release) = held_backend();
    let dir = temp_dir("sigint");
    let file = dir.join("switchyard.toml");
    std::fs::write(
        &file,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
             [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
             [pool.app]\nbackends = [{{ address = \"{backend}\" }}]\n"
        ),
    )
    .unwrap();
    let mut command = std::process::Command::new(binary());
    command.args(["--no-access-log", "--config"]).arg(&file);
    let mut proxy = Spawned::start(command, &dir.join("log"), Duration::from_secs(60));
    let web = proxy.listener("web");
    let held = std::thread::spawn(move || http_get(web, "/"));
    wait_until("the request in flight", Duration::from_secs(10), || {
        status_of(proxy.admin)["pools"][0]["backends"][0]["in_flight"] == 1
    });

    proxy.signal("INT");
    wait_until(
        "the listener to stop accepting after SIGINT",
        Duration::from_secs(10),
        || std::net::TcpStream::connect(web).is_err(),
    );
    assert!(
        proxy.child.try_wait().unwrap().is_none(),
        "the proxy waits for the request in flight"
    );
    release.send(()).unwrap();
    let (code, body) = held
        .join()
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!((code, body.as_str()), (200, "held"));
    let exit = proxy
        .wait(Duration::from_secs(20))
        .expect("the proxy exits once drained");
    assert!(exit.success(), "{exit:?}\n{}", proxy.log_text());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_an_edit_the_file_watcher_cannot_see() {
    use support::spawned::{Spawned, binary, http_get, temp_dir, wait_until};
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    tokio::task::spawn_blocking(move || {
        // The config path is a symlink into another directory (a config kept per
        // release): an edit of its target raises no event in the watched directory,
        // so only SIGHUP brings it in.
        let dir = temp_dir("sighup");
        std::fs::create_dir_all(dir.join("release")).unwrap();
        let target = dir.join("release").join("switchyard.toml");
        std::fs::write(&target, simple_config(&[&a], "")).unwrap();
        let link = dir.join("switchyard.toml");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut command = std::process::Command::new(binary());
        command.args(["--no-access-log", "--config"]).arg(&link);
        let proxy = Spawned::start(command, &dir.join("log"), Duration::from_secs(60));
        let web = proxy.listener("web");
        assert_eq!(http_get(web, "/").unwrap(), (200, "a".to_string()));

        std::fs::write(&target, simple_config(&[&b], "")).unwrap();
        proxy.signal("HUP");
        wait_until(
            "requests answered by the backend of the edited file",
            Duration::from_secs(10),
            || http_get(web, "/").is_ok_and(|answer| answer == (200, "b".to_string())),
        );
        // The new snapshot serves before the reload that published it returns and is
        // counted: wait for the count, then it must be exactly one.
        let reloads = || {
            let (_, metrics) = http_get(proxy.admin, "/metrics").unwrap();
            metrics
                .lines()
                .find(|l| l.starts_with("switchyard_config_reloads_total{kind=\"ok\"}"))
                .map(str::to_string)
        };
        wait_until("the reload counted", Duration::from_secs(10), || {
            reloads().is_some()
        });
        assert_eq!(
            reloads().as_deref(),
            Some("switchyard_config_reloads_total{kind=\"ok\"} 1"),
            "one reload, by the signal"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_bodies_reach_the_backend() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/echo", proxy.web))
        .body(Full::new(Bytes::from_static(b"small body")))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        "small body"
    );
}

/// A TLS listener with a self-signed certificate; returns the proxy and the client config roots.
async fn tls_proxy(
    backend: &TestBackend,
) -> (TestProxy, rustls::RootCertStore, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-tls-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    let config = simple_config(&[backend], "").replace(
        "listen = \"127.0.0.1:0\"\n\n[[route]]",
        &format!(
            "listen = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n[[route]]",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
    );
    let proxy = start_proxy(&config).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    (proxy, roots, dir)
}

async fn tls_connect(
    proxy: &TestProxy,
    roots: rustls::RootCertStore,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(proxy.web).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listener_speaks_h2_and_http11_by_alpn() {
    let a = TestBackend::start("a").await;
    let (proxy, roots, dir) = tls_proxy(&a).await;

    let tls = tls_connect(&proxy, roots.clone(), &[b"h2", b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, _driver) = h2_client(tls).await;
    let req = Request::get("https://localhost/headers")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let seen: HashMap<String, String> =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(seen["x-forwarded-proto"], "https");
    assert_eq!(seen["host"], "localhost");

    let tls = tls_connect(&proxy, roots, &[b"http/1.1"]).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get("/")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "a");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Reads one HTTP/1.1 answer (a `Content-Length` or chunked body) from `stream`;
/// after `stall_at` body bytes, pauses for `stall` before reading the rest. Returns
/// the status line and the body length.
async fn read_answer(stream: &mut TcpStream, stall_at: usize, stall: Duration) -> (String, usize) {
    let mut reader = tokio::io::BufReader::new(stream);
    let mut line = String::new();
    let read_line = async |reader: &mut tokio::io::BufReader<&mut TcpStream>, line: &mut String| {
        line.clear();
        tokio::time::timeout(Duration::from_secs(10), reader.read_line(line))
            .await
            .expect("a line in time")
            .unwrap()
    };
    read_line(&mut reader, &mut line).await;
    let status = line.trim_end().to_string();
    let (mut length, mut chunked) = (None, false);
    loop {
        assert!(
            read_line(&mut reader, &mut line).await > 0,
            "closed in the head"
        );
        let lower = line.trim_end().to_ascii_lowercase();
        if lower.is_empty() {
            break;
        }
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = Some(v.trim().parse::<usize>().unwrap());
        }
        chunked |= lower == "transfer-encoding: chunked";
    }
    let mut got = 0;
    let mut stalled = false;
    let mut buf = vec![0u8; 1 << 16];
    let mut take = async |reader: &mut tokio::io::BufReader<&mut TcpStream>,
                          mut n: usize,
                          got: &mut usize| {
        while n > 0 {
            if !stalled && *got >= stall_at {
                tokio::time::sleep(stall).await;
                stalled = true;
            }
            let want = n.min(buf.len());
            let read = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf[..want]))
                .await
                .expect("body bytes in time")
                .unwrap();
            assert!(read > 0, "closed after {got} body bytes");
            n -= read;
            *got += read;
        }
    };
    if chunked {
        loop {
            read_line(&mut reader, &mut line).await;
            let size = usize::from_str_radix(line.trim_end(), 16).unwrap();
            take(&mut reader, size, &mut got).await;
            read_line(&mut reader, &mut line).await;
            if size == 0 {
                break;
            }
        }
    } else {
        take(&mut reader, length.unwrap_or(0), &mut got).await;
    }
    (status, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keepalive_connections_are_parked_and_keep_serving() {
    let a = TestBackend::start("a").await;
    let config = simple_config_with_limits(&[&a], "idle_timeout = \"20s\"", "");
    let proxy = start_proxy(&config).await;
    let parked = |metrics: &str| metric_value(metrics, "switchyard_connections_parked");

    // A big answer the client stops reading near its end, for longer than a
    // connection may idle before it is parked: the proxy still holds bytes for
    // it, so it must not be parked then, and the answer arrives whole.
    let size = 48 << 20;
    // A small receive buffer (no autotuning): the proxy cannot hand the kernel the
    // rest of the answer while the client does not read.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    let mut client = socket.connect(proxy.web).await.unwrap();
    client
        .write_all(format!("GET /big?bytes={size} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (status, got) =
        read_answer(&mut client, size - (8 << 20), Duration::from_millis(2500)).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(got, size, "the whole answer arrived");

    // Now idle: parked within two seconds, without closing the connection.
    let deadline = Instant::now() + Duration::from_secs(6);
    while parked(&metrics_text(&proxy).await) != 1.0 {
        assert!(Instant::now() < deadline, "the idle connection is parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its next request wakes it: served on the same connection.
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_answer(&mut client, usize::MAX, Duration::ZERO).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(
        parked(&metrics_text(&proxy).await),
        0.0,
        "no longer parked while busy"
    );
    // A second quiet spell parks it again, and it serves again.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_answer(&mut client, usize::MAX, Duration::ZERO).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(
        a.connections(),
        1,
        "every request reused one backend connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_connection_still_closes_at_the_idle_timeout() {
    let a = TestBackend::start("a").await;
    let config = simple_config_with_limits(&[&a], "idle_timeout = \"2500ms\"", "");
    let proxy = start_proxy(&config).await;
    let parked = |metrics: &str| metric_value(metrics, "switchyard_connections_parked");
    let mut client = TcpStream::connect(proxy.web).await.unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_answer(&mut client, usize::MAX, Duration::ZERO).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let answered = Instant::now();
    wait_for(
        "the idle connection to be parked",
        Duration::from_secs(5),
        async || parked(&metrics_text(&proxy).await) == 1.0,
    )
    .await;
    // Parked, it waits on one timer for the rest of its idle time, then closes.
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), client.read(&mut buf))
        .await
        .expect("the proxy closes the parked connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let idle = answered.elapsed();
    assert!(
        idle >= Duration::from_millis(2400),
        "closed after {idle:?}, before the idle timeout"
    );
    assert_eq!(parked(&metrics_text(&proxy).await), 0.0);
}

/// A backend that answers each request on a connection with `200 ok` (keep-alive),
/// closes the connection `close_after` after its first answer when given, and
/// reports each connection's end (the proxy closing it) on `closed`.
async fn keepalive_backend(
    close_after: Option<Duration>,
) -> (
    std::net::SocketAddr,
    Arc<std::sync::atomic::AtomicU64>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    let (closed_tx, closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::Relaxed);
            let closed_tx = closed_tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let mut seen = Vec::new();
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            let _ = closed_tx.send(());
                            return;
                        }
                        Ok(n) => n,
                    };
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        if stream.write_all(answer).await.is_err() {
                            return;
                        }
                        if let Some(after) = close_after {
                            tokio::time::sleep(after).await;
                            return;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted, closed)
}

fn one_backend_config(addr: std::net::SocketAddr, limits: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[limits]\n{limits}\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"{addr}\" }}]\n[pool.app.retry]\nattempts = 0\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_backend_closed_is_replaced_without_an_error() {
    use std::sync::atomic::Ordering;
    let (backend, accepted, _closed) = keepalive_backend(Some(Duration::from_millis(100))).await;
    // No retries: only the client's own resend of an unsent request may save it.
    let proxy = start_proxy(&one_backend_config(backend, "")).await;
    let c = client();
    for i in 0..3 {
        let (status, _, body) = get(&c, &format!("http://{}/", proxy.web)).await;
        assert_eq!(
            (status, body.as_ref()),
            (200, b"ok".as_ref()),
            "request {i}"
        );
        // The backend closes the kept connection while it sits idle.
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        3,
        "a new connection each time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_idle_past_their_timeout_are_closed() {
    use std::sync::atomic::Ordering;
    let (backend, accepted, mut closed) = keepalive_backend(None).await;
    let proxy = start_proxy(&one_backend_config(
        backend,
        "upstream_idle_timeout = \"1s\"",
    ))
    .await;
    let c = client();
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    assert_eq!(accepted.load(Ordering::Relaxed), 1, "kept and reused");
    // Idle past the timeout: the proxy closes it (within its sweep period).
    tokio::time::timeout(Duration::from_secs(10), closed.recv())
        .await
        .expect("the idle connection was closed")
        .unwrap();
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    assert_eq!(
        accepted.load(Ordering::Relaxed),
        2,
        "the next request opened a new one"
    );
}
