//! `[admin]`: the control listener's address, its bearer token (mandatory off
//! loopback, long enough, from the file or `SWITCHYARD_ADMIN_TOKEN`), the host
//! names it answers to and the networks runtime backends may come from.

use std::net::SocketAddr;

use super::names::socket_address;
use crate::config::environment::{ADMIN_TOKEN_VARIABLE, Environment, Variable};
use crate::config::error::Reporter;
use crate::config::file::{AdminSection, DEFAULT_ADMIN_LISTEN};
use crate::config::resolve::Reads;
use crate::config::{AdminConfig, DEFAULT_ADMIN_CONNECTIONS, ListenerConfig, MIN_TOKEN_BYTES};

pub(super) fn admin(
    section: &AdminSection,
    listeners: &[ListenerConfig],
    env: &Environment,
    reads: &mut Reads,
    r: &mut Reporter<'_>,
) -> AdminConfig {
    let parsed = socket_address(&section.listen, "admin.listen", r);
    if let Some(listen) = parsed
        && listen.port() != 0
        && listeners.iter().any(|l| l.listen == listen)
    {
        r.at(
            section.listen.span(),
            "admin.listen",
            "the admin listener must not share an address with a traffic listener",
        );
    }
    // A mistyped address is reported; the rest is checked as if it were the default.
    let listen = parsed.unwrap_or_else(|| {
        DEFAULT_ADMIN_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9901)))
    });
    let token = token(section, env, r);
    if !listen.ip().is_loopback() && token.is_none() {
        r.at(
            section.listen.span(),
            "admin.listen",
            format!(
                "the admin API on non-loopback address {listen} needs a bearer token: set admin.token or {ADMIN_TOKEN_VARIABLE}"
            ),
        );
    }
    let allowed_hosts = section
        .allowed_hosts
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, h)| {
            let host = h.get_ref().trim().trim_end_matches('.').to_ascii_lowercase();
            let valid = !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
            if !valid {
                r.at(
                    h.span(),
                    format!("admin.allowed_hosts[{i}]"),
                    format!(
                        "`{}` is not a host name (no port, scheme or wildcard: e.g. \"admin.example.com\")",
                        h.get_ref()
                    ),
                );
            }
            host
        })
        .collect();
    let backend_networks = section
        .backend_networks
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, n)| match n.get_ref().trim().parse::<ipnet::IpNet>() {
            Ok(net) => Some(net.trunc()),
            Err(_) => {
                r.at(
                    n.span(),
                    format!("admin.backend_networks[{i}]"),
                    format!(
                        "`{}` is not a network in CIDR form such as \"10.0.0.0/8\" or \"fd00::/8\"",
                        n.get_ref()
                    ),
                );
                None
            }
        })
        .collect();
    let max_connections = section
        .max_connections
        .as_ref()
        .map_or(DEFAULT_ADMIN_CONNECTIONS, |m| {
            if *m.get_ref() == 0 {
                r.at(m.span(), "admin.max_connections", "must be at least 1");
            }
            (*m.get_ref()).max(1)
        });
    AdminConfig {
        listen,
        token,
        state_file: section.state_file.as_ref().map(|f| reads.path(f)),
        allowed_hosts,
        backend_networks,
        max_connections,
    }
}

/// The bearer token: `admin.token`, else `SWITCHYARD_ADMIN_TOKEN`; at least
/// [`MIN_TOKEN_BYTES`] long either way.
fn token(section: &AdminSection, env: &Environment, r: &mut Reporter<'_>) -> Option<String> {
    let short = |len: usize| {
        format!(
            "the bearer token is {len} bytes; use at least {MIN_TOKEN_BYTES} (e.g. `openssl rand -hex 24`)"
        )
    };
    if let Some(t) = section.token.as_ref().filter(|t| !t.get_ref().is_empty()) {
        if t.get_ref().len() < MIN_TOKEN_BYTES {
            r.at(t.span(), "admin.token", short(t.get_ref().len()));
        }
        return Some(t.get_ref().clone());
    }
    match &env.admin_token {
        Variable::Unset => None,
        Variable::Set(value) => {
            if value.len() < MIN_TOKEN_BYTES {
                r.unplaced(
                    "admin.token",
                    format!("from {ADMIN_TOKEN_VARIABLE}: {}", short(value.len())),
                );
            }
            Some(value.clone())
        }
        Variable::NotUnicode => {
            r.unplaced(
                "admin.token",
                format!("{ADMIN_TOKEN_VARIABLE} is set but is not valid UTF-8"),
            );
            // Refusing the file is enough; the off-loopback check need not repeat it.
            Some(String::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{BASE, check, check_with, problems, problems_with};
    use crate::config::environment::{Environment, Variable};

    const TOKEN: &str = "0123456789abcdef0123";

    fn with_token(token: Variable) -> Environment {
        Environment {
            admin_token: token,
            ..Environment::bare("test-host")
        }
    }

    #[test]
    fn defaults_and_resolved_paths() {
        let config = check(BASE).unwrap();
        assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9901");
        assert_eq!(config.admin.token, None);
        let config = check(&format!(
            "{BASE}[admin]\nlisten = \"0.0.0.0:9000\"\ntoken = \"{TOKEN}\"\nstate_file = \"state.json\"\n\
             allowed_hosts = [\"Admin.Example.com.\"]\nbackend_networks = [\"10.1.2.3/8\"]\n"
        ))
        .unwrap();
        assert_eq!(config.admin.token.as_deref(), Some(TOKEN));
        assert_eq!(
            config.admin.state_file.as_deref(),
            Some(Path::new("/etc/switchyard/state.json"))
        );
        assert_eq!(config.admin.allowed_hosts, ["admin.example.com"]);
        assert_eq!(config.admin.backend_networks[0].to_string(), "10.0.0.0/8");
    }

    #[test]
    fn the_token_may_come_from_the_environment() {
        let env = with_token(Variable::Set(TOKEN.into()));
        let config =
            check_with(&format!("{BASE}[admin]\nlisten = \"0.0.0.0:9000\"\n"), &env).unwrap();
        assert_eq!(config.admin.token.as_deref(), Some(TOKEN));
        // The file's token wins.
        let other = "fedcba9876543210fedcba";
        let config = check_with(&format!("{BASE}[admin]\ntoken = \"{other}\"\n"), &env).unwrap();
        assert_eq!(config.admin.token.as_deref(), Some(other));
    }

    #[test]
    fn refuses_open_short_or_unreadable_tokens() {
        assert_eq!(
            problems_with("[admin]\nlisten = \"0.0.0.0:9000\"\n"),
            [
                "t.toml:11:10: admin.listen: the admin API on non-loopback address 0.0.0.0:9000 needs a bearer token: set admin.token or SWITCHYARD_ADMIN_TOKEN"
            ]
        );
        assert_eq!(
            problems_with("[admin]\ntoken = \"short\"\n"),
            [
                "t.toml:11:9: admin.token: the bearer token is 5 bytes; use at least 16 (e.g. `openssl rand -hex 24`)"
            ]
        );
        let short = with_token(Variable::Set("short".into()));
        assert_eq!(
            check_with(BASE, &short).unwrap_err(),
            [
                "t.toml: admin.token: from SWITCHYARD_ADMIN_TOKEN: the bearer token is 5 bytes; use at least 16 (e.g. `openssl rand -hex 24`)"
            ]
        );
        let garbled = with_token(Variable::NotUnicode);
        assert_eq!(
            check_with(
                &format!("{BASE}[admin]\nlisten = \"0.0.0.0:9000\"\n"),
                &garbled
            )
            .unwrap_err(),
            ["t.toml: admin.token: SWITCHYARD_ADMIN_TOKEN is set but is not valid UTF-8"]
        );
    }

    #[test]
    fn a_mistyped_address_is_reported_alone() {
        assert_eq!(
            problems(
                "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:9901\"\n[admin]\nlisten = \"localhost:9901\"\n"
            ),
            [
                "t.toml:5:10: admin.listen: `localhost:9901` is not an ip:port address such as \"127.0.0.1:8080\" or \"[::]:443\""
            ]
        );
    }

    #[test]
    fn refuses_bad_hosts_networks_and_addresses() {
        assert_eq!(
            problems(
                "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:9901\"\n\
                 [admin]\nallowed_hosts = [\"*.example.com\"]\nbackend_networks = [\"10.0.0.0\"]\nmax_connections = 0\n"
            ),
            [
                "t.toml:4:1: admin.listen: the admin listener must not share an address with a traffic listener",
                "t.toml:5:18: admin.allowed_hosts[0]: `*.example.com` is not a host name (no port, scheme or wildcard: e.g. \"admin.example.com\")",
                "t.toml:6:21: admin.backend_networks[0]: `10.0.0.0` is not a network in CIDR form such as \"10.0.0.0/8\" or \"fd00::/8\"",
                "t.toml:7:19: admin.max_connections: must be at least 1",
            ]
        );
    }
}
