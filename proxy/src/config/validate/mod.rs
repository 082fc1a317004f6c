//! Whole-file validation: turns a [`FileConfig`] into a [`Config`], recording every
//! problem with its place. Pure: it reads no file and no environment variable (the
//! [`Environment`] snapshot comes in, the files to check go out as [`Reads`]), so
//! each section's messages are unit-tested on text alone.
//!
//! One module per section of the file; references between sections (a route's
//! pool, a pool's plugin) are checked where they are written.

mod acme;
mod admin;
mod alerts;
mod backends;
mod breaker;
mod cluster;
mod dns;
mod health;
mod limits;
mod listeners;
mod names;
mod plugins;
mod pools;
mod retry;
mod routes;
mod sticky;
mod upstream_tls;

use std::collections::BTreeMap;
use std::path::Path;

use super::Config;
use super::document::Document;
use super::environment::Environment;
use super::error::Reporter;
use super::file::FileConfig;
use super::resolve::Reads;

/// Validates `file` (read from `document`, at `path`) against `env`. Files named by
/// the config are noted in `reads` for the load step.
pub(super) fn validate(
    path: &Path,
    file: &FileConfig,
    document: &Document<'_>,
    env: &Environment,
    reads: &mut Reads,
    r: &mut Reporter<'_>,
) -> Config {
    let limits = limits::limits(&file.limits, r);
    let mut listeners = listeners::listeners(&file.listeners, reads, r);
    let acme = file
        .acme
        .as_ref()
        .map(|a| acme::acme(a, &mut listeners, reads, r));
    listeners::require_certificates(&file.listeners, &listeners, r);
    let dns = dns::dns(&file.dns, r);
    let plugins = plugins::plugins(&file.plugins, document, reads, r);
    let pools = pools::pools(&file.pools, &plugins, reads, r);
    let routes = routes::routes(&file.routes, &listeners, &pools, r);
    let admin = admin::admin(&file.admin, &listeners, env, reads, r);
    let cluster = file
        .cluster
        .as_ref()
        .map(|c| cluster::cluster(c, env, reads, r));
    let alerts = alerts::alerts(&file.alerts, r);
    Config {
        source: path.to_path_buf(),
        admin,
        limits,
        listeners,
        routes,
        pools,
        plugins,
        cluster,
        digest: String::new(),
        alerts,
        acme,
        dns,
        locations: BTreeMap::new(),
    }
}

/// Runs text through reading and validation only (no file is checked), as the
/// section tests need.
#[cfg(test)]
pub(super) mod testing {
    use std::path::Path;

    use super::*;

    /// A listener, a route and a pool: the least a config needs.
    pub const BASE: &str = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
        [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
        [pool.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n";

    /// The validated config, or every problem as printed.
    pub fn check_with(text: &str, env: &Environment) -> Result<Config, Vec<String>> {
        let path = Path::new("/etc/switchyard/t.toml");
        let mut r = Reporter::new(Path::new("t.toml"), text);
        let Some(document) = Document::parse(text, &mut r) else {
            return Err(rendered(r));
        };
        r.learn_places(document.spans());
        let Some(file) = document.read(&mut r) else {
            return Err(rendered(r));
        };
        let mut reads = Reads::new(path);
        let config = validate(path, &file, &document, env, &mut reads, &mut r);
        r.finish(config)
            .map_err(|e| e.problems().iter().map(ToString::to_string).collect())
    }

    fn rendered(r: Reporter<'_>) -> Vec<String> {
        match r.finish(()) {
            Ok(()) => Vec::new(),
            Err(e) => e.problems().iter().map(ToString::to_string).collect(),
        }
    }

    /// `check_with` in an environment with no variables set.
    pub fn check(text: &str) -> Result<Config, Vec<String>> {
        check_with(text, &Environment::bare("test-host"))
    }

    /// The problems of `text`, which must have some.
    pub fn problems(text: &str) -> Vec<String> {
        match check(text) {
            Ok(_) => panic!("no problem found in:\n{text}"),
            Err(problems) => problems,
        }
    }

    /// The problems of [`BASE`] followed by `extra`.
    pub fn problems_with(extra: &str) -> Vec<String> {
        problems(&format!("{BASE}{extra}"))
    }

    /// The config of [`BASE`] followed by `extra`, which must be valid.
    pub fn valid_with(extra: &str) -> Config {
        let text = format!("{BASE}{extra}");
        check(&text).unwrap_or_else(|problems| panic!("{}", problems.join("\n")))
    }
}
