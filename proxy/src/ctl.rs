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
