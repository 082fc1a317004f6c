//! Backend selection: which usable backend of a pool takes the next request.
//!
//! Each algorithm is built once per config snapshot from the pool's backends and then
//! answers [`Balancer::pick`] with a predicate saying which indexes are usable right
//! now (health, breaker, drain, and backends already tried by this request), so the
//! algorithms stay pure and testable without sockets.

mod balancer;
mod hash_ring;
mod least_request;
mod round_robin;
mod weighted;

use std::time::Duration;

pub use balancer::Balancer;
pub use hash_ring::{HashRing, hash_key};
pub use least_request::LeastRequest;
pub use round_robin::RoundRobin;
pub use weighted::SmoothWeighted;

use crate::config::HashOn;
use crate::upstream::Backend;

/// Per-request input to selection.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext {
    /// Hash of the request key for consistent hashing (`None` when the key is absent).
    pub hash: Option<u64>,
    /// Milliseconds on [`crate::clock`].
    pub now_ms: u64,
    /// The pool's slow-start window, if any.
    pub slow_start: Option<Duration>,
    /// The backend index the request's sticky cookie names: it takes the request
    /// while it is usable, whatever the balancer or a routing plugin would choose.
    pub pinned: Option<usize>,
}

/// The hash of a request's key (a header, a cookie or the client address), shared by
/// consistent hashing and sticky canary splits; `None` when the key is absent.
pub fn request_key_hash(
    on: &HashOn,
    headers: &http::HeaderMap,
    client_ip: Option<std::net::IpAddr>,
) -> Option<u64> {
    match on {
        HashOn::Header(name) => headers.get(name).map(|v| hash_key(v.as_bytes())),
        HashOn::Cookie(name) => headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(k, _)| k == name)
            .map(|(_, v)| hash_key(v.as_bytes())),
        HashOn::ClientIp => client_ip.map(|ip| match ip {
            std::net::IpAddr::V4(ip) => hash_key(&ip.octets()),
            std::net::IpAddr::V6(ip) => hash_key(&ip.octets()),
        }),
    }
}

/// Whether slow start lets this backend take a request now: a recovering backend is
/// skipped with probability `1 - factor`, so its share ramps up over the window.
pub(crate) fn slow_start_admits(backend: &Backend, ctx: &PickContext) -> bool {
    if ctx.slow_start.is_none() {
        return true;
    }
    let factor = backend.state.slow_start_factor(ctx.slow_start, ctx.now_ms);
    factor >= 1.0 || fastrand::f64() < factor
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::upstream::Backend;

    /// `n` backends on 10.0.0.x:80 with the given weights.
    pub fn backends(weights: &[u32]) -> Vec<Backend> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Backend::new(format!("10.0.0.{}:80", i + 1).parse().unwrap(), *w))
            .collect()
    }
}
