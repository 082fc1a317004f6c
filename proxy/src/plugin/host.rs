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

/// Per-store resource limits. The memory limit covers every linear memory of
/// the instance together (a component may define several), so splitting an
/// allocation across memories gains nothing. Growing past the limit traps at
/// once (rather than letting `memory.grow` return -1), so a memory bomb fails
/// its call instead of limping on.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_bytes: u64,
    /// Bytes of all the store's memories, as granted so far.
    memory_used: u64,
    pub(crate) exceeded: bool,
}

impl Limiter {
    fn new(memory_bytes: u64) -> Self {
        Self {
            memory_bytes,
            memory_used: 0,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self
            .memory_used
            .saturating_sub(current as u64)
            .saturating_add(desired as u64);
        if total > self.memory_bytes {
            self.exceeded = true;
            return Err(wasmtime::Error::new(MemoryExceeded(self.memory_bytes)));
        }
        let granted = maximum.is_none_or(|max| desired <= max);
        if granted {
            self.memory_used = total;
        }
        Ok(granted)
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
    random: OsRandom,
}

impl HostState {
    pub(crate) fn new(plugin: Arc<str>, memory_bytes: u64) -> Self {
        Self {
            limiter: Limiter::new(memory_bytes),
            plugin,
            logs_left: limits::LOG_LINES_PER_CALL,
            random: OsRandom::default(),
        }
    }

    /// Resets the per-call budgets.
    pub(crate) fn begin_call(&mut self) {
        self.logs_left = limits::LOG_LINES_PER_CALL;
    }

    /// A random number from the operating system's CSPRNG.
    pub(crate) fn random_u64(&mut self) -> u64 {
        self.random.u64()
    }

    /// Fills `out` from the operating system's CSPRNG.
    pub(crate) fn random_bytes(&mut self, out: &mut [u8]) -> Result<(), getrandom::Error> {
        self.random.fill(out)
    }
}

/// Random numbers for plugins, straight from the operating system's CSPRNG
/// (`getrandom`): a plugin may use them for tokens or sampling that must not be
/// predictable. Small draws come from a buffer refilled 256 bytes at a time, so a
/// `u64` costs a copy, not a system call.
struct OsRandom {
    buffer: [u8; 256],
    used: usize,
}

impl Default for OsRandom {
    fn default() -> Self {
        Self {
            buffer: [0; 256],
            used: 256,
        }
    }
}

impl OsRandom {
    fn fill(&mut self, out: &mut [u8]) -> Result<(), getrandom::Error> {
        if out.len() > self.buffer.len() / 2 {
            return getrandom::getrandom(out);
        }
        if self.used + out.len() > self.buffer.len() {
            getrandom::getrandom(&mut self.buffer)?;
            self.used = 0;
        }
        out.copy_from_slice(&self.buffer[self.used..self.used + out.len()]);
        // Never hand out the same bytes twice.
        self.buffer[self.used..self.used + out.len()].fill(0);
        self.used += out.len();
        Ok(())
    }

    fn u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        if let Err(e) = self.fill(&mut bytes) {
            // The OS generator does not fail once the system has booted; if it
            // ever does, say so and fall back rather than crash a request.
            tracing::error!(error = %e, "the OS random number generator failed");
            return fastrand::u64(..);
        }
        u64::from_ne_bytes(bytes)
    }
}

/// Makes a plugin's log message safe to write to a log: control characters
/// (newlines that would forge log lines, terminal escapes) and bidirectional
/// overrides become spaces.
pub(crate) fn sanitize_log(message: &mut String) {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if message.contains(unsafe_char) {
        *message = message
            .chars()
            .map(|c| if unsafe_char(c) { ' ' } else { c })
            .collect();
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
        sanitize_log(&mut msg);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_lose_control_characters() {
        let mut line = "ok\nFAKE level=ERROR \x1b[31mred\u{202e}txt\r\0".to_string();
        sanitize_log(&mut line);
        assert_eq!(line, "ok FAKE level=ERROR  [31mred txt  ");
        let mut plain = "nothing to do: ünïcode".to_string();
        sanitize_log(&mut plain);
        assert_eq!(plain, "nothing to do: ünïcode");
    }

    #[test]
    fn memory_limit_covers_all_memories_together() {
        let mut limiter = Limiter::new(4 << 20);
        assert!(limiter.memory_growing(0, 3 << 20, None).unwrap());
        // A second memory may not take what the first already holds.
        assert!(limiter.memory_growing(0, 2 << 20, None).is_err());
        assert!(limiter.exceeded);
        let mut limiter = Limiter::new(4 << 20);
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        // Growing the first memory counts only the difference.
        assert!(limiter.memory_growing(2 << 20, 3 << 20, None).unwrap());
        assert!(
            limiter
                .memory_growing(3 << 20, (3 << 20) + 1, None)
                .is_err()
        );
    }

    #[test]
    fn random_numbers_come_fresh_from_the_os() {
        let mut a = OsRandom::default();
        let mut b = OsRandom::default();
        let draws: Vec<u64> = (0..100).map(|_| a.u64()).collect();
        assert!(draws.iter().all(|d| *d != b.u64()));
        let mut big = vec![0u8; 4096];
        a.fill(&mut big).unwrap();
        assert!(big.iter().any(|b| *b != 0));
    }
}
