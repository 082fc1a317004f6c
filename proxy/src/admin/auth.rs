//! The bearer token: accepted only from `Authorization: Bearer`, compared in
//! constant time without revealing its length, and guessed at most a few times a
//! minute per client.

use std::collections::HashMap;
use std::net::IpAddr;

use http::{HeaderMap, header};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock;

/// Wrong tokens a client may present before it must wait.
pub const FAILURE_BURST: u32 = 5;
/// A client earns one more try this often (so at most 30 guesses a minute).
pub const FAILURE_REFILL_MS: u64 = 2_000;
/// Clients tracked at once; beyond it the oldest records are dropped.
const MAX_CLIENTS: usize = 4_096;

/// What the `Authorization` header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The configured token (or none is configured).
    Valid,
    /// No bearer token at all.
    Missing,
    /// A bearer token other than the configured one.
    Wrong,
}

/// Checks the request's bearer token against `expected`.
pub fn check(headers: &HeaderMap, expected: Option<&str>) -> Verdict {
    let Some(expected) = expected else {
        return Verdict::Valid;
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match presented {
        None => Verdict::Missing,
        Some(token) if same_secret(token.as_bytes(), expected.as_bytes()) => Verdict::Valid,
        Some(_) => Verdict::Wrong,
    }
}

/// Compares two secrets in time that depends on neither content nor length: both
/// are hashed to 32 bytes, which are compared without an early exit.
fn same_secret(presented: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    a.as_slice().ct_eq(b.as_slice()).into()
}

/// Per-client budget of wrong tokens (a token bucket: [`FAILURE_BURST`] tries,
/// one more every [`FAILURE_REFILL_MS`]). Only wrong tokens spend it: a request
/// with no token guesses nothing, and a web page cannot add an `Authorization`
/// header to a cross-site request, so it cannot lock the operator out.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    clients: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tries: u32,
    updated_ms: u64,
}

impl Bucket {
    fn refill(&mut self, now_ms: u64) {
        let earned = now_ms.saturating_sub(self.updated_ms) / FAILURE_REFILL_MS;
        if earned > 0 {
            self.tries = (self.tries + earned as u32).min(FAILURE_BURST);
            self.updated_ms += earned * FAILURE_REFILL_MS;
        }
        if self.tries == FAILURE_BURST {
            self.updated_ms = now_ms;
        }
    }
}

impl FailureLimiter {
    /// `Some(seconds to wait)` when `client` has no tries left.
    pub fn blocked(&self, client: IpAddr) -> Option<u64> {
        self.blocked_at(client, clock::now_ms())
    }

    fn blocked_at(&self, client: IpAddr, now_ms: u64) -> Option<u64> {
        let mut clients = self.clients.lock();
        let bucket = clients.get_mut(&client)?;
        bucket.refill(now_ms);
        (bucket.tries == 0).then(|| {
            let next = bucket.updated_ms + FAILURE_REFILL_MS;
            next.saturating_sub(now_ms).div_ceil(1000).max(1)
        })
    }

    /// Spends one try of `client` for a wrong token.
    pub fn failed(&self, client: IpAddr) {
        self.failed_at(client, clock::now_ms());
    }

    fn failed_at(&self, client: IpAddr, now_ms: u64) {
        let mut clients = self.clients.lock();
        if clients.len() >= MAX_CLIENTS && !clients.contains_key(&client) {
            // Forget the clients that are back to a full budget, or failing that
            // the one idle longest: memory stays bounded whoever knocks.
            clients.retain(|_, b| {
                b.refill(now_ms);
                b.tries < FAILURE_BURST
            });
            if clients.len() >= MAX_CLIENTS
                && let Some(oldest) = clients
                    .iter()
                    .min_by_key(|(_, b)| b.updated_ms)
                    .map(|(ip, _)| *ip)
            {
                clients.remove(&oldest);
            }
        }
        let bucket = clients.entry(client).or_insert(Bucket {
            tries: FAILURE_BURST,
            updated_ms: now_ms,
        });
        bucket.refill(now_ms);
        bucket.tries = bucket.tries.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(authorization: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, authorization.parse().unwrap());
        h
    }

    #[test]
    fn only_a_bearer_header_with_the_exact_token_passes() {
        let token = Some("0123456789abcdef-secret");
        assert_eq!(check(&HeaderMap::new(), None), Verdict::Valid);
        assert_eq!(check(&HeaderMap::new(), token), Verdict::Missing);
        assert_eq!(
            check(&headers("Bearer 0123456789abcdef-secret"), token),
            Verdict::Valid
        );
        assert_eq!(
            check(&headers("bearer 0123456789abcdef-secret"), token),
            Verdict::Valid
        );
        assert_eq!(
            check(&headers("Bearer 0123456789abcdef-secreT"), token),
            Verdict::Wrong
        );
        assert_eq!(
            check(&headers("Bearer 0123456789abcdef"), token),
            Verdict::Wrong
        );
        assert_eq!(
            check(&headers("Basic 0123456789abcdef-secret"), token),
            Verdict::Missing
        );
    }

    #[test]
    fn wrong_tokens_are_limited_per_client_and_the_budget_comes_back() {
        let limiter = FailureLimiter::default();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = 1_000_000;
        for _ in 0..FAILURE_BURST {
            assert_eq!(limiter.blocked_at(a, t0), None);
            limiter.failed_at(a, t0);
        }
        assert_eq!(limiter.blocked_at(a, t0), Some(2));
        assert_eq!(
            limiter.blocked_at(b, t0),
            None,
            "other clients are not affected"
        );
        assert_eq!(limiter.blocked_at(a, t0 + FAILURE_REFILL_MS - 1), Some(1));
        assert_eq!(limiter.blocked_at(a, t0 + FAILURE_REFILL_MS), None);
        limiter.failed_at(a, t0 + FAILURE_REFILL_MS);
        assert!(limiter.blocked_at(a, t0 + FAILURE_REFILL_MS).is_some());
    }
}
