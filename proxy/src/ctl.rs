//! `switchyard ctl`: the admin API from the command line, with readable tables.

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Why a `ctl` command failed.
#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    #[error("cannot reach the admin API at {admin}: {}", root_cause(source))]
    Unreachable {
        admin: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("the admin API answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("cannot start an async runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// The innermost error of a chain: `Connection refused (os error 111)` rather than
/// the HTTP client's `client error (Connect)`.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

/// One admin call: method, path and optional JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

impl Call {
    /// A `GET` of `path`.
    pub fn get(path: &str) -> Call {
        Call {
            method: Method::GET,
            path: path.to_string(),
            body: None,
        }
    }

    /// A `POST` to `path`, with `body` when given.
    pub fn post(path: impl Into<String>, body: Option<Value>) -> Call {
        Call {
            method: Method::POST,
            path: path.into(),
            body,
        }
    }
}

/// The flags every `switchyard ctl` command takes, before or after its name: where
/// the admin API is, the token, and how to print the answer.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Admin address (host:port). A host name other than `localhost` must be in the
    /// proxy's `admin.allowed_hosts`.
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9901",
        env = "SWITCHYARD_ADMIN"
    )]
    pub admin: String,
    /// Bearer token for the admin API (`admin.token`).
    #[arg(
        long,
        global = true,
        env = "SWITCHYARD_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Print the admin API's raw JSON answer instead of a table or a line.
    #[arg(long, global = true)]
    pub json: bool,
    /// In a fleet: refuse the change (409) if what it touches changed after this
    /// etcd revision (the `revision` of `GET /cluster` or of an earlier answer).
    #[arg(long, global = true, value_name = "REVISION")]
    pub if_revision: Option<i64>,
}

/// `switchyard ctl` commands: each is one admin call ([`Action::call`]).
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Action {
    /// Pools, backends and routes as tables.
    Status,
    /// Why each backend of a pool does or does not get traffic: operator, health
    /// checks, breaker, weight, or its share of recent requests and who chose it.
    Why {
        /// The pool to explain.
        pool: String,
    },
    /// Stop sending new requests to a backend; in-flight ones finish.
    Drain {
        /// The pool, as named in the config (`[pool.NAME]`).
        pool: String,
        /// The backend's name or address, as `ctl status` lists it (e.g. alpha or 10.0.0.5:8080).
        backend: String,
    },
    /// Put a backend back into rotation.
    Enable {
        /// The pool, as named in the config (`[pool.NAME]`).
        pool: String,
        /// The backend's name or address, as `ctl status` lists it (e.g. alpha or 10.0.0.5:8080).
        backend: String,
    },
    /// Take a backend out of rotation at once.
    Disable {
        /// The pool, as named in the config (`[pool.NAME]`).
        pool: String,
        /// The backend's name or address, as `ctl status` lists it (e.g. alpha or 10.0.0.5:8080).
        backend: String,
    },
    /// Set a backend's weight.
    Weight {
        /// The pool, as named in the config (`[pool.NAME]`).
        pool: String,
        /// The backend's name or address, as `ctl status` lists it (e.g. alpha or 10.0.0.5:8080).
        backend: String,
        /// The new weight, 0 to 10000 (0 sends it no new requests).
        weight: u32,
    },
    /// Move a route to another pool (blue/green). Refused when the pool has no
    /// usable backend, unless `--force`.
    Switch {
        /// The route, as named in the config (`[[route]] name`).
        route: String,
        /// The pool to send all of the route's traffic to.
        pool: String,
        /// Switch even though the pool has no usable backend right now.
        #[arg(long)]
        force: bool,
    },
    /// Split a route across pools by percentage (adding up to 100), e.g. `blue=90 green=10`. Refused when a pool
    /// given a share has no usable backend, unless `--force`.
    Split {
        /// The route, as named in the config (`[[route]] name`).
        route: String,
        /// Each pool's share as POOL=PERCENT, e.g. `blue=90 green=10`.
        #[arg(required = true, value_name = "POOL=PERCENT")]
        pools: Vec<String>,
        /// Keep each client on one side: `header:NAME` or `cookie:NAME`.
        #[arg(long)]
        sticky: Option<String>,
        /// Split even though a pool has no usable backend right now.
        #[arg(long)]
        force: bool,
    },
    /// Reload the config file.
    Reload,
    /// Move a route to another pool in guarded steps, or stop a running rollout.
    Rollout {
        /// The route, as named in the config (`[[route]] name`).
        route: String,
        /// The pool to roll out to.
        #[arg(long, required_unless_present = "abort", value_name = "POOL")]
        to: Option<String>,
        /// Percentages of traffic on the new pool, e.g. `5,25,50,100`.
        #[arg(long)]
        steps: Option<String>,
        /// How long each step is held, e.g. `10s`.
        #[arg(long)]
        interval: Option<String>,
        /// Stop the running rollout and send the route back to its old pool.
        #[arg(long, conflicts_with_all = ["to", "steps", "interval", "force"])]
        abort: bool,
        /// Start even though the new pool has no usable backend right now.
        #[arg(long)]
        force: bool,
    },
    /// Add a backend to a pool at run time.
    AddBackend {
        /// The pool, as named in the config (`[pool.NAME]`).
        pool: String,
        /// The new backend's IP:port, e.g. 10.0.0.7:8080.
        address: String,
        /// Its weight.
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Drain a backend, then remove it from its pool.
    RemoveBackend {
        /// The pool, as named in the config (`[pool.NAME]`).
        pool: String,
        /// The backend's name or address, as `ctl status` lists it (e.g. alpha or 10.0.0.5:8080).
        backend: String,
    },
}

impl Action {
    /// The admin call this command makes. An argument the admin API would refuse
    /// anyway (a share that is not `POOL=PERCENT`, steps that are not numbers, a
    /// rollout without `--to`) is refused here, before anything is sent.
    pub fn call(&self) -> Result<Call, CtlError> {
        let backend = |pool: &str, backend: &str, verb: &str| {
            format!("/pools/{pool}/backends/{backend}/{verb}")
        };
        Ok(match self {
            Action::Status | Action::Why { .. } => Call::get("/status"),
            Action::Drain { pool, backend: b } => Call::post(backend(pool, b, "drain"), None),
            Action::Enable { pool, backend: b } => Call::post(backend(pool, b, "enable"), None),
            Action::Disable { pool, backend: b } => Call::post(backend(pool, b, "disable"), None),
            Action::Weight {
                pool,
                backend: b,
                weight,
            } => Call::post(
                backend(pool, b, "weight"),
                Some(serde_json::json!({ "weight": weight })),
            ),
            Action::Switch { route, pool, force } => Call::post(
                format!("/routes/{route}/switch"),
                Some(serde_json::json!({ "pool": pool, "force": force })),
            ),
            Action::Split {
                route,
                pools,
                sticky,
                force,
            } => split_call(route, pools, sticky.as_deref(), *force)?,
            Action::Reload => Call::post("/reload", None),
            Action::Rollout {
                route,
                to,
                steps,
                interval,
                abort,
                force,
            } => rollout_call(
                route,
                to.as_deref(),
                steps.as_deref(),
                interval.as_deref(),
                *abort,
                *force,
            )?,
            Action::AddBackend {
                pool,
                address,
                weight,
            } => add_backend_call(pool, address, *weight),
            Action::RemoveBackend { pool, backend } => remove_backend_call(pool, backend),
        })
    }
}

/// Sends a call to the admin API at `admin` (`host:port`) and returns its JSON answer.
pub async fn send(admin: &str, token: Option<&str>, call: &Call) -> Result<Value, CtlError> {
    send_if(admin, token, call, None).await
}

/// [`send`], for an instance of a fleet: with `if_revision`, the change is refused
/// (409) if what it touches changed after that etcd revision.
pub async fn send_if(
    admin: &str,
    token: Option<&str>,
    call: &Call,
    if_revision: Option<i64>,
) -> Result<Value, CtlError> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let body = call
        .body
        .as_ref()
        .map(|b| Bytes::from(b.to_string()))
        .unwrap_or_default();
    let mut request = Request::builder()
        .method(call.method.clone())
        .uri(format!("http://{admin}{}", call.path))
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if let Some(revision) = if_revision {
        request = request.header(header::IF_MATCH, revision.to_string());
    }
    let request = request
        .body(Full::new(body))
        .map_err(|e| CtlError::Invalid(e.to_string()))?;
    let response = client
        .request(request)
        .await
        .map_err(|source| CtlError::Unreachable {
            admin: admin.to_string(),
            source,
        })?;
    let status = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let value: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).trim().to_string()));
    if status >= 400 {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_string);
        return Err(CtlError::Refused { status, message });
    }
    Ok(value)
}

/// [`send_if`] from the command line, on a runtime of its own.
pub fn send_blocking(
    admin: &str,
    token: Option<&str>,
    call: &Call,
    if_revision: Option<i64>,
) -> Result<Value, CtlError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(CtlError::Runtime)?;
    runtime.block_on(send_if(admin, token, call, if_revision))
}

/// `ctl split`: splits `route` across `pools`, each `POOL=PERCENT` (e.g. `green=10`).
pub fn split_call(
    route: &str,
    pools: &[String],
    sticky: Option<&str>,
    force: bool,
) -> Result<Call, CtlError> {
    let mut split = serde_json::Map::new();
    for item in pools {
        let Some((pool, weight)) = item
            .split_once('=')
            .and_then(|(p, w)| Some((p, w.parse::<u32>().ok()?)))
        else {
            return Err(CtlError::Invalid(format!(
                "`{item}` is not POOL=PERCENT (e.g. green=10)"
            )));
        };
        split.insert(pool.to_string(), weight.into());
    }
    Ok(Call::post(
        format!("/routes/{route}/split"),
        Some(serde_json::json!({ "pools": split, "sticky": sticky, "force": force })),
    ))
}

/// `switchyard upgrade`: asks the running proxy to hand over to a new process.
pub fn upgrade_call() -> Call {
    Call::post("/upgrade", Some(serde_json::json!({})))
}

/// `ctl rollout`: the call that starts a rollout of `route` (steps as `5,25,50,100`),
/// or with `abort` the one that stops it. `force` starts it even when `to` has no
/// usable backend.
pub fn rollout_call(
    route: &str,
    to: Option<&str>,
    steps: Option<&str>,
    interval: Option<&str>,
    abort: bool,
    force: bool,
) -> Result<Call, CtlError> {
    if abort {
        return Ok(Call {
            method: Method::POST,
            path: format!("/routes/{route}/rollout/abort"),
            body: None,
        });
    }
    let to = to.ok_or_else(|| CtlError::Invalid("--to POOL is required (or --abort)".into()))?;
    let mut body = serde_json::json!({ "to": to });
    if let Some(steps) = steps {
        let parsed: Result<Vec<u32>, _> =
            steps.split(',').map(|s| s.trim().parse::<u32>()).collect();
        let parsed = parsed.map_err(|_| {
            CtlError::Invalid(format!("--steps `{steps}` is not a list like 5,25,50,100"))
        })?;
        body["steps"] = parsed.into();
    }
    if let Some(interval) = interval {
        body["interval"] = interval.into();
    }
    if force {
        body["force"] = true.into();
    }
    Ok(Call {
        method: Method::POST,
        path: format!("/routes/{route}/rollout"),
        body: Some(body),
    })
}

/// `ctl add-backend`: adds `address` to `pool` with `weight`.
pub fn add_backend_call(pool: &str, address: &str, weight: u32) -> Call {
    Call {
        method: Method::POST,
        path: format!("/pools/{pool}/backends"),
        body: Some(serde_json::json!({ "address": address, "weight": weight })),
    }
}

/// `ctl remove-backend`: drains `address` out of `pool`, then removes it.
pub fn remove_backend_call(pool: &str, address: &str) -> Call {
    Call {
        method: Method::DELETE,
        path: format!("/pools/{pool}/backends/{address}"),
        body: None,
    }
}

/// Renders `ctl why POOL` from `/status`: how requests reach the pool, then one line
/// per backend saying whether it takes new requests and why.
pub fn render_why(status: &Value, pool: &str) -> Result<String, CtlError> {
    let pools = status["pools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let Some(found) = pools.iter().find(|p| p["name"] == pool) else {
        let names: Vec<&str> = pools.iter().filter_map(|p| p["name"].as_str()).collect();
        return Err(CtlError::Invalid(format!(
            "no pool named `{pool}`; pools: {}",
            names.join(", ")
        )));
    };
    let mut out = format!("pool {pool}: {}\n", text(&found["traffic"]));
    let mut rows = vec![["BACKEND", "TRAFFIC", "WHY"].map(str::to_string)];
    for b in found["backends"].as_array().into_iter().flatten() {
        let backend = match b["name"].as_str() {
            Some(name) => format!("{name} ({})", text(&b["address"])),
            None => text(&b["address"]),
        };
        let traffic = if b["receiving"] == true { "yes" } else { "no" };
        rows.push([backend, traffic.to_string(), text(&b["why"])]);
    }
    out.push_str(&table(&rows));
    Ok(out)
}

/// What a command prints for the admin API's answer: tables for `status`, one line
/// for a change (naming what changed and how it stands now), ending in a newline.
/// Fails only for `why` on a pool the proxy does not have.
pub fn render(action: &Action, answer: &Value) -> Result<String, CtlError> {
    let line = match action {
        Action::Status => return Ok(render_status(answer)),
        Action::Why { pool } => return render_why(answer, pool),
        Action::Drain { .. }
        | Action::Enable { .. }
        | Action::Disable { .. }
        | Action::Weight { .. } => format!(
            "{}: {} (weight {}, {} in flight)",
            backend_label(answer),
            text(&answer["admin_state"]),
            text(&answer["weight"]),
            text(&answer["in_flight"]),
        ),
        Action::Switch { .. } | Action::Split { .. } => format!(
            "route {}: {}",
            text(&answer["route"]),
            target_text(&answer["target"])
        ),
        Action::Reload => format!("reloaded {}", text(&answer["reloaded"])),
        Action::Rollout { abort: false, .. } => {
            let r = &answer["rollout"];
            let steps: Vec<String> = r["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| format!("{}%", text(p)))
                .collect();
            let interval = r["interval_ms"].as_u64().map_or_else(
                || "-".to_string(),
                |ms| crate::config::HumanDuration(std::time::Duration::from_millis(ms)).to_string(),
            );
            format!(
                "route {}: rollout from {} to {} started: steps {}, {interval} each",
                text(&answer["route"]),
                text(&r["from"]),
                text(&r["to"]),
                steps.join(", "),
            )
        }
        Action::Rollout { abort: true, .. } => match answer["target"].get("pool") {
            Some(pool) => format!(
                "route {}: rollout aborted, all traffic back on pool {}",
                text(&answer["route"]),
                text(pool)
            ),
            None => format!("route {}: rollout aborted", text(&answer["route"])),
        },
        Action::AddBackend { .. } => format!(
            "{}: added (weight {}, health {})",
            backend_label(answer),
            text(&answer["weight"]),
            text(&answer["health"]),
        ),
        Action::RemoveBackend { .. } => match answer["state"].as_str() {
            Some("removing") => format!(
                "{}: draining, removed once its {} in-flight request(s) finish (at most {})",
                backend_label(answer),
                text(&answer["in_flight"]),
                answer["timeout_ms"].as_u64().map_or_else(
                    || "-".to_string(),
                    |ms| crate::config::HumanDuration(std::time::Duration::from_millis(ms))
                        .to_string()
                ),
            ),
            _ => format!("{}: removed", backend_label(answer)),
        },
    };
    // In a fleet, the etcd revision the change was committed at (for --if-revision).
    match answer.get("revision").and_then(Value::as_i64) {
        Some(revision) => Ok(format!("{line} (fleet revision {revision})\n")),
        None => Ok(format!("{line}\n")),
    }
}

/// `pool app, backend 10.0.0.5:8080` from an answer that names both, with the
/// backend's name after its address when it has one.
fn backend_label(answer: &Value) -> String {
    let label = format!(
        "pool {}, backend {}",
        text(&answer["pool"]),
        text(&answer["address"])
    );
    match answer["name"].as_str() {
        Some(name) => format!("{label} ({name})"),
        None => label,
    }
}

/// A route's target in words: `all traffic to pool green`, or the split's shares.
fn target_text(target: &Value) -> String {
    if let Some(pool) = target.get("pool") {
        return format!("all traffic to pool {}", text(pool));
    }
    let shares = split_text(&target["split"]);
    match target["sticky"].as_str() {
        Some(sticky) => format!("split {shares} (sticky on {sticky})"),
        None => format!("split {shares}"),
    }
}

/// `blue 90%, green 10%`.
fn split_text(split: &Value) -> String {
    split
        .as_object()
        .into_iter()
        .flatten()
        .map(|(pool, percent)| format!("{pool} {}%", text(percent)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A JSON value as a table cell or in a sentence: strings bare, nothing as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    }
}

/// Renders `/status` as tables: one line per backend (with a NAME column when a
/// backend has a name), one per route, one per rollout.
pub fn render_status(status: &Value) -> String {
    let backends = || {
        status["pools"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|pool| {
                pool["backends"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(move |b| (pool, b))
            })
    };
    let named = backends().any(|(_, b)| b["name"].is_string());
    let mut rows = vec![
        [
            "POOL",
            "NAME",
            "BACKEND",
            "ADMIN",
            "HEALTH",
            "BREAKER",
            "WEIGHT",
            "IN-FLIGHT",
            "REQUESTS",
            "FAILURES",
        ]
        .map(str::to_string),
    ];
    for (pool, b) in backends() {
        rows.push([
            text(&pool["name"]),
            text(&b["name"]),
            text(&b["address"]),
            text(&b["admin_state"]),
            text(&b["health"]),
            text(&b["breaker"]),
            text(&b["weight"]),
            text(&b["in_flight"]),
            text(&b["requests"]),
            text(&b["failures"]),
        ]);
    }
    if !named {
        for row in &mut rows {
            row[1].clear();
        }
    }
    let mut out = table(&rows);
    out.push('\n');
    let mut routes = vec![["ROUTE", "LISTENER", "HOST", "PATH", "TARGET"].map(str::to_string)];
    for r in status["routes"].as_array().into_iter().flatten() {
        let target = match r["target"].get("pool") {
            Some(p) => text(p),
            None => target_text(&r["target"]),
        };
        routes.push([
            text(&r["name"]),
            text(&r["listener"]),
            text(&r["host"]),
            text(&r["path_prefix"]),
            target,
        ]);
    }
    out.push_str(&table(&routes));
    let rollouts: Vec<[String; 6]> = status["routes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["rollout"].is_object())
        .map(|r| {
            let o = &r["rollout"];
            [
                text(&r["name"]),
                format!("{} -> {}", text(&o["from"]), text(&o["to"])),
                text(&o["state"]),
                text(&o["percent"]),
                text(&o["last_verdict"]["detail"]),
                text(&o["reason"]),
            ]
        })
        .collect();
    if !rollouts.is_empty() {
        let mut rows = vec![
            [
                "ROLLOUT",
                "POOLS",
                "STATE",
                "PERCENT",
                "LAST VERDICT",
                "REASON",
            ]
            .map(str::to_string),
        ];
        rows.extend(rollouts);
        out.push('\n');
        out.push_str(&table(&rows));
    }
    let cluster = &status["cluster"];
    if cluster.is_object() {
        let link = if cluster["connected"] == true {
            format!("etcd connected at revision {}", text(&cluster["revision"]))
        } else {
            format!(
                "etcd UNREACHABLE ({}): serving with the last state, changes are refused",
                text(&cluster["error"])
            )
        };
        out.push_str(&format!(
            "\nfleet {}: instance {}, {link}, rollout leader {}\n",
            text(&cluster["prefix"]),
            text(&cluster["instance"]),
            text(&cluster["leader"])
        ));
    }
    out
}

/// Left-aligned columns two spaces apart; a column empty in every row (the header
/// included) is left out.
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .filter(|(_, w)| *w > 0)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_calls() {
        let call = rollout_call(
            "web",
            Some("green"),
            Some("5, 50,100"),
            Some("10s"),
            false,
            false,
        )
        .unwrap();
        assert_eq!(call.path, "/routes/web/rollout");
        assert_eq!(
            call.body,
            Some(serde_json::json!({"to": "green", "steps": [5, 50, 100], "interval": "10s"}))
        );
        assert_eq!(
            rollout_call("web", None, None, None, true, false)
                .unwrap()
                .path,
            "/routes/web/rollout/abort"
        );
        assert!(rollout_call("web", None, None, None, false, false).is_err());
        assert!(rollout_call("web", Some("g"), Some("5,x"), None, false, false).is_err());
        assert_eq!(
            rollout_call("web", Some("g"), None, None, false, true)
                .unwrap()
                .body,
            Some(serde_json::json!({"to": "g", "force": true}))
        );
    }

    #[test]
    fn every_action_makes_its_admin_call() {
        let post = |path: &str, body: Option<Value>| Call::post(path, body);
        let (pool, backend) = ("app".to_string(), "10.0.0.1:80".to_string());
        let cases = [
            (Action::Status, Call::get("/status")),
            (
                Action::Drain {
                    pool: pool.clone(),
                    backend: backend.clone(),
                },
                post("/pools/app/backends/10.0.0.1:80/drain", None),
            ),
            (
                Action::Enable {
                    pool: pool.clone(),
                    backend: backend.clone(),
                },
                post("/pools/app/backends/10.0.0.1:80/enable", None),
            ),
            (
                Action::Disable {
                    pool: pool.clone(),
                    backend: backend.clone(),
                },
                post("/pools/app/backends/10.0.0.1:80/disable", None),
            ),
            (
                Action::Weight {
                    pool: pool.clone(),
                    backend: backend.clone(),
                    weight: 5,
                },
                post(
                    "/pools/app/backends/10.0.0.1:80/weight",
                    Some(serde_json::json!({ "weight": 5 })),
                ),
            ),
            (
                Action::Switch {
                    route: "web".into(),
                    pool: "green".into(),
                    force: true,
                },
                post(
                    "/routes/web/switch",
                    Some(serde_json::json!({ "pool": "green", "force": true })),
                ),
            ),
            (
                Action::Split {
                    route: "web".into(),
                    pools: vec!["blue=90".into(), "green=10".into()],
                    sticky: Some("header:x-user".into()),
                    force: false,
                },
                post(
                    "/routes/web/split",
                    Some(serde_json::json!({
                        "pools": { "blue": 90, "green": 10 },
                        "sticky": "header:x-user",
                        "force": false,
                    })),
                ),
            ),
            (Action::Reload, post("/reload", None)),
            (
                Action::AddBackend {
                    pool: pool.clone(),
                    address: backend.clone(),
                    weight: 2,
                },
                post(
                    "/pools/app/backends",
                    Some(serde_json::json!({ "address": "10.0.0.1:80", "weight": 2 })),
                ),
            ),
            (
                Action::RemoveBackend { pool, backend },
                Call {
                    method: Method::DELETE,
                    path: "/pools/app/backends/10.0.0.1:80".into(),
                    body: None,
                },
            ),
        ];
        for (action, expected) in cases {
            assert_eq!(action.call().unwrap(), expected, "{action:?}");
        }
        let abort = Action::Rollout {
            route: "web".into(),
            to: None,
            steps: None,
            interval: None,
            abort: true,
            force: false,
        };
        assert_eq!(
            abort.call().unwrap(),
            post("/routes/web/rollout/abort", None)
        );
    }

    #[test]
    fn a_share_that_is_not_pool_equals_weight_is_refused_before_sending() {
        let split = |share: &str| split_call("web", &[share.to_string()], None, false);
        for bad in ["green", "green=", "green=ten"] {
            match split(bad) {
                Err(CtlError::Invalid(message)) => {
                    assert_eq!(
                        message,
                        format!("`{bad}` is not POOL=PERCENT (e.g. green=10)")
                    );
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn why_renders_one_line_per_backend() {
        let status = serde_json::json!({"pools": [{
            "name": "blue",
            "traffic": "route demo sends every request here",
            "backends": [
                {"name": "alpha", "address": "127.0.0.1:9001", "receiving": true,
                 "why": "usable, 7 of the pool's 9 requests in the last 10 s, chosen by the balancer"},
                {"name": null, "address": "127.0.0.1:9002", "receiving": false,
                 "why": "drained: takes no new request until it is enabled"},
            ],
        }]});
        assert_eq!(
            render_why(&status, "blue").unwrap(),
            "pool blue: route demo sends every request here\n\
             BACKEND                 TRAFFIC  WHY\n\
             alpha (127.0.0.1:9001)  yes      usable, 7 of the pool's 9 requests in the last 10 s, chosen by the balancer\n\
             127.0.0.1:9002          no       drained: takes no new request until it is enabled\n"
        );
        match render_why(&status, "green") {
            Err(CtlError::Invalid(message)) => {
                assert_eq!(message, "no pool named `green`; pools: blue");
            }
            other => panic!("{other:?}"),
        }
    }
}
