//! What a component is and whether it would load, without running any of its
//! code: the first half of `switchyard plugin check` (which then runs `init`).
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::types::ComponentItem;

use super::PluginKind;
use super::error::PluginError;
use super::health::HealthInstance;
use super::recovery::RecoveryInstance;
use super::routing::RoutingInstance;
use super::runtime::{self, is_policy_import};
use super::wasi;

/// How the proxy would satisfy one import of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportGrant {
    /// A `switchyard:policy` interface (the `host` functions or shared
    /// types).
    Host,
    /// A WASI interface: bound to harmless functions or to traps.
    WasiStub,
    /// Not provided: the plugin cannot load.
    Missing,
}

/// One import of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportInfo {
    /// Import name, e.g. `switchyard:policy/host@0.1.0`.
    pub name: String,
    /// How it would be satisfied.
    pub grant: ImportGrant,
}

/// What [`inspect`] found.
#[derive(Debug)]
pub struct PluginInfo {
    /// The file inspected.
    pub path: PathBuf,
    /// SHA-256 of the file, hex.
    pub digest: String,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Exported names, with function signatures where known.
    pub exports: Vec<String>,
    /// Imports and how each would be satisfied.
    pub imports: Vec<ImportInfo>,
    /// For each plugin kind: `Ok` if the component links as that kind, or
    /// why not. `init` is not run (it needs the operator's config).
    pub worlds: Vec<(PluginKind, Result<(), String>)>,
}

impl PluginInfo {
    /// The kinds this component can be loaded as.
    pub fn loadable_as(&self) -> Vec<PluginKind> {
        self.worlds
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(k, _)| *k)
            .collect()
    }
}

impl fmt::Display for PluginInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "file:    {}", self.path.display())?;
        writeln!(f, "size:    {} bytes", self.size_bytes)?;
        writeln!(f, "sha256:  {}", self.digest)?;
        writeln!(f, "exports:")?;
        for e in &self.exports {
            writeln!(f, "  {e}")?;
        }
        writeln!(f, "imports:")?;
        for i in &self.imports {
            let how = match i.grant {
                ImportGrant::Host => "provided",
                ImportGrant::WasiStub => "stubbed (no capability granted)",
                ImportGrant::Missing => "NOT PROVIDED",
            };
            writeln!(f, "  {:<44} {how}", i.name)?;
        }
        writeln!(f, "worlds:")?;
        for (kind, result) in &self.worlds {
            match result {
                Ok(()) => writeln!(f, "  {:<13} ok", kind.world())?,
                Err(why) => writeln!(f, "  {:<13} no: {why}", kind.world())?,
            }
        }
        let kinds = self.loadable_as();
        if kinds.is_empty() {
            write!(f, "verdict: will NOT load as any Switchyard plugin")
        } else {
            let names: Vec<&str> = kinds.iter().map(|k| k.world()).collect();
            write!(f, "verdict: loads as {}", names.join(", "))
        }
    }
}

/// Compiles `path` and reports its exports, imports and which worlds it
/// implements. Fails only if the file cannot be read or compiled.
pub fn inspect(path: &Path) -> Result<PluginInfo, PluginError> {
    let engine =
        Engine::new(&runtime::base_config()).map_err(|e| PluginError::Runtime(format!("{e:#}")))?;
    let (component, digest) = runtime::compile(&engine, path)?;
    let size_bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let ty = component.component_type();
    let exports = ty
        .exports(&engine)
        .map(|(name, item)| match item.ty {
            ComponentItem::ComponentFunc(func) => {
                let params: Vec<&str> = func.params().map(|(p, _)| p).collect();
                let results = func.results().len();
                format!("{name}({}) -> {results} result(s)", params.join(", "))
            }
            _ => name.to_string(),
        })
        .collect();
    let imports = ty
        .imports(&engine)
        .map(|(name, _)| ImportInfo {
            name: name.to_string(),
            grant: if wasi::is_wasi(name) {
                ImportGrant::WasiStub
            } else if is_policy_import(name) {
                ImportGrant::Host
            } else {
                ImportGrant::Missing
            },
        })
        .collect();
    let base = runtime::base_linker(&engine)?;
    let check = |r: Result<(), PluginError>| r.map_err(|e| e.to_string());
    let worlds = vec![
        (
            PluginKind::Routing,
            check(runtime::link::<RoutingInstance>(&engine, &base, &component).map(drop)),
        ),
        (
            PluginKind::Health,
            check(runtime::link::<HealthInstance>(&engine, &base, &component).map(drop)),
        ),
        (
            PluginKind::Recovery,
            check(runtime::link::<RecoveryInstance>(&engine, &base, &component).map(drop)),
        ),
    ];
    Ok(PluginInfo {
        path: path.to_path_buf(),
        digest,
        size_bytes,
        exports,
        imports,
        worlds,
    })
}
