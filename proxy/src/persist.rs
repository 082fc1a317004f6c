//! The state file: runtime changes made through the admin API (drain, disable,
//! weights, route switches and splits, added and removed backends), written after
//! each change and read back at start, so a restart does not undo a deploy in
//! progress (HAProxy's `server-state-file`, always on when configured).
//!
//! Writes go through one [`StateWriter`] task: concurrent changes never race for a
//! file, a burst of changes costs one write, and the blocking work (write, fsync of
//! the file and its directory, rename) runs on a blocking thread, never on an async
//! worker. Each write goes to a fresh temp file created exclusively with mode 0600
//! and is renamed over the old file, so a crash leaves the old or the new state,
//! never a mix; no step follows a symlink.
//!
//! Reading trusts nothing: every entry is checked against the running config with
//! the admin API's own rules ([`restore`], [`valid_members`]); a bad entry is skipped
//! and reported, and the rest is restored.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::address_policy::AddressPolicy;
use crate::config::{Config, MAX_WEIGHT};
use crate::membership::{Member, RuntimeBackends};
use crate::state::Snapshot;
use crate::traffic::{RouteOverride, RouteTarget};
use crate::upstream::AdminState;

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a Switchyard state file: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is a symbolic link; the state file is never read or written through one")]
    Symlink { path: PathBuf },
}

/// What the file holds.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SavedState {
    /// `pool/address` → runtime state of that backend.
    #[serde(default)]
    pub backends: BTreeMap<String, SavedBackend>,
    /// Route name → override.
    #[serde(default)]
    pub routes: BTreeMap<String, SavedRoute>,
    /// Backends added or removed at run time (see [`crate::membership`]).
    #[serde(default)]
    pub members: RuntimeBackends,
}

/// A backend's operator-set state.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedBackend {
    pub admin_state: String,
    pub weight: u32,
    pub config_weight: u32,
}

/// A route override and the config pool it was made against.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct SavedRoute {
    pub config_pool: String,
    pub pools: BTreeMap<String, u32>,
    #[serde(default)]
    pub sticky: Option<String>,
}

/// An entry of the file that was not restored, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// `backend`, `route`, `added` or `removed`: the metric label.
    pub kind: &'static str,
    /// The entry as the file names it (`pool/address`, a route name).
    pub entry: String,
    pub reason: String,
}

impl Skipped {
    fn new(kind: &'static str, entry: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            kind,
            entry: entry.into(),
            reason: reason.into(),
        }
    }
}

/// Captures the runtime state that differs from the config.
pub fn capture(snapshot: &Snapshot, overrides: &crate::traffic::Overrides) -> SavedState {
    let mut saved = SavedState::default();
    for pool in snapshot.pools.iter_sorted() {
        for b in &pool.backends {
            let config_weight = pool.config_weight(b.address).unwrap_or(1);
            let weight = b.state.weight.load(Ordering::Relaxed);
            let admin = b.state.admin_state();
            if admin != AdminState::Active || weight != config_weight {
                saved.backends.insert(
                    format!("{}/{}", pool.name, b.key),
                    SavedBackend {
                        admin_state: admin.as_str().to_string(),
                        weight,
                        config_weight,
                    },
                );
            }
        }
    }
    for (route, o) in overrides {
        let (pools, sticky) = match &o.target {
            RouteTarget::Pool(p) => (BTreeMap::from([(p.to_string(), 100)]), None),
            RouteTarget::Split { pools, sticky } => (
                pools.iter().map(|(p, w)| (p.to_string(), *w)).collect(),
                sticky.as_ref().map(crate::traffic::sticky_name),
            ),
        };
        saved.routes.insert(
            route.clone(),
            SavedRoute {
                config_pool: o.config_pool.clone(),
                pools,
                sticky,
            },
        );
    }
    saved
}

/// Temp files of concurrent writers (tests run several proxies per process) never
/// share a name.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes the file atomically. BLOCKING (fsync): run it on a blocking thread, as
/// [`StateWriter`] does.
///
/// The state goes to a new temp file in the same directory, created exclusively
/// (never an existing file, never through a symlink) with mode 0600; it is synced,
/// renamed over `path` (which replaces a symlink at `path` rather than following
/// it), and the directory is synced so the rename itself survives a crash.
pub fn write(path: &Path, state: &SavedState) -> Result<(), StateFileError> {
    let io = |source| StateFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let text = serde_json::to_vec_pretty(state).map_err(|source| StateFileError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    let directory = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_string());
    let temp = directory.join(format!(
        ".{name}.{}.{}.{:08x}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    ));
    let mut file = create_exclusive(&temp).map_err(io)?;
    let written = file
        .write_all(&text)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io(e));
    }
    std::fs::File::open(&directory)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(unix)]
fn create_exclusive(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
fn create_exclusive(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(not(unix))]
fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// Reads the file; a missing file is an empty state. A symlink is refused.
pub fn read(path: &Path) -> Result<SavedState, StateFileError> {
    use std::io::Read;
    let mut bytes = Vec::new();
    let opened = open_no_follow(path).and_then(|mut f| f.read_to_end(&mut bytes));
    match opened {
        Ok(_) => serde_json::from_slice(&bytes).map_err(|source| StateFileError::Parse {
            path: path.to_path_buf(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SavedState::default()),
        Err(_) if path.is_symlink() => Err(StateFileError::Symlink {
            path: path.to_path_buf(),
        }),
        Err(source) => Err(StateFileError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The runtime additions and removals of a file that the config and the admin API's
/// rules allow: known pools, weights within range, addresses the policy accepts, no
/// address twice, no removal of a backend found in DNS (`config` is the running
/// config, with the addresses DNS gave laid in). The rest is reported in `skipped`.
pub fn valid_members(
    saved: &RuntimeBackends,
    config: &Config,
    policy: &AddressPolicy,
    skipped: &mut Vec<Skipped>,
) -> RuntimeBackends {
    let mut out = RuntimeBackends::default();
    let lists = [
        ("added", &saved.added, &mut out.added),
        ("removed", &saved.removed, &mut out.removed),
    ];
    for (kind, from, to) in lists {
        for (pool, members) in from {
            let mut kept: Vec<Member> = Vec::new();
            for m in members {
                let entry = format!("{pool}/{}", m.address);
                let problem = if !config.pools.contains_key(pool) {
                    Some(format!("no pool named `{pool}` in the config"))
                } else if m.weight > MAX_WEIGHT {
                    Some(format!(
                        "weight {} is above the maximum {MAX_WEIGHT}",
                        m.weight
                    ))
                } else if kept.iter().any(|k| k.address == m.address) {
                    Some("listed twice".to_string())
                } else if kind == "added" {
                    policy.check(m.address).err().map(|e| e.to_string())
                } else {
                    from_dns(config, pool, m.address).map(|name| {
                        format!(
                            "{} comes from the DNS name {name}: DNS decides its membership",
                            m.address
                        )
                    })
                };
                match problem {
                    Some(reason) => skipped.push(Skipped::new(kind, entry, reason)),
                    None => kept.push(*m),
                }
            }
            if !kept.is_empty() {
                to.insert(pool.clone(), kept);
            }
        }
    }
    out
}

/// The DNS name `pool`'s backend at `address` was found through, if it was.
fn from_dns(config: &Config, pool: &str, address: SocketAddr) -> Option<String> {
    config
        .pools
        .get(pool)?
        .backends
        .iter()
        .find(|b| b.address == address && b.origin.is_some())
        .and_then(|b| b.origin.as_deref().map(str::to_string))
}

/// Applies the file's backend states to `snapshot` and returns the route overrides
/// to restore, each checked like the admin API checks a change; entries that fail a
/// check are reported in `skipped`. A backend whose configured weight changed since
/// the save keeps the new config weight.
pub fn restore(
    snapshot: &Snapshot,
    saved: &SavedState,
    skipped: &mut Vec<Skipped>,
) -> crate::traffic::Overrides {
    for (key, s) in &saved.backends {
        if let Err(reason) = restore_backend(snapshot, key, s) {
            skipped.push(Skipped::new("backend", key.clone(), reason));
        }
    }
    let mut overrides = crate::traffic::Overrides::new();
    for (route, r) in &saved.routes {
        match route_override(snapshot, route, r) {
            Ok(o) => {
                overrides.insert(route.clone(), o);
            }
            Err(reason) => skipped.push(Skipped::new("route", route.clone(), reason)),
        }
    }
    overrides
}

fn restore_backend(snapshot: &Snapshot, key: &str, s: &SavedBackend) -> Result<(), String> {
    let (pool_name, address) = key
        .split_once('/')
        .ok_or_else(|| "expected `pool/address`".to_string())?;
    let address: SocketAddr = address
        .parse()
        .map_err(|_| format!("`{address}` is not an IP:port address"))?;
    let pool = snapshot
        .pools
        .get(pool_name)
        .ok_or_else(|| format!("no pool named `{pool_name}`"))?;
    let backend = pool
        .backends
        .iter()
        .find(|b| b.address == address)
        .ok_or_else(|| format!("pool `{pool_name}` has no backend {address}"))?;
    let admin = match s.admin_state.as_str() {
        "active" => AdminState::Active,
        // A drain in progress at the restart has nothing in flight any more.
        "draining" | "drained" => AdminState::Drained,
        "disabled" => AdminState::Disabled,
        other => {
            return Err(format!(
                "unknown admin state `{other}`; expected active, draining, drained or disabled"
            ));
        }
    };
    if s.weight > MAX_WEIGHT {
        return Err(format!(
            "weight {} is above the maximum {MAX_WEIGHT}",
            s.weight
        ));
    }
    backend.state.set_admin_state(admin);
    let config_weight = pool.config_weight(address).unwrap_or(1);
    if config_weight == s.config_weight {
        backend.state.weight.store(s.weight, Ordering::Relaxed);
    }
    Ok(())
}

fn route_override(
    snapshot: &Snapshot,
    route: &str,
    r: &SavedRoute,
) -> Result<RouteOverride, String> {
    if !snapshot.config.routes.iter().any(|c| c.name == route) {
        return Err(format!("no route named `{route}`"));
    }
    if let Some(missing) = r.pools.keys().find(|p| snapshot.pools.get(p).is_none()) {
        return Err(format!("no pool named `{missing}`"));
    }
    let sticky = r
        .sticky
        .as_deref()
        .map(crate::traffic::parse_sticky)
        .transpose()?;
    let target = crate::traffic::checked(RouteTarget::Split {
        pools: r
            .pools
            .iter()
            .map(|(p, w)| (Arc::from(p.as_str()), *w))
            .collect(),
        sticky,
    })?;
    Ok(RouteOverride {
        target,
        config_pool: r.config_pool.clone(),
    })
}

/// The one writer of the state file: see the module docs. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct StateWriter {
    shared: Arc<WriterShared>,
}

#[derive(Debug)]
struct WriterShared {
    /// Writes asked for so far (each ask is a ticket number).
    requested: AtomicU64,
    /// The highest ticket whose state is on disk (or given up on at shutdown).
    written: watch::Sender<u64>,
    wake: Notify,
}

impl Default for WriterShared {
    fn default() -> Self {
        Self {
            requested: AtomicU64::new(0),
            written: watch::Sender::new(0),
            wake: Notify::new(),
        }
    }
}

/// How one write went, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    Ok,
    Failed,
}

impl StateWriter {
    /// Asks for the current state to be written; returns the ticket
    /// [`StateWriter::flushed`] waits for. Never blocks.
    pub fn request(&self) -> u64 {
        let ticket = self.shared.requested.fetch_add(1, Ordering::SeqCst) + 1;
        self.shared.wake.notify_one();
        ticket
    }

    /// Resolves once a write that started after `ticket` was asked for has finished
    /// (or the writer has stopped).
    pub async fn flushed(&self, ticket: u64) {
        let mut written = self.shared.written.subscribe();
        let _ = written.wait_for(|w| *w >= ticket).await;
    }

    /// Writes until `stop` fires, then writes what is still asked for and ends.
    /// `capture` reads the state at the moment of writing (so the newest state is
    /// what lands, whatever order the asks came in), with the path to write it to;
    /// `None` when no state file is configured. `report` hears each result.
    pub async fn run(
        self,
        capture: impl Fn() -> Option<(PathBuf, SavedState)>,
        report: impl Fn(WriteResult),
        stop: CancellationToken,
    ) {
        let shared = &self.shared;
        loop {
            let stopping = tokio::select! {
                () = shared.wake.notified() => false,
                () = stop.cancelled() => true,
            };
            let target = shared.requested.load(Ordering::SeqCst);
            if target > *shared.written.borrow() {
                if let Some((path, state)) = capture() {
                    let outcome =
                        tokio::task::spawn_blocking(move || write(&path, &state).map(|()| path))
                            .await;
                    match outcome {
                        Ok(Ok(path)) => {
                            tracing::debug!(file = %path.display(), "state file written");
                            report(WriteResult::Ok);
                        }
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "cannot write the state file; runtime changes will not survive a restart");
                            report(WriteResult::Failed);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "the state file writer thread failed");
                            report(WriteResult::Failed);
                        }
                    }
                }
                shared.written.send_replace(target);
            }
            if stopping {
                break;
            }
        }
        // Nobody waits for a write that will not happen.
        shared.written.send_replace(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-persist-{tag}-{}-{}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[cfg(unix)]
    #[test]
    fn writes_are_private_atomic_and_never_follow_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("write");
        let path = dir.join("state.json");
        let mut state = SavedState::default();
        state.routes.insert(
            "app".into(),
            SavedRoute {
                config_pool: "blue".into(),
                pools: BTreeMap::from([("green".to_string(), 100)]),
                sticky: None,
            },
        );
        write(&path, &state).unwrap();
        assert_eq!(read(&path).unwrap(), state);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner may read runtime state");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "no temp file is left behind");

        // A symlink planted at the state path is neither read through nor written
        // through: the target keeps its content and the link is replaced.
        let victim = dir.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(matches!(read(&path), Err(StateFileError::Symlink { .. })));
        write(&path, &state).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!path.is_symlink());
        assert_eq!(read(&path).unwrap(), state);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_writer_coalesces_and_lands_the_newest_state() {
        let dir = temp_dir("writer");
        let path = dir.join("state.json");
        let writer = StateWriter::default();
        let version = Arc::new(AtomicU64::new(0));
        let writes = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let (writer, version, writes, path, stop) = (
                writer.clone(),
                Arc::clone(&version),
                Arc::clone(&writes),
                path.clone(),
                stop.clone(),
            );
            async move {
                writer
                    .run(
                        move || {
                            let mut state = SavedState::default();
                            let v = version.load(Ordering::SeqCst);
                            state.routes.insert(
                                format!("r{v}"),
                                SavedRoute {
                                    config_pool: "a".into(),
                                    pools: BTreeMap::new(),
                                    sticky: None,
                                },
                            );
                            Some((path.clone(), state))
                        },
                        move |_| {
                            writes.fetch_add(1, Ordering::SeqCst);
                        },
                        stop,
                    )
                    .await;
            }
        });
        let mut tickets = Vec::new();
        for v in 1..=50 {
            version.store(v, Ordering::SeqCst);
            tickets.push(writer.request());
        }
        writer.flushed(*tickets.last().unwrap()).await;
        let saved = read(&path).unwrap();
        assert!(saved.routes.contains_key("r50"), "{saved:?}");
        assert!(
            writes.load(Ordering::SeqCst) < 50,
            "a burst of asks is coalesced"
        );
        stop.cancel();
        task.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
