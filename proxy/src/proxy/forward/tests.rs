//! Each step of [`super::forward`] on its own, with real pieces: pools built from a
//! config, a live snapshot, and backends listening on loopback where a step sends.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;

use http::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::config::{Config, Limits};
use crate::plugin::PluginMap;
use crate::traffic::Overrides;
use crate::upstream::AdminState;

/// What a test backend does once it has read a request head.
#[derive(Clone, Copy)]
enum Answer {
    /// Writes these bytes and keeps the connection open.
    Bytes(&'static [u8]),
    /// Closes the connection without a word.
    Close,
    /// Never answers.
    Silent,
}

const OK: Answer = Answer::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");

/// A backend on loopback answering every request the same way.
async fn backend(answer: Answer) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match answer {
                    Answer::Bytes(bytes) => {
                        let _ = stream.write_all(bytes).await;
                        let _ = stream.read(&mut buf).await;
                    }
                    Answer::Close => drop(stream),
                    Answer::Silent => std::future::pending::<()>().await,
                }
            });
        }
    });
    address
}

/// An address nothing listens on.
async fn refused() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("address")
}

/// A snapshot of the `[pool.*]` tables in `pools`, behind one listener.
fn snapshot(pools: &str, metrics: &Metrics) -> Snapshot {
    let text = format!("[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n{pools}");
    let config = Config::parse(Path::new("t.toml"), &text).expect("valid config");
    Snapshot::build(config, None, metrics, &Overrides::new(), &PluginMap::new())
}

fn parts(method: Method) -> Parts {
    let request = Request::builder().method(method).uri("/").body(());
    request.expect("request").into_parts().0
}

fn target(parts: &Parts) -> Target<'_> {
    Target {
        parts,
        client_ip: [127, 0, 0, 1].into(),
        single_attempt: false,
        path: "/",
        host: "app",
        path_and_query: PathAndQuery::from_static("/"),
        max_answer_head: 64 * 1024,
        connect_timeout: Duration::from_secs(1),
    }
}

/// The steps of one request to `snapshot`'s pool `app`.
fn steps<'a>(
    client: &'a UpstreamClient,
    metrics: &'a Metrics,
    snapshot: &'a Snapshot,
    target: &'a Target<'a>,
    body: &'a RequestBody,
) -> Steps<'a> {
    let pool = snapshot.pools.get("app").expect("pool app");
    Steps {
        client,
        metrics,
        snapshot,
        target,
        body,
        rules: RetryRules::new(&pool.config.retry, target),
    }
}

fn in_flight(pool: &Pool) -> Vec<u32> {
    let count = |b: &Backend| b.state.in_flight.load(Ordering::Relaxed);
    pool.backends.iter().map(count).collect()
}

#[test]
fn the_pick_step_tries_each_backend_once_then_gives_up() {
    let metrics = Metrics::new();
    let snapshot = snapshot(
        "[pool.app]\nbackends = [{ address = \"127.0.0.1:9\" }, { address = \"127.0.0.1:10\" }]\n",
        &metrics,
    );
    let (client, parts) = (UpstreamClient::new(&Limits::default()), parts(Method::GET));
    let target = target(&parts);
    let steps = steps(&client, &metrics, &snapshot, &target, &RequestBody::Empty);
    let pool = Arc::clone(snapshot.pools.get("app").expect("pool"));
    let (mut search, mut attempt) = (Search::new(Arc::clone(&pool)), Attempt::new());
    let now = clock::now_ms();

    let first = steps
        .pick(&mut search, &mut attempt, now)
        .expect("no error");
    let second = steps
        .pick(&mut search, &mut attempt, now)
        .expect("no error");
    let (first, second) = (first.expect("a backend"), second.expect("a backend"));
    assert_ne!(first.address, second.address, "no backend is tried twice");
    match steps.pick(&mut search, &mut attempt, now) {
        Err(ProxyError::NoBackend { pool }) => assert_eq!(&*pool, "app"),
        other => panic!("expected no backend, got {other:?}"),
    }
    assert!(
        metrics
            .encode()
            .contains("no_backend_total{pool=\"app\"} 1")
    );

    // Once a try failed, its error is what the client gets, and it is no
    // "no backend" case.
    let mut search = Search::new(pool);
    search.tried.insert(0);
    search.tried.insert(1);
    search.last_error = Some(ProxyError::Timeout {
        backend: Arc::clone(&first.key),
        timeout: Duration::from_secs(1),
    });
    let error = steps
        .pick(&mut search, &mut attempt, now)
        .expect_err("gives up");
    assert!(matches!(error, ProxyError::Timeout { .. }), "{error:?}");
    assert!(
        metrics
            .encode()
            .contains("no_backend_total{pool=\"app\"} 1")
    );
}

#[test]
fn the_pick_step_fails_over_once_when_the_pool_has_nothing_usable() {
    let metrics = Metrics::new();
    let snapshot = snapshot(
        "[pool.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n\
         [pool.app.failover]\nbackup = \"spare\"\n\
         [pool.spare]\nbackends = [{ address = \"127.0.0.1:11\" }]\n\
         [pool.spare.failover]\nbackup = \"app\"\n",
        &metrics,
    );
    let (client, parts) = (UpstreamClient::new(&Limits::default()), parts(Method::GET));
    let target = target(&parts);
    let steps = steps(&client, &metrics, &snapshot, &target, &RequestBody::Empty);
    let app = Arc::clone(snapshot.pools.get("app").expect("app"));
    let spare = Arc::clone(snapshot.pools.get("spare").expect("spare"));
    app.backends[0].state.set_admin_state(AdminState::Disabled);
    let mut attempt = Attempt::new();
    attempt.enter(&app);
    let mut search = Search::new(Arc::clone(&app));
    let now = clock::now_ms();

    let moved = steps
        .pick(&mut search, &mut attempt, now)
        .expect("no error");
    assert!(moved.is_none(), "failed over instead of picking");
    assert_eq!(&*search.pool.name, "spare");
    assert_eq!((app.traffic.in_flight(), spare.traffic.in_flight()), (0, 1));
    assert!(metrics.encode().contains("failovers_total{pool=\"app\"} 1"));

    let picked = steps
        .pick(&mut search, &mut attempt, now)
        .expect("no error");
    assert_eq!(
        picked.expect("a backend").address,
        spare.backends[0].address
    );
    // The backup has nothing usable left either: no failing over back and forth.
    spare.backends[0]
        .state
        .set_admin_state(AdminState::Disabled);
    match steps.pick(&mut search, &mut attempt, now) {
        Err(ProxyError::NoBackend { pool }) => assert_eq!(&*pool, "spare"),
        other => panic!("expected no backend, got {other:?}"),
    }
}

#[test]
fn the_admit_step_refuses_an_open_breaker_and_counts_what_it_admits() {
    let metrics = Metrics::new();
    let snapshot = snapshot(
        "[pool.app]\nbackends = [{ address = \"127.0.0.1:9\" }, { address = \"127.0.0.1:10\" }]\n\
         [pool.app.breaker]\nconsecutive_failures = 1\nhalf_open_requests = 1\nopen_for = \"10ms\"\n",
        &metrics,
    );
    let (client, parts) = (UpstreamClient::new(&Limits::default()), parts(Method::GET));
    let target = target(&parts);
    let steps = steps(&client, &metrics, &snapshot, &target, &RequestBody::Empty);
    let pool = Arc::clone(snapshot.pools.get("app").expect("pool"));
    let now = clock::now_ms();
    let (open, closed) = (&pool.backends[0], &pool.backends[1]);
    let _ = open
        .state
        .breaker
        .record_failure(&pool.config.breaker, now, || true);

    let mut attempt = Attempt::new();
    assert!(!steps.admit(&mut attempt, &pool, open, now), "open breaker");
    assert_eq!(in_flight(&pool), [0, 0]);
    assert!(steps.admit(&mut attempt, &pool, closed, now));
    assert_eq!(in_flight(&pool), [0, 1]);

    // Once `open_for` passed, one trial goes through and no second one.
    let later = now + 20;
    let mut trial = Attempt::new();
    assert!(steps.admit(&mut trial, &pool, open, later));
    assert_eq!(
        open.state.breaker.state(),
        crate::breaker::BreakerState::HalfOpen
    );
    assert!(!steps.admit(&mut Attempt::new(), &pool, open, later));
    drop((attempt, trial));
    assert_eq!(
        in_flight(&pool),
        [0, 0],
        "every admitted try was given back"
    );
}

#[tokio::test]
async fn the_send_and_judge_steps_tell_answers_from_failures() {
    let metrics = Metrics::new();
    let snapshot = snapshot(
        "[pool.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n\
         [pool.app.retry]\nper_try_timeout = \"200ms\"\n",
        &metrics,
    );
    let (client, parts) = (UpstreamClient::new(&Limits::default()), parts(Method::GET));
    let target = target(&parts);
    let steps = steps(&client, &metrics, &snapshot, &target, &RequestBody::Empty);
    let empty = || RequestBody::Empty.for_attempt().expect("an empty body");
    let exchange = |address: SocketAddr| {
        let backend = Backend::new(address, 1);
        let steps = &steps;
        async move { steps.exchange(&backend, empty()).await }
    };

    let judged = exchange(backend(OK).await).await;
    assert!(matches!(judged, Judged::Answer(ref r) if r.status() == StatusCode::OK));
    let unavailable = Answer::Bytes(b"HTTP/1.1 503 Busy\r\ncontent-length: 0\r\n\r\n");
    let judged = exchange(backend(unavailable).await).await;
    assert!(matches!(judged, Judged::ServerError(ref r) if r.status() == 503));
    let odd = Answer::Bytes(b"HTTP/1.1 600 Odd\r\ncontent-length: 0\r\n\r\n");
    match exchange(backend(odd).await).await {
        Judged::Failed(Outcome::BadResponse, _, ProxyError::BadResponse { reason, .. }) => {
            assert_eq!(reason, "status code outside 100-599");
        }
        _ => panic!("a status over 599 is not relayed"),
    }
    let garbage = Answer::Bytes(b"SSH-2.0-OpenSSH\r\n\r\n");
    let judged = exchange(backend(garbage).await).await;
    assert!(matches!(judged, Judged::Failed(Outcome::BadResponse, _, _)));
    let judged = exchange(backend(Answer::Close).await).await;
    assert!(matches!(
        judged,
        Judged::Failed(Outcome::Reset, Failure::Reset, _)
    ));
    let judged = exchange(refused().await).await;
    assert!(matches!(
        judged,
        Judged::Failed(
            Outcome::ConnectFailed,
            Failure::Refused,
            ProxyError::Connect { .. }
        )
    ));
    match exchange(backend(Answer::Silent).await).await {
        Judged::Failed(
            Outcome::TimedOut,
            Failure::Timeout,
            ProxyError::Timeout { timeout, .. },
        ) => {
            assert_eq!(timeout, Duration::from_millis(200));
        }
        _ => panic!("a silent backend times out"),
    }
}

#[test]
fn the_retry_rules_follow_the_policy_and_the_method() {
    let mut retry = RetryConfig::default();
    retry.on.status_503 = true;
    let get = parts(Method::GET);
    let post = parts(Method::POST);
    let rules = |parts: &Parts, single: bool| {
        let mut target = target(parts);
        target.single_attempt = single;
        RetryRules::new(&retry, &target)
    };
    let (get_rules, post_rules) = (rules(&get, false), rules(&post, false));
    assert!(get_rules.allow(Outcome::Reset, 1));
    assert!(get_rules.allow(Outcome::TimedOut, 1));
    assert!(get_rules.allow(Outcome::ServerError(503), 1));
    assert!(
        !get_rules.allow(Outcome::ServerError(500), 1),
        "not in retry.on"
    );
    assert!(!get_rules.allow(Outcome::BodyFailed, 1));
    assert!(
        !post_rules.allow(Outcome::Reset, 1),
        "a POST may have had effect"
    );
    assert!(!post_rules.allow(Outcome::ServerError(503), 1));
    assert!(
        post_rules.allow(Outcome::ConnectFailed, 1),
        "nothing was sent"
    );
    assert!(get_rules.allow(Outcome::Reset, retry.attempts));
    assert!(
        !get_rules.allow(Outcome::Reset, 1 + retry.attempts),
        "tries spent"
    );
    assert!(
        !rules(&get, true).allow(Outcome::ConnectFailed, 1),
        "upgrades: one try"
    );
}

#[test]
fn the_retry_decision_settles_the_try_and_asks_the_budget() {
    let metrics = Metrics::new();
    let snapshot = snapshot(
        "[pool.app]\nbackends = [{ address = \"127.0.0.1:9\" }, { address = \"127.0.0.1:10\" }]\n",
        &metrics,
    );
    let client = UpstreamClient::new(&Limits::default());
    let (get, post) = (parts(Method::GET), parts(Method::POST));
    let (get, post) = (target(&get), target(&post));
    let pool = Arc::clone(snapshot.pools.get("app").expect("pool"));
    let backend = &pool.backends[0];
    let reset = || ProxyError::Upstream {
        backend: Arc::clone(&backend.key),
        source: "reset".into(),
    };
    let decide_held = |target: &Target<'_>, judged: Judged| {
        let steps = steps(&client, &metrics, &snapshot, target, &RequestBody::Empty);
        let mut attempt = Attempt::new();
        assert!(steps.admit(&mut attempt, &pool, backend, clock::now_ms()));
        let decision = steps.decide(judged, Instant::now(), &mut attempt, &pool, backend);
        (decision, attempt)
    };
    let decide = |target: &Target<'_>, judged: Judged| decide_held(target, judged).0;
    let failures = || backend.state.failures.load(Ordering::Relaxed);

    let budget = pool.retry_budget();
    let (decision, attempt) = decide_held(
        &get,
        Judged::Failed(Outcome::Reset, Failure::Reset, reset()),
    );
    assert!(matches!(decision, Decision::Retry(Outcome::Reset, _)));
    assert_eq!(failures(), 1, "the failed try counts against the backend");
    assert_eq!(
        pool.retry_budget(),
        budget - 1,
        "the retry is taken from the budget"
    );
    drop(attempt);
    assert_eq!(
        pool.retry_budget(),
        budget,
        "and given back when never sent"
    );

    let decision = decide(
        &post,
        Judged::Failed(Outcome::Reset, Failure::Reset, reset()),
    );
    assert!(matches!(
        decision,
        Decision::Fail(ProxyError::Upstream { .. })
    ));
    assert_eq!(failures(), 2);

    let decision = decide(&get, Judged::ClientFault(ClientBodyError::Aborted));
    let client_body = ProxyError::ClientBody(ClientBodyError::Aborted);
    assert!(matches!(decision, Decision::Fail(ref e) if e.to_string() == client_body.to_string()));
    assert_eq!(failures(), 2, "the client's fault is not the backend's");

    while pool.withdraw_retry_budget() {}
    let decision = decide(
        &get,
        Judged::Failed(Outcome::Reset, Failure::Reset, reset()),
    );
    assert!(matches!(decision, Decision::Fail(_)), "the budget is spent");
    assert_eq!(in_flight(&pool), [0, 0]);
}

#[tokio::test(start_paused = true)]
async fn the_retry_step_backs_off_unless_the_connection_was_refused() {
    let metrics = Metrics::new();
    let snapshot = snapshot(
        "[pool.app]\nbackends = [{ address = \"127.0.0.1:9\" }]\n\
         [pool.app.retry]\nbackoff = \"100ms\"\n",
        &metrics,
    );
    let (client, parts) = (UpstreamClient::new(&Limits::default()), parts(Method::GET));
    let target = target(&parts);
    let steps = steps(&client, &metrics, &snapshot, &target, &RequestBody::Empty);
    let pool = Arc::clone(snapshot.pools.get("app").expect("pool"));
    let backend = &pool.backends[0];
    let mut search = Search::new(Arc::clone(&pool));
    let mut attempt = Attempt::new();
    let error = || ProxyError::Timeout {
        backend: Arc::clone(&backend.key),
        timeout: Duration::from_secs(1),
    };

    assert!(steps.admit(&mut attempt, &pool, backend, clock::now_ms()));
    let started = tokio::time::Instant::now();
    steps
        .retry(&mut search, &mut attempt, Outcome::TimedOut, error())
        .await;
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(50)..=Duration::from_millis(150)).contains(&waited),
        "backoff of 100ms, jittered: {waited:?}"
    );
    assert_eq!(in_flight(&pool), [0], "the failed try was given back");
    assert!(matches!(
        search.last_error,
        Some(ProxyError::Timeout { .. })
    ));
    assert!(metrics.encode().contains("retries_total{pool=\"app\"} 1"));

    assert!(steps.admit(&mut attempt, &pool, backend, clock::now_ms()));
    let started = tokio::time::Instant::now();
    let refused = ProxyError::Connect {
        backend: Arc::clone(&backend.key),
        source: "refused".into(),
    };
    steps
        .retry(&mut search, &mut attempt, Outcome::ConnectFailed, refused)
        .await;
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "nothing reached the backend"
    );
}

#[tokio::test]
async fn forward_retries_a_reset_on_the_next_backend_and_relays_its_answer() {
    let metrics = Metrics::new();
    let (closing, answering) = (backend(Answer::Close).await, backend(OK).await);
    let snapshot = snapshot(
        &format!(
            "[pool.app]\nbalance = \"round-robin\"\n\
             backends = [{{ address = \"{closing}\" }}, {{ address = \"{answering}\" }}]\n\
             [pool.app.retry]\nbackoff = \"1ms\"\n"
        ),
        &metrics,
    );
    let (client, parts) = (UpstreamClient::new(&Limits::default()), parts(Method::GET));
    let target = target(&parts);
    let pool = Arc::clone(snapshot.pools.get("app").expect("pool"));
    let mut attempt = Attempt::new();
    let body = RequestBody::Empty;
    let forwarded = forward(
        &client,
        &metrics,
        &snapshot,
        &mut attempt,
        Arc::clone(&pool),
        &target,
        &body,
    );
    let response = forwarded.await.expect("the second backend answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(attempt.tries(), 2);
    let failures = |i: usize| pool.backends[i].state.failures.load(Ordering::Relaxed);
    assert_eq!((failures(0), failures(1)), (1, 0));
    assert!(metrics.encode().contains("retries_total{pool=\"app\"} 1"));
    drop(attempt);
    assert_eq!(in_flight(&pool), [0, 0]);
}
