//! The server as the fleet's host (see [`crate::cluster::Host`]): what a fleet's
//! tasks may ask of the instance they run in.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::Server;
use crate::cluster::Host;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::persist::{SavedState, Skipped};
use crate::rollout::Rollout;
use crate::state::Snapshot;

impl Host for Server {
    fn shutdown_token(&self) -> CancellationToken {
        Server::shutdown_token(self)
    }

    fn metrics(&self) -> &Arc<Metrics> {
        Server::metrics(self)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        Server::snapshot(self)
    }

    fn admin_address(&self) -> Option<SocketAddr> {
        Server::admin_address(self)
    }

    async fn apply(&self, config: Config) -> Result<(), String> {
        Server::apply(self, config).await.map_err(|e| e.to_string())
    }

    async fn converge_runtime_state(&self, shared: &SavedState) -> Vec<Skipped> {
        Server::converge_runtime_state(self, shared).await
    }

    fn rollout_ended(&self, rollout: &Rollout, rolled_back: Option<String>) {
        Server::rollout_ended(self, rollout, rolled_back);
    }
}
