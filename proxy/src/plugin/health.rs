//! Health-check plugins: judge the result of an active probe.
#![forbid(unsafe_code)]

use std::time::Duration;

use http::{HeaderMap, HeaderName};
use wasmtime::Store;
use wasmtime::component::InstancePre;

use super::bindings::health::switchyard::policy::health_types as wit;
use super::bindings::health::{HealthCheck, HealthCheckPre};
use super::error::PluginError;
use super::headers::SelectedHeaders;
use super::host::HostState;
use super::instance::{Instances, world};
use super::limits;
use super::stats::PluginStats;

/// Why a probe got no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeError {
    /// No answer within the probe timeout.
    Timeout,
    /// Connection refused.
    Refused,
    /// Connection reset.
    Reset,
    /// Anything else (TLS, protocol, ...).
    Other,
}

/// The outcome of one probe, borrowed from the prober.
#[derive(Debug, Clone, Copy)]
pub struct ProbeReport<'a> {
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Response headers; the plugin sees only those it declared.
    pub headers: &'a HeaderMap,
    /// Start of the body; only the first 4 KiB are passed on.
    pub body_prefix: &'a [u8],
    /// Time to response or failure.
    pub latency: Duration,
    /// Set when no response arrived.
    pub error: Option<ProbeError>,
}

/// A validated health verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthVerdict {
    /// Serving normally.
    Up,
    /// Not serving, with a reason of at most 256 bytes.
    Down(String),
    /// Serving at reduced weight: percent in 0..=100.
    Degraded(u8),
}

/// A health-check world instance.
pub(crate) struct HealthInstance {
    bindings: HealthCheck,
}

world!(
    HealthInstance {},
    HealthCheckPre,
    "health-check",
    ["init", "wanted-headers", "evaluate"]
);

/// A loaded health-check plugin. `evaluate` may be called concurrently.
#[derive(Debug)]
pub struct HealthPlugin {
    instances: Instances<HealthInstance>,
    wanted: Vec<HeaderName>,
}

impl HealthPlugin {
    pub(crate) fn load(instances: Instances<HealthInstance>) -> Result<Self, PluginError> {
        let names =
            instances.smoke(|slot| slot.world.bindings.call_wanted_headers(&mut slot.store))?;
        let wanted = limits::header_names(names)?;
        Ok(Self { instances, wanted })
    }

    /// Live statistics of this plugin version.
    pub fn stats(&self) -> &PluginStats {
        self.instances.stats()
    }

    /// The response headers this plugin reads.
    pub fn wanted_headers(&self) -> &[HeaderName] {
        &self.wanted
    }

    /// Asks the plugin to judge a probe. The verdict is validated (reason
    /// length, percent range).
    pub fn evaluate(&self, probe: &ProbeReport<'_>) -> Result<HealthVerdict, PluginError> {
        let headers = SelectedHeaders::select(&self.wanted, probe.headers);
        let body = &probe.body_prefix[..probe.body_prefix.len().min(limits::MAX_PROBE_BODY_BYTES)];
        let wit_probe = wit::Probe {
            status: probe.status,
            headers: headers.as_slice(),
            body_prefix: body,
            latency_us: u32::try_from(probe.latency.as_micros()).unwrap_or(u32::MAX),
            error: probe.error.map(|e| match e {
                ProbeError::Timeout => wit::ErrorKind::Timeout,
                ProbeError::Refused => wit::ErrorKind::Refused,
                ProbeError::Reset => wit::ErrorKind::Reset,
                ProbeError::Other => wit::ErrorKind::Other,
            }),
        };
        self.instances.call(
            |slot| {
                slot.world
                    .bindings
                    .call_evaluate(&mut slot.store, wit_probe)
            },
            validate,
        )
    }
}

fn validate(verdict: wit::Verdict) -> Result<HealthVerdict, PluginError> {
    match verdict {
        wit::Verdict::Up => Ok(HealthVerdict::Up),
        wit::Verdict::Down(reason) => {
            limits::reason(&reason)?;
            Ok(HealthVerdict::Down(reason))
        }
        wit::Verdict::Degraded(pct) if pct <= 100 => Ok(HealthVerdict::Degraded(pct)),
        wit::Verdict::Degraded(pct) => Err(PluginError::Invalid(format!(
            "degraded weight {pct}% is over 100%"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn verdict() -> impl Strategy<Value = wit::Verdict> {
        prop_oneof![
            Just(wit::Verdict::Up),
            (0..600usize).prop_map(|n| wit::Verdict::Down("r".repeat(n))),
            any::<u8>().prop_map(wit::Verdict::Degraded),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 3000, failure_persistence: None, ..ProptestConfig::default() })]

        /// A verdict is used only when it is in range: a degraded weight of at most
        /// 100 %, a down reason within its size limit.
        #[test]
        fn only_in_range_verdicts_pass(verdict in verdict()) {
            let valid = match &verdict {
                wit::Verdict::Up => true,
                wit::Verdict::Down(reason) => reason.len() <= limits::MAX_REASON_BYTES,
                wit::Verdict::Degraded(pct) => *pct <= 100,
            };
            match validate(verdict) {
                Ok(HealthVerdict::Degraded(pct)) => prop_assert!(pct <= 100),
                Ok(HealthVerdict::Down(reason)) => {
                    prop_assert!(reason.len() <= limits::MAX_REASON_BYTES)
                }
                Ok(_) => prop_assert!(valid),
                Err(e) => {
                    prop_assert!(!valid);
                    prop_assert!(matches!(e, PluginError::Invalid(_)));
                }
            }
        }
    }
}
