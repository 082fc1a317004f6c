//! Runtime control through the admin API while traffic flows: drain, disable, enable, weight.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_load_loses_nothing_and_stops_new_requests() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let proxy = start_proxy(&simple_config(&[&a, &b], "balance = \"round-robin\"")).await;
    let url = format!("http://{}/", proxy.web);

    // A slow request in flight on `a` when the drain starts must still complete.
    a.set_mode(Mode::Slow(Duration::from_secs(1)));
    let c = client();
    let slow = {
        let (c, url) = (c.clone(), url.clone());
        tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (c, url) = (c.clone(), url.clone());
                results.push(tokio::spawn(async move { get(&c, &url).await }));
            }
            let mut out = Vec::new();
            for r in results {
                out.push(r.await.unwrap());
            }
            out
        })
    };
    wait_for(
        "a slow request in flight on a",
        Duration::from_secs(10),
        async || status(&proxy).await["pools"][0]["backends"][0]["in_flight"] == 1,
    )
    .await;
    // That request stays slow; the load below is answered at once.
    a.set_mode(Mode::Ok);

    let load = Load::start(10, url.clone());
    let (a_before, b_before) = (a.hits(), b.hits());
    wait_for("the load flowing", Duration::from_secs(10), async || {
        a.hits() >= a_before + 20 && b.hits() >= b_before + 20
    })
    .await;
    let path = format!("/pools/app/backends/{}/drain", a.addr);
    assert_eq!(
        admin_call(&proxy, "GET", &path, "").await.0,
        405,
        "GET on a mutation is refused"
    );
    let (code, answer) = admin_call(&proxy, "POST", &path, "").await;
    assert_eq!(code, 200);
    assert_eq!(answer["admin_state"], "draining", "{answer}");
    // Requests picked before the drain may still be on their way to a; once every
    // client has finished one it started after the drain, none is. Then, while the
    // proxy picks a backend for another 200 requests, none goes to a.
    load.wait_round().await;
    let hits_at_drain = a.hits();
    let b_at_drain = b.hits();
    wait_for(
        "200 more requests served",
        Duration::from_secs(10),
        async || b.hits() >= b_at_drain + 200,
    )
    .await;
    assert_eq!(
        a.hits(),
        hits_at_drain,
        "no new request reaches a draining backend"
    );

    for (status, _, _) in slow.await.unwrap() {
        assert_eq!(status, 200, "in-flight requests complete");
    }
    // Requests that were in flight on `a` (1 s each) finish, then it reports drained.
    let mut drained = false;
    for _ in 0..150 {
        let state = status(&proxy).await;
        if state["pools"][0]["backends"][0]["admin_state"] == "drained" {
            assert_eq!(state["pools"][0]["backends"][0]["in_flight"], 0);
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        drained,
        "backend reaches `drained` once its in-flight requests end"
    );

    // Enable puts it back in rotation.
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/enable", a.addr),
        "",
    )
    .await;
    assert_eq!(
        (code, answer["admin_state"].as_str()),
        (200, Some("active"))
    );
    let before = a.hits();
    let back = eventually(Duration::from_secs(5), || a.hits() > before).await;
    let (_, failed) = load.stop().await;
    assert!(back, "enabled backend takes traffic again");
    assert_eq!(failed, 0, "no client request failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_and_disable_change_the_split() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let proxy = start_proxy(&simple_config(&[&a, &b], "balance = \"weighted\"")).await;
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/weight", a.addr),
        r#"{"weight": 3}"#,
    )
    .await;
    assert_eq!((code, answer["weight"].as_u64()), (200, Some(3)));
    let c = client();
    for _ in 0..400 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    assert_eq!((a.hits(), b.hits()), (300, 100));

    let (code, _) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/weight", a.addr),
        r#"{"weight": "heavy"}"#,
    )
    .await;
    assert_eq!(code, 400, "a malformed body is a clear 400");
    let (code, _) = admin_call(&proxy, "POST", "/pools/app/backends/10.9.9.9:1/disable", "").await;
    assert_eq!(code, 404);

    admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/disable", b.addr),
        "",
    )
    .await;
    let before = b.hits();
    for _ in 0..50 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    assert_eq!(b.hits(), before, "a disabled backend gets nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_backends_show_their_names_and_answer_to_them() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbalance = \"round-robin\"\nbackends = [\n\
         {{ address = \"{}\", name = \"alpha\" }},\n{{ address = \"{}\" }},\n]\n",
        a.addr, b.addr
    );
    let proxy = start_proxy(&config).await;
    let c = client();
    for _ in 0..4 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    let backends = status(&proxy).await["pools"][0]["backends"].clone();
    assert_eq!(backends[0]["name"], "alpha");
    assert_eq!(backends[0]["address"], a.addr.to_string());
    assert!(backends[1]["name"].is_null(), "{}", backends[1]);

    let metrics = metrics_text(&proxy).await;
    let named = format!(
        "switchyard_backend_up{{pool=\"app\",backend=\"{}\",name=\"alpha\"}} 1",
        a.addr
    );
    let unnamed = format!(
        "switchyard_backend_up{{pool=\"app\",backend=\"{}\"}} 1",
        b.addr
    );
    for series in [named, unnamed] {
        assert!(
            metrics.lines().any(|l| l == series),
            "{series} in\n{metrics}"
        );
    }
    assert_promtool_accepts(&metrics);

    // The admin API takes the name where it takes the address.
    let (code, answer) = admin_call(&proxy, "POST", "/pools/app/backends/alpha/drain", "").await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["address"], a.addr.to_string());
    assert_eq!(answer["name"], "alpha");
    let before = a.hits();
    for _ in 0..10 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    assert_eq!(a.hits(), before, "the drained backend gets nothing");
    let (code, _) = admin_call(&proxy, "POST", "/pools/app/backends/bravo/drain", "").await;
    assert_eq!(code, 404, "no backend is called bravo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_is_required_when_configured_and_off_loopback() {
    let a = TestBackend::start("a").await;
    let open = simple_config(&[&a], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"0.0.0.0:0\"",
    );
    let err =
        switchyard::config::Config::parse(std::path::Path::new("exposed.toml"), &open).unwrap_err();
    assert!(
        err.to_string().contains("exposed.toml:2:10: admin.listen")
            && err.to_string().contains("bearer token"),
        "{err}"
    );

    let config = simple_config(&[&a], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"s3cret-s3cret-s3cret\"",
    );
    let proxy = start_proxy(&config).await;
    let path = format!("/pools/app/backends/{}/disable", a.addr);
    assert_eq!(admin_call(&proxy, "POST", &path, "").await.0, 401);
    assert_eq!(
        get(&client(), &format!("http://{}/status", proxy.admin))
            .await
            .0,
        401
    );
    assert_eq!(
        get(&client(), &format!("http://{}/health", proxy.admin))
            .await
            .0,
        200,
        "liveness stays open"
    );
    let req = Request::post(format!("http://{}{path}", proxy.admin))
        .header("authorization", "Bearer wrong")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client().request(req).await.unwrap().status(), 401);
    let req = Request::post(format!("http://{}{path}", proxy.admin))
        .header("authorization", "Bearer s3cret-s3cret-s3cret")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(client().request(req).await.unwrap().status(), 200);
}

fn blue_green_config(blue: &TestBackend, green: &TestBackend) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"app\"\nlistener = \"web\"\npool = \"blue\"\n\
         [pool.blue]\nbackends = [{{ address = \"{}\" }}]\n[pool.green]\nbackends = [{{ address = \"{}\" }}]\n",
        blue.addr, green.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_switch_under_load_fails_nothing() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green_config(&blue, &green)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    // Set once the switch is answered; each client then counts itself once it has
    // finished a request it started after that.
    let switched = Arc::new(AtomicBool::new(false));
    let clients_past_switch = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for _ in 0..20 {
        let (stop, failures) = (Arc::clone(&stop), Arc::clone(&failures));
        let (switched, past) = (Arc::clone(&switched), Arc::clone(&clients_past_switch));
        let url = format!("http://{}/", proxy.web);
        load.push(tokio::spawn(async move {
            let c = client();
            let mut counted = false;
            while !stop.load(Ordering::Relaxed) {
                let after_switch = switched.load(Ordering::Acquire);
                if get(&c, &url).await.0 != 200 {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                if after_switch && !counted {
                    counted = true;
                    past.fetch_add(1, Ordering::AcqRel);
                }
            }
        }));
    }
    wait_for(
        "the load flowing to blue",
        Duration::from_secs(10),
        async || blue.hits() >= 50,
    )
    .await;
    assert_eq!(
        admin_call(&proxy, "GET", "/routes/app/switch", "").await.0,
        405
    );
    let (code, answer) =
        admin_call(&proxy, "POST", "/routes/app/switch", r#"{"pool": "green"}"#).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["target"]["pool"], "green");
    // Requests already on their way to blue may still land. Each client sends one
    // request at a time, so once every client has finished a request it started
    // after the switch, none started before it is still on its way; after that,
    // only green.
    switched.store(true, Ordering::Release);
    assert!(
        eventually(Duration::from_secs(10), || {
            clients_past_switch.load(Ordering::Acquire) == 20
        })
        .await,
        "every client finished a request after the switch"
    );
    let blue_after_switch = blue.hits();
    let green_after_switch = green.hits();
    wait_for(
        "200 more requests served",
        Duration::from_secs(10),
        async || green.hits() >= green_after_switch + 200,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(
        blue.hits(),
        blue_after_switch,
        "new requests reach only green"
    );
    assert!(green.hits() > 0);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no request failed across the switch"
    );

    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/app/switch",
        r#"{"pool": "purple"}"#,
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert_eq!(
        admin_call(
            &proxy,
            "POST",
            "/routes/nope/switch",
            r#"{"pool": "green"}"#
        )
        .await
        .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_split_follows_percentages_and_sticky_clients_stay() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green_config(&blue, &green)).await;
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/app/split",
        r#"{"pools": {"blue": 90, "green": 10}}"#,
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    let c = client();
    for _ in 0..2000 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    let share = green.hits() as f64 / 2000.0;
    assert!((0.07..=0.13).contains(&share), "green got {share}");

    let (code, _) = admin_call(
        &proxy,
        "POST",
        "/routes/app/split",
        r#"{"pools": {"blue": 50, "green": 50}, "sticky": "header:x-user"}"#,
    )
    .await;
    assert_eq!(code, 200);
    let mut sides = std::collections::HashSet::new();
    for user in 0..40 {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..5 {
            let req = Request::get(format!("http://{}/", proxy.web))
                .header("x-user", format!("user-{user}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let resp = c.request(req).await.unwrap();
            seen.insert(resp.headers()["x-backend"].to_str().unwrap().to_string());
        }
        assert_eq!(seen.len(), 1, "user-{user} changed side: {seen:?}");
        sides.extend(seen);
    }
    assert_eq!(sides.len(), 2, "sticky users land on both sides");
    let state = status(&proxy).await;
    assert_eq!(
        state["routes"][0]["target"]["split"]["green"], 50,
        "{state}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_changes_survive_a_restart_through_the_state_file() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let dir = std::env::temp_dir().join(format!("switchyard-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state_file = dir.join("state.json");
    let config = blue_green_config(&blue, &green).replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\nstate_file = \"{}\"",
            state_file.display()
        ),
    );
    let first = start_proxy(&config).await;
    let drain = format!("/pools/blue/backends/{}/drain", blue.addr);
    assert_eq!(admin_call(&first, "POST", &drain, "").await.0, 200);
    let weight = format!("/pools/green/backends/{}/weight", green.addr);
    assert_eq!(
        admin_call(&first, "POST", &weight, r#"{"weight": 7}"#)
            .await
            .0,
        200
    );
    assert_eq!(
        admin_call(&first, "POST", "/routes/app/switch", r#"{"pool": "green"}"#)
            .await
            .0,
        200
    );
    assert!(first.server.shutdown(Duration::from_secs(2)).await);
    assert!(state_file.exists(), "the state file is written");

    let second = start_proxy(&config).await;
    let state = status(&second).await;
    let pools = state["pools"].as_array().unwrap();
    let blue_state = pools.iter().find(|p| p["name"] == "blue").unwrap();
    let green_state = pools.iter().find(|p| p["name"] == "green").unwrap();
    assert_eq!(
        blue_state["backends"][0]["admin_state"], "drained",
        "{state}"
    );
    assert_eq!(green_state["backends"][0]["weight"], 7);
    assert_eq!(state["routes"][0]["target"]["pool"], "green");
    assert_eq!(
        get(&client(), &format!("http://{}/", second.web)).await.1,
        "green"
    );
    let _ = std::fs::remove_dir_all(&dir);
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
async fn ctl_drives_the_admin_api_and_prints_tables() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green_config(&blue, &green)).await;
    let admin = proxy.admin;
    let blue_addr = blue.addr.to_string();
    let (ok, out, err) =
        tokio::task::spawn_blocking(move || ctl(admin, &["drain", "blue", &blue_addr]))
            .await
            .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("\"admin_state\":\"drain"), "{out}");
    // Blue's only backend is draining, so the split needs --force.
    let (ok, _, err) =
        tokio::task::spawn_blocking(move || ctl(admin, &["split", "app", "blue=90", "green=10"]))
            .await
            .unwrap();
    assert!(!ok && err.contains("no usable backend"), "{err}");
    let (ok, out, _) = tokio::task::spawn_blocking(move || {
        ctl(admin, &["split", "app", "blue=90", "green=10", "--force"])
    })
    .await
    .unwrap();
    assert!(ok && out.contains("\"green\":10"), "{out}");
    let (ok, table, _) = tokio::task::spawn_blocking(move || ctl(admin, &["status"]))
        .await
        .unwrap();
    assert!(ok);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("POOL") && header.contains("BREAKER") && header.contains("IN-FLIGHT"),
        "{table}"
    );
    let blue_line = table
        .lines()
        .find(|l| l.contains(&blue.addr.to_string()))
        .unwrap();
    assert!(
        blue_line.contains("drained") || blue_line.contains("draining"),
        "{table}"
    );
    assert!(table.contains("{\"blue\":90,\"green\":10}"), "{table}");
    let (ok, _, err) =
        tokio::task::spawn_blocking(move || ctl(admin, &["switch", "app", "purple"]))
            .await
            .unwrap();
    assert!(!ok && err.contains("no pool named `purple`"), "{err}");
    let (ok, _, err) = tokio::task::spawn_blocking(move || ctl(admin, &["reload"]))
        .await
        .unwrap();
    assert!(
        !ok && err.contains("not running from a config file"),
        "{err}"
    );
}
