//! Backend choice by a routing plugin, with the native balancer as fallback, and
//! shadow evaluation of a candidate policy that is never obeyed.

use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use http::StatusCode;
use tracing::{debug, info};

use crate::balance::PickContext;
use crate::plugin::samples::{Observed, SampleKind, deciding_headers};
use crate::plugin::{
    PluginError, PluginSlot, Recourse, RouteCandidate, RouteDecision, RouteRequest, recourse,
};
use crate::upstream::{Pool, Shadow};

/// Where a request goes, as decided by the pool's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Send it to this backend index of the pool.
    Backend(usize),
    /// The routing plugin answers the client itself.
    Respond { status: StatusCode, body: Bytes },
    /// The routing plugin refuses the request (403).
    Reject,
    /// The plugin failed and `on_error = "fail-closed"` (503).
    PolicyFailed,
    /// No backend may take the request.
    Exhausted,
}

thread_local! {
    /// Reused per worker thread so a routing call allocates nothing.
    static CANDIDATES: RefCell<Vec<RouteCandidate>> = const { RefCell::new(Vec::new()) };
}

/// The select step: where a request goes. The pool's routing plugin decides when it
/// has one (with the native balancer as its fallback), else the native balancer
/// alone; a shadow plugin is run beside either. A usable backend named by the
/// request's sticky cookie (`ctx.pinned`) comes before both. `request` is only read
/// by plugins; `exclude` rejects backend indexes (those this request already tried).
pub fn select(
    pool: &Pool,
    ctx: &PickContext,
    request: Option<&RouteRequest<'_>>,
    exclude: impl Fn(usize) -> bool,
) -> Selection {
    let native = || pool.pick(ctx, &exclude);
    if let Some(pinned) = ctx.pinned.filter(|&i| {
        !exclude(i)
            && pool
                .backends
                .get(i)
                .is_some_and(|b| b.state.is_usable(ctx.now_ms))
    }) {
        return Selection::Backend(pinned);
    }
    match request {
        Some(request) if pool.policies.routes() => {
            let now = ctx.now_ms;
            let panic = pool.in_panic_mode(now);
            let admits = |i: usize| !exclude(i) && pool.selectable(i, now, panic);
            with_plugins(pool, request, now, &admits, &native)
        }
        _ => native().map_or(Selection::Exhausted, Selection::Backend),
    }
}

/// Chooses with the pool's routing plugin (and runs its shadow), falling back to
/// `native` as the plugin's `on_error` and quarantine say. `admits` says which
/// backend indexes may take the request now.
fn with_plugins(
    pool: &Pool,
    request: &RouteRequest<'_>,
    now_ms: u64,
    admits: &dyn Fn(usize) -> bool,
    native: &dyn Fn() -> Option<usize>,
) -> Selection {
    CANDIDATES.with_borrow_mut(|candidates| {
        fill_candidates(pool, now_ms, admits, candidates);
        if candidates.is_empty() {
            return Selection::Exhausted;
        }
        let live = match &pool.policies.routing {
            Some(slot) => match ask_gated(pool, slot, request, candidates, now_ms) {
                // Slow plugin calls hold the workers: choose natively, like a
                // quarantine does (shedding is not this plugin's failure).
                None => {
                    if let Some(shed) = &pool.policies.shed {
                        shed.inc();
                    }
                    native().map_or(Selection::Exhausted, Selection::Backend)
                }
                Some(Ok(decision)) => from_decision(decision),
                Some(Err(e)) => {
                    debug!(pool = %pool.name, plugin = %slot.name(), error = %e, "routing plugin call failed");
                    match recourse(&e, slot.current().config.on_error) {
                        Recourse::Native => native().map_or(Selection::Exhausted, Selection::Backend),
                        Recourse::FailClosed => Selection::PolicyFailed,
                    }
                }
            },
            None => native().map_or(Selection::Exhausted, Selection::Backend),
        };
        if let Some(shadow) = &pool.policies.shadow {
            compare(pool, shadow, request, candidates, &live, now_ms);
        }
        live
    })
}

fn fill_candidates(
    pool: &Pool,
    now_ms: u64,
    admits: &dyn Fn(usize) -> bool,
    out: &mut Vec<RouteCandidate>,
) {
    out.clear();
    let slow_start = pool.config.failover.slow_start;
    let window = pool.config.breaker.window;
    for (i, b) in pool.backends.iter().enumerate() {
        if !admits(i) {
            continue;
        }
        let s = &b.state;
        let (requests, failures) = s.breaker.window_counts(window, now_ms);
        let error_rate_permille = if requests == 0 {
            0
        } else {
            (u64::from(failures) * 1000 / u64::from(requests)).min(1000) as u16
        };
        out.push(RouteCandidate {
            index: i as u32,
            weight: s.effective_weight(slow_start, now_ms).ceil() as u32,
            in_flight: s.in_flight.load(Ordering::Relaxed),
            latency_ewma_us: s.latency_ewma_us(now_ms),
            error_rate_permille,
            healthy: true,
        });
    }
}

fn ask(
    slot: &PluginSlot,
    request: &RouteRequest<'_>,
    candidates: &[RouteCandidate],
) -> Result<RouteDecision, PluginError> {
    let active = slot.current();
    match active.plugin.as_routing() {
        Some(routing) => routing.choose(request, candidates),
        None => Err(PluginError::Invalid(format!(
            "`{}` is not a routing plugin",
            slot.name()
        ))),
    }
}

/// [`ask`] behind the inline gate (`None`: shed, see [`crate::plugin::InlineGate`]),
/// keeping a sample of the call when one is due (one atomic load when not). The
/// gate's permit covers the plugin call only.
fn ask_gated(
    pool: &Pool,
    slot: &PluginSlot,
    request: &RouteRequest<'_>,
    candidates: &[RouteCandidate],
    now_ms: u64,
) -> Option<Result<RouteDecision, PluginError>> {
    let pass = slot.inline_gate().enter(|| typical_call(slot))?;
    if !slot.samples().due(now_ms) {
        return Some(ask(slot, request, candidates));
    }
    let started = Instant::now();
    let result = ask(slot, request, candidates);
    let took = started.elapsed();
    drop(pass);
    let active = slot.current();
    let wanted = active
        .plugin
        .as_routing()
        .map_or(&[][..], |r| r.wanted_headers());
    slot.samples().record(
        now_ms,
        Observed {
            pool: &pool.name,
            kind: SampleKind::Live,
            request,
            wanted,
            candidates,
            result: &result,
            took,
            live: None,
        },
    );
    Some(result)
}

/// How long the slot's routing plugin has recently taken per call.
fn typical_call(slot: &PluginSlot) -> std::time::Duration {
    slot.current()
        .plugin
        .as_routing()
        .map_or(std::time::Duration::ZERO, |r| r.typical_call())
}

fn from_decision(decision: RouteDecision) -> Selection {
    match decision {
        RouteDecision::Backend(i) => Selection::Backend(i as usize),
        RouteDecision::Respond { status, body } => Selection::Respond {
            status,
            body: Bytes::from(body),
        },
        RouteDecision::Reject => Selection::Reject,
    }
}

/// Runs the shadow on the same inputs and counts whether it would have done the same.
fn compare(
    pool: &Pool,
    shadow: &Shadow,
    request: &RouteRequest<'_>,
    candidates: &[RouteCandidate],
    live: &Selection,
    now_ms: u64,
) {
    if matches!(live, Selection::Exhausted | Selection::PolicyFailed) {
        return;
    }
    let (result, took) = {
        // The permit is held for the call only, not for counting and sampling.
        let Some(_pass) = shadow
            .slot
            .inline_gate()
            .enter(|| typical_call(&shadow.slot))
        else {
            return;
        };
        let started = Instant::now();
        let result = ask(&shadow.slot, request, candidates);
        (result, started.elapsed())
    };
    // A failed call is counted in the shadow plugin's own error metrics.
    let proposed = result.as_ref().ok().map(|decision| match decision {
        RouteDecision::Backend(i) => Selection::Backend(*i as usize),
        // Responses agree on their status; the body is not compared.
        RouteDecision::Respond { status, .. } => Selection::Respond {
            status: *status,
            body: Bytes::new(),
        },
        RouteDecision::Reject => Selection::Reject,
    });
    let agree = proposed.as_ref().map(|proposed| match (live, proposed) {
        (Selection::Respond { status: a, .. }, Selection::Respond { status: b, .. }) => a == b,
        (a, b) => a == b,
    });
    match agree {
        Some(true) => {
            shadow.agree.inc();
        }
        Some(false) => {
            shadow.disagree.inc();
        }
        None => {}
    }
    let samples = shadow.slot.samples();
    let disagrees = agree == Some(false);
    if (disagrees && samples.disagreement_due(now_ms)) || samples.due(now_ms) {
        let active = shadow.slot.current();
        let wanted = active
            .plugin
            .as_routing()
            .map_or(&[][..], |r| r.wanted_headers());
        samples.record(
            now_ms,
            Observed {
                pool: &pool.name,
                kind: SampleKind::Shadow,
                request,
                wanted,
                candidates,
                result: &result,
                took,
                live: Some(selection_json(live)),
            },
        );
    }
    let Some(proposed) = proposed.filter(|_| disagrees) else {
        return;
    };
    if shadow.log_due(now_ms) {
        let headers = deciding(pool, shadow, request);
        info!(pool = %pool.name, shadow = %shadow.slot.name(), method = request.method,
            path = request.path, client_ip = %request.client_ip, headers = %headers,
            live = %describe(pool, live), shadow_choice = %describe(pool, &proposed),
            "shadow routing policy disagrees (sampled)");
    }
}

/// The request headers the shadow and the live plugin read, as `name: value; ...`
/// (`-` when they read none): what the two decisions were made from.
fn deciding(pool: &Pool, shadow: &Shadow, request: &RouteRequest<'_>) -> String {
    let mut wanted: Vec<http::HeaderName> = Vec::new();
    for slot in std::iter::once(&shadow.slot).chain(pool.policies.routing.as_ref()) {
        if let Some(routing) = slot.current().plugin.as_routing() {
            for name in routing.wanted_headers() {
                if !wanted.contains(name) {
                    wanted.push(name.clone());
                }
            }
        }
    }
    let pairs: Vec<String> = deciding_headers(&wanted, request)
        .into_iter()
        .map(|(name, value)| format!("{name}: {value}"))
        .collect();
    if pairs.is_empty() {
        "-".into()
    } else {
        pairs.join("; ")
    }
}

/// A live selection as a sample records it: the backend index, or what happened.
fn selection_json(selection: &Selection) -> serde_json::Value {
    match selection {
        Selection::Backend(i) => serde_json::json!({ "backend": i }),
        Selection::Respond { status, .. } => {
            serde_json::json!({ "respond": { "status": status.as_u16() } })
        }
        Selection::Reject => serde_json::json!("reject"),
        Selection::PolicyFailed => serde_json::json!("policy failed"),
        Selection::Exhausted => serde_json::json!("no backend"),
    }
}

fn describe(pool: &Pool, selection: &Selection) -> String {
    match selection {
        Selection::Backend(i) => pool
            .backends
            .get(*i)
            .map_or_else(|| format!("backend #{i}"), |b| b.key.to_string()),
        Selection::Respond { status, .. } => format!("respond {}", status.as_u16()),
        Selection::Reject => "reject".into(),
        Selection::PolicyFailed => "policy failed".into(),
        Selection::Exhausted => "no backend".into(),
    }
}
