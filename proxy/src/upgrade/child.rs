//! The new process's side of an upgrade (see [`super`]).

use std::os::unix::net::UnixStream;
use std::sync::Arc;

use super::wire::{self, Link, Message};
use super::{SOCKET_ENV, STEP_TIMEOUT, UpgradeError};
use crate::persist::SavedState;
use crate::process::Lineage;
use crate::server::{InheritedSocket, InheritedSockets, Takeover};

/// What a new process received from the old one.
pub struct Incoming {
    /// Sockets, health and runtime changes to start from.
    pub takeover: Takeover,
    /// Where this process sits in the chain of upgrades.
    pub lineage: Lineage,
    stream: UnixStream,
}

impl Incoming {
    /// When started by an upgrade (`SWITCHYARD_UPGRADE_SOCKET` is set), connects to
    /// the old process and receives its sockets. Blocking: call it before the async
    /// runtime starts.
    pub fn receive_from_env() -> Result<Option<Incoming>, UpgradeError> {
        let Some(path) = std::env::var_os(SOCKET_ENV) else {
            return Ok(None);
        };
        let stream = UnixStream::connect(&path).map_err(|source| UpgradeError::Socket {
            path: path.into(),
            source,
        })?;
        stream.set_read_timeout(Some(STEP_TIMEOUT))?;
        let (handoff, fds) = wire::receive_handoff(&stream)?;
        stream.set_read_timeout(None)?;
        let sockets = handoff
            .sockets
            .into_iter()
            .zip(fds)
            .map(|(record, fd)| {
                InheritedSocket::handed_over(
                    record.name,
                    record.admin,
                    record.configured,
                    std::net::TcpListener::from(fd),
                )
            })
            .collect();
        Ok(Some(Incoming {
            takeover: Takeover {
                sockets: Arc::new(InheritedSockets::new(sockets)),
                health: handoff.health,
                state: Some(handoff.state),
            },
            lineage: Lineage {
                generation: handoff.generation.saturating_add(1),
                previous_pid: Some(handoff.pid),
            },
            stream,
        }))
    }

    /// Splits off the link for the rest of the exchange (needs the async runtime).
    pub fn link(self) -> Result<(Takeover, Lineage, ChildLink), UpgradeError> {
        let link = Link::new(self.stream)?;
        Ok((self.takeover, self.lineage, ChildLink { link }))
    }
}

/// The new process's end of the exchange, once it runs.
pub struct ChildLink {
    link: Link,
}

impl ChildLink {
    /// Says the new process serves traffic on the handed-over sockets, and waits
    /// until the old one stopped accepting: returns its final runtime changes.
    pub async fn ready(&mut self) -> Result<SavedState, UpgradeError> {
        self.link
            .send(&Message::Ready {
                pid: std::process::id(),
            })
            .await?;
        // The old process stops accepting and lets its state-file writes land first.
        let limit = STEP_TIMEOUT * 3;
        match tokio::time::timeout(limit, self.link.receive()).await {
            Ok(Ok(Message::Go { state })) => Ok(state),
            Ok(Ok(other)) => Err(UpgradeError::Protocol(format!(
                "expected go, got {other:?}"
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(UpgradeError::Timeout {
                step: "hear from the old process",
                limit,
            }),
        }
    }

    /// Says the admin listener is up too, and waits until systemd knows this as the
    /// main process.
    pub async fn serving(&mut self) -> Result<(), UpgradeError> {
        self.link.send(&Message::Serving).await?;
        match tokio::time::timeout(STEP_TIMEOUT, self.link.receive()).await {
            Ok(Ok(Message::Main)) => Ok(()),
            Ok(Ok(other)) => Err(UpgradeError::Protocol(format!(
                "expected main, got {other:?}"
            ))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(UpgradeError::Timeout {
                step: "become the main process",
                limit: STEP_TIMEOUT,
            }),
        }
    }

    /// Tells the old process this one could not start (it keeps serving).
    pub async fn failed(&mut self, error: &str) {
        let _ = self
            .link
            .send(&Message::Failed {
                error: error.to_string(),
            })
            .await;
    }
}
