//! The plugins a pool names in place of (or beside) its native policies, resolved
//! from its `plugin:NAME` references when the snapshot is built. Which one decides a
//! given call is up to the seams above the pools (`crate::policy`, and the health
//! checks' verdict seam); a pool only carries them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::metrics::counter::Counter;

use crate::config::PoolConfig;
use crate::metrics::Metrics;
use crate::plugin::{PluginMap, PluginSlot};

/// A pool's plugin hooks, resolved from its `plugin:NAME` references. Empty for a
/// pool that only uses native policies.
#[derive(Debug, Default)]
pub struct PoolPolicies {
    /// `balance = "plugin:NAME"`.
    pub routing: Option<Arc<PluginSlot>>,
    /// `shadow = "plugin:NAME"`.
    pub shadow: Option<Shadow>,
    /// `[health] evaluate = "plugin:NAME"`.
    pub health: Option<Arc<PluginSlot>>,
    /// `[breaker] policy = "plugin:NAME"`.
    pub recovery: Option<Arc<PluginSlot>>,
    /// Counts routing calls shed to keep workers free (see
    /// [`InlineGate`](crate::plugin::InlineGate)).
    pub shed: Option<Counter>,
}

impl PoolPolicies {
    /// Looks the pool's references up among the loaded plugins. Validation has
    /// checked that they exist; one missing here (it cannot be) is left native.
    pub fn resolve(config: &PoolConfig, plugins: &PluginMap, metrics: &Metrics) -> Self {
        let get = |name: &Option<String>| name.as_ref().and_then(|n| plugins.get(n)).cloned();
        let routing = get(&config.routing_plugin);
        Self {
            shed: routing
                .as_ref()
                .map(|slot| metrics.control().plugin_shed(slot.name())),
            routing,
            shadow: get(&config.shadow_plugin).map(|slot| {
                let (agree, disagree) = metrics.shadow_counters(&config.name, slot.name());
                Shadow::new(slot, agree, disagree)
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

/// A routing plugin run beside the live policy, whose agreement is counted.
#[derive(Debug)]
pub struct Shadow {
    pub slot: Arc<PluginSlot>,
    pub agree: Counter,
    pub disagree: Counter,
    /// Clock milliseconds of the last disagreement logged, to sample the log.
    last_logged_ms: AtomicU64,
}

impl Shadow {
    /// A shadow with its two pre-resolved counters.
    pub fn new(slot: Arc<PluginSlot>, agree: Counter, disagree: Counter) -> Self {
        Self {
            slot,
            agree,
            disagree,
            last_logged_ms: AtomicU64::new(0),
        }
    }

    /// Whether a disagreement seen at `now_ms` is to be logged: at most one a second
    /// (`DISAGREEMENT_LOG_INTERVAL_MS`), by whichever request sees it first.
    pub fn log_due(&self, now_ms: u64) -> bool {
        let last = self.last_logged_ms.load(Ordering::Relaxed);
        now_ms >= last + DISAGREEMENT_LOG_INTERVAL_MS
            && self
                .last_logged_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

/// Disagreements are logged at most this often per pool.
const DISAGREEMENT_LOG_INTERVAL_MS: u64 = 1000;
