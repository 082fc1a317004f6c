//! The `routing` world: pick the backend for each request.

use serde::de::DeserializeOwned;

use crate::Header;
use crate::config::{self, ConfigError};

pub use crate::bindings::routing::switchyard::policy::routing_types::{
    Candidate, Decision, Request, Response,
};

/// A routing policy. Implement it, then export it with
/// [`routing_policy!`](crate::routing_policy).
///
/// One value lives in each plugin instance, made by `init` from the
/// operator's `config` table; several instances run in parallel, each with
/// its own value, so state in `self` is a per-instance cache, never shared
/// truth.
pub trait RoutingPolicy: Sized + 'static {
    /// The `config` table, decoded (use `#[derive(Deserialize)]`).
    type Config: DeserializeOwned;

    /// Builds the policy from its configuration; an error refuses the load
    /// and the proxy keeps the previous version.
    fn init(config: Self::Config) -> Result<Self, ConfigError>;

    /// The request headers [`RoutingPolicy::choose`] reads; only these are
    /// copied into each call. Asked once, after `init`.
    fn wanted_headers(&self) -> Vec<String> {
        Vec::new()
    }

    /// Where `request` goes. `candidates` are the backends that may take it
    /// now; answer with one of their `index` values, a response of your own,
    /// or a rejection.
    fn choose(&mut self, request: &Request, candidates: &[Candidate]) -> Decision;

    /// `init` from the JSON the proxy passes (what unit tests call too).
    fn from_json(json: &str) -> Result<Self, ConfigError> {
        Self::init(config::parse(json)?)
    }
}

impl Request {
    /// A request with this method and path, from `192.0.2.1` to `example.test`,
    /// without headers: a starting point for tests.
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.to_string(),
            path: path.to_string(),
            host: "example.test".to_string(),
            client_ip: "192.0.2.1".to_string(),
            headers: Vec::new(),
        }
    }

    /// `GET path`.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// The request with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push(Header {
            name: name.to_ascii_lowercase(),
            value: value.to_string(),
        });
        self
    }

    /// The request from another client address.
    pub fn with_client_ip(mut self, ip: &str) -> Self {
        self.client_ip = ip.to_string();
        self
    }

    /// The request for another host.
    pub fn with_host(mut self, host: &str) -> Self {
        self.host = host.to_string();
        self
    }

    /// The first value of header `name` (any case), if the request has it and
    /// the policy asked for it in `wanted_headers`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_str())
    }
}

impl Candidate {
    /// A healthy, idle candidate of weight 1: a starting point for tests.
    pub fn new(index: u32) -> Self {
        Self {
            index,
            weight: 1,
            in_flight: 0,
            latency_ewma_us: 0,
            error_rate_permille: 0,
            healthy: true,
        }
    }

    /// With this weight.
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// With this many requests in flight.
    pub fn with_in_flight(mut self, in_flight: u32) -> Self {
        self.in_flight = in_flight;
        self
    }

    /// With this latency average, in microseconds.
    pub fn with_latency_us(mut self, latency_us: u32) -> Self {
        self.latency_ewma_us = latency_us;
        self
    }

    /// With this error rate, in thousandths.
    pub fn with_error_rate_permille(mut self, permille: u16) -> Self {
        self.error_rate_permille = permille;
        self
    }

    /// Not admitted by health checks or the breaker.
    pub fn unhealthy(mut self) -> Self {
        self.healthy = false;
        self
    }
}

impl Decision {
    /// Forward to `choice`, or answer 503 when there is none.
    pub fn backend_or_503(choice: Option<&Candidate>) -> Self {
        match choice {
            Some(c) => Self::Backend(c.index),
            None => Self::respond(503, "no usable backend"),
        }
    }

    /// Answer the client directly (status 200..=599, body at most 4 KiB).
    pub fn respond(status: u16, body: &str) -> Self {
        Self::Respond(Response {
            status,
            body: body.to_string(),
        })
    }
}
