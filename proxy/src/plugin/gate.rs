//! A bound on plugin calls running inline on the request path at once, so slow
//! plugins cannot hold every worker thread.
//!
//! A routing call runs synchronously on the worker serving the request; a plugin
//! that takes most of its deadline on every call would, under load, keep every
//! worker inside wasm while health checks, the admin API and requests to other pools
//! wait. The gate is a semaphore with one permit fewer than there are workers (at
//! least one). A call that finds every permit taken is shed (the caller takes its
//! native policy) when its plugin is a slow one: its recent calls took over
//! [`SLOW_CALL`] on average (time inside the plugin, not instantiation). A fast
//! plugin's calls last microseconds and hold no worker for long, so they run even
//! when the gate is full: a busy proxy with fast plugins never sheds.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Average call time above which a plugin counts as slow for the gate.
pub const SLOW_CALL: Duration = Duration::from_millis(2);

/// Folds one call's time (`sample_ns`) into a plugin's running average (`average_ns`),
/// weight 1/16. A sample counts for at most four times the average plus
/// [`SLOW_CALL`]: one call that stalled because its thread was descheduled does not
/// make a fast plugin look slow, while a plugin that is slow call after call
/// crosses [`SLOW_CALL`] within a few calls.
pub fn next_average(average_ns: u64, sample_ns: u64) -> u64 {
    let slow = SLOW_CALL.as_nanos() as u64;
    let sample = sample_ns.min(average_ns.saturating_mul(4).saturating_add(slow));
    average_ns - average_ns / 16 + sample / 16
}

/// See the module docs. One per plugin registry (one per proxy).
#[derive(Debug, Default)]
pub struct InlineGate {
    /// Permits, sized on first use from the worker count (the shards, or the
    /// runtime's threads).
    permits: OnceLock<usize>,
    in_use: AtomicUsize,
}

/// Leave to run one call; gives its permit back when dropped.
#[derive(Debug)]
pub struct Pass<'a> {
    gate: Option<&'a InlineGate>,
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if let Some(gate) = self.gate {
            gate.in_use.fetch_sub(1, Ordering::Release);
        }
    }
}

impl InlineGate {
    /// A gate with `permits` permits (tests; the proxy sizes its gate from the
    /// number of worker threads).
    pub fn with_permits(permits: usize) -> Self {
        let gate = Self::default();
        let _ = gate.permits.set(permits.max(1));
        gate
    }

    fn permits(&self) -> usize {
        *self.permits.get_or_init(|| {
            // On a shard, the workers are the shards, each a runtime of one thread.
            let workers = match crate::shard::siblings() {
                0 => tokio::runtime::Handle::try_current()
                    .map(|h| h.metrics().num_workers())
                    .unwrap_or_else(|_| {
                        std::thread::available_parallelism().map_or(1, |n| n.get())
                    }),
                shards => shards,
            };
            workers.saturating_sub(1).max(1)
        })
    }

    /// Takes a permit; when none is free, lets the call run anyway unless
    /// `typical_call` (the plugin's recent average) is over [`SLOW_CALL`]. `None`
    /// means: do not call the plugin now.
    pub fn enter(&self, typical_call: impl FnOnce() -> Duration) -> Option<Pass<'_>> {
        let permits = self.permits();
        let mut in_use = self.in_use.load(Ordering::Acquire);
        while in_use < permits {
            match self.in_use.compare_exchange_weak(
                in_use,
                in_use + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Some(Pass { gate: Some(self) }),
                Err(now) => in_use = now,
            }
        }
        (typical_call() <= SLOW_CALL).then_some(Pass { gate: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_stall_does_not_make_a_fast_plugin_slow_but_slowness_shows_quickly() {
        let slow = SLOW_CALL.as_nanos() as u64;
        let mut fast = 0;
        for _ in 0..100 {
            fast = next_average(fast, 5_000);
        }
        let stalled = next_average(fast, 50_000_000);
        assert!(stalled < slow / 4, "one 50 ms stall: {stalled} ns");
        let mut slowly = 0;
        let mut calls = 0;
        while slowly <= slow {
            slowly = next_average(slowly, 20_000_000);
            calls += 1;
        }
        assert!(calls <= 10, "a 20 ms plugin looks slow after {calls} calls");
    }

    #[test]
    fn a_full_gate_sheds_slow_plugins_only() {
        let gate = InlineGate::with_permits(1);
        let fast = || Duration::from_micros(20);
        let slow = || Duration::from_millis(20);
        let held = gate.enter(slow).expect("a free permit");
        assert!(held.gate.is_some());
        let neighbour = gate.enter(fast).expect("a fast plugin runs anyway");
        assert!(neighbour.gate.is_none());
        drop(neighbour);
        assert!(gate.enter(slow).is_none(), "a slow plugin is shed");
        drop(held);
        assert!(
            gate.enter(slow).is_some_and(|p| p.gate.is_some()),
            "the permit is back"
        );
    }
}
