//! Least-request by power of two random choices: sample two usable backends and take
//! the one with fewer in-flight requests per unit of weight (Envoy's and linkerd's choice).

use std::sync::atomic::Ordering;

use super::{PickContext, slow_start_admits};
use crate::upstream::Backend;

/// Stateless: the load is read from each backend's in-flight counter.
#[derive(Debug, Default)]
pub struct LeastRequest;

impl LeastRequest {
    /// Picks the less loaded of two random usable backends.
    pub fn pick(
        &self,
        backends: &[Backend],
        ctx: &PickContext,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = backends.len();
        let first = random_usable(n, &usable, None)?;
        let Some(second) = random_usable(n, &usable, Some(first)) else {
            return Some(first);
        };
        let load = |i: usize| {
            let b = &backends[i];
            let weight = b
                .state
                .effective_weight(ctx.slow_start, ctx.now_ms)
                .max(0.01);
            (f64::from(b.state.in_flight.load(Ordering::Relaxed)) + 1.0) / weight
        };
        let (a, b) = (load(first), load(second));
        let winner = if a < b {
            first
        } else if b < a {
            second
        } else if fastrand::bool() {
            first
        } else {
            second
        };
        if slow_start_admits(&backends[winner], ctx) {
            Some(winner)
        } else {
            Some(if winner == first { second } else { first })
        }
    }
}

/// A uniformly random usable index other than `except`: a few random probes, then a scan
/// from a random start so a mostly-unusable pool still answers in O(n).
fn random_usable(
    n: usize,
    usable: &impl Fn(usize) -> bool,
    except: Option<usize>,
) -> Option<usize> {
    let ok = |i: usize| Some(i) != except && usable(i);
    for _ in 0..3 {
        let i = fastrand::usize(..n);
        if ok(i) {
            return Some(i);
        }
    }
    let start = fastrand::usize(..n);
    (0..n).map(|s| (start + s) % n).find(|&i| ok(i))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn prefers_the_less_loaded_backend() {
        let b = backends(&[1, 1]);
        b[0].state.in_flight.store(10, Ordering::Relaxed);
        let ctx = PickContext::default();
        assert!((0..50).all(|_| LeastRequest.pick(&b, &ctx, |_| true) == Some(1)));
    }

    #[test]
    fn single_usable_backend_is_chosen() {
        let b = backends(&[1, 1, 1]);
        let ctx = PickContext::default();
        assert!((0..50).all(|_| LeastRequest.pick(&b, &ctx, |i| i == 2) == Some(2)));
        assert_eq!(LeastRequest.pick(&b, &ctx, |_| false), None);
    }
}
