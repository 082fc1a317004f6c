//! A configured plugin's stable handle, held for the life of the process (or until
//! the config drops the plugin).
//!
//! Pools, probe loops and the breaker ticker hold the slot, and read its current
//! version with one `ArcSwap` load per call, so a hot swap (new file or new
//! `[plugin.NAME]` table) reaches every user at once while calls in flight finish on
//! the version they started with. Loading versions is the registry's job
//! (`crate::policy::PluginRegistry`).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::Plugin;
use super::gate::InlineGate;
use super::samples::SampleLog;
use crate::config::PluginConfig;

/// Plugins by name, as pools resolve their `plugin:NAME` references.
pub type PluginMap = HashMap<String, Arc<PluginSlot>>;

/// One loaded version with the table it was loaded from.
#[derive(Debug)]
pub struct Active {
    pub config: PluginConfig,
    pub plugin: Plugin,
}

/// A version that failed to load, for `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    /// When the attempt failed.
    pub at: SystemTime,
    /// Why (the message also logged).
    pub error: String,
}

/// A configured plugin's stable handle; see the module docs.
#[derive(Debug)]
pub struct PluginSlot {
    name: Arc<str>,
    active: ArcSwap<Active>,
    last_failure: Mutex<Option<LoadFailure>>,
    failures: AtomicU64,
    reloads: AtomicU64,
    samples: SampleLog,
    /// The proxy-wide bound on inline calls, shared by every slot of the registry.
    gate: Arc<InlineGate>,
}

impl PluginSlot {
    pub(crate) fn new(name: &str, active: Active, gate: Arc<InlineGate>) -> Self {
        Self {
            name: name.into(),
            active: ArcSwap::from_pointee(active),
            last_failure: Mutex::new(None),
            failures: AtomicU64::new(0),
            reloads: AtomicU64::new(0),
            samples: SampleLog::default(),
            gate,
        }
    }

    /// Recent decisions of this plugin (routing plugins only), across versions.
    pub fn samples(&self) -> &SampleLog {
        &self.samples
    }

    /// How many new versions were swapped in since the proxy started.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    pub(crate) fn swap_in(&self, active: Active) {
        self.active.store(Arc::new(active));
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    /// The operator's name for it.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The latest version that failed to load (file change or config reload), if
    /// any did since the proxy started; the running version stayed.
    pub fn last_failure(&self) -> Option<LoadFailure> {
        self.last_failure.lock().clone()
    }

    /// How many versions failed to load since the proxy started.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Records a version that failed to load (the running one stays).
    pub(crate) fn record_failure(&self, error: &dyn std::fmt::Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        *self.last_failure.lock() = Some(LoadFailure {
            at: SystemTime::now(),
            error: error.to_string(),
        });
    }

    /// The bound on plugin calls running inline at once (see [`InlineGate`]).
    pub fn inline_gate(&self) -> &InlineGate {
        &self.gate
    }

    /// The version to use for the next call.
    pub fn current(&self) -> arc_swap::Guard<Arc<Active>> {
        self.active.load()
    }

    /// The version to hand to a blocking task.
    pub fn current_full(&self) -> Arc<Active> {
        self.active.load_full()
    }
}
