//! Per-listener TLS state that outlives any one certificate store: the certificates
//! the ACME manager obtained, and how reloads of the listener's files went.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::certificate::LoadedCert;

/// Certificate reloads of one listener, by result. Kept across listener rebuilds.
#[derive(Debug, Default)]
pub struct ReloadCounts {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
}

/// Where the ACME manager puts the certificates it obtained for a listener, and how
/// obtaining them is going (read by metrics and, later, alerting).
#[derive(Debug, Default)]
pub struct AcmeSlot {
    certificates: ArcSwap<Vec<Arc<LoadedCert>>>,
    /// Certificates obtained.
    pub issued: AtomicU64,
    /// Orders that failed (each is retried with backoff).
    pub failed: AtomicU64,
    /// Failures since the last success; 0 when all is well.
    pub consecutive_failures: AtomicU32,
    /// The last failure, for `/status` and logs.
    pub last_error: Mutex<Option<String>>,
}

impl AcmeSlot {
    /// The certificates currently obtained for the listener.
    pub fn certificates(&self) -> Arc<Vec<Arc<LoadedCert>>> {
        self.certificates.load_full()
    }

    /// Replaces the obtained certificates.
    pub fn set(&self, certificates: Vec<Arc<LoadedCert>>) {
        self.certificates.store(Arc::new(certificates));
    }
}
