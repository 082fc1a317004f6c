//! `[acme]`: the CA, the names, the challenge, and which TLS listener serves the
//! certificate (that listener is marked ACME-managed).

use std::time::Duration;

use toml::Spanned;

use super::names::is_host_name;
use crate::config::error::Reporter;
use crate::config::file::AcmeSection;
use crate::config::resolve::Reads;
use crate::config::suggest::{unknown_choice, unknown_reference};
use crate::config::{AcmeChallenge, AcmeConfig, LETSENCRYPT, LETSENCRYPT_STAGING, ListenerConfig};

const CHALLENGES: [&str; 2] = ["http-01", "tls-alpn-01"];

pub(super) fn acme(
    spanned: &Spanned<AcmeSection>,
    listeners: &mut [ListenerConfig],
    reads: &mut Reads,
    r: &mut Reporter<'_>,
) -> AcmeConfig {
    let a = spanned.get_ref();
    let directory = match a.directory.get_ref().trim() {
        "letsencrypt" => LETSENCRYPT.to_string(),
        "letsencrypt-staging" => LETSENCRYPT_STAGING.to_string(),
        url => {
            if !url.starts_with("https://") || url.parse::<http::Uri>().is_err() {
                r.at(
                    a.directory.span(),
                    "acme.directory",
                    "expected an https:// directory URL, \"letsencrypt\" or \"letsencrypt-staging\"",
                );
            }
            url.to_string()
        }
    };
    let contact = a
        .contact
        .iter()
        .map(|c| {
            if !c.get_ref().contains(':') {
                r.at(
                    c.span(),
                    "acme.contact",
                    format!(
                        "`{}` is not a URI: write mailto:{}",
                        c.get_ref(),
                        c.get_ref()
                    ),
                );
            }
            c.get_ref().clone()
        })
        .collect();
    let challenge = match a.challenge.as_ref().map(|c| (c, c.get_ref().as_str())) {
        None | Some((_, "http-01")) => AcmeChallenge::Http01,
        Some((_, "tls-alpn-01")) => AcmeChallenge::TlsAlpn01,
        Some((c, other)) => {
            r.at(
                c.span(),
                "acme.challenge",
                unknown_choice("challenge", other, &CHALLENGES, CHALLENGES),
            );
            AcmeChallenge::Http01
        }
    };
    let listener = a.listener.get_ref().clone();
    match listeners.iter_mut().position(|l| l.name == listener) {
        Some(index) => match &mut listeners[index].tls {
            Some(tls) => tls.acme = true,
            None => r.at(
                a.listener.span(),
                "acme.listener",
                format!("listener `{listener}` has no tls table: add `tls = {{}}` to it"),
            ),
        },
        None => r.at(
            a.listener.span(),
            "acme.listener",
            unknown_reference(
                "listener",
                &listener,
                listeners.iter().map(|l| l.name.as_str()),
            ),
        ),
    }
    if challenge == AcmeChallenge::Http01 && listeners.iter().all(|l| l.tls.is_some()) {
        r.at(
            spanned.span(),
            "acme.challenge",
            "http-01 is answered on a plain listener (port 80): add one, or use challenge = \"tls-alpn-01\"",
        );
    }
    let names = names(a, r);
    let retry_min = a.retry_min.map_or(Duration::from_secs(60), |d| d.0);
    let retry_max = a.retry_max.map_or(Duration::from_secs(6 * 3600), |d| d.0);
    if retry_min.is_zero() || retry_max < retry_min {
        r.at(
            0..0,
            "acme.retry_min",
            "retry_min must be above zero and at most retry_max",
        );
    }
    AcmeConfig {
        directory,
        contact,
        storage: reads.path(a.storage.get_ref()),
        listener,
        names,
        challenge,
        ca: a.ca.as_ref().map(|c| reads.file(c, "acme.ca")),
        renew_before: a
            .renew_before
            .map_or(Duration::from_secs(30 * 86400), |d| d.0),
        retry_min,
        retry_max,
    }
}

/// `names`: lower-cased host names, no wildcards, at least one.
fn names(a: &AcmeSection, r: &mut Reporter<'_>) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if a.names.get_ref().is_empty() {
        r.at(a.names.span(), "acme.names", "list at least one host name");
    }
    for name in a.names.get_ref() {
        let name = name.trim().to_ascii_lowercase();
        if name.starts_with("*.") {
            r.at(
                a.names.span(),
                "acme.names",
                format!("`{name}`: wildcard certificates need the DNS-01 challenge, which is not supported"),
            );
        } else if !is_host_name(&name, false) {
            r.at(
                a.names.span(),
                "acme.names",
                format!("`{name}` is not a host name"),
            );
        } else if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{check, problems};
    use crate::config::{AcmeChallenge, LETSENCRYPT_STAGING};

    const LISTENERS: &str = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
        [[listener]]\nname = \"secure\"\nlisten = \"127.0.0.1:0\"\ntls = {}\n";

    #[test]
    fn marks_its_listener_and_resolves_the_directory() {
        let config = check(&format!(
            "{LISTENERS}[acme]\ndirectory = \"letsencrypt-staging\"\ncontact = [\"mailto:ops@example.com\"]\n\
             storage = \"acme\"\nlistener = \"secure\"\nnames = [\"Shop.Example.com\", \"shop.example.com\"]\n"
        ))
        .unwrap();
        let acme = config.acme.unwrap();
        assert_eq!(acme.directory, LETSENCRYPT_STAGING);
        assert_eq!(acme.names, ["shop.example.com"]);
        assert_eq!(acme.storage, Path::new("/etc/switchyard/acme"));
        assert_eq!(acme.challenge, AcmeChallenge::Http01);
        assert!(config.listeners[1].tls.as_ref().unwrap().acme);
    }

    #[test]
    fn refuses_bad_values_with_their_place() {
        assert_eq!(
            problems(&format!(
                "{LISTENERS}[acme]\ndirectory = \"http://ca\"\ncontact = [\"ops@example.com\"]\n\
                 storage = \"acme\"\nlistener = \"secur\"\nnames = [\"*.example.com\"]\n\
                 challenge = \"tls-alpn\"\nretry_min = \"0\"\n"
            )),
            [
                // The listener the [acme] table meant is left without a certificate.
                "t.toml:7:7: listener[1].tls: no certificate: set cert and key, certificates = [...], directory, or an [acme] section for this listener",
                "t.toml:9:13: acme.directory: expected an https:// directory URL, \"letsencrypt\" or \"letsencrypt-staging\"",
                "t.toml:10:12: acme.contact: `ops@example.com` is not a URI: write mailto:ops@example.com",
                "t.toml:12:12: acme.listener: no listener named `secur`, did you mean `secure`? Defined: web, secure",
                "t.toml:13:9: acme.names: `*.example.com`: wildcard certificates need the DNS-01 challenge, which is not supported",
                "t.toml:14:13: acme.challenge: unknown challenge `tls-alpn`, did you mean `tls-alpn-01`? Expected one of: http-01, tls-alpn-01",
                "t.toml:15:13: acme.retry_min: retry_min must be above zero and at most retry_max",
            ]
        );
        assert_eq!(
            problems(
                "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
                 [acme]\ndirectory = \"letsencrypt\"\nstorage = \"acme\"\nlistener = \"web\"\nnames = []\n"
            ),
            [
                "t.toml:7:12: acme.listener: listener `web` has no tls table: add `tls = {}` to it",
                "t.toml:8:9: acme.names: list at least one host name",
            ]
        );
    }
}
