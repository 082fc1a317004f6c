//! Reloading the config file and plugin files on change (notify), on SIGHUP and on
//! demand. A new file
//! is parsed and validated in full before anything changes; a bad one leaves the
//! running config in place, is logged with its exact location, and is counted.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher};
use parking_lot::Mutex;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::fs::same_file;
use crate::server::{Server, StartError};
use crate::timeline::{self, Happened};

/// Why a reload did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Apply(#[from] StartError),
    #[error("{0}")]
    Shared(String),
}

/// Loads, validates and applies the config at `path`; on failure the running config
/// stays. systemd hears `RELOADING=1` before and `READY=1` after.
pub async fn reload(server: &Server, path: &Path) -> Result<(), ReloadError> {
    crate::systemd::reloading();
    let result = match Config::load(path) {
        Ok(config) => match server.cluster() {
            // With a shared config running, the file only brings this instance's own
            // settings.
            Some(cluster) => match cluster.local_reloaded(config) {
                Ok(config) => server.apply(config).await.map_err(ReloadError::from),
                Err(e) => Err(ReloadError::Shared(e)),
            },
            None => server.apply(config).await.map_err(ReloadError::from),
        },
        Err(e) => Err(ReloadError::from(e)),
    };
    match &result {
        Ok(()) => {
            server.metrics().reload("ok");
            server.record_event(Happened::new(
                timeline::EventKind::Reload,
                format!("config reloaded from {}", path.display()),
            ));
            crate::systemd::reloaded(server, Ok(()));
        }
        Err(e) => {
            server.metrics().reload("failed");
            let text = e.to_string();
            let mut problems = text.lines();
            let first = problems.next().unwrap_or_default();
            let more = match problems.count() {
                0 => String::new(),
                n => format!(" (and {n} more)"),
            };
            server.record_event(
                Happened::new(
                    timeline::EventKind::Reload,
                    format!("config reload refused, the running config stays: {first}{more}"),
                )
                .warning(true),
            );
            error!(file = %path.display(), "config reload failed, keeping the running config:\n{e}");
            crate::systemd::reloaded(server, Err(&e.to_string()));
            server
                .alerts()
                .send(crate::alerts::AlertEvent::ConfigRefused {
                    file: path.display().to_string(),
                    error: e.to_string(),
                });
        }
    }
    result
}

/// Watches the config file and every plugin file, and reloads what changed
/// (debounced: editors and `cp` write in several steps). A changed config is
/// reloaded whole; a changed plugin file is hot-swapped alone. Returns the watcher,
/// which must be kept alive.
pub fn watch(server: Arc<Server>, path: PathBuf) -> notify::Result<Arc<Mutex<RecommendedWatcher>>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
        if matches!(
            event.kind,
            EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_)
        ) {
            for p in event.paths {
                let _ = tx.send(p);
            }
        }
    })?;
    let watcher = Arc::new(Mutex::new(watcher));
    let mut watched = HashSet::new();
    watch_directories(&watcher, &mut watched, &path, &server.plugins().paths())?;
    let shutdown = server.shutdown_token();
    let handle = Arc::clone(&watcher);
    tokio::spawn(async move {
        loop {
            let first = tokio::select! {
                received = rx.recv() => match received { Some(p) => p, None => break },
                () = shutdown.cancelled() => break,
            };
            // Let a burst of writes settle, then act once per file.
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut changed = vec![first];
            while let Ok(p) = rx.try_recv() {
                changed.push(p);
            }
            if changed.iter().any(|p| same_file(p, &path)) {
                if path.exists() {
                    info!(file = %path.display(), "config file changed, reloading");
                    let _ = reload(&server, &path).await;
                } else {
                    warn!(file = %path.display(), "config file disappeared; keeping the running config");
                }
            }
            for plugin in server.plugins().paths() {
                if changed.iter().any(|p| same_file(p, &plugin)) {
                    info!(file = %plugin.display(), "plugin file changed, reloading it");
                    let _ = server.reload_plugin_file(&plugin).await;
                }
            }
            if let Err(e) =
                watch_directories(&handle, &mut watched, &path, &server.plugins().paths())
            {
                warn!(error = %e, "cannot watch a plugin directory; its changes need SIGHUP or POST /reload");
            }
        }
    });
    Ok(watcher)
}

/// Adds a non-recursive watch on the directory of the config file and of every plugin
/// file not watched yet.
fn watch_directories(
    watcher: &Mutex<RecommendedWatcher>,
    watched: &mut HashSet<PathBuf>,
    config: &Path,
    plugins: &[PathBuf],
) -> notify::Result<()> {
    for file in std::iter::once(config).chain(plugins.iter().map(PathBuf::as_path)) {
        let directory = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if watched.insert(directory.clone()) {
            watcher
                .lock()
                .watch(&directory, RecursiveMode::NonRecursive)?;
        }
    }
    Ok(())
}
