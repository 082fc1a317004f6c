//! `[plugin.NAME]`: the job, the component, the limits and the failure mode of each
//! WebAssembly policy; and `plugin:NAME` references to them from pools.

use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::DeValue;

use crate::config::document::Document;
use crate::config::error::Reporter;
use crate::config::file::PluginSection;
use crate::config::plugin_limits::{
    DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, MAX_MEMORY_BYTES, MAX_REQUEST_PATH_TIMEOUT,
    MIN_MEMORY_BYTES, TIMEOUT_RANGE,
};
use crate::config::resolve::Reads;
use crate::config::suggest::{closest, did_you_mean, unknown_choice};
use crate::config::{ConfigLocations, OnError, PluginConfig, PluginKind, PluginSettings};

const KINDS: [&str; 3] = ["routing", "health-check", "recovery"];
const ON_ERROR: [&str; 2] = ["fallback", "fail-closed"];

pub(super) fn plugins(
    sections: &BTreeMap<String, Spanned<PluginSection>>,
    document: &Document<'_>,
    reads: &mut Reads,
    r: &mut Reporter<'_>,
) -> BTreeMap<String, PluginConfig> {
    let mut out = BTreeMap::new();
    for (name, spanned) in sections {
        let s = spanned.get_ref();
        let field = format!("plugin.{name}");
        let kind = PluginKind::parse(s.kind.get_ref()).unwrap_or_else(|| {
            r.at(
                s.kind.span(),
                format!("{field}.kind"),
                unknown_choice(
                    "kind",
                    s.kind.get_ref(),
                    &KINDS,
                    KINDS.into_iter().chain(["health"]),
                ),
            );
            PluginKind::Routing
        });
        let path = reads.file(&s.path, format!("{field}.path"));
        let config_json = match &s.config {
            None => "{}".to_string(),
            Some(table) => serde_json::to_string(table).unwrap_or_else(|e| {
                r.at(spanned.span(), format!("{field}.config"), e.to_string());
                "{}".to_string()
            }),
        };
        let timeout = s.timeout.as_ref().map_or(DEFAULT_TIMEOUT, |t| {
            let (min, max) = TIMEOUT_RANGE;
            let value = t.get_ref().0;
            if kind.on_request_path() && !(min..=MAX_REQUEST_PATH_TIMEOUT).contains(&value) {
                r.at(
                    t.span(),
                    format!("{field}.timeout"),
                    format!(
                        "must be between {min:?} and {MAX_REQUEST_PATH_TIMEOUT:?}: a {} plugin runs inline on the request path, where a call holds a worker thread",
                        kind.world()
                    ),
                );
            } else if !(min..=max).contains(&value) {
                r.at(
                    t.span(),
                    format!("{field}.timeout"),
                    format!("must be between {min:?} and {max:?}"),
                );
            }
            value
        });
        let memory_bytes = s.memory.as_ref().map_or(DEFAULT_MEMORY_BYTES, |m| {
            let value = m.get_ref().0;
            if !(MIN_MEMORY_BYTES..=MAX_MEMORY_BYTES).contains(&value) {
                r.at(
                    m.span(),
                    format!("{field}.memory"),
                    format!(
                        "must be between {}MiB and {}MiB",
                        MIN_MEMORY_BYTES >> 20,
                        MAX_MEMORY_BYTES >> 20
                    ),
                );
            }
            value
        });
        let on_error = match s.on_error.as_ref().map(|o| (o, o.get_ref().as_str())) {
            None | Some((_, "fallback")) => OnError::Fallback,
            Some((_, "fail-closed")) => OnError::FailClosed,
            Some((o, other)) => {
                r.at(
                    o.span(),
                    format!("{field}.on_error"),
                    unknown_choice("on_error", other, &ON_ERROR, ON_ERROR),
                );
                OnError::Fallback
            }
        };
        let spec = PluginSettings {
            name: name.clone(),
            kind,
            path,
            config_json,
            timeout,
            memory_bytes,
        };
        let locations = config_locations(document, name, r);
        out.insert(
            name.clone(),
            PluginConfig {
                spec,
                on_error,
                locations,
            },
        );
    }
    out
}

/// Where the keys of `[plugin.NAME] config` are written (see [`ConfigLocations`]).
fn config_locations(document: &Document<'_>, name: &str, r: &Reporter<'_>) -> ConfigLocations {
    let mut keys = BTreeMap::new();
    let table_at = document
        .get(&["plugin", name, "config"])
        .map(|(key_span, value)| {
            walk_locations(value, String::new(), r, &mut keys);
            r.position(key_span)
        });
    ConfigLocations::new(r.file().to_string(), table_at, keys)
}

/// Records the position of every key and element under `value`, by path.
fn walk_locations(
    value: &Spanned<DeValue<'_>>,
    path: String,
    r: &Reporter<'_>,
    out: &mut BTreeMap<String, (usize, usize)>,
) {
    match value.get_ref() {
        DeValue::Table(table) => {
            for (key, child) in table.iter() {
                let name = key.get_ref().as_ref();
                let plain = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                let segment = if plain {
                    name.to_string()
                } else {
                    format!("{name:?}")
                };
                let child_path = if path.is_empty() {
                    segment
                } else {
                    format!("{path}.{segment}")
                };
                out.insert(child_path.clone(), r.position(key.span()));
                walk_locations(child, child_path, r, out);
            }
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let child_path = format!("{path}[{i}]");
                out.insert(child_path.clone(), r.position(item.span()));
                walk_locations(item, child_path, r, out);
            }
        }
        _ => {}
    }
}

/// Checks a `plugin:NAME` reference: the prefix, that the plugin exists, and that it
/// does the job the field needs.
pub(super) fn plugin_ref(
    value: &Spanned<String>,
    field: &str,
    wanted: PluginKind,
    plugins: &BTreeMap<String, PluginConfig>,
    r: &mut Reporter<'_>,
) -> Option<String> {
    let of_kind = || {
        plugins
            .values()
            .filter(move |p| p.spec.kind == wanted)
            .map(|p| p.spec.name.as_str())
    };
    let Some(name) = value.get_ref().strip_prefix("plugin:") else {
        // `canary` or `plugins:canary` for `plugin:canary`.
        let bare = value.get_ref().rsplit(':').next().unwrap_or_default();
        let hint = closest(bare, of_kind())
            .map_or_else(String::new, |n| format!(", did you mean `plugin:{n}`?"));
        r.at(
            value.span(),
            field,
            format!(
                "expected \"plugin:NAME\", found `{}`{hint}",
                value.get_ref()
            ),
        );
        return None;
    };
    match plugins.get(name) {
        None => {
            let known: Vec<&str> = plugins.keys().map(String::as_str).collect();
            r.at(
                value.span(),
                field,
                if known.is_empty() {
                    format!("no plugin named `{name}`: declare it in a [plugin.{name}] table")
                } else {
                    format!(
                        "no plugin named `{name}`{} (declared: {})",
                        did_you_mean(name, of_kind()),
                        known.join(", ")
                    )
                },
            );
            None
        }
        Some(p) if p.spec.kind != wanted => {
            r.at(
                value.span(),
                field,
                format!(
                    "plugin `{name}` is a {} plugin; this field needs a {} plugin",
                    p.spec.kind.world(),
                    wanted.world()
                ),
            );
            None
        }
        Some(_) => Some(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::testing::{problems_with, valid_with};
    use crate::config::{OnError, PluginKind};

    #[test]
    fn settings_are_resolved_and_the_config_table_becomes_json() {
        let config = valid_with(
            "[plugin.canary]\nkind = \"routing\"\npath = \"plugins/canary.wasm\"\ntimeout = \"5ms\"\n\
             memory = \"8MiB\"\non_error = \"fail-closed\"\nconfig = { header = \"x-canary\", canary = [1] }\n",
        );
        let plugin = &config.plugins["canary"];
        assert_eq!(plugin.spec.kind, PluginKind::Routing);
        assert_eq!(
            plugin.spec.path,
            Path::new("/etc/switchyard/plugins/canary.wasm")
        );
        assert_eq!(plugin.spec.timeout, Duration::from_millis(5));
        assert_eq!(plugin.spec.memory_bytes, 8 << 20);
        assert_eq!(
            plugin.spec.config_json,
            r#"{"canary":[1],"header":"x-canary"}"#
        );
        assert_eq!(plugin.on_error, OnError::FailClosed);
        assert_eq!(
            plugin
                .locations
                .locate("canary", "config.canary[0]: too big")
                .as_deref(),
            Some("t.toml:16:43: plugin.canary.config.canary[0]: too big")
        );
    }

    #[test]
    fn refuses_bad_kinds_limits_and_failure_modes() {
        assert_eq!(
            problems_with(
                "[plugin.a]\nkind = \"routeing\"\npath = \"a.wasm\"\ntimeout = \"60ms\"\nmemory = \"128MiB\"\non_error = \"fail-open\"\n\
                 [plugin.b]\nkind = \"health\"\npath = \"b.wasm\"\ntimeout = \"11s\"\n"
            ),
            [
                "t.toml:11:8: plugin.a.kind: unknown kind `routeing`, did you mean `routing`? Expected one of: routing, health-check, recovery",
                "t.toml:13:11: plugin.a.timeout: must be between 100µs and 50ms: a routing plugin runs inline on the request path, where a call holds a worker thread",
                "t.toml:14:10: plugin.a.memory: must be between 1MiB and 64MiB",
                "t.toml:15:12: plugin.a.on_error: unknown on_error `fail-open`, did you mean `fail-closed`? Expected one of: fallback, fail-closed",
                "t.toml:19:11: plugin.b.timeout: must be between 100µs and 10s",
            ]
        );
    }

    #[test]
    fn references_name_a_plugin_of_the_right_kind() {
        let plugins = "[plugin.canary]\nkind = \"routing\"\npath = \"c.wasm\"\n\
            [plugin.probe]\nkind = \"health-check\"\npath = \"p.wasm\"\n";
        assert_eq!(
            problems_with(&format!(
                "{plugins}[pool.other]\nbalance = \"plugin:canry\"\nshadow = \"canary\"\n\
                 backends = [{{ address = \"127.0.0.1:2\" }}]\n\
                 [pool.other.breaker]\npolicy = \"plugin:probe\"\n\
                 [pool.other.health]\nevaluate = \"plugin:nope\"\n"
            )),
            [
                "t.toml:17:11: pool.other.balance: no plugin named `canry`, did you mean `canary`? (declared: canary, probe)",
                "t.toml:18:10: pool.other.shadow: expected \"plugin:NAME\", found `canary`, did you mean `plugin:canary`?",
                "t.toml:21:10: pool.other.breaker.policy: plugin `probe` is a health-check plugin; this field needs a recovery plugin",
                "t.toml:23:12: pool.other.health.evaluate: no plugin named `nope` (declared: canary, probe)",
            ]
        );
        assert_eq!(
            problems_with(
                "[pool.other]\nbalance = \"plugin:x\"\nbackends = [{ address = \"127.0.0.1:2\" }]\n"
            ),
            [
                "t.toml:11:11: pool.other.balance: no plugin named `x`: declare it in a [plugin.x] table"
            ]
        );
    }
}
