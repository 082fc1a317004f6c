//! Waiting for a draining backend to empty: plain requests finish on their own,
//! upgraded tunnels get a grace period and are then closed.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;
use tracing::info;

use super::{AdminState, Backend};

const POLL: Duration = Duration::from_millis(20);

/// How a drain wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainEnd {
    /// Nothing in flight any more: the backend is `drained`.
    Drained,
    /// The operator put the backend back (enable, disable) before it emptied.
    Interrupted,
    /// `timeout` passed with requests still in flight.
    TimedOut,
}

/// Waits until a draining backend has nothing in flight. Tunnels still open after
/// `grace` are closed; with `timeout`, gives up waiting after that long.
pub async fn wait_drained(
    backend: &Backend,
    grace: Duration,
    timeout: Option<Duration>,
) -> DrainEnd {
    let state = &backend.state;
    let started = Instant::now();
    let mut tunnels_closed = false;
    loop {
        match state.settle_drain() {
            AdminState::Drained => {
                info!(backend = %backend.key, backend_name = backend.name.as_deref(), "backend drained: no request in flight");
                return DrainEnd::Drained;
            }
            AdminState::Draining => {}
            _ => return DrainEnd::Interrupted,
        }
        let elapsed = started.elapsed();
        if !tunnels_closed && elapsed >= grace {
            let open = state.tunnels.load(Ordering::Acquire);
            if open > 0 {
                info!(backend = %backend.key, backend_name = backend.name.as_deref(), tunnels = open, grace_ms = grace.as_millis() as u64,
                    "drain grace over: closing upgraded connections");
                state.close_tunnels();
                tunnels_closed = true;
            }
        }
        if timeout.is_some_and(|t| elapsed >= t) {
            return DrainEnd::TimedOut;
        }
        tokio::time::sleep(POLL).await;
    }
}
