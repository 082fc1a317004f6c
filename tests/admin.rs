//! The admin API against misuse: foreign Host names, changes without JSON or from
//! another site, backend addresses the proxy must never send traffic to, guessed
//! tokens, and connections that hold the listener; every change audited.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "admin-test-token-0123456789";

/// Sends one request to the admin API with exactly these headers (plus the Host the
/// client derives from the URL unless `headers` sets one); returns status, headers
/// and body.
async fn send(
    proxy: &TestProxy,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, http::HeaderMap, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", proxy.admin));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client()
        .request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap())
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status.as_u16(),
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn metrics_text(proxy: &TestProxy) -> String {
    let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// The value of the metric line that starts with `series`, 0 when absent.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn backend_state(status: &serde_json::Value, address: SocketAddr) -> serde_json::Value {
    status["pools"][0]["backends"]
        .as_array()
        .and_then(|b| b.iter().find(|b| b["address"] == address.to_string()))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

fn with_admin(config: String, extra: &str) -> String {
    config.replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\n{extra}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_host_names_are_refused_so_dns_rebinding_reads_and_changes_nothing() {
    let a = TestBackend::start("a").await;
    let config = with_admin(
        simple_config(&[&a], ""),
        "allowed_hosts = [\"admin.internal\"]",
    );
    let proxy = start_proxy(&config).await;
    let port = proxy.admin.port();
    let rebound = format!("attacker.test:{port}");
    let (code, headers, body) = send(&proxy, "GET", "/status", &[("host", &rebound)], "").await;
    assert_eq!(code, 421, "{body}");
    assert!(
        !body.contains(&a.addr.to_string()),
        "no status leaks: {body}"
    );
    assert!(headers.get("access-control-allow-origin").is_none());
    let disable = format!("/pools/app/backends/{}/disable", a.addr);
    let origin = format!("http://{rebound}");
    let (code, _, _) = send(
        &proxy,
        "POST",
        &disable,
        &[
            ("host", &rebound),
            ("origin", &origin),
            ("sec-fetch-site", "same-origin"),
            ("content-type", "application/json"),
        ],
        "",
    )
    .await;
    assert_eq!(
        code, 421,
        "a same-origin request after rebinding is refused"
    );
    assert_eq!(
        backend_state(&status(&proxy).await, a.addr)["admin_state"],
        "active"
    );
    // The dashboard page itself is not served under a foreign name either.
    assert_eq!(
        send(&proxy, "GET", "/", &[("host", &rebound)], "").await.0,
        421
    );
    // A request without any Host is refused too (HTTP/1.0 style).
    let mut raw = TcpStream::connect(proxy.admin).await.unwrap();
    raw.write_all(b"GET /status HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    raw.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.0 421"), "{answer}");

    for ok in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "admin.internal".to_string(),
        format!("ADMIN.internal.:{port}"),
    ] {
        assert_eq!(
            send(&proxy, "GET", "/status", &[("host", &ok)], "").await.0,
            200,
            "{ok}"
        );
    }
    let metrics = metrics_text(&proxy).await;
    assert!(
        metric(&metrics, "switchyard_admin_refused_total{reason=\"host\"}") >= 4.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_json_and_a_same_site_origin_and_no_cors_header_is_ever_sent() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let disable = format!("/pools/app/backends/{}/disable", a.addr);
    let own_origin = format!("http://{}", proxy.admin);
    // What a cross-site form post or a no-cors fetch can send, and what a page
    // cannot make the browser say about where it comes from.
    let attempts: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![], 415),
        (vec![("content-type", "text/plain;charset=UTF-8")], 415),
        (
            vec![("content-type", "application/x-www-form-urlencoded")],
            415,
        ),
        (
            vec![("content-type", "multipart/form-data; boundary=x")],
            415,
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("origin", "http://evil.test"),
            ],
            403,
        ),
        (
            vec![("content-type", "application/json"), ("origin", "null")],
            403,
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("sec-fetch-site", "cross-site"),
            ],
            403,
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("origin", &own_origin),
                ("sec-fetch-site", "same-site"),
            ],
            403,
        ),
    ];
    for (headers, expected) in &attempts {
        let (code, response_headers, body) = send(&proxy, "POST", &disable, headers, "{}").await;
        assert_eq!(code, *expected, "{headers:?}: {body}");
        assert!(
            !response_headers
                .keys()
                .any(|k| k.as_str().starts_with("access-control-")),
            "{headers:?}: {response_headers:?}"
        );
    }
    // A form post adding a metadata address as a backend is refused the same way.
    let (code, _, _) = send(
        &proxy,
        "POST",
        "/pools/app/backends",
        &[("content-type", "text/plain")],
        r#"{"address": "10.9.9.9:80"}"#,
    )
    .await;
    assert_eq!(code, 415);
    // A CORS preflight gets no permission.
    let (code, headers, _) = send(
        &proxy,
        "OPTIONS",
        &disable,
        &[
            ("origin", "http://evil.test"),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type"),
        ],
        "",
    )
    .await;
    assert!(code >= 400, "preflight answered {code}");
    assert!(headers.get("access-control-allow-origin").is_none());
    let state = status(&proxy).await;
    assert_eq!(backend_state(&state, a.addr)["admin_state"], "active");
    assert_eq!(state["pools"][0]["backends"].as_array().unwrap().len(), 1);

    // The dashboard's own requests (same origin, JSON) and tools (no Origin) work.
    let (code, _, body) = send(
        &proxy,
        "POST",
        &disable,
        &[
            ("content-type", "application/json"),
            ("origin", &own_origin),
            ("sec-fetch-site", "same-origin"),
        ],
        "{}",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let enable = format!("/pools/app/backends/{}/enable", a.addr);
    let (code, _, body) = send(
        &proxy,
        "POST",
        &enable,
        &[("content-type", "application/json; charset=utf-8")],
        "",
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric(
            &metrics,
            "switchyard_admin_refused_total{reason=\"content_type\"}"
        ),
        5.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_admin_refused_total{reason=\"cross_site\"}"
        ),
        5.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_backends_never_point_at_the_proxy_itself_or_at_metadata_addresses() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let config = with_admin(
        simple_config(&[&a], ""),
        "backend_networks = [\"127.0.0.0/8\", \"fd00::/8\"]",
    );
    let proxy = start_proxy(&config).await;
    let refused = [
        (proxy.web.to_string(), "own listener `web`"),
        (
            format!("127.0.0.1:{}", proxy.web.port()).replace("127.0.0.1", "[::ffff:127.0.0.1]"),
            "own listener `web`",
        ),
        (proxy.admin.to_string(), "admin listener"),
        ("169.254.169.254:80".to_string(), "link-local"),
        ("[fe80::1]:80".to_string(), "link-local"),
        ("0.0.0.0:8080".to_string(), "unspecified"),
        ("[::]:8080".to_string(), "unspecified"),
        ("10.1.2.3:80".to_string(), "outside admin.backend_networks"),
    ];
    for (address, why) in &refused {
        let (code, answer) = admin_call(
            &proxy,
            "POST",
            "/pools/app/backends",
            &format!(r#"{{"address": "{address}"}}"#),
        )
        .await;
        assert_eq!(code, 403, "{address}: {answer}");
        let message = answer["error"].as_str().unwrap_or_default();
        assert!(message.contains(why), "{address}: {message}");
    }
    let state = status(&proxy).await;
    assert_eq!(
        state["pools"][0]["backends"].as_array().unwrap().len(),
        1,
        "nothing was added: {state}"
    );
    // An ordinary backend inside the allowed networks is added.
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/pools/app/backends",
        &format!(r#"{{"address": "{}"}}"#, b.addr),
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric(
            &metrics,
            "switchyard_admin_mutations_total{action=\"add_backend\",result=\"rejected\"}"
        ),
        refused.len() as f64,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_long_bearer_only_and_guessing_is_rate_limited_and_counted() {
    let a = TestBackend::start("a").await;
    let short = with_admin(simple_config(&[&a], ""), "token = \"tooshort\"");
    let err = switchyard::config::Config::parse(std::path::Path::new("short.toml"), &short)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("short.toml:3:9: admin.token") && err.contains("at least 16"),
        "{err}"
    );

    let config = with_admin(simple_config(&[&a], ""), &format!("token = \"{TOKEN}\""));
    let proxy = start_proxy(&config).await;
    let bearer = format!("Bearer {TOKEN}");
    // No token guesses nothing: answered 401 every time, never locked out.
    for _ in 0..8 {
        assert_eq!(send(&proxy, "GET", "/status", &[], "").await.0, 401);
    }
    let query = format!("/status?token={TOKEN}");
    assert_eq!(
        send(&proxy, "GET", &query, &[], "").await.0,
        401,
        "only the header counts"
    );
    let basic = format!("Basic {TOKEN}");
    assert_eq!(
        send(&proxy, "GET", "/status", &[("authorization", &basic)], "")
            .await
            .0,
        401
    );
    // Wrong tokens are a budget: five, then everything from this client waits.
    let wrong = format!("Bearer {}x", &TOKEN[..TOKEN.len() - 1]);
    for i in 0..5 {
        let (code, _, _) = send(&proxy, "GET", "/status", &[("authorization", &wrong)], "").await;
        assert_eq!(code, 401, "wrong token #{i}");
    }
    let (code, headers, _) =
        send(&proxy, "GET", "/status", &[("authorization", &bearer)], "").await;
    let refused_at = Instant::now();
    assert_eq!(
        code, 429,
        "even the right token waits once the budget is spent"
    );
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        send(&proxy, "GET", "/health", &[], "").await.0,
        200,
        "liveness stays open"
    );
    // Asking while refused spends nothing (each such request is refused and
    // counted); it answers 200 again by Retry-After (plus the poll's granularity).
    let mut refused = 1;
    let within = Duration::from_secs(wait) + Duration::from_millis(250);
    wait_for("the budget to come back", within, async || {
        let (code, _, _) = send(&proxy, "GET", "/status", &[("authorization", &bearer)], "").await;
        refused += u64::from(code == 429);
        code == 200
    })
    .await;
    assert!(refused_at.elapsed() <= within);

    let (_, _, metrics) = send(&proxy, "GET", "/metrics", &[("authorization", &bearer)], "").await;
    assert_eq!(
        metric(
            &metrics,
            "switchyard_admin_auth_failures_total{reason=\"wrong\"}"
        ),
        5.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_admin_auth_failures_total{reason=\"missing\"}"
        ),
        10.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "switchyard_admin_refused_total{reason=\"rate_limited\"}"
        ),
        refused as f64,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_is_audited_with_who_what_before_and_after() {
    capture_json_logs("switchyard::audit=info");
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "")).await;
    let weight = format!("/pools/app/backends/{}/weight", a.addr);
    assert_eq!(
        admin_call(&proxy, "POST", &weight, r#"{"weight": 7}"#)
            .await
            .0,
        200
    );
    assert_eq!(
        admin_call(&proxy, "POST", &weight, r#"{"weight": 99999}"#)
            .await
            .0,
        400
    );
    let (code, _, _) = send(&proxy, "POST", &weight, &[], r#"{"weight": 3}"#).await;
    assert_eq!(code, 415);

    let lines = captured_json_lines(&a.addr.to_string());
    let applied: Vec<_> = lines
        .iter()
        .filter(|l| l["message"] == "admin change applied")
        .collect();
    assert_eq!(applied.len(), 1, "{lines:#?}");
    let line = applied[0];
    assert_eq!(line["target"], "switchyard::audit");
    assert_eq!(line["action"], "weight");
    assert_eq!(line["method"], "POST");
    assert!(line["caller"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert_eq!(line["via"], "open");
    let before: serde_json::Value = serde_json::from_str(line["before"].as_str().unwrap()).unwrap();
    let after: serde_json::Value = serde_json::from_str(line["after"].as_str().unwrap()).unwrap();
    assert_eq!(before["weight"], 1);
    assert_eq!(after["weight"], 7);
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "admin change rejected" && l["status"] == 400),
        "{lines:#?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "admin request refused" && l["status"] == 415),
        "{lines:#?}"
    );
    let metrics = metrics_text(&proxy).await;
    for (series, value) in [
        (
            "switchyard_admin_mutations_total{action=\"weight\",result=\"applied\"}",
            1.0,
        ),
        (
            "switchyard_admin_mutations_total{action=\"weight\",result=\"rejected\"}",
            1.0,
        ),
    ] {
        assert_eq!(metric(&metrics, series), value, "{series}\n{metrics}");
    }
}

/// Reads from `stream` until the peer closes it or `within` passes; returns what
/// arrived and whether it was closed.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&seen).into(), true),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&seen).into(), false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connections_get_head_and_idle_timeouts() {
    let a = TestBackend::start("a").await;
    let config = simple_config_with_limits(
        &[&a],
        "header_read_timeout = \"300ms\"\nidle_timeout = \"500ms\"",
        "",
    );
    let proxy = start_proxy(&config).await;

    // A slow client that never finishes its request head is cut off.
    let mut slow = TcpStream::connect(proxy.admin).await.unwrap();
    slow.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut slow, Duration::from_secs(10)).await;
    assert!(closed, "a stalled request head is closed: {answer:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "not before the head timeout: {:?}",
        started.elapsed()
    );

    // A keep-alive connection left idle after a request is closed.
    let mut idle = TcpStream::connect(proxy.admin).await.unwrap();
    idle.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection is closed");

    let metrics = metrics_text(&proxy).await;
    assert!(
        metric(
            &metrics,
            "switchyard_client_errors_total{reason=\"header_timeout\"}"
        ) >= 1.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_connection_cap_holds_and_a_reload_changes_it() {
    let a = TestBackend::start("a").await;
    let config = with_admin(simple_config(&[&a], ""), "max_connections = 2");
    let proxy = start_proxy(&config).await;
    let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy.admin).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A third connection waits in the backlog while two are open...
    let mut third = TcpStream::connect(proxy.admin).await.unwrap();
    third.write_all(request).await.unwrap();
    let mut buf = [0u8; 256];
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap");
    // ...and is served as soon as one closes.
    held.pop();
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    // A reload raising the cap lets more in at once, without a restart.
    let raised = config.replace("max_connections = 2", "max_connections = 4");
    proxy
        .server
        .apply(
            switchyard::config::Config::parse(std::path::Path::new("raised.toml"), &raised)
                .unwrap(),
        )
        .await
        .unwrap();
    let mut extra = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy.admin).await.unwrap();
        s.write_all(request).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("the raised cap admits it")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        extra.push(s);
    }
    drop((held, third, extra));
}

/// Open file descriptors of a process.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_accept_errors_back_off_instead_of_spinning() {
    let a = TestBackend::start("a").await;
    let dir = std::env::temp_dir().join(format!("switchyard-emfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switchyard.toml");
    let admin_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let config = simple_config(&[&a], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"127.0.0.1:{admin_port}\"\nmax_connections = 1000"),
    );
    std::fs::write(&file, config).unwrap();
    // The proxy runs with few file descriptors, so a burst of admin connections
    // exhausts them and accept fails with EMFILE while connections wait.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" --config \"$1\" --no-access-log --workers 2 --log-level error")
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{admin_port}").parse().unwrap();
    let c = client();
    assert!(
        eventually_async(Duration::from_secs(20), || async {
            c.get(format!("http://{admin}/health").parse().unwrap())
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await,
        "the proxy starts"
    );
    let pid = child.id();
    let mut flood = Vec::new();
    for _ in 0..150 {
        if let Ok(s) = TcpStream::connect(admin).await {
            flood.push(s);
        }
    }
    assert!(
        eventually(Duration::from_secs(10), || open_fds(pid) >= 60).await,
        "the proxy ran out of descriptors ({} open)",
        open_fds(pid)
    );
    let cpu_before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cpu_used = cpu_ticks(pid) - cpu_before;
    drop(flood);
    // Once the connections are gone the admin API answers again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        if let Ok(r) = c
            .get(format!("http://{admin}/metrics").parse().unwrap())
            .await
            && r.status() == 200
        {
            let body = r.into_body().collect().await.unwrap().to_bytes();
            break String::from_utf8_lossy(&body).into_owned();
        }
        assert!(Instant::now() < deadline, "the admin API recovers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let errors = metric(&metrics, "switchyard_admin_accept_errors_total");
    eprintln!("out of descriptors for 1.5 s: {errors} accept errors, {cpu_used} CPU ticks");
    assert!(errors >= 1.0, "EMFILE was hit: {metrics}");
    assert!(
        errors <= 60.0,
        "accept errors back off ({errors} in about 2 s; a spinning loop makes thousands)"
    );
    // 1.5 s of a spinning accept loop is about 150 ticks of CPU; backing off is ~0.
    assert!(
        cpu_used < 60,
        "the proxy used {cpu_used} CPU ticks while out of descriptors"
    );
}

/// User plus system CPU time of a process, in clock ticks (1/100 s).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat (1-based), i.e. 11 and
    // 12 after the process name.
    field(11) + field(12)
}

/// Polls an async condition every 50 ms until it holds or `within` passes.
async fn eventually_async<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
