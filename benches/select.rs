//! Criterion benchmarks of the per-request hot path: route matching, backend selection, breaker.

fn main() {}
