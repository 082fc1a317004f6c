//! Loading and validating the config file into a [`Config`] the runtime can trust.
//!
//! Like sozu's `FileConfig` → `Config`, in steps: `document` reads the text into the
//! serde shape of [`mod@file`], collecting every problem rather than the first;
//! `validate` checks it section by section (references, ranges, duplicates) and
//! produces the typed values below, as a pure function of the text and an
//! [`Environment`] snapshot; `resolve` (the load step) then checks the files the
//! config names and builds the TLS clients towards backends. All problems of a file come out of one
//! run, each as `file:line:col: dotted.path: message`. Nothing here opens sockets or
//! spawns tasks.

mod cluster;
mod document;
mod duration;
mod environment;
mod error;
pub mod file;
mod model;
mod plugin_settings;
mod resolve;
mod suggest;
mod validate;

pub use cluster::{
    ClusterConfig, DEFAULT_ETCD_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_PREFIX, EtcdAuth, EtcdTls,
    LeaderLoss, endpoint as etcd_endpoint,
};
pub use duration::{ByteSize, HumanDuration, parse_byte_size, parse_duration};
pub use environment::{
    ADMIN_TOKEN_VARIABLE, ETCD_PASSWORD_VARIABLE, Environment, Variable, host_name,
};
pub use error::{ConfigError, Located, Problem, line_column};
pub use plugin_settings::{
    ConfigLocations, InitRefusal, OnError, PluginConfig, PluginKind, PluginSettings, plugin_limits,
};

pub use model::*;

use std::path::Path;

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Validates config text against the process environment and checks the files
    /// it names; `path` is where it came from (messages, relative paths).
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::parse_in(path, text, &Environment::from_process())
    }

    /// [`Config::parse`] against a given environment.
    pub fn parse_in(path: &Path, text: &str, env: &Environment) -> Result<Config, ConfigError> {
        let mut r = error::Reporter::new(path, text);
        let Some(document) = document::Document::parse(text, &mut r) else {
            return Err(r.into_error());
        };
        r.learn_places(document.spans());
        let Some(file) = document.read(&mut r) else {
            return Err(r.into_error());
        };
        let mut reads = resolve::Reads::new(path);
        let mut config = validate::validate(path, &file, &document, env, &mut reads, &mut r);
        resolve::resolve(&mut config, reads, &mut r);
        config.digest = text_digest(text);
        config.locations = r.positions();
        r.finish(config)
    }

    /// Where `field` (e.g. `listener[0].listen`) is set in the file, for errors that
    /// only show when the config is applied (a port in use, an unreadable certificate);
    /// a field left at its default is placed at the nearest table written.
    pub fn locate(&self, field: &str) -> Located {
        let mut path = field;
        let (line, column) = loop {
            if let Some(position) = self.locations.get(path) {
                break *position;
            }
            match path.rfind(['.', '[']) {
                Some(cut) if cut > 0 => path = &path[..cut],
                _ => break (0, 0),
            }
        };
        Located {
            file: self.source.display().to_string(),
            line,
            column,
            field: field.to_string(),
        }
    }
}
