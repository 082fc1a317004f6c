//! What the proxy lets a plugin do: log, read a monotonic clock, draw random
//! numbers.
//!
//! Inside the proxy these call the `host` interface. Compiled for the machine
//! itself (`cargo test`), they call the mock host of [`crate::testing`]
//! instead, so a policy runs natively in unit tests.

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal events.
    Info,
    /// Something unexpected that the policy handles.
    Warn,
    /// Something the policy cannot handle.
    Error,
}

/// Writes a line to the proxy's log, tagged with the plugin name. The proxy
/// truncates long lines and keeps at most a few per call.
pub fn log(level: Level, message: &str) {
    imp::log(level, message);
}

/// [`log`] at [`Level::Debug`].
pub fn debug(message: &str) {
    log(Level::Debug, message);
}

/// [`log`] at [`Level::Info`].
pub fn info(message: &str) {
    log(Level::Info, message);
}

/// [`log`] at [`Level::Warn`].
pub fn warn(message: &str) {
    log(Level::Warn, message);
}

/// [`log`] at [`Level::Error`].
pub fn error(message: &str) {
    log(Level::Error, message);
}

/// Monotonic time in nanoseconds; only differences mean something.
pub fn now_ns() -> u64 {
    imp::now_ns()
}

/// A random number from the host (not for cryptography). Seed a
/// [`crate::Rng`] with it rather than calling it per decision.
pub fn random_u64() -> u64 {
    imp::random_u64()
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::bindings::routing::switchyard::policy::host::{self, LogLevel};

    pub(super) fn log(level: Level, message: &str) {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        host::log(level, message);
    }

    pub(super) fn now_ns() -> u64 {
        host::now_ns()
    }

    pub(super) fn random_u64() -> u64 {
        host::random_u64()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    pub(super) use crate::testing::{log, now_ns, random_u64};
}
