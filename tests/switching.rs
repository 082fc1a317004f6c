//! Switching never aims traffic where it must fail: a switch, split or rollout toward
//! a pool with no usable backend is refused with 409 and the reason (unless forced),
//! and during a split a side with no usable backend hands its requests to the other
//! side, counted, while the rollout guard still sees them and rolls back.

mod support;

use std::time::Duration;

use support::*;

/// Route `all` on `blue`; route `probe` (`/green-probe`) straight to `green`, whose
/// breaker opens after 2 failures and stays open for a minute.
fn blue_green(blue: &TestBackend, green: &TestBackend) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"blue\"\n\n\
         [[route]]\nname = \"probe\"\nlistener = \"web\"\npath_prefix = \"/green-probe\"\npool = \"green\"\n\n\
         [pool.blue]\nbackends = [{{ address = \"{}\" }}]\n\n\
         [pool.green]\nbackends = [{{ address = \"{}\" }}]\n\
         [pool.green.breaker]\nconsecutive_failures = 2\nopen_for = \"60s\"\n\
         [pool.green.retry]\nattempts = 0\n",
        blue.addr, green.addr
    )
}

/// Opens green's breaker through its own route.
async fn eject_green(proxy: &TestProxy, green: &TestBackend) {
    green.set_mode(Mode::Status(503));
    let c = client();
    for _ in 0..2 {
        get(&c, &format!("http://{}/green-probe", proxy.web)).await;
    }
    let b = backend_status(proxy, green.addr).await;
    assert_eq!(b["breaker"], "open", "{b}");
}

fn ctl(admin: std::net::SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--admin", &admin.to_string()])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_toward_a_pool_without_a_usable_backend_is_refused_with_the_reason() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green(&blue, &green)).await;
    eject_green(&proxy, &green).await;
    let green_key = green.addr.to_string();

    for (path, body) in [
        (
            "/routes/all/rollout",
            r#"{"to": "green", "interval": "1s"}"#,
        ),
        ("/routes/all/switch", r#"{"pool": "green"}"#),
        (
            "/routes/all/split",
            r#"{"pools": {"blue": 90, "green": 10}}"#,
        ),
    ] {
        let (code, answer) = admin_call(&proxy, "POST", path, body).await;
        assert_eq!(code, 409, "{path}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("pool `green` has no usable backend")
                && error.contains(&green_key)
                && error.contains("circuit breaker open")
                && error.contains("force"),
            "{path}: the reason names the pool, the backend and why: {error}"
        );
    }
    let route = &status(&proxy).await["routes"][0];
    assert_eq!(route["target"]["pool"], "blue", "nothing changed: {route}");
    assert!(route["rollout"].is_null(), "no rollout started: {route}");

    // A split that gives green no share is not sending anything there: allowed.
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/all/split",
        r#"{"pools": {"blue": 100, "green": 0}}"#,
    )
    .await;
    assert_eq!(code, 200, "{answer}");

    // The same through ctl: refused with the reason and a non-zero exit, then forced.
    let admin = proxy.admin;
    let (ok, _, err) = tokio::task::spawn_blocking(move || ctl(admin, &["switch", "all", "green"]))
        .await
        .unwrap();
    assert!(!ok);
    assert!(
        err.contains("409") && err.contains("no usable backend"),
        "{err}"
    );
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || ctl(admin, &["switch", "all", "green", "--force"]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, "route all: all traffic to pool green\n");
    assert_eq!(status(&proxy).await["routes"][0]["target"]["pool"], "green");

    // Back to blue, then a forced rollout starts (202) despite the ejected green.
    let (code, _) = admin_call(&proxy, "POST", "/routes/all/switch", r#"{"pool": "blue"}"#).await;
    assert_eq!(code, 200);
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        ctl(
            admin,
            &[
                "rollout",
                "all",
                "--to",
                "green",
                "--interval",
                "10s",
                "--force",
            ],
        )
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "route all: rollout from blue to green started: steps 5%, 25%, 50%, 100%, 10s each\n"
    );
    let (code, _) = admin_call(&proxy, "POST", "/routes/all/rollout/abort", "").await;
    assert_eq!(code, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_side_without_usable_backends_spills_to_the_other_and_is_counted() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green(&blue, &green)).await;
    eject_green(&proxy, &green).await;
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/all/split",
        r#"{"pools": {"blue": 50, "green": 50}, "force": true}"#,
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let green_hits = green.hits();
    let c = client();
    for _ in 0..100 {
        let (code, backend, _) = get(&c, &format!("http://{}/", proxy.web)).await;
        assert_eq!((code, backend.as_str()), (200, "blue"), "clients never pay");
    }
    assert_eq!(
        green.hits(),
        green_hits,
        "nothing was sent to the ejected side"
    );
    let metrics = metrics_text(&proxy).await;
    let spilled = metric_value(
        &metrics,
        "switchyard_split_spills_total{route=\"all\",from=\"green\",to=\"blue\"}",
    );
    assert!(
        (20.0..=80.0).contains(&spilled),
        "about half of 100 requests rolled green and spilled: {spilled}"
    );
    let b = backend_status(&proxy, blue.addr).await;
    assert_eq!(b["in_flight"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_whose_green_fails_spills_and_rolls_back_without_clients_paying() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green(&blue, &green)).await;
    // Green is usable when the rollout starts (202), then fails every request.
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/all/rollout",
        r#"{"to": "green", "steps": [10, 100], "interval": "2s", "guard": {"min_requests": 5}}"#,
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    green.set_mode(Mode::Status(503));
    let load = Load::start(4, format!("http://{}/", proxy.web));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let rollout = loop {
        let route = status(&proxy).await["routes"][0].clone();
        if route["rollout"]["state"] != "running" || tokio::time::Instant::now() > deadline {
            break route["rollout"].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (served, failed) = load.stop().await;
    assert_eq!(rollout["state"], "rolled_back", "{rollout}");
    assert!(served > 100, "{served}");
    // Only the requests green answered before its breaker opened reached clients as
    // failures: the breaker's threshold (2), plus at most one more per client that was
    // already on green when it opened. After that green's share spilled to blue.
    let clients = 4;
    assert!(
        failed <= 2 + clients,
        "{failed} of {served} client requests failed; the guard alone would have let ~10% fail"
    );
    let metrics = metrics_text(&proxy).await;
    let spilled = metric_value(
        &metrics,
        "switchyard_split_spills_total{route=\"all\",from=\"green\",to=\"blue\"}",
    );
    assert!(spilled >= 1.0, "{metrics}");
    let verdict = &rollout["last_verdict"]["green"];
    assert!(
        verdict["failures"].as_u64().unwrap() >= 2,
        "the guard saw green's share fail: {rollout}"
    );
}
