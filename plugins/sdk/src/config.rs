//! Typed plugin configuration: the `config` table of `[plugin.NAME]`, which the
//! proxy hands to `init` as JSON, decoded into the plugin's own
//! `#[derive(Deserialize)]` type.
//!
//! Errors name the field they are about, as `config.FIELD: message`
//! (`config.tenants.acme[1]: invalid type: string "x", expected u32`). The proxy
//! recognises that form and reports the error at the field's line and column
//! in the TOML file, so keep it for checks of your own: return
//! [`ConfigError::field`] from `init`.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;

/// Why a plugin refused its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    path: String,
    message: String,
}

impl ConfigError {
    /// An error about the field at `path`: a key (`percent`), or a dotted path
    /// with indexes (`tenants.acme[0]`). Keys that are not plain words are
    /// quoted, as in TOML: `required."checks.db"`.
    pub fn field(path: impl Into<String>, message: impl fmt::Display) -> Self {
        Self {
            path: path.into(),
            message: message.to_string(),
        }
    }

    /// An error about the configuration as a whole.
    pub fn whole(message: impl fmt::Display) -> Self {
        Self::field("", message)
    }

    /// The field's path; empty for the whole table.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "config: {}", self.message)
        } else {
            write!(f, "config.{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<ConfigError> for String {
    fn from(e: ConfigError) -> Self {
        e.to_string()
    }
}

/// Decodes the JSON the proxy passes to `init` into `T`.
///
/// An unknown field (with `#[serde(deny_unknown_fields)]`) is reported at that
/// field, a missing one at the table that lacks it.
pub fn parse<T: DeserializeOwned>(json: &str) -> Result<T, ConfigError> {
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| ConfigError::whole(format!("not valid JSON: {e}")))?;
    serde_path_to_error::deserialize(&value).map_err(|e| {
        let mut path = render(e.path());
        let mut message = e.inner().to_string();
        // `unknown field `x`, expected ...`: the path already ends at `x`
        // (serde_path_to_error records the key before failing on it).
        if let Some(rest) = message.strip_prefix("unknown field `")
            && let Some((name, tail)) = rest.split_once('`')
        {
            let name = key(name);
            if !(path == name || path.ends_with(&format!(".{name}"))) {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&name);
            }
            message = format!("unknown field{tail}");
        }
        ConfigError { path, message }
    })
}

/// `a.b[0]."c.d"` from the segments serde_path_to_error tracked.
fn render(path: &serde_path_to_error::Path) -> String {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key: k } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&key(k));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    out
}

/// A key as written in a path: bare when it is a plain word, quoted otherwise.
fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if bare {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    #[allow(dead_code)]
    struct Config {
        percent: u8,
        #[serde(default)]
        tenants: BTreeMap<String, Vec<u32>>,
    }

    #[test]
    fn errors_name_the_field() {
        let err = parse::<Config>(r#"{"percent": 300}"#).unwrap_err();
        assert_eq!(err.path(), "percent");
        assert!(
            err.to_string().starts_with("config.percent: invalid value"),
            "{err}"
        );

        let err = parse::<Config>(r#"{"percent": 1, "tenants": {"a.b": [1, "x"]}}"#).unwrap_err();
        assert_eq!(err.path(), r#"tenants."a.b"[1]"#);

        let err = parse::<Config>(r#"{"percent": 1, "percnt": 2}"#).unwrap_err();
        assert_eq!(err.path(), "percnt");
        assert!(
            err.message().starts_with("unknown field, expected"),
            "{err}"
        );

        let err = parse::<Config>("{}").unwrap_err();
        assert_eq!(err.to_string(), "config: missing field `percent`");

        assert!(
            parse::<Config>("{")
                .unwrap_err()
                .to_string()
                .starts_with("config: not valid JSON")
        );
    }
}
