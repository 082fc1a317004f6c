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
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Add `c`, remove `a`: traffic follows within a second.
    std::fs::write(&file, simple_config(&[&b, &c], "")).unwrap();
    assert!(
        eventually(Duration::from_secs(3), || c.hits() > 0).await,
        "the added backend receives traffic after the edit"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a_hits = a.hits();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.hits(), a_hits, "the removed backend gets no new requests");

    // A broken edit is rejected; the running config keeps serving b and c.
    std::fs::write(&file, "[[listener]]\nname = \"web\"\nlisten = 12\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
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
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let health = "[pool.app.health]\ntype = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nrise = 2\nfall = 2\n";
    let proxy = start_proxy(&simple_config(&[&a, &b], health)).await;
    b.set_mode(Mode::Status(500));
    let down = || async {
        let s = status(&proxy).await;
        s["pools"][0]["backends"][1]["health"] == "down"
    };
    let mut is_down = false;
    for _ in 0..100 {
        if down().await {
            is_down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(is_down, "b is marked down");
    // Reload with a changed route but the same pool: b stays down, no flap to unknown.
    let text = simple_config(&[&a, &b], health).replace("name = \"all\"", "name = \"everything\"");
    let config = Config::parse(std::path::Path::new("test.toml"), &text).unwrap();
    proxy.server.apply(config).await.unwrap();
    assert!(down().await, "health state is kept across the reload");
}
