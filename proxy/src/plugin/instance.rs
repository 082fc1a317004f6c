//! Warm plugin instances and the guarded call path shared by all worlds.
//!
//! Each plugin version keeps a small stack of idle `Store` + instance pairs.
//! A call pops one (or instantiates a fresh one when none is idle), arms the
//! epoch deadline, runs the export, checks the output and pushes the
//! instance back. An instance that trapped, timed out, hit its memory limit
//! or returned an invalid value is dropped instead: its state can no longer
//! be trusted. The stack's lock is held only for a push or a pop.
//!
//! Reuse means guest state survives between calls (as it would in a native
//! library); plugins must not rely on it for correctness. Operators who
//! want isolation per call choose [`InstanceReuse::PerCall`], at the price
//! measured by `benches/plugin_call.rs`.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use wasmtime::component::InstancePre;
use wasmtime::{Engine, Store, Trap};

use super::error::PluginError;
use super::host::{HostState, MemoryExceeded};
use super::limits;
use super::stats::PluginStats;

/// Whether warm instances are reused across calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstanceReuse {
    /// Keep a few initialised instances and reuse them (the default: a call
    /// costs a function call, not an instantiation).
    #[default]
    Pooled,
    /// Instantiate and `init` a fresh instance for every call, so no guest
    /// state survives between calls. Costs tens of microseconds per call.
    PerCall,
}

/// One of the three worlds, as the generic call path sees it.
pub(crate) trait World: Sized + Send + 'static {
    /// Name of the WIT world, for errors.
    const WORLD: &'static str;
    /// Exports the world requires.
    const EXPORTS: &'static [&'static str];
    /// Pre-instantiated form (exports looked up once).
    type Pre: Send + Sync + 'static;

    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre>;
    fn instantiate(pre: &Self::Pre, store: &mut Store<HostState>) -> wasmtime::Result<Self>;
    fn init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>>;
}

/// Implements [`World`] for a struct that holds one world's generated `bindings`
/// plus reusable buffers (listed in braces, created empty): every world links,
/// instantiates and runs `init` the same way.
macro_rules! world {
    ($instance:ident { $($buffer:ident),* }, $pre:ident, $world:literal, [$($export:literal),+ $(,)?]) => {
        impl $crate::plugin::instance::World for $instance {
            const WORLD: &'static str = $world;
            const EXPORTS: &'static [&'static str] = &[$($export),+];
            type Pre = $pre<HostState>;

            fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<Self::Pre> {
                $pre::new(pre)
            }

            fn instantiate(
                pre: &Self::Pre,
                store: &mut Store<HostState>,
            ) -> wasmtime::Result<Self> {
                Ok(Self {
                    bindings: pre.instantiate(store)?,
                    $($buffer: Default::default(),)*
                })
            }

            fn init(
                &self,
                store: &mut Store<HostState>,
                config: &str,
            ) -> wasmtime::Result<Result<(), String>> {
                self.bindings.call_init(store, config)
            }
        }
    };
}
pub(crate) use world;

/// An instance and the store it lives in.
pub(crate) struct Slot<W> {
    pub(crate) store: Store<HostState>,
    pub(crate) world: W,
    calls: u32,
}

/// Settings shared by every instance of a plugin version.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) name: Arc<str>,
    pub(crate) config_json: String,
    pub(crate) timeout: Duration,
    pub(crate) memory_bytes: u64,
    pub(crate) reuse: InstanceReuse,
}

/// The instances of one plugin version.
pub(crate) struct Instances<W: World> {
    engine: Engine,
    pre: W::Pre,
    settings: Settings,
    deadline_ticks: u64,
    max_idle: usize,
    idle: Mutex<Vec<Slot<W>>>,
    stats: Arc<PluginStats>,
    /// Moving average of the time spent inside the plugin per call (ns), not
    /// counting instantiation: what [`InlineGate`](super::InlineGate) judges.
    guest_ns: AtomicU64,
}

impl<W: World> Instances<W> {
    pub(crate) fn new(
        engine: Engine,
        pre: W::Pre,
        settings: Settings,
        stats: Arc<PluginStats>,
    ) -> Self {
        let max_idle = std::thread::available_parallelism()
            .map_or(2, |n| n.get() * 2)
            .clamp(2, 64);
        Self {
            engine,
            pre,
            deadline_ticks: limits::deadline_ticks(settings.timeout),
            settings,
            max_idle,
            idle: Mutex::new(Vec::new()),
            stats,
            guest_ns: AtomicU64::new(0),
        }
    }

    /// The recent average time of one call inside the plugin.
    pub(crate) fn typical_call(&self) -> Duration {
        Duration::from_nanos(self.guest_ns.load(Ordering::Relaxed))
    }

    /// Folds one call's time into [`Instances::typical_call`] (see
    /// [`next_average`](super::gate::next_average); a lost update between racing
    /// threads does not matter).
    fn note_guest_time(&self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let old = self.guest_ns.load(Ordering::Relaxed);
        self.guest_ns
            .store(super::gate::next_average(old, ns), Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Instantiates and initialises a new instance, under the init deadline.
    pub(crate) fn fresh(&self) -> Result<Slot<W>, PluginError> {
        let state = HostState::new(self.settings.name.clone(), self.settings.memory_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(limits::deadline_ticks(limits::INIT_TIMEOUT));
        let world = W::instantiate(&self.pre, &mut store)
            .map_err(|e| init_error(self.classify(e, &store, limits::INIT_TIMEOUT)))?;
        match world.init(&mut store, &self.settings.config_json) {
            Ok(Ok(())) => {}
            Ok(Err(mut msg)) => {
                limits::truncate(&mut msg, limits::MAX_REASON_BYTES);
                return Err(PluginError::Init(msg));
            }
            Err(e) => return Err(init_error(self.classify(e, &store, limits::INIT_TIMEOUT))),
        }
        Ok(Slot {
            store,
            world,
            calls: 0,
        })
    }

    /// The load-time smoke test: instantiates, runs `init`, then `f` (under
    /// the init deadline), and keeps the instance warm for the first call.
    pub(crate) fn smoke<T>(
        &self,
        f: impl FnOnce(&mut Slot<W>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let mut slot = self.fresh()?;
        let out = f(&mut slot).map_err(|e| PluginError::Init(format!("{e:#}")))?;
        self.park(slot);
        Ok(out)
    }

    /// Returns an instance to the idle stack.
    fn park(&self, slot: Slot<W>) {
        if self.settings.reuse == InstanceReuse::Pooled {
            let mut idle = self.idle.lock();
            if idle.len() < self.max_idle {
                idle.push(slot);
            }
        }
    }

    /// Runs `f` on an instance under the call deadline, then `check` on its
    /// output. Any failure drops the instance; everything is recorded in
    /// the plugin's stats.
    pub(crate) fn call<O, R>(
        &self,
        f: impl FnOnce(&mut Slot<W>) -> wasmtime::Result<O>,
        check: impl FnOnce(O) -> Result<R, PluginError>,
    ) -> Result<R, PluginError> {
        let stats = &*self.stats;
        // The proxy's clock places the call in the quarantine window; the call's
        // own duration is real time.
        let at = crate::clock::now();
        let started = Instant::now();
        if stats.quarantined_at(at) {
            let err = PluginError::Quarantined;
            stats.record_error(at, Duration::ZERO, &err);
            return Err(err);
        }
        let pooled = match self.settings.reuse {
            InstanceReuse::Pooled => self.idle.lock().pop(),
            InstanceReuse::PerCall => None,
        };
        // Two clock reads on the warm path: the guest's time is the call's, less
        // an instantiation when there was one.
        let (mut slot, guest_started) = match pooled {
            Some(slot) => (slot, started),
            None => match self.fresh() {
                Ok(slot) => (slot, Instant::now()),
                Err(e) => {
                    stats.record_error(at, started.elapsed(), &e);
                    return Err(e);
                }
            },
        };
        slot.store.set_epoch_deadline(self.deadline_ticks);
        slot.store.data_mut().begin_call();
        let ran = f(&mut slot);
        let ended = Instant::now();
        self.note_guest_time(ended.duration_since(guest_started));
        let result = match ran {
            Ok(out) => check(out),
            Err(e) => Err(self.classify(e, &slot.store, self.settings.timeout)),
        };
        let elapsed = ended.duration_since(started);
        match result {
            Ok(value) => {
                stats.record_ok(at, elapsed);
                slot.calls += 1;
                if slot.calls < limits::MAX_CALLS_PER_INSTANCE {
                    self.park(slot);
                }
                Ok(value)
            }
            Err(e) => {
                stats.record_error(at, elapsed, &e);
                Err(e)
            }
        }
    }

    /// Turns a wasmtime error into the plugin error it stands for.
    fn classify(
        &self,
        e: wasmtime::Error,
        store: &Store<HostState>,
        limit: Duration,
    ) -> PluginError {
        if store.data().limiter.exceeded || e.is::<MemoryExceeded>() {
            return PluginError::Memory {
                limit: self.settings.memory_bytes,
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Timeout { limit },
            Some(Trap::StackOverflow) => PluginError::Trap("stack overflow".into()),
            Some(trap) => PluginError::Trap(trap.to_string()),
            None if e.is::<wasmtime::PoolConcurrencyLimitError>() => {
                PluginError::Capacity(e.to_string())
            }
            None => {
                let mut msg = format!("{e:#}");
                limits::truncate(&mut msg, limits::MAX_REASON_BYTES);
                PluginError::Trap(msg)
            }
        }
    }
}

impl<W: World> std::fmt::Debug for Instances<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instances")
            .field("world", &W::WORLD)
            .field("name", &self.settings.name)
            .field("reuse", &self.settings.reuse)
            .field("idle", &self.idle.lock().len())
            .finish_non_exhaustive()
    }
}

/// Reports a trap or timeout during instantiation or `init` as an init
/// failure; memory and capacity errors keep their own kind.
fn init_error(e: PluginError) -> PluginError {
    match e {
        PluginError::Trap(msg) => PluginError::Init(format!("trapped: {msg}")),
        PluginError::Timeout { limit } => {
            PluginError::Init(format!("did not finish within {limit:?}"))
        }
        other => other,
    }
}
