//! WebAssembly policies in a real proxy: each shipped plugin doing its job in front of
//! real backends, hostile plugins failing only their own calls, shadow evaluation, and
//! hot swaps of a plugin file while traffic flows.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use parking_lot::Mutex;
use support::*;
use switchyard::config::Config;
use switchyard::plugin::{shipped_plugin_dir, test_plugin_dir};

fn shipped(name: &str) -> String {
    shipped_plugin_dir().join(name).display().to_string()
}

fn testing(name: &str) -> String {
    test_plugin_dir().join(name).display().to_string()
}

/// `[plugin.NAME]` table text. Unless `extra` sets one, the deadline is 50 ms (the
/// most a request-path plugin may have): the default 2 ms is wall-clock time, which
/// a descheduled thread on a busy 2-core CI machine can overrun, and only the
/// hostile tests are about deadlines.
fn plugin_table(name: &str, kind: &str, path: &str, extra: &str) -> String {
    let timeout = if extra.contains("timeout") {
        ""
    } else {
        "timeout = \"50ms\"\n"
    };
    format!("\n[plugin.{name}]\nkind = \"{kind}\"\npath = '{path}'\n{timeout}{extra}\n")
}

async fn metrics_text(proxy: &TestProxy) -> String {
    let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    String::from_utf8_lossy(&body).into_owned()
}

/// The value of the first metric line starting with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits (up to 20 s: compiling a component is slow on a loaded machine) until the
/// plugin's `/status` entry satisfies `ready`, and returns that entry.
async fn wait_for_plugin(
    proxy: &TestProxy,
    name: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let entry = plugin_status(&status(proxy).await, name).clone();
        if ready(&entry) {
            return entry;
        }
        assert!(
            Instant::now() < deadline,
            "plugin {name} never got there: {entry}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn plugin_status<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["plugins"]
        .as_array()
        .expect("plugins array")
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("plugin {name} in /status: {status}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_plugin_sends_flagged_requests_to_the_canary_backend() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let extra = format!(
        "balance = \"plugin:canary\"\n{}",
        plugin_table(
            "canary",
            "routing",
            &shipped("canary.wasm"),
            "config = { header = \"x-canary\", canary = [1], percent = 0 }",
        )
    );
    let proxy = start_proxy(&simple_config(&[&stable, &canary], &extra)).await;
    let c = client();
    let url = format!("http://{}/", proxy.web);
    for _ in 0..20 {
        let (status, backend, _) = get_with(&c, &url, None).await;
        assert_eq!((status, backend.as_str()), (200, "stable"));
        let (status, backend, _) = get_with(&c, &url, Some(("x-canary", "1"))).await;
        assert_eq!((status, backend.as_str()), (200, "canary"));
    }

    let status = status(&proxy).await;
    let plugin = plugin_status(&status, "canary");
    assert_eq!(plugin["kind"], "routing");
    assert_eq!(plugin["digest"].as_str().unwrap().len(), 64);
    assert!(plugin["calls"].as_u64().unwrap() >= 40, "{plugin}");
    assert_eq!(plugin["quarantined"], false);
    assert_eq!(status["pools"][0]["plugins"]["routing"], "canary");
    let metrics = metrics_text(&proxy).await;
    assert!(
        metric(&metrics, "switchyard_plugin_calls_total{plugin=\"canary\"}").unwrap() >= 40.0,
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "switchyard_plugin_call_duration_seconds_bucket{le=\"+Inf\",plugin=\"canary\"} 40"
        ),
        "{metrics}"
    );
    assert_promtool_accepts(&metrics);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_plugin_steers_traffic_away_from_a_slow_backend() {
    let fast = TestBackend::start("fast").await;
    let slow = TestBackend::start("slow").await;
    slow.set_mode(Mode::Slow(Duration::from_millis(40)));
    let extra = format!(
        "balance = \"plugin:latency\"\n{}",
        plugin_table("latency", "routing", &shipped("latency.wasm"), "")
    );
    let proxy = start_proxy(&simple_config(&[&fast, &slow], &extra)).await;
    let c = client();
    let url = format!("http://{}/", proxy.web);
    for _ in 0..200 {
        assert_eq!(get(&c, &url).await.0, 200);
    }
    assert!(
        slow.hits() < 20,
        "the slow backend got {} of 200 requests",
        slow.hits()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_plugin_tries_a_recovered_backend_again_within_seconds() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let c = TestBackend::start("c").await;
    c.set_mode(Mode::Slow(Duration::from_millis(200)));
    let extra = format!(
        "balance = \"plugin:latency\"\n{}",
        plugin_table("latency", "routing", &shipped("latency.wasm"), "")
    );
    let proxy = start_proxy(&simple_config(&[&a, &b, &c], &extra)).await;
    let load = Load::start(2, format!("http://{}/", proxy.web));
    // c answered slowly, so its average says it is slow, far slower than a and b
    // with every client waiting on them...
    wait_for(
        "c's slow answers in its latency average",
        Duration::from_secs(20),
        async || {
            backend_status(&proxy, c.addr).await["latency_ewma_ms"]
                .as_f64()
                .is_some_and(|ms| ms >= 100.0)
        },
    )
    .await;
    // ...and it is fast again: an average no longer fed by traffic must not keep it
    // from traffic.
    c.set_mode(Mode::Ok);
    let before = c.hits();
    let recovered = tokio::time::Instant::now();
    wait_for(
        "the recovered backend to take traffic again",
        Duration::from_secs(15),
        async || c.hits() >= before + 5,
    )
    .await;
    let took = recovered.elapsed();
    let (served, failed) = load.stop().await;
    assert_eq!(failed, 0, "of {served}");
    assert!(a.hits() > 0 && b.hits() > 0);
    println!("c took traffic again {took:?} after it recovered");
}

/// A backend whose `/health` answers a JSON document the test can change.
async fn json_backend(name: &'static str, health: Arc<Mutex<String>>) -> SocketAddr {
    serve_with(move |req| {
        let body = if req.uri().path() == "/health" {
            health.lock().clone()
        } else {
            name.to_string()
        };
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response
            .headers_mut()
            .insert("x-backend", name.parse().unwrap());
        response
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_health_plugin_judges_backends_by_their_status_document() {
    let ok = r#"{"status":"ok","checks":{"db":"up","cache":"up"}}"#;
    let a_health = Arc::new(Mutex::new(ok.to_string()));
    let b_health = Arc::new(Mutex::new(ok.to_string()));
    let a = json_backend("a", Arc::clone(&a_health)).await;
    let b = json_backend("b", Arc::clone(&b_health)).await;
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"{a}\" }}, {{ address = \"{b}\" }}]\n\
         [pool.app.health]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\nrise = 1\nfall = 1\n\
         evaluate = \"plugin:json\"\n{}",
        plugin_table(
            "json",
            "health",
            &shipped("json_health.wasm"),
            "config = { field = \"status\", up = [\"ok\"], required = { \"checks.db\" = [\"up\"] }, \
             optional = { \"checks.cache\" = [\"up\"] }, degraded-percent = 50 }",
        )
    );
    let proxy = start_proxy(&config).await;
    let health_of = |status: &serde_json::Value, i: usize| {
        status["pools"][0]["backends"][i]["health"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let mut up = false;
    for _ in 0..50 {
        let s = status(&proxy).await;
        if health_of(&s, 0) == "up" && health_of(&s, 1) == "up" {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "both backends come up: {}", status(&proxy).await);

    // The database of `a` fails: the plugin says down, and traffic avoids `a`.
    *a_health.lock() = r#"{"status":"ok","checks":{"db":"down","cache":"up"}}"#.into();
    let mut down = serde_json::Value::Null;
    for _ in 0..50 {
        let s = status(&proxy).await;
        if health_of(&s, 0) == "down" {
            down = s;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(health_of(&down, 0), "down", "{down}");
    let reason = down["pools"][0]["backends"][0]["last_check"]["result"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("db"),
        "the reason names the check: {reason}"
    );
    let c = client();
    for _ in 0..10 {
        let (status, backend, _) = get(&c, &format!("http://{}/", proxy.web)).await;
        assert_eq!((status, backend.as_str()), (200, "b"));
    }

    // A failing optional check only degrades `b`.
    *b_health.lock() = r#"{"status":"ok","checks":{"db":"up","cache":"down"}}"#.into();
    let mut degraded = false;
    for _ in 0..50 {
        let s = status(&proxy).await;
        let result = s["pools"][0]["backends"][1]["last_check"]["result"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if result.starts_with("degraded") {
            degraded = health_of(&s, 1) == "up";
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(degraded, "b is degraded but up: {}", status(&proxy).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adaptive_breaker_plugin_ejects_a_failing_backend() {
    let good = TestBackend::start("good").await;
    let bad = TestBackend::start("bad").await;
    bad.set_mode(Mode::Status(500));
    let extra = format!(
        "[pool.app.breaker]\npolicy = \"plugin:adaptive\"\n\
         [pool.app.retry]\nattempts = 0\n{}",
        plugin_table(
            "adaptive",
            "recovery",
            &shipped("adaptive_breaker.wasm"),
            "config = { consecutive-failures = 2, base-open-ms = 60000, max-open-ms = 60000 }",
        )
    );
    let proxy = start_proxy(&simple_config(&[&good, &bad], &extra)).await;
    let c = client();
    let url = format!("http://{}/", proxy.web);
    for _ in 0..10 {
        get(&c, &url).await;
    }
    let s = status(&proxy).await;
    let bad_state = &s["pools"][0]["backends"][1];
    assert_eq!(bad_state["breaker"], "open", "{bad_state}");
    assert!(bad_state["breaker_open_remaining_ms"].as_u64().unwrap() > 50_000);
    let hits = bad.hits();
    assert_eq!(hits, 2, "the breaker opened after 2 consecutive failures");
    for _ in 0..20 {
        let (status, backend, _) = get(&c, &url).await;
        assert_eq!((status, backend.as_str()), (200, "good"));
    }
    assert_eq!(bad.hits(), hits, "no request reaches the ejected backend");
    assert_eq!(s["pools"][0]["plugins"]["recovery"], "adaptive");
}

/// Resident memory of this process, in bytes.
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_routing_plugin_calls_fail_alone_within_their_deadline() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let extra = format!(
        "balance = \"plugin:hostile\"\n{}",
        plugin_table(
            "hostile",
            "routing",
            &testing("hostile.wasm"),
            "timeout = \"5ms\"\nmemory = \"4MiB\"",
        )
    );
    let proxy = start_proxy(&simple_config(&[&a, &b], &extra)).await;
    let web = proxy.web;

    // Steady traffic of well-behaved requests on the side.
    let load = Load::start(8, format!("http://{web}/fine"));

    // Every hostile call fails within its deadline and the request falls back to
    // the native balancer.
    let rss_before = resident_bytes();
    let c = client();
    for path in [
        "/loop",
        "/grow",
        "/recurse",
        "/trap",
        "/bad-index",
        "/bad-status",
        "/big-body",
    ] {
        for _ in 0..3 {
            let started = Instant::now();
            let (status, backend, _) = get(&c, &format!("http://{web}{path}")).await;
            assert_eq!(status, 200, "{path} falls back to the native policy");
            assert!(!backend.is_empty(), "{path} reached a backend");
            assert!(
                started.elapsed() < Duration::from_millis(500),
                "{path} took {:?}",
                started.elapsed()
            );
        }
    }
    // Direct responses from the plugin are obeyed.
    let (code, backend, body) = get(&c, &format!("http://{web}/count")).await;
    assert_eq!((code, backend.as_str()), (200, ""));
    assert!(String::from_utf8_lossy(&body).trim().parse::<u64>().is_ok());

    // A memory bomb over and over: each instance is capped and thrown away.
    for _ in 0..40 {
        assert_eq!(get(&c, &format!("http://{web}/grow")).await.0, 200);
    }
    let growth = resident_bytes().saturating_sub(rss_before);
    assert!(growth < 256 << 20, "resident memory grew by {growth} bytes");

    let s = status(&proxy).await;
    let plugin = plugin_status(&s, "hostile");
    for kind in ["trap", "timeout", "memory", "invalid"] {
        assert!(
            plugin["errors"][kind].as_u64().unwrap() > 0,
            "{kind}: {plugin}"
        );
    }
    let metrics = metrics_text(&proxy).await;
    assert!(
        metric(
            &metrics,
            "switchyard_plugin_errors_total{plugin=\"hostile\",kind=\"timeout\"}"
        )
        .unwrap()
            > 0.0,
        "{metrics}"
    );

    let (served, failed) = load.stop().await;
    assert!(served > 50, "side traffic flowed: {served}");
    assert_eq!(failed, 0, "side traffic never failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_routing_calls_are_shed_so_they_cannot_hold_every_worker() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let slow = format!(
        "balance = \"plugin:hostile\"\n{}",
        plugin_table(
            "hostile",
            "routing",
            &testing("hostile.wasm"),
            "timeout = \"20ms\"\non_error = \"fail-closed\""
        )
    );
    let proxy = start_proxy(&simple_config(&[&a, &b], &slow)).await;
    // Every call runs to its 20 ms deadline. With one worker already inside the
    // plugin, the others take the native policy instead of joining it.
    let load = Load::start(8, format!("http://{}/loop", proxy.web));
    let shed = |text: &str| {
        metric(
            text,
            "switchyard_plugin_calls_shed_total{plugin=\"hostile\"}",
        )
        .unwrap_or(0.0)
    };
    let mut seen = 0.0;
    for _ in 0..100 {
        seen = shed(&metrics_text(&proxy).await);
        if seen > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (served, _) = load.stop().await;
    assert!(seen > 0.0, "no call was shed in {served} requests");
    // Shed requests are served natively: by a backend, not the fail-closed 503.
    assert!(a.hits() + b.hits() > 0);

    // A fast plugin under the same load is never shed.
    let fast = format!(
        "balance = \"plugin:canary\"\n{}",
        plugin_table(
            "canary",
            "routing",
            &shipped("canary.wasm"),
            "config = { header = \"x-canary\", canary = [1] }",
        )
    );
    let proxy = start_proxy(&simple_config(&[&a, &b], &fast)).await;
    let load = Load::start(20, format!("http://{}/", proxy.web));
    wait_for("500 requests served", Duration::from_secs(20), async || {
        load.served() >= 500
    })
    .await;
    let (served, failed) = load.stop().await;
    assert_eq!(failed, 0);
    let text = metrics_text(&proxy).await;
    assert_eq!(
        metric(
            &text,
            "switchyard_plugin_calls_shed_total{plugin=\"canary\"}"
        ),
        Some(0.0),
        "a fast plugin was shed ({served} requests):\n{text}"
    );
}

#[test]
fn request_path_plugins_may_not_take_longer_than_50ms() {
    let table = |kind: &str, timeout: &str| {
        let path = if kind == "health" {
            shipped("json_health.wasm")
        } else {
            shipped("canary.wasm")
        };
        format!(
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
             [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
             [pool.app]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n{}",
            plugin_table("p", kind, &path, &format!("timeout = \"{timeout}\""))
        )
    };
    for kind in ["routing", "recovery"] {
        let err = Config::parse(Path::new("t.toml"), &table(kind, "60ms"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("plugin.p.timeout: must be between 100µs and 50ms")
                && err.contains("request path"),
            "{kind}: {err}"
        );
        assert!(Config::parse(Path::new("t.toml"), &table(kind, "50ms")).is_ok());
    }
    assert!(
        Config::parse(Path::new("t.toml"), &table("health", "2s")).is_ok(),
        "health plugins judge probes off the request path"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_failing_every_call_is_quarantined_and_traffic_keeps_flowing() {
    let a = TestBackend::start("a").await;
    let extra = format!(
        "balance = \"plugin:hostile\"\n{}",
        plugin_table("hostile", "routing", &testing("hostile.wasm"), "")
    );
    let proxy = start_proxy(&simple_config(&[&a], &extra)).await;
    let c = client();
    for _ in 0..60 {
        assert_eq!(get(&c, &format!("http://{}/trap", proxy.web)).await.0, 200);
    }
    let s = status(&proxy).await;
    let plugin = plugin_status(&s, "hostile").clone();
    assert_eq!(plugin["quarantined"], true, "{plugin}");
    assert_eq!(plugin["quarantines"], 1);
    // Quarantined: the plugin is not run, the native policy serves.
    for _ in 0..20 {
        assert_eq!(get(&c, &format!("http://{}/trap", proxy.web)).await.0, 200);
    }
    let later = status(&proxy).await;
    assert_eq!(plugin_status(&later, "hostile")["calls"], plugin["calls"]);
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric(
            &metrics,
            "switchyard_plugin_quarantined{plugin=\"hostile\"}"
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_routing_plugin_answers_503_when_it_fails() {
    let a = TestBackend::start("a").await;
    let extra = format!(
        "balance = \"plugin:hostile\"\n{}",
        plugin_table(
            "hostile",
            "routing",
            &testing("hostile.wasm"),
            "timeout = \"5ms\"\non_error = \"fail-closed\"",
        )
    );
    let proxy = start_proxy(&simple_config(&[&a], &extra)).await;
    let c = client();
    assert_eq!(get(&c, &format!("http://{}/trap", proxy.web)).await.0, 503);
    assert_eq!(get(&c, &format!("http://{}/loop", proxy.web)).await.0, 503);
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_plugin_counts_agreement_without_acting() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let extra = format!(
        "balance = \"plugin:canary\"\nshadow = \"plugin:first\"\n{}{}",
        plugin_table(
            "canary",
            "routing",
            &shipped("canary.wasm"),
            "config = { header = \"x-canary\", canary = [1] }",
        ),
        plugin_table("first", "routing", &testing("hostile.wasm"), "")
    );
    let proxy = start_proxy(&simple_config(&[&stable, &canary], &extra)).await;
    let c = client();
    let url = format!("http://{}/", proxy.web);
    for _ in 0..10 {
        assert_eq!(get_with(&c, &url, None).await.1, "stable");
    }
    for _ in 0..5 {
        // The shadow (always the first backend) would send these elsewhere; the
        // live policy still decides.
        assert_eq!(
            get_with(&c, &url, Some(("x-canary", "1"))).await.1,
            "canary"
        );
    }
    let metrics = metrics_text(&proxy).await;
    let count = |agree: &str| {
        metric(
            &metrics,
            &format!(
                "switchyard_plugin_shadow_decisions_total{{pool=\"app\",plugin=\"first\",agree=\"{agree}\"}}"
            ),
        )
    };
    assert_eq!(count("true"), Some(10.0), "{metrics}");
    assert_eq!(count("false"), Some(5.0), "{metrics}");
}

#[test]
fn plugin_references_are_checked_with_their_location() {
    let text = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbalance = \"plugin:nope\"\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n\
         [pool.app.breaker]\npolicy = \"plugin:router\"\n{}{}",
        plugin_table(
            "router",
            "routing",
            &shipped("canary.wasm"),
            "timeout = \"1h\""
        ),
        plugin_table(
            "ghost",
            "routing",
            "/nonexistent/ghost.wasm",
            "on_error = \"maybe\""
        ),
    );
    let err = Config::parse(Path::new("sy.toml"), &text)
        .unwrap_err()
        .to_string();
    for expected in [
        "sy.toml:9:11: pool.app.balance: no plugin named `nope` (declared: ghost, router)",
        "pool.app.breaker.policy: plugin `router` is a routing plugin; this field needs a recovery plugin",
        "plugin.router.timeout: must be between",
        "plugin.ghost.path: file /nonexistent/ghost.wasm does not exist",
        "plugin.ghost.on_error: unknown on_error `maybe`",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
}

/// Copies `from` over `to` atomically (write beside, then rename), as deploy tools do.
fn install(from: &str, to: &Path) {
    let temp = to.with_extension("tmp");
    std::fs::copy(from, &temp).unwrap();
    std::fs::rename(&temp, to).unwrap();
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_file_hot_swaps_under_load_and_a_corrupt_file_keeps_the_old_version() {
    let a = TestBackend::start("a").await;
    let b = TestBackend::start("b").await;
    let dir = temp_dir("plugin-swap");
    let router = dir.join("router.wasm");
    // Version 1 sends everything to the first backend.
    install(&testing("hostile.wasm"), &router);
    let file = dir.join("switchyard.toml");
    let extra = format!(
        "balance = \"plugin:router\"\n{}",
        plugin_table("router", "routing", "router.wasm", "")
    );
    std::fs::write(&file, simple_config(&[&a, &b], &extra)).unwrap();
    let (proxy, _watcher) = start_watched_proxy(&file).await;
    let load = Load::start(20, format!("http://{}/", proxy.web));
    assert!(
        eventually(Duration::from_secs(10), || load.served() >= 200).await,
        "load flows through version 1"
    );
    assert_eq!(b.hits(), 0, "version 1 sends nothing to b");
    let v1_digest = plugin_status(&status(&proxy).await, "router")["digest"].clone();

    // Version 2 spreads load over both backends. It is compiled and `init`ed off the
    // request path (slower on a loaded machine); once it is live, traffic follows it.
    install(&shipped("latency.wasm"), &router);
    let written_at = Instant::now();
    let v2 = wait_for_plugin(&proxy, "router", |p| p["digest"] != v1_digest).await;
    let loaded = written_at.elapsed();
    let live_at = Instant::now();
    assert!(
        eventually(Duration::from_secs(1), || b.hits() > 0).await,
        "traffic follows the new version within a second of its swap"
    );
    let took = live_at.elapsed();

    // A corrupt file is refused; the running version stays and keeps routing.
    std::fs::write(&router, b"\0asm garbage, not a component").unwrap();
    wait_for_plugin(&proxy, "router", |p| {
        p["reload_failures"].as_u64() >= Some(1)
    })
    .await;
    let b_hits = b.hits();
    assert!(
        eventually(Duration::from_secs(2), || b.hits() > b_hits).await,
        "version 2 still routes to b"
    );
    let after = plugin_status(&status(&proxy).await, "router").clone();
    assert_eq!(after["digest"], v2["digest"], "the running version stayed");
    let metrics = metrics_text(&proxy).await;
    assert!(
        metric(
            &metrics,
            "switchyard_reload_failures_total{what=\"plugin\"}"
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{metrics}"
    );

    let (served, failed) = load.stop().await;
    eprintln!(
        "hot swap: loaded {loaded:?} after the write, took traffic {took:?} after its swap; {served} requests served"
    );
    assert!(served > 200, "load flowed: {served}");
    assert_eq!(failed, 0, "no request failed");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breaker_state_survives_a_new_recovery_plugin_version() {
    let good = TestBackend::start("good").await;
    let bad = TestBackend::start("bad").await;
    bad.set_mode(Mode::Status(500));
    let dir = temp_dir("plugin-state");
    let file = dir.join("switchyard.toml");
    let config = |threshold: u32| {
        let extra = format!(
            "[pool.app.breaker]\npolicy = \"plugin:adaptive\"\n[pool.app.retry]\nattempts = 0\n{}",
            plugin_table(
                "adaptive",
                "recovery",
                &shipped("adaptive_breaker.wasm"),
                &format!(
                    "config = {{ consecutive-failures = {threshold}, base-open-ms = 60000, max-open-ms = 60000 }}"
                ),
            )
        );
        simple_config(&[&good, &bad], &extra)
    };
    std::fs::write(&file, config(2)).unwrap();
    let (proxy, _watcher) = start_watched_proxy(&file).await;
    let c = client();
    for _ in 0..10 {
        get(&c, &format!("http://{}/", proxy.web)).await;
    }
    let before = status(&proxy).await;
    assert_eq!(before["pools"][0]["backends"][1]["breaker"], "open");
    let first_load = plugin_status(&before, "adaptive")["loaded_at"].clone();

    // A new plugin version (its table changed) is loaded; the ejection stays.
    std::fs::write(&file, config(3)).unwrap();
    let mut after = serde_json::Value::Null;
    for _ in 0..100 {
        after = status(&proxy).await;
        if plugin_status(&after, "adaptive")["loaded_at"] != first_load {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ne!(
        plugin_status(&after, "adaptive")["loaded_at"],
        first_load,
        "the new version was loaded: {after}"
    );
    let bad_state = &after["pools"][0]["backends"][1];
    assert_eq!(bad_state["breaker"], "open", "{bad_state}");
    assert!(bad_state["breaker_open_remaining_ms"].as_u64().unwrap() > 50_000);
    let hits = bad.hits();
    for _ in 0..10 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.1, "good");
    }
    assert_eq!(bad.hits(), hits, "the ejected backend stays ejected");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_metrics_describe_plugins_from_the_start() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let extra = format!(
        "balance = \"plugin:canary\"\nfallback_balance = \"weighted\"\n{}",
        plugin_table(
            "canary",
            "routing",
            &shipped("canary.wasm"),
            "config = { header = \"x-canary\", canary = [1] }",
        )
    );
    let proxy = start_proxy(&simple_config(&[&stable, &canary], &extra)).await;
    let s = status(&proxy).await;
    let pool = &s["pools"][0];
    assert_eq!(pool["balance"], "plugin:canary", "{pool}");
    assert_eq!(pool["fallback_balance"], "weighted", "{pool}");
    assert_eq!(pool["backends"][1]["index"], 1);
    let plugin = plugin_status(&s, "canary");
    assert_eq!(plugin["reloads"], 0);
    assert_eq!(plugin["reload_failures"], 0);
    assert!(plugin["last_reload_error"].is_null(), "{plugin}");

    // Before any reload, every series an alert would watch exists, at 0.
    let metrics = metrics_text(&proxy).await;
    for series in [
        "switchyard_reload_failures_total{what=\"config\"} 0",
        "switchyard_reload_failures_total{what=\"plugin\"} 0",
        "switchyard_plugin_reloads_total{plugin=\"canary\",result=\"ok\"} 0",
        "switchyard_plugin_reloads_total{plugin=\"canary\",result=\"failed\"} 0",
        "switchyard_plugin_quarantined{plugin=\"canary\"} 0",
    ] {
        assert!(metrics.contains(series), "missing `{series}`:\n{metrics}");
    }
    assert!(
        metrics.contains("switchyard_plugin_loaded{plugin=\"canary\",kind=\"routing\",digest=\""),
        "{metrics}"
    );
    assert_promtool_accepts(&metrics);

    // A native pool shows its balance alone.
    let native = start_proxy(&simple_config(&[&stable], "balance = \"least-request\"")).await;
    let s = status(&native).await;
    assert_eq!(s["pools"][0]["balance"], "least-request");
    assert!(s["pools"][0]["fallback_balance"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_samples_record_inputs_decisions_and_cost() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let extra = format!(
        "balance = \"plugin:canary\"\n[pool.app.health]\ntype = \"tcp\"\ninterval = \"1s\"\nevaluate = \"plugin:legacy\"\n{}{}",
        plugin_table(
            "canary",
            "routing",
            &shipped("canary.wasm"),
            "config = { header = \"x-canary\", canary = [1] }",
        ),
        plugin_table("legacy", "health", &testing("legacy_health.wasm"), ""),
    );
    let proxy = start_proxy(&simple_config(&[&stable, &canary], &extra)).await;
    let c = client();
    let url = format!("http://{}/items", proxy.web);
    let (code, backend, _) = get_with(&c, &url, Some(("x-canary", "1"))).await;
    assert_eq!((code, backend.as_str()), (200, "canary"));
    let (code, samples) = admin_call(&proxy, "GET", "/plugins/canary/samples", "").await;
    assert_eq!(code, 200, "{samples}");
    let first = &samples["samples"][0];
    assert_eq!(first["kind"], "live", "{samples}");
    assert_eq!(first["pool"], "app");
    assert_eq!(first["request"]["path"], "/items");
    assert_eq!(
        first["request"]["headers"],
        serde_json::json!([{ "name": "x-canary", "value": "1" }])
    );
    assert_eq!(first["candidates"].as_array().unwrap().len(), 2);
    assert_eq!(first["decision"], serde_json::json!({ "backend": 1 }));
    assert!(first["call_us"].as_f64().unwrap() > 0.0);
    // At most one ordinary sample per quarter second.
    for _ in 0..20 {
        get(&c, &url).await;
    }
    let (_, samples) = admin_call(&proxy, "GET", "/plugins/canary/samples", "").await;
    assert!(
        samples["samples"].as_array().unwrap().len() <= 3,
        "{samples}"
    );

    let (code, _) = admin_call(&proxy, "GET", "/plugins/legacy/samples", "").await;
    assert_eq!(code, 409, "health plugins are not sampled");
    let (code, _) = admin_call(&proxy, "GET", "/plugins/nope/samples", "").await;
    assert_eq!(code, 404);
    let (code, _) = admin_call(&proxy, "POST", "/plugins/canary/samples", "").await;
    assert_eq!(code, 405);
}

/// Samples show what requests carried, so they sit behind the admin API's guards
/// like `/status`: a foreign Host name is refused, and a configured token is needed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_samples_need_the_admin_token_and_an_admin_host_name() {
    let stable = TestBackend::start("stable").await;
    let canary = TestBackend::start("canary").await;
    let token = "samples-are-guarded-0123456789";
    let extra = format!(
        "balance = \"plugin:canary\"\n{}",
        plugin_table(
            "canary",
            "routing",
            &shipped("canary.wasm"),
            "config = { header = \"x-canary\", canary = [1] }",
        ),
    );
    let config = simple_config(&[&stable, &canary], &extra).replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{token}\""),
    );
    let proxy = start_proxy(&config).await;
    let c = client();
    let (code, backend, _) = get_with(
        &c,
        &format!("http://{}/items", proxy.web),
        Some(("x-canary", "secret-tenant")),
    )
    .await;
    assert_eq!((code, backend.as_str()), (200, "canary"));
    let url = format!("http://{}/plugins/canary/samples", proxy.admin);
    let (code, _, body) = get(&c, &url).await;
    assert_eq!(code, 401, "no token: {}", String::from_utf8_lossy(&body));
    let rebound = format!("attacker.test:{}", proxy.admin.port());
    let (code, _, body) = get_with(&c, &url, Some(("host", &rebound))).await;
    assert_eq!(
        code,
        421,
        "foreign Host: {}",
        String::from_utf8_lossy(&body)
    );
    assert!(!String::from_utf8_lossy(&body).contains("secret-tenant"));
    let bearer = format!("Bearer {token}");
    let (code, _, body) = get_with(&c, &url, Some(("authorization", &bearer))).await;
    let body = String::from_utf8_lossy(&body);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("secret-tenant"), "{body}");
}

/// The requests a backend saw: path and query, and the `x-probe` header.
type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// A backend that answers everything 200 and records each request's path and
/// `x-probe` header.
async fn recording_backend(seen: Seen) -> SocketAddr {
    serve_with(move |req| {
        let probe = req
            .headers()
            .get("x-probe")
            .map_or(String::new(), |v| v.to_str().unwrap_or("").to_string());
        let path = req
            .uri()
            .path_and_query()
            .map_or(String::new(), |p| p.as_str().to_string());
        seen.lock().push((path, probe));
        Response::new(Full::new(Bytes::from_static(b"ok")))
    })
    .await
}

/// `probe-request` in the health loop: a custom probe is sent as asked; a plugin
/// that asks for an invalid one, or (built against 0.1.0) has no such export, gets
/// the configured probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_plugins_choose_probes_and_bad_choices_fall_back_to_the_configured_one() {
    let seen: Vec<Seen> = (0..3).map(|_| Seen::default()).collect();
    let mut addresses = Vec::new();
    for s in &seen {
        addresses.push(recording_backend(Arc::clone(s)).await);
    }
    let pool = |name: &str, address: SocketAddr, plugin: &str| {
        format!(
            "[pool.{name}]\nbackends = [{{ address = \"{address}\" }}]\n\
             [pool.{name}.health]\npath = \"/configured\"\ninterval = \"100ms\"\ntimeout = \"80ms\"\n\
             rise = 1\nfall = 1\nevaluate = \"plugin:{plugin}\"\n"
        )
    };
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"custom\"\n{}{}{}{}{}",
        pool("custom", addresses[0], "hh"),
        pool("bad-path", addresses[1], "hh"),
        pool("old", addresses[2], "legacy"),
        plugin_table("hh", "health-check", &testing("hostile_health.wasm"), ""),
        plugin_table("legacy", "health", &testing("legacy_health.wasm"), ""),
    );
    let proxy = start_proxy(&config).await;
    let probed = |i: usize| seen[i].lock().len() >= 2;
    assert!(
        eventually(Duration::from_secs(10), || probed(0)
            && probed(1)
            && probed(2))
        .await,
        "every backend was probed"
    );
    for (path, probe) in seen[0].lock().iter() {
        assert_eq!(
            (path.as_str(), probe.as_str()),
            ("/custom?from=plugin", "hostile")
        );
    }
    for i in [1, 2] {
        for (path, probe) in seen[i].lock().iter() {
            assert_eq!(
                (path.as_str(), probe.as_str()),
                ("/configured", ""),
                "backend {i}"
            );
        }
    }
    let s = status(&proxy).await;
    let hh = plugin_status(&s, "hh");
    assert!(hh["errors"]["invalid"].as_u64().unwrap() >= 2, "{hh}");
    assert_eq!(hh["probe_request"], true);
    assert_eq!(plugin_status(&s, "legacy")["probe_request"], false);
    for pool in s["pools"].as_array().unwrap() {
        assert_eq!(pool["backends"][0]["health"], "up", "{pool}");
    }
}

/// A reload a plugin's `init` refuses names the refused value's place in the file,
/// once; a plugin that does not load for another reason is named by its `path`.
#[tokio::test]
async fn a_refused_reload_names_the_plugin_config_value_once() {
    let backend = TestBackend::start("a").await;
    let text = |path: &str, canary: &str| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
             [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
             [pool.app]\nbalance = \"plugin:canary\"\nbackends = [{{ address = \"{}\" }}]\n\
             [plugin.canary]\nkind = \"routing\"\npath = '{path}'\n\
             [plugin.canary.config]\nheader = \"x-canary\"\ncanary = {canary}\n",
            backend.addr
        )
    };
    let canary = shipped("canary.wasm");
    let proxy = start_proxy(&text(&canary, "[0]")).await;
    let refused = Config::parse(Path::new("sy.toml"), &text(&canary, "[0, \"two\"]")).unwrap();
    let error = proxy.server.apply(refused).await.unwrap_err().to_string();
    assert_eq!(
        error,
        "sy.toml:18:14: plugin.canary.config.canary[1]: invalid type: string \"two\", expected u32"
    );
    let wrong = testing("wrong_world.wasm");
    let refused = Config::parse(Path::new("sy.toml"), &text(&wrong, "[0]")).unwrap();
    let error = proxy.server.apply(refused).await.unwrap_err().to_string();
    assert!(
        error.starts_with("sy.toml:15:8: plugin.canary.path: plugin `canary`: "),
        "{error}"
    );
    let s = status(&proxy).await;
    assert_eq!(
        plugin_status(&s, "canary")["digest"],
        switchyard::plugin::sha256_hex(&std::fs::read(&canary).unwrap()),
        "a refused reload replaced the running version"
    );
}

/// A `config` value a plugin refuses is reported at its line in the config file.
#[test]
fn plugin_config_errors_point_into_the_toml_file() {
    let text = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbalance = \"plugin:canary\"\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n\
         [plugin.canary]\nkind = \"routing\"\npath = '{}'\n\
         [plugin.canary.config]\nheader = \"x-canary\"\ncanary = [1, \"two\"]\n",
        shipped("canary.wasm")
    );
    let runtime = switchyard::plugin::PluginRuntime::new().unwrap();
    // Where the error of loading plugin `name` from config `text` is placed.
    let located = |text: &str, name: &str| {
        let config = Config::parse(Path::new("sy.toml"), text).unwrap();
        let plugin = &config.plugins[name];
        let err = runtime.load(&(&plugin.spec).into()).unwrap_err();
        plugin.locate_error(&err)
    };
    assert_eq!(
        located(&text, "canary").as_deref(),
        Some(
            "sy.toml:16:14: plugin.canary.config.canary[1]: invalid type: string \"two\", expected u32"
        )
    );
    // A field the plugin does not know, and one missing from the table.
    let unknown = text.replace("canary = [1, \"two\"]", "canary = [1]\npercnt = 5");
    let unknown_at = located(&unknown, "canary").unwrap();
    assert!(
        unknown_at.starts_with("sy.toml:17:1: plugin.canary.config.percnt: unknown field"),
        "{unknown_at}"
    );
    // A key that is not a plain word, as json-health's dotted paths are.
    let quoted = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\n\
         [pool.app.health]\nevaluate = \"plugin:json\"\n\
         [plugin.json]\nkind = \"health-check\"\npath = '{}'\n\
         config = {{ required = {{ \"checks.db\" = \"up\" }} }}\n",
        shipped("json_health.wasm")
    );
    assert_eq!(
        located(&quoted, "json").as_deref(),
        Some(
            "sy.toml:15:25: plugin.json.config.required.\"checks.db\": invalid type: string \"up\", expected a sequence"
        )
    );
    let missing = text.replace("canary = [1, \"two\"]", "");
    assert_eq!(
        located(&missing, "canary").as_deref(),
        Some("sy.toml:14:16: plugin.canary.config: missing field `canary`")
    );
}
