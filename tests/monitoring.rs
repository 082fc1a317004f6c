//! What operators point Prometheus and Grafana at: the alerting rules pass
//! `promtool check rules` and their unit tests, and every metric the rules and the
//! dashboard query is one a running proxy exports.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::*;
use switchyard::plugin::shipped_plugin_dir;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

#[test]
fn the_alerting_rules_pass_promtool_and_their_unit_tests() {
    let rules = repo("config/prometheus/alerts.yml");
    let tests = repo("config/prometheus/alerts_test.yml");
    let Ok(check) = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
    else {
        skip_or_fail(
            "promtool not installed (apt-get install prometheus): skipping the rules check",
        );
        return;
    };
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&tests)
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
}

/// Every `switchyard_*` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("switchyard_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every `expr` of the dashboard's panels, at any depth.
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_rules_query_metrics_the_proxy_exports() {
    // The dashboard is valid JSON with panels that each query something.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("config/grafana/switchyard-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    assert_eq!(dashboard["uid"], "switchyard");
    let panels = dashboard["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        assert!(
            panel["targets"].as_array().is_some_and(|t| !t.is_empty()),
            "{panel}"
        );
    }
    let mut dashboard_exprs = Vec::new();
    exprs(&dashboard, &mut dashboard_exprs);
    let wanted_by_dashboard = metric_names(&dashboard_exprs.join("\n"));
    let wanted_by_rules =
        metric_names(&std::fs::read_to_string(repo("config/prometheus/alerts.yml")).unwrap());
    assert!(wanted_by_dashboard.len() >= 15, "{wanted_by_dashboard:?}");

    // A proxy taken through what the rules and panels watch, so every family has
    // series: traffic, retries, an open breaker, a failover, 503s without a
    // backend, health transitions, a plugin, reloads (one refused), a completed
    // rollout, a state file write, alerts sent and dropped.
    let live = TestBackend::start("live").await;
    let sink = TestBackend::start("sink").await;
    let dead = |_: usize| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    };
    let (dead1, dead2, dead3, lost) = (dead(1), dead(2), dead(3), dead(4));
    let dir = std::env::temp_dir().join(format!(
        "switchyard-monitoring-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let router = dir.join("router.wasm");
    std::fs::copy(shipped_plugin_dir().join("latency.wasm"), &router).unwrap();
    let file = dir.join("switchyard.toml");
    std::fs::write(
        &file,
        format!(
            r#"[admin]
listen = "127.0.0.1:0"
state_file = "state.json"

[[listener]]
name = "web"
listen = "127.0.0.1:0"

[[route]]
name = "flaky"
listener = "web"
pool = "flaky"

[[route]]
name = "fo"
listener = "web"
path_prefix = "/fo"
pool = "primary"

[[route]]
name = "none"
listener = "web"
path_prefix = "/none"
pool = "nothing"

[[route]]
name = "ro"
listener = "web"
path_prefix = "/ro"
pool = "blue"

[pool.flaky]
balance = "round-robin"
backends = [{{ address = "{dead1}" }}, {{ address = "{live}" }}]
[pool.flaky.breaker]
consecutive_failures = 1

[pool.primary]
backends = [{{ address = "{dead2}" }}]
[pool.primary.health]
type = "tcp"
interval = "100ms"
timeout = "80ms"
fall = 1
[pool.primary.failover]
backup = "blue"

[pool.nothing]
backends = [{{ address = "{dead3}" }}]
[pool.nothing.health]
type = "tcp"
interval = "100ms"
timeout = "80ms"
fall = 1

[pool.blue]
balance = "plugin:router"
backends = [{{ address = "{live}" }}]

[pool.green]
backends = [{{ address = "{live}" }}]

[plugin.router]
kind = "routing"
path = "router.wasm"
timeout = "50ms"

[[alert]]
name = "sink"
url = "http://{sink}/hook"
group_wait = "0s"

[[alert]]
name = "lost"
url = "http://{lost}/hook"
group_wait = "0s"
retries = 0
"#,
            live = live.addr,
            sink = sink.addr,
        ),
    )
    .unwrap();
    let (proxy, _watcher) = start_watched_proxy(&file).await;
    let c = client();
    let web = |path: &str| format!("http://{}{path}", proxy.web);
    for _ in 0..4 {
        get(&c, &web("/")).await;
    }
    // Both pools whose only backend is dead must have seen it down: `primary` fails
    // over, `nothing` has no usable backend (a 503, not a refused connect's 502).
    let down = |pool: &str| {
        proxy.server.snapshot().pools.get(pool).is_some_and(|p| {
            p.backends[0].state.health.status() == switchyard::health::HealthStatus::Down
        })
    };
    assert!(
        eventually(Duration::from_secs(10), || down("primary")
            && down("nothing"))
        .await,
        "the dead backends are marked down"
    );
    assert_eq!(get(&c, &web("/fo")).await.0, 200, "failed over to blue");
    assert_eq!(get(&c, &web("/none")).await.0, 503);
    assert_eq!(get(&c, &web("/ro")).await.0, 200);
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/ro/rollout",
        r#"{"to": "green", "steps": [100], "interval": "50ms", "guard": {"min_requests": 0}}"#,
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    let (code, _) = admin_call(
        &proxy,
        "POST",
        &format!("/pools/flaky/backends/{}/weight", live.addr),
        r#"{"weight": 3}"#,
    )
    .await;
    assert_eq!(code, 200);
    proxy.server.set_config_path(file.clone());
    assert_eq!(admin_call(&proxy, "POST", "/reload", "").await.0, 200);
    std::fs::write(&router, b"\0asm not a component").unwrap();

    let metrics_of = |text: &str| -> BTreeSet<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next())
            .map(str::to_string)
            .collect()
    };
    let all_wanted: BTreeSet<String> = wanted_by_dashboard
        .union(&wanted_by_rules)
        .cloned()
        .collect();
    let mut missing = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let (_, _, body) = get(&c, &format!("http://{}/metrics", proxy.admin)).await;
        let exported = metrics_of(&String::from_utf8_lossy(&body));
        missing = all_wanted
            .iter()
            .filter(|name| !exported.contains(*name))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        missing.is_empty(),
        "queried by the dashboard or the rules but not exported: {missing:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
