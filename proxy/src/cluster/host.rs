//! What the fleet needs from the proxy instance it coordinates. The server
//! implements it; the fleet's tasks hold it weakly, so they end with the server,
//! and the fleet sits below the server instead of importing it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::persist::{SavedState, Skipped};
use crate::rollout::Rollout;
use crate::state::Snapshot;

/// The running instance as the fleet sees it; see the module docs.
pub trait Host: Send + Sync + 'static {
    /// Fires when the instance shuts down; the fleet's tasks stop with it.
    fn shutdown_token(&self) -> CancellationToken;

    /// The instance's metrics, where the fleet's own are registered.
    fn metrics(&self) -> &Arc<Metrics>;

    /// The live snapshot (backends and config, for heartbeats and rollouts).
    fn snapshot(&self) -> Arc<Snapshot>;

    /// Where the instance's admin API listens, published in its heartbeat.
    fn admin_address(&self) -> Option<SocketAddr>;

    /// Applies a shared config merged over the instance's own settings; the error
    /// says why it cannot run here (the running config stays).
    fn apply(&self, config: Config) -> impl Future<Output = Result<(), String>> + Send;

    /// Brings the instance's runtime changes (drains, weights, routes, backends) to
    /// the fleet's shared state; returns the entries that do not fit its config.
    fn converge_runtime_state(
        &self,
        shared: &SavedState,
    ) -> impl Future<Output = Vec<Skipped>> + Send;

    /// A fleet rollout this instance led has ended (`rolled_back` says why, if it
    /// did): counted and alerted on like a local one.
    fn rollout_ended(&self, rollout: &Rollout, rolled_back: Option<String>);
}
