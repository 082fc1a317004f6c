//! The old process's side of an upgrade (see [`super`]).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::process::{Child, Command};
use tracing::{error, info, warn};

use super::wire::{self, Handoff, Link, Message, SocketRecord};
use super::{SOCKET_ENV, START_TIMEOUT, STEP_TIMEOUT, UpgradeError};
use crate::server::Server;
use crate::systemd;

/// A finished handover: the new process serves; this one must drain and exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upgraded {
    /// The new process.
    pub pid: u32,
}

/// At most one upgrade runs at a time in a process.
static UPGRADING: AtomicBool = AtomicBool::new(false);

struct Running;

impl Running {
    fn claim() -> Result<Running, UpgradeError> {
        if UPGRADING.swap(true, Ordering::AcqRel) {
            Err(UpgradeError::InProgress)
        } else {
            Ok(Running)
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        UPGRADING.store(false, Ordering::Release);
    }
}

/// A private directory (mode 0700) holding the handover socket; removed on drop.
struct HandoverDir {
    path: PathBuf,
}

impl HandoverDir {
    fn create() -> Result<HandoverDir, UpgradeError> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::var_os("RUNTIME_DIRECTORY")
            .map(|dirs| {
                // systemd may list several, separated by ':'.
                let first = dirs
                    .to_string_lossy()
                    .split(':')
                    .next()
                    .unwrap_or("")
                    .to_string();
                PathBuf::from(first)
            })
            .filter(|p| p.is_dir())
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!(
            "switchyard-upgrade-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| UpgradeError::Socket {
                path: path.clone(),
                source,
            })?;
        Ok(HandoverDir { path })
    }

    fn socket(&self) -> PathBuf {
        self.path.join("handover.sock")
    }
}

impl Drop for HandoverDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The binary to start: this program's path. When a package upgrade replaced the
/// file, Linux reports the running one as `PATH (deleted)`; the new file at `PATH`
/// is the one wanted.
pub fn own_binary() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let text = exe.to_string_lossy();
    let path = match text.strip_suffix(" (deleted)") {
        Some(original) => PathBuf::from(original),
        None => exe.clone(),
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{} is gone", path.display()),
        ))
    }
}

/// Hands this process's sockets, health and runtime state to a new process of the
/// same binary path and, once it serves, stops accepting. On `Ok`, the caller
/// drains and exits; on an error that is not [fatal](UpgradeError::is_fatal), this
/// process goes on serving.
pub async fn upgrade(server: &Arc<Server>) -> Result<Upgraded, UpgradeError> {
    let _running = Running::claim()?;
    if !server.is_ready() {
        return Err(UpgradeError::ShuttingDown);
    }
    let binary = own_binary().map_err(UpgradeError::Binary)?;
    let dir = HandoverDir::create()?;
    let socket_path = dir.socket();
    let listener =
        tokio::net::UnixListener::bind(&socket_path).map_err(|source| UpgradeError::Socket {
            path: socket_path.clone(),
            source,
        })?;
    let mut child = spawn(&binary, &socket_path)?;
    let pid = child.id().unwrap_or(0);
    info!(binary = %binary.display(), pid, "upgrade: started the new process");
    match hand_over(server, &listener, &mut child).await {
        Ok(link) => {
            drop(listener);
            finish(server, link, &mut child, pid).await?;
            info!(pid, "upgrade: the new process serves; draining and exiting");
            Ok(Upgraded { pid })
        }
        Err(e) => {
            error!(error = %e, "upgrade failed; this process keeps serving");
            stop(&mut child).await;
            Err(e)
        }
    }
}

fn spawn(binary: &Path, socket: &Path) -> Result<Child, UpgradeError> {
    let mut command = Command::new(binary);
    command
        .args(std::env::args_os().skip(1))
        .env(SOCKET_ENV, socket)
        // The sockets come over the handover socket, not from systemd; the watchdog
        // applies to whichever process becomes the main one.
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .kill_on_drop(false);
    command.spawn().map_err(|source| UpgradeError::Spawn {
        binary: binary.to_path_buf(),
        source,
    })
}

/// Steps 1 and 2: the handoff, then waiting for the new process to serve.
async fn hand_over(
    server: &Server,
    listener: &tokio::net::UnixListener,
    child: &mut Child,
) -> Result<Link, UpgradeError> {
    let stream = watched(child, "connect", START_TIMEOUT, async {
        Ok(listener.accept().await?.0)
    })
    .await?;
    let handover = server.handover()?;
    let mut sockets = Vec::new();
    let mut fds = Vec::new();
    for (name, configured, socket) in handover.listeners {
        sockets.push(SocketRecord {
            name: Some(name),
            admin: false,
            configured,
        });
        fds.push(socket);
    }
    if let Some((configured, socket)) = handover.admin {
        sockets.push(SocketRecord {
            name: None,
            admin: true,
            configured,
        });
        fds.push(socket);
    }
    let lineage = crate::process::lineage();
    let handoff = Handoff {
        version: wire::VERSION,
        pid: std::process::id(),
        generation: lineage.generation,
        sockets,
        health: handover.health,
        state: handover.state,
    };
    let stream = stream.into_std()?;
    stream.set_nonblocking(false)?;
    let stream = tokio::task::spawn_blocking(move || {
        wire::send_handoff(&stream, &handoff, &wire::borrow_all(&fds)).map(|()| stream)
    })
    .await
    .map_err(|e| UpgradeError::Protocol(e.to_string()))??;
    let mut link = Link::new(stream)?;
    match watched(child, "start serving", START_TIMEOUT, link.receive()).await? {
        Message::Ready { .. } => Ok(link),
        Message::Failed { error } => Err(UpgradeError::Refused(error)),
        other => Err(UpgradeError::Protocol(format!(
            "expected ready, got {other:?}"
        ))),
    }
}

/// Steps 3 and 4: stop accepting, hand over the final state, make the new process
/// the main one.
async fn finish(
    server: &Server,
    mut link: Link,
    child: &mut Child,
    pid: u32,
) -> Result<(), UpgradeError> {
    server.stop_accepting();
    server.flush_state(STEP_TIMEOUT).await;
    let state = server.runtime_state();
    let lost = |e: UpgradeError| UpgradeError::Lost(e.to_string());
    link.send(&Message::Go { state }).await.map_err(lost)?;
    match watched(child, "take over", STEP_TIMEOUT, link.receive())
        .await
        .map_err(lost)?
    {
        Message::Serving => {}
        other => return Err(lost(UpgradeError::Protocol(format!("{other:?}")))),
    }
    let status = format!("upgraded: pid {pid} serves, this process drains");
    systemd::hand_over(pid, &status);
    link.send(&Message::Main).await.map_err(lost)?;
    Ok(())
}

/// Runs `step` unless the child exits first or `limit` passes. The step is polled
/// first: what a failing child said before exiting is already readable when its
/// exit is seen, and says more than the exit status.
async fn watched<T>(
    child: &mut Child,
    step: &'static str,
    limit: Duration,
    work: impl std::future::Future<Output = Result<T, UpgradeError>>,
) -> Result<T, UpgradeError> {
    tokio::select! {
        biased;
        result = tokio::time::timeout(limit, work) => match result {
            Ok(result) => result,
            Err(_) => Err(UpgradeError::Timeout { step, limit }),
        },
        status = child.wait() => match status {
            Ok(status) => Err(UpgradeError::Exited(status)),
            Err(e) => Err(UpgradeError::Io(e)),
        },
    }
}

/// Stops a new process that did not take over: SIGTERM, so connections it may
/// already have accepted on the shared sockets finish; SIGKILL if it lingers.
async fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    let terminated = child
        .id()
        .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
        .is_some_and(|pid| {
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
        });
    if terminated && tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
        return;
    }
    if let Err(e) = child.start_kill() {
        warn!(error = %e, "cannot stop the new process");
        return;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

/// How long a new process that failed may take to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);
