//! Header rewriting between client and backend: hop-by-hop removal, X-Forwarded-*,
//! request ids.

use std::net::IpAddr;

use bytes::BytesMut;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use smallvec::SmallVec;

/// The request id header, generated when the client sent none.
pub static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&HeaderName; 8] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHENTICATE,
];

/// True when the request asks to switch protocols (e.g. WebSocket).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_lists(headers, "upgrade")
}

fn connection_lists(headers: &HeaderMap, token: &str) -> bool {
    names_in(&headers.get_all(header::CONNECTION)).any(|t| t.eq_ignore_ascii_case(token))
}

/// Removes hop-by-hop headers, including every header the `Connection` header names.
/// When `keep_upgrade` is set, `Connection: upgrade` and `Upgrade` are passed on.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests carry no hop-by-hop field at all (not even `Connection`, so
    // none is listed either): one look at the names present settles it.
    let mut hop_by_hop = headers.keys().filter(|name| is_hop_by_hop(name));
    let only_connection = match (hop_by_hop.next(), hop_by_hop.next()) {
        (None, _) => return,
        (Some(name), None) => *name == header::CONNECTION,
        _ => false,
    };
    // Most answers (and many requests) carry `Connection: keep-alive` and no other
    // hop-by-hop field: the field it names is absent, so `Connection` alone goes.
    if only_connection
        && names_in(&headers.get_all(header::CONNECTION))
            .all(|token| token.eq_ignore_ascii_case("keep-alive"))
    {
        headers.remove(header::CONNECTION);
        return;
    }
    let keep_trailers_te = headers
        .get(header::TE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    let upgrade = keep_upgrade
        .then(|| headers.get(header::UPGRADE).cloned())
        .flatten();
    // One look at each name present rather than a lookup for every name that
    // could be: a request usually carries one of them (`Connection`), if any.
    let doomed: SmallVec<[HeaderName; 4]> = {
        let connection = headers.get_all(header::CONNECTION);
        let listed: SmallVec<[&str; 4]> = names_in(&connection).collect();
        headers
            .keys()
            .filter(|name| {
                is_hop_by_hop(name)
                    || listed
                        .iter()
                        .any(|token| token.eq_ignore_ascii_case(name.as_str()))
            })
            .cloned()
            .collect()
    };
    for name in &doomed {
        headers.remove(name);
    }
    if keep_trailers_te {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Never forwarded, whatever `Connection` lists.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name) || *name == header::PROXY_AUTHORIZATION
}

/// The header names a `Connection` header lists (its comma-separated tokens).
fn names_in<'a>(
    connection: &'a http::header::GetAll<'a, HeaderValue>,
) -> impl Iterator<Item = &'a str> + 'a {
    connection
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The client's address as an `X-Forwarded-For` entry. Formatted once per
/// connection and shared by its requests.
pub fn forwarded_for(client: IpAddr) -> HeaderValue {
    HeaderValue::from_str(&client.to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Sets `X-Forwarded-For` (appending the client, from [`forwarded_for`], to any
/// existing chain), `X-Forwarded-Proto` and `X-Forwarded-Host`. The incoming chain
/// is passed on for the backend's information only; the proxy itself never trusts it.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    client: &HeaderValue,
    proto: &'static str,
    host: Option<&HeaderValue>,
) {
    let chain = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .filter(|existing| !existing.trim().is_empty())
        .map(|existing| {
            let mut value = BytesMut::with_capacity(existing.len() + 2 + client.len());
            value.extend_from_slice(existing.as_bytes());
            value.extend_from_slice(b", ");
            value.extend_from_slice(client.as_bytes());
            HeaderValue::from_maybe_shared(value.freeze())
        });
    match chain {
        Some(Ok(value)) => {
            headers.insert(X_FORWARDED_FOR.clone(), value);
        }
        // Cannot happen (both halves are valid values); the client alone then.
        Some(Err(_)) | None => {
            headers.insert(X_FORWARDED_FOR.clone(), client.clone());
        }
    }
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    match host {
        Some(h) => {
            headers.insert(X_FORWARDED_HOST.clone(), h.clone());
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

/// Returns the request's id, generating and inserting one when absent or unusable.
pub fn ensure_request_id(headers: &mut HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&REQUEST_ID)
        && !v.is_empty()
        && v.len() <= 128
    {
        return v.clone();
    }
    let id = new_request_id();
    headers.insert(REQUEST_ID.clone(), id.clone());
    id
}

/// 128 random bits as 32 lower-case hex digits.
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bits = fastrand::u128(..);
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = HEX[((bits >> (i * 4)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_hop_by_hop_and_connection_listed_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("gzip"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(h.get(header::TE).is_none());
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn connection_alone_goes_and_what_it_lists_goes_with_it() {
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("Keep-Alive"));
        h.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("64"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get(header::CONNECTION).is_none());
        assert_eq!(h.len(), 1);

        // A listed name other than keep-alive still takes its field along.
        let mut h = HeaderMap::new();
        h.append(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        h.append(header::CONNECTION, HeaderValue::from_static("x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get("x-hop").is_none());
        assert!(h.get("x-kept").is_some());

        // No hop-by-hop field: nothing changes.
        let mut h = HeaderMap::new();
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn keeps_upgrade_for_websocket() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn appends_to_forwarded_for() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        set_forwarded(
            &mut h,
            &forwarded_for("127.0.0.1".parse().unwrap()),
            "http",
            None,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "http");
    }

    #[test]
    fn generates_request_ids_once() {
        let mut h = HeaderMap::new();
        let id = ensure_request_id(&mut h);
        assert_eq!(id.len(), 32);
        assert_eq!(ensure_request_id(&mut h), id);
    }
}
