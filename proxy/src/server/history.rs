//! The ticker behind each backend's [`History`](crate::history::History): every
//! [`INTERVAL`] it copies every backend's counters into its ring. It reads what the
//! request path counts anyway, so serving pays nothing for it.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use crate::history::INTERVAL;
use crate::state::Snapshot;
use crate::timeline::unix_ms;

/// Takes one point of every backend of the current snapshot.
fn sample(snapshot: &Snapshot, at_ms: u64) {
    for pool in snapshot.pools.iter_sorted() {
        for backend in &pool.backends {
            backend.state.history.record(at_ms, backend.state.totals());
        }
    }
}

/// Samples every [`INTERVAL`] until `stop` fires. The first reading is taken at once,
/// so the first point exists one interval after start.
pub(super) async fn run(snapshot: Arc<ArcSwap<Snapshot>>, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => sample(&snapshot.load(), unix_ms()),
            () = stop.cancelled() => break,
        }
    }
}
