//! Health checks, circuit breaking, retries and failover, seen from a client while
//! backends die, hang, fail in bursts, flap and come back.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::*;

const FAST_HEALTH: &str = "[pool.app.health]\ntype = \"http\"\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\njitter = \"0%\"\nrise = 2\nfall = 2\n";

/// Steady load from `clients` tasks until stopped; counts non-200 answers.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(proxy: &TestProxy, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(AtomicU64::new(0));
        let total = Arc::new(AtomicU64::new(0));
        let tasks = (0..clients)
            .map(|_| {
                let (stop, failures, total) =
                    (Arc::clone(&stop), Arc::clone(&failures), Arc::clone(&total));
                let url = format!("http://{}/", proxy.web);
                tokio::spawn(async move {
                    let c = client();
                    while !stop.load(Ordering::Relaxed) {
                        let status = match c.get(url.parse().unwrap()).await {
                            Ok(r) => r.status().as_u16(),
                            Err(_) => 0,
                        };
                        total.fetch_add(1, Ordering::Relaxed);
                        if status != 200 {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            failures,
            total,
            tasks,
        }
    }

    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.total.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

async fn backend_field(
    proxy: &TestProxy,
    pool: usize,
    backend: usize,
    field: &str,
) -> serde_json::Value {
    status(proxy).await["pools"][pool]["backends"][backend][field].clone()
}

/// Polls `/status` until `field` of a backend equals `want`; returns how long it took.
async fn wait_for(
    proxy: &TestProxy,
    backend: usize,
    field: &str,
    want: &str,
    within: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < within {
        if backend_field(proxy, 0, backend, field).await == want {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_backend_under_load_fails_no_request_and_it_comes_back_slowly() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let extra = format!(
        "{FAST_HEALTH}[pool.app.retry]\nattempts = 2\nbackoff = \"1ms\"\n[pool.app.failover]\nslow_start = \"2s\"\n"
    );
    let proxy = start_proxy(&simple_config(&[&a, &b], &extra)).await;
    assert!(
        wait_for(&proxy, 0, "health", "up", Duration::from_secs(2))
            .await
            .is_some()
    );

    let load = Load::start(&proxy, 20);
    tokio::time::sleep(Duration::from_millis(700)).await;
    a.kill();
    // interval x fall + timeout = 250 ms; allow generous slack for a loaded machine.
    let down_after = wait_for(&proxy, 0, "health", "down", Duration::from_secs(3)).await;
    assert!(down_after.is_some(), "killed backend is marked down");
    assert!(
        down_after.unwrap() < Duration::from_millis(1500),
        "marked down after {down_after:?}"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;

    let revived = a.revive().await;
    let hits_before = revived.hits();
    let up_after = wait_for(&proxy, 0, "health", "up", Duration::from_secs(3)).await;
    assert!(up_after.is_some(), "revived backend comes back up");
    assert!(
        up_after.unwrap() < Duration::from_millis(1500),
        "back up after {up_after:?}"
    );
    let ramping = backend_field(&proxy, 0, 0, "effective_weight")
        .await
        .as_f64()
        .unwrap();
    assert!(
        ramping < 1.0,
        "slow start: effective weight {ramping} below full weight right after recovery"
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (total, failures) = load.finish().await;
    assert!(
        revived.hits() > hits_before,
        "the recovered backend takes traffic again"
    );
    assert!(total > 200, "load ran ({total} requests)");
    assert_eq!(failures, 0, "{failures} of {total} client requests failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_backend_is_timed_out_retried_elsewhere_and_ejected() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    a.set_mode(Mode::Hang);
    let extra = "[pool.app.retry]\nattempts = 1\nper_try_timeout = \"150ms\"\nbackoff = \"1ms\"\n\
                 [pool.app.breaker]\nconsecutive_failures = 2\nopen_for = \"10s\"\nmax_ejected_percent = 100\n";
    let proxy = start_proxy(&simple_config(&[&a, &b], extra)).await;
    let c = client();
    for _ in 0..10 {
        let started = Instant::now();
        let (status, backend, _) = get(&c, &format!("http://{}/", proxy.web)).await;
        assert_eq!((status, backend.as_str()), (200, "b"));
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    assert_eq!(backend_field(&proxy, 0, 0, "breaker").await, "open");
    assert!(
        backend_field(&proxy, 0, 0, "ejections")
            .await
            .as_u64()
            .unwrap()
            >= 1
    );
    // Once ejected, requests no longer wait for the hanging backend.
    let started = Instant::now();
    for _ in 0..10 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    assert!(
        started.elapsed() < Duration::from_millis(1000),
        "ejected backend no longer slows requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_of_503_open_the_breaker_which_half_opens_and_closes() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let extra = "[pool.app.retry]\nattempts = 1\non = [\"503\"]\nbackoff = \"1ms\"\n\
                 [pool.app.breaker]\nconsecutive_failures = 3\nopen_for = \"300ms\"\nhalf_open_requests = 2\nmax_ejected_percent = 100\n";
    let proxy = start_proxy(&simple_config(&[&a, &b], extra)).await;
    let c = client();
    a.set_mode(Mode::Status(503));
    for _ in 0..12 {
        assert_eq!(
            get(&c, &format!("http://{}/", proxy.web)).await.0,
            200,
            "503s are retried on b"
        );
    }
    assert_eq!(backend_field(&proxy, 0, 0, "breaker").await, "open");
    a.set_mode(Mode::Ok);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let mut seen_closed = false;
    for _ in 0..40 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
        if backend_field(&proxy, 0, 0, "breaker").await == "closed" {
            seen_closed = true;
            break;
        }
    }
    assert!(
        seen_closed,
        "after the open period, successful trials close the breaker"
    );
    let (_, _, metrics) = get(&c, &format!("http://{}/metrics", proxy.admin)).await;
    let metrics = String::from_utf8_lossy(&metrics);
    for to in ["open", "half-open", "closed"] {
        assert!(
            metrics.contains(&format!(
                "switchyard_breaker_transitions_total{{pool=\"app\",backend=\"{}\",to=\"{to}\"}} 1",
                a.addr
            )),
            "missing transition to {to}:\n{metrics}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_backends_down_gives_fast_503_or_the_backup_pool() {
    let (a, b, standby) = (
        TestBackend::start("a").await,
        TestBackend::start("b").await,
        TestBackend::start("standby").await,
    );
    let config = |backup: bool| {
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
             [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
             [pool.app]\nbackends = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n{FAST_HEALTH}{}\
             [pool.standby]\nbackends = [{{ address = \"{}\" }}]\n",
            a.addr,
            b.addr,
            if backup {
                "[pool.app.failover]\nbackup = \"standby\"\n"
            } else {
                ""
            },
            standby.addr
        )
    };
    a.kill();
    b.kill();
    let without = start_proxy(&config(false)).await;
    let with = start_proxy(&config(true)).await;
    assert!(
        wait_for(&without, 1, "health", "down", Duration::from_secs(3))
            .await
            .is_some()
    );
    assert!(
        wait_for(&with, 1, "health", "down", Duration::from_secs(3))
            .await
            .is_some()
    );
    assert!(
        wait_for(&without, 0, "health", "down", Duration::from_secs(3))
            .await
            .is_some()
    );
    assert!(
        wait_for(&with, 0, "health", "down", Duration::from_secs(3))
            .await
            .is_some()
    );

    let c = client();
    for _ in 0..5 {
        let started = Instant::now();
        let resp = c
            .get(format!("http://{}/", without.web).parse().unwrap())
            .await
            .unwrap();
        let took = started.elapsed();
        assert_eq!(resp.status(), 503);
        assert!(resp.headers().contains_key("retry-after"));
        assert!(took < Duration::from_millis(200), "503 took {took:?}");
    }
    for _ in 0..5 {
        let (status, backend, _) = get(&c, &format!("http://{}/", with.web)).await;
        assert_eq!(
            (status, backend.as_str()),
            (200, "standby"),
            "the backup pool takes over"
        );
    }
    assert_eq!(
        get(&c, &format!("http://{}/health/ready", without.admin))
            .await
            .0,
        503
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_backend_does_not_flap_the_state_faster_than_rise_and_fall() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let extra = "[pool.app.health]\ntype = \"http\"\npath = \"/health\"\ninterval = \"50ms\"\ntimeout = \"40ms\"\njitter = \"0%\"\nrise = 4\nfall = 4\n";
    let proxy = start_proxy(&simple_config(&[&a, &b], extra)).await;
    assert!(
        wait_for(&proxy, 0, "health", "up", Duration::from_secs(2))
            .await
            .is_some()
    );
    let flapper = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 0..16 {
                a.set_mode(if i % 2 == 0 {
                    Mode::Status(500)
                } else {
                    Mode::Ok
                });
                tokio::time::sleep(Duration::from_millis(120)).await;
            }
            a.set_mode(Mode::Ok);
        })
    };
    flapper.await.unwrap();
    // Each 120 ms phase covers at most 3 probes at a 50 ms interval, never the 4 in a
    // row that rise or fall need, so the state must not change at all. Allow one flip
    // for scheduling delays on a loaded machine stretching a phase to 4 probes.
    let transitions = backend_field(&proxy, 0, 0, "health_transitions")
        .await
        .as_u64()
        .unwrap();
    assert!(
        transitions <= 1,
        "health flipped {transitions} times while the backend flapped every 120 ms"
    );
}
