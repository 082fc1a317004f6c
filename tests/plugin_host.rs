//! The plugin host against real components: the shipped policies doing
//! their jobs, and hostile plugins failing only their own calls.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, StatusCode};
use switchyard::plugin::{
    BreakerState, BreakerStats, FailureKind, HealthVerdict, InstanceReuse, Outcome, Plugin,
    PluginError, PluginKind, PluginRuntime, PluginSpec, ProbeError, ProbeReport, ProbeTarget,
    QuarantinePolicy, RecoveryAction, RouteCandidate, RouteDecision, RouteRequest,
    shipped_plugin_dir, test_plugin_dir,
};

/// Upper bound for a call that must be cut off by a 2 ms deadline, generous
/// for a loaded two-core machine.
const DEADLINE_BOUND: Duration = Duration::from_millis(200);

fn runtime() -> &'static PluginRuntime {
    static RT: OnceLock<PluginRuntime> = OnceLock::new();
    RT.get_or_init(|| PluginRuntime::new().expect("runtime"))
}

fn shipped(name: &str) -> PathBuf {
    shipped_plugin_dir().join(format!("{name}.wasm"))
}

fn testing(name: &str) -> PathBuf {
    test_plugin_dir().join(format!("{name}.wasm"))
}

/// Loads with a 100 ms deadline: the deadline is wall-clock time, and these
/// tests share two cores with each other, so a 2 ms deadline would
/// occasionally cut off a well-behaved call that was merely descheduled.
fn load(name: &str, kind: PluginKind, path: PathBuf, config: &str) -> Result<Plugin, PluginError> {
    let mut spec = PluginSpec::new(name, kind, path);
    spec.config_json = config.into();
    spec.timeout = Duration::from_millis(100);
    runtime().load(&spec)
}

/// Loads the hostile plugin with the default 2 ms deadline, for the tests
/// about deadlines.
fn hostile(config: &str) -> Result<Plugin, PluginError> {
    let mut spec = PluginSpec::new("hostile", PluginKind::Routing, testing("hostile"));
    spec.config_json = config.into();
    runtime().load(&spec)
}

/// Loads the hostile plugin with a short deadline that still leaves the
/// well-behaved calls in between room on a busy 2-core machine (the default 2 ms
/// is wall-clock time, and a descheduled thread can overrun it).
fn hostile_with_deadline(timeout: Duration) -> Plugin {
    let mut spec = PluginSpec::new("hostile", PluginKind::Routing, testing("hostile"));
    spec.timeout = timeout;
    runtime().load(&spec).expect("load")
}

/// Loads the hostile plugin with a 100 ms deadline, for the tests about
/// anything but deadlines.
fn hostile_relaxed() -> Plugin {
    load("hostile", PluginKind::Routing, testing("hostile"), "{}").expect("load")
}

fn candidates(n: u32) -> Vec<RouteCandidate> {
    (0..n)
        .map(|i| RouteCandidate {
            index: i,
            weight: 1,
            in_flight: 0,
            latency_ewma_us: 1000,
            error_rate_permille: 0,
            healthy: true,
        })
        .collect()
}

struct Req {
    headers: HeaderMap,
    path: &'static str,
    ip: IpAddr,
}

impl Req {
    fn new(path: &'static str) -> Self {
        Self {
            headers: HeaderMap::new(),
            path,
            ip: "192.0.2.10".parse().expect("ip"),
        }
    }

    fn view(&self) -> RouteRequest<'_> {
        RouteRequest {
            method: "GET",
            path: self.path,
            host: "example.test",
            client_ip: self.ip,
            headers: &self.headers,
        }
    }
}

fn choose(p: &Plugin, req: &Req, cands: &[RouteCandidate]) -> Result<RouteDecision, PluginError> {
    p.as_routing().expect("routing").choose(&req.view(), cands)
}

// ---------------------------------------------------------------- canary

#[test]
fn canary_routes_flagged_requests_to_canaries() {
    let p = load(
        "canary",
        PluginKind::Routing,
        shipped("canary"),
        r#"{"header":"X-Canary","value":"yes","percent":0,"canary":[2,3]}"#,
    )
    .expect("load");
    let routing = p.as_routing().expect("routing");
    assert_eq!(routing.wanted_headers(), &["x-canary"]);
    assert_eq!(p.digest().len(), 64);

    let cands = candidates(4);
    let mut flagged = Req::new("/");
    flagged
        .headers
        .insert("x-canary", HeaderValue::from_static("yes"));
    let plain = Req::new("/");
    let mut wrong_value = Req::new("/");
    wrong_value
        .headers
        .insert("x-canary", HeaderValue::from_static("no"));
    for _ in 0..50 {
        let d = choose(&p, &flagged, &cands).expect("choose");
        assert!(matches!(d, RouteDecision::Backend(2 | 3)), "{d:?}");
        let d = choose(&p, &plain, &cands).expect("choose");
        assert!(matches!(d, RouteDecision::Backend(0 | 1)), "{d:?}");
        let d = choose(&p, &wrong_value, &cands).expect("choose");
        assert!(matches!(d, RouteDecision::Backend(0 | 1)), "{d:?}");
    }
}

#[test]
fn canary_percent_weights_and_fallback() {
    let p = load(
        "canary",
        PluginKind::Routing,
        shipped("canary"),
        r#"{"percent":100,"canary":[1]}"#,
    )
    .expect("load");
    let mut cands = candidates(3);
    assert_eq!(
        choose(&p, &Req::new("/"), &cands).ok(),
        Some(RouteDecision::Backend(1))
    );
    // Unhealthy canary: fall back to the stable group, weighted.
    cands[1].healthy = false;
    cands[0].weight = 0;
    for _ in 0..20 {
        assert_eq!(
            choose(&p, &Req::new("/"), &cands).ok(),
            Some(RouteDecision::Backend(2))
        );
    }
    // Nothing healthy: the plugin answers 503 itself.
    for c in &mut cands {
        c.healthy = false;
    }
    match choose(&p, &Req::new("/"), &cands) {
        Ok(RouteDecision::Respond { status, .. }) => {
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE)
        }
        other => panic!("expected a 503, got {other:?}"),
    }
}

#[test]
fn canary_rejects_bad_config() {
    let err = load(
        "canary",
        PluginKind::Routing,
        shipped("canary"),
        r#"{"percent":150,"canary":[]}"#,
    )
    .expect_err("percent over 100");
    assert!(
        matches!(err, PluginError::Init(ref m) if m.contains("percent")),
        "{err}"
    );
}

// ---------------------------------------------------------------- latency

#[test]
fn latency_prefers_fast_idle_backends() {
    let p = load("latency", PluginKind::Routing, shipped("latency"), "{}").expect("load");
    let mut cands = candidates(4);
    cands[0].latency_ewma_us = 200;
    cands[1].latency_ewma_us = 1_000;
    cands[2].latency_ewma_us = 1_000;
    cands[2].in_flight = 9;
    cands[3].latency_ewma_us = 50_000;
    let mut hits = [0u32; 4];
    for _ in 0..400 {
        match choose(&p, &Req::new("/"), &cands).expect("choose") {
            RouteDecision::Backend(i) => hits[i as usize] += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // Power of two choices: the worst candidate can never win a comparison.
    assert_eq!(hits[3], 0, "{hits:?}");
    assert!(hits[0] > hits[1] && hits[1] > hits[2], "{hits:?}");

    cands[0].healthy = false;
    for _ in 0..50 {
        let d = choose(&p, &Req::new("/"), &cands).expect("choose");
        assert_ne!(d, RouteDecision::Backend(0));
    }
}

#[test]
fn routing_is_safe_from_many_threads() {
    let p = load("latency", PluginKind::Routing, shipped("latency"), "{}").expect("load");
    let cands = candidates(4);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..500 {
                    let d = choose(&p, &Req::new("/"), &cands).expect("choose");
                    assert!(matches!(d, RouteDecision::Backend(0..=3)));
                }
            });
        }
    });
    assert_eq!(p.stats().calls(), 2000);
    assert_eq!(p.stats().durations().count, 2000);
}

// ---------------------------------------------------------------- json-health

fn probe(status: Option<u16>, body: &[u8], error: Option<ProbeError>) -> ProbeReport<'_> {
    static EMPTY: OnceLock<HeaderMap> = OnceLock::new();
    ProbeReport {
        status,
        headers: EMPTY.get_or_init(HeaderMap::new),
        body_prefix: body,
        latency: Duration::from_millis(3),
        error,
    }
}

#[test]
fn json_health_judges_status_documents() {
    let p = load(
        "json",
        PluginKind::Health,
        shipped("json_health"),
        r#"{"required":{"checks.db":["up"]},"optional":{"checks.cache":["up"]},"degraded-percent":40}"#,
    )
    .expect("load");
    let h = p.as_health().expect("health");
    let eval = |status, body: &str, error| h.evaluate(&probe(status, body.as_bytes(), error));

    assert_eq!(
        eval(
            Some(200),
            r#"{"status":"ok","checks":{"db":"up","cache":"up"}}"#,
            None
        )
        .ok(),
        Some(HealthVerdict::Up)
    );
    assert_eq!(
        eval(
            Some(200),
            r#"{"status":"ok","checks":{"db":"up","cache":"down"}}"#,
            None
        )
        .ok(),
        Some(HealthVerdict::Degraded(40))
    );
    assert_eq!(
        eval(Some(200), r#"{"status":"ok","checks":{"db":"down"}}"#, None).ok(),
        Some(HealthVerdict::Down("checks.db=down".into()))
    );
    assert!(matches!(
        eval(Some(200), r#"{"status":"ok","che"#, None),
        Ok(HealthVerdict::Down(ref r)) if r.contains("not JSON")
    ));
    assert_eq!(
        eval(Some(503), "{}", None).ok(),
        Some(HealthVerdict::Down("status 503".into()))
    );
    assert_eq!(
        eval(None, "", Some(ProbeError::Timeout)).ok(),
        Some(HealthVerdict::Down("timeout".into()))
    );
}

// ---------------------------------------------------------------- breaker

#[test]
fn adaptive_breaker_opens_backs_off_and_closes() {
    let p = load(
        "breaker",
        PluginKind::Recovery,
        shipped("adaptive_breaker"),
        r#"{"consecutive-failures":3,"base-open-ms":100,"max-open-ms":500}"#,
    )
    .expect("load");
    let r = p.as_recovery().expect("recovery");
    let fail = Outcome::Failure(FailureKind::Connect);
    let mut stats = BreakerStats {
        consecutive_failures: 2,
        requests_in_window: 2,
        failures_in_window: 2,
        ..Default::default()
    };
    assert_eq!(r.on_outcome(&stats, fail).ok(), Some(RecoveryAction::Keep));
    stats.consecutive_failures = 3;
    assert_eq!(
        r.on_outcome(&stats, fail).ok(),
        Some(RecoveryAction::Open(Duration::from_millis(100)))
    );
    stats.state = BreakerState::HalfOpen;
    stats.times_opened = 2;
    assert_eq!(
        r.on_outcome(&stats, fail).ok(),
        Some(RecoveryAction::Open(Duration::from_millis(400)))
    );
    stats.times_opened = 10;
    assert_eq!(
        r.on_outcome(&stats, fail).ok(),
        Some(RecoveryAction::Open(Duration::from_millis(500))),
        "capped"
    );
    let ok = Outcome::Success(Duration::from_millis(2));
    assert_eq!(r.on_outcome(&stats, ok).ok(), Some(RecoveryAction::Close));

    // Error rate over the window, seen on a tick without traffic.
    let windowed = BreakerStats {
        requests_in_window: 40,
        failures_in_window: 30,
        ..Default::default()
    };
    assert_eq!(
        r.on_tick(&windowed).ok(),
        Some(RecoveryAction::Open(Duration::from_millis(100)))
    );
    assert_eq!(
        r.on_tick(&BreakerStats::default()).ok(),
        Some(RecoveryAction::Keep)
    );
}

// ---------------------------------------------------------------- hostile

/// Calls `path` once, returning the result and how long it took.
fn timed(p: &Plugin, path: &'static str) -> (Result<RouteDecision, PluginError>, Duration) {
    let start = Instant::now();
    let r = choose(p, &Req::new(path), &candidates(2));
    (r, start.elapsed())
}

fn assert_recovers(p: &Plugin) {
    for _ in 0..3 {
        assert_eq!(
            choose(p, &Req::new("/"), &candidates(2)).ok(),
            Some(RouteDecision::Backend(0))
        );
    }
}

#[test]
fn infinite_loop_is_cut_off_at_the_deadline() {
    let p = hostile_with_deadline(Duration::from_millis(20));
    for _ in 0..3 {
        let (r, took) = timed(&p, "/loop");
        assert!(matches!(r, Err(PluginError::Timeout { .. })), "{r:?}");
        assert!(took < DEADLINE_BOUND, "took {took:?}");
        assert_recovers(&p);
    }
    assert_eq!(p.stats().errors_of("timeout"), 3);
}

#[test]
fn memory_bomb_fails_its_call_only() {
    // Filling 16 MiB takes longer than the default 2 ms: this test is about
    // memory, so give the call time to reach the limit.
    let mut spec = PluginSpec::new("hostile", PluginKind::Routing, testing("hostile"));
    spec.timeout = Duration::from_secs(1);
    let p = runtime().load(&spec).expect("load");
    let (r, took) = timed(&p, "/grow");
    assert!(
        matches!(r, Err(PluginError::Memory { limit }) if limit == 16 << 20),
        "{r:?}"
    );
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert_recovers(&p);
    assert_eq!(p.stats().errors_of("memory"), 1);
}

#[test]
fn unbounded_recursion_is_a_trap() {
    let p = hostile_with_deadline(Duration::from_millis(20));
    let (r, took) = timed(&p, "/recurse");
    assert!(
        matches!(r, Err(PluginError::Trap(ref m)) if m.contains("stack overflow")),
        "{r:?}"
    );
    assert!(took < DEADLINE_BOUND, "took {took:?}");
    assert_recovers(&p);
}

#[test]
fn panics_are_traps_and_the_instance_is_replaced() {
    let p = hostile_relaxed();
    // Warm instances keep their state between calls...
    let count = |p: &Plugin| match choose(p, &Req::new("/count"), &candidates(1)) {
        Ok(RouteDecision::Respond { body, .. }) => body.parse::<u32>().expect("count"),
        other => panic!("unexpected {other:?}"),
    };
    let first = count(&p);
    assert_eq!(count(&p), first + 1);
    // ...until one traps: it is thrown away and a fresh one starts at 1.
    let (r, _) = timed(&p, "/trap");
    assert!(matches!(r, Err(PluginError::Trap(_))), "{r:?}");
    assert_eq!(count(&p), 1);
}

#[test]
fn invalid_outputs_are_refused() {
    let p = hostile_relaxed();
    for path in ["/bad-index", "/bad-status", "/big-body"] {
        let (r, _) = timed(&p, path);
        assert!(matches!(r, Err(PluginError::Invalid(_))), "{path}: {r:?}");
        assert_recovers(&p);
    }
    assert_eq!(p.stats().errors_of("invalid"), 3);
}

/// Quarantine runs on the proxy's clock, so paused time ends the cool-off exactly,
/// with no real waiting.
#[tokio::test(start_paused = true)]
async fn repeated_failures_quarantine_the_plugin() {
    let mut spec = PluginSpec::new("hostile", PluginKind::Routing, testing("hostile"));
    spec.quarantine = QuarantinePolicy {
        window: Duration::from_secs(10),
        min_calls: 10,
        max_error_ratio: 0.5,
        consecutive_failures: 0,
        cool_off: Duration::from_millis(300),
    };
    let p = runtime().load(&spec).expect("load");
    for _ in 0..10 {
        let (r, _) = timed(&p, "/trap");
        assert!(matches!(r, Err(PluginError::Trap(_))), "{r:?}");
    }
    assert!(p.stats().is_quarantined());
    let (r, took) = timed(&p, "/");
    assert!(matches!(r, Err(PluginError::Quarantined)), "{r:?}");
    assert!(
        took < Duration::from_millis(5),
        "quarantined calls do not run the plugin"
    );
    tokio::time::advance(Duration::from_millis(299)).await;
    assert!(p.stats().is_quarantined(), "still within the cool-off");
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_recovers(&p);
    assert_eq!(p.stats().quarantines(), 1);
}

#[test]
fn fresh_instance_per_call_keeps_no_state() {
    let mut spec = PluginSpec::new("hostile", PluginKind::Routing, testing("hostile"));
    spec.reuse = InstanceReuse::PerCall;
    let p = runtime().load(&spec).expect("load");
    for _ in 0..3 {
        match choose(&p, &Req::new("/count"), &candidates(1)) {
            Ok(RouteDecision::Respond { body, .. }) => assert_eq!(body, "1"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn init_failures_refuse_the_load() {
    let err = hostile(r#"{"init":"error"}"#).expect_err("init error");
    assert!(
        matches!(err, PluginError::Init(ref m) if m.contains("refusing")),
        "{err}"
    );
    let err = hostile(r#"{"init":"trap"}"#).expect_err("init trap");
    assert!(matches!(err, PluginError::Init(_)), "{err}");
    let start = Instant::now();
    let err = hostile(r#"{"init":"loop"}"#).expect_err("init loop");
    assert!(matches!(err, PluginError::Init(_)), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    let err = hostile(r#"{"init":"bad-header"}"#).expect_err("bad header");
    assert!(
        matches!(err, PluginError::Invalid(ref m) if m.contains("header")),
        "{err}"
    );
}

#[test]
fn hostile_health_verdicts_are_validated() {
    let spec = PluginSpec::new("hh", PluginKind::Health, testing("hostile_health"));
    let p = runtime().load(&spec).expect("load");
    let h = p.as_health().expect("health");
    let with_latency = |us| ProbeReport {
        latency: Duration::from_micros(us),
        ..probe(Some(200), b"", None)
    };
    assert!(matches!(
        h.evaluate(&with_latency(1)),
        Err(PluginError::Invalid(_))
    ));
    assert!(matches!(
        h.evaluate(&with_latency(2)),
        Err(PluginError::Invalid(_))
    ));
    let start = Instant::now();
    assert!(matches!(
        h.evaluate(&with_latency(3)),
        Err(PluginError::Timeout { .. })
    ));
    assert!(start.elapsed() < DEADLINE_BOUND);
    assert_eq!(h.evaluate(&with_latency(9)).ok(), Some(HealthVerdict::Up));
}

fn target(pool: &str) -> ProbeTarget<'_> {
    ProbeTarget {
        pool,
        address: "127.0.0.1:8080",
    }
}

#[test]
fn probe_requests_are_asked_for_and_validated() {
    let p = load("hh", PluginKind::Health, testing("hostile_health"), "{}").expect("load");
    let h = p.as_health().expect("health");
    assert!(h.has_probe_request());
    let custom = h
        .probe_request(&target("custom"))
        .expect("call")
        .expect("a custom probe");
    assert_eq!(custom.method, http::Method::GET);
    assert_eq!(custom.path, "/custom?from=plugin");
    assert_eq!(custom.headers["x-probe"], "hostile");
    assert_eq!(h.probe_request(&target("app")).ok(), Some(None));
    for pool in ["bad-method", "bad-path", "forbidden-header"] {
        let r = h.probe_request(&target(pool));
        assert!(matches!(r, Err(PluginError::Invalid(_))), "{pool}: {r:?}");
    }
    let start = Instant::now();
    let r = h.probe_request(&target("spin"));
    assert!(matches!(r, Err(PluginError::Timeout { .. })), "{r:?}");
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(p.stats().errors_of("invalid"), 3);

    // The SDK always exports it; its default answer keeps the configured probe.
    let json = load("json", PluginKind::Health, shipped("json_health"), "{}").expect("load");
    let json = json.as_health().expect("health");
    assert!(json.has_probe_request());
    assert_eq!(json.probe_request(&target("app")).ok(), Some(None));
}

#[test]
fn a_plugin_built_against_0_1_0_still_loads_and_is_never_asked_for_a_probe() {
    let info = switchyard::plugin::inspect(&testing("legacy_health")).expect("inspect");
    assert!(
        info.imports
            .iter()
            .any(|i| i.name == "switchyard:policy/health-types@0.1.0"),
        "built against 0.1.0: {info}"
    );
    let p = load("legacy", PluginKind::Health, testing("legacy_health"), "{}").expect("load");
    let h = p.as_health().expect("health");
    assert!(!h.has_probe_request());
    assert_eq!(h.probe_request(&target("custom")).ok(), Some(None));
    assert_eq!(
        p.stats().calls(),
        0,
        "no call was made for the missing export"
    );
    assert_eq!(
        h.evaluate(&probe(Some(503), b"", None)).ok(),
        Some(HealthVerdict::Down("legacy: status 503".into()))
    );
}

// ---------------------------------------------------------------- loading

#[test]
fn wrong_world_is_a_clear_error() {
    let err = load("ww", PluginKind::Routing, testing("wrong_world"), "{}").expect_err("routing");
    assert!(
        matches!(err, PluginError::WrongWorld { expected: "routing", ref found } if found.contains("choose")),
        "{err}"
    );
    let err = load("ww", PluginKind::Health, testing("wrong_world"), "{}").expect_err("health");
    assert!(
        matches!(err, PluginError::WrongWorld { ref found, .. } if found.contains("evaluate")),
        "{err}"
    );
    let err = load("c", PluginKind::Recovery, shipped("canary"), "{}").expect_err("recovery");
    assert_eq!(err.kind_label(), "wrong_world", "{err}");
}

#[test]
fn unreadable_and_corrupt_files_are_clear_errors() {
    let err = load("x", PluginKind::Routing, "/nonexistent/x.wasm".into(), "{}").expect_err("io");
    assert!(matches!(err, PluginError::Io { .. }), "{err}");

    let dir = std::env::temp_dir().join(format!("switchyard-plugin-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tempdir");
    let garbage = dir.join("garbage.wasm");
    std::fs::write(&garbage, b"definitely not wasm").expect("write");
    let err = load("x", PluginKind::Routing, garbage, "{}").expect_err("garbage");
    assert!(
        matches!(err, PluginError::Compile { ref detail, .. } if detail.contains("not a WebAssembly")),
        "{err}"
    );

    let core = dir.join("core.wasm");
    // The smallest core module: magic and version 1, no sections.
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let err = load("x", PluginKind::Routing, core, "{}").expect_err("core module");
    assert!(
        matches!(err, PluginError::Compile { ref detail, .. } if detail.contains("wasm32-wasip2")),
        "{err}"
    );

    let truncated = dir.join("truncated.wasm");
    let bytes = std::fs::read(shipped("latency")).expect("read");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let err = load("x", PluginKind::Routing, truncated, "{}").expect_err("truncated");
    assert_eq!(err.kind_label(), "compile", "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn spec_limits_are_checked() {
    let mut spec = PluginSpec::new("l", PluginKind::Routing, shipped("latency"));
    spec.timeout = Duration::ZERO;
    assert_eq!(
        runtime().load(&spec).expect_err("timeout").kind_label(),
        "spec"
    );
    spec.timeout = Duration::from_millis(2);
    spec.memory_bytes = 1 << 40;
    assert_eq!(
        runtime().load(&spec).expect_err("memory").kind_label(),
        "spec"
    );
}

#[test]
fn inspect_reports_worlds_and_imports() {
    let info = switchyard::plugin::inspect(&shipped("canary")).expect("inspect");
    assert_eq!(info.loadable_as(), vec![PluginKind::Routing]);
    assert!(
        info.exports.iter().any(|e| e.starts_with("choose(")),
        "{info}"
    );
    assert!(
        info.imports
            .iter()
            .any(|i| i.name.starts_with("switchyard:policy/host@"))
    );
    let text = info.to_string();
    assert!(text.contains("verdict: loads as routing"), "{text}");

    let info = switchyard::plugin::inspect(&shipped("json_health")).expect("inspect");
    assert_eq!(info.loadable_as(), vec![PluginKind::Health]);
    let info = switchyard::plugin::inspect(&testing("wrong_world")).expect("inspect");
    assert!(info.loadable_as().is_empty());
    assert!(info.to_string().contains("will NOT load"));
}

#[test]
fn plugin_check_command_reports_the_world_and_exit_status() {
    let run = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["plugin", "check"])
            .arg(file)
            .output()
            .unwrap()
    };
    let ok = run(&switchyard::plugin::shipped_plugin_dir().join("canary.wasm"));
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{stdout}");
    assert!(stdout.contains("loads as routing"), "{stdout}");
    let wrong = run(&switchyard::plugin::test_plugin_dir().join("wrong_world.wasm"));
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stdout).contains("will NOT load"));
}
