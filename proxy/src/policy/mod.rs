//! Where plugins meet the request path: the registry that loads and hot-swaps them,
//! the select step that asks a pool's routing plugin or its native balancer
//! ([`routing`]), and the breaker seam that asks a recovery plugin or the native
//! thresholds ([`recovery`]). The probe-verdict seam lives with the probe loops
//! (`crate::health::plugin`), below this layer.
//!
//! Every seam follows the same rule (`crate::plugin::recourse`): a failed plugin
//! call (trap, deadline, memory, invalid output) affects that one call only. A
//! quarantined plugin is skipped for the native policy; other failures follow the
//! plugin's `on_error`.

pub mod recovery;
mod registry;
pub mod routing;

pub use registry::{FileCheck, PluginLoadError, PluginRegistry};
