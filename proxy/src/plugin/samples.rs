//! Recent routing decisions of a plugin, kept so an author can see what the plugin
//! was asked and what it answered (`GET /plugins/{name}/samples`), and replay them
//! offline (`switchyard plugin run FILE --samples URL`).
//!
//! Sampling costs the request path one relaxed atomic load per plugin call; a sample
//! is taken at most every [`SAMPLE_INTERVAL_MS`] (and a shadow disagreement at most
//! every [`DISAGREEMENT_INTERVAL_MS`]), and only then is anything copied or locked.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::HeaderName;
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::error::PluginError;
use super::routing::{RouteCandidate, RouteDecision, RouteRequest};

/// Samples kept per plugin (the oldest goes first).
pub const SAMPLES_KEPT: usize = 64;
/// At most one ordinary sample per plugin this often.
pub const SAMPLE_INTERVAL_MS: u64 = 250;
/// At most one shadow disagreement sample per plugin this often.
pub const DISAGREEMENT_INTERVAL_MS: u64 = 50;

/// Why a sample was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    /// The plugin decided for the pool (`balance = "plugin:..."`).
    Live,
    /// The plugin ran as a shadow (`shadow = "plugin:..."`).
    Shadow,
}

/// The ring of recent samples of one plugin.
#[derive(Debug, Default)]
pub struct SampleLog {
    last_ms: AtomicU64,
    last_disagreement_ms: AtomicU64,
    kept: Mutex<VecDeque<Value>>,
}

/// One decision to record: the inputs as the plugin saw them, and what came out.
pub struct Observed<'a> {
    /// The pool that asked.
    pub pool: &'a str,
    /// Live or shadow.
    pub kind: SampleKind,
    /// The request; only `wanted` headers are recorded.
    pub request: &'a RouteRequest<'a>,
    /// The headers the plugin declared.
    pub wanted: &'a [HeaderName],
    /// The candidates passed.
    pub candidates: &'a [RouteCandidate],
    /// The plugin's answer.
    pub result: &'a Result<RouteDecision, PluginError>,
    /// How long the call took.
    pub took: Duration,
    /// For a shadow: what the live policy decided (a backend index, or a word).
    pub live: Option<Value>,
}

impl SampleLog {
    /// Whether an ordinary sample is due at `now_ms` (claims it if so).
    pub fn due(&self, now_ms: u64) -> bool {
        claim(&self.last_ms, now_ms, SAMPLE_INTERVAL_MS)
    }

    /// Whether a disagreement sample is due at `now_ms` (claims it if so).
    pub fn disagreement_due(&self, now_ms: u64) -> bool {
        claim(&self.last_disagreement_ms, now_ms, DISAGREEMENT_INTERVAL_MS)
    }

    /// Keeps `observed`, with the time it was taken.
    pub fn record(&self, now_ms: u64, observed: Observed<'_>) {
        let mut sample = to_json(&observed);
        sample["at_ms"] = json!(now_ms);
        let mut kept = self.kept.lock();
        if kept.len() == SAMPLES_KEPT {
            kept.pop_front();
        }
        kept.push_back(sample);
    }

    /// The samples kept, oldest first.
    pub fn snapshot(&self) -> Vec<Value> {
        self.kept.lock().iter().cloned().collect()
    }
}

/// Claims the slot `last` for `now_ms` if `interval_ms` passed since the last claim.
fn claim(last: &AtomicU64, now_ms: u64, interval_ms: u64) -> bool {
    let previous = last.load(Ordering::Relaxed);
    (previous == 0 || now_ms >= previous + interval_ms)
        && last
            .compare_exchange(
                previous,
                now_ms.max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
}

/// The declared headers of `request`, as `name: value` pairs in declaration order.
pub fn deciding_headers(
    wanted: &[HeaderName],
    request: &RouteRequest<'_>,
) -> Vec<(String, String)> {
    wanted
        .iter()
        .flat_map(|name| {
            request
                .headers
                .get_all(name)
                .iter()
                .filter_map(move |v| Some((name.to_string(), v.to_str().ok()?.to_string())))
        })
        .collect()
}

/// A decision as samples and `plugin run` write it.
pub fn decision_json(result: &Result<RouteDecision, PluginError>) -> Value {
    match result {
        Ok(RouteDecision::Backend(index)) => json!({ "backend": index }),
        Ok(RouteDecision::Respond { status, body }) => {
            json!({ "respond": { "status": status.as_u16(), "body": body } })
        }
        Ok(RouteDecision::Reject) => json!("reject"),
        Err(e) => json!({ "error": e.kind_label(), "detail": e.to_string() }),
    }
}

/// A candidate as samples and `plugin run` write it.
pub fn candidate_json(c: &RouteCandidate) -> Value {
    json!({
        "index": c.index,
        "weight": c.weight,
        "in_flight": c.in_flight,
        "latency_ewma_us": c.latency_ewma_us,
        "error_rate_permille": c.error_rate_permille,
        "healthy": c.healthy,
    })
}

fn to_json(o: &Observed<'_>) -> Value {
    let headers: Vec<Value> = deciding_headers(o.wanted, o.request)
        .into_iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    let mut sample = json!({
        "pool": o.pool,
        "kind": match o.kind {
            SampleKind::Live => "live",
            SampleKind::Shadow => "shadow",
        },
        "request": {
            "method": o.request.method,
            "path": o.request.path,
            "host": o.request.host,
            "client_ip": o.request.client_ip.to_string(),
            "headers": headers,
        },
        "candidates": o.candidates.iter().map(candidate_json).collect::<Vec<_>>(),
        "decision": decision_json(o.result),
        "call_us": crate::clock::micros(o.took),
    });
    if let Some(live) = &o.live {
        sample["live_decision"] = live.clone();
    }
    sample
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_rate_limited_and_bounded() {
        let log = SampleLog::default();
        assert!(log.due(1_000));
        assert!(!log.due(1_000 + SAMPLE_INTERVAL_MS - 1));
        assert!(log.due(1_000 + SAMPLE_INTERVAL_MS));
        assert!(log.disagreement_due(1_000));
        assert!(!log.disagreement_due(1_001));

        let headers = {
            let mut h = http::HeaderMap::new();
            h.insert("x-tenant", "acme".parse().unwrap());
            h.insert("x-other", "secret".parse().unwrap());
            h
        };
        let request = RouteRequest {
            method: "GET",
            path: "/a",
            host: "example.test",
            client_ip: "192.0.2.1".parse().unwrap(),
            headers: &headers,
        };
        let wanted = [HeaderName::from_static("x-tenant")];
        let candidates = [RouteCandidate {
            index: 3,
            weight: 1,
            healthy: true,
            ..Default::default()
        }];
        let result = Ok(RouteDecision::Backend(3));
        for i in 0..(SAMPLES_KEPT as u64 + 5) {
            log.record(
                i,
                Observed {
                    pool: "app",
                    kind: SampleKind::Live,
                    request: &request,
                    wanted: &wanted,
                    candidates: &candidates,
                    result: &result,
                    took: Duration::from_micros(3),
                    live: None,
                },
            );
        }
        let kept = log.snapshot();
        assert_eq!(kept.len(), SAMPLES_KEPT);
        assert_eq!(kept[0]["at_ms"], 5);
        let first = &kept[0];
        assert_eq!(
            first["request"]["headers"],
            json!([{ "name": "x-tenant", "value": "acme" }]),
            "only declared headers are kept"
        );
        assert_eq!(first["decision"], json!({ "backend": 3 }));
        assert_eq!(first["candidates"][0]["index"], 3);
    }
}
