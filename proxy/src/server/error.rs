//! Why the server could not start or apply a config.

use std::net::SocketAddr;

use super::tls::TlsError;
use crate::config::{Config, Located};
use crate::discovery::ResolverError;
use crate::policy::PluginLoadError;

/// Why the server could not start or apply a config. Each names the file, line and
/// field at fault; the running config is untouched.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{at}: listener `{name}` cannot listen on {address}: {source}")]
    Bind {
        at: Box<Located>,
        name: String,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: listener `{name}`: {source}")]
    Tls {
        at: Box<Located>,
        name: String,
        #[source]
        source: TlsError,
    },
    #[error("{at}: the admin listener cannot listen on {address}: {source}")]
    AdminBind {
        at: Box<Located>,
        address: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: {source}")]
    Plugin {
        at: Box<Located>,
        #[source]
        source: PluginLoadError,
    },
    #[error("{at}: {source}")]
    Cluster {
        at: Box<Located>,
        #[source]
        source: crate::cluster::EtcdError,
    },
    /// A plugin's `init` refused a value of its `config` table; the error already
    /// names that value's place in the file.
    #[error("{source}")]
    PluginConfig {
        #[source]
        source: PluginLoadError,
    },
    /// The threads that serve connections could not be started.
    #[error("cannot start the connection threads: {0}")]
    Shards(#[source] std::io::Error),
    #[error("{at}: {source}")]
    Dns {
        at: Box<Located>,
        #[source]
        source: ResolverError,
    },
}

impl StartError {
    pub(super) fn plugin(config: &Config, source: PluginLoadError) -> Self {
        if matches!(source, PluginLoadError::Config { .. }) {
            return StartError::PluginConfig { source };
        }
        let field = source.plugin().map_or_else(
            || "plugin".to_string(),
            |name| format!("plugin.{name}.path"),
        );
        StartError::Plugin {
            at: Box::new(config.locate(&field)),
            source,
        }
    }

    pub(super) fn dns(config: &Config, source: ResolverError) -> Self {
        let field = if config.dns.servers.is_empty() {
            "dns"
        } else {
            "dns.servers"
        };
        StartError::Dns {
            at: Box::new(config.locate(field)),
            source,
        }
    }
}

/// Why a route could not be switched or split. The admin API answers 404 for a name
/// that does not exist (route or pool), whatever the command, and 400 for a target
/// that does not add up.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RouteChangeError {
    #[error("no route named `{0}`")]
    NoRoute(String),
    #[error("no pool named `{0}`")]
    NoPool(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot apply the change: {0}")]
    Apply(String),
}
