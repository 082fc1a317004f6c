//! What keeps web pages away from the admin API. An operator's browser can reach
//! the loopback admin listener, and any page it opens can make it send requests
//! there; these checks make sure no such request is obeyed or read:
//!
//! - **Host** ([`host_allowed`]): a page that rebinds its own DNS name to 127.0.0.1
//!   becomes same-origin with the admin API, but its requests still carry its name
//!   in `Host`. Only the listener's own address, IP literals when it listens on every
//!   address, loopback names (`localhost`) and `admin.allowed_hosts` are answered.
//! - **Content-Type** ([`json_body`]): a page can send a cross-site form post or a
//!   `no-cors` fetch without asking, but only with a form or `text/plain` content
//!   type; `application/json` needs a CORS preflight, which the admin API never
//!   grants (it sends no CORS header at all). Every change must say it is JSON.
//! - **Origin and Sec-Fetch-Site** ([`cross_site`]): browsers say where a request
//!   comes from; a change coming from another site is refused even if the rules above
//!   were somehow met.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, Request, header};

/// The `Host` a request names (`:authority` for HTTP/2), if any.
pub fn host<B>(request: &Request<B>) -> Option<&str> {
    request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
    })
}

/// The host part of a `Host` value: `[::1]:9901` → `::1`, `Name.:80` → `name`.
fn host_name(host: &str) -> Option<String> {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.starts_with(':')) {
            return None;
        }
        inside
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            Some(_) => return None,
            None => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()).then_some(name)
}

/// Whether the admin API answers a request naming `host`, on a listener bound to
/// `bound`, with `allowed` extra names (lower case).
pub fn host_allowed(host: Option<&str>, bound: Option<SocketAddr>, allowed: &[String]) -> bool {
    let Some(name) = host.and_then(host_name) else {
        return false;
    };
    if let Ok(ip) = name.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        return ip.is_loopback()
            || bound.is_some_and(|b| {
                let own = b.ip().to_canonical();
                own == ip || own.is_unspecified()
            });
    }
    name == "localhost" || name.ends_with(".localhost") || allowed.contains(&name)
}

/// Whether a request body is declared as JSON (`application/json`, any parameters).
pub fn json_body(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Why the browser's own headers say a request comes from another site, if they do:
/// an `Origin` other than the admin API's own (its scheme and `Host`: `https` too,
/// for an admin API behind a TLS-terminating proxy), or `Sec-Fetch-Site` other than
/// `same-origin` or `none` (typed by the user).
pub fn cross_site(headers: &HeaderMap, host: Option<&str>) -> Option<String> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let origin_host = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        let same =
            matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h.trim()));
        if !same {
            return Some(format!("Origin `{origin}`"));
        }
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("");
        if !site.eq_ignore_ascii_case("same-origin") && !site.eq_ignore_ascii_case("none") {
            return Some(format!("Sec-Fetch-Site `{site}`"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn answers_its_own_address_loopback_names_and_allowed_hosts_only() {
        let bound = addr("127.0.0.1:9901");
        let allowed = vec!["admin.example.com".to_string()];
        for ok in [
            "127.0.0.1:9901",
            "127.0.0.1",
            "[::1]:9901",
            "localhost:9901",
            "LOCALHOST.",
            "app.localhost:1",
            "admin.example.com:9901",
            "Admin.Example.com.",
        ] {
            assert!(host_allowed(Some(ok), bound, &allowed), "{ok}");
        }
        for refused in [
            "attacker.test:9901",
            "10.0.0.1:9901",
            "localhost.attacker.test",
            "example.com",
            "",
            "127.0.0.1:99x",
            "[::1]x",
        ] {
            assert!(!host_allowed(Some(refused), bound, &allowed), "{refused}");
        }
        assert!(!host_allowed(None, bound, &allowed), "a Host is required");
        // Listening on every address: any IP literal names this host.
        assert!(host_allowed(
            Some("10.0.0.1:9901"),
            addr("0.0.0.0:9901"),
            &[]
        ));
        assert!(!host_allowed(
            Some("rebind.test:9901"),
            addr("0.0.0.0:9901"),
            &[]
        ));
    }

    #[test]
    fn json_is_required_and_cross_site_is_recognised() {
        let mut h = HeaderMap::new();
        assert!(!json_body(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!json_body(&h));
        h.insert(
            header::CONTENT_TYPE,
            "Application/JSON; charset=utf-8".parse().unwrap(),
        );
        assert!(json_body(&h));

        let host = Some("127.0.0.1:9901");
        assert_eq!(cross_site(&h, host), None, "no browser headers: a tool");
        h.insert(header::ORIGIN, "http://127.0.0.1:9901".parse().unwrap());
        h.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert_eq!(cross_site(&h, host), None, "the dashboard");
        h.insert("sec-fetch-site", "same-site".parse().unwrap());
        assert!(cross_site(&h, host).is_some());
        h.remove("sec-fetch-site");
        h.insert(header::ORIGIN, "http://127.0.0.1:8000".parse().unwrap());
        assert!(cross_site(&h, host).is_some());
        h.insert(header::ORIGIN, "null".parse().unwrap());
        assert!(cross_site(&h, host).is_some());
        h.insert(header::ORIGIN, "https://127.0.0.1:9901".parse().unwrap());
        assert_eq!(cross_site(&h, host), None, "behind a TLS proxy");
        h.insert(header::ORIGIN, "https://127.0.0.1:99011".parse().unwrap());
        assert!(cross_site(&h, host).is_some());
        h.insert(header::ORIGIN, "ftp://127.0.0.1:9901".parse().unwrap());
        assert!(cross_site(&h, host).is_some());
    }
}
