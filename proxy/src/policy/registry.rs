//! Loading plugins off the async workers and swapping new versions in while traffic
//! flows.
//!
//! Each configured plugin has one [`PluginSlot`] for the life of the process (or until
//! the config drops it); the registry loads new versions into it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tracing::info;

use crate::config::{Config, PluginConfig};
use crate::fs::same_file;
use crate::plugin::{
    Active, InlineGate, PluginError, PluginMap, PluginRuntime, PluginSlot, sha256_hex,
};

/// Files larger than this are refused before compiling.
pub const MAX_PLUGIN_FILE_BYTES: u64 = 64 << 20;
/// A compile taking longer than this is abandoned and the old version kept.
pub const COMPILE_DEADLINE: Duration = Duration::from_secs(60);

/// Why a plugin version could not be loaded. The running version (if any) stays.
#[derive(Debug, thiserror::Error)]
pub enum PluginLoadError {
    /// `init` refused a field of the `config` table; `located` says where it is in
    /// the config file (`FILE:LINE:COL: plugin.NAME.config.FIELD: message`).
    #[error("{located}")]
    Config { name: String, located: String },
    #[error("plugin `{name}`: {source}")]
    Load {
        name: String,
        #[source]
        source: PluginError,
    },
    #[error("plugin `{name}`: cannot read {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin `{name}`: {path} is {size} bytes, over the {MAX_PLUGIN_FILE_BYTES}-byte limit")]
    TooLarge {
        name: String,
        path: PathBuf,
        size: u64,
    },
    #[error("plugin `{name}`: compiling {path} took longer than {COMPILE_DEADLINE:?}")]
    CompileTimeout { name: String, path: PathBuf },
    #[error("plugin `{name}`: the loader thread failed: {detail}")]
    Loader { name: String, detail: String },
    #[error("the plugin runtime cannot start: {0}")]
    Runtime(#[source] PluginError),
}

impl PluginLoadError {
    /// The plugin concerned (none when the runtime itself failed).
    pub fn plugin(&self) -> Option<&str> {
        match self {
            Self::Config { name, .. }
            | Self::Load { name, .. }
            | Self::Read { name, .. }
            | Self::TooLarge { name, .. }
            | Self::CompileTimeout { name, .. }
            | Self::Loader { name, .. } => Some(name),
            Self::Runtime(_) => None,
        }
    }
}

/// Whether [`PluginRegistry::prepare`] looks at the files of plugins whose table did
/// not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileCheck {
    /// Re-read and hash them, and load a changed file (a config reload: the operator
    /// may have replaced files without the watcher seeing it).
    Reread,
    /// Keep the loaded versions (a runtime change rebuilding the same config: the
    /// watcher takes care of files).
    KeepLoaded,
}

/// Versions loaded by [`PluginRegistry::prepare`], not yet visible to anyone.
#[derive(Debug, Default)]
pub struct Prepared {
    loaded: Vec<Active>,
    wanted: Vec<String>,
}

/// Owns the wasm runtime (started on first use) and every plugin slot.
#[derive(Debug, Default)]
pub struct PluginRegistry {
    runtime: Mutex<Option<PluginRuntime>>,
    slots: Mutex<BTreeMap<String, Arc<PluginSlot>>>,
    gate: Arc<InlineGate>,
}

impl PluginRegistry {
    /// An empty registry; the wasm engine starts only when a plugin is configured.
    pub fn new() -> Self {
        Self::default()
    }

    fn runtime(&self) -> Result<PluginRuntime, PluginLoadError> {
        let mut runtime = self.runtime.lock();
        if let Some(r) = runtime.as_ref() {
            return Ok(r.clone());
        }
        let created = PluginRuntime::new().map_err(PluginLoadError::Runtime)?;
        *runtime = Some(created.clone());
        Ok(created)
    }

    /// Loads every plugin of `config` whose table (or, with [`FileCheck::Reread`],
    /// file) differs from the running version. Compiling happens on blocking threads;
    /// nothing is installed, so a failure leaves every running version in place.
    pub async fn prepare(
        &self,
        config: &Config,
        files: FileCheck,
    ) -> Result<Prepared, PluginLoadError> {
        let mut prepared = Prepared {
            loaded: Vec::new(),
            wanted: config.plugins.keys().cloned().collect(),
        };
        for plugin in config.plugins.values() {
            let running = self
                .slots
                .lock()
                .get(&plugin.spec.name)
                .map(|slot| slot.current_full());
            let unchanged = match running {
                Some(active) if active.config == *plugin => match files {
                    FileCheck::KeepLoaded => true,
                    FileCheck::Reread => file_digest(plugin)? == active.plugin.digest(),
                },
                _ => false,
            };
            if !unchanged {
                match self.load(plugin.clone()).await {
                    Ok(active) => prepared.loaded.push(active),
                    Err(e) => {
                        if let Some(slot) = self.slots.lock().get(&plugin.spec.name) {
                            slot.record_failure(&e);
                        }
                        return Err(e);
                    }
                }
            }
        }
        Ok(prepared)
    }

    /// Installs prepared versions, drops plugins the config no longer has, and
    /// returns the slots by name for the next snapshot.
    pub fn commit(&self, prepared: Prepared) -> PluginMap {
        let mut slots = self.slots.lock();
        for active in prepared.loaded {
            let name = active.config.spec.name.clone();
            match slots.get(&name) {
                Some(slot) => {
                    info!(plugin = %name, from = %short(slot.current().plugin.digest()),
                        to = %short(active.plugin.digest()), "plugin version swapped in");
                    slot.swap_in(active);
                }
                None => {
                    slots.insert(
                        name.clone(),
                        Arc::new(PluginSlot::new(&name, active, Arc::clone(&self.gate))),
                    );
                }
            }
        }
        slots.retain(|name, _| prepared.wanted.contains(name));
        slots
            .iter()
            .map(|(name, slot)| (name.clone(), Arc::clone(slot)))
            .collect()
    }

    /// Reloads every plugin loaded from `path` (its file changed). A plugin whose
    /// file is unchanged is skipped; one that fails to load keeps running as before.
    /// Returns the names swapped and the failures.
    pub async fn reload_file(&self, path: &Path) -> (Vec<String>, Vec<PluginLoadError>) {
        let affected: Vec<Arc<PluginSlot>> = self
            .slots
            .lock()
            .values()
            .filter(|s| same_file(&s.current().config.spec.path, path))
            .cloned()
            .collect();
        let mut swapped = Vec::new();
        let mut failures = Vec::new();
        for slot in affected {
            let config = slot.current().config.clone();
            match file_digest(&config) {
                Ok(digest) if digest == slot.current().plugin.digest() => continue,
                Ok(_) => {}
                Err(e) => {
                    slot.record_failure(&e);
                    failures.push(e);
                    continue;
                }
            }
            match self.load(config).await {
                Ok(active) => {
                    info!(plugin = %slot.name(), from = %short(slot.current().plugin.digest()),
                        to = %short(active.plugin.digest()), "plugin file changed: new version swapped in");
                    slot.swap_in(active);
                    swapped.push(slot.name().to_string());
                }
                Err(e) => {
                    slot.record_failure(&e);
                    failures.push(e);
                }
            }
        }
        (swapped, failures)
    }

    /// Files to watch for hot reload.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = self
            .slots
            .lock()
            .values()
            .map(|s| s.current().config.spec.path.clone())
            .collect();
        paths.sort();
        paths.dedup();
        paths
    }

    /// Every slot, sorted by name (for `/status` and `/metrics`).
    pub fn slots(&self) -> Vec<Arc<PluginSlot>> {
        self.slots.lock().values().cloned().collect()
    }

    /// The slot of the plugin called `name`.
    pub fn slot(&self, name: &str) -> Option<Arc<PluginSlot>> {
        self.slots.lock().get(name).cloned()
    }

    /// Compiles, links, instantiates and `init`s one version on a blocking thread.
    async fn load(&self, config: PluginConfig) -> Result<Active, PluginLoadError> {
        check_size(&config)?;
        let runtime = self.runtime()?;
        let name = config.spec.name.clone();
        let path = config.spec.path.clone();
        let table = config.clone();
        let task = tokio::task::spawn_blocking(move || {
            let plugin = runtime.load(&(&config.spec).into());
            plugin.map(|plugin| Active { config, plugin })
        });
        match tokio::time::timeout(COMPILE_DEADLINE, task).await {
            Err(_) => Err(PluginLoadError::CompileTimeout { name, path }),
            Ok(Err(join)) => Err(PluginLoadError::Loader {
                name,
                detail: join.to_string(),
            }),
            // Not logged here: whoever asked for the load reports the failure once,
            // with what it keeps running.
            Ok(Ok(result)) => result.map_err(|source| match table.locate_error(&source) {
                Some(located) => PluginLoadError::Config { name, located },
                None => PluginLoadError::Load { name, source },
            }),
        }
    }
}

fn read_error(config: &PluginConfig, source: std::io::Error) -> PluginLoadError {
    PluginLoadError::Read {
        name: config.spec.name.clone(),
        path: config.spec.path.clone(),
        source,
    }
}

/// Refuses a file over [`MAX_PLUGIN_FILE_BYTES`] before anything reads it whole.
fn check_size(config: &PluginConfig) -> Result<(), PluginLoadError> {
    let size = std::fs::metadata(&config.spec.path)
        .map_err(|e| read_error(config, e))?
        .len();
    if size > MAX_PLUGIN_FILE_BYTES {
        return Err(PluginLoadError::TooLarge {
            name: config.spec.name.clone(),
            path: config.spec.path.clone(),
            size,
        });
    }
    Ok(())
}

/// SHA-256 of the plugin file (hex), to tell whether it changed.
fn file_digest(config: &PluginConfig) -> Result<String, PluginLoadError> {
    check_size(config)?;
    let bytes = std::fs::read(&config.spec.path).map_err(|e| read_error(config, e))?;
    Ok(sha256_hex(&bytes))
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}
