//! Every certificate the process serves, in one place: the stores of the TLS
//! listeners (weakly held, so a stopped listener disappears), the ACME slots the
//! ACME manager fills, pending challenges, and reload counters for metrics.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::certificate::LoadedCert;
use super::challenge::Challenges;
use super::slots::{AcmeSlot, ReloadCounts};
use super::store::{CertStore, StoreError};
use crate::config::ListenerTlsConfig;

/// The process's TLS state that outlives any one listener or config.
#[derive(Debug, Default)]
pub struct TlsRegistry {
    stores: Mutex<Vec<Weak<CertStore>>>,
    acme: Mutex<HashMap<String, Arc<AcmeSlot>>>,
    reloads: Mutex<BTreeMap<String, Arc<ReloadCounts>>>,
    challenges: Arc<Challenges>,
}

impl TlsRegistry {
    /// An empty registry.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Pending ACME challenge answers.
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// The ACME slot of a listener (created on first use).
    pub fn acme_slot(&self, listener: &str) -> Arc<AcmeSlot> {
        Arc::clone(self.acme.lock().entry(listener.to_string()).or_default())
    }

    /// Every ACME slot, by listener name.
    pub fn acme_slots(&self) -> Vec<(String, Arc<AcmeSlot>)> {
        let mut slots: Vec<_> = self
            .acme
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        slots.sort_by(|a, b| a.0.cmp(&b.0));
        slots
    }

    /// The reload counters of a listener (created on first use).
    pub fn reload_counts(&self, listener: &str) -> Arc<ReloadCounts> {
        Arc::clone(self.reloads.lock().entry(listener.to_string()).or_default())
    }

    /// Every listener's reload counters: (listener, ok, failed).
    pub fn reload_totals(&self) -> Vec<(String, u64, u64)> {
        self.reloads
            .lock()
            .iter()
            .map(|(name, c)| {
                (
                    name.clone(),
                    c.ok.load(Ordering::Relaxed),
                    c.failed.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Loads a listener's certificates into a store wired to the listener's ACME
    /// slot and reload counters, and remembers it (see [`CertStore::load`]).
    pub fn load_store(
        &self,
        listener: &str,
        config: &ListenerTlsConfig,
    ) -> Result<Arc<CertStore>, StoreError> {
        let acme = config.acme.then(|| self.acme_slot(listener));
        let store = CertStore::load(listener, config, acme, self.reload_counts(listener))?;
        self.register(&store);
        Ok(store)
    }

    /// Remembers a store so metrics see its certificates while it lives.
    pub fn register(&self, store: &Arc<CertStore>) {
        let mut stores = self.stores.lock();
        stores.retain(|s| s.strong_count() > 0);
        stores.push(Arc::downgrade(store));
    }

    /// The live stores.
    pub fn stores(&self) -> Vec<Arc<CertStore>> {
        self.stores
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// The certificates `listener` serves now, in precedence order.
    pub fn served_by(&self, listener: &str) -> Vec<Arc<LoadedCert>> {
        self.stores()
            .iter()
            .rev()
            .find(|s| s.listener() == listener)
            .map(|s| s.current().certificates().to_vec())
            .unwrap_or_default()
    }

    /// Rebuilds the certificate sets of `listener`'s stores after its ACME slot changed.
    pub fn acme_updated(&self, listener: &str) {
        for store in self.stores() {
            if store.listener() == listener {
                store.rebuild();
            }
        }
    }

    /// Seconds until expiry of every served certificate, by DNS name; where several
    /// certificates carry a name, the one expiring first counts.
    pub fn expiry_by_name(&self, now_unix: i64) -> BTreeMap<String, i64> {
        let mut by_name: BTreeMap<String, i64> = BTreeMap::new();
        let mut note = |cert: &LoadedCert| {
            for name in &cert.names {
                let left = cert.seconds_left(now_unix);
                by_name
                    .entry(name.clone())
                    .and_modify(|v| *v = (*v).min(left))
                    .or_insert(left);
            }
        };
        for store in self.stores() {
            for cert in store.current().certificates() {
                note(cert);
            }
        }
        for (_, slot) in self.acme_slots() {
            for cert in slot.certificates().iter() {
                note(cert);
            }
        }
        by_name
    }
}
