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
    assert_eq!(
        code, 404,
        "an unknown pool is 404, as for a rollout: {answer}"
    );
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

/// `switchyard ctl ARGS` against `admin`: whether it succeeded, stdout, stderr.
fn ctl(admin: std::net::SocketAddr, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--admin", &admin.to_string()])
        .args(args)
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// [`ctl`] off the async workers; asserts it succeeded and returns stdout.
async fn ctl_ok(admin: std::net::SocketAddr, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(admin, &args)
    })
    .await
    .unwrap();
    assert!(ok, "ctl failed: {err}");
    out
}

/// [`ctl`] off the async workers; asserts it failed with exit status 1 and nothing
/// on stdout, and returns stderr.
async fn ctl_refused(admin: std::net::SocketAddr, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ctl(admin, &args)
    })
    .await
    .unwrap();
    assert!(!ok && out.is_empty(), "ctl should have failed: {out}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ctl_command_prints_a_table_or_one_line() {
    let (blue, green, extra) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
        TestBackend::start("extra").await,
    );
    let dir = std::env::temp_dir().join(format!("switchyard-ctl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switchyard.toml");
    std::fs::write(&file, blue_green_config(&blue, &green)).unwrap();
    let (proxy, _watcher) = start_watched_proxy(&file).await;
    proxy.server.set_config_path(file.clone());
    let admin = proxy.admin;
    let (b, g) = (blue.addr.to_string(), green.addr.to_string());
    let w = b.len().max(g.len());

    assert_eq!(
        ctl_ok(admin, &["status"]).await,
        format!(
            "POOL   {backend:<w$}  ADMIN   HEALTH   BREAKER  WEIGHT  IN-FLIGHT  REQUESTS  FAILURES\n\
             blue   {b:<w$}  active  unknown  closed   1       0          0         0\n\
             green  {g:<w$}  active  unknown  closed   1       0          0         0\n\
             \n\
             ROUTE  LISTENER  HOST  PATH  TARGET\n\
             app    web       -     /     blue\n",
            backend = "BACKEND"
        )
    );
    let line = |pool: &str, address: &str, state: &str, weight: u32| {
        format!("pool {pool}, backend {address}: {state} (weight {weight}, 0 in flight)\n")
    };
    assert_eq!(
        ctl_ok(admin, &["drain", "blue", &b]).await,
        line("blue", &b, "drained", 1)
    );
    assert_eq!(
        ctl_ok(admin, &["enable", "blue", &b]).await,
        line("blue", &b, "active", 1)
    );
    assert_eq!(
        ctl_ok(admin, &["disable", "green", &g]).await,
        line("green", &g, "disabled", 1)
    );
    assert_eq!(
        ctl_ok(admin, &["weight", "green", &g, "7"]).await,
        line("green", &g, "disabled", 7)
    );
    assert_eq!(
        ctl_ok(admin, &["enable", "green", &g]).await,
        line("green", &g, "active", 7)
    );
    assert_eq!(
        ctl_ok(admin, &["switch", "app", "green"]).await,
        "route app: all traffic to pool green\n"
    );
    assert_eq!(
        ctl_ok(
            admin,
            &[
                "split",
                "app",
                "blue=90",
                "green=10",
                "--sticky",
                "header:x-user"
            ]
        )
        .await,
        "route app: split blue 90%, green 10% (sticky on header:x-user)\n"
    );
    let table = ctl_ok(admin, &["status"]).await;
    assert!(
        table.ends_with(
            "app    web       -     /     split blue 90%, green 10% (sticky on header:x-user)\n"
        ),
        "{table}"
    );
    ctl_ok(admin, &["switch", "app", "blue"]).await;
    assert_eq!(
        ctl_ok(
            admin,
            &[
                "rollout",
                "app",
                "--to",
                "green",
                "--steps",
                "5,50,100",
                "--interval",
                "30s"
            ]
        )
        .await,
        "route app: rollout from blue to green started: steps 5%, 50%, 100%, 30s each\n"
    );
    assert_eq!(
        ctl_ok(admin, &["rollout", "app", "--abort"]).await,
        "route app: rollout aborted, all traffic back on pool blue\n"
    );
    let x = extra.addr.to_string();
    assert_eq!(
        ctl_ok(admin, &["add-backend", "blue", &x, "--weight", "2"]).await,
        format!("pool blue, backend {x}: added (weight 2, health unknown)\n")
    );
    assert_eq!(
        ctl_ok(admin, &["remove-backend", "blue", &x]).await,
        format!("pool blue, backend {x}: removed\n")
    );
    assert_eq!(
        ctl_ok(admin, &["reload"]).await,
        format!("reloaded {}\n", file.display())
    );

    // --json (before or after the command's own arguments) prints the raw answer.
    for args in [
        ["--json", "drain", "blue", b.as_str()],
        ["drain", "blue", b.as_str(), "--json"],
    ] {
        let raw = ctl_ok(admin, &args).await;
        let answer: serde_json::Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(answer["admin_state"], "drained", "{raw}");
        assert_eq!(answer["address"], b.as_str(), "{raw}");
    }

    // The same unknown name gets the same answer from every command: 404.
    let unknown_pool = "switchyard ctl: the admin API answered 404: no pool named `purple`\n";
    for args in [
        vec!["switch", "app", "purple"],
        vec!["split", "app", "blue=50", "purple=50"],
        vec!["rollout", "app", "--to", "purple"],
        vec!["drain", "purple", b.as_str()],
        vec!["enable", "purple", b.as_str()],
        vec!["weight", "purple", b.as_str(), "3"],
        vec!["add-backend", "purple", x.as_str()],
        vec!["remove-backend", "purple", x.as_str()],
    ] {
        assert_eq!(ctl_refused(admin, &args).await, unknown_pool, "{args:?}");
    }
    let unknown_route = "switchyard ctl: the admin API answered 404: no route named `nowhere`\n";
    for args in [
        vec!["switch", "nowhere", "green"],
        vec!["split", "nowhere", "blue=50", "green=50"],
        vec!["rollout", "nowhere", "--to", "green"],
        vec!["rollout", "nowhere", "--abort"],
    ] {
        assert_eq!(ctl_refused(admin, &args).await, unknown_route, "{args:?}");
    }
    assert_eq!(
        ctl_refused(admin, &["drain", "blue", "10.9.9.9:80"]).await,
        "switchyard ctl: the admin API answered 404: pool `blue` has no backend 10.9.9.9:80\n"
    );
    // A bad share is refused before anything is sent (usage error: 2).
    let (ok, _, err) = tokio::task::spawn_blocking(move || ctl(admin, &["split", "app", "blue=x"]))
        .await
        .unwrap();
    assert!(!ok);
    assert_eq!(
        err,
        "switchyard ctl: invalid request: `blue=x` is not POOL=PERCENT (e.g. green=10)\n"
    );
    // Nothing listens: the reason is the socket's, not the HTTP client's.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    assert_eq!(
        ctl_refused(closed, &["status"]).await,
        format!(
            "switchyard ctl: cannot reach the admin API at {closed}: Connection refused (os error 111)\n"
        )
    );
    // A proxy started without a file has nothing to reload.
    let plain = start_proxy(&blue_green_config(&blue, &green)).await;
    assert_eq!(
        ctl_refused(plain.admin, &["reload"]).await,
        "switchyard ctl: the admin API answered 409: not running from a config file\n"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each `ctl` command's `--help`: the admin flags (wherever they are written), its
/// own arguments with a description each, and none of the proxy's flags.
#[test]
fn ctl_help_lists_the_admin_flags_and_describes_every_argument() {
    let help = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .env_remove("SWITCHYARD_ADMIN")
            .env_remove("SWITCHYARD_ADMIN_TOKEN")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(
        help(&["ctl", "drain", "--help"]),
        "\
Stop sending new requests to a backend; in-flight ones finish

Usage: switchyard ctl drain [OPTIONS] <POOL> <BACKEND>

Arguments:
  <POOL>     The pool, as named in the config (`[pool.NAME]`)
  <BACKEND>  The backend's name or address, as `ctl status` lists it (e.g. alpha or 10.0.0.5:8080)

Options:
      --admin <HOST:PORT>       Admin address (host:port). A host name other than `localhost` must be in the proxy's `admin.allowed_hosts` [env: SWITCHYARD_ADMIN=] [default: 127.0.0.1:9901]
      --token <TOKEN>           Bearer token for the admin API (`admin.token`) [env: SWITCHYARD_ADMIN_TOKEN]
      --json                    Print the admin API's raw JSON answer instead of a table or a line
      --if-revision <REVISION>  In a fleet: refuse the change (409) if what it touches changed after this etcd revision (the `revision` of `GET /cluster` or of an earlier answer)
  -h, --help                    Print help
"
    );
    let commands = [
        "status",
        "why",
        "drain",
        "enable",
        "disable",
        "weight",
        "switch",
        "split",
        "reload",
        "rollout",
        "add-backend",
        "remove-backend",
    ];
    for command in commands {
        let text = help(&["ctl", command, "--help"]);
        for flag in ["--admin <HOST:PORT>", "--token <TOKEN>", "--json"] {
            assert!(
                text.contains(flag),
                "ctl {command} --help lacks {flag}:\n{text}"
            );
        }
        for flag in [
            "--workers",
            "--config",
            "--log-level",
            "--log-format",
            "--no-access-log",
        ] {
            assert!(
                !text.contains(flag),
                "ctl {command} --help lists {flag}:\n{text}"
            );
        }
        let arguments = text
            .split("Arguments:\n")
            .nth(1)
            .map(|rest| rest.split("\n\n").next().unwrap_or_default())
            .unwrap_or_default();
        for line in arguments.lines() {
            let description = line.trim().split_once("  ").map(|(_, d)| d.trim());
            assert!(
                description.is_some_and(|d| !d.is_empty()),
                "ctl {command}: an argument without a description: {line:?}"
            );
        }
    }
    // The admin flags are taken before the command or after it.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    for args in [
        vec!["ctl", "--admin", &closed, "status"],
        vec!["ctl", "status", "--admin", &closed],
        vec![
            "ctl",
            "drain",
            "app",
            "10.0.0.1:80",
            "--token",
            "t",
            "--admin",
            &closed,
        ],
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("cannot reach the admin API at {closed}")),
            "{args:?}: {err}"
        );
    }
    // Proxy flags belong to the proxy, not to `ctl`.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "status", "--workers", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
