//! Health-check plugins: judge the result of an active probe, and (since
//! `switchyard:policy@0.1.1`, optionally) choose the request each probe sends.
#![forbid(unsafe_code)]

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use wasmtime::Store;
use wasmtime::component::types::{ComponentItem, Type};
use wasmtime::component::{
    ComponentExportIndex, ComponentType, InstancePre, Lift, Lower, TypedFunc,
};

use super::bindings::health::switchyard::policy::health_types as wit;
use super::bindings::health::switchyard::policy::types as wit_types;
use super::bindings::health::{HealthCheckRequired, HealthCheckRequiredPre};
use super::error::PluginError;
use super::headers::SelectedHeaders;
use super::host::HostState;
use super::instance::{Instances, World};
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

/// The backend a probe is about to go to, as `probe-request` receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget<'a> {
    /// The pool's name.
    pub pool: &'a str,
    /// The backend's `ip:port`.
    pub address: &'a str,
}

/// The probe a plugin asked for, after validation: what the prober sends in
/// place of the configured method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomProbe {
    /// Request method.
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: String,
    /// Extra request headers.
    pub headers: HeaderMap,
}

/// `probe-target` on the wire.
#[derive(ComponentType, Lower, Debug)]
#[component(record)]
struct WireTarget {
    pool: String,
    address: String,
}

/// `header` on the wire.
#[derive(ComponentType, Lift, Debug)]
#[component(record)]
struct WireHeader {
    name: String,
    value: String,
}

/// `custom-probe` on the wire.
#[derive(ComponentType, Lift, Debug)]
#[component(record)]
struct WireProbe {
    method: String,
    path: String,
    headers: Vec<WireHeader>,
}

type ProbeRequestFunc = TypedFunc<(WireTarget,), (Option<WireProbe>,)>;

/// The signature `probe-request` must have, in the form [`shape`] writes.
const PROBE_REQUEST_SHAPE: &str = "(record{pool: string, address: string}) -> \
    (option<record{method: string, path: string, headers: list<record{name: string, value: string}>}>)";

/// Longest path a custom probe may ask for.
const MAX_PROBE_PATH_BYTES: usize = 2048;

/// Request headers the prober sets itself; a plugin may not.
const RESERVED_PROBE_HEADERS: [&str; 7] = [
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
];

/// A linked health-check component: the required exports, and where the
/// optional `probe-request` is, if the component has it.
pub(crate) struct HealthPre {
    required: HealthCheckRequiredPre<HostState>,
    probe_request: Option<ComponentExportIndex>,
}

/// A health-check world instance.
pub(crate) struct HealthInstance {
    bindings: HealthCheckRequired,
    probe_request: Option<ProbeRequestFunc>,
}

impl World for HealthInstance {
    const WORLD: &'static str = "health-check";
    const EXPORTS: &'static [&'static str] = &["init", "wanted-headers", "evaluate"];
    type Pre = HealthPre;

    fn pre(pre: InstancePre<HostState>) -> wasmtime::Result<HealthPre> {
        let probe_request = match pre.component().get_export(None, "probe-request") {
            None => None,
            Some((ComponentItem::ComponentFunc(func), index)) => {
                let params: Vec<String> = func.params().map(|(_, t)| shape(&t)).collect();
                let results: Vec<String> = func.results().map(|t| shape(&t)).collect();
                let found = format!("({}) -> ({})", params.join(", "), results.join(", "));
                if found != PROBE_REQUEST_SHAPE {
                    wasmtime::bail!(
                        "export `probe-request` has the signature {found}, expected {PROBE_REQUEST_SHAPE}"
                    );
                }
                Some(index)
            }
            Some(_) => wasmtime::bail!("export `probe-request` is not a function"),
        };
        Ok(HealthPre {
            required: HealthCheckRequiredPre::new(pre)?,
            probe_request,
        })
    }

    fn instantiate(pre: &HealthPre, store: &mut Store<HostState>) -> wasmtime::Result<Self> {
        let instance = pre.required.instance_pre().instantiate(&mut *store)?;
        let bindings = HealthCheckRequired::new(&mut *store, &instance)?;
        let probe_request = match &pre.probe_request {
            Some(index) => Some(instance.get_typed_func(&mut *store, index)?),
            None => None,
        };
        Ok(Self {
            bindings,
            probe_request,
        })
    }

    fn init(
        &self,
        store: &mut Store<HostState>,
        config: &str,
    ) -> wasmtime::Result<Result<(), String>> {
        self.bindings.call_init(store, config)
    }
}

/// A component type written out in WIT-like syntax, to compare signatures.
fn shape(ty: &Type) -> String {
    match ty {
        Type::String => "string".into(),
        Type::List(list) => format!("list<{}>", shape(&list.ty())),
        Type::Option(option) => format!("option<{}>", shape(&option.ty())),
        Type::Record(record) => {
            let fields: Vec<String> = record
                .fields()
                .map(|f| format!("{}: {}", f.name, shape(&f.ty)))
                .collect();
            format!("record{{{}}}", fields.join(", "))
        }
        other => format!("{other:?}").to_lowercase(),
    }
}

/// A loaded health-check plugin. `evaluate` may be called concurrently.
#[derive(Debug)]
pub struct HealthPlugin {
    instances: Instances<HealthInstance>,
    wanted: Vec<HeaderName>,
    custom_probes: bool,
}

impl HealthPlugin {
    pub(crate) fn load(instances: Instances<HealthInstance>) -> Result<Self, PluginError> {
        let (names, custom_probes) = instances.smoke(|slot| {
            let names = slot.world.bindings.call_wanted_headers(&mut slot.store)?;
            Ok((names, slot.world.probe_request.is_some()))
        })?;
        let wanted = limits::header_names(names)?;
        Ok(Self {
            instances,
            wanted,
            custom_probes,
        })
    }

    /// Whether the plugin exports `probe-request` (0.1.0 plugins do not).
    pub fn has_probe_request(&self) -> bool {
        self.custom_probes
    }

    /// Asks the plugin which request to probe `target` with: `Ok(None)` keeps
    /// the configured probe (also for a plugin without `probe-request`,
    /// which is then not called). The answer is validated: method token,
    /// path starting with `/` and at most 2 KiB, at most 16 legal headers,
    /// none of those the prober sets itself.
    pub fn probe_request(
        &self,
        target: &ProbeTarget<'_>,
    ) -> Result<Option<CustomProbe>, PluginError> {
        if !self.custom_probes {
            return Ok(None);
        }
        let wire = WireTarget {
            pool: target.pool.to_string(),
            address: target.address.to_string(),
        };
        self.instances.call(
            |slot| match &slot.world.probe_request {
                Some(func) => func.call(&mut slot.store, (wire,)).map(|(answer,)| answer),
                None => Ok(None),
            },
            |answer| answer.map(validate_probe).transpose(),
        )
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
            headers: headers
                .as_slice()
                .iter()
                .map(|h| wit_types::Header {
                    name: h.name.to_string(),
                    value: h.value.to_string(),
                })
                .collect(),
            body_prefix: body.to_vec(),
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
                    .call_evaluate(&mut slot.store, &wit_probe)
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

/// Checks a custom probe and turns it into request parts.
fn validate_probe(probe: WireProbe) -> Result<CustomProbe, PluginError> {
    let method = Method::from_bytes(probe.method.as_bytes()).map_err(|_| {
        PluginError::Invalid(format!("probe method {:?} is not a token", probe.method))
    })?;
    if !probe.path.starts_with('/') || probe.path.len() > MAX_PROBE_PATH_BYTES {
        return Err(PluginError::Invalid(format!(
            "probe path must start with `/` and be at most {MAX_PROBE_PATH_BYTES} bytes"
        )));
    }
    if probe.path.parse::<http::uri::PathAndQuery>().is_err() {
        return Err(PluginError::Invalid(format!(
            "probe path {:?} is not a valid path",
            probe.path
        )));
    }
    if probe.headers.len() > limits::MAX_WANTED_HEADERS {
        return Err(PluginError::Invalid(format!(
            "{} probe headers, at most {} allowed",
            probe.headers.len(),
            limits::MAX_WANTED_HEADERS
        )));
    }
    let mut headers = HeaderMap::new();
    for h in probe.headers {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| PluginError::Invalid(format!("illegal header name {:?}", h.name)))?;
        if RESERVED_PROBE_HEADERS.contains(&name.as_str()) {
            return Err(PluginError::Invalid(format!(
                "probe header `{name}` is set by the proxy"
            )));
        }
        let value = HeaderValue::from_str(&h.value)
            .map_err(|_| PluginError::Invalid(format!("illegal value for header `{name}`")))?;
        headers.append(name, value);
    }
    Ok(CustomProbe {
        method,
        path: probe.path,
        headers,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn probe(method: &str, path: &str, headers: &[(&str, &str)]) -> WireProbe {
        WireProbe {
            method: method.into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| WireHeader {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn custom_probes_are_validated() {
        let ok = validate_probe(probe("HEAD", "/ready?deep=1", &[("x-probe", "1")])).unwrap();
        assert_eq!(ok.method, Method::HEAD);
        assert_eq!(ok.headers["x-probe"], "1");
        for bad in [
            probe("G ET", "/", &[]),
            probe("GET", "ready", &[]),
            probe("GET", &format!("/{}", "a".repeat(3000)), &[]),
            probe("GET", "/", &[("host", "evil.test")]),
            probe("GET", "/", &[("Transfer-Encoding", "chunked")]),
            probe("GET", "/", &[("x-ok", "bad\nvalue")]),
            probe("GET", "/", &[("x", "1"); 17]),
        ] {
            assert!(validate_probe(bad).is_err());
        }
    }

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
