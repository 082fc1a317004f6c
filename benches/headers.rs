//! Cost of the header rewriting every proxied request goes through: the request id,
//! hop-by-hop removal, `X-Forwarded-*` and `Host` on a typical browser request, the
//! copy of the head each attempt sends, and the response's hop-by-hop removal plus
//! request id. Figures are nanoseconds per request; compare ratios between runs.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header};
use switchyard::proxy::{
    REQUEST_ID, ensure_request_id, forwarded_for, set_forwarded, strip_hop_by_hop,
};

/// The head a browser sends for a page.
fn browser_request() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "app.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("connection", "keep-alive"),
        (
            "cookie",
            "session=6f1c2a9be07d4c55a3c1d2e3f4a5b6c7; theme=dark",
        ),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "none"),
        ("priority", "u=0, i"),
    ] {
        h.append(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h
}

/// A typical answer head from a backend.
fn backend_response() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("content-type", "text/html; charset=utf-8"),
        ("content-length", "5120"),
        ("cache-control", "private, max-age=0"),
        ("date", "Tue, 25 Nov 2025 17:43:27 GMT"),
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("etag", "\"5f1c2a9b\""),
    ] {
        h.append(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h
}

fn header_rewrite(c: &mut Criterion) {
    // Formatted once per connection, as the listener does.
    let client = forwarded_for(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)));
    let request = browser_request();
    let host = HeaderValue::from_static("app.example.com");
    let mut group = c.benchmark_group("header_rewrite");
    group.bench_function("request", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |headers| {
                let id = ensure_request_id(headers);
                strip_hop_by_hop(headers, false);
                set_forwarded(headers, &client, "http", Some(&host));
                headers.insert(header::HOST, host.clone());
                black_box(id)
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("copy_for_one_attempt", |b| {
        b.iter(|| black_box(black_box(&request).clone()))
    });
    let response = backend_response();
    let id = HeaderValue::from_static("4f1c2a9be07d4c55a3c1d2e3f4a5b6c7");
    group.bench_function("response", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |headers| {
                strip_hop_by_hop(headers, false);
                headers.insert(REQUEST_ID.clone(), id.clone());
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, header_rewrite);
criterion_main!(benches);
