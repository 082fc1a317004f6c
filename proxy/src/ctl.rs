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
    #[error("cannot reach the admin API at {admin}: {source}")]
    Unreachable {
        admin: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("the admin API answered {status}: {message}")]
    Refused { status: u16, message: String },
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// One admin call: method, path and optional JSON body.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub path: String,
    pub body: Option<Value>,
}

/// Sends a call to the admin API at `admin` (`host:port`) and returns its JSON answer.
pub async fn send(admin: &str, token: Option<&str>, call: &Call) -> Result<Value, CtlError> {
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

/// Renders `/status` as a table: one line per backend.
pub fn render_status(status: &Value) -> String {
    let mut rows = vec![
        [
            "POOL",
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
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    for pool in status["pools"].as_array().into_iter().flatten() {
        for b in pool["backends"].as_array().into_iter().flatten() {
            rows.push([
                text(&pool["name"]),
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
    }
    let mut out = table(&rows);
    out.push('\n');
    let mut routes = vec![["ROUTE", "LISTENER", "HOST", "PATH", "TARGET"].map(str::to_string)];
    for r in status["routes"].as_array().into_iter().flatten() {
        let target = match r["target"].get("pool") {
            Some(p) => text(p),
            None => r["target"]["split"].to_string(),
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
    out
}

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
}
