//! The strict HTTP/1 request edge, over raw sockets: for each category of malformed
//! or smuggling-shaped request, what the client gets back and what a recording
//! backend received (nothing, for a refused request), plus the metric and the
//! backend's failure counters (a client's mistake never counts against it).

mod support;

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

const IDLE: Duration = Duration::from_secs(3);

/// One listener, a recording backend behind pool `app` (catch-all route), and
/// `extra` appended (more routes, pools, limits).
fn config(backend: &RecordingBackend, extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\n\
         [pool.app]\nbackends = [{{ address = \"{}\" }}]\n[pool.app.breaker]\nconsecutive_failures = 1\n\n{extra}\n",
        backend.addr
    )
}

/// Sends each request on its own connection and checks the status; returns the answers.
async fn expect_all(proxy: &TestProxy, cases: &[(&str, &[u8], u16)]) -> Vec<RawAnswer> {
    let mut answers = Vec::new();
    for (name, request, status) in cases {
        let answer = raw_exchange(proxy.web, request, IDLE).await;
        assert_eq!(
            answer.status,
            *status,
            "{name}: expected {status}, got:\n{}",
            &answer.text[..answer.text.len().min(300)]
        );
        answers.push(answer);
    }
    answers
}

/// The backend was not blamed: no failure, breaker closed (it opens after one failure here).
async fn assert_backend_unblamed(proxy: &TestProxy, backend: &RecordingBackend) {
    let b = backend_status(proxy, backend.addr).await;
    assert_eq!(b["failures"], 0, "{b}");
    assert_eq!(b["breaker"], "closed", "{b}");
    assert_eq!(b["in_flight"], 0, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_rules_are_enforced_before_anything_is_forwarded() {
    let backend = RecordingBackend::start().await;
    let api = RecordingBackend::start().await;
    let extra = format!(
        "[[route]]\nname = \"api\"\nlistener = \"web\"\nhost = \"api.example\"\npool = \"api\"\n\
         [pool.api]\nbackends = [{{ address = \"{}\" }}]\n",
        api.addr
    );
    let proxy = start_proxy(&config(&backend, &extra)).await;
    expect_all(
        &proxy,
        &[
            ("missing Host", b"GET / HTTP/1.1\r\n\r\n", 400),
            (
                "two Host fields",
                b"GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
                400,
            ),
            ("empty Host", b"GET / HTTP/1.1\r\nHost: \r\n\r\n", 400),
            (
                "Host with a space",
                b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                400,
            ),
            (
                "Host with userinfo",
                b"GET / HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
                400,
            ),
            (
                "Host with a path",
                b"GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n",
                400,
            ),
            (
                "absolute-form without Host",
                b"GET http://api.example/ HTTP/1.1\r\n\r\n",
                400,
            ),
        ],
    )
    .await;
    assert_eq!(backend.count() + api.count(), 0, "nothing was forwarded");
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"missing_host\"}"
        ),
        2.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"multiple_host\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"invalid_host\"}"
        ),
        4.0
    );

    // HTTP/1.0 may leave Host out.
    let ok = raw_exchange(proxy.web, b"GET /old HTTP/1.0\r\n\r\n", IDLE).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    // Absolute-form: the target's authority is what routing and the backend see.
    let answer = raw_exchange(
        proxy.web,
        b"GET http://api.example/v1?q=1 HTTP/1.1\r\nHost: other.example\r\nConnection: close\r\n\r\n",
        IDLE,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let got = api.received();
    assert_eq!(got.len(), 1, "routed by the target's authority, not Host");
    assert_eq!(got[0].header("host"), Some("api.example"));
    assert_eq!(got[0].header("x-forwarded-host"), Some("api.example"));
    assert_eq!(got[0].target, "/v1?q=1");
    assert_backend_unblamed(&proxy, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_codings_other_than_one_chunked_are_refused_or_normalised() {
    let backend = RecordingBackend::start().await;
    let proxy = start_proxy(&config(&backend, "")).await;
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    let with = |te: &str| {
        let mut r = format!("POST / HTTP/1.1\r\nHost: x\r\n{te}\r\n").into_bytes();
        r.extend_from_slice(body);
        r
    };
    let chunked_twice = with("Transfer-Encoding: chunked, chunked\r\n");
    let two_fields = with("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n");
    let gzip_chunked = with("Transfer-Encoding: gzip, chunked\r\n");
    let two_fields_gzip = with("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n");
    let gzip_only = with("Transfer-Encoding: gzip\r\n");
    let chunked_not_last = with("Transfer-Encoding: chunked, gzip\r\n");
    let empty_element = with("Transfer-Encoding: , chunked\r\n");
    let http10 =
        b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
    let answers = expect_all(
        &proxy,
        &[
            ("chunked, chunked", &chunked_twice, 400),
            ("two chunked fields", &two_fields, 400),
            ("gzip, chunked", &gzip_chunked, 501),
            ("gzip then chunked fields", &two_fields_gzip, 501),
            ("gzip only", &gzip_only, 400),
            ("chunked not last", &chunked_not_last, 400),
            ("empty list element", &empty_element, 400),
            ("TE in HTTP/1.0", http10, 400),
        ],
    )
    .await;
    assert!(
        answers.iter().all(|a| a.closed),
        "the connection is closed after a framing refusal"
    );
    assert_eq!(backend.count(), 0, "nothing was forwarded");
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"transfer_encoding\"}"
        ),
        3.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"unknown_transfer_coding\"}"
        ),
        2.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"malformed\"}"
        ),
        3.0,
        "hyper's own 400s are counted too"
    );

    // Transfer-Encoding with Content-Length (CL.TE and TE.CL smuggling shapes): the
    // length is dropped, the chunked body is what counts, the connection is closed
    // after the answer, and the backend sees exactly one request with that body.
    let cl_te = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG";
    let answer = raw_exchange(proxy.web, cl_te, IDLE).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.closed, "closed after a message with both framings");
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n";
    let te_cl = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
        smuggled.len()
    );
    let answer = raw_exchange(proxy.web, te_cl.as_bytes(), IDLE).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let got = backend.received();
    assert_eq!(got.len(), 2, "one request each, nothing smuggled: {got:?}");
    assert!(got.iter().all(|r| r.target == "/"));
    assert_eq!(got[0].body.as_ref(), b"");
    assert_eq!(got[1].body.as_ref(), smuggled.as_bytes());
    assert!(
        got.iter().all(
            |r| r.header("transfer-encoding").is_none() || r.header("content-length").is_none()
        )
    );
    assert_backend_unblamed(&proxy, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_chunked_bodies_are_the_clients_400_never_a_502() {
    let backend = RecordingBackend::start().await;
    let proxy = start_proxy(&config(&backend, "[limits]\nmax_body_bytes = \"1KiB\"\n")).await;
    let head = "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    let case = |body: &[u8]| {
        let mut r = head.as_bytes().to_vec();
        r.extend_from_slice(body);
        r
    };
    let long_extension = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(17 * 1024));
    let bad_hex = case(b"zz\r\nhello\r\n0\r\n\r\n");
    let bare_lf_size = case(b"5\nhello\r\n0\r\n\r\n");
    let no_crlf_after_data = case(b"5\r\nhelloXX0\r\n\r\n");
    let overflow = case(b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n");
    let lf_in_extension = case(b"5;ext\nhello\r\n0\r\n\r\n");
    let huge_extension = case(long_extension.as_bytes());
    let bad_last_chunk = case(b"5\r\nhello\r\n0\r\n\rX");
    let trailer_no_lf = case(b"5\r\nhello\r\n0\r\nX-Trailer: 1\rX\r\n\r\n");
    let too_large = case(format!("800\r\n{}\r\n0\r\n\r\n", "a".repeat(0x800)).as_bytes());
    let declared_too_large =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n".to_vec();
    let answers = expect_all(
        &proxy,
        &[
            ("chunk size not hex", &bad_hex, 400),
            ("bare LF after the size", &bare_lf_size, 400),
            ("no CRLF after chunk data", &no_crlf_after_data, 400),
            ("chunk size overflow", &overflow, 400),
            ("LF inside an extension", &lf_in_extension, 400),
            ("17 KiB of extensions", &huge_extension, 400),
            ("broken last chunk", &bad_last_chunk, 400),
            ("bare CR in a trailer", &trailer_no_lf, 400),
            ("chunked body over max_body_bytes", &too_large, 413),
            (
                "Content-Length over max_body_bytes",
                &declared_too_large,
                413,
            ),
        ],
    )
    .await;
    assert!(answers.iter().all(|a| a.closed));
    assert_eq!(
        backend.count(),
        0,
        "a broken body is refused before forwarding"
    );
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"body_malformed\"}"
        ),
        8.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"body_too_large\"}"
        ),
        2.0
    );
    assert_backend_unblamed(&proxy, &backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_breaking_after_forwarding_started_is_still_the_clients_400() {
    let backend = RecordingBackend::start().await;
    // Bodies over 1 KiB are streamed to the backend as they arrive.
    let proxy = start_proxy(&config(
        &backend,
        "[pool.app.retry]\nbuffer_body = \"1KiB\"\n",
    ))
    .await;
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    request.extend_from_slice(format!("800\r\n{}\r\n", "a".repeat(0x800)).as_bytes());
    let mut client = tokio::net::TcpStream::connect(proxy.web).await.unwrap();
    client.write_all(&request).await.unwrap();
    // Forwarding has started once the backend has the request's head; only then
    // does the body break.
    assert!(
        eventually(Duration::from_secs(10), || backend.started() == 1).await,
        "the first 2 KiB were streamed to the backend"
    );
    client.write_all(b"5\r\nhelloXX").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 400 "),
        "the client's 400: {answer}"
    );
    assert!(
        matches!(read, Ok(Ok(_)) | Ok(Err(_))),
        "the proxy closed the connection"
    );
    // The backend saw the start of the request and then an aborted body: never a
    // complete request, and nothing counts against it.
    assert!(
        eventually(Duration::from_secs(5), || backend.count() == 1).await,
        "the backend saw the aborted request"
    );
    assert!(!backend.received()[0].complete);
    assert_backend_unblamed(&proxy, &backend).await;
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"body_malformed\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_upgrades_reach_the_backend() {
    let backend = RecordingBackend::start().await;
    let proxy = start_proxy(&config(&backend, "")).await;
    // An h2c upgrade is served as a plain HTTP/1.1 request; its headers never pass.
    let answer = raw_exchange(
        proxy.web,
        b"GET /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        IDLE,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    // Even without Connection listing it, HTTP2-Settings is dropped.
    let answer = raw_exchange(
        proxy.web,
        b"GET /settings HTTP/1.1\r\nHost: x\r\nConnection: close\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
        IDLE,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    // An upgrade the listener does not allow is stripped too.
    let answer = raw_exchange(
        proxy.web,
        b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\nUpgrade: tcp-echo\r\n\r\n",
        IDLE,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let got = backend.received();
    assert_eq!(got.len(), 3);
    for r in &got {
        for h in ["upgrade", "http2-settings", "connection"] {
            assert!(r.header(h).is_none(), "{h} reached the backend: {r:?}");
        }
    }

    // A listener that allows the protocol passes the upgrade request on.
    let allowed = RecordingBackend::start().await;
    let text = config(&allowed, "").replace(
        "listen = \"127.0.0.1:0\"\n\n[[route]]",
        "listen = \"127.0.0.1:0\"\nupgrades = [\"websocket\", \"tcp-echo\"]\n\n[[route]]",
    );
    let proxy = start_proxy(&text).await;
    let answer = raw_exchange(
        proxy.web,
        b"GET /other HTTP/1.1\r\nHost: x\r\nConnection: upgrade, close\r\nUpgrade: tcp-echo, h2c\r\n\r\n",
        IDLE,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let got = allowed.received();
    assert_eq!(got[0].header("upgrade"), Some("tcp-echo"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_normalised_path_for_routing_and_the_backend() {
    let backend = RecordingBackend::start().await;
    let admin = RecordingBackend::start().await;
    let raw = RecordingBackend::start().await;
    let extra = format!(
        "[[route]]\nname = \"admin\"\nlistener = \"web\"\npath_prefix = \"/admin\"\npool = \"admin\"\n\
         [[route]]\nname = \"raw\"\nlistener = \"web\"\npath_prefix = \"/raw\"\npool = \"raw\"\nforward_path = \"original\"\n\
         [pool.admin]\nbackends = [{{ address = \"{}\" }}]\n\
         [pool.raw]\nbackends = [{{ address = \"{}\" }}]\n",
        admin.addr, raw.addr
    );
    let proxy = start_proxy(&config(&backend, &extra)).await;
    for path in [
        "/admin",
        "/%61dmin",
        "//admin",
        "/x/../admin",
        "/./admin",
        "/%2E%2E/admin",
        "/admin/./users//7?q=%2e",
    ] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(proxy.web, request.as_bytes(), IDLE).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
    }
    let targets: Vec<String> = admin.received().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/admin",
            "/admin",
            "/admin",
            "/admin",
            "/admin",
            "/admin",
            "/admin/users/7?q=%2e"
        ],
        "every spelling routed to /admin, normalised path forwarded, query untouched"
    );
    assert_eq!(backend.count(), 0, "none fell through to the catch-all");

    // forward_path = "original": routed on the normalised path, forwarded as sent.
    let answer = raw_exchange(
        proxy.web,
        b"GET //raw/%61/../b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        IDLE,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(raw.received()[0].target, "//raw/%61/../b");

    // A broken percent-encoding is refused; a long target gets 414.
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(9000));
    expect_all(
        &proxy,
        &[
            (
                "bad percent-encoding",
                b"GET /admin%zz HTTP/1.1\r\nHost: x\r\n\r\n",
                400,
            ),
            ("target over max_uri_bytes", long.as_bytes(), 414),
        ],
    )
    .await;
    assert_eq!(admin.count(), 7);
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"invalid_path\"}"
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"uri_too_long\"}"
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_syntax_hyper_refuses_never_reaches_the_backend() {
    let backend = RecordingBackend::start().await;
    let proxy = start_proxy(&config(&backend, "")).await;
    expect_all(
        &proxy,
        &[
            (
                "space before the colon",
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
                400,
            ),
            (
                "obs-fold",
                b"GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n",
                400,
            ),
            (
                "NUL in a value",
                b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n",
                400,
            ),
            (
                "two different Content-Lengths",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                400,
            ),
            (
                "signed Content-Length",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na",
                400,
            ),
            (
                "CONNECT",
                b"CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n",
                405,
            ),
        ],
    )
    .await;
    assert_eq!(backend.count(), 0);
    assert_backend_unblamed(&proxy, &backend).await;
}

/// Log lines of the `switchyard::access` target, captured for this test binary.
fn access_log() -> &'static std::sync::Arc<parking_lot::Mutex<Vec<u8>>> {
    use std::sync::{Arc, OnceLock};
    static LOG: OnceLock<Arc<parking_lot::Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let log: Arc<parking_lot::Mutex<Vec<u8>>> = Arc::default();
        let writer = Arc::clone(&log);
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "switchyard::access=info",
            ))
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        log
    })
}

struct LogWriter(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_and_the_access_log_see_the_normalised_path() {
    use switchyard::server::{Server, ServerOptions};
    let log = access_log();
    let backend = RecordingBackend::start().await;
    // The hostile test plugin answers `/count` itself: it only does so if it is
    // handed the normalised path.
    let plugin = switchyard::plugin::test_plugin_dir().join("hostile.wasm");
    let text = config(&backend, "").replace(
        "[pool.app.breaker]",
        &format!(
            "balance = \"plugin:hostile\"\n[plugin.hostile]\nkind = \"routing\"\npath = '{}'\ntimeout = \"50ms\"\n[pool.app.breaker]",
            plugin.display()
        ),
    );
    let config = switchyard::config::Config::parse(std::path::Path::new("t.toml"), &text).unwrap();
    let server = Server::start(config, ServerOptions::default())
        .await
        .unwrap();
    let web = server.listener_address("web").unwrap();
    for path in ["/count", "/%63ount", "//count", "/x/../count"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let answer = raw_exchange(web, request.as_bytes(), IDLE).await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.text);
        assert!(
            !answer.text.ends_with("ok"),
            "{path}: the plugin answered, not the backend: {}",
            answer.text
        );
    }
    assert_eq!(
        backend.count(),
        0,
        "the plugin answered every spelling itself"
    );
    let lines = String::from_utf8_lossy(&log.lock()).into_owned();
    let logged: Vec<&str> = lines
        .lines()
        .filter(|l| l.contains("switchyard::access"))
        .filter_map(|l| l.split("path=").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    assert!(logged.len() >= 4, "{lines}");
    assert!(
        logged.iter().all(|p| *p == "\"/count\"" || *p == "/count"),
        "the access log shows the normalised path: {logged:?}"
    );
    server.shutdown(Duration::from_secs(1)).await;
}
