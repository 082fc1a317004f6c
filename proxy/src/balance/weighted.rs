//! Smooth weighted round-robin (nginx's algorithm): weights 5,1,1 give a,a,b,a,c,a,a
//! rather than bursts, and the effective weight follows slow start and degraded health.

use parking_lot::Mutex;

use super::PickContext;
use crate::upstream::Backend;

/// Smooth weighted round-robin state: one running score per backend.
#[derive(Debug)]
pub struct SmoothWeighted {
    current: Mutex<Vec<f64>>,
}

impl SmoothWeighted {
    /// State for `n` backends.
    pub fn new(n: usize) -> Self {
        Self {
            current: Mutex::new(vec![0.0; n]),
        }
    }

    /// Raises every usable backend's score by its weight and takes the highest.
    /// The critical section is a short loop with no I/O.
    pub fn pick(
        &self,
        backends: &[Backend],
        ctx: &PickContext,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut current = self.current.lock();
        if current.len() != backends.len() {
            current.resize(backends.len(), 0.0);
        }
        let mut total = 0.0;
        let mut best: Option<usize> = None;
        for (i, backend) in backends.iter().enumerate() {
            if !usable(i) {
                continue;
            }
            let weight = backend.state.effective_weight(ctx.slow_start, ctx.now_ms)
                * f64::from(backend.state.health.weight_percent())
                / 100.0;
            if weight <= 0.0 {
                continue;
            }
            current[i] += weight;
            total += weight;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        current[chosen] -= total;
        Some(chosen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn smooth_sequence_matches_nginx() {
        let b = backends(&[5, 1, 1]);
        let w = SmoothWeighted::new(3);
        let ctx = PickContext::default();
        let picks: Vec<_> = (0..7)
            .map(|_| w.pick(&b, &ctx, |_| true).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    /// A backend back from an outage ramps from 5 % of its weight to all of it over
    /// the slow-start window, on the proxy's clock (paused here: 10 s take none).
    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_a_recovered_backend_up_over_the_window() {
        use std::sync::atomic::Ordering;
        use std::time::Duration;

        use crate::clock;

        let b = backends(&[1, 1]);
        b[1].state
            .usable_since_ms
            .store(clock::now_ms(), Ordering::Relaxed);
        let w = SmoothWeighted::new(2);
        let share_of_recovered = || {
            let ctx = PickContext {
                now_ms: clock::now_ms(),
                slow_start: Some(Duration::from_secs(10)),
                ..PickContext::default()
            };
            (0..1000)
                .filter(|_| w.pick(&b, &ctx, |_| true) == Some(1))
                .count()
        };
        let mut shares = Vec::new();
        for _ in 0..=4 {
            shares.push(share_of_recovered());
            tokio::time::advance(Duration::from_millis(2500)).await;
        }
        // Effective weights 0.05, 0.25, 0.5, 0.75 and 1 beside the other backend's 1.
        let expected = [47, 200, 333, 428, 500];
        for (share, want) in shares.iter().zip(expected) {
            assert!(
                share.abs_diff(want) <= 2,
                "shares {shares:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn zero_weight_gets_nothing() {
        let b = backends(&[0, 3]);
        let w = SmoothWeighted::new(2);
        let ctx = PickContext::default();
        assert!((0..10).all(|_| w.pick(&b, &ctx, |_| true) == Some(1)));
    }
}
