//! Where plugins meet the proxy: the registry that loads and hot-swaps them, and the
//! three seams (backend choice, probe verdicts, breaker decisions) that call them in
//! place of, or beside, the native policies.
//!
//! Every seam follows the same rule: a failed plugin call (trap, deadline, memory,
//! invalid output) affects that one call only. A quarantined plugin is skipped for
//! the native policy; other failures follow the plugin's `on_error`.

pub mod health;
pub mod recovery;
mod registry;
pub mod routing;
pub mod samples;

pub use registry::{
    Active, FileCheck, LoadFailure, PluginLoadError, PluginMap, PluginRegistry, PluginSlot,
};

use crate::config::OnError;
use crate::plugin::PluginError;

/// What the seam does after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recourse {
    /// Use the native policy for this call.
    Native,
    /// Refuse, as `on_error = "fail-closed"` asks.
    FailClosed,
}

/// Quarantine always falls back (the plugin is not being run at all); other
/// failures follow the configured `on_error`.
pub(crate) fn recourse(error: &PluginError, on_error: OnError) -> Recourse {
    match (error, on_error) {
        (PluginError::Quarantined, _) | (_, OnError::Fallback) => Recourse::Native,
        (_, OnError::FailClosed) => Recourse::FailClosed,
    }
}

/// A pool's plugin hooks, resolved from its `plugin:NAME` references. Empty for a
/// pool that only uses native policies.
#[derive(Debug, Default)]
pub struct PoolPolicies {
    /// `balance = "plugin:NAME"`.
    pub routing: Option<std::sync::Arc<PluginSlot>>,
    /// `shadow = "plugin:NAME"`.
    pub shadow: Option<routing::Shadow>,
    /// `[health] evaluate = "plugin:NAME"`.
    pub health: Option<std::sync::Arc<PluginSlot>>,
    /// `[breaker] policy = "plugin:NAME"`.
    pub recovery: Option<std::sync::Arc<PluginSlot>>,
    /// Counts routing calls shed to keep workers free (see
    /// [`InlineGate`](crate::plugin::InlineGate)).
    pub shed: Option<prometheus_client::metrics::counter::Counter>,
}

impl PoolPolicies {
    /// Looks the pool's references up among the loaded plugins. Validation has
    /// checked that they exist; one missing here (it cannot be) is left native.
    pub fn resolve(
        config: &crate::config::PoolConfig,
        plugins: &PluginMap,
        metrics: &crate::metrics::Metrics,
    ) -> Self {
        let get = |name: &Option<String>| name.as_ref().and_then(|n| plugins.get(n)).cloned();
        let routing = get(&config.routing_plugin);
        Self {
            shed: routing
                .as_ref()
                .map(|slot| metrics.control().plugin_shed(slot.name())),
            routing,
            shadow: get(&config.shadow_plugin).map(|slot| {
                let (agree, disagree) = metrics.shadow_counters(&config.name, slot.name());
                routing::Shadow::new(slot, agree, disagree)
            }),
            health: get(&config.health.as_ref().and_then(|h| h.plugin.clone())),
            recovery: get(&config.breaker.plugin),
        }
    }

    /// Whether selection needs the request view (a routing or shadow plugin).
    pub fn routes(&self) -> bool {
        self.routing.is_some() || self.shadow.is_some()
    }
}
