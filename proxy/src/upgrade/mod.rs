//! Zero-downtime binary upgrade (`switchyard upgrade`, `POST /upgrade`, SIGUSR2).
//!
//! The running process (the old one) starts its own binary again (the file at its
//! path now: a package upgrade replaced it) with the same arguments and
//! `SWITCHYARD_UPGRADE_SOCKET` naming a Unix socket in a private directory. Then:
//!
//! 1. The new process connects; the old one sends duplicates of its listening
//!    sockets (traffic and admin, with `SCM_RIGHTS`), each backend's health and the
//!    runtime changes (drains, weights, switches, splits, added and removed backends).
//! 2. The new process loads the config from the file, starts on those sockets
//!    (both processes now accept on the same sockets, so no connection is refused)
//!    and says `ready`.
//! 3. The old process stops accepting (traffic and admin), lets its state-file
//!    writes land, and sends `go` with its final runtime changes.
//! 4. The new process applies them, starts its admin listener and says `serving`;
//!    the old one tells systemd `MAINPID=` the new one, then sends `main`, and the
//!    new one reports `READY=1`.
//! 5. The old process finishes its in-flight requests and tunnels within
//!    `limits.drain_timeout` and exits 0.
//!
//! A new process that fails before step 3 (bad config, crash, timeout) is stopped,
//! and the old one goes on serving as if nothing happened; the error says why. A
//! new process lost after step 3 leaves no one accepting, so the old one exits with
//! a failure and systemd's `Restart=on-failure` starts afresh.

pub mod child;
pub mod parent;
mod wire;

use std::time::Duration;

pub use child::Incoming;
pub use parent::{Upgraded, upgrade};

/// The variable that tells a new process where to fetch its sockets.
pub const SOCKET_ENV: &str = "SWITCHYARD_UPGRADE_SOCKET";

/// How long the new process may take to connect and then to start serving
/// (loading the config and compiling plugins included).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long each later step of the exchange may take.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("an upgrade is already in progress")]
    InProgress,
    #[error("the proxy is shutting down")]
    ShuttingDown,
    #[error("cannot find this program's binary: {0}")]
    Binary(#[source] std::io::Error),
    #[error("cannot set up the handover socket in {path}: {source}")]
    Socket {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the new process exited ({0}) before taking over; the old one keeps serving")]
    Exited(std::process::ExitStatus),
    #[error("the new process failed to start: {0}; the old one keeps serving")]
    Refused(String),
    #[error("the new process did not {step} within {}s", .limit.as_secs())]
    Timeout { step: &'static str, limit: Duration },
    #[error("the handover failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the handover message is malformed: {0}")]
    Protocol(String),
    #[error("the new process stopped answering after the old one stopped accepting: {0}")]
    Lost(String),
}

impl UpgradeError {
    /// Whether the old process can no longer serve (it stopped accepting before the
    /// new process failed) and must exit so the service manager restarts it.
    pub fn is_fatal(&self) -> bool {
        matches!(self, UpgradeError::Lost(_))
    }
}
