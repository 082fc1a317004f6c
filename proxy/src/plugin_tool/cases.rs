//! The inputs `plugin run` and `plugin bench` feed a plugin, read from JSON: one case,
//! an array of cases, or a samples document from `GET /plugins/{name}/samples`.
//!
//! ```json
//! {"request": {"method": "GET", "path": "/", "headers": {"x-tenant": "acme"}},
//!  "candidates": [{"index": 0, "in_flight": 3}, {"index": 1}]}
//! {"probe": {"status": 200, "body": "{\"status\":\"ok\"}"}, "target": {"pool": "app"}}
//! {"stats": {"consecutive_failures": 4}, "outcome": {"failure": "timeout"}}
//! ```
//!
//! Every field has a default (a `GET /` from `192.0.2.1`, three idle candidates, a
//! 200 answer, a closed breaker, a successful request), so a case only says what
//! matters to it.

use std::net::IpAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use super::ToolError;
use crate::plugin::{
    BreakerState, BreakerStats, FailureKind, Outcome, PluginKind, ProbeError, RouteCandidate,
};

/// One input for a plugin of some kind.
#[derive(Debug, Clone)]
pub enum Case {
    /// For a routing plugin.
    Route(RouteCase),
    /// For a health-check plugin.
    Health(HealthCase),
    /// For a recovery plugin.
    Recovery(RecoveryCase),
}

/// A request and the candidates for it, maybe with the decision recorded for it.
#[derive(Debug, Clone)]
pub struct RouteCase {
    /// Request method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Requested host.
    pub host: String,
    /// Client address.
    pub client_ip: IpAddr,
    /// Request headers.
    pub headers: HeaderMap,
    /// The backends it may go to.
    pub candidates: Vec<RouteCandidate>,
    /// The decision a running proxy recorded for this input, to compare with.
    pub recorded: Option<Value>,
}

/// A probe result, and the backend it came from.
#[derive(Debug, Clone)]
pub struct HealthCase {
    /// HTTP status, if the backend answered.
    pub status: Option<u16>,
    /// Response headers.
    pub headers: HeaderMap,
    /// Start of the body.
    pub body: Vec<u8>,
    /// Time to the answer or failure.
    pub latency: Duration,
    /// Set when no answer came.
    pub error: Option<ProbeError>,
    /// The pool, for `probe-request`.
    pub pool: String,
    /// The backend address, for `probe-request`.
    pub address: String,
}

/// A backend's breaker statistics, and an outcome (or a tick).
#[derive(Debug, Clone)]
pub struct RecoveryCase {
    /// What the proxy knows about the backend.
    pub stats: BreakerStats,
    /// The request outcome; `None` runs `on-tick`.
    pub outcome: Option<Outcome>,
}

/// A case given piece by piece on the command line; unset pieces keep their
/// defaults.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    /// Request method (routing).
    pub method: Option<String>,
    /// Request path (routing).
    pub path: Option<String>,
    /// Requested host (routing).
    pub host: Option<String>,
    /// Client address (routing).
    pub client_ip: Option<String>,
    /// `NAME: VALUE` request headers (routing) or response headers (health).
    pub headers: Vec<String>,
    /// A count of idle candidates, or a JSON array of candidates (routing).
    pub candidates: Option<String>,
    /// Response status (health).
    pub status: Option<u16>,
    /// Response body (health).
    pub body: Option<String>,
    /// `timeout`, `refused`, `reset` or `other`: no answer (health).
    pub probe_error: Option<String>,
    /// `success`, `connect`, `timeout`, `reset`, `server-error`, `other` or
    /// `tick` (recovery).
    pub outcome: Option<String>,
    /// Failures in a row so far (recovery).
    pub failures_in_a_row: Option<u32>,
    /// `closed`, `open` or `half-open` (recovery).
    pub state: Option<String>,
}

/// The case `flags` describe, as the JSON [`parse_cases`] reads.
pub fn case_from_flags(kind: PluginKind, flags: &Flags) -> Result<Value, ToolError> {
    let mut headers = serde_json::Map::new();
    for h in &flags.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| input_error(format!("--header `{h}`: expected NAME: VALUE")))?;
        headers.insert(
            name.trim().to_string(),
            Value::String(value.trim().to_string()),
        );
    }
    let set = |map: &mut serde_json::Map<String, Value>, key: &str, value: Option<Value>| {
        if let Some(value) = value {
            map.insert(key.to_string(), value);
        }
    };
    let mut case = serde_json::Map::new();
    match kind {
        PluginKind::Routing => {
            let mut request = serde_json::Map::new();
            set(
                &mut request,
                "method",
                flags.method.clone().map(Value::String),
            );
            set(&mut request, "path", flags.path.clone().map(Value::String));
            set(&mut request, "host", flags.host.clone().map(Value::String));
            set(
                &mut request,
                "client_ip",
                flags.client_ip.clone().map(Value::String),
            );
            request.insert("headers".into(), Value::Object(headers));
            case.insert("request".into(), Value::Object(request));
            if let Some(c) = &flags.candidates {
                let parsed: Value = serde_json::from_str(c).map_err(|_| {
                    input_error(format!("--candidates `{c}`: a count or a JSON array"))
                })?;
                case.insert("candidates".into(), parsed);
            }
        }
        PluginKind::Health => {
            let mut probe = serde_json::Map::new();
            set(&mut probe, "status", flags.status.map(Value::from));
            set(&mut probe, "body", flags.body.clone().map(Value::String));
            set(
                &mut probe,
                "error",
                flags.probe_error.clone().map(Value::String),
            );
            probe.insert("headers".into(), Value::Object(headers));
            case.insert("probe".into(), Value::Object(probe));
        }
        PluginKind::Recovery => {
            let mut stats = serde_json::Map::new();
            set(
                &mut stats,
                "consecutive_failures",
                flags.failures_in_a_row.map(Value::from),
            );
            set(&mut stats, "state", flags.state.clone().map(Value::String));
            case.insert("stats".into(), Value::Object(stats));
            let outcome = match flags.outcome.as_deref() {
                None | Some("success") => serde_json::json!({"success_us": 1000}),
                Some("tick") => Value::String("tick".into()),
                Some(kind) => serde_json::json!({"failure": kind}),
            };
            case.insert("outcome".into(), outcome);
        }
    }
    Ok(Value::Object(case))
}

/// Reads the cases of `input` for a plugin of `kind`.
pub fn parse_cases(kind: PluginKind, input: &Value) -> Result<Vec<Case>, ToolError> {
    let items: Vec<&Value> = match input {
        Value::Array(items) => items.iter().collect(),
        Value::Object(map) if map.contains_key("samples") => match &map["samples"] {
            Value::Array(items) => items.iter().collect(),
            _ => return Err(input_error("`samples` must be an array")),
        },
        Value::Object(_) => vec![input],
        _ => return Err(input_error("expected a JSON object or array of cases")),
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let case = match kind {
                PluginKind::Routing => route_case(item).map(Case::Route),
                PluginKind::Health => health_case(item).map(Case::Health),
                PluginKind::Recovery => recovery_case(item).map(Case::Recovery),
            };
            case.map_err(|e| input_error(format!("case #{}: {e}", i + 1)))
        })
        .collect()
}

fn input_error(message: impl Into<String>) -> ToolError {
    ToolError::Input(message.into())
}

fn route_case(v: &Value) -> Result<RouteCase, String> {
    known_fields(
        v,
        &[
            "request",
            "candidates",
            "decision",
            "live_decision",
            "pool",
            "kind",
            "at_ms",
            "call_us",
        ],
    )?;
    let empty = Value::Object(Default::default());
    let request = v.get("request").unwrap_or(&empty);
    known_fields(request, &["method", "path", "host", "client_ip", "headers"])?;
    let client_ip = text(request, "client_ip", "192.0.2.1")?;
    Ok(RouteCase {
        method: text(request, "method", "GET")?,
        path: text(request, "path", "/")?,
        host: text(request, "host", "example.test")?,
        client_ip: client_ip
            .parse()
            .map_err(|_| format!("request.client_ip `{client_ip}` is not an IP address"))?,
        headers: headers(request.get("headers"))?,
        candidates: candidates(v.get("candidates"))?,
        recorded: v.get("decision").cloned(),
    })
}

/// `candidates`: a count of idle, healthy candidates of weight 1, or a list.
fn candidates(v: Option<&Value>) -> Result<Vec<RouteCandidate>, String> {
    let idle = |index: u32| RouteCandidate {
        index,
        weight: 1,
        healthy: true,
        ..Default::default()
    };
    match v {
        None => Ok((0..3).map(idle).collect()),
        Some(Value::Number(n)) => {
            let count = n
                .as_u64()
                .filter(|n| *n <= 1024)
                .ok_or("candidates: a count of 0..=1024")?;
            Ok((0..count as u32).map(idle).collect())
        }
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, c)| {
                known_fields(
                    c,
                    &[
                        "index",
                        "weight",
                        "in_flight",
                        "latency_ewma_us",
                        "error_rate_permille",
                        "healthy",
                    ],
                )?;
                Ok(RouteCandidate {
                    index: number(c, "index", i as u64)? as u32,
                    weight: number(c, "weight", 1)? as u32,
                    in_flight: number(c, "in_flight", 0)? as u32,
                    latency_ewma_us: number(c, "latency_ewma_us", 0)? as u32,
                    error_rate_permille: number(c, "error_rate_permille", 0)?.min(1000) as u16,
                    healthy: c.get("healthy").and_then(Value::as_bool).unwrap_or(true),
                })
            })
            .collect(),
        Some(_) => Err("candidates: a count or an array".into()),
    }
}

fn health_case(v: &Value) -> Result<HealthCase, String> {
    known_fields(v, &["probe", "target"])?;
    let empty = Value::Object(Default::default());
    let probe = v.get("probe").unwrap_or(&empty);
    known_fields(probe, &["status", "headers", "body", "latency_us", "error"])?;
    let target = v.get("target").unwrap_or(&empty);
    known_fields(target, &["pool", "address"])?;
    let error = match probe.get("error").and_then(Value::as_str) {
        None => None,
        Some("timeout") => Some(ProbeError::Timeout),
        Some("refused") => Some(ProbeError::Refused),
        Some("reset") => Some(ProbeError::Reset),
        Some("other") => Some(ProbeError::Other),
        Some(other) => {
            return Err(format!(
                "probe.error `{other}`: expected timeout, refused, reset or other"
            ));
        }
    };
    let status = match probe.get("status") {
        Some(Value::Null) => None,
        None if error.is_some() => None,
        None => Some(200),
        Some(s) => Some(
            s.as_u64()
                .and_then(|s| u16::try_from(s).ok())
                .ok_or("probe.status: a number")?,
        ),
    };
    Ok(HealthCase {
        status,
        headers: headers(probe.get("headers"))?,
        body: text(probe, "body", "")?.into_bytes(),
        latency: Duration::from_micros(number(probe, "latency_us", 1_000)?),
        error,
        pool: text(target, "pool", "app")?,
        address: text(target, "address", "127.0.0.1:8080")?,
    })
}

fn recovery_case(v: &Value) -> Result<RecoveryCase, String> {
    known_fields(v, &["stats", "outcome"])?;
    let empty = Value::Object(Default::default());
    let s = v.get("stats").unwrap_or(&empty);
    known_fields(
        s,
        &[
            "consecutive_failures",
            "requests_in_window",
            "failures_in_window",
            "latency_ewma_us",
            "state",
            "times_opened",
        ],
    )?;
    let state = match text(s, "state", "closed")?.as_str() {
        "closed" => BreakerState::Closed,
        "open" => BreakerState::Open,
        "half-open" => BreakerState::HalfOpen,
        other => {
            return Err(format!(
                "stats.state `{other}`: expected closed, open or half-open"
            ));
        }
    };
    let stats = BreakerStats {
        consecutive_failures: number(s, "consecutive_failures", 0)? as u32,
        requests_in_window: number(s, "requests_in_window", 0)? as u32,
        failures_in_window: number(s, "failures_in_window", 0)? as u32,
        latency_ewma_us: number(s, "latency_ewma_us", 0)? as u32,
        state,
        times_opened: number(s, "times_opened", 0)? as u32,
    };
    let outcome = match v.get("outcome") {
        None => Some(Outcome::Success(Duration::from_millis(1))),
        Some(Value::String(t)) if t == "tick" => None,
        Some(o) => Some(outcome(o)?),
    };
    Ok(RecoveryCase { stats, outcome })
}

fn outcome(v: &Value) -> Result<Outcome, String> {
    if let Some(us) = v.get("success_us").and_then(Value::as_u64) {
        return Ok(Outcome::Success(Duration::from_micros(us)));
    }
    let kind = match v.get("failure").and_then(Value::as_str) {
        Some("connect") => FailureKind::Connect,
        Some("timeout") => FailureKind::Timeout,
        Some("reset") => FailureKind::Reset,
        Some("server-error") => FailureKind::ServerError,
        Some("other") => FailureKind::Other,
        _ => {
            return Err(
                "outcome: {\"success_us\": N}, {\"failure\": \"connect|timeout|reset|server-error|other\"} or \"tick\""
                    .into(),
            );
        }
    };
    Ok(Outcome::Failure(kind))
}

/// Headers as an object (`{"x-a": "1"}`) or as a list of `{"name", "value"}`.
fn headers(v: Option<&Value>) -> Result<HeaderMap, String> {
    let pairs: Vec<(String, String)> = match v {
        None => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.clone(),
                    v.as_str()
                        .ok_or(format!("header {k}: a string"))?
                        .to_string(),
                ))
            })
            .collect::<Result<_, String>>()?,
        Some(Value::Array(items)) => items
            .iter()
            .map(|h| Ok((text(h, "name", "")?, text(h, "value", "")?)))
            .collect::<Result<_, String>>()?,
        Some(_) => return Err("headers: an object or a list of {name, value}".into()),
    };
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("illegal header name `{name}`"))?;
        let value = HeaderValue::from_str(&value)
            .map_err(|_| format!("illegal value for header `{name}`"))?;
        map.append(name, value);
    }
    Ok(map)
}

fn known_fields(v: &Value, known: &[&str]) -> Result<(), String> {
    match v {
        Value::Object(map) => match map.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => Err(format!(
                "unknown field `{k}` (expected {})",
                known.join(", ")
            )),
            None => Ok(()),
        },
        _ => Err("expected an object".into()),
    }
}

fn text(v: &Value, key: &str, default: &str) -> Result<String, String> {
    match v.get(key) {
        None => Ok(default.to_string()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

fn number(v: &Value, key: &str, default: u64) -> Result<u64, String> {
    match v.get(key) {
        None => Ok(default),
        Some(n) => n
            .as_u64()
            .ok_or_else(|| format!("`{key}` must be a non-negative integer")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn defaults_fill_what_a_case_leaves_out() {
        let cases = parse_cases(PluginKind::Routing, &json!({})).unwrap();
        let Case::Route(c) = &cases[0] else { panic!() };
        assert_eq!(
            (c.method.as_str(), c.path.as_str(), c.candidates.len()),
            ("GET", "/", 3)
        );

        let samples = json!({"samples": [
            {"request": {"headers": [{"name": "x-t", "value": "a"}]}, "candidates": 2, "decision": {"backend": 1}},
            {"request": {"headers": {"x-t": "b"}}, "candidates": [{"index": 7, "in_flight": 3}]}
        ]});
        let cases = parse_cases(PluginKind::Routing, &samples).unwrap();
        let Case::Route(second) = &cases[1] else {
            panic!()
        };
        assert_eq!(second.headers["x-t"], "b");
        assert_eq!(
            (second.candidates[0].index, second.candidates[0].in_flight),
            (7, 3)
        );
        let Case::Route(first) = &cases[0] else {
            panic!()
        };
        assert_eq!(first.recorded, Some(json!({"backend": 1})));

        let Case::Health(h) =
            &parse_cases(PluginKind::Health, &json!({"probe": {"error": "timeout"}})).unwrap()[0]
        else {
            panic!()
        };
        assert_eq!((h.status, h.error), (None, Some(ProbeError::Timeout)));
        let Case::Recovery(r) =
            &parse_cases(PluginKind::Recovery, &json!({"outcome": "tick"})).unwrap()[0]
        else {
            panic!()
        };
        assert!(r.outcome.is_none());
    }

    #[test]
    fn mistakes_are_named() {
        let err =
            parse_cases(PluginKind::Routing, &json!([{}, {"request": {"pth": "/"}}])).unwrap_err();
        assert!(
            err.to_string().contains("case #2: unknown field `pth`"),
            "{err}"
        );
        let err = parse_cases(
            PluginKind::Recovery,
            &json!({"outcome": {"failure": "boom"}}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("outcome:"), "{err}");
    }
}
