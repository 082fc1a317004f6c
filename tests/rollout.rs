//! Progressive rollouts through the admin API with real blue and green backends under
//! steady load: completion, automatic rollback on a failing green, abort and supersede.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn blue_green(blue: &TestBackend, green: &TestBackend) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"blue\"\n\n\
         [pool.blue]\nbackends = [{{ address = \"{}\" }}]\n\n[pool.green]\nbackends = [{{ address = \"{}\" }}]\n\
         # The guard alone must protect: no breaker ejection of green.\n\
         [pool.green.breaker]\nconsecutive_failures = 0\n",
        blue.addr, green.addr
    )
}

/// The `rollout` object of route `all` in `/status`.
async fn rollout_status(proxy: &TestProxy) -> serde_json::Value {
    status(proxy).await["routes"][0].clone()
}

/// Polls `/status` until the rollout satisfies `done` or `within` passes.
/// Polls the route until `done` holds for it (rollout and target together: a step is
/// listed as soon as it begins, its split a moment later) or `within` passes.
async fn wait_route(
    proxy: &TestProxy,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let route = rollout_status(proxy).await;
        if done(&route) || Instant::now() > deadline {
            return route;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_rollout(
    proxy: &TestProxy,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let route = rollout_status(proxy).await;
        if done(&route["rollout"]) || Instant::now() > deadline {
            return route;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthy_rollout_completes_on_green_without_a_failed_request() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green(&blue, &green)).await;

    // Input is checked before anything changes.
    let path = "/routes/all/rollout";
    assert_eq!(admin_call(&proxy, "GET", path, "").await.0, 405);
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        path,
        r#"{"to": "green", "steps": [50, 20, 100]}"#,
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("increase"),
        "{answer}"
    );
    let (code, _) = admin_call(&proxy, "POST", path, r#"{"to": "teal"}"#).await;
    assert_eq!(code, 404);
    let (code, _) = admin_call(&proxy, "POST", "/routes/none/rollout", r#"{"to": "green"}"#).await;
    assert_eq!(code, 404);

    let load = Load::start(15, format!("http://{}/", proxy.web));
    wait_for(
        "the load flowing to blue",
        Duration::from_secs(10),
        async || blue.hits() >= 50,
    )
    .await;
    let started = Instant::now();
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        path,
        r#"{"to": "green", "steps": [5, 25, 50, 100], "interval": "300ms",
            "guard": {"max_error_rate": 0.05, "max_p99_ratio": 50.0, "min_requests": 20}}"#,
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    assert_eq!(answer["rollout"]["state"], "running");
    assert_eq!(answer["rollout"]["from"], "blue");
    let (code, _) = admin_call(&proxy, "POST", path, r#"{"to": "green"}"#).await;
    assert_eq!(code, 409, "one rollout per route at a time");

    // Mid-way, the route is a blue/green split.
    let mid = wait_route(&proxy, Duration::from_secs(3), |r| {
        r["rollout"]["percent"] == 25 && r["target"]["split"]["green"] == 25
    })
    .await;
    assert_eq!(mid["rollout"]["state"], "running", "{mid}");
    assert_eq!(mid["target"]["split"]["green"], 25, "{mid}");
    assert_eq!(mid["target"]["split"]["blue"], 75, "{mid}");

    let done = wait_rollout(&proxy, Duration::from_secs(5), |r| r["state"] != "running").await;
    let took = started.elapsed();
    assert_eq!(done["rollout"]["state"], "completed", "{done}");
    assert_eq!(done["target"]["pool"], "green", "{done}");
    assert_eq!(done["rollout"]["last_verdict"]["healthy"], true, "{done}");
    assert!(
        done["rollout"]["last_verdict"]["green"]["requests"]
            .as_u64()
            .unwrap()
            >= 20,
        "{done}"
    );
    assert!(
        took >= Duration::from_millis(1100),
        "each of the 4 steps is held for its interval: took {took:?}"
    );

    // All traffic is on green now: once no request picked before the end is on its
    // way, blue gets none of the next 200.
    load.wait_round().await;
    let blue_hits = blue.hits();
    let green_hits = green.hits();
    wait_for(
        "200 more requests served",
        Duration::from_secs(10),
        async || green.hits() >= green_hits + 200,
    )
    .await;
    let (ok, failed) = load.stop().await;
    assert_eq!(
        blue.hits(),
        blue_hits,
        "no request reaches blue after completion"
    );
    assert!(green.hits() > green_hits + 20);
    assert_eq!(failed, 0, "no request failed during the rollout ({ok} ok)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_green_is_rolled_back_within_its_window() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green(&blue, &green)).await;
    const CLIENTS: u64 = 15;
    let load = Load::start(CLIENTS as usize, format!("http://{}/", proxy.web));
    wait_for(
        "the load flowing to blue",
        Duration::from_secs(10),
        async || blue.hits() >= 50,
    )
    .await;
    let interval = Duration::from_millis(400);
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/all/rollout",
        r#"{"to": "green", "steps": [10, 50, 100], "interval": "400ms"}"#,
    )
    .await;
    assert_eq!(code, 202, "{answer}");

    // Green breaks once the second step (50 %) is in effect.
    let mid = wait_route(&proxy, Duration::from_secs(3), |r| {
        r["rollout"]["percent"] == 50 && r["target"]["split"]["green"] == 50
    })
    .await;
    assert_eq!(mid["target"]["split"]["green"], 50, "{mid}");
    assert_eq!(load.failures(), 0, "the healthy first step failed nothing");
    let green_before = green.hits();
    green.set_mode(Mode::Status(500));
    let broke = Instant::now();

    let done = wait_rollout(&proxy, Duration::from_secs(3), |r| r["state"] != "running").await;
    let took = broke.elapsed();
    let green_during = green.hits() - green_before;
    let rollout = &done["rollout"];
    assert_eq!(rollout["state"], "rolled_back", "{done}");
    assert_eq!(rollout["step"], 1, "{done}");
    assert_eq!(done["target"]["pool"], "blue", "{done}");
    assert!(
        rollout["reason"].as_str().unwrap().contains("error rate"),
        "{done}"
    );
    assert_eq!(rollout["last_verdict"]["healthy"], false, "{done}");
    assert!(
        took < interval * 2,
        "rolled back within the step's window: {took:?}"
    );

    // After the rollback only blue answers, and nothing fails any more: once no
    // request picked before it is on its way, green gets none of the next 200.
    load.wait_round().await;
    let failed_at_rollback = load.failures();
    let green_after = green.hits();
    let blue_after = blue.hits();
    wait_for(
        "200 more requests served",
        Duration::from_secs(10),
        async || blue.hits() >= blue_after + 200,
    )
    .await;
    let (_, failed) = load.stop().await;
    assert_eq!(
        green.hits(),
        green_after,
        "no request reaches green after rollback"
    );
    assert!(blue.hits() > blue_after + 20);
    assert_eq!(failed, failed_at_rollback, "no failure after the rollback");
    assert!(
        failed > 0,
        "green's 500s reached clients during the bad step"
    );
    // A request already inside green when it broke may read the new mode before its
    // hit was counted: allow one such request per client.
    assert!(
        failed <= green_during + CLIENTS,
        "only requests that reached green during the bad step failed: {failed} failed, {green_during} reached green"
    );
    eprintln!(
        "rolled back {took:?} after green broke; {failed} failed of {green_during} sent to green"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_and_a_new_switch_stop_a_rollout() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green(&blue, &green)).await;
    let start = r#"{"to": "green", "steps": [20, 100], "interval": "10s"}"#;

    let (code, _) = admin_call(&proxy, "POST", "/routes/all/rollout", start).await;
    assert_eq!(code, 202);
    let running = wait_route(&proxy, Duration::from_secs(2), |r| {
        r["rollout"]["percent"] == 20 && r["target"]["split"]["green"] == 20
    })
    .await;
    assert_eq!(running["target"]["split"]["green"], 20, "{running}");
    let (code, answer) = admin_call(&proxy, "POST", "/routes/all/rollout/abort", "").await;
    assert_eq!(code, 200, "{answer}");
    let after = rollout_status(&proxy).await;
    assert_eq!(after["rollout"]["state"], "aborted", "{after}");
    assert_eq!(after["target"]["pool"], "blue", "{after}");
    let (code, _) = admin_call(&proxy, "DELETE", "/routes/all/rollout", "").await;
    assert_eq!(code, 409, "nothing left to abort");

    // A manual switch supersedes a running rollout, which must not undo it later.
    let (code, _) = admin_call(&proxy, "POST", "/routes/all/rollout", start).await;
    assert_eq!(code, 202);
    wait_rollout(&proxy, Duration::from_secs(2), |r| r["percent"] == 20).await;
    let (code, _) = admin_call(&proxy, "POST", "/routes/all/switch", r#"{"pool": "green"}"#).await;
    assert_eq!(code, 200);
    let after = rollout_status(&proxy).await;
    assert_eq!(after["rollout"]["state"], "aborted", "{after}");
    assert!(
        after["rollout"]["reason"]
            .as_str()
            .unwrap()
            .contains("superseded"),
        "{after}"
    );
    assert_eq!(after["target"]["pool"], "green", "{after}");
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.1, "green");
    }

    // Shutdown stops a running rollout too.
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/all/rollout",
        r#"{"to": "blue", "interval": "10s"}"#,
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    assert_eq!(answer["rollout"]["from"], "green");
    let rollout = proxy.server.rollout("all").unwrap();
    proxy.server.shutdown(Duration::from_millis(500)).await;
    assert!(
        eventually(Duration::from_secs(1), || rollout.state()
            == switchyard::rollout::RolloutState::Aborted)
        .await,
        "{}",
        rollout.to_json()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_green_breaks_the_p99_guard() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    green.set_mode(Mode::Slow(Duration::from_millis(250)));
    let proxy = start_proxy(&blue_green(&blue, &green)).await;
    let load = Load::start(20, format!("http://{}/", proxy.web));
    wait_for(
        "the load flowing to blue",
        Duration::from_secs(10),
        async || blue.hits() >= 50,
    )
    .await;
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/all/rollout",
        r#"{"to": "green", "steps": [50, 100], "interval": "1s",
            "guard": {"max_error_rate": 0.5, "max_p99_ratio": 2.0, "min_requests": 10}}"#,
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    let done = wait_rollout(&proxy, Duration::from_secs(4), |r| r["state"] != "running").await;
    let (_, failed) = load.stop().await;
    let rollout = &done["rollout"];
    assert_eq!(rollout["state"], "rolled_back", "{done}");
    assert!(
        rollout["reason"].as_str().unwrap().contains("p99"),
        "{done}"
    );
    let verdict = &rollout["last_verdict"];
    assert!(
        verdict["green"]["p99_ms"].as_f64().unwrap()
            > 2.0 * verdict["blue"]["p99_ms"].as_f64().unwrap(),
        "{done}"
    );
    assert_eq!(done["target"]["pool"], "blue", "{done}");
    assert_eq!(failed, 0, "slow is not failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_that_removes_the_route_stops_its_rollout() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let config = blue_green(&blue, &green);
    let proxy = start_proxy(&config).await;
    let (code, _) = admin_call(
        &proxy,
        "POST",
        "/routes/all/rollout",
        r#"{"to": "green", "steps": [20, 100], "interval": "10s"}"#,
    )
    .await;
    assert_eq!(code, 202);
    let rollout = proxy.server.rollout("all").unwrap();
    assert_eq!(rollout.state(), switchyard::rollout::RolloutState::Running);

    let dir = std::env::temp_dir().join(format!("switchyard-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switchyard.toml");
    std::fs::write(
        &file,
        config.replace("name = \"all\"", "name = \"everything\""),
    )
    .unwrap();
    switchyard::reload::reload(&proxy.server, &file)
        .await
        .unwrap();
    assert_eq!(rollout.state(), switchyard::rollout::RolloutState::Aborted);
    assert!(rollout.cancelled().is_cancelled());
    assert!(
        rollout.to_json()["reason"]
            .as_str()
            .unwrap()
            .contains("removed by a config reload")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_without_enough_traffic_is_held_then_rolled_back() {
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let proxy = start_proxy(&blue_green(&blue, &green)).await;
    let started = Instant::now();
    let (code, _) = admin_call(
        &proxy,
        "POST",
        "/routes/all/rollout",
        r#"{"to": "green", "steps": [50, 100], "interval": "150ms"}"#,
    )
    .await;
    assert_eq!(code, 202);
    // No traffic at all: the first step is held for 4 intervals, never advanced.
    let held = wait_rollout(&proxy, Duration::from_millis(400), |_| false).await;
    assert_eq!(held["rollout"]["state"], "running", "{held}");
    assert_eq!(held["rollout"]["percent"], 50, "{held}");
    let done = wait_rollout(&proxy, Duration::from_secs(3), |r| r["state"] != "running").await;
    let took = started.elapsed();
    assert_eq!(done["rollout"]["state"], "rolled_back", "{done}");
    assert!(
        done["rollout"]["reason"]
            .as_str()
            .unwrap()
            .contains("not judged"),
        "{done}"
    );
    assert_eq!(done["target"]["pool"], "blue", "{done}");
    assert!(
        took >= Duration::from_millis(590),
        "held 4 intervals: {took:?}"
    );
}
