//! Cost of one routing decision with four backends: the wasm `latency` plugin
//! called directly (a warm, reused instance versus a fresh store and instance plus
//! `init` per call), and a whole select step (`policy::routing::select`) with that
//! plugin versus the native least-request balancer it stands in for.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use switchyard::plugin::{
    InstanceReuse, PluginKind, PluginRuntime, PluginSpec, RouteCandidate, RouteRequest,
    shipped_plugin_dir,
};

/// The request every benchmark routes.
fn sample_request(headers: &HeaderMap) -> RouteRequest<'_> {
    RouteRequest {
        method: "GET",
        path: "/api/items",
        host: "example.test",
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        headers,
    }
}

fn plugin_call(c: &mut Criterion) {
    let runtime = PluginRuntime::new().expect("runtime");
    let path = shipped_plugin_dir().join("latency.wasm");
    let headers = HeaderMap::new();
    let req = sample_request(&headers);
    let candidates: Vec<RouteCandidate> = (0..4)
        .map(|i| RouteCandidate {
            index: i,
            weight: 1,
            in_flight: i,
            latency_ewma_us: 800 + 100 * i,
            error_rate_permille: 0,
            healthy: true,
        })
        .collect();

    let mut group = c.benchmark_group("routing_latency_4_candidates");
    for (label, reuse) in [
        ("reused_instance", InstanceReuse::Pooled),
        ("fresh_store_per_call", InstanceReuse::PerCall),
    ] {
        let mut spec = PluginSpec::new("latency", PluginKind::Routing, &path);
        spec.reuse = reuse;
        // A generous deadline: the benchmark measures cost, not deadlines.
        spec.timeout = std::time::Duration::from_millis(100);
        let plugin = runtime.load(&spec).expect("load");
        let routing = plugin.as_routing().expect("routing");
        group.bench_function(label, |b| {
            b.iter(|| routing.choose(black_box(&req), black_box(&candidates)))
        });
        assert_eq!(plugin.stats().errors_of("timeout"), 0);
    }
    group.finish();
}

/// The select step as the proxy calls it, native balancer versus routing plugin.
fn pool_select(c: &mut Criterion) {
    use switchyard::balance::PickContext;
    use switchyard::config::Config;
    use switchyard::metrics::Metrics;
    use switchyard::policy::routing;
    use switchyard::policy::{FileCheck, PluginRegistry};
    use switchyard::upstream::{Pool, PoolPolicies};

    let path = shipped_plugin_dir().join("latency.wasm");
    let text = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"native\"\n\
         [pool.native]\nbalance = \"least-request\"\nbackends = [{b}]\n\
         [pool.wasm]\nbalance = \"plugin:latency\"\nfallback_balance = \"least-request\"\nbackends = [{b}]\n\
         [plugin.latency]\nkind = \"routing\"\npath = '{}'\ntimeout = \"50ms\"\n",
        path.display(),
        b = (1..=4)
            .map(|i| format!("{{ address = \"10.0.0.{i}:80\" }}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let config = Config::parse(std::path::Path::new("bench.toml"), &text).expect("config");
    let registry = PluginRegistry::new();
    let runtime = tokio::runtime::Runtime::new().expect("tokio");
    let plugins = runtime
        .block_on(registry.prepare(&config, FileCheck::Reread))
        .map(|prepared| registry.commit(prepared))
        .expect("plugins load");
    let metrics = Metrics::new();
    let headers = HeaderMap::new();
    let req = sample_request(&headers);
    let ctx = PickContext {
        hash: None,
        now_ms: 1,
        slow_start: None,
        pinned: None,
    };
    let mut group = c.benchmark_group("pool_select_4_backends");
    for name in ["native", "wasm"] {
        let pool_config = config.pools[name].clone();
        let policies = PoolPolicies::resolve(&pool_config, &plugins, &metrics);
        let pool = Pool::build(pool_config, None, policies);
        group.bench_function(name, |b| {
            b.iter(|| routing::select(&pool, black_box(&ctx), Some(black_box(&req)), |_| false))
        });
    }
    group.finish();
}

criterion_group!(benches, plugin_call, pool_select);
criterion_main!(benches);
