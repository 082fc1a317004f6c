//! Editing the config file while traffic flows: good edits take effect within a second
//! without failing a request; bad edits are rejected and the running config stays.

mod support;

use std::time::Duration;

use support::*;
use switchyard::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_edits_reload_under_load_and_bad_edits_keep_the_running_config() {
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    let dir = std::env::temp_dir().join(format!("switchyard-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("switchyard.toml");
    std::fs::write(&file, simple_config(&[&a, &b], "")).unwrap();

    let (proxy, _watcher) = start_watched_proxy(&file).await;
    let load = Load::start(20, format!("http://{}/", proxy.web));
    wait_for("the load flowing", Duration::from_secs(10), async || {
        a.hits() >= 20 && b.hits() >= 20
    })
    .await;

    // Add `c`, remove `a`: traffic follows within a second.
    std::fs::write(&file, simple_config(&[&b, &c], "")).unwrap();
    assert!(
        eventually(Duration::from_secs(3), || c.hits() > 0).await,
        "the added backend receives traffic after the edit"
    );
    // Requests picked before the swap may still be on their way to a; once every
    // client has finished one it started after c was seen, none is.
    load.wait_round().await;
    let a_hits = a.hits();
    let bc_hits = b.hits() + c.hits();
    wait_for(
        "200 more requests served",
        Duration::from_secs(10),
        async || b.hits() + c.hits() >= bc_hits + 200,
    )
    .await;
    assert_eq!(a.hits(), a_hits, "the removed backend gets no new requests");

    // A broken edit is rejected; the running config keeps serving b and c.
    std::fs::write(&file, "[[listener]]\nname = \"web\"\nlisten = 12\n").unwrap();
    wait_for(
        "the broken edit refused",
        Duration::from_secs(10),
        async || {
            metric_value(
                &metrics_text(&proxy).await,
                "switchyard_config_reloads_total{kind=\"failed\"}",
            ) >= 1.0
        },
    )
    .await;
    let status = status(&proxy).await;
    let addresses: Vec<String> = status["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(addresses, vec![b.addr.to_string(), c.addr.to_string()]);
    let (_, _, metrics) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("switchyard_config_reloads_total{kind=\"failed\"} 1"),
        "{metrics}"
    );

    let (_, failed) = load.stop().await;
    assert_eq!(failed, 0, "no request failed across the reloads");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_breaker_state_survive_a_reload() {
    let (a, b, c) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("c").await,
    );
    // b stops listening: its probes fail and health marks it down. c still accepts
    // connections (its TCP probe passes) but answers 500: its breaker opens.
    let pool = "[pool.app.health]\ntype = \"tcp\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nrise = 2\nfall = 2\n\
                [pool.app.breaker]\nconsecutive_failures = 2\nopen_for = \"60s\"\nmax_ejected_percent = 100\n";
    let proxy = start_proxy(&simple_config(&[&a, &b, &c], pool)).await;
    b.kill();
    c.set_mode(Mode::Status(500));
    let backend = async |i: usize| status(&proxy).await["pools"][0]["backends"][i].clone();
    wait_for("b marked down", Duration::from_secs(10), async || {
        backend(1).await["health"] == "down"
    })
    .await;
    let url = format!("http://{}/", proxy.web);
    wait_for("c's breaker open", Duration::from_secs(10), async || {
        get(&client(), &url).await;
        backend(2).await["breaker"] == "open"
    })
    .await;
    let ejected = backend(2).await;

    // Reload with a changed route but the same pool: b stays down (no flap to
    // unknown) and c stays ejected for the rest of its open period.
    let text =
        simple_config(&[&a, &b, &c], pool).replace("name = \"all\"", "name = \"everything\"");
    let config = Config::parse(std::path::Path::new("test.toml"), &text).unwrap();
    proxy.server.apply(config).await.unwrap();
    let (b_after, c_after) = (backend(1).await, backend(2).await);
    assert_eq!(b_after["health"], "down", "health state is kept: {b_after}");
    assert_eq!(
        c_after["breaker"], "open",
        "breaker state is kept: {c_after}"
    );
    assert_eq!(c_after["ejections"], ejected["ejections"], "{c_after}");
    let remaining = |b: &serde_json::Value| b["breaker_open_remaining_ms"].as_u64().unwrap();
    assert!(
        remaining(&c_after) <= remaining(&ejected) && remaining(&c_after) > 50_000,
        "the open period runs on: {ejected} then {c_after}"
    );
    let c_hits = c.hits();
    for _ in 0..20 {
        let (status, answered, _) = get(&client(), &url).await;
        assert_eq!((status, answered.as_str()), (200, "a"));
    }
    assert_eq!(
        c.hits(),
        c_hits,
        "the ejected backend gets nothing after the reload"
    );
}
