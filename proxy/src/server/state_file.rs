//! The server's side of the state file (see [`crate::persist`]): restoring runtime
//! changes at start, asking the one writer to save them, flushing at shutdown.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::Server;
use crate::config::Config;
use crate::persist::{self, SavedState, Skipped, WriteResult};

impl Server {
    /// Starts the state-file writer task (it holds the server weakly).
    pub(super) fn start_state_writer(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let metrics = Arc::clone(&self.proxy.metrics);
        let task = tokio::spawn(self.state_writer.clone().run(
            move || weak.upgrade().and_then(|server| server.capture_state()),
            move |result| metrics.control().state_write(result == WriteResult::Ok),
            self.shutdown.child_token(),
        ));
        *self.state_task.lock() = Some(task);
    }

    /// The state to write and where, when a state file is configured.
    fn capture_state(&self) -> Option<(std::path::PathBuf, SavedState)> {
        let snapshot = self.snapshot.load_full();
        let path = snapshot.config.admin.state_file.clone()?;
        let mut saved = persist::capture(&snapshot, &self.overrides.lock());
        saved.members = self.members.lock().clone();
        Some((path, saved))
    }

    /// Asks for runtime changes to be written to the state file (if one is
    /// configured) without waiting for the write.
    pub fn save_state(&self) {
        self.state_writer.request();
    }

    /// Writes runtime changes to the state file and waits until they are on disk: an
    /// admin change answered as done survives a crash right after.
    pub async fn save_state_durably(&self) {
        let ticket = self.state_writer.request();
        self.state_writer.flushed(ticket).await;
    }

    /// Once accepting stopped (shutdown, upgrade): lets the writer finish what was
    /// asked, within `deadline`. Later calls return at once.
    pub async fn flush_state(&self, deadline: Duration) {
        let task = self.state_task.lock().take();
        if let Some(task) = task
            && tokio::time::timeout(deadline.max(Duration::from_millis(500)), task)
                .await
                .is_err()
        {
            warn!("the state file writer did not finish before the deadline");
        }
    }

    /// Reads the state file (if configured) and re-applies what it holds that the
    /// config and the admin API's rules still allow (see [`Server::restore_saved`]);
    /// a broken file is logged and ignored. Serving beats refusing to start.
    pub(super) async fn restore_state(&self, config: &Config) {
        let Some(path) = &config.admin.state_file else {
            return;
        };
        let saved = match persist::read(path) {
            Ok(saved) => saved,
            Err(e) => {
                self.proxy.metrics.control().state_skipped("file");
                tracing::error!(error = %e, "ignoring the state file");
                return;
            }
        };
        self.restore_saved(config, &saved, &path.display().to_string())
            .await;
    }

    /// Runtime changes handed over by the previous process in an upgrade (fresher
    /// than the state file, and there without one), checked like the file.
    pub async fn restore_runtime(&self, saved: &SavedState) {
        let config = Config::clone(&self.base_config.lock());
        self.restore_saved(&config, saved, "the previous process")
            .await;
    }

    /// Re-applies what `saved` holds that the config and the admin API's rules still
    /// allow: added and removed backends, drains, weights and route overrides.
    /// Entries that do not fit are skipped, each with a log line and a count.
    pub(super) async fn restore_saved(&self, config: &Config, saved: &SavedState, source: &str) {
        let mut skipped = Vec::new();
        // Checked against the running config, which holds the backends found in DNS.
        let running = self.snapshot.load_full();
        let members = persist::valid_members(
            &saved.members,
            &running.config,
            &self.address_policy(),
            &mut skipped,
        );
        if !members.is_empty() {
            *self.members.lock() = members;
            if let Err(e) = self.apply(config.clone()).await {
                warn!(error = %e, "cannot re-apply saved backend additions and removals");
            }
        }
        let overrides = persist::restore(&self.snapshot.load(), saved, &mut skipped);
        let routes = overrides.len();
        if !overrides.is_empty() {
            *self.overrides.lock() = overrides;
            if let Err(e) = self.apply(config.clone()).await {
                warn!(error = %e, "cannot re-apply saved route overrides");
            }
        }
        for Skipped {
            kind,
            entry,
            reason,
        } in &skipped
        {
            self.proxy.metrics.control().state_skipped(kind);
            warn!(
                file = source,
                kind, entry, reason, "state file entry skipped"
            );
        }
        info!(
            file = source,
            backends = saved.backends.len(),
            routes,
            skipped = skipped.len(),
            "runtime state restored"
        );
    }

    /// The runtime changes in effect now (drains, weights, overrides, added and
    /// removed backends), as the state file would hold them.
    pub fn runtime_state(&self) -> SavedState {
        let snapshot = self.snapshot.load_full();
        let mut saved = persist::capture(&snapshot, &self.overrides.lock());
        saved.members = self.members.lock().clone();
        saved
    }
}
