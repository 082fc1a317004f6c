//! The process-wide plugin runtime: one `Engine`, one base `Linker`, and the
//! epoch ticker that enforces call deadlines; plus loading a plugin file
//! into a ready-to-call [`Plugin`].
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::bindings::routing::switchyard::policy::host;
use super::error::PluginError;
use super::health::{HealthInstance, HealthPlugin};
use super::host::HostState;
use super::instance::{Instances, Settings, World};
use super::limits;
use super::recovery::{RecoveryInstance, RecoveryPlugin};
use super::routing::{RoutingInstance, RoutingPlugin};
use super::stats::PluginStats;
use super::wasi;
use super::{Plugin, PluginBody, PluginKind, PluginSpec};

/// Name of the `host` interface this proxy provides; plugins importing any
/// `0.1.x` version of it link against it (wasmtime matches semver-compatible
/// names, so an `@0.1.0` import finds the `@0.1.1` definition).
pub const HOST_INTERFACE: &str = "switchyard:policy/host@0.1.1";

/// Interfaces of the package that only define types; a plugin imports them
/// alongside its world, and they need no functions.
const TYPE_INTERFACES: [&str; 4] = [
    "switchyard:policy/types@0.1.1",
    "switchyard:policy/routing-types@0.1.1",
    "switchyard:policy/health-types@0.1.1",
    "switchyard:policy/recovery-types@0.1.1",
];

/// Whether an import belongs to a `switchyard:policy` version this proxy
/// serves (any `0.1.x`; see the versioning rule in `wit/types.wit`).
pub(crate) fn is_policy_import(name: &str) -> bool {
    name.strip_prefix("switchyard:policy/")
        .and_then(|rest| rest.split_once('@'))
        .is_some_and(|(_, version)| version.starts_with("0.1."))
}

/// Component instances the pooling allocator keeps slots for, process-wide.
const POOL_INSTANCES: u32 = 512;

/// One per process: compiles, links and runs plugins. Cloning shares it.
#[derive(Clone)]
pub struct PluginRuntime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<HostState>,
    pooling: bool,
}

impl std::fmt::Debug for PluginRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginRuntime")
            .field("pooling", &self.inner.pooling)
            .finish_non_exhaustive()
    }
}

impl PluginRuntime {
    /// Builds the engine (pooling allocator when the system allows it),
    /// starts the epoch ticker and links the `host` interface.
    pub fn new() -> Result<Self, PluginError> {
        let (engine, pooling) = build_engine()?;
        spawn_epoch_ticker(&engine)?;
        let linker = base_linker(&engine)?;
        Ok(Self {
            inner: Arc::new(Inner {
                engine,
                linker,
                pooling,
            }),
        })
    }

    /// Whether instances come from the pooling allocator (fast, bounded) or
    /// are allocated on demand (the fallback where virtual memory is tight).
    pub fn uses_pooling(&self) -> bool {
        self.inner.pooling
    }

    /// Loads a plugin: reads and compiles the file, checks it implements
    /// the spec's world, instantiates it once and runs `init` with the
    /// spec's configuration. BLOCKING (compilation takes milliseconds to
    /// seconds): call it from `spawn_blocking`.
    pub fn load(&self, spec: &PluginSpec) -> Result<Plugin, PluginError> {
        spec.validate()?;
        let engine = &self.inner.engine;
        let (component, digest) = compile(engine, &spec.path)?;
        let stats = Arc::new(PluginStats::new(&spec.name, spec.quarantine));
        let settings = Settings {
            name: Arc::from(spec.name.as_str()),
            config_json: spec.config_json.clone(),
            timeout: spec.timeout,
            memory_bytes: spec.memory_bytes,
            reuse: spec.reuse,
        };
        let base = &self.inner.linker;
        let body = match spec.kind {
            PluginKind::Routing => {
                let pre = link::<RoutingInstance>(engine, base, &component)?;
                let instances = Instances::new(engine.clone(), pre, settings, stats);
                PluginBody::Routing(RoutingPlugin::load(instances)?)
            }
            PluginKind::Health => {
                let pre = link::<HealthInstance>(engine, base, &component)?;
                let instances = Instances::new(engine.clone(), pre, settings, stats);
                PluginBody::Health(HealthPlugin::load(instances)?)
            }
            PluginKind::Recovery => {
                let pre = link::<RecoveryInstance>(engine, base, &component)?;
                let instances = Instances::new(engine.clone(), pre, settings, stats);
                PluginBody::Recovery(RecoveryPlugin::load(instances)?)
            }
        };
        tracing::info!(
            plugin = %spec.name,
            kind = spec.kind.world(),
            digest = %digest,
            path = %spec.path.display(),
            "plugin loaded"
        );
        Ok(Plugin {
            name: spec.name.clone(),
            kind: spec.kind,
            digest,
            loaded_at: SystemTime::now(),
            body,
        })
    }
}

/// Engine settings shared by the runtime and `inspect`.
pub(crate) fn base_config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .max_wasm_stack(limits::MAX_WASM_STACK)
        .cranelift_opt_level(OptLevel::Speed);
    config
}

/// Tries the pooling allocator first; falls back to on-demand allocation
/// when the system refuses the up-front virtual memory reservation.
fn build_engine() -> Result<(Engine, bool), PluginError> {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(POOL_INSTANCES)
        .total_core_instances(POOL_INSTANCES * 4)
        .total_memories(POOL_INSTANCES)
        .total_tables(POOL_INSTANCES * 4)
        .max_core_instances_per_component(32)
        .max_memories_per_component(2)
        .max_tables_per_component(32)
        .max_memory_size(limits::MAX_MEMORY_BYTES as usize);
    let mut config = base_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => return Ok((engine, true)),
        Err(e) => tracing::info!(error = %e, "pooling allocator unavailable, allocating on demand"),
    }
    Engine::new(&base_config())
        .map(|engine| (engine, false))
        .map_err(|e| PluginError::Runtime(format!("cannot create the wasm engine: {e:#}")))
}

/// Advances the engine's epoch every tick. Holds only a weak reference, so
/// the thread ends once the engine (and everything using it) is dropped.
fn spawn_epoch_ticker(engine: &Engine) -> Result<(), PluginError> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(limits::EPOCH_TICK);
                match weak.upgrade() {
                    Some(engine) => engine.increment_epoch(),
                    None => break,
                }
            }
        })
        .map(drop)
        .map_err(|e| PluginError::Runtime(format!("cannot start the epoch ticker: {e}")))
}

/// The linker every plugin starts from: just the `host` interface.
pub(crate) fn base_linker(engine: &Engine) -> Result<Linker<HostState>, PluginError> {
    let mut linker = Linker::new(engine);
    host::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
        .map_err(|e| PluginError::Runtime(format!("cannot link the host interface: {e:#}")))?;
    for name in TYPE_INTERFACES {
        linker
            .instance(name)
            .map_err(|e| PluginError::Runtime(format!("cannot link {name}: {e:#}")))?;
    }
    Ok(linker)
}

/// Reads and compiles a component, returning it with the file's SHA-256.
pub(crate) fn compile(engine: &Engine, path: &Path) -> Result<(Component, String), PluginError> {
    let bytes = std::fs::read(path).map_err(|source| PluginError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let digest = sha256_hex(&bytes);
    let component = Component::from_binary(engine, &bytes).map_err(|e| {
        let mut detail = format!("{e:#}");
        if bytes.starts_with(b"\0asm\x01\0\0\0") {
            detail.push_str(
                " (this is a core wasm module, not a component: build with \
                 `--target wasm32-wasip2`)",
            );
        } else if !bytes.starts_with(b"\0asm") {
            detail.push_str(" (not a WebAssembly file)");
        }
        PluginError::Compile {
            path: path.to_path_buf(),
            detail,
        }
    })?;
    Ok((component, digest))
}

/// Checks the component against world `W` and links it.
pub(crate) fn link<W: World>(
    engine: &Engine,
    base: &Linker<HostState>,
    component: &Component,
) -> Result<W::Pre, PluginError> {
    let ty = component.component_type();
    let exports: Vec<&str> = ty.exports(engine).map(|(name, _)| name).collect();
    let missing: Vec<&str> = W::EXPORTS
        .iter()
        .copied()
        .filter(|e| !exports.contains(e))
        .collect();
    if !missing.is_empty() {
        return Err(PluginError::WrongWorld {
            expected: W::WORLD,
            found: format!(
                "missing export(s) {} (it exports: {})",
                missing.join(", "),
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    exports.join(", ")
                }
            ),
        });
    }
    for (name, _) in ty.imports(engine) {
        if !wasi::is_wasi(name) && !is_policy_import(name) {
            return Err(PluginError::Import(name.to_string()));
        }
    }
    let mut linker = base.clone();
    wasi::bind(engine, &mut linker, component)
        .map_err(|e| PluginError::Import(format!("WASI: {e:#}")))?;
    let pre = linker
        .instantiate_pre(component)
        .map_err(|e| PluginError::Import(format!("{e:#}")))?;
    W::pre(pre).map_err(|e| PluginError::WrongWorld {
        expected: W::WORLD,
        found: format!("{e:#}"),
    })
}

/// SHA-256 of a plugin file, as lower-case hex: the version digest shown in
/// `/status` and compared on reload.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}
