//! A pool's balancer: the algorithm its config names, built from its backends.

use super::PickContext;
use super::hash_ring::HashRing;
use super::least_request::LeastRequest;
use super::round_robin::RoundRobin;
use super::weighted::SmoothWeighted;
use crate::config::BalanceKind;
use crate::upstream::Backend;

/// A pool's selection algorithm with its state.
#[derive(Debug)]
pub enum Balancer {
    RoundRobin(RoundRobin),
    Weighted(SmoothWeighted),
    LeastRequest(LeastRequest),
    Hash(HashRing),
}

impl Balancer {
    /// Builds the algorithm for `backends`.
    pub fn build(kind: &BalanceKind, backends: &[Backend]) -> Self {
        match kind {
            BalanceKind::RoundRobin => Balancer::RoundRobin(RoundRobin::default()),
            BalanceKind::Weighted => Balancer::Weighted(SmoothWeighted::new(backends.len())),
            BalanceKind::LeastRequest => Balancer::LeastRequest(LeastRequest),
            BalanceKind::Hash(_) => Balancer::Hash(HashRing::build(backends)),
        }
    }

    /// Chooses the index of a usable backend, or `None` when none is usable.
    pub fn pick(
        &self,
        backends: &[Backend],
        ctx: &PickContext,
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        if backends.is_empty() {
            return None;
        }
        match self {
            Balancer::RoundRobin(rr) => rr.pick(backends, ctx, usable),
            Balancer::Weighted(w) => w.pick(backends, ctx, usable),
            Balancer::LeastRequest(lr) => lr.pick(backends, ctx, usable),
            Balancer::Hash(ring) => match ctx.hash {
                Some(h) => ring.pick(h, usable),
                None => RoundRobin::default().pick(backends, ctx, usable),
            },
        }
    }
}
