//! `[[alert]]` webhooks against a real HTTP receiver on loopback: Alertmanager's
//! webhook payload for every kind of incident, grouping and de-duplication,
//! resolution, retries and drops, and a receiver that is down never slowing
//! requests.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use serde_json::Value;
use support::*;
use switchyard::plugin::{shipped_plugin_dir, test_plugin_dir};

/// How the test receiver answers.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Answer {
    Accept,
    Fail(u16),
    /// Read the request, never answer.
    Hang,
}

/// A webhook receiver on 127.0.0.1 that keeps every notification it accepted.
#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Value>>>,
    attempts: Arc<AtomicU64>,
    answer: Arc<Mutex<Answer>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            seen: Arc::default(),
            attempts: Arc::default(),
            answer: Arc::new(Mutex::new(Answer::Accept)),
        };
        let shared = receiver.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    break;
                };
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(shared.answer(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        receiver
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        assert_eq!(req.headers()["content-type"], "application/json");
        let body = req.into_body().collect().await.unwrap().to_bytes();
        let answer = *self.answer.lock();
        let status = match answer {
            Answer::Hang => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            Answer::Fail(code) => StatusCode::from_u16(code).unwrap(),
            Answer::Accept => {
                self.seen
                    .lock()
                    .push(serde_json::from_slice(&body).expect("a JSON body"));
                StatusCode::OK
            }
        };
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = status;
        response
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn notifications(&self) -> Vec<Value> {
        self.seen.lock().clone()
    }

    /// Waits until no notification has arrived for `quiet` (the receiver has heard
    /// all there is to hear); fails if notifications keep coming for 20 s.
    async fn wait_quiet(&self, quiet: Duration) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (mut count, mut since) = (self.notifications().len(), Instant::now());
        while since.elapsed() < quiet {
            assert!(
                Instant::now() < deadline,
                "notifications never stopped: {:#?}",
                summary(&self.notifications())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = self.notifications().len();
            if now != count {
                (count, since) = (now, Instant::now());
            }
        }
    }

    /// Waits until an alert named `name` with `status` arrived whose labels include
    /// `labels`; returns the notification that carried it.
    async fn wait_alert(&self, name: &str, status: &str, labels: &[(&str, &str)]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            for note in self.notifications() {
                if carries(&note, name, status, labels) {
                    return note;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no {status} {name} {labels:?}; got {:#?}",
                summary(&self.notifications())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn carries(note: &Value, name: &str, status: &str, labels: &[(&str, &str)]) -> bool {
    note["alerts"].as_array().unwrap().iter().any(|a| {
        a["labels"]["alertname"] == name
            && a["status"] == status
            && labels.iter().all(|(k, v)| a["labels"][*k] == *v)
    })
}

/// Each notification as (groupKey, [alertname subject status]), for messages.
fn summary(notes: &[Value]) -> Vec<(String, Vec<String>)> {
    notes
        .iter()
        .map(|n| {
            (
                n["groupKey"].as_str().unwrap_or("").to_string(),
                n["alerts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| {
                        format!(
                            "{} {} {} {}",
                            a["labels"]["alertname"].as_str().unwrap_or(""),
                            a["labels"]["pool"].as_str().unwrap_or(""),
                            a["labels"]["backend"].as_str().unwrap_or(""),
                            a["status"].as_str().unwrap_or("")
                        )
                    })
                    .collect(),
            )
        })
        .collect()
}

async fn metrics_text(proxy: &TestProxy) -> String {
    let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    String::from_utf8_lossy(&body).into_owned()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-alerts-{tag}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Pool `app` (a, b; checked every 100 ms, backup `standby`), pool `brk` (x, no
/// checks, a quick breaker), and one webhook.
fn incident_config(
    a: &TestBackend,
    b: &TestBackend,
    standby: &TestBackend,
    x: &TestBackend,
    alert: &str,
) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "web"
listen = "127.0.0.1:0"

[[route]]
name = "all"
listener = "web"
pool = "app"

[[route]]
name = "brk"
listener = "web"
path_prefix = "/brk"
pool = "brk"

[pool.app]
backends = [{{ address = "{a}" }}, {{ address = "{b}" }}]
[pool.app.health]
type = "tcp"
interval = "100ms"
timeout = "80ms"
fall = 1
rise = 1
[pool.app.failover]
backup = "standby"

[pool.standby]
backends = [{{ address = "{standby}" }}]

[pool.brk]
backends = [{{ address = "{x}" }}]
[pool.brk.breaker]
consecutive_failures = 2
open_for = "300ms"
max_open_for = "300ms"
half_open_requests = 1
[pool.brk.retry]
attempts = 0

{alert}
"#,
        a = a.addr,
        b = b.addr,
        standby = standby.addr,
        x = x.addr,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incidents_reach_the_webhook_grouped_deduplicated_and_resolved() {
    let receiver = Receiver::start().await;
    let (a, b, standby, x) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("standby").await,
        TestBackend::start("x").await,
    );
    let alert = format!(
        "[[alert]]\nname = \"ops\"\nurl = \"{}\"\ngroup_wait = \"300ms\"\ngroup_interval = \"300ms\"\nrepeat_interval = \"1h\"\n",
        receiver.url()
    );
    let proxy = start_proxy(&incident_config(&a, &b, &standby, &x, &alert)).await;
    let (a_at, b_at) = (a.addr.to_string(), b.addr.to_string());

    // One backend down: a firing alert in Alertmanager's webhook format.
    a.kill();
    let note = receiver
        .wait_alert("SwitchyardBackendDown", "firing", &[("backend", &a_at)])
        .await;
    assert_eq!(note["version"], "4");
    assert_eq!(note["receiver"], "ops");
    assert_eq!(note["status"], "firing");
    assert_eq!(
        note["groupKey"],
        "{}:{alertname=\"SwitchyardBackendDown\", pool=\"app\"}"
    );
    assert_eq!(note["groupLabels"]["pool"], "app");
    assert_eq!(note["externalURL"], format!("http://{}/", proxy.admin));
    let first = &note["alerts"][0];
    assert_eq!(first["labels"]["severity"], "warning");
    assert!(
        first["labels"]["instance"]
            .as_str()
            .is_some_and(|i| !i.is_empty())
    );
    assert!(
        first["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains(&a_at)
    );
    assert!(first["startsAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(
        first["generatorURL"],
        format!("http://{}/status", proxy.admin)
    );

    // The second backend too: the pool has none usable and fails over to standby.
    b.kill();
    receiver
        .wait_alert("SwitchyardPoolUnavailable", "firing", &[("pool", "app")])
        .await;
    receiver
        .wait_alert(
            "SwitchyardFailoverActive",
            "firing",
            &[("pool", "app"), ("backup", "standby")],
        )
        .await;
    let grouped = receiver
        .wait_alert("SwitchyardBackendDown", "firing", &[("backend", &b_at)])
        .await;
    assert_eq!(
        grouped["alerts"].as_array().unwrap().len(),
        2,
        "both backends of the pool in one group: {grouped}"
    );
    let c = client();
    let (code, body_from, _) = get(&c, &format!("http://{}/", proxy.web)).await;
    assert_eq!((code, body_from.as_str()), (200, "standby"));

    // Both back: every alert resolved.
    let a = a.revive().await;
    let b = b.revive().await;
    for (name, labels) in [
        ("SwitchyardBackendDown", vec![("backend", a_at.as_str())]),
        ("SwitchyardBackendDown", vec![("backend", b_at.as_str())]),
        ("SwitchyardPoolUnavailable", vec![("pool", "app")]),
        ("SwitchyardFailoverActive", vec![("pool", "app")]),
    ] {
        receiver.wait_alert(name, "resolved", &labels).await;
    }
    let resolved = receiver
        .wait_alert("SwitchyardPoolUnavailable", "resolved", &[("pool", "app")])
        .await;
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z");

    // A backend failing real traffic: its breaker opens, then closes after a
    // successful trial.
    x.set_mode(Mode::Status(503));
    for _ in 0..2 {
        assert_eq!(get(&c, &format!("http://{}/brk", proxy.web)).await.0, 503);
    }
    receiver
        .wait_alert("SwitchyardBreakerOpen", "firing", &[("pool", "brk")])
        .await;
    x.set_mode(Mode::Ok);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !receiver
        .notifications()
        .iter()
        .any(|n| carries(n, "SwitchyardBreakerOpen", "resolved", &[("pool", "brk")]))
    {
        assert!(
            Instant::now() < deadline,
            "{:#?}",
            summary(&receiver.notifications())
        );
        let _ = get(&c, &format!("http://{}/brk", proxy.web)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // No news, no notification: once everything is resolved the receiver goes quiet
    // (nothing for three group intervals), and every notification of a group
    // changed something.
    receiver.wait_quiet(Duration::from_millis(900)).await;
    let notes = receiver.notifications();
    let mut last: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for note in &notes {
        let key = note["groupKey"].as_str().unwrap().to_string();
        let states: BTreeMap<String, String> = note["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| {
                (
                    a["fingerprint"].as_str().unwrap().to_string(),
                    a["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if let Some(previous) = last.get(&key) {
            assert_ne!(
                previous,
                &states,
                "a notification without news: {:#?}",
                summary(&notes)
            );
        }
        last.insert(key, states);
    }

    let sent: usize = notes
        .iter()
        .map(|n| n["alerts"].as_array().unwrap().len())
        .sum();
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric(&metrics, "switchyard_alerts_sent_total{receiver=\"ops\"}"),
        sent as f64,
        "{metrics}"
    );
    drop((a, b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollbacks_and_refused_plugins_and_configs_reach_the_webhook() {
    let receiver = Receiver::start().await;
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    green.set_mode(Mode::Status(500));
    let dir = temp_dir("events");
    let hostile = dir.join("hostile.wasm");
    std::fs::copy(test_plugin_dir().join("hostile.wasm"), &hostile).unwrap();
    let router = dir.join("router.wasm");
    std::fs::copy(shipped_plugin_dir().join("latency.wasm"), &router).unwrap();
    let file = dir.join("switchyard.toml");
    let text = format!(
        r#"[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "web"
listen = "127.0.0.1:0"

[[route]]
name = "all"
listener = "web"
pool = "blue"

[[route]]
name = "trap"
listener = "web"
path_prefix = "/trap"
pool = "trap"

[pool.blue]
balance = "plugin:router"
backends = [{{ address = "{blue}" }}]

[pool.green]
backends = [{{ address = "{green}" }}]

[pool.trap]
balance = "plugin:hostile"
backends = [{{ address = "{blue}" }}]

[plugin.router]
kind = "routing"
path = "router.wasm"
timeout = "50ms"

[plugin.hostile]
kind = "routing"
path = "hostile.wasm"
timeout = "50ms"

[[alert]]
url = "{url}"
group_wait = "200ms"
group_interval = "200ms"
"#,
        blue = blue.addr,
        green = green.addr,
        url = receiver.url(),
    );
    std::fs::write(&file, &text).unwrap();
    let (proxy, _watcher) = start_watched_proxy(&file).await;

    // A rollout to a failing pool is rolled back by its guard.
    let load = Load::start(4, format!("http://{}/", proxy.web));
    let (code, answer) = admin_call(
        &proxy,
        "POST",
        "/routes/all/rollout",
        r#"{"to": "green", "steps": [50, 100], "interval": "300ms", "guard": {"min_requests": 1}}"#,
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    let note = receiver
        .wait_alert(
            "SwitchyardRolloutRolledBack",
            "firing",
            &[("route", "all"), ("from", "blue"), ("to", "green")],
        )
        .await;
    assert!(
        note["alerts"][0]["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("back on blue"),
        "{note}"
    );
    load.stop().await;

    // A plugin failing every call is quarantined.
    let c = client();
    for _ in 0..60 {
        assert_eq!(get(&c, &format!("http://{}/trap", proxy.web)).await.0, 200);
    }
    receiver
        .wait_alert(
            "SwitchyardPluginQuarantined",
            "firing",
            &[("plugin", "hostile")],
        )
        .await;

    // A corrupt new version of a plugin file is refused (the running one stays).
    std::fs::write(&router, b"\0asm not a component").unwrap();
    receiver
        .wait_alert("SwitchyardPluginRefused", "firing", &[("plugin", "router")])
        .await;

    // A config that does not parse is refused on reload.
    std::fs::write(&file, text.replace("[[listener]]", "[[listener]")).unwrap();
    let note = receiver
        .wait_alert("SwitchyardConfigReloadFailed", "firing", &[])
        .await;
    assert_eq!(
        note["alerts"][0]["labels"]["file"],
        file.display().to_string()
    );
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_never_slows_requests_and_what_it_misses_is_counted() {
    let hanging = Receiver::start().await;
    *hanging.answer.lock() = Answer::Hang;
    let failing = Receiver::start().await;
    *failing.answer.lock() = Answer::Fail(503);
    let live = TestBackend::start("live").await;
    let dead: Vec<SocketAddr> = (0..4)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        })
        .collect();
    let dead_list: Vec<String> = dead
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    let text = format!(
        r#"[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "web"
listen = "127.0.0.1:0"

[[route]]
name = "all"
listener = "web"
pool = "live"

[[route]]
name = "dead"
listener = "web"
path_prefix = "/dead"
pool = "dead"

[pool.live]
backends = [{{ address = "{live}" }}]

[pool.dead]
backends = [{dead}]
[pool.dead.health]
type = "tcp"
interval = "100ms"
timeout = "80ms"
fall = 1

# Hangs: one notification in delivery, one queued, the rest dropped.
[[alert]]
name = "hanging"
url = "{hang}"
group_by = ["alertname", "backend"]
group_wait = "0s"
timeout = "30s"
retries = 0
queue = 1

# Answers 503: one retry, then dropped.
[[alert]]
name = "failing"
url = "{fail}"
events = ["pool"]
group_wait = "0s"
retries = 1
"#,
        live = live.addr,
        dead = dead_list.join(", "),
        hang = hanging.url(),
        fail = failing.url(),
    );
    let proxy = start_proxy(&text).await;

    // Four backend alerts and a pool alert, each its own group for `hanging`.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = metrics_text(&proxy).await;
        let queue_full = metric(
            &text,
            "switchyard_alerts_dropped_total{receiver=\"hanging\",reason=\"queue_full\"}",
        );
        let failed = metric(
            &text,
            "switchyard_alerts_dropped_total{receiver=\"failing\",reason=\"failed\"}",
        );
        if queue_full >= 3.0 && failed >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        failing.attempts.load(Ordering::Relaxed),
        2,
        "the first attempt and one retry"
    );
    assert!(failing.notifications().is_empty());
    assert_eq!(
        hanging.attempts.load(Ordering::Relaxed),
        1,
        "one delivery hangs"
    );

    // Meanwhile requests are served as fast as ever: alerts are off their path.
    let c = client();
    let url = format!("http://{}/", proxy.web);
    for _ in 0..200 {
        let started = Instant::now();
        assert_eq!(get(&c, &url).await.0, 200);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a request waited {:?} while the receiver hangs (30 s timeout)",
            started.elapsed()
        );
    }
    assert_eq!(
        metric(
            &metrics_text(&proxy).await,
            "switchyard_alerts_sent_total{receiver=\"hanging\"}"
        ),
        0.0
    );
}
