//! Active health checks: probes run in the background per backend, a verdict is drawn
//! from each probe, and rise/fall hysteresis turns verdicts into up/down.

mod checker;
pub mod plugin;
mod probe;
mod state;

pub use checker::HealthSupervisor;
pub use probe::{ProbeError, ProbeReport, ProbeTls, probe, probe_as};
pub use state::{CheckRecord, HealthState, HealthStatus};

use crate::config::{HealthConfig, ProbeKind};

/// The verdict on one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Up,
    /// Up, but at a reduced share of its weight (percent).
    Degraded(u8),
    /// Down, with the reason logged on the transition.
    Down(String),
}

/// The built-in verdict on one probe: transport errors, status ranges, body
/// substring. A pool's health-check plugin stands in for it (see
/// [`plugin`]) and falls back to it.
pub fn native_verdict(config: &HealthConfig, report: &ProbeReport) -> Verdict {
    if let Some(error) = &report.error {
        return Verdict::Down(error.to_string());
    }
    let ProbeKind::Http {
        expect_status,
        expect_body,
        ..
    } = &config.probe
    else {
        return Verdict::Up;
    };
    let Some(status) = report.status else {
        return Verdict::Down("no response".into());
    };
    if !expect_status.iter().any(|r| r.contains(&status)) {
        return Verdict::Down(format!("status {status}"));
    }
    if let Some(needle) = expect_body {
        let haystack = String::from_utf8_lossy(&report.body_prefix);
        if !haystack.contains(needle.as_str()) {
            return Verdict::Down("body mismatch".into());
        }
    }
    Verdict::Up
}
