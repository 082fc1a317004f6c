//! What the process environment contributes to a config: the secrets that may come
//! from variables instead of the file, and the host name an instance is named after
//! by default. Read once by the load step, so validation is a pure function of the
//! file and this snapshot (and unit tests need no process-wide variables).

/// `SWITCHYARD_ADMIN_TOKEN`: the admin bearer token when `admin.token` is not set.
pub const ADMIN_TOKEN_VARIABLE: &str = "SWITCHYARD_ADMIN_TOKEN";
/// `SWITCHYARD_ETCD_PASSWORD`: the etcd password when `cluster.password` is not set.
pub const ETCD_PASSWORD_VARIABLE: &str = "SWITCHYARD_ETCD_PASSWORD";

/// One environment variable as read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Variable {
    /// Not set, or set to the empty string.
    #[default]
    Unset,
    /// Set to this text.
    Set(String),
    /// Set, but not valid UTF-8: a read failure reported at the field it stands for.
    NotUnicode,
}

impl Variable {
    /// Reads `name` from the process environment.
    pub fn read(name: &str) -> Variable {
        match std::env::var(name) {
            Ok(value) if value.is_empty() => Variable::Unset,
            Ok(value) => Variable::Set(value),
            Err(std::env::VarError::NotPresent) => Variable::Unset,
            Err(std::env::VarError::NotUnicode(_)) => Variable::NotUnicode,
        }
    }
}

/// The environment a config is validated against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// `SWITCHYARD_ADMIN_TOKEN`.
    pub admin_token: Variable,
    /// `SWITCHYARD_ETCD_PASSWORD`.
    pub etcd_password: Variable,
    /// The default `cluster.instance`.
    pub host_name: String,
}

impl Environment {
    /// The running process's environment.
    pub fn from_process() -> Environment {
        Environment {
            admin_token: Variable::read(ADMIN_TOKEN_VARIABLE),
            etcd_password: Variable::read(ETCD_PASSWORD_VARIABLE),
            host_name: host_name(),
        }
    }

    /// No variables set, on a host named `host`: what unit tests validate against.
    pub fn bare(host: &str) -> Environment {
        Environment {
            admin_token: Variable::Unset,
            etcd_password: Variable::Unset,
            host_name: host.to_string(),
        }
    }
}

/// The host name, the default instance name (`switchyard` when it cannot be read).
pub fn host_name() -> String {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    from_proc
        .filter(|s| valid_instance(s))
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| valid_instance(s)))
        .unwrap_or_else(|| "switchyard".to_string())
}

/// Instance names end up in etcd keys and in URLs of the fleet view.
pub(super) fn valid_instance(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
