//! The strict request edge (RFC 9110, RFC 9112): what is checked before a request is
//! routed, and what the client is told when it fails. hyper has already refused
//! what its parser cannot read (bad request line, header syntax, obs-fold, invalid
//! Content-Length, Transfer-Encoding without a final `chunked` or in HTTP/1.0) with
//! a 400 or 431; these are the rules it leaves to the application.
//!
//! A refused request never reaches a backend: it gets its 4xx/5xx with `Connection:
//! close`, a log line, and `switchyard_client_errors_total{reason}`.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Version, header};

use crate::config::Limits;
use crate::error::EdgeError;
use crate::path;
use crate::router::Router;

/// The `HTTP2-Settings` header of an h2c upgrade (RFC 7540 §3.2.1).
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// What the edge learned about an accepted request.
#[derive(Debug)]
pub struct Checked<'a> {
    /// The authority the request is for: the absolute-form target's or HTTP/2's
    /// `:authority` when present, else `Host`. Routing, plugins and the backend's
    /// `Host` all use this one.
    pub authority: Option<HeaderValue>,
    /// The normalised path that routing, plugins and the access log see.
    pub path: Cow<'a, str>,
}

/// Applies the request rules; see the module docs.
pub fn check<'a, B>(request: &'a Request<B>, limits: &Limits) -> Result<Checked<'a>, EdgeError> {
    if request.method() == Method::CONNECT {
        return Err(EdgeError::Connect);
    }
    let uri = request.uri();
    let target_len = uri.path_and_query().map_or(0, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(EdgeError::UriTooLong);
    }
    let authority = authority(request)?;
    if request.version() <= Version::HTTP_11 {
        transfer_coding(request.headers())?;
    }
    if let Some(max) = limits.max_body_bytes
        && declared_length(request.headers()).is_some_and(|len| len > max)
    {
        return Err(EdgeError::BodyTooLarge);
    }
    let path = path::normalize(uri.path()).map_err(EdgeError::Path)?;
    Ok(Checked { authority, path })
}

/// The request's authority, checked: exactly one valid `Host` on HTTP/1.1; the
/// target's own authority, when it has one, wins over `Host`.
fn authority<B>(request: &Request<B>) -> Result<Option<HeaderValue>, EdgeError> {
    let mut hosts = request.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(EdgeError::MultipleHost);
    }
    match host {
        Some(host) => valid_authority(host.as_bytes())?,
        None if request.version() == Version::HTTP_11 => return Err(EdgeError::MissingHost),
        None => {}
    }
    if let Some(target) = request.uri().authority() {
        valid_authority(target.as_str().as_bytes())?;
        return HeaderValue::from_str(target.as_str())
            .map(Some)
            .map_err(|_| EdgeError::InvalidHost);
    }
    Ok(host.cloned())
}

/// `host[:port]` with a non-empty host and no userinfo (RFC 9110 §7.2, RFC 3986
/// §3.2.2): a registered name or IPv4 address of unreserved, sub-delim and
/// percent-encoded characters, or a bracketed IP literal; a port of digits.
/// Checked in place, without allocating.
fn valid_authority(bytes: &[u8]) -> Result<(), EdgeError> {
    let (host, port) = if bytes.first() == Some(&b'[') {
        let end = bytes
            .iter()
            .position(|&b| b == b']')
            .ok_or(EdgeError::InvalidHost)?;
        let literal = &bytes[1..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.'))
        {
            return Err(EdgeError::InvalidHost);
        }
        match &bytes[end + 1..] {
            [] => (&bytes[..=end], None),
            [b':', port @ ..] => (&bytes[..=end], Some(port)),
            _ => return Err(EdgeError::InvalidHost),
        }
    } else {
        match bytes.iter().rposition(|&b| b == b':') {
            Some(colon) => (&bytes[..colon], Some(&bytes[colon + 1..])),
            None => (bytes, None),
        }
    };
    let reg_name = |b: &u8| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
                    | b'%'
            )
    };
    if host.is_empty() || (host[0] != b'[' && !host.iter().all(reg_name)) {
        return Err(EdgeError::InvalidHost);
    }
    if let Some(port) = port
        && (port.len() > 5 || !port.iter().all(u8::is_ascii_digit))
    {
        return Err(EdgeError::InvalidHost);
    }
    Ok(())
}

/// Transfer-Encoding, across all its fields, must be exactly one `chunked`.
fn transfer_coding(headers: &HeaderMap) -> Result<(), EdgeError> {
    let mut chunked = 0;
    let mut other = false;
    for value in headers.get_all(header::TRANSFER_ENCODING) {
        let text = value.to_str().map_err(|_| EdgeError::TransferEncoding)?;
        for token in text.split(',') {
            let token = token.trim_matches([' ', '\t']);
            if token.is_empty() {
                return Err(EdgeError::TransferEncoding);
            }
            if token.eq_ignore_ascii_case("chunked") {
                chunked += 1;
            } else {
                other = true;
            }
        }
    }
    match (chunked, other) {
        (0 | 1, false) => Ok(()),
        (1, true) => Err(EdgeError::UnknownCoding),
        _ => Err(EdgeError::TransferEncoding),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Keeps an upgrade the listener allows (returns `true`), or removes the upgrade
/// request so the backend sees a plain request (`false`). `HTTP2-Settings` never
/// passes: it only accompanies an h2c upgrade.
pub fn filter_upgrade(headers: &mut HeaderMap, router: Option<&Router>) -> bool {
    headers.remove(&HTTP2_SETTINGS);
    if !super::headers::is_upgrade(headers) {
        return false;
    }
    let offered: Vec<String> = headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let allowed: Vec<&String> = offered
        .iter()
        .filter(|t| router.is_some_and(|r| r.allows_upgrade(t)))
        .collect();
    headers.remove(header::UPGRADE);
    if allowed.is_empty() {
        return false;
    }
    let joined = allowed
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match HeaderValue::from_str(&joined) {
        Ok(value) => {
            headers.insert(header::UPGRADE, value);
            true
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathError;

    fn req(version: Version, target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn check_err(r: &Request<()>) -> Option<EdgeError> {
        check(r, &Limits::default()).err()
    }

    #[test]
    fn host_rules() {
        let h11 = Version::HTTP_11;
        assert_eq!(check_err(&req(h11, "/", &[])), Some(EdgeError::MissingHost));
        assert_eq!(
            check_err(&req(h11, "/", &[("host", "a"), ("host", "b")])),
            Some(EdgeError::MultipleHost)
        );
        for bad in [
            "", "a b", "user@a", "a:b:c", "a/b", ":80", "[::1", "[zz]", "a:123456", "a\\b",
        ] {
            assert_eq!(
                check_err(&req(h11, "/", &[("host", bad)])),
                Some(EdgeError::InvalidHost),
                "{bad:?}"
            );
        }
        assert_eq!(check_err(&req(Version::HTTP_10, "/", &[])), None);
        for good in [
            "a",
            "a.example:8080",
            "127.0.0.1:1",
            "[::1]:443",
            "[::1]",
            "xn--bcher-kva.example",
            "a:",
        ] {
            assert_eq!(
                check_err(&req(h11, "/", &[("host", good)])),
                None,
                "{good:?}"
            );
        }
        assert_eq!(
            check_err(&req(h11, "http://a.example/", &[])),
            Some(EdgeError::MissingHost),
            "absolute-form does not excuse a missing Host"
        );
        let absolute = req(h11, "http://a.example:81/x", &[("host", "b.example")]);
        let checked = check(&absolute, &Limits::default()).unwrap();
        assert_eq!(checked.authority.unwrap(), "a.example:81");
        assert_eq!(checked.path, "/x");
    }

    #[test]
    fn transfer_codings() {
        let te = |v: &[&str]| {
            let mut h = HeaderMap::new();
            for v in v {
                h.append(header::TRANSFER_ENCODING, HeaderValue::from_str(v).unwrap());
            }
            transfer_coding(&h)
        };
        assert_eq!(te(&[]), Ok(()));
        assert_eq!(te(&["chunked"]), Ok(()));
        assert_eq!(te(&["Chunked"]), Ok(()));
        assert_eq!(te(&["chunked, chunked"]), Err(EdgeError::TransferEncoding));
        assert_eq!(
            te(&["chunked", "chunked"]),
            Err(EdgeError::TransferEncoding)
        );
        assert_eq!(te(&["gzip, chunked"]), Err(EdgeError::UnknownCoding));
        assert_eq!(te(&["gzip", "chunked"]), Err(EdgeError::UnknownCoding));
        assert_eq!(te(&[", chunked"]), Err(EdgeError::TransferEncoding));
    }

    #[test]
    fn upgrades_are_filtered() {
        let router = Router::with_upgrades(vec!["websocket".into()]);
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(
            "http2-settings",
            HeaderValue::from_static("AAMAAABkAAQCAAAAAAIAAAAA"),
        );
        assert!(!filter_upgrade(&mut h, Some(&router)));
        assert!(h.get(header::UPGRADE).is_none());
        assert!(h.get("http2-settings").is_none());

        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c, WebSocket"));
        assert!(filter_upgrade(&mut h, Some(&router)));
        assert_eq!(h[header::UPGRADE], "WebSocket");
    }

    #[test]
    fn long_targets_and_bad_paths() {
        let long = format!("/{}", "a".repeat(9000));
        assert_eq!(
            check_err(&req(Version::HTTP_11, &long, &[("host", "x")])),
            Some(EdgeError::UriTooLong)
        );
        assert_eq!(
            check_err(&req(Version::HTTP_11, "/a%zz", &[("host", "x")])),
            Some(EdgeError::Path(PathError::BadPercent))
        );
    }
}
