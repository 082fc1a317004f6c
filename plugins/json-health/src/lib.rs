//! Health check that reads a JSON status document.
//!
//! A probe is up when the HTTP status is accepted, the body parses as JSON,
//! the field at `field` holds one of the `up` values, and every `required`
//! field holds one of its allowed values. A `degraded` value at `field`, or a
//! failing `optional` field, makes the backend degraded (its weight scaled to
//! `degraded-percent`). Anything else is down, with a reason.
//!
//! ```toml
//! config = { field = "status", up = ["ok"], degraded = ["warn"], degraded-percent = 50,
//!            required = { "checks.db" = ["up"] }, optional = { "checks.cache" = ["up"] } }
//! ```
//!
//! For `{"status":"ok","checks":{"db":"up","cache":"down"}}` the verdict is
//! `degraded(50)`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

wit_bindgen::generate!({ world: "health-check", path: "../../wit" });

use switchyard::policy::health_types::ErrorKind;

/// The plugin's configuration, decoded from the JSON the proxy passes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    /// Dotted path of the main status field.
    #[serde(default = "default_field")]
    field: String,
    /// Values of `field` meaning up.
    #[serde(default = "default_up")]
    up: Vec<String>,
    /// Values of `field` meaning degraded.
    #[serde(default)]
    degraded: Vec<String>,
    /// Weight percent of a degraded backend.
    #[serde(default = "default_degraded_percent")]
    degraded_percent: u8,
    /// Paths that must hold one of their values, or the backend is down.
    #[serde(default)]
    required: BTreeMap<String, Vec<String>>,
    /// Paths that should hold one of their values, or the backend is degraded.
    #[serde(default)]
    optional: BTreeMap<String, Vec<String>>,
    /// Accepted HTTP statuses; any 2xx when empty.
    #[serde(default)]
    statuses: Vec<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            field: default_field(),
            up: default_up(),
            degraded: Vec::new(),
            degraded_percent: default_degraded_percent(),
            required: BTreeMap::new(),
            optional: BTreeMap::new(),
            statuses: Vec::new(),
        }
    }
}

fn default_field() -> String {
    "status".into()
}

fn default_up() -> Vec<String> {
    vec!["ok".into()]
}

fn default_degraded_percent() -> u8 {
    50
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
}

struct JsonHealth;

impl Guest for JsonHealth {
    fn init(config: String) -> Result<(), String> {
        let cfg: Config =
            serde_json::from_str(&config).map_err(|e| format!("json-health config: {e}"))?;
        if cfg.degraded_percent > 100 {
            return Err("json-health config: degraded-percent must be 0..=100".into());
        }
        CONFIG.set(cfg);
        Ok(())
    }

    fn wanted_headers() -> Vec<String> {
        Vec::new()
    }

    fn evaluate(probe: Probe) -> Verdict {
        CONFIG.with_borrow(|cfg| judge(cfg, &probe))
    }
}

fn judge(cfg: &Config, probe: &Probe) -> Verdict {
    if let Some(kind) = probe.error {
        let what = match kind {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Refused => "connection refused",
            ErrorKind::Reset => "connection reset",
            ErrorKind::Other => "probe failed",
        };
        return Verdict::Down(what.into());
    }
    let Some(status) = probe.status else {
        return Verdict::Down("no response".into());
    };
    let accepted = if cfg.statuses.is_empty() {
        (200..300).contains(&status)
    } else {
        cfg.statuses.contains(&status)
    };
    if !accepted {
        return Verdict::Down(format!("status {status}"));
    }
    let doc: Value = match serde_json::from_slice(&probe.body_prefix) {
        Ok(v) => v,
        Err(e) => return Verdict::Down(format!("body is not JSON: {e}")),
    };

    let mut degraded = false;
    match text_at(&doc, &cfg.field) {
        Some(v) if cfg.up.iter().any(|u| u == v) => {}
        Some(v) if cfg.degraded.iter().any(|d| d == v) => degraded = true,
        Some(v) => return Verdict::Down(format!("{}={v}", cfg.field)),
        None => return Verdict::Down(format!("{} missing", cfg.field)),
    }
    for (path, allowed) in &cfg.required {
        match text_at(&doc, path) {
            Some(v) if allowed.iter().any(|a| a == v) => {}
            Some(v) => return Verdict::Down(format!("{path}={v}")),
            None => return Verdict::Down(format!("{path} missing")),
        }
    }
    for (path, allowed) in &cfg.optional {
        if !text_at(&doc, path).is_some_and(|v| allowed.iter().any(|a| a == v)) {
            degraded = true;
        }
    }
    if degraded {
        Verdict::Degraded(cfg.degraded_percent)
    } else {
        Verdict::Up
    }
}

/// The string (or boolean, as text) at a dotted path.
fn text_at<'a>(doc: &'a Value, path: &str) -> Option<&'a str> {
    let mut v = doc;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        v = v.get(key)?;
    }
    match v {
        Value::String(s) => Some(s),
        Value::Bool(true) => Some("true"),
        Value::Bool(false) => Some("false"),
        _ => None,
    }
}

export!(JsonHealth);
