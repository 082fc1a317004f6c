//! What plugin authors run: `switchyard plugin new` (a crate that builds, tests and
//! loads), `plugin run` (a plugin's decisions on given or recorded inputs, with
//! their cost), `plugin check` (would it load, and does `init` accept a config) and
//! `plugin bench` (per-call cost). The `switchyard` binary is a thin layer over
//! these functions, which the tests call too.

mod cases;
mod exercise;
mod scaffold;

pub use cases::{Case, Flags, HealthCase, RecoveryCase, RouteCase, case_from_flags, parse_cases};
pub use exercise::{BenchReport, Loaded, Report, bench, load, run};
pub use scaffold::{ScaffoldError, new_plugin};

/// Why a `plugin run`, `check` or `bench` could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The component could not be inspected or loaded (includes `init` refusing
    /// the config).
    #[error(transparent)]
    Plugin(#[from] crate::plugin::PluginError),
    /// The component implements none of the worlds, or several and `--kind` was
    /// not given.
    #[error("{0}")]
    Kind(String),
    /// An input (JSON or flag) is malformed.
    #[error("invalid input: {0}")]
    Input(String),
}
