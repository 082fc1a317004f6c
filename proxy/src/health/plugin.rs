//! Probe verdicts from a health-check plugin, with the native evaluator as fallback,
//! and the custom probe request a plugin may ask for. This seam lives with the
//! checks rather than in `crate::policy`, since the probe loops below the policy
//! layer call it.

use std::sync::Arc;

use super::probe::{ProbeError, ProbeReport};
use super::{Verdict, native_verdict};
use crate::config::HealthConfig;
use crate::plugin::{self, CustomProbe, HealthVerdict, ProbeTarget};
use crate::plugin::{PluginSlot, Recourse, recourse};

/// Asks the plugin in `slot` which request to probe `address` of `pool` with. `None`
/// means the configured probe: the plugin has no `probe-request` export, answered
/// `none`, or failed (counted in its error metrics; the probe still goes out, as
/// configured, so a broken `probe-request` cannot take a backend down by itself).
pub async fn probe_request(
    slot: &Arc<PluginSlot>,
    pool: &str,
    address: &str,
) -> Option<CustomProbe> {
    let active = slot.current_full();
    if !active
        .plugin
        .as_health()
        .is_some_and(|h| h.has_probe_request())
    {
        return None;
    }
    let (pool, address) = (pool.to_string(), address.to_string());
    let task = tokio::task::spawn_blocking(move || {
        let health = active.plugin.as_health()?;
        let target = ProbeTarget {
            pool: &pool,
            address: &address,
        };
        match health.probe_request(&target) {
            Ok(custom) => custom,
            Err(e) => {
                tracing::debug!(plugin = %active.plugin.name(), error = %e,
                    "probe-request failed, sending the configured probe");
                None
            }
        }
    });
    task.await.ok().flatten()
}

/// Judges one probe with the plugin in `slot`. The call runs on a blocking thread:
/// probes are not on the request path, and a plugin with a long deadline must not
/// hold up an async worker.
pub async fn evaluate(
    slot: &Arc<PluginSlot>,
    config: &HealthConfig,
    report: ProbeReport,
) -> Verdict {
    let active = slot.current_full();
    let task = tokio::task::spawn_blocking(move || {
        let result = match active.plugin.as_health() {
            Some(health) => health.evaluate(&view(&report)),
            None => Err(plugin::PluginError::Invalid(
                "not a health-check plugin".into(),
            )),
        };
        (result, report, active.config.on_error)
    });
    let Ok((result, report, on_error)) = task.await else {
        return Verdict::Down("health plugin task failed".into());
    };
    match result {
        Ok(HealthVerdict::Up) => Verdict::Up,
        Ok(HealthVerdict::Degraded(percent)) => Verdict::Degraded(percent),
        Ok(HealthVerdict::Down(reason)) => Verdict::Down(reason),
        Err(e) => match recourse(&e, on_error) {
            Recourse::Native => native_verdict(config, &report),
            Recourse::FailClosed => {
                Verdict::Down(format!("health plugin failed: {}", e.kind_label()))
            }
        },
    }
}

fn view(report: &ProbeReport) -> plugin::ProbeReport<'_> {
    plugin::ProbeReport {
        status: report.status,
        headers: &report.headers,
        body_prefix: &report.body_prefix,
        latency: report.latency,
        error: report.error.as_ref().map(|e| match e {
            ProbeError::Timeout => plugin::ProbeError::Timeout,
            ProbeError::Refused => plugin::ProbeError::Refused,
            ProbeError::Reset => plugin::ProbeError::Reset,
            ProbeError::Other(_) => plugin::ProbeError::Other,
        }),
    }
}
