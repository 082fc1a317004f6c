//! A pool's `backends`: `ip:port` entries, and entries named by DNS (`host:port` or
//! `srv = "..."`) that are resolved at run time.

use std::collections::HashSet;
use std::sync::Arc;

use toml::Spanned;

use super::names::is_host_name;
use crate::config::error::Reporter;
use crate::config::file::BackendSection;
use crate::config::{BackendConfig, DnsBackend, MAX_WEIGHT};

pub(super) fn backends(
    field: &str,
    spanned: &Spanned<Vec<BackendSection>>,
    r: &mut Reporter<'_>,
) -> (Vec<BackendConfig>, Vec<DnsBackend>) {
    let mut seen = HashSet::new();
    let mut names = HashSet::new();
    let mut labels: HashSet<&str> = HashSet::new();
    if spanned.get_ref().is_empty() {
        r.at(
            spanned.span(),
            format!("{field}.backends"),
            "a pool needs at least one backend",
        );
    }
    let mut by_address = Vec::new();
    let mut by_name = Vec::new();
    for (i, b) in spanned.get_ref().iter().enumerate() {
        let entry = format!("{field}.backends[{i}]");
        let span = b
            .address
            .as_ref()
            .or(b.srv.as_ref())
            .map_or_else(|| spanned.span(), Spanned::span);
        if b.weight > MAX_WEIGHT {
            r.at(
                0..0,
                format!("{entry}.weight"),
                format!("weight {} is above the maximum {MAX_WEIGHT}", b.weight),
            );
        }
        let name = b
            .name
            .as_ref()
            .filter(|n| backend_name(n, &entry, &mut labels, r));
        match (&b.address, &b.srv) {
            (Some(address), None) => {
                let text = address.get_ref().trim();
                if let Ok(socket) = text.parse::<std::net::SocketAddr>() {
                    if !seen.insert(socket) {
                        r.at(
                            span,
                            format!("{entry}.address"),
                            format!("backend {socket} is listed twice"),
                        );
                    }
                    by_address.push(BackendConfig {
                        address: socket,
                        weight: b.weight,
                        origin: None,
                        name: name.map(|n| Arc::from(n.get_ref().as_str())),
                    });
                    continue;
                }
                let parsed = text.rsplit_once(':').and_then(|(host, port)| {
                    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
                    let host = host.to_ascii_lowercase();
                    is_host_name(&host, false).then_some((host, port))
                });
                if let Some(n) = name {
                    r.at(n.span(), format!("{entry}.name"), DNS_NAMED);
                }
                let Some((name, port)) = parsed else {
                    r.at(
                        span,
                        format!("{entry}.address"),
                        format!("`{text}` is neither ip:port nor host:port (e.g. 10.0.0.5:8080 or app.internal:8080)"),
                    );
                    continue;
                };
                if !names.insert((name.clone(), port)) {
                    r.at(
                        span,
                        format!("{entry}.address"),
                        format!("backend {name}:{port} is listed twice"),
                    );
                }
                by_name.push(DnsBackend {
                    name,
                    port,
                    srv: false,
                    weight: b.weight,
                });
            }
            (None, Some(srv)) => {
                if let Some(n) = name {
                    r.at(n.span(), format!("{entry}.name"), DNS_NAMED);
                }
                let name = srv.get_ref().trim().to_ascii_lowercase();
                if !is_host_name(&name, true) {
                    r.at(
                        span,
                        format!("{entry}.srv"),
                        format!("`{name}` is not a DNS name such as _http._tcp.app.internal"),
                    );
                } else if !names.insert((name.clone(), 0)) {
                    r.at(
                        span,
                        format!("{entry}.srv"),
                        format!("SRV name {name} is listed twice"),
                    );
                }
                by_name.push(DnsBackend {
                    name,
                    port: 0,
                    srv: true,
                    weight: b.weight,
                });
            }
            (Some(_), Some(_)) => r.at(span, entry, "give either address or srv, not both"),
            (None, None) => r.at(
                0..0,
                entry,
                "a backend needs address = \"ip:port\" (or \"host:port\") or srv = \"_service._tcp.name\"",
            ),
        }
    }
    (by_address, by_name)
}

/// Why a backend found in DNS takes no `name`.
const DNS_NAMED: &str = "a name needs one address: backends found in DNS are known by their \
                         address (and show the DNS name they came from)";

/// Checks a backend's `name`: 1 to 63 letters, digits, `-`, `_` or `.`, unique in
/// its pool (`seen`). Returns whether it is one.
fn backend_name<'a>(
    name: &'a Spanned<String>,
    entry: &str,
    seen: &mut HashSet<&'a str>,
    r: &mut Reporter<'_>,
) -> bool {
    let text = name.get_ref().as_str();
    let field = format!("{entry}.name");
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !valid {
        r.at(
            name.span(),
            field,
            format!("`{text}` is not a backend name: use 1 to 63 letters, digits, `-`, `_` or `.`"),
        );
        return false;
    }
    if !seen.insert(text) {
        r.at(
            name.span(),
            field,
            format!("the name `{text}` is given to two backends of this pool"),
        );
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::super::testing::{problems_with, valid_with};

    fn pool(backends: &str) -> String {
        format!("[pool.web]\nbackends = [\n{backends}]\n")
    }

    #[test]
    fn addresses_and_dns_names() {
        let config = valid_with(&pool(
            "{ address = \"10.0.0.1:80\", weight = 3 },\n{ address = \"App.Internal:8080\" },\n{ srv = \"_http._tcp.app.internal\" },\n",
        ));
        let web = &config.pools["web"];
        assert_eq!(web.backends[0].address.to_string(), "10.0.0.1:80");
        assert_eq!(web.backends[0].weight, 3);
        assert_eq!(
            (web.dns[0].name.as_str(), web.dns[0].port, web.dns[0].srv),
            ("app.internal", 8080, false)
        );
        assert!(web.dns[1].srv);
    }

    #[test]
    fn each_bad_backend_is_reported_at_its_entry() {
        assert_eq!(
            problems_with(&pool(
                "{ address = \"10.0.0.1:80\" },\n{ address = \"10.0.0.1:80\", weight = 20000 },\n\
                 { address = \"app\" },\n{ srv = \"not a name\" },\n{ address = \"10.0.0.2:80\", srv = \"_x._tcp.a\" },\n{ weight = 2 },\n"
            )),
            [
                "t.toml:13:13: pool.web.backends[1].address: backend 10.0.0.1:80 is listed twice",
                "t.toml:13:37: pool.web.backends[1].weight: weight 20000 is above the maximum 10000",
                "t.toml:14:13: pool.web.backends[2].address: `app` is neither ip:port nor host:port (e.g. 10.0.0.5:8080 or app.internal:8080)",
                "t.toml:15:9: pool.web.backends[3].srv: `not a name` is not a DNS name such as _http._tcp.app.internal",
                "t.toml:16:13: pool.web.backends[4]: give either address or srv, not both",
                "t.toml:17:1: pool.web.backends[5]: a backend needs address = \"ip:port\" (or \"host:port\") or srv = \"_service._tcp.name\"",
            ]
        );
    }

    #[test]
    fn names_are_unique_words_and_need_one_address() {
        let config = valid_with(&pool(
            "{ address = \"10.0.0.1:80\", name = \"alpha\" },\n{ address = \"10.0.0.2:80\" },\n",
        ));
        let web = &config.pools["web"];
        assert_eq!(web.backends[0].name.as_deref(), Some("alpha"));
        assert_eq!(web.backends[1].name, None);
        assert_eq!(
            problems_with(&pool(
                "{ address = \"10.0.0.1:80\", name = \"alpha\" },\n{ address = \"10.0.0.2:80\", name = \"alpha\" },\n\
                 { address = \"10.0.0.3:80\", name = \"no spaces\" },\n{ address = \"app.internal:80\", name = \"app\" },\n"
            )),
            [
                "t.toml:13:35: pool.web.backends[1].name: the name `alpha` is given to two backends of this pool",
                "t.toml:14:35: pool.web.backends[2].name: `no spaces` is not a backend name: use 1 to 63 letters, digits, `-`, `_` or `.`",
                "t.toml:15:39: pool.web.backends[3].name: a name needs one address: backends found in DNS are known by their address (and show the DNS name they came from)",
            ]
        );
    }
}
