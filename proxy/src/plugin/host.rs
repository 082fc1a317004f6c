//! What a plugin instance's `Store` holds, and the `host` interface the
//! plugin may import: logging, a monotonic clock and random numbers.
#![forbid(unsafe_code)]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use wasmtime::ResourceLimiter;

use super::bindings::routing::switchyard::policy::host::{Host, LogLevel};
use super::limits;

/// Marker error for a memory growth past the limit; the call is classified
/// as [`PluginError::Memory`](super::PluginError::Memory).
#[derive(Debug, thiserror::Error)]
#[error("plugin memory limit of {0} bytes reached")]
pub(crate) struct MemoryExceeded(pub(crate) u64);

/// Per-store resource limits. Growing memory past the limit traps at once
/// (rather than letting `memory.grow` return -1), so a memory bomb fails
/// its call instead of limping on.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_bytes: u64,
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory_bytes {
            self.exceeded = true;
            return Err(wasmtime::Error::new(MemoryExceeded(self.memory_bytes)));
        }
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000 && maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        4
    }
}

/// The data of one plugin instance's `Store`.
pub(crate) struct HostState {
    pub(crate) limiter: Limiter,
    plugin: Arc<str>,
    logs_left: u32,
    rng: fastrand::Rng,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<str>, memory_bytes: u64) -> Self {
        Self {
            limiter: Limiter {
                memory_bytes,
                exceeded: false,
            },
            plugin,
            logs_left: limits::LOG_LINES_PER_CALL,
            rng: fastrand::Rng::new(),
        }
    }

    /// Resets the per-call budgets.
    pub(crate) fn begin_call(&mut self) {
        self.logs_left = limits::LOG_LINES_PER_CALL;
    }

    pub(crate) fn random_u64(&mut self) -> u64 {
        self.rng.u64(..)
    }
}

/// Monotonic nanoseconds since the first call in this process.
pub(crate) fn monotonic_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl Host for HostState {
    fn log(&mut self, level: LogLevel, mut msg: String) {
        if self.logs_left == 0 {
            return;
        }
        self.logs_left -= 1;
        limits::truncate(&mut msg, limits::MAX_LOG_BYTES);
        let plugin = &*self.plugin;
        match level {
            LogLevel::Trace => tracing::trace!(target: "switchyard::plugin", plugin, "{msg}"),
            LogLevel::Debug => tracing::debug!(target: "switchyard::plugin", plugin, "{msg}"),
            LogLevel::Info => tracing::info!(target: "switchyard::plugin", plugin, "{msg}"),
            LogLevel::Warn => tracing::warn!(target: "switchyard::plugin", plugin, "{msg}"),
            LogLevel::Error => tracing::error!(target: "switchyard::plugin", plugin, "{msg}"),
        }
    }

    fn now_ns(&mut self) -> u64 {
        monotonic_ns()
    }

    fn random_u64(&mut self) -> u64 {
        HostState::random_u64(self)
    }
}
