//! `[pool.NAME.sticky]`: the cookie that keeps a client on one backend, and its
//! attributes.

use crate::config::error::Reporter;
use crate::config::file::StickySection;
use crate::config::suggest::unknown_choice;
use crate::config::{SameSite, StickyConfig};

const SAME_SITE: [&str; 3] = ["lax", "strict", "none"];

pub(super) fn sticky(field: &str, s: &StickySection, r: &mut Reporter<'_>) -> StickyConfig {
    let field = format!("{field}.sticky");
    let cookie = s.cookie.get_ref().clone();
    // RFC 6265 §4.1.1: a cookie name is an HTTP token.
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if cookie.is_empty() || !cookie.bytes().all(token) {
        r.at(
            s.cookie.span(),
            format!("{field}.cookie"),
            format!("`{cookie}` is not a cookie name: use letters, digits and `-`, `_` or `.`"),
        );
    }
    let same_site = match &s.same_site {
        None => SameSite::Lax,
        Some(v) => match v.get_ref().to_ascii_lowercase().as_str() {
            "lax" => SameSite::Lax,
            "strict" => SameSite::Strict,
            "none" => SameSite::None,
            other => {
                r.at(
                    v.span(),
                    format!("{field}.same_site"),
                    unknown_choice("same_site", other, &SAME_SITE, SAME_SITE),
                );
                SameSite::Lax
            }
        },
    };
    let secure = s.secure.unwrap_or(false);
    if let (SameSite::None, false, Some(v)) = (same_site, secure, &s.same_site) {
        r.at(
            v.span(),
            format!("{field}.same_site"),
            "same_site = \"none\" needs secure = true (browsers drop such a cookie otherwise)",
        );
    }
    let path = s.path.as_ref().map_or("/", |p| p.get_ref().as_str());
    if !path.starts_with('/') || path.bytes().any(|b| b.is_ascii_control() || b == b';') {
        let span = s.path.as_ref().map_or(0..0, toml::Spanned::span);
        r.at(
            span,
            format!("{field}.path"),
            format!("`{path}` is not a cookie path: it starts with `/` and has no `;`"),
        );
    }
    StickyConfig {
        cookie,
        secure,
        http_only: s.http_only.unwrap_or(true),
        same_site,
        max_age: s.max_age.map(|d| d.0),
        path: path.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{problems_with, valid_with};
    use crate::config::{SameSite, StickyConfig};

    #[test]
    fn defaults_and_every_attribute() {
        let config = valid_with("[pool.app.sticky]\ncookie = \"sy_srv\"\n");
        assert_eq!(
            config.pools["app"].sticky,
            Some(StickyConfig {
                cookie: "sy_srv".into(),
                secure: false,
                http_only: true,
                same_site: SameSite::Lax,
                max_age: None,
                path: "/".into(),
            })
        );
        let config = valid_with(
            "[pool.app.sticky]\ncookie = \"srv\"\nsecure = true\nhttp_only = false\n\
             same_site = \"None\"\nmax_age = \"1h\"\npath = \"/shop\"\n",
        );
        let sticky = config.pools["app"].sticky.clone().unwrap();
        assert_eq!(
            (sticky.secure, sticky.http_only, sticky.same_site),
            (true, false, SameSite::None)
        );
        assert_eq!(sticky.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(sticky.path, "/shop");
    }

    #[test]
    fn each_bad_attribute_is_reported() {
        assert_eq!(
            problems_with(
                "[pool.app.sticky]\ncookie = \"my cookie\"\nsame_site = \"none\"\npath = \"shop\"\n"
            ),
            [
                "t.toml:11:10: pool.app.sticky.cookie: `my cookie` is not a cookie name: use letters, digits and `-`, `_` or `.`",
                "t.toml:12:13: pool.app.sticky.same_site: same_site = \"none\" needs secure = true (browsers drop such a cookie otherwise)",
                "t.toml:13:8: pool.app.sticky.path: `shop` is not a cookie path: it starts with `/` and has no `;`",
            ]
        );
        assert_eq!(
            problems_with("[pool.app.sticky]\ncookie = \"s\"\nsame_site = \"lux\"\n"),
            [
                "t.toml:12:13: pool.app.sticky.same_site: unknown same_site `lux`, did you mean `lax`? Expected one of: lax, strict, none"
            ]
        );
    }
}
