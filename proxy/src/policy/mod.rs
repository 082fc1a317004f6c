//! Where plugins meet the proxy: the registry that loads and hot-swaps them, and the
//! three seams (backend choice, probe verdicts, breaker decisions) that call them in
//! place of, or beside, the native policies.
//!
//! Every seam follows the same rule: a failed plugin call (trap, deadline, memory,
//! invalid output) affects that one call only. A quarantined plugin is skipped for
//! the native policy; other failures follow the plugin's `on_error`.

pub mod recovery;
mod registry;
pub mod routing;

pub use registry::{FileCheck, PluginLoadError, PluginRegistry};
