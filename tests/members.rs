//! Adding and removing backends at run time under load, their survival across a
//! restart and a reload, and the drain grace of upgraded (WebSocket) connections.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn backend_addresses(status: &serde_json::Value) -> Vec<String> {
    status["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_backend_takes_traffic_under_load() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let health = "[pool.app.health]\ntype = \"http\"\npath = \"/\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nrise = 1\n";
    let proxy = start_proxy(&simple_config(&[&a], health)).await;
    let path = "/pools/app/backends";
    assert_eq!(admin_call(&proxy, "GET", path, "").await.0, 405);
    let (code, answer) = admin_call(&proxy, "POST", path, r#"{"address": "nowhere"}"#).await;
    assert_eq!(code, 400, "{answer}");
    let (code, _) = admin_call(
        &proxy,
        "POST",
        "/pools/none/backends",
        &format!(r#"{{"address": "{}"}}"#, b.addr),
    )
    .await;
    assert_eq!(code, 404);

    let load = Load::start(10, format!("http://{}/", proxy.web));
    wait_for(
        "the load flowing to a",
        Duration::from_secs(10),
        async || a.hits() >= 20,
    )
    .await;
    assert_eq!(b.hits(), 0);
    let body = format!(r#"{{"address": "{}", "weight": 1}}"#, b.addr);
    let (code, answer) = admin_call(&proxy, "POST", path, &body).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["address"], b.addr.to_string());
    assert_eq!(
        admin_call(&proxy, "POST", path, &body).await.0,
        409,
        "already there"
    );
    assert!(
        eventually(Duration::from_secs(2), || b.hits() > 50).await,
        "the added backend receives traffic"
    );
    let a_hits = a.hits();
    wait_for(
        "the first backend still sharing the load",
        Duration::from_secs(10),
        async || a.hits() > a_hits + 20,
    )
    .await;
    let (_, failed) = load.stop().await;
    assert_eq!(failed, 0, "no request failed");
    assert_eq!(backend_addresses(&status(&proxy).await).len(), 2);
    // The pool is health checked, so the added backend gets its own probe loop.
    let mut up = false;
    for _ in 0..50 {
        let now = status(&proxy).await;
        let added = now["pools"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["address"] == b.addr.to_string())
            .cloned()
            .unwrap();
        if added["health"] == "up" && added["last_check"].is_object() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up, "the added backend is probed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_under_load_lets_in_flight_requests_finish() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let proxy = start_proxy(&simple_config(&[&a, &b], "balance = \"round-robin\"")).await;
    let url = format!("http://{}/", proxy.web);
    b.set_mode(Mode::Slow(Duration::from_secs(1)));
    // Slow requests in flight on `b` when the removal starts.
    let slow: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { get(&client(), &url).await })
        })
        .collect();
    // All four picked before the load starts: round robin puts two of them on b.
    wait_for(
        "the four slow requests sent",
        Duration::from_secs(10),
        async || a.hits() + b.hits() >= 4,
    )
    .await;
    let load = Load::start(10, format!("http://{}/", proxy.web));
    wait_for("the load flowing", Duration::from_secs(10), async || {
        a.hits() >= 2 + 5
    })
    .await;

    let path = format!("/pools/app/backends/{}", b.addr);
    assert_eq!(admin_call(&proxy, "GET", &path, "").await.0, 405);
    let (code, answer) = admin_call(&proxy, "DELETE", &path, "").await;
    assert_eq!(code, 202, "{answer}");
    assert_eq!(answer["state"], "removing", "{answer}");
    assert!(answer["in_flight"].as_u64().unwrap() > 0, "{answer}");
    // Requests picked before the call may still be on their way to b; once every
    // client has finished one it started after the call, none is.
    load.wait_round().await;
    let hits_at_removal = b.hits();

    let mut slow_ok = 0;
    for s in slow {
        let (code, backend, _) = s.await.unwrap();
        assert_eq!(code, 200, "in-flight requests complete");
        slow_ok += u32::from(backend == "b");
    }
    assert!(
        slow_ok > 0,
        "at least one slow request was on the removed backend"
    );
    let mut gone = false;
    for _ in 0..100 {
        if !backend_addresses(&status(&proxy).await).contains(&b.addr.to_string()) {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gone, "the backend disappears from /status once drained");
    assert_eq!(
        b.hits(),
        hits_at_removal,
        "no new request reached it after the call"
    );
    let (_, failed) = load.stop().await;
    assert_eq!(failed, 0, "no request failed");
    let (code, answer) = admin_call(
        &proxy,
        "DELETE",
        &format!("/pools/app/backends/{}", a.addr),
        "",
    )
    .await;
    assert_eq!(code, 409, "the last backend of a pool stays: {answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_survives_restart_and_reload() {
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    let dir = std::env::temp_dir().join(format!("switchyard-members-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(&state);
    let config = simple_config(&[&a, &b], "").replace(
        "[admin]\n",
        &format!("[admin]\nstate_file = \"{}\"\n", state.display()),
    );
    let proxy = start_proxy(&config).await;
    let (code, _) = admin_call(
        &proxy,
        "POST",
        "/pools/app/backends",
        &format!(r#"{{"address": "{}", "weight": 2}}"#, c.addr),
    )
    .await;
    assert_eq!(code, 201);
    let (code, answer) = admin_call(
        &proxy,
        "DELETE",
        &format!("/pools/app/backends/{}", a.addr),
        "",
    )
    .await;
    assert_eq!(code, 200, "nothing in flight: removed at once: {answer}");
    assert_eq!(answer["state"], "removed");
    proxy.server.shutdown(Duration::from_secs(1)).await;

    // A restart from the same config and state file keeps both changes.
    let proxy = start_proxy(&config).await;
    let mut addresses = backend_addresses(&status(&proxy).await);
    addresses.sort();
    let mut expected = vec![b.addr.to_string(), c.addr.to_string()];
    expected.sort();
    assert_eq!(addresses, expected);
    let client = client();
    let url = format!("http://{}/", proxy.web);
    let a_hits = a.hits();
    let mut seen_c = false;
    for _ in 0..10 {
        let (code, name, _) = get(&client, &url).await;
        assert_eq!(code, 200);
        seen_c |= name == "c";
    }
    assert!(seen_c, "the added backend serves after the restart");
    assert_eq!(a.hits(), a_hits, "the removed backend stays out");

    // A reload of an unchanged file keeps them too; one that lists `c` itself wins.
    let file = dir.join("switchyard.toml");
    std::fs::write(&file, &config).unwrap();
    switchyard::reload::reload(&proxy.server, &file)
        .await
        .unwrap();
    assert_eq!(backend_addresses(&status(&proxy).await).len(), 2);
    let listed = config.replacen(
        "  { address",
        &format!(
            "  {{ address = \"{}\", weight = 7 }},\n  {{ address",
            c.addr
        ),
        1,
    );
    std::fs::write(&file, &listed).unwrap();
    switchyard::reload::reload(&proxy.server, &file)
        .await
        .unwrap();
    let now = status(&proxy).await;
    let c_entry = now["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["address"] == c.addr.to_string())
        .cloned()
        .unwrap();
    assert_eq!(c_entry["config_weight"], 7, "{now}");
    assert!(
        !backend_addresses(&now).contains(&a.addr.to_string()),
        "an unchanged entry for a removed backend keeps it removed"
    );
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert!(saved["members"].get("added").is_none(), "{saved}");
    assert!(saved["members"]["removed"]["app"].is_array(), "{saved}");
    let _ = std::fs::remove_dir_all(&dir);
}

async fn open_echoing_tunnel(proxy: &TestProxy) -> TcpStream {
    let mut s = open_tunnel(proxy.web).await;
    echo(&mut s).await.expect("the tunnel echoes");
    s
}

async fn echo(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"ping").await?;
    let mut echoed = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut echoed)).await??;
    assert_eq!(&echoed, b"ping");
    Ok(())
}

fn admin_state(status: &serde_json::Value) -> String {
    status["pools"][0]["backends"][0]["admin_state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drained_backend_closes_tunnels_after_the_grace_period() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config(&[&a], "drain_grace = \"600ms\"")).await;
    let mut tunnel = open_echoing_tunnel(&proxy).await;
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/app/backends/{}/drain", a.addr),
        "",
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(answer["admin_state"], "draining");
    let drained_at = std::time::Instant::now();

    // Within the grace period the tunnel still works and the backend is not drained.
    tokio::time::sleep(Duration::from_millis(250)).await;
    echo(&mut tunnel)
        .await
        .expect("the tunnel lives through the grace period");
    assert_eq!(admin_state(&status(&proxy).await), "draining");

    // After it, the tunnel is closed and the backend reports drained.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(3), tunnel.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the tunnel is closed: {closed:?}"
    );
    let waited = drained_at.elapsed();
    assert!(
        waited >= Duration::from_millis(550),
        "closed only after the grace: {waited:?}"
    );
    let proxy_ref = &proxy;
    let mut drained = false;
    for _ in 0..50 {
        let s = status(proxy_ref).await;
        if admin_state(&s) == "drained" {
            assert_eq!(s["pools"][0]["backends"][0]["in_flight"], 0);
            drained = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        drained,
        "the backend reaches drained once its tunnels are closed"
    );
}
