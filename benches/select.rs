//! Criterion benchmarks of the per-request hot path: route matching, backend selection
//! with health and breaker state, and breaker bookkeeping. Figures are nanoseconds per
//! call; compare ratios between runs, the machine is shared.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard::balance::{PickContext, hash_key};
use switchyard::breaker::Breaker;
use switchyard::clock;
use switchyard::config::{BreakerConfig, Config};
use switchyard::metrics::Metrics;
use switchyard::router::{Route, Router};
use switchyard::traffic::RouteTarget;
use switchyard::upstream::Pool;

fn pool(balance: &str) -> Pool {
    pool_with(balance, "")
}

/// Pool `app` of 8 backends with `balance`, then `tables` (its sub-tables).
fn pool_with(balance: &str, tables: &str) -> Pool {
    let backends: Vec<String> = (1..=8)
        .map(|i| format!("{{ address = \"10.0.0.{i}:80\", weight = {} }}", 1 + i % 3))
        .collect();
    let text = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n[pool.app]\n{balance}\nbackends = [{}]\n{tables}",
        backends.join(", ")
    );
    let config = Config::parse(Path::new("bench.toml"), &text).expect("valid bench config");
    Pool::build(
        config.pools["app"].clone(),
        None,
        switchyard::upstream::PoolPolicies::default(),
    )
}

fn selection(c: &mut Criterion) {
    let mut group = c.benchmark_group("pick");
    for (name, balance) in [
        ("round-robin", "balance = \"round-robin\""),
        ("weighted", "balance = \"weighted\""),
        ("least-request", "balance = \"least-request\""),
        ("hash", "balance = \"hash\"\nhash_on = \"header:x-user\""),
    ] {
        let pool = pool(balance);
        // One backend ejected so selection has to skip it, as in production.
        let cfg = BreakerConfig {
            consecutive_failures: 1,
            ..BreakerConfig::default()
        };
        pool.backends[3]
            .state
            .breaker
            .record_failure(&cfg, clock::now_ms(), || true);
        let hash = Some(hash_key(b"user-42"));
        group.bench_function(name, |b| {
            b.iter(|| {
                let ctx = PickContext {
                    hash,
                    now_ms: clock::now_ms(),
                    slow_start: None,
                    pinned: None,
                };
                black_box(pool.pick(&ctx, |_| false))
            })
        });
    }
    // A sticky pool: the cookie is read from the request's headers and its backend
    // chosen ahead of the balancer.
    let pool = pool_with(
        "balance = \"round-robin\"",
        "[pool.app.sticky]\ncookie = \"sy_srv\"\n",
    );
    let sticky = pool.sticky.as_ref().expect("a sticky pool");
    let set = sticky.set_cookie_for(5, None).expect("a cookie");
    let value = set
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default();
    let mut headers = http::HeaderMap::new();
    let cookie = format!("theme=dark; {value}; lang=en");
    headers.insert(
        http::header::COOKIE,
        cookie.parse().expect("a header value"),
    );
    group.bench_function("sticky-cookie", |b| {
        b.iter(|| {
            let ctx = PickContext {
                now_ms: clock::now_ms(),
                pinned: sticky.pinned(black_box(&headers)),
                ..PickContext::default()
            };
            black_box(switchyard::policy::routing::select(
                &pool,
                &ctx,
                None,
                |_| false,
            ))
        })
    });
    group.finish();
}

fn routing(c: &mut Criterion) {
    let metrics = Metrics::new();
    let mut router = Router::default();
    for i in 0..50 {
        let host = (i % 5 != 0).then(|| format!("app{}.example.com", i % 10));
        router.add(
            host.as_deref(),
            Arc::new(Route {
                name: format!("r{i}").into(),
                target: RouteTarget::Pool("p".into()),
                path_prefix: format!("/svc{i}/v{}", i % 3),
                forward_original_path: false,
                metrics: metrics.route(&format!("r{i}")),
            }),
        );
    }
    router.add(
        None,
        Arc::new(Route {
            name: "fallback".into(),
            target: RouteTarget::Pool("p".into()),
            path_prefix: "/".into(),
            forward_original_path: false,
            metrics: metrics.route("fallback"),
        }),
    );
    c.bench_function("route/50-routes", |b| {
        b.iter(|| {
            black_box(router.route(
                Some(black_box("app3.example.com:8080")),
                black_box("/svc13/v1/users/7"),
            ))
        })
    });

    // The shape of load.sh's routes-200 row: one host and path per route, the
    // request matching the last one.
    let mut router = Router::default();
    for i in 1..=200 {
        router.add(
            Some(&format!("h{i}.bench")),
            Arc::new(Route {
                name: format!("r{i}").into(),
                target: RouteTarget::Pool("p".into()),
                path_prefix: format!("/r{i}/"),
                forward_original_path: false,
                metrics: metrics.route(&format!("r{i}")),
            }),
        );
    }
    c.bench_function("route/200-routes", |b| {
        b.iter(|| black_box(router.route(Some(black_box("h200.bench")), black_box("/r200/item"))))
    });
}

fn breaker(c: &mut Criterion) {
    let cfg = BreakerConfig {
        error_rate: Some(0.5),
        ..BreakerConfig::default()
    };
    let breaker = Breaker::default();
    c.bench_function("breaker/may_admit", |b| {
        b.iter(|| black_box(breaker.may_admit(clock::now_ms())))
    });
    c.bench_function("breaker/record_success", |b| {
        b.iter(|| black_box(breaker.record_success(&cfg, clock::now_ms())))
    });
    c.bench_function("breaker/try_acquire+record_success", |b| {
        b.iter(|| {
            let now = clock::now_ms();
            let _ = black_box(breaker.try_acquire(&cfg, now));
            black_box(breaker.record_success(&cfg, now))
        })
    });
}

/// What a request's accounting costs: the guard taking the route, pool and backend
/// in-flight counts and the breaker admission, recording a success, and giving it all
/// back; next to what the forward loop did before the guard (the same breaker and
/// counter calls, and the pool and backend handles the request kept).
fn accounting(c: &mut Criterion) {
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    use switchyard::outcome::Outcome;
    use switchyard::proxy::Attempt;
    use switchyard::proxy::outcome;

    let metrics = Arc::new(Metrics::new());
    let pool = Arc::new(pool("balance = \"round-robin\""));
    let route = Route {
        name: "bench".into(),
        target: RouteTarget::Pool("app".into()),
        path_prefix: "/".into(),
        forward_original_path: false,
        metrics: metrics.route("bench"),
    };
    let backend = pool.backends[0].clone();
    c.bench_function("accounting/guard", |b| {
        b.iter(|| {
            let mut attempt = Attempt::new();
            attempt.route(&route);
            attempt.enter(&pool);
            let _ = black_box(attempt.admit(&pool, &backend, clock::now_ms()));
            attempt.settle(Outcome::Success(Duration::from_micros(300)), &metrics);
            drop(black_box(attempt));
        })
    });
    c.bench_function("accounting/unguarded", |b| {
        b.iter(|| {
            let held = black_box((Arc::clone(&pool), backend.clone()));
            let state = &held.1.state;
            let _ = black_box(
                state
                    .breaker
                    .try_acquire(&pool.config.breaker, clock::now_ms()),
            );
            state.requests.fetch_add(1, Ordering::Relaxed);
            state.in_flight.fetch_add(1, Ordering::AcqRel);
            outcome::record(
                &pool,
                &backend,
                Outcome::Success(Duration::from_micros(300)),
                &metrics,
            );
            state.in_flight.fetch_sub(1, Ordering::AcqRel);
            drop(held);
        })
    });
}

criterion_group!(benches, selection, routing, breaker, accounting);
criterion_main!(benches);
