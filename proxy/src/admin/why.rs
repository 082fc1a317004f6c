//! Why each backend does or does not get traffic, in words: the pool's place in the
//! routes, then per backend the first thing that keeps it out (operator, health
//! checks, breaker, weight) or, for a usable one, how much of the pool's recent
//! traffic it got and who chose (the balancer or the routing plugin). `/status`
//! carries these sentences; `switchyard ctl why POOL` prints them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::breaker::BreakerState;
use crate::health::HealthStatus;
use crate::state::Snapshot;
use crate::traffic::RouteTarget;
use crate::upstream::{AdminState, Backend, Pool};

/// Whether any route (or another pool, as its backup) sends requests to `pool`, and
/// how, as one sentence.
pub fn pool_traffic(snapshot: &Snapshot, pool: &Pool) -> (bool, String) {
    let mut sources = Vec::new();
    let mut elsewhere = Vec::new();
    for route in &snapshot.config.routes {
        let Some(live) = snapshot.route(&route.name) else {
            continue;
        };
        match &live.target {
            RouteTarget::Pool(p) if **p == *pool.name => {
                sources.push(format!("route {} sends every request here", route.name));
            }
            RouteTarget::Pool(p) => elsewhere.push(format!("route {} goes to {p}", route.name)),
            RouteTarget::Split { pools, .. } => {
                match pools.iter().find(|(p, _)| **p == *pool.name) {
                    Some((_, share)) => sources.push(format!(
                        "route {} sends {share} % of its requests here",
                        route.name
                    )),
                    None => elsewhere.push(format!("route {} is split elsewhere", route.name)),
                }
            }
        }
    }
    let routed = !sources.is_empty();
    for other in snapshot.pools.iter_sorted() {
        if other.config.failover.backup.as_deref() == Some(&*pool.name) {
            sources.push(format!(
                "backup of pool {} when it has no usable backend",
                other.name
            ));
        }
    }
    if sources.is_empty() {
        let mut text = "no route sends requests here".to_string();
        if !elsewhere.is_empty() {
            text.push_str(&format!(" ({})", elsewhere.join(", ")));
        }
        return (false, text);
    }
    (routed, sources.join("; "))
}

/// Whether backend `b` of `pool` takes new requests now, and why (or why not).
/// `routed`: whether a route sends the pool requests at all.
pub fn backend(pool: &Pool, b: &Backend, now_ms: u64, routed: bool) -> (bool, String) {
    if let Some(why) = kept_out(b, now_ms) {
        return (false, why);
    }
    let s = &b.state;
    let mut notes = Vec::new();
    if s.breaker.state() == BreakerState::HalfOpen {
        notes.push(format!(
            "half-open after an ejection: {} trial request(s) at a time decide whether it is back",
            pool.config.breaker.half_open_requests
        ));
    }
    let factor = s.slow_start_factor(pool.config.failover.slow_start, now_ms);
    if factor < 1.0 {
        notes.push(format!(
            "ramping up after recovering: slow start at {:.0} % of its weight",
            factor * 100.0
        ));
    }
    if s.health.status() == HealthStatus::Up && s.health.weight_percent() < 100 {
        notes.push(format!(
            "its health check reports it degraded: {} % of its weight",
            s.health.weight_percent()
        ));
    }
    if pool.in_panic_mode(now_ms) {
        notes.push("the pool is in panic mode: too few backends are usable, so every backend takes traffic".into());
    }
    let window = pool.config.breaker.window;
    let (mine, _) = s.breaker.window_counts(window, now_ms);
    let total: u32 = pool
        .backends
        .iter()
        .map(|o| o.state.breaker.window_counts(window, now_ms).0)
        .sum();
    let chooser = match &pool.policies.routing {
        Some(slot) if slot.current().plugin.stats().is_quarantined() => format!(
            "the balancer (routing plugin {} is quarantined)",
            slot.name()
        ),
        Some(slot) => format!("routing plugin {}", slot.name()),
        None => "the balancer".to_string(),
    };
    let recent = if !routed {
        "but no route sends requests to its pool".to_string()
    } else if mine == 0 && total > 0 {
        format!(
            "but {chooser} sent it none of the pool's {total} requests in the last {} (latency average {:.1} ms)",
            span(window),
            f64::from(s.latency_ewma_us(now_ms)) / 1000.0
        )
    } else {
        format!(
            "{mine} of the pool's {total} requests in the last {}, chosen by {chooser}",
            span(window)
        )
    };
    notes.insert(0, format!("usable, {recent}"));
    (routed, notes.join("; "))
}

/// The first thing that keeps `b` from new requests, if anything does.
fn kept_out(b: &Backend, now_ms: u64) -> Option<String> {
    let s = &b.state;
    match s.admin_state() {
        AdminState::Disabled => {
            return Some("disabled by an operator: no requests until it is enabled".into());
        }
        AdminState::Draining => {
            return Some(format!(
                "draining: takes no new request, {} still in flight",
                s.in_flight.load(Ordering::Relaxed)
            ));
        }
        AdminState::Drained => {
            return Some("drained: takes no new request until it is enabled".into());
        }
        AdminState::Active => {}
    }
    if s.health.status() == HealthStatus::Down {
        let last = s
            .health
            .last_check()
            .map_or_else(|| "no answer".to_string(), |c| c.result);
        return Some(format!("down: its health checks fail (last: {last})"));
    }
    if !s.breaker.may_admit(now_ms) {
        let failures = s.breaker.consecutive_failures();
        return Some(match s.breaker.state() {
            BreakerState::Open => format!(
                "ejected by the circuit breaker after {failures} failure(s) in a row, for another {}",
                span(Duration::from_millis(
                    s.breaker.open_until_ms().saturating_sub(now_ms)
                ))
            ),
            _ => "half-open after an ejection, its trial requests are all taken".into(),
        });
    }
    if s.weight.load(Ordering::Relaxed) == 0 {
        return Some(
            "weight 0: takes no new request (clients a sticky cookie pins to it stay)".into(),
        );
    }
    None
}

/// `10 s`, `3 min`, rounded up: how the sentences give spans of time.
fn span(d: Duration) -> String {
    let secs = d.as_millis().div_ceil(1000);
    if secs >= 120 {
        format!("{} min", secs.div_ceil(60))
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_round_up() {
        assert_eq!(span(Duration::from_millis(9_001)), "10 s");
        assert_eq!(span(Duration::from_secs(10)), "10 s");
        assert_eq!(span(Duration::from_millis(3_599_100)), "60 min");
        assert_eq!(span(Duration::ZERO), "0 s");
    }
}
