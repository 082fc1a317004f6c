//! Cost of one routing decision through the wasm `latency` plugin with four
//! candidates: a warm, reused instance versus a fresh store and instance
//! (plus `init`) per call.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use switchyard::plugin::{
    InstanceReuse, PluginKind, PluginRuntime, PluginSpec, RouteCandidate, RouteRequest,
    shipped_plugin_dir,
};

fn plugin_call(c: &mut Criterion) {
    let runtime = PluginRuntime::new().expect("runtime");
    let path = shipped_plugin_dir().join("latency.wasm");
    let headers = HeaderMap::new();
    let req = RouteRequest {
        method: "GET",
        path: "/api/items",
        host: "example.test",
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
        headers: &headers,
    };
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

criterion_group!(benches, plugin_call);
criterion_main!(benches);
