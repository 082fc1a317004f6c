//! Sticky sessions by cookie: each backend of a sticky pool has an opaque id (a hash
//! of the pool's name and the backend's address, never the address itself), sent to
//! the client in a cookie on the answer that started its session. A later request
//! carrying the cookie goes back to that backend while it is usable; when it is not
//! (drained, disabled, down, ejected, gone), the request is balanced as usual and the
//! answer carries a new cookie for the backend that served it.
//!
//! The id depends on nothing but the pool and the address, so a cookie stays valid
//! across reloads, restarts, upgrades and every instance of a fleet. The cookies are
//! built once per snapshot; a request only compares a parsed id.

use http::{HeaderMap, HeaderValue, header};
use sha2::{Digest, Sha256};

use super::Backend;
use crate::config::StickyConfig;

/// A sticky pool's cookie name and, per backend (same order as the pool's), its id
/// and the `Set-Cookie` value naming it.
#[derive(Debug)]
pub struct Sticky {
    cookie: String,
    ids: Vec<u64>,
    set_cookies: Vec<HeaderValue>,
}

impl Sticky {
    /// The ids and cookies of `backends` of pool `pool`.
    pub fn build(config: &StickyConfig, pool: &str, backends: &[Backend]) -> Self {
        let ids: Vec<u64> = backends.iter().map(|b| backend_id(pool, &b.key)).collect();
        let set_cookies = ids.iter().map(|id| set_cookie(config, *id)).collect();
        Self {
            cookie: config.cookie.clone(),
            ids,
            set_cookies,
        }
    }

    /// The index of the backend the request's cookie names, if it names one of this
    /// pool's (whether it may take the request is the caller's question).
    pub fn pinned(&self, headers: &HeaderMap) -> Option<usize> {
        let id = self.requested(headers)?;
        self.ids.iter().position(|known| *known == id)
    }

    /// The `Set-Cookie` value to add to an answer from backend `index` to a request
    /// whose cookie named `pinned`: `None` when the client already holds this
    /// backend's cookie.
    pub fn set_cookie_for(&self, index: usize, pinned: Option<usize>) -> Option<&HeaderValue> {
        (pinned != Some(index))
            .then(|| self.set_cookies.get(index))
            .flatten()
    }

    /// The id in the request's cookie, when it carries one that parses.
    fn requested(&self, headers: &HeaderMap) -> Option<u64> {
        let value = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == self.cookie)
            .map(|(_, value)| value.trim_matches('"'))?;
        (value.len() == 16)
            .then(|| u64::from_str_radix(value, 16).ok())
            .flatten()
    }
}

/// A backend's opaque id: the first 8 bytes of SHA-256 over the pool's name and the
/// backend's `ip:port`.
fn backend_id(pool: &str, key: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"switchyard sticky\0")
        .chain_update(pool.as_bytes())
        .chain_update(b"\0")
        .chain_update(key.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// `NAME=ID; Path=/; Max-Age=N; Secure; HttpOnly; SameSite=Lax`.
fn set_cookie(config: &StickyConfig, id: u64) -> HeaderValue {
    let mut text = format!("{}={id:016x}; Path={}", config.cookie, config.path);
    if let Some(age) = config.max_age {
        text.push_str(&format!("; Max-Age={}", age.as_secs()));
    }
    if config.secure {
        text.push_str("; Secure");
    }
    if config.http_only {
        text.push_str("; HttpOnly");
    }
    text.push_str("; SameSite=");
    text.push_str(config.same_site.as_str());
    // Validation admits only token names and paths without control bytes.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::SameSite;

    fn config() -> StickyConfig {
        StickyConfig {
            cookie: "sy_srv".into(),
            secure: false,
            http_only: true,
            same_site: SameSite::Lax,
            max_age: None,
            path: "/".into(),
        }
    }

    fn backends() -> Vec<Backend> {
        ["10.0.0.1:80", "10.0.0.2:80"]
            .iter()
            .map(|a| Backend::new(a.parse().unwrap(), 1))
            .collect()
    }

    fn cookie(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_cookie_names_a_backend_without_showing_its_address() {
        let sticky = Sticky::build(&config(), "app", &backends());
        let set = sticky.set_cookie_for(1, None).unwrap().to_str().unwrap();
        let value = set
            .strip_prefix("sy_srv=")
            .and_then(|rest| rest.split(';').next())
            .unwrap();
        assert_eq!(value.len(), 16);
        assert!(!set.contains("10.0.0"), "{set}");
        assert_eq!(
            set,
            format!("sy_srv={value}; Path=/; HttpOnly; SameSite=Lax")
        );
        let headers = cookie(&format!("theme=dark; sy_srv={value}; lang=en"));
        assert_eq!(sticky.pinned(&headers), Some(1));
        assert_eq!(
            sticky.set_cookie_for(1, Some(1)),
            None,
            "the client has it already"
        );
        // Another pool gives the same address another id.
        let other = Sticky::build(&config(), "green", &backends());
        assert_eq!(other.pinned(&headers), None);
        for junk in [
            "sy_srv=",
            "sy_srv=zz",
            "sy_srv=0123456789abcdef0",
            "other=1",
        ] {
            assert_eq!(sticky.pinned(&cookie(junk)), None, "{junk}");
        }
    }

    #[test]
    fn every_attribute_is_written() {
        let config = StickyConfig {
            secure: true,
            http_only: false,
            same_site: SameSite::None,
            max_age: Some(Duration::from_secs(3600)),
            path: "/shop".into(),
            ..config()
        };
        let sticky = Sticky::build(&config, "app", &backends());
        let set = sticky.set_cookie_for(0, None).unwrap().to_str().unwrap();
        let attributes = set.split_once("; ").unwrap().1;
        assert_eq!(
            attributes,
            "Path=/shop; Max-Age=3600; Secure; SameSite=None"
        );
    }
}
