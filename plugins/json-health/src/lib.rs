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

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use switchyard_policy::health::{ErrorKind, Probe, Verdict};
use switchyard_policy::{ConfigError, HealthPolicy, health_policy};

/// The plugin's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Config {
    /// Dotted path of the main status field.
    field: String,
    /// Values of `field` meaning up.
    up: Vec<String>,
    /// Values of `field` meaning degraded.
    degraded: Vec<String>,
    /// Weight percent of a degraded backend.
    degraded_percent: u8,
    /// Paths that must hold one of their values, or the backend is down.
    required: BTreeMap<String, Vec<String>>,
    /// Paths that should hold one of their values, or the backend is degraded.
    optional: BTreeMap<String, Vec<String>>,
    /// Accepted HTTP statuses; any 2xx when empty.
    statuses: Vec<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            field: "status".into(),
            up: vec!["ok".into()],
            degraded: Vec::new(),
            degraded_percent: 50,
            required: BTreeMap::new(),
            optional: BTreeMap::new(),
            statuses: Vec::new(),
        }
    }
}

/// The policy: its configuration.
pub struct JsonHealth(Config);

impl HealthPolicy for JsonHealth {
    type Config = Config;

    fn init(config: Config) -> Result<Self, ConfigError> {
        if config.degraded_percent > 100 {
            return Err(ConfigError::field("degraded-percent", "must be 0..=100"));
        }
        Ok(Self(config))
    }

    fn evaluate(&mut self, probe: &Probe) -> Verdict {
        judge(&self.0, probe).unwrap_or_else(Verdict::Down)
    }
}

/// The verdict, or the reason the backend is down.
fn judge(cfg: &Config, probe: &Probe) -> Result<Verdict, String> {
    if let Some(kind) = probe.error {
        return Err(match kind {
            ErrorKind::Timeout => "timeout",
            ErrorKind::Refused => "connection refused",
            ErrorKind::Reset => "connection reset",
            ErrorKind::Other => "probe failed",
        }
        .into());
    }
    let status = probe.status.ok_or("no response")?;
    let accepted = match cfg.statuses.as_slice() {
        [] => (200..300).contains(&status),
        list => list.contains(&status),
    };
    if !accepted {
        return Err(format!("status {status}"));
    }
    let doc: Value =
        serde_json::from_slice(&probe.body_prefix).map_err(|e| format!("body is not JSON: {e}"))?;

    let mut degraded = match text_at(&doc, &cfg.field) {
        Some(v) if cfg.up.iter().any(|u| u == v) => false,
        Some(v) if cfg.degraded.iter().any(|d| d == v) => true,
        Some(v) => return Err(format!("{}={v}", cfg.field)),
        None => return Err(format!("{} missing", cfg.field)),
    };
    for (path, allowed) in &cfg.required {
        match text_at(&doc, path) {
            Some(v) if allowed.iter().any(|a| a == v) => {}
            Some(v) => return Err(format!("{path}={v}")),
            None => return Err(format!("{path} missing")),
        }
    }
    for (path, allowed) in &cfg.optional {
        degraded |= !text_at(&doc, path).is_some_and(|v| allowed.iter().any(|a| a == v));
    }
    Ok(if degraded {
        Verdict::Degraded(cfg.degraded_percent)
    } else {
        Verdict::Up
    })
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

health_policy!(JsonHealth);

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str =
        r#"{"required": {"checks.db": ["up"]}, "optional": {"checks.cache": ["up"]}}"#;

    #[test]
    fn judges_the_documented_example() {
        let mut p = JsonHealth::from_json(CONFIG).unwrap();
        let ok = r#"{"status":"ok","checks":{"db":"up","cache":"up"}}"#;
        let no_cache = r#"{"status":"ok","checks":{"db":"up","cache":"down"}}"#;
        let no_db = r#"{"status":"ok","checks":{"db":"down","cache":"up"}}"#;
        assert_eq!(p.evaluate(&Probe::answered(200, ok)), Verdict::Up);
        assert_eq!(
            p.evaluate(&Probe::answered(200, no_cache)),
            Verdict::Degraded(50)
        );
        assert_eq!(
            p.evaluate(&Probe::answered(200, no_db)),
            Verdict::Down("checks.db=down".into())
        );
        assert_eq!(
            p.evaluate(&Probe::answered(503, ok)),
            Verdict::Down("status 503".into())
        );
        assert_eq!(
            p.evaluate(&Probe::failed(ErrorKind::Refused)),
            Verdict::Down("connection refused".into())
        );
    }

    #[test]
    fn a_bad_config_names_the_field() {
        let err = JsonHealth::from_json(r#"{"degraded-percent": 150}"#)
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "config.degraded-percent: must be 0..=100");
        let err = JsonHealth::from_json(r#"{"required": {"checks.db": "up"}}"#)
            .err()
            .unwrap();
        assert_eq!(err.path(), r#"required."checks.db""#);
    }
}
