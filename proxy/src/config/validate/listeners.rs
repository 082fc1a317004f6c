//! `[[listener]]`: names, addresses, upgrades and the `tls` table (certificate
//! sources and handshake settings).

use std::collections::HashSet;
use std::net::SocketAddr;

use toml::Spanned;

use super::names::{is_host_name, socket_address};
use crate::config::error::Reporter;
use crate::config::file::{ListenerSection, TlsSection};
use crate::config::resolve::Reads;
use crate::config::suggest::unknown_choice;
use crate::config::{
    CertificatePair, DEFAULT_UPGRADES, ListenerConfig, ListenerTlsConfig, TlsVersion,
};

/// Protocols an `alpn` list may name.
pub(super) const ALPN_CHOICES: [&str; 2] = ["h2", "http/1.1"];
const TLS_VERSIONS: [&str; 2] = ["1.2", "1.3"];

pub(super) fn listeners(
    sections: &[ListenerSection],
    reads: &mut Reads,
    r: &mut Reporter<'_>,
) -> Vec<ListenerConfig> {
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    let mut out = Vec::new();
    if sections.is_empty() {
        r.at(
            0..0,
            "listener",
            "no [[listener]] is defined: add one with a name and a listen address",
        );
    }
    for (i, l) in sections.iter().enumerate() {
        let field = format!("listener[{i}]");
        if !names.insert(l.name.get_ref().clone()) {
            r.at(
                l.name.span(),
                format!("{field}.name"),
                format!("duplicate listener name `{}`", l.name.get_ref()),
            );
        }
        let listen = socket_address(&l.listen, &format!("{field}.listen"), r);
        // Port 0 asks for any free port: two such listeners never collide.
        if let Some(address) = listen
            && address.port() != 0
            && !addrs.insert(address)
        {
            r.at(
                l.listen.span(),
                format!("{field}.listen"),
                format!("address {address} is used by another listener"),
            );
        }
        let tls = l
            .tls
            .as_ref()
            .map(|t| listener_tls(&field, t.get_ref(), reads, r));
        let upgrades = upgrades(&field, l.upgrades.as_ref(), r);
        out.push(ListenerConfig {
            name: l.name.get_ref().clone(),
            listen: listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0))),
            tls,
            upgrades,
        });
    }
    out
}

/// `upgrades`: lower-case protocol tokens, never `h2c`.
fn upgrades(field: &str, list: Option<&Spanned<Vec<String>>>, r: &mut Reporter<'_>) -> Vec<String> {
    let Some(list) = list else {
        return DEFAULT_UPGRADES.map(str::to_string).to_vec();
    };
    let mut out = Vec::new();
    for token in list.get_ref() {
        let token = token.trim().to_ascii_lowercase();
        if token.eq_ignore_ascii_case("h2c") {
            r.at(
                list.span(),
                format!("{field}.upgrades"),
                "`h2c` cannot be allowed: an h2c upgrade would let a client talk HTTP/2 to the backend past the proxy",
            );
        } else if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic() && b != b',') {
            r.at(
                list.span(),
                format!("{field}.upgrades"),
                format!("`{token}` is not a protocol name such as \"websocket\""),
            );
        } else if !out.contains(&token) {
            out.push(token);
        }
    }
    out
}

/// A listener's `tls` table: certificate sources and handshake settings.
fn listener_tls(
    field: &str,
    t: &TlsSection,
    reads: &mut Reads,
    r: &mut Reporter<'_>,
) -> ListenerTlsConfig {
    let field = format!("{field}.tls");
    let mut certificates = Vec::new();
    match (&t.cert, &t.key) {
        (Some(cert), Some(key)) => certificates.push(CertificatePair {
            cert: reads.file(cert, format!("{field}.cert")),
            key: reads.file(key, format!("{field}.key")),
            field: field.clone(),
        }),
        (Some(cert), None) => r.at(
            cert.span(),
            format!("{field}.key"),
            "`cert` needs its private key in `key`",
        ),
        (None, Some(key)) => r.at(
            key.span(),
            format!("{field}.cert"),
            "`key` needs its certificate chain in `cert`",
        ),
        (None, None) => {}
    }
    for (i, pair) in t.certificates.iter().enumerate() {
        let pair_field = format!("{field}.certificates[{i}]");
        certificates.push(CertificatePair {
            cert: reads.file(&pair.cert, format!("{pair_field}.cert")),
            key: reads.file(&pair.key, format!("{pair_field}.key")),
            field: pair_field,
        });
    }
    let directory = t
        .directory
        .as_ref()
        .map(|d| reads.directory(d, format!("{field}.directory")));
    let default = t.default.as_ref().map(|d| {
        let name = d.get_ref().trim().to_ascii_lowercase();
        if !is_host_name(name.strip_prefix("*.").unwrap_or(&name), false) {
            r.at(
                d.span(),
                format!("{field}.default"),
                "expected a host name such as www.example.com",
            );
        }
        name
    });
    let min_version = match t.min_version.as_ref().map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "1.2")) => TlsVersion::Tls12,
        Some((_, "1.3")) => TlsVersion::Tls13,
        Some((v, other)) => {
            r.at(
                v.span(),
                format!("{field}.min_version"),
                unknown_choice("TLS version", other, &TLS_VERSIONS, []),
            );
            TlsVersion::Tls12
        }
    };
    ListenerTlsConfig {
        certificates,
        directory,
        default,
        min_version,
        alpn: alpn(t.alpn.as_ref(), &format!("{field}.alpn"), r),
        acme: false,
        field,
    }
}

/// An `alpn` list: known protocols, at least one; `["h2", "http/1.1"]` by default.
pub(super) fn alpn(
    value: Option<&Spanned<Vec<String>>>,
    field: &str,
    r: &mut Reporter<'_>,
) -> Vec<String> {
    let Some(list) = value else {
        return ALPN_CHOICES.iter().map(|p| p.to_string()).collect();
    };
    if list.get_ref().is_empty() {
        r.at(
            list.span(),
            field,
            "list at least one protocol: \"h2\" or \"http/1.1\"",
        );
    }
    for protocol in list.get_ref() {
        if !ALPN_CHOICES.contains(&protocol.as_str()) {
            r.at(
                list.span(),
                field,
                unknown_choice("protocol", protocol, &ALPN_CHOICES, []),
            );
        }
    }
    list.get_ref().clone()
}

/// Every TLS listener must have a certificate source (files, a directory, or ACME).
pub(super) fn require_certificates(
    sections: &[ListenerSection],
    listeners: &[ListenerConfig],
    r: &mut Reporter<'_>,
) {
    for (i, (section, listener)) in sections.iter().zip(listeners).enumerate() {
        let (Some(span), Some(tls)) = (section.tls.as_ref().map(Spanned::span), &listener.tls)
        else {
            continue;
        };
        if tls.certificates.is_empty() && tls.directory.is_none() && !tls.acme {
            r.at(
                span,
                format!("listener[{i}].tls"),
                "no certificate: set cert and key, certificates = [...], directory, or an [acme] section for this listener",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::{check, problems};
    use crate::config::TlsVersion;

    const WEB: &str = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n";

    #[test]
    fn names_addresses_and_upgrades() {
        let config = check(&format!(
            "{WEB}upgrades = [\"WebSocket\", \"websocket\", \"connect-udp\"]\n\
             [[listener]]\nname = \"other\"\nlisten = \"127.0.0.1:0\"\n\
             [[listener]]\nname = \"third\"\nlisten = \"127.0.0.1:0\"\n"
        ))
        .unwrap();
        assert_eq!(config.listeners[0].upgrades, ["websocket", "connect-udp"]);
        assert_eq!(config.listeners[1].upgrades, ["websocket"]);
        assert_eq!(
            problems(&format!("{WEB}upgrades = [\"h2c\", \"a,b\"]\n{WEB}")),
            [
                "t.toml:4:12: listener[0].upgrades: `h2c` cannot be allowed: an h2c upgrade would let a client talk HTTP/2 to the backend past the proxy",
                "t.toml:4:12: listener[0].upgrades: `a,b` is not a protocol name such as \"websocket\"",
                "t.toml:6:8: listener[1].name: duplicate listener name `web`",
                "t.toml:7:10: listener[1].listen: address 127.0.0.1:8080 is used by another listener",
            ]
        );
        assert_eq!(
            problems(""),
            [
                "t.toml: listener: no [[listener]] is defined: add one with a name and a listen address"
            ]
        );
    }

    #[test]
    fn tls_tables() {
        let config = check(&format!(
            "{WEB}tls = {{ cert = \"c.pem\", key = \"k.pem\", certificates = [{{ cert = \"b.pem\", key = \"bk.pem\" }}], min_version = \"1.3\", default = \"WWW.example.com\" }}\n"
        ))
        .unwrap();
        let tls = config.listeners[0].tls.as_ref().unwrap();
        assert_eq!(tls.certificates.len(), 2);
        assert_eq!(tls.certificates[0].cert, Path::new("/etc/switchyard/c.pem"));
        assert_eq!(tls.certificates[1].field, "listener[0].tls.certificates[0]");
        assert_eq!(tls.min_version, TlsVersion::Tls13);
        assert_eq!(tls.default.as_deref(), Some("www.example.com"));
        assert_eq!(tls.alpn, ["h2", "http/1.1"]);
        assert_eq!(
            problems(&format!(
                "{WEB}tls = {{ cert = \"c.pem\", min_version = \"1.4\", alpn = [\"h3\", \"h2\"] }}\n"
            )),
            [
                "t.toml:4:7: listener[0].tls: no certificate: set cert and key, certificates = [...], directory, or an [acme] section for this listener",
                "t.toml:4:16: listener[0].tls.key: `cert` needs its private key in `key`",
                "t.toml:4:39: listener[0].tls.min_version: unknown TLS version `1.4`; expected one of: 1.2, 1.3",
                "t.toml:4:53: listener[0].tls.alpn: unknown protocol `h3`; expected one of: h2, http/1.1",
            ]
        );
    }
}
