//! Loading a component outside the proxy and calling it on cases: each decision
//! with its cost (`plugin run`), or many calls summarised (`plugin bench`).

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::ToolError;
use super::cases::{Case, HealthCase, RecoveryCase, RouteCase};
use crate::plugin::samples::{candidate_json, decision_json};
use crate::plugin::{
    BreakerState, HealthVerdict, Outcome, Plugin, PluginError, PluginKind, PluginRuntime,
    PluginSpec, ProbeError, ProbeReport, ProbeTarget, RecoveryAction, RouteRequest, inspect,
};

/// A component loaded for `run`, `check` or `bench`.
#[derive(Debug)]
pub struct Loaded {
    /// The loaded plugin (`init` has run).
    pub plugin: Plugin,
    /// What it was loaded as.
    pub kind: PluginKind,
    /// Compile, link, instantiate and `init`: what a hot reload costs off the
    /// request path.
    pub load_time: Duration,
}

/// Loads `path` as `kind` (or as the one world it implements) with `config_json`
/// passed to `init`, under the given call deadline and memory cap, as the proxy
/// would.
pub fn load(
    path: &Path,
    kind: Option<PluginKind>,
    config_json: &str,
    timeout: Duration,
    memory_bytes: u64,
) -> Result<Loaded, ToolError> {
    let kind = match kind {
        Some(kind) => kind,
        None => match inspect(path)?.loadable_as().as_slice() {
            [kind] => *kind,
            [] => {
                return Err(ToolError::Kind(format!(
                    "{} implements none of the plugin worlds (`switchyard plugin check` says why)",
                    path.display()
                )));
            }
            _ => {
                return Err(ToolError::Kind(format!(
                    "{} implements several worlds: pass --kind",
                    path.display()
                )));
            }
        },
    };
    let name = path.file_stem().map_or_else(
        || "plugin".to_string(),
        |s| s.to_string_lossy().into_owned(),
    );
    let mut spec = PluginSpec::new(name, kind, path);
    spec.config_json = config_json.to_string();
    spec.timeout = timeout;
    spec.memory_bytes = memory_bytes;
    let runtime = PluginRuntime::new()?;
    let started = Instant::now();
    let plugin = runtime.load(&spec)?;
    Ok(Loaded {
        plugin,
        kind,
        load_time: started.elapsed(),
    })
}

/// What one case gave.
#[derive(Debug, Clone)]
pub struct Report {
    /// One line for people: the input in short, the decision, its cost.
    pub line: String,
    /// The same as JSON (`input`, `decision`, `call_us`, ...).
    pub json: Value,
    /// Whether the decision equals the one recorded with the case, if any was.
    pub same_as_recorded: Option<bool>,
}

/// Calls the plugin on `case` (a case of another kind is an input error).
pub fn run(loaded: &Loaded, case: &Case) -> Result<Report, ToolError> {
    match (case, &loaded.plugin) {
        (Case::Route(c), p) if p.as_routing().is_some() => Ok(route(p, c)),
        (Case::Health(c), p) if p.as_health().is_some() => Ok(health(p, c)),
        (Case::Recovery(c), p) if p.as_recovery().is_some() => Ok(recovery(p, c)),
        _ => Err(ToolError::Input(format!(
            "this case is not for a {} plugin",
            loaded.kind.world()
        ))),
    }
}

/// Per-call cost over many calls.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    /// Calls measured (after the warm-up).
    pub calls: u64,
    /// Calls that failed (trap, deadline, invalid output, ...).
    pub failed: u64,
    /// Mean time per call.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Slowest call.
    pub max: Duration,
}

/// Calls the plugin `calls` times, cycling through `cases`, after a warm-up of a
/// tenth as many calls (at most 1,000). Each call is timed alone, so the figures
/// include the ~25 ns of reading the clock twice.
pub fn bench(loaded: &Loaded, cases: &[Case], calls: u64) -> Result<BenchReport, ToolError> {
    if cases.is_empty() {
        return Err(ToolError::Input("no case to call the plugin with".into()));
    }
    // Check every case fits the plugin before timing anything.
    for case in cases {
        run(loaded, case)?;
    }
    let warm_up = (calls / 10).min(1_000);
    let mut times = Vec::with_capacity(usize::try_from(calls).unwrap_or(0));
    let mut failed = 0;
    for i in 0..warm_up + calls {
        let case = &cases[(i % cases.len() as u64) as usize];
        let started = Instant::now();
        let ok = call_only(&loaded.plugin, case);
        let took = started.elapsed();
        if i >= warm_up {
            times.push(took);
            failed += u64::from(!ok);
        }
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let total: Duration = times.iter().sum();
    Ok(BenchReport {
        calls,
        failed,
        mean: total / u32::try_from(times.len().max(1)).unwrap_or(u32::MAX),
        p50: at(0.5),
        p99: at(0.99),
        max: times.last().copied().unwrap_or_default(),
    })
}

/// The plugin's main call on `case`; whether it succeeded.
fn call_only(plugin: &Plugin, case: &Case) -> bool {
    match case {
        Case::Route(c) => {
            let Some(routing) = plugin.as_routing() else {
                return false;
            };
            routing.choose(&request(c), &c.candidates).is_ok()
        }
        Case::Health(c) => plugin
            .as_health()
            .is_some_and(|h| h.evaluate(&probe(c)).is_ok()),
        Case::Recovery(c) => plugin.as_recovery().is_some_and(|r| match c.outcome {
            Some(outcome) => r.on_outcome(&c.stats, outcome).is_ok(),
            None => r.on_tick(&c.stats).is_ok(),
        }),
    }
}

fn request(c: &RouteCase) -> RouteRequest<'_> {
    RouteRequest {
        method: &c.method,
        path: &c.path,
        host: &c.host,
        client_ip: c.client_ip,
        headers: &c.headers,
    }
}

fn route(plugin: &Plugin, c: &RouteCase) -> Report {
    let Some(routing) = plugin.as_routing() else {
        unreachable!("checked by run")
    };
    let started = Instant::now();
    let result = routing.choose(&request(c), &c.candidates);
    let took = started.elapsed();
    let decision = decision_json(&result);
    let same = c.recorded.as_ref().map(|r| same_decision(r, &decision));
    let wanted: Vec<String> = routing
        .wanted_headers()
        .iter()
        .flat_map(|name| {
            c.headers
                .get_all(name)
                .iter()
                .filter_map(move |v| Some(format!("{name}: {}", v.to_str().ok()?)))
        })
        .collect();
    let mut line = format!("{} {}", c.method, c.path);
    if !wanted.is_empty() {
        let _ = write!(line, " [{}]", wanted.join("; "));
    }
    let _ = write!(
        line,
        " over {} candidate(s) -> {} ({})",
        c.candidates.len(),
        describe_route(&result),
        micros(took)
    );
    if let (Some(recorded), Some(same)) = (&c.recorded, same) {
        let _ = write!(
            line,
            "; recorded {}: {}",
            recorded,
            if same { "same" } else { "DIFFERENT" }
        );
    }
    Report {
        line,
        json: json!({
            "input": {
                "request": {"method": c.method, "path": c.path, "host": c.host,
                    "client_ip": c.client_ip.to_string()},
                "candidates": c.candidates.iter().map(candidate_json).collect::<Vec<_>>(),
            },
            "decision": decision,
            "recorded": c.recorded,
            "same_as_recorded": same,
            "call_us": crate::clock::micros(took),
        }),
        same_as_recorded: same,
    }
}

/// Whether a recorded decision and a new one agree (a recorded response's body is
/// not compared: shadow samples keep only the status).
fn same_decision(recorded: &Value, now: &Value) -> bool {
    match (recorded.get("respond"), now.get("respond")) {
        (Some(a), Some(b)) => a.get("status") == b.get("status"),
        _ => recorded == now,
    }
}

fn describe_route(result: &Result<crate::plugin::RouteDecision, PluginError>) -> String {
    use crate::plugin::RouteDecision;
    match result {
        Ok(RouteDecision::Backend(i)) => format!("backend {i}"),
        Ok(RouteDecision::Respond { status, body }) => {
            format!("respond {} {:?}", status.as_u16(), truncate(body, 60))
        }
        Ok(RouteDecision::Reject) => "reject (403)".into(),
        Err(e) => format!("FAILED: {e}"),
    }
}

fn probe(c: &HealthCase) -> ProbeReport<'_> {
    ProbeReport {
        status: c.status,
        headers: &c.headers,
        body_prefix: &c.body,
        latency: c.latency,
        error: c.error,
    }
}

fn health(plugin: &Plugin, c: &HealthCase) -> Report {
    let Some(health) = plugin.as_health() else {
        unreachable!("checked by run")
    };
    let mut line = String::new();
    let mut custom_json = Value::Null;
    if health.has_probe_request() {
        let target = ProbeTarget {
            pool: &c.pool,
            address: &c.address,
        };
        let started = Instant::now();
        let custom = health.probe_request(&target);
        let took = started.elapsed();
        let what = match &custom {
            Ok(Some(p)) => {
                custom_json = json!({"method": p.method.as_str(), "path": p.path,
                    "headers": p.headers.iter().map(|(k, v)| json!({"name": k.as_str(),
                        "value": v.to_str().unwrap_or("")})).collect::<Vec<_>>()});
                let headers: Vec<String> = p
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap_or("")))
                    .collect();
                if headers.is_empty() {
                    format!("{} {}", p.method, p.path)
                } else {
                    format!("{} {} [{}]", p.method, p.path, headers.join("; "))
                }
            }
            Ok(None) => "the configured probe".into(),
            Err(e) => format!("FAILED: {e} (the configured probe is sent)"),
        };
        let _ = write!(
            line,
            "probe-request {}/{} -> {what} ({}); ",
            c.pool,
            c.address,
            micros(took)
        );
    }
    let started = Instant::now();
    let verdict = health.evaluate(&probe(c));
    let took = started.elapsed();
    let input = match (c.status, c.error) {
        (_, Some(e)) => format!("no answer ({})", probe_error(e)),
        (Some(s), None) => format!("status {s}, {} body byte(s)", c.body.len()),
        (None, None) => "no answer".into(),
    };
    let (word, json_verdict) = match &verdict {
        Ok(HealthVerdict::Up) => ("up".to_string(), json!("up")),
        Ok(HealthVerdict::Down(reason)) => (format!("down: {reason}"), json!({"down": reason})),
        Ok(HealthVerdict::Degraded(p)) => (format!("degraded {p}%"), json!({"degraded": p})),
        Err(e) => (
            format!("FAILED: {e}"),
            json!({"error": e.kind_label(), "detail": e.to_string()}),
        ),
    };
    let _ = write!(
        line,
        "{input} in {} -> {word} ({})",
        micros(c.latency),
        micros(took)
    );
    Report {
        line,
        json: json!({
            "input": {"status": c.status, "body_bytes": c.body.len(),
                "error": c.error.map(probe_error)},
            "probe_request": custom_json,
            "decision": json_verdict,
            "call_us": crate::clock::micros(took),
        }),
        same_as_recorded: None,
    }
}

fn probe_error(e: ProbeError) -> &'static str {
    match e {
        ProbeError::Timeout => "timeout",
        ProbeError::Refused => "refused",
        ProbeError::Reset => "reset",
        ProbeError::Other => "other",
    }
}

fn recovery(plugin: &Plugin, c: &RecoveryCase) -> Report {
    let Some(recovery) = plugin.as_recovery() else {
        unreachable!("checked by run")
    };
    let started = Instant::now();
    let action = match c.outcome {
        Some(outcome) => recovery.on_outcome(&c.stats, outcome),
        None => recovery.on_tick(&c.stats),
    };
    let took = started.elapsed();
    let state = match c.stats.state {
        BreakerState::Closed => "closed",
        BreakerState::Open => "open",
        BreakerState::HalfOpen => "half-open",
    };
    let event = match c.outcome {
        None => "tick".to_string(),
        Some(Outcome::Success(latency)) => format!("success in {}", micros(latency)),
        Some(Outcome::Failure(kind)) => format!("failure ({kind:?})").to_lowercase(),
    };
    let (word, json_action) = match &action {
        Ok(RecoveryAction::Keep) => ("keep".to_string(), json!("keep")),
        Ok(RecoveryAction::Open(d)) => (
            format!("open for {} ms", d.as_millis()),
            json!({"open_ms": d.as_millis() as u64}),
        ),
        Ok(RecoveryAction::HalfOpen) => ("half-open".to_string(), json!("half-open")),
        Ok(RecoveryAction::Close) => ("close".to_string(), json!("close")),
        Err(e) => (
            format!("FAILED: {e}"),
            json!({"error": e.kind_label(), "detail": e.to_string()}),
        ),
    };
    let s = &c.stats;
    Report {
        line: format!(
            "{state}, {} failure(s) in a row, {}/{} failed in the window; {event} -> {word} ({})",
            s.consecutive_failures,
            s.failures_in_window,
            s.requests_in_window,
            micros(took)
        ),
        json: json!({
            "input": {"state": state, "consecutive_failures": s.consecutive_failures,
                "requests_in_window": s.requests_in_window,
                "failures_in_window": s.failures_in_window, "event": event},
            "decision": json_action,
            "call_us": crate::clock::micros(took),
        }),
        same_as_recorded: None,
    }
}

/// `12.3 us` or `4.56 ms`.
pub(crate) fn micros(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} us")
    } else {
        format!("{:.2} ms", us / 1_000.0)
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}
