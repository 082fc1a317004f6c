//! The `health-check` world: judge active probes, and optionally choose the
//! request each probe sends.

use std::borrow::Cow;

use serde::de::DeserializeOwned;

use crate::Header;
use crate::config::{self, ConfigError};

pub use crate::bindings::health::switchyard::policy::health_types::{
    CustomProbe, ErrorKind, Probe, ProbeTarget, Verdict,
};

/// A health-check policy. Implement it, then export it with
/// [`health_policy!`](crate::health_policy).
///
/// Its verdict replaces the pool's own check (`expect_status` and
/// `expect_body` are not applied); `rise` and `fall` still turn verdicts into
/// up and down, `degraded` counting as up.
pub trait HealthPolicy: Sized + 'static {
    /// The `config` table, decoded (use `#[derive(Deserialize)]`).
    type Config: DeserializeOwned;

    /// Builds the policy from its configuration; an error refuses the load.
    fn init(config: Self::Config) -> Result<Self, ConfigError>;

    /// The response headers [`HealthPolicy::evaluate`] reads.
    fn wanted_headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// The HTTP request to probe `target` with, asked before every probe;
    /// `None` (the default) sends the pool's configured probe.
    fn probe_request(&mut self, target: &ProbeTarget) -> Option<CustomProbe> {
        let _ = target;
        None
    }

    /// The verdict on one probe.
    fn evaluate(&mut self, probe: &Probe) -> Verdict;

    /// `init` from the JSON the proxy passes (what unit tests call too).
    fn from_json(json: &str) -> Result<Self, ConfigError> {
        Self::init(config::parse(json)?)
    }
}

impl Probe {
    /// A probe that got `status` with `body`, in 1 ms: a starting point for
    /// tests.
    pub fn answered(status: u16, body: &str) -> Self {
        Self {
            status: Some(status),
            headers: Vec::new(),
            body_prefix: body.as_bytes().to_vec(),
            latency_us: 1_000,
            error: None,
        }
    }

    /// A probe that got no answer.
    pub fn failed(kind: ErrorKind) -> Self {
        Self {
            status: None,
            headers: Vec::new(),
            body_prefix: Vec::new(),
            latency_us: 1_000,
            error: Some(kind),
        }
    }

    /// The probe with one more response header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.to_string(),
        });
        self
    }

    /// The probe with another latency.
    pub fn with_latency_us(mut self, latency_us: u32) -> Self {
        self.latency_us = latency_us;
        self
    }

    /// The first value of response header `name` (any case), if declared in
    /// `wanted_headers`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }

    /// The body prefix as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.body_prefix)
    }
}

impl ProbeTarget {
    /// The backend at `address` in `pool`.
    pub fn new(pool: &str, address: &str) -> Self {
        Self {
            pool: pool.to_string(),
            address: address.to_string(),
        }
    }
}

impl CustomProbe {
    /// `method path`, without extra headers.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// The probe with one more request header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.to_string(),
        });
        self
    }
}
