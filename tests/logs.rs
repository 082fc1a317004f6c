//! What the proxy logs, read back as JSON lines: durations with three decimals at
//! most, one line per event (a refused plugin reload is not reported twice), and no
//! warning for what a browser asks for on its own (`/favicon.ico`).

mod support;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::*;
use switchyard::plugin::{shipped_plugin_dir, test_plugin_dir};

/// Every test of this binary keeps the same lines (the subscriber is global).
const CAPTURED: &str = "switchyard=info";

/// Lines at WARN or above that mention `text`.
fn warnings_about(text: &str) -> Vec<serde_json::Value> {
    captured_json_lines(text)
        .into_iter()
        .filter(|l| l["level"] == "WARN" || l["level"] == "ERROR")
        .collect()
}

/// How many decimals `value` is printed with (in JSON as in text logs).
fn decimals(value: &serde_json::Value) -> usize {
    value
        .to_string()
        .split_once('.')
        .map_or(0, |(_, d)| d.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_transitions_log_latency_in_milliseconds_with_three_decimals_at_most() {
    capture_json_logs(CAPTURED);
    let a = TestBackend::start("a").await;
    let health = "[pool.app.health]\ntype = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\n\
                  timeout = \"90ms\"\njitter = \"0%\"\nrise = 1\nfall = 1\n";
    let proxy = start_proxy(&simple_config(&[&a], health)).await;
    let key = a.addr.to_string();
    let up =
        |line: &serde_json::Value| line["backend"] == key && line["message"] == "backend is UP";
    wait_for("the UP line", Duration::from_secs(10), async || {
        captured_json_lines(&key).iter().any(up)
    })
    .await;
    a.set_mode(Mode::Status(503));
    wait_for("the DOWN line", Duration::from_secs(10), async || {
        warnings_about(&key)
            .iter()
            .any(|l| l["message"] == "backend is DOWN")
    })
    .await;
    let lines: Vec<serde_json::Value> = captured_json_lines(&key)
        .into_iter()
        .filter(|l| l["message"] == "backend is UP" || l["message"] == "backend is DOWN")
        .collect();
    for line in &lines {
        let latency = &line["latency_ms"];
        assert!(latency.is_number(), "{line}");
        assert!(decimals(latency) <= 3, "{line}");
    }
    // `/status` shows the last probe's latency the same way.
    let backend = backend_status(&proxy, a.addr).await;
    let latency = &backend["last_check"]["latency_ms"];
    assert!(latency.is_number() && decimals(latency) <= 3, "{backend}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_noise_on_the_admin_listener_is_answered_without_a_warning() {
    capture_json_logs(CAPTURED);
    let a = TestBackend::start("a").await;
    let config = simple_config(&[&a], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"noise-s3cret-noise-s3cret\"",
    );
    let proxy = start_proxy(&config).await;
    let get = |path: &str| {
        let url = format!("http://{}{path}", proxy.admin);
        async move {
            let request = Request::get(url).body(Full::new(Bytes::new())).unwrap();
            client().request(request).await.unwrap()
        }
    };
    // Without the token, as a browser asks for it.
    for _ in 0..3 {
        let icon = get("/favicon.ico").await;
        assert_eq!(icon.status(), 204);
        assert_eq!(icon.headers()["cache-control"], "max-age=86400");
    }
    let icon = get("/ui/icon.svg").await;
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    // A real miss is still refused (and a data call without the token still warned
    // about), so the quiet answer is for the icon alone.
    assert_eq!(get("/status").await.status(), 401);
    wait_for(
        "the warning about /status without a token",
        Duration::from_secs(5),
        async || {
            warnings_about("/status").iter().any(|l| {
                l["path"] == "/status"
                    && l["message"] == "admin request without a valid bearer token"
            })
        },
    )
    .await;
    assert_eq!(
        warnings_about("/favicon.ico"),
        Vec::<serde_json::Value>::new()
    );
    assert_eq!(
        warnings_about("/ui/icon.svg"),
        Vec::<serde_json::Value>::new()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_plugin_reload_is_logged_once() {
    capture_json_logs(CAPTURED);
    let a = TestBackend::start("a").await;
    let dir = std::env::temp_dir().join(format!("switchyard-logs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let router: PathBuf = dir.join("once-router.wasm");
    std::fs::copy(shipped_plugin_dir().join("latency.wasm"), &router).unwrap();
    let extra = format!(
        "balance = \"plugin:once-router\"\n\n[plugin.once-router]\nkind = \"routing\"\n\
         path = '{}'\ntimeout = \"50ms\"\n",
        router.display()
    );
    let proxy = start_proxy(&simple_config(&[&a], &extra)).await;

    // A file that is not a component: the reload fails, the running version stays.
    std::fs::copy(test_plugin_dir().join("wrong_world.wasm"), &router).unwrap();
    let failures = proxy.server.reload_plugin_file(&router).await;
    assert_eq!(failures.len(), 1, "{failures:?}");
    let about = |l: &serde_json::Value| l.to_string().contains("once-router");
    let logged: Vec<serde_json::Value> = warnings_about("once-router")
        .into_iter()
        .filter(about)
        .collect();
    assert_eq!(
        logged.len(),
        1,
        "one line for one refused reload: {logged:#?}"
    );
    assert_eq!(
        logged[0]["message"],
        "plugin reload failed, keeping the running version"
    );
    assert_eq!(logged[0]["error"], failures[0].to_string());
    let _ = std::fs::remove_dir_all(&dir);
}
