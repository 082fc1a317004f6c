//! Diagnosing a backend that does not serve: access-log lines that name the backend
//! tried and why each try failed, `/health/ready` saying how each pool was judged,
//! and `switchyard ctl why POOL` explaining each backend, checked word for word.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use support::*;
use switchyard::config::Config;
use switchyard::server::{Server, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An address nothing listens on.
fn nothing_listens() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A backend that reads a request head and closes the connection without a word.
async fn closes_after_the_request() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.shutdown().await;
            });
        }
    });
    address
}

/// The access line of the request sent with `x-request-id: id`.
async fn access_line(id: &str) -> serde_json::Value {
    let needle = format!("\"request_id\":\"{id}\"");
    wait_for(
        &format!("the access line of {id}"),
        Duration::from_secs(10),
        async || !captured_json_lines(&needle).is_empty(),
    )
    .await;
    captured_json_lines(&needle).remove(0)
}

/// Sends `GET /` for `host` with request id `id`; returns the status.
async fn request(web: SocketAddr, host: &str, id: &str) -> u16 {
    let head = format!(
        "GET / HTTP/1.1\r\nHost: {host}\r\nx-request-id: {id}\r\nConnection: close\r\n\r\n"
    );
    raw_exchange(web, head.as_bytes(), Duration::from_secs(10))
        .await
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_name_the_backend_and_why_each_try_failed() {
    capture_json_logs("switchyard::access=info");
    let ghost = nothing_listens();
    let closer = closes_after_the_request().await;
    let hang = TestBackend::start("hang").await;
    hang.set_mode(Mode::Hang);
    let plain = TestBackend::start("plain").await;
    let flaky = TestBackend::start("flaky").await;
    flaky.set_mode(Mode::Status(500));
    let steady = TestBackend::start("steady").await;
    let idle = TestBackend::start("idle").await;
    let routes: String = ["dead", "closing", "hung", "secure", "mixed", "off"]
        .iter()
        .map(|p| {
            format!("[[route]]\nname = \"{p}\"\nlistener = \"web\"\nhost = \"{p}.test\"\npool = \"{p}\"\n")
        })
        .collect();
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{routes}\
         [pool.dead]\nbackends = [{{ address = \"{ghost}\", name = \"ghost\" }}]\n\
         [pool.closing]\nbackends = [{{ address = \"{closer}\" }}]\n\
         [pool.hung]\nbackends = [{{ address = \"{}\" }}]\n[pool.hung.retry]\nper_try_timeout = \"300ms\"\n\
         [pool.secure]\nbackends = [{{ address = \"{}\" }}]\ntls = {{}}\n\
         [pool.mixed]\nbalance = \"round-robin\"\nbackends = [{{ address = \"{}\", name = \"flaky\" }}, {{ address = \"{}\", name = \"steady\" }}]\n\
         [pool.mixed.retry]\non = [\"500\"]\n\
         [pool.off]\nbackends = [{{ address = \"{}\" }}]\n",
        hang.addr, plain.addr, flaky.addr, steady.addr, idle.addr
    );
    let config = Config::parse(std::path::Path::new("t.toml"), &text).unwrap();
    let admin_listen = config.admin.listen;
    let server = Server::start(config, ServerOptions::default())
        .await
        .unwrap();
    let admin = switchyard::admin::start(Arc::clone(&server), admin_listen).unwrap();
    let web = server.listener_address("web").unwrap();
    let proxy = TestProxy { server, web, admin };
    let (code, _) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/off/backends/{}/disable", idle.addr),
        "",
    )
    .await;
    assert_eq!(code, 200);

    assert_eq!(request(web, "dead.test", "diag-refused").await, 502);
    assert_eq!(request(web, "closing.test", "diag-reset").await, 502);
    assert_eq!(request(web, "hung.test", "diag-timeout").await, 504);
    assert_eq!(request(web, "secure.test", "diag-tls").await, 502);
    assert_eq!(request(web, "off.test", "diag-none").await, 503);
    // Round-robin over two: one of two requests meets flaky first.
    assert_eq!(request(web, "mixed.test", "diag-mixed-1").await, 200);
    assert_eq!(request(web, "mixed.test", "diag-mixed-2").await, 200);

    for (id, status, backend, failure) in [
        ("diag-refused", 502, ghost, "refused"),
        ("diag-reset", 502, closer, "reset"),
        ("diag-timeout", 504, hang.addr, "timeout"),
        ("diag-tls", 502, plain.addr, "tls"),
    ] {
        let line = access_line(id).await;
        assert_eq!(line["status"], status, "{line}");
        assert_eq!(line["backend"], backend.to_string(), "{line}");
        assert_eq!(line["failure"], failure, "{line}");
        let name = if id == "diag-refused" { " (ghost)" } else { "" };
        assert_eq!(
            line["failed_tries"],
            format!("{backend}{name}: {failure}"),
            "{line}"
        );
        assert!(line.get("tries").is_none(), "one try: {line}");
        // The duration is in milliseconds to the microsecond: three decimals at most.
        let duration = line["duration_ms"].to_string();
        assert!(
            line["duration_ms"].is_number()
                && duration.split_once('.').map_or(0, |(_, d)| d.len()) <= 3,
            "{line}"
        );
    }
    assert_eq!(access_line("diag-refused").await["backend_name"], "ghost");

    let none = access_line("diag-none").await;
    assert_eq!(
        (&none["status"], &none["backend"], &none["failure"]),
        (&503.into(), &"-".into(), &"no-usable-backend".into()),
        "{none}"
    );
    assert!(none.get("failed_tries").is_none(), "{none}");

    let mixed = [
        access_line("diag-mixed-1").await,
        access_line("diag-mixed-2").await,
    ];
    let retried = mixed
        .iter()
        .find(|l| l.get("failed_tries").is_some())
        .unwrap_or_else(|| panic!("one request met flaky first: {mixed:?}"));
    assert_eq!(retried["status"], 200, "{retried}");
    assert_eq!(retried["backend"], steady.addr.to_string());
    assert_eq!(retried["backend_name"], "steady");
    assert_eq!(retried["tries"], 2);
    assert_eq!(
        retried["failed_tries"],
        format!("{} (flaky): 500", flaky.addr)
    );
    assert!(retried.get("failure").is_none(), "it was served: {retried}");
    proxy.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_says_how_each_pool_was_judged() {
    let up = TestBackend::start("up").await;
    let (ghost, ghost2) = (nothing_listens(), nothing_listens());
    let routes: String = ["checked", "unchecked", "guarded"]
        .iter()
        .map(|p| {
            format!("[[route]]\nname = \"{p}\"\nlistener = \"web\"\nhost = \"{p}.test\"\npool = \"{p}\"\n")
        })
        .collect();
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{routes}\
         [pool.checked]\nbackends = [{{ address = \"{}\" }}]\n\
         [pool.checked.health]\ntype = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\n\
         [pool.unchecked]\nbackends = [{{ address = \"{ghost}\" }}]\n\
         [pool.unchecked.breaker]\nconsecutive_failures = 1\nopen_for = \"1h\"\nmax_open_for = \"2h\"\n\
         [pool.guarded]\nbackends = [{{ address = \"{ghost2}\" }}]\n\
         [pool.guarded.breaker]\nconsecutive_failures = 1\nopen_for = \"1h\"\nmax_open_for = \"2h\"\n\
         [pool.guarded.failover]\nbackup = \"checked\"\n",
        up.addr
    );
    let proxy = start_proxy(&text).await;
    let ready = async || {
        let (code, _, body) = get(&client(), &format!("http://{}/health/ready", proxy.admin)).await;
        (code, String::from_utf8(body.to_vec()).unwrap())
    };
    let unprobed = "no health check: backends count as usable until requests to them fail";
    assert_eq!(
        ready().await,
        (
            200,
            format!(
                "ready\n\
                 checked: 1 of 1 backends usable (health-checked)\n\
                 guarded: 1 of 1 backends usable ({unprobed})\n\
                 unchecked: 1 of 1 backends usable ({unprobed})\n"
            )
        ),
        "nothing probes the dead backends of the unchecked pools: they count as usable"
    );
    // Traffic finds them dead, and the breaker takes them out.
    for host in ["unchecked.test", "guarded.test"] {
        let head = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        raw_exchange(proxy.web, head.as_bytes(), Duration::from_secs(5)).await;
    }
    assert_eq!(
        ready().await,
        (
            503,
            format!(
                "not ready: no usable backend in pool(s) unchecked\n\
                 checked: 1 of 1 backends usable (health-checked)\n\
                 guarded: 0 of 1 backends usable ({unprobed}), served by backup pool checked\n\
                 unchecked: 0 of 1 backends usable ({unprobed})\n"
            )
        )
    );
}

/// `switchyard ctl --admin ADMIN ARGS...`: (success, stdout, stderr).
fn ctl(admin: SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("ctl")
        .arg("--admin")
        .arg(admin.to_string())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `rows` laid out as `ctl` prints tables: columns two spaces apart.
fn table(rows: &[[String; 3]]) -> String {
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let (w0, w1) = (width(0), width(1));
    rows.iter()
        .map(|r| format!("{:<w0$}  {:<w1$}  {}\n", r[0], r[1], r[2]))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctl_why_explains_every_backend() {
    let steady = TestBackend::start("steady").await;
    let sick = TestBackend::start("sick").await;
    sick.set_mode(Mode::Status(500));
    let off = TestBackend::start("off").await;
    let parked = TestBackend::start("parked").await;
    let light = TestBackend::start("light").await;
    let spare = TestBackend::start("spare").await;
    // Healthy to its probes, failing every request.
    let broken = serve_with(|req| {
        let mut response = Response::new(Full::new(Bytes::from("broken")));
        if req.uri().path() != "/health" {
            *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        }
        response
    })
    .await;
    let named = [
        ("steady", steady.addr),
        ("sick", sick.addr),
        ("off", off.addr),
        ("parked", parked.addr),
        ("light", light.addr),
        ("broken", broken),
    ];
    let list: Vec<String> = named
        .iter()
        .map(|(n, a)| format!("{{ address = \"{a}\", name = \"{n}\" }}"))
        .collect();
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbalance = \"round-robin\"\nbackends = [{}]\n\
         [pool.app.health]\ntype = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nrise = 1\nfall = 1\n\
         [pool.app.breaker]\nconsecutive_failures = 1\nopen_for = \"1h\"\nmax_open_for = \"2h\"\nwindow = \"1h\"\nmax_ejected_percent = 100\n\
         [pool.app.retry]\non = [\"500\"]\n\
         [pool.spare]\nbackends = [{{ address = \"{}\", name = \"spare\" }}]\n",
        list.join(", "),
        spare.addr
    );
    let proxy = start_proxy(&text).await;
    wait_for(
        "sick's health checks to fail",
        Duration::from_secs(10),
        async || backend_status(&proxy, sick.addr).await["health"] == "down",
    )
    .await;
    for (path, body) in [
        ("/pools/app/backends/off/disable", ""),
        ("/pools/app/backends/parked/drain", ""),
        ("/pools/app/backends/light/weight", r#"{"weight": 0}"#),
    ] {
        let (code, answer) = admin_call(&proxy, "POST", path, body).await;
        assert_eq!(code, 200, "{path}: {answer}");
    }
    // Round-robin over steady and broken until broken's one failure ejects it.
    let c = client();
    let mut sent = 0;
    while backend_status(&proxy, broken).await["breaker"] != "open" {
        let (status, backend, _) = get(&c, &format!("http://{}/", proxy.web)).await;
        assert_eq!((status, backend.as_str()), (200, "steady"));
        sent += 1;
        assert!(sent < 50, "broken was never tried");
    }

    let (ok, out, err) = ctl(proxy.admin, &["why", "app"]);
    assert!(ok, "{err}");
    let label = |name: &str| {
        let address = named.iter().find(|(n, _)| *n == name).unwrap().1;
        format!("{name} ({address})")
    };
    let row = |name: &str, traffic: &str, why: String| [label(name), traffic.to_string(), why];
    let expected = format!(
        "pool app: route all sends every request here\n{}",
        table(&[
            ["BACKEND".into(), "TRAFFIC".into(), "WHY".into()],
            row(
                "steady",
                "yes",
                format!(
                    "usable, {sent} of the pool's {} requests in the last 60 min, chosen by the balancer",
                    sent + 1
                )
            ),
            row(
                "sick",
                "no",
                "down: its health checks fail (last: status 500)".into()
            ),
            row(
                "off",
                "no",
                "disabled by an operator: no requests until it is enabled".into()
            ),
            row(
                "parked",
                "no",
                "drained: takes no new request until it is enabled".into()
            ),
            row(
                "light",
                "no",
                "weight 0: takes no new request (clients a sticky cookie pins to it stay)".into()
            ),
            row(
                "broken",
                "no",
                "ejected by the circuit breaker after 1 failure(s) in a row, for another 60 min"
                    .into()
            ),
        ])
    );
    assert_eq!(out, expected);

    let (ok, out, _) = ctl(proxy.admin, &["why", "spare"]);
    assert!(ok);
    assert_eq!(
        out,
        format!(
            "pool spare: no route sends requests here (route all goes to app)\n{}",
            table(&[
                ["BACKEND".into(), "TRAFFIC".into(), "WHY".into()],
                [
                    format!("spare ({})", spare.addr),
                    "no".into(),
                    "usable, but no route sends requests to its pool".into()
                ],
            ])
        )
    );

    let (ok, out, err) = ctl(proxy.admin, &["why", "nope"]);
    assert!(!ok);
    assert_eq!(out, "");
    assert_eq!(
        err,
        "switchyard ctl: invalid request: no pool named `nope`; pools: app, spare\n"
    );
}
