//! Watching a listener's certificate files: any change in their directories (an
//! edit, an atomic rename, a Kubernetes secret's symlink swap) reloads the store
//! off the async workers, after a short pause so multi-file updates land together.

use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::store::CertStore;

/// How long a burst of file events is given to settle before reloading.
const SETTLE: Duration = Duration::from_millis(200);
/// Re-read interval when the file system cannot be watched.
const POLL: Duration = Duration::from_secs(10);

/// Reloads `store` whenever its files change, until `stop` fires.
pub fn watch(store: Arc<CertStore>, stop: CancellationToken) {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event
            && matches!(
                event.kind,
                EventKind::Modify(_) | EventKind::Create(_) | EventKind::Remove(_)
            )
        {
            let _ = tx.send(());
        }
    });
    let watcher = match watcher {
        Ok(mut w) => {
            let mut failed = false;
            for dir in store.watched_directories() {
                if let Err(e) = w.watch(&dir, RecursiveMode::NonRecursive) {
                    warn!(listener = store.listener(), directory = %dir.display(), error = %e,
                        "cannot watch a certificate directory; re-reading it every 10s");
                    failed = true;
                }
            }
            (!failed).then_some(w)
        }
        Err(e) => {
            warn!(listener = store.listener(), error = %e,
                "cannot watch certificate files; re-reading them every 10s");
            None
        }
    };
    tokio::spawn(async move {
        let _watcher = watcher;
        let polling = _watcher.is_none();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                received = rx.recv(), if !polling => if received.is_none() { break },
                () = tokio::time::sleep(POLL), if polling => {}
            }
            tokio::time::sleep(SETTLE).await;
            while rx.try_recv().is_ok() {}
            let target = Arc::clone(&store);
            debug!(
                listener = store.listener(),
                "certificate files changed, reloading"
            );
            let _ = tokio::task::spawn_blocking(move || target.reload()).await;
        }
    });
}
