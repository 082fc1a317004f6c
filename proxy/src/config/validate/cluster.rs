//! `[cluster]`: the etcd endpoints and credentials, this instance's name and the
//! timings of the fleet's coordination.

use std::ops::RangeInclusive;
use std::time::Duration;

use toml::Spanned;

use crate::config::HumanDuration;
use crate::config::cluster::{
    ClusterConfig, ClusterSection, DEFAULT_ETCD_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_PREFIX,
    EtcdAuth, EtcdTls, LEASE_TTL_RANGE, LeaderLoss, TIMEOUT_RANGE, endpoint,
};
use crate::config::environment::{ETCD_PASSWORD_VARIABLE, Environment, Variable, valid_instance};
use crate::config::error::Reporter;
use crate::config::resolve::Reads;
use crate::config::suggest::unknown_choice;

const LEADER_LOSS: [&str; 2] = ["resume", "roll-back"];

pub(super) fn cluster(
    section: &ClusterSection,
    env: &Environment,
    reads: &mut Reads,
    r: &mut Reporter<'_>,
) -> ClusterConfig {
    let mut etcd = Vec::new();
    if section.etcd.get_ref().is_empty() {
        r.at(
            section.etcd.span(),
            "cluster.etcd",
            "list at least one etcd client URL, e.g. [\"http://127.0.0.1:2379\"]",
        );
    }
    let mut https = false;
    for (i, url) in section.etcd.get_ref().iter().enumerate() {
        match endpoint(url.get_ref()) {
            Ok(uri) => {
                https |= uri.scheme_str() == Some("https");
                etcd.push(uri);
            }
            Err(why) => r.at(url.span(), format!("cluster.etcd[{i}]"), why),
        }
    }
    let prefix = section
        .prefix
        .as_ref()
        .map_or_else(|| DEFAULT_PREFIX.to_string(), |p| {
            let value = p.get_ref().trim_end_matches('/').to_string();
            let valid = value.starts_with('/')
                && value.len() > 1
                && !value.contains("//")
                && value.chars().all(|c| c.is_ascii_graphic());
            if !valid {
                r.at(
                    p.span(),
                    "cluster.prefix",
                    format!("`{}` is not a key prefix: it starts with `/` and has no spaces or empty segments, e.g. \"/switchyard/prod\"", p.get_ref()),
                );
            }
            value
        });
    let instance = match &section.instance {
        Some(name) => {
            if !valid_instance(name.get_ref()) {
                r.at(
                    name.span(),
                    "cluster.instance",
                    format!(
                        "`{}` is not an instance name: 1 to 64 letters, digits, `-`, `_` or `.`",
                        name.get_ref()
                    ),
                );
            }
            name.get_ref().clone()
        }
        None => env.host_name.clone(),
    };
    let auth = auth(section, env, r);
    let tls = section.tls.as_ref().map(|t| {
        let ca = reads.file(&t.ca, "cluster.tls.ca");
        let client = match (&t.cert, &t.key) {
            (Some(cert), Some(key)) => Some((
                reads.file(cert, "cluster.tls.cert"),
                reads.file(key, "cluster.tls.key"),
            )),
            (Some(one), None) | (None, Some(one)) => {
                r.at(
                    one.span(),
                    "cluster.tls",
                    "a client certificate needs both `cert` and `key`",
                );
                None
            }
            (None, None) => None,
        };
        EtcdTls { ca, client }
    });
    if https && tls.is_none() {
        r.at(
            section.etcd.span(),
            "cluster.etcd",
            "https:// endpoints need [cluster.tls] with the `ca` that signed etcd's certificates",
        );
    }
    let timeout = bounded(
        section.timeout.as_ref(),
        DEFAULT_ETCD_TIMEOUT,
        TIMEOUT_RANGE,
        "cluster.timeout",
        r,
    );
    let lease_ttl = bounded(
        section.lease_ttl.as_ref(),
        DEFAULT_LEASE_TTL,
        LEASE_TTL_RANGE,
        "cluster.lease_ttl",
        r,
    );
    let on_leader_loss = match &section.on_leader_loss {
        None => LeaderLoss::default(),
        Some(v) => match v.get_ref().as_str() {
            "resume" => LeaderLoss::Resume,
            "roll-back" => LeaderLoss::RollBack,
            other => {
                r.at(
                    v.span(),
                    "cluster.on_leader_loss",
                    unknown_choice("choice", other, &LEADER_LOSS, LEADER_LOSS),
                );
                LeaderLoss::default()
            }
        },
    };
    let cache_dir = section.cache_dir.as_ref().map_or_else(
        || reads.path(".switchyard-cluster").join(&instance),
        |d| reads.path(d),
    );
    ClusterConfig {
        etcd,
        prefix,
        instance,
        auth,
        tls,
        timeout,
        lease_ttl,
        shared_config: section.shared_config.unwrap_or(false),
        on_leader_loss,
        cache_dir,
    }
}

/// etcd credentials: a user needs a password (from the file or
/// `SWITCHYARD_ETCD_PASSWORD`), a password in the file needs a user.
fn auth(section: &ClusterSection, env: &Environment, r: &mut Reporter<'_>) -> Option<EtcdAuth> {
    let from_file = section
        .password
        .as_ref()
        .map(|p| p.get_ref().clone())
        .filter(|p| !p.is_empty());
    let password = match (from_file, &env.etcd_password) {
        (Some(password), _) => Some(password),
        (None, Variable::Set(password)) => Some(password.clone()),
        (None, Variable::Unset) => None,
        (None, Variable::NotUnicode) => {
            r.unplaced(
                "cluster.password",
                format!("{ETCD_PASSWORD_VARIABLE} is set but is not valid UTF-8"),
            );
            return None;
        }
    };
    match (&section.username, password) {
        (Some(user), Some(password)) => Some(EtcdAuth {
            username: user.get_ref().clone(),
            password,
        }),
        (Some(user), None) => {
            r.at(
                user.span(),
                "cluster.username",
                format!("an etcd user needs a password: set cluster.password or {ETCD_PASSWORD_VARIABLE}"),
            );
            None
        }
        (None, Some(_)) => {
            if let Some(p) = &section.password {
                r.at(
                    p.span(),
                    "cluster.password",
                    "a password needs cluster.username",
                );
            }
            None
        }
        (None, None) => None,
    }
}

/// A duration within `range`, `default` when not set.
fn bounded(
    value: Option<&Spanned<HumanDuration>>,
    default: Duration,
    range: RangeInclusive<Duration>,
    field: &str,
    r: &mut Reporter<'_>,
) -> Duration {
    value.map_or(default, |v| {
        let d = v.get_ref().0;
        if !range.contains(&d) {
            r.at(
                v.span(),
                field,
                format!(
                    "must be between {} ms and {} s",
                    range.start().as_millis(),
                    range.end().as_secs()
                ),
            );
        }
        d
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::testing::{BASE, check, check_with, problems_with, valid_with};
    use crate::config::cluster::{
        DEFAULT_ETCD_TIMEOUT, DEFAULT_LEASE_TTL, DEFAULT_PREFIX, LeaderLoss,
    };
    use crate::config::environment::{Environment, Variable};

    #[test]
    fn defaults_and_full_form() {
        let c =
            valid_with("[cluster]\netcd = [\"http://127.0.0.1:2379\"]\ninstance = \"edge-1\"\n")
                .cluster
                .unwrap();
        assert_eq!(c.prefix, DEFAULT_PREFIX);
        assert_eq!(c.instance, "edge-1");
        assert_eq!(c.timeout, DEFAULT_ETCD_TIMEOUT);
        assert_eq!(c.lease_ttl, DEFAULT_LEASE_TTL);
        assert!(!c.shared_config);
        assert_eq!(c.on_leader_loss, LeaderLoss::Resume);
        assert_eq!(
            c.cache_dir,
            Path::new("/etc/switchyard/.switchyard-cluster/edge-1")
        );
        let c = valid_with(
            "[cluster]\netcd = [\"http://a:2379\", \"http://b:2379\"]\nprefix = \"/switchyard/prod/\"\n\
             username = \"sy\"\npassword = \"secret\"\nlease_ttl = \"3s\"\nshared_config = true\n\
             on_leader_loss = \"roll-back\"\n",
        )
        .cluster
        .unwrap();
        assert_eq!(c.etcd.len(), 2);
        assert_eq!(c.prefix, "/switchyard/prod");
        assert_eq!(c.auth.as_ref().map(|a| a.username.as_str()), Some("sy"));
        assert!(!format!("{:?}", c.auth).contains("secret"));
        assert_eq!(c.lease_ttl, Duration::from_secs(3));
        assert_eq!(c.on_leader_loss, LeaderLoss::RollBack);
        assert!(check(BASE).unwrap().cluster.is_none());
        let unnamed = valid_with("[cluster]\netcd = [\"http://a:1\"]\n")
            .cluster
            .unwrap();
        assert_eq!(unnamed.instance, "test-host", "the host name by default");
    }

    #[test]
    fn the_password_may_come_from_the_environment() {
        let env = Environment {
            etcd_password: Variable::Set("from-env".into()),
            ..Environment::bare("test-host")
        };
        let text = format!("{BASE}[cluster]\netcd = [\"http://a:1\"]\nusername = \"u\"\n");
        let c = check_with(&text, &env).unwrap().cluster.unwrap();
        assert_eq!(c.auth.unwrap().password, "from-env");
        let garbled = Environment {
            etcd_password: Variable::NotUnicode,
            ..Environment::bare("test-host")
        };
        assert_eq!(
            check_with(&text, &garbled).unwrap_err(),
            ["t.toml: cluster.password: SWITCHYARD_ETCD_PASSWORD is set but is not valid UTF-8"]
        );
    }

    #[test]
    fn refuses_bad_values_with_their_place() {
        assert_eq!(
            problems_with(
                "[cluster]\netcd = [\"127.0.0.1:2379\", \"http://a\"]\nprefix = \"prod\"\ninstance = \"edge 1\"\n"
            ),
            [
                "t.toml:11:9: cluster.etcd[0]: `127.0.0.1:2379` needs an http:// or https:// scheme (etcd's client URL)",
                "t.toml:11:27: cluster.etcd[1]: `http://a` has no port (etcd clients usually use 2379)",
                "t.toml:12:10: cluster.prefix: `prod` is not a key prefix: it starts with `/` and has no spaces or empty segments, e.g. \"/switchyard/prod\"",
                "t.toml:13:12: cluster.instance: `edge 1` is not an instance name: 1 to 64 letters, digits, `-`, `_` or `.`",
            ]
        );
        assert_eq!(
            problems_with("[cluster]\netcd = []\n"),
            [
                "t.toml:11:8: cluster.etcd: list at least one etcd client URL, e.g. [\"http://127.0.0.1:2379\"]"
            ]
        );
        assert_eq!(
            problems_with(
                "[cluster]\netcd = [\"https://a:1\"]\nlease_ttl = \"1s\"\non_leader_loss = \"rollback\"\npassword = \"p\"\n"
            ),
            [
                "t.toml:11:8: cluster.etcd: https:// endpoints need [cluster.tls] with the `ca` that signed etcd's certificates",
                "t.toml:12:13: cluster.lease_ttl: must be between 2000 ms and 60 s",
                "t.toml:13:18: cluster.on_leader_loss: unknown choice `rollback`, did you mean `roll-back`? Expected one of: resume, roll-back",
                "t.toml:14:12: cluster.password: a password needs cluster.username",
            ]
        );
        assert_eq!(
            problems_with("[cluster]\netcd = [\"http://a:1\"]\netcd_urls = 1\n"),
            ["t.toml:12:1: cluster.etcd_urls: unknown field, did you mean `etcd`?"]
        );
    }
}
