//! `GET /history`: each backend's last five minutes (request rate, error rate, p99
//! per [`INTERVAL`](crate::history::INTERVAL)); `GET /events`: the timeline of recent
//! events. Both are kept by the proxy, so the dashboard's curves and timeline survive
//! a reload of the page.

use serde_json::{Value, json};

use crate::clock;
use crate::history::{INTERVAL, POINTS, Point};
use crate::server::Server;
use crate::timeline::{Event, unix_ms};

/// The `/history` document: one series per backend of every pool, oldest point first;
/// with `since_ms`, only the points after it (what a poller has not seen yet).
pub fn history(server: &Server, since_ms: Option<u64>) -> Value {
    let since_ms = since_ms.unwrap_or(0);
    let snapshot = server.snapshot();
    let backends: Vec<Value> = snapshot
        .pools
        .iter_sorted()
        .into_iter()
        .flat_map(|pool| {
            pool.backends.iter().map(|b| {
                let points: Vec<Value> = b
                    .state
                    .history
                    .points()
                    .iter()
                    .filter(|p| p.at_ms > since_ms)
                    .map(point)
                    .collect();
                json!({
                    "pool": pool.name.as_ref(),
                    "address": b.key.as_ref(),
                    "points": points,
                })
            })
        })
        .collect();
    json!({
        "now_ms": unix_ms(),
        "interval_ms": INTERVAL.as_millis() as u64,
        "window_ms": (INTERVAL * POINTS as u32).as_millis() as u64,
        "backends": backends,
    })
}

/// `since_ms=N` of a query string, when present and a number.
pub fn since(query: Option<&str>) -> Option<u64> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("since_ms="))
        .and_then(|v| v.parse().ok())
}

fn point(p: &Point) -> Value {
    json!({
        "at_ms": p.at_ms,
        "requests_per_s": round(p.requests_per_s),
        "error_rate": round(p.error_rate),
        "p99_ms": p.p99.map(clock::millis),
    })
}

/// Three decimals are plenty for a curve, and keep the document short.
fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The `/events` document: the timeline, oldest first.
pub fn events(server: &Server) -> Value {
    let events: Vec<Value> = server
        .metrics()
        .timeline()
        .events()
        .iter()
        .map(event)
        .collect();
    json!({ "now_ms": unix_ms(), "events": events })
}

fn event(e: &Event) -> Value {
    json!({
        "id": e.id,
        "at_ms": e.at_ms,
        "kind": e.kind.as_str(),
        "warning": e.warning,
        "pool": e.pool,
        "backend": e.backend,
        "message": e.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_is_read_from_the_query() {
        assert_eq!(
            since(Some("since_ms=1700000000000")),
            Some(1_700_000_000_000)
        );
        assert_eq!(since(Some("x=1&since_ms=5")), Some(5));
        assert_eq!(since(Some("since_ms=soon")), None);
        assert_eq!(since(None), None);
    }
}
