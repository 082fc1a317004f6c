//! Reloading the config file on change (notify), on SIGHUP and on demand. A new file
//! is parsed and validated in full before anything changes; a bad one leaves the
//! running config in place, is logged with its exact location, and is counted.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::config::{Config, ConfigError};
use crate::server::{Server, StartError};

/// Why a reload did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Apply(#[from] StartError),
}

/// Loads, validates and applies the config at `path`; on failure the running config stays.
pub async fn reload(server: &Server, path: &Path) -> Result<(), ReloadError> {
    let result = match Config::load(path) {
        Ok(config) => server.apply(config).await.map_err(ReloadError::from),
        Err(e) => Err(ReloadError::from(e)),
    };
    match &result {
        Ok(()) => server.metrics().reload("ok"),
        Err(e) => {
            server.metrics().reload("failed");
            error!(file = %path.display(), "config reload failed, keeping the running config:\n{e}");
        }
    }
    result
}

/// Watches the config file and reloads after it changes (debounced: editors write in
/// several steps). Returns the watcher, which must be kept alive.
pub fn watch(server: Arc<Server>, path: PathBuf) -> notify::Result<notify::RecommendedWatcher> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let file_name = path.file_name().map(ToOwned::to_owned);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else {
            return;
        };
        let relevant = matches!(
            event.kind,
            EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_)
        ) && event
            .paths
            .iter()
            .any(|p| p.file_name().map(ToOwned::to_owned) == file_name);
        if relevant {
            let _ = tx.send(());
        }
    })?;
    let directory = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    watcher.watch(&directory, RecursiveMode::NonRecursive)?;
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                received = rx.recv() => if received.is_none() { break },
                () = shutdown.cancelled() => break,
            }
            // Let a burst of writes settle, then reload once.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            if !path.exists() {
                warn!(file = %path.display(), "config file disappeared; keeping the running config");
                continue;
            }
            info!(file = %path.display(), "config file changed, reloading");
            let _ = reload(&server, &path).await;
        }
    });
    Ok(watcher)
}
