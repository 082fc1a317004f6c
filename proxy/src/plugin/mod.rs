//! WebAssembly policy plugins: routing, health-check and recovery policies
//! that operators write, load and hot-reload, sandboxed so that a bad
//! plugin fails its own calls and never the proxy.
//!
//! # Using it from the proxy
//!
//! ```no_run
//! # fn demo() -> Result<(), switchyard::plugin::PluginError> {
//! use switchyard::plugin::{PluginKind, PluginRuntime, PluginSpec};
//!
//! // Once per process (starts the epoch ticker thread).
//! let runtime = PluginRuntime::new()?;
//!
//! // Per plugin version. Blocking: compiles the component. Call it from
//! // `tokio::task::spawn_blocking` and swap the result in with `ArcSwap`;
//! // calls in flight finish on the old version.
//! let mut spec = PluginSpec::new("canary", PluginKind::Routing, "plugins/canary.wasm");
//! spec.config_json = r#"{"header":"x-canary","canary":[1]}"#.into();
//! let plugin = std::sync::Arc::new(runtime.load(&spec)?);
//!
//! // On the request path: synchronous, bounded by `spec.timeout`.
//! if let Some(routing) = plugin.as_routing() {
//!     # let (req, candidates): (switchyard::plugin::RouteRequest<'_>, Vec<switchyard::plugin::RouteCandidate>) = todo!();
//!     match routing.choose(&req, &candidates) {
//!         Ok(decision) => { /* act on it: it has been validated */ }
//!         Err(e) => { /* fail mode; count e.kind_label() */ }
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - Every call has a deadline (epoch interruption, 1 ms ticks), a memory
//!   limit (growth past it traps) and a 256 KiB wasm stack.
//! - Every output is validated (index among the candidates, status
//!   200..=599, body <= 4 KiB, reason <= 256 B, header names legal); an
//!   invalid output fails the call like a trap does.
//! - A failed instance is discarded; the next call gets a fresh one.
//! - A plugin failing over half of its recent calls is quarantined (calls
//!   return [`PluginError::Quarantined`] without running it) for a cool-off.
//! - Plugins get no filesystem, network, environment or stdio: only the
//!   `host` interface of `wit/host.wit`, random numbers and clocks.
//!
//! # Modules
//!
//! `runtime` (engine, linker, ticker, loading), `instance` (warm instance
//! pool and guarded calls), `routing` / `health` / `recovery` (one world
//! each: public types, validation), `headers` (declared-header selection),
//! `limits`, `stats`, `error`, `inspect`, `host` (the host interface),
//! `wasi` (stubbed WASI), `bindings`.

mod bindings;
mod error;
mod gate;
mod headers;
mod health;
mod host;
mod inspect;
mod instance;
mod limits;
mod recourse;
mod recovery;
mod routing;
mod runtime;
pub mod samples;
mod slot;
mod stats;
mod wasi;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use error::PluginError;
pub use gate::{InlineGate, Pass, SLOW_CALL};
pub use health::{CustomProbe, HealthPlugin, HealthVerdict, ProbeError, ProbeReport, ProbeTarget};
pub use inspect::{ImportGrant, ImportInfo, PluginInfo, inspect};
pub use instance::InstanceReuse;
pub use limits::{
    DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, MAX_BODY_BYTES, MAX_MEMORY_BYTES, MAX_PROBE_BODY_BYTES,
    MAX_REQUEST_PATH_TIMEOUT, MIN_MEMORY_BYTES, TIMEOUT_RANGE,
};
pub(crate) use recourse::{Recourse, recourse};
pub use recovery::{
    BreakerState, BreakerStats, FailureKind, Outcome, RecoveryAction, RecoveryPlugin,
};
pub use routing::{RouteCandidate, RouteDecision, RouteRequest, RoutingPlugin};
pub use runtime::{HOST_INTERFACE, PluginRuntime, sha256_hex};
pub use slot::{Active, LoadFailure, PluginMap, PluginSlot};
pub use stats::{DURATION_BUCKETS_NS, DurationSummary, ERROR_KINDS, PluginStats, QuarantinePolicy};

pub use crate::config::PluginKind;

/// Everything needed to load one plugin version.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// Operator-chosen name, used in logs and metrics.
    pub name: String,
    /// The job it does.
    pub kind: PluginKind,
    /// Path of the `.wasm` component.
    pub path: PathBuf,
    /// The plugin's config table, encoded as JSON; passed to `init`.
    pub config_json: String,
    /// Deadline of one call (100 us ..= 10 s).
    pub timeout: Duration,
    /// Memory limit of one instance (1 MiB ..= 64 MiB).
    pub memory_bytes: u64,
    /// Reuse warm instances (default) or use a fresh one per call.
    pub reuse: InstanceReuse,
    /// When to stop calling a failing plugin.
    pub quarantine: QuarantinePolicy,
}

impl PluginSpec {
    /// A spec with defaults: empty config `{}`, 2 ms deadline, 16 MiB,
    /// pooled instances, default quarantine.
    pub fn new(name: impl Into<String>, kind: PluginKind, path: impl AsRef<Path>) -> Self {
        Self {
            name: name.into(),
            kind,
            path: path.as_ref().to_path_buf(),
            config_json: "{}".into(),
            timeout: DEFAULT_TIMEOUT,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            reuse: InstanceReuse::default(),
            quarantine: QuarantinePolicy::default(),
        }
    }

    fn validate(&self) -> Result<(), PluginError> {
        let (min, max) = limits::TIMEOUT_RANGE;
        if !(min..=max).contains(&self.timeout) {
            return Err(PluginError::Spec(format!(
                "timeout {:?} is outside {min:?} ..= {max:?}",
                self.timeout
            )));
        }
        if !(limits::MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&self.memory_bytes) {
            return Err(PluginError::Spec(format!(
                "memory limit {} bytes is outside {} ..= {MAX_MEMORY_BYTES}",
                self.memory_bytes,
                limits::MIN_MEMORY_BYTES
            )));
        }
        Ok(())
    }
}

impl From<&crate::config::PluginSettings> for PluginSpec {
    /// The spec a `[plugin.NAME]` table asks for, with the runtime's defaults for
    /// instance reuse and quarantine.
    fn from(settings: &crate::config::PluginSettings) -> Self {
        let mut spec = PluginSpec::new(&settings.name, settings.kind, &settings.path);
        spec.config_json.clone_from(&settings.config_json);
        spec.timeout = settings.timeout;
        spec.memory_bytes = settings.memory_bytes;
        spec
    }
}

/// A loaded plugin version: immutable, shareable (`Arc<Plugin>`), callable
/// from many threads. Hot reload replaces the whole `Plugin`.
#[derive(Debug)]
pub struct Plugin {
    name: String,
    kind: PluginKind,
    digest: String,
    loaded_at: SystemTime,
    body: PluginBody,
}

#[derive(Debug)]
enum PluginBody {
    Routing(RoutingPlugin),
    Health(HealthPlugin),
    Recovery(RecoveryPlugin),
}

impl Plugin {
    /// The spec's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The world it implements.
    pub fn kind(&self) -> PluginKind {
        self.kind
    }

    /// SHA-256 of the loaded file, hex: tells versions apart in logs and
    /// lets reload skip an unchanged file.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// When this version was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// Call statistics of this version.
    pub fn stats(&self) -> &PluginStats {
        match &self.body {
            PluginBody::Routing(p) => p.stats(),
            PluginBody::Health(p) => p.stats(),
            PluginBody::Recovery(p) => p.stats(),
        }
    }

    /// The routing interface, if this is a routing plugin.
    pub fn as_routing(&self) -> Option<&RoutingPlugin> {
        match &self.body {
            PluginBody::Routing(p) => Some(p),
            _ => None,
        }
    }

    /// The health-check interface, if this is a health-check plugin.
    pub fn as_health(&self) -> Option<&HealthPlugin> {
        match &self.body {
            PluginBody::Health(p) => Some(p),
            _ => None,
        }
    }

    /// The recovery interface, if this is a recovery plugin.
    pub fn as_recovery(&self) -> Option<&RecoveryPlugin> {
        match &self.body {
            PluginBody::Recovery(p) => Some(p),
            _ => None,
        }
    }
}

/// Directory of the plugins shipped with Switchyard (`canary.wasm`,
/// `latency.wasm`, `json_health.wasm`, `adaptive_breaker.wasm` and the
/// `tenant_pin.wasm` example), as built by `proxy/build.rs` for this checkout:
/// the names cargo gives them under `plugins/target/wasm32-wasip2/release/`.
pub fn shipped_plugin_dir() -> &'static Path {
    Path::new(env!("SWITCHYARD_PLUGIN_DIR"))
}

/// Directory of the hostile test plugins (`hostile.wasm`,
/// `hostile_health.wasm`, `wrong_world.wasm`) and of `legacy_health.wasm`
/// (built against `switchyard:policy@0.1.0`), for tests and benchmarks.
pub fn test_plugin_dir() -> &'static Path {
    Path::new(env!("SWITCHYARD_TEST_PLUGIN_DIR"))
}
