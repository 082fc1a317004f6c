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
async fn wait_for_field(
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
        wait_for_field(&proxy, 0, "health", "up", Duration::from_secs(2))
            .await
            .is_some()
    );

    let load = Load::start(&proxy, 20);
    wait_for(
        "the load flowing to both",
        Duration::from_secs(10),
        async || a.hits() >= 50 && b.hits() >= 50,
    )
    .await;
    a.kill();
    // interval x fall + timeout = 250 ms; allow generous slack for a loaded machine.
    let down_after = wait_for_field(&proxy, 0, "health", "down", Duration::from_secs(3)).await;
    assert!(down_after.is_some(), "killed backend is marked down");
    assert!(
        down_after.unwrap() < Duration::from_millis(1500),
        "marked down after {down_after:?}"
    );
    // The load goes on without a for a while.
    let b_hits = b.hits();
    wait_for(
        "200 requests served while a is down",
        Duration::from_secs(10),
        async || b.hits() >= b_hits + 200,
    )
    .await;

    let revived = a.revive().await;
    let hits_before = revived.hits();
    let up_after = wait_for_field(&proxy, 0, "health", "up", Duration::from_secs(3)).await;
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
    wait_for(
        "the recovered backend taking traffic again",
        Duration::from_secs(10),
        async || revived.hits() > hits_before + 20,
    )
    .await;
    let (total, failures) = load.finish().await;
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
    wait_for(
        "the open period over",
        Duration::from_secs(10),
        async || backend_field(&proxy, 0, 0, "breaker_open_remaining_ms").await == 0,
    )
    .await;
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
        wait_for_field(&without, 1, "health", "down", Duration::from_secs(3))
            .await
            .is_some()
    );
    assert!(
        wait_for_field(&with, 1, "health", "down", Duration::from_secs(3))
            .await
            .is_some()
    );
    assert!(
        wait_for_field(&without, 0, "health", "down", Duration::from_secs(3))
            .await
            .is_some()
    );
    assert!(
        wait_for_field(&with, 0, "health", "down", Duration::from_secs(3))
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
        wait_for_field(&proxy, 0, "health", "up", Duration::from_secs(2))
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

/// `/status` backends of pool `index` (pools are listed by name).
async fn pool_backends(proxy: &TestProxy, index: usize) -> Vec<serde_json::Value> {
    status(proxy).await["pools"][index]["backends"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ejection_cap_keeps_failing_backends_in_the_pool_beyond_it() {
    let mut backends = Vec::new();
    for name in ["bad-1", "bad-2", "bad-3", "good"] {
        backends.push(TestBackend::start(name).await);
    }
    for bad in &backends[..3] {
        bad.set_mode(Mode::Status(500));
    }
    // Three of four fail every request, but at most 50 % of the pool may be ejected.
    let extra = "[pool.app.breaker]\nconsecutive_failures = 2\nopen_for = \"60s\"\nmax_ejected_percent = 50\n";
    let proxy = start_proxy(&simple_config(&backends.iter().collect::<Vec<_>>(), extra)).await;
    let c = client();
    let url = format!("http://{}/", proxy.web);
    wait_for(
        "two failing backends ejected",
        Duration::from_secs(10),
        async || {
            get(&c, &url).await;
            let open = pool_backends(&proxy, 0)
                .await
                .iter()
                .filter(|b| b["breaker"] == "open")
                .count();
            open >= 2
        },
    )
    .await;

    // The third failing backend stays in: its breaker closed, its failures counted,
    // its share of traffic still sent to it.
    let kept = pool_backends(&proxy, 0)
        .await
        .into_iter()
        .position(|b| b["breaker"] == "closed" && b["address"] != backends[3].addr.to_string())
        .expect("one failing backend not ejected");
    let hits_before = backends[kept].hits();
    for _ in 0..30 {
        get(&c, &url).await;
    }
    let after = pool_backends(&proxy, 0).await;
    let open: Vec<&str> = after
        .iter()
        .filter(|b| b["breaker"] == "open")
        .map(|b| b["address"].as_str().unwrap())
        .collect();
    assert_eq!(open.len(), 2, "never more than 50 % ejected: {after:?}");
    assert_eq!(after[kept]["breaker"], "closed", "{after:?}");
    assert!(
        after[kept]["consecutive_failures"].as_u64().unwrap() >= 5,
        "it kept failing past the threshold: {after:?}"
    );
    assert!(
        backends[kept].hits() >= hits_before + 10,
        "the failing backend beyond the cap still takes its share"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_budget_caps_retries_at_the_reserve_plus_its_share_of_requests() {
    let mut backends = Vec::new();
    for name in ["a", "b", "c"] {
        let b = TestBackend::start(name).await;
        b.set_mode(Mode::Status(502));
        backends.push(b);
    }
    // Every answer is a retryable 502 and each request may retry twice, but retries
    // may add only 20 % of the requests (plus a reserve of 10 retries).
    let extra = "[pool.app.retry]\nattempts = 2\non = [\"502\"]\nbackoff = \"1ms\"\nbudget_percent = 20\n\
                 [pool.app.breaker]\nconsecutive_failures = 0\n";
    let proxy = start_proxy(&simple_config(&backends.iter().collect::<Vec<_>>(), extra)).await;
    let c = client();
    for _ in 0..100 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 502);
    }
    let metrics = metrics_text(&proxy).await;
    let retries = metric_value(&metrics, "switchyard_retries_total{pool=\"app\"}") as u64;
    let hits: u64 = backends.iter().map(TestBackend::hits).sum();
    assert_eq!(hits, 100 + retries, "every retry reached a backend");
    assert!(
        retries <= 10 + 20,
        "{retries} retries for 100 requests: the budget allows 10 + 20 % of 100"
    );
    assert!(
        retries >= 20,
        "{retries} retries: the budget refills with each request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_panic_threshold_traffic_spreads_over_every_backend() {
    let mut backends = Vec::new();
    for name in ["up", "down-1", "down-2", "down-3"] {
        backends.push(TestBackend::start(name).await);
    }
    // The health check wants "up" in the answer, so three backends are marked down
    // while still answering traffic. Two pools over the same backends, one with a
    // panic threshold of 50 %: with 1 of 4 usable, it spreads over all of them.
    let list = backends
        .iter()
        .map(|b| format!("{{ address = \"{}\" }}", b.addr))
        .collect::<Vec<_>>()
        .join(", ");
    let health = "type = \"http\"\npath = \"/\"\nexpect_body = \"up\"\ninterval = \"100ms\"\ntimeout = \"50ms\"\nfall = 1\n";
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"panic\"\nlistener = \"web\"\npath_prefix = \"/panic\"\npool = \"panic\"\n\
         [[route]]\nname = \"strict\"\nlistener = \"web\"\npool = \"strict\"\n\
         [pool.panic]\nbackends = [{list}]\n[pool.panic.health]\n{health}\
         [pool.panic.failover]\npanic_threshold = 50\n\
         [pool.strict]\nbackends = [{list}]\n[pool.strict.health]\n{health}"
    );
    let proxy = start_proxy(&config).await;
    wait_for(
        "three backends down in both pools",
        Duration::from_secs(10),
        async || {
            let s = status(&proxy).await;
            s["pools"].as_array().unwrap().iter().all(|p| {
                let health: Vec<&str> = p["backends"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|b| b["health"].as_str().unwrap())
                    .collect();
                health == ["up", "down", "down", "down"]
            })
        },
    )
    .await;

    let c = client();
    for _ in 0..40 {
        assert_eq!(
            get(&c, &format!("http://{}/panic/", proxy.web)).await.0,
            200
        );
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    let requests = |pool: &[serde_json::Value]| -> Vec<u64> {
        pool.iter()
            .map(|b| b["requests"].as_u64().unwrap())
            .collect()
    };
    let panic = requests(&pool_backends(&proxy, 0).await);
    let strict = requests(&pool_backends(&proxy, 1).await);
    assert_eq!(
        strict,
        vec![40, 0, 0, 0],
        "above no threshold: only the usable one"
    );
    assert!(
        panic.iter().all(|&n| n >= 5),
        "in panic mode every backend takes a share: {panic:?}"
    );
    assert_eq!(panic.iter().sum::<u64>(), 40);
}
