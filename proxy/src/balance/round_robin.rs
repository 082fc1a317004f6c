//! Plain round-robin: one shared atomic counter, skipping unusable backends.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{PickContext, slow_start_admits};
use crate::upstream::Backend;

/// Each usable backend in turn.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Next usable backend after the last one handed out.
    pub fn pick(
        &self,
        backends: &[Backend],
        ctx: &PickContext,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let n = backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut fallback = None;
        for step in 0..n {
            let i = (start + step) % n;
            if !usable(i) {
                continue;
            }
            if slow_start_admits(&backends[i], ctx) {
                return Some(i);
            }
            fallback.get_or_insert(i);
        }
        fallback
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn cycles_and_skips_unusable() {
        let b = backends(&[1, 1, 1]);
        let rr = RoundRobin::default();
        let ctx = PickContext::default();
        let picks: Vec<_> = (0..6)
            .map(|_| rr.pick(&b, &ctx, |_| true).unwrap())
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
        let picks: Vec<_> = (0..4)
            .map(|_| rr.pick(&b, &ctx, |i| i != 1).unwrap())
            .collect();
        assert!(picks.iter().all(|&i| i != 1));
        assert_eq!(rr.pick(&b, &ctx, |_| false), None);
    }
}
