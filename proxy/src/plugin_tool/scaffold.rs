//! `switchyard plugin new NAME --kind KIND`: a plugin crate that builds, passes its
//! own tests and loads, wherever it is created. It carries the SDK and the WIT
//! files (embedded in this binary by `build.rs`) and the lock file the shipped
//! plugins are tested with, so building it fetches nothing but crates from the
//! registry, at versions known to work.

use std::path::{Path, PathBuf};

use crate::plugin::PluginKind;

/// Why a new plugin crate could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name cannot be a crate name.
    #[error(
        "`{0}` cannot name a plugin crate: use lower-case letters, digits and `-`, starting with a letter"
    )]
    Name(String),
    /// The directory exists already.
    #[error("{0} already exists; choose another name or directory")]
    Exists(PathBuf),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The embedded SDK does not have the form this function rewrites.
    #[error("the embedded SDK is not as expected: {0}")]
    Sdk(&'static str),
}

/// The SDK crate, the WIT package and the plugins' lock file, as `(path, text)`.
const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/scaffold_files.rs"));

/// The SDK reads the WIT files from the repository's `wit/`; in a new crate they
/// sit inside the SDK's directory.
const REPO_WIT_PATH: &str = "path: \"../../wit\"";
const CRATE_WIT_PATH: &str = "path: \"wit\"";

const CARGO_TOML: &str = include_str!("templates/Cargo.toml.in");
const README: &str = include_str!("templates/README.md.in");
const GITIGNORE: &str = include_str!("templates/gitignore.in");
const ROUTING: &str = include_str!("templates/routing.rs.in");
const HEALTH: &str = include_str!("templates/health.rs.in");
const RECOVERY: &str = include_str!("templates/recovery.rs.in");
/// The same settings as the shipped plugins: `cargo build` makes the component,
/// `cargo test` runs natively.
const CARGO_CONFIG: &str = include_str!("../../../plugins/.cargo/config.toml");
/// The toolchain file of this repository (stable, with the wasm32-wasip2 target).
const TOOLCHAIN: &str = include_str!("../../../rust-toolchain.toml");

/// Writes the crate `NAME/` in `parent`: a policy of `kind` with unit tests, the
/// SDK under `switchyard-policy/`, build settings and a README with the commands.
/// Returns the crate's directory.
pub fn new_plugin(parent: &Path, name: &str, kind: PluginKind) -> Result<PathBuf, ScaffoldError> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir));
    }
    let crate_name = name.replace('-', "_");
    let type_name: String = name
        .split('-')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect();
    let (source, config, config_toml, usage) = match kind {
        PluginKind::Routing => (
            ROUTING,
            r#"{"header": "x-route", "routes": {"beta": [1]}}"#,
            r#"{ header = "x-route", routes = { beta = [1] } }"#,
            format!(
                "\n[pool.app]\nbalance = \"plugin:{name}\"         # or, to try it first: shadow = \"plugin:{name}\"\nfallback_balance = \"least-request\""
            ),
        ),
        PluginKind::Health => (
            HEALTH,
            r#"{"slow-ms": 200, "path": "/health"}"#,
            r#"{ slow-ms = 200, path = "/health" }"#,
            format!("\n[pool.app.health]\nevaluate = \"plugin:{name}\""),
        ),
        PluginKind::Recovery => (
            RECOVERY,
            r#"{"failures": 5, "open-ms": 10000}"#,
            r#"{ failures = 5, open-ms = 10000 }"#,
            format!("\n[pool.app.breaker]\npolicy = \"plugin:{name}\""),
        ),
    };
    let fill = |template: &str| {
        template
            .replace("__NAME__", name)
            .replace("__CRATE__", &crate_name)
            .replace("__STRUCT__", &type_name)
            .replace("__WORLD__", kind.world())
            .replace("__CONFIG_TOML__", config_toml)
            .replace("__CONFIG__", config)
            .replace("__USE__", usage.trim_start())
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        (dir.join("Cargo.toml"), fill(CARGO_TOML)),
        (dir.join("README.md"), fill(README)),
        (dir.join(".gitignore"), GITIGNORE.to_string()),
        (dir.join("src").join("lib.rs"), fill(source)),
        (
            dir.join(".cargo").join("config.toml"),
            CARGO_CONFIG.to_string(),
        ),
        (dir.join("rust-toolchain.toml"), TOOLCHAIN.to_string()),
    ];
    let sdk = dir.join("switchyard-policy");
    let mut rewrote_wit_path = false;
    for (path, text) in EMBEDDED {
        if *path == "Cargo.lock" {
            files.push((dir.join("Cargo.lock"), text.to_string()));
            continue;
        }
        let mut text = text.to_string();
        if *path == "src/bindings.rs" {
            rewrote_wit_path = text.contains(REPO_WIT_PATH);
            text = text.replace(REPO_WIT_PATH, CRATE_WIT_PATH);
        }
        files.push((sdk.join(path), text));
    }
    if !rewrote_wit_path {
        return Err(ScaffoldError::Sdk(
            "src/bindings.rs does not read ../../wit",
        ));
    }
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| ScaffoldError::Write {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, text).map_err(|source| ScaffoldError::Write { path, source })?;
    }
    Ok(dir)
}

fn check_name(name: &str) -> Result<(), ScaffoldError> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(ScaffoldError::Name(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_sdk_is_complete() {
        let paths: Vec<&str> = EMBEDDED.iter().map(|(p, _)| *p).collect();
        for expected in [
            "Cargo.toml",
            "Cargo.lock",
            "src/lib.rs",
            "src/bindings.rs",
            "src/testing.rs",
            "wit/types.wit",
            "wit/host.wit",
            "wit/routing.wit",
            "wit/health.wit",
            "wit/recovery.wit",
        ] {
            assert!(
                paths.contains(&expected),
                "{expected} missing from {paths:?}"
            );
        }
        let bindings = EMBEDDED
            .iter()
            .find(|(p, _)| *p == "src/bindings.rs")
            .unwrap()
            .1;
        assert!(bindings.contains(REPO_WIT_PATH));
    }

    #[test]
    fn names_must_be_crate_names() {
        for bad in ["", "My", "1st", "a_b", "a--b", "a-", "../x", "a b"] {
            assert!(
                matches!(check_name(bad), Err(ScaffoldError::Name(_))),
                "{bad}"
            );
        }
        assert!(check_name("tenant-pin2").is_ok());
    }

    #[test]
    fn writes_a_crate_with_the_sdk_reading_its_own_wit() {
        let parent = std::env::temp_dir().join(format!("sy-scaffold-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        std::fs::create_dir_all(&parent).unwrap();
        let dir = new_plugin(&parent, "my-router", PluginKind::Routing).unwrap();
        let lib = std::fs::read_to_string(dir.join("src/lib.rs")).unwrap();
        assert!(lib.contains("routing_policy!(MyRouter);"), "{lib}");
        let bindings =
            std::fs::read_to_string(dir.join("switchyard-policy/src/bindings.rs")).unwrap();
        assert!(bindings.contains(CRATE_WIT_PATH) && !bindings.contains(REPO_WIT_PATH));
        assert!(dir.join("switchyard-policy/wit/routing.wit").is_file());
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
        assert!(
            readme.contains("target/wasm32-wasip2/release/my_router.wasm"),
            "{readme}"
        );
        assert!(matches!(
            new_plugin(&parent, "my-router", PluginKind::Routing),
            Err(ScaffoldError::Exists(_))
        ));
        let _ = std::fs::remove_dir_all(&parent);
    }
}
