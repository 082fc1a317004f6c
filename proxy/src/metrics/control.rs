//! Metrics of the control plane: the admin API's refusals, authentication failures
//! and audited changes, the state file, and plugin calls shed to keep workers free.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MutationLabels {
    action: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

/// The control plane's counters (see the module docs).
#[derive(Debug, Clone)]
pub struct ControlMetrics {
    auth_failures: Family<ReasonLabels, Counter>,
    refused: Family<ReasonLabels, Counter>,
    mutations: Family<MutationLabels, Counter>,
    accept_errors: Counter,
    state_writes: Family<ResultLabels, Counter>,
    state_skipped: Family<KindLabels, Counter>,
    plugin_shed: Family<PluginLabels, Counter>,
}

impl ControlMetrics {
    /// Registers the families in `registry`.
    pub(super) fn register(registry: &mut Registry) -> Self {
        let this = Self {
            auth_failures: Family::default(),
            refused: Family::default(),
            mutations: Family::default(),
            accept_errors: Counter::default(),
            state_writes: Family::default(),
            state_skipped: Family::default(),
            plugin_shed: Family::default(),
        };
        registry.register(
            "admin_auth_failures",
            "Admin requests without a valid bearer token, by reason (missing, wrong)",
            this.auth_failures.clone(),
        );
        registry.register(
            "admin_refused",
            "Admin requests refused before reaching an endpoint, by reason (host, cross_site, content_type, rate_limited, moved)",
            this.refused.clone(),
        );
        registry.register(
            "admin_mutations",
            "Admin requests that change state (audited), by action and result (applied, rejected)",
            this.mutations.clone(),
        );
        registry.register(
            "admin_accept_errors",
            "Admin listener accept errors (such as running out of file descriptors)",
            this.accept_errors.clone(),
        );
        registry.register(
            "state_file_writes",
            "State file writes, by result",
            this.state_writes.clone(),
        );
        registry.register(
            "state_file_skipped",
            "State file entries not restored at start because they no longer fit the config or the admin API's rules, by kind",
            this.state_skipped.clone(),
        );
        registry.register(
            "plugin_calls_shed",
            "Routing plugin calls not made because other calls held the workers; the native policy chose instead",
            this.plugin_shed.clone(),
        );
        this
    }

    /// Counts an admin request without a valid token (`missing` or `wrong`).
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts an admin request refused before its endpoint.
    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// Counts an audited change.
    pub fn mutation(&self, action: &'static str, applied: bool) {
        let result = if applied { "applied" } else { "rejected" };
        self.mutations
            .get_or_create(&MutationLabels { action, result })
            .inc();
    }

    /// Counts a failed accept on the admin listener.
    pub fn accept_error(&self) {
        self.accept_errors.inc();
    }

    /// Counts a state file write.
    pub fn state_write(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.state_writes
            .get_or_create(&ResultLabels { result })
            .inc();
    }

    /// Counts a state file entry (or the whole `file`) skipped at start.
    pub fn state_skipped(&self, kind: &'static str) {
        self.state_skipped.get_or_create(&KindLabels { kind }).inc();
    }

    /// The counter of routing calls of `plugin` shed to keep workers free.
    pub fn plugin_shed(&self, plugin: &str) -> Counter {
        self.plugin_shed
            .get_or_create(&PluginLabels {
                plugin: plugin.to_string(),
            })
            .clone()
    }
}
