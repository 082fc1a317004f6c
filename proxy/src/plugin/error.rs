//! The one error type of the plugin layer.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

/// Why loading or calling a plugin failed.
///
/// Load-time variants (`Io` to `Init`) keep the previous plugin version in
/// service; call-time variants (`Trap` to `Quarantined`) make the caller
/// apply its fail mode. [`PluginError::kind_label`] gives a stable,
/// low-cardinality label for metrics and logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin file could not be read.
    #[error("cannot read plugin {path}: {source}")]
    Io {
        /// The file that was read.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not a valid WebAssembly component, or failed to compile.
    #[error("cannot compile plugin {path}: {detail}")]
    Compile {
        /// The file that was compiled.
        path: PathBuf,
        /// What the compiler said, with a hint when the cause is common.
        detail: String,
    },
    /// The component does not implement the world its kind requires.
    #[error("plugin implements the wrong world: expected `{expected}`, {found}")]
    WrongWorld {
        /// The world the spec's kind requires.
        expected: &'static str,
        /// What was found instead (missing export, type mismatch, ...).
        found: String,
    },
    /// The component imports something the proxy does not provide.
    #[error("plugin imports `{0}`, which Switchyard does not provide")]
    Import(String),
    /// The [`PluginSpec`](super::PluginSpec) itself is out of range.
    #[error("invalid plugin spec: {0}")]
    Spec(String),
    /// Instantiation or the plugin's `init` failed.
    #[error("plugin init failed: {0}")]
    Init(String),
    /// The plugin trapped (panic, `unreachable`, stack overflow, ...).
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// The call ran past its deadline and was interrupted.
    #[error("plugin call exceeded its {limit:?} deadline")]
    Timeout {
        /// The configured per-call deadline.
        limit: Duration,
    },
    /// The plugin tried to grow its memory past its limit.
    #[error("plugin exceeded its memory limit of {limit} bytes")]
    Memory {
        /// The configured memory limit.
        limit: u64,
    },
    /// The plugin returned a value the host refuses (index out of range,
    /// bad status, oversized body, illegal header name, ...).
    #[error("plugin returned an invalid value: {0}")]
    Invalid(String),
    /// The plugin failed too often recently and is not being called.
    #[error("plugin is quarantined after repeated failures")]
    Quarantined,
    /// The wasm engine could not be set up.
    #[error("plugin runtime unavailable: {0}")]
    Runtime(String),
    /// The process-wide instance pool is exhausted.
    #[error("no plugin instance slot available: {0}")]
    Capacity(String),
}

impl PluginError {
    /// A stable label for metrics (`plugin_errors_total{kind=...}`) and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Compile { .. } => "compile",
            Self::WrongWorld { .. } => "wrong_world",
            Self::Import(_) => "import",
            Self::Spec(_) => "spec",
            Self::Init(_) => "init",
            Self::Trap(_) => "trap",
            Self::Timeout { .. } => "timeout",
            Self::Memory { .. } => "memory",
            Self::Invalid(_) => "invalid",
            Self::Quarantined => "quarantined",
            Self::Runtime(_) => "runtime",
            Self::Capacity(_) => "capacity",
        }
    }

    /// Whether this error came from running the plugin (as opposed to
    /// loading it). Call-time errors count towards quarantine.
    pub fn is_call_failure(&self) -> bool {
        matches!(
            self,
            Self::Trap(_) | Self::Timeout { .. } | Self::Memory { .. } | Self::Invalid(_)
        )
    }
}
