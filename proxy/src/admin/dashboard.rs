//! The live dashboard: a static page at `/` of the admin listener that polls `/status`
//! and drives the control endpoints from the browser.
//!
//! The page, script, stylesheet and icon are compiled into the binary, so the dashboard
//! works offline and needs no build step. They carry no data, so they are served
//! without the bearer token; every data call the script makes still goes through the
//! token check. A browser's own request for `/favicon.ico` is answered quietly (204),
//! so a visit leaves no warning in the log.

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};

use crate::error::{ProxyBody, full_body, text_response};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const STYLE_CSS: &str = include_str!("assets/style.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");

/// Only the page's own files may load, no inline script or style, no framing, no form
/// posts elsewhere: the page handles an admin token, so nothing foreign may run in it.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The prefix under which the page's script and stylesheet live.
const ASSET_PREFIX: &str = "/ui/";

/// Serves the dashboard for `path`, or `None` when `path` is not the dashboard's
/// (so the admin router handles it, behind the token check).
pub fn serve(method: &Method, path: &str) -> Option<Response<ProxyBody>> {
    let (body, content_type) = match path {
        "/" => (INDEX_HTML, "text/html; charset=utf-8"),
        "/ui/app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "/ui/style.css" => (STYLE_CSS, "text/css; charset=utf-8"),
        "/ui/icon.svg" => (ICON_SVG, "image/svg+xml"),
        "/favicon.ico" => return Some(no_icon(method)),
        p if p.starts_with(ASSET_PREFIX) => {
            return Some(text_response(StatusCode::NOT_FOUND, "not found\n"));
        }
        _ => return None,
    };
    if method != Method::GET && method != Method::HEAD {
        return Some(super::respond::method_not_allowed("GET, HEAD"));
    }
    let mut response = Response::new(full_body(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Some(response)
}

/// `/favicon.ico`, which browsers ask for on their own: nothing to show (the page
/// names its icon), no warning, and a day before the browser asks again.
fn no_icon(method: &Method) -> Response<ProxyBody> {
    if method != Method::GET && method != Method::HEAD {
        return super::respond::method_not_allowed("GET, HEAD");
    }
    let mut response = Response::new(full_body(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=86400"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_loads_only_its_own_assets_and_nothing_inline() {
        for tag in INDEX_HTML.match_indices("<script") {
            let rest = &INDEX_HTML[tag.0..];
            let open = &rest[..rest.find('>').unwrap_or(rest.len())];
            assert!(open.contains("src=\"/ui/"), "inline script: {open}");
        }
        for attribute in ["src=\"", "href=\""] {
            for (at, _) in INDEX_HTML.match_indices(attribute) {
                let value = &INDEX_HTML[at + attribute.len()..];
                assert!(value.starts_with("/ui/"), "not a local asset: {value:.40}");
            }
        }
        assert!(
            !INDEX_HTML.contains(" style="),
            "inline styles break the CSP"
        );
        for (at, _) in INDEX_HTML.match_indices(" on") {
            let name: String = INDEX_HTML[at + 1..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            let after = &INDEX_HTML[at + 1 + name.len()..];
            assert!(
                !after.starts_with('='),
                "inline handler {name} breaks the CSP"
            );
        }
        assert!(
            !APP_JS.contains("innerHTML ="),
            "status data is set as text only"
        );
        assert!(!APP_JS.contains("eval("));
    }

    #[test]
    fn routes_assets_and_leaves_the_rest_to_the_admin_router() {
        let page = serve(&Method::GET, "/").map(|r| r.status());
        assert_eq!(page, Some(StatusCode::OK));
        assert_eq!(
            serve(&Method::GET, "/ui/missing.js").map(|r| r.status()),
            Some(StatusCode::NOT_FOUND)
        );
        assert_eq!(
            serve(&Method::POST, "/").map(|r| r.status()),
            Some(StatusCode::METHOD_NOT_ALLOWED)
        );
        assert_eq!(
            serve(&Method::GET, "/favicon.ico").map(|r| r.status()),
            Some(StatusCode::NO_CONTENT)
        );
        assert_eq!(
            serve(&Method::GET, "/ui/icon.svg").map(|r| r.status()),
            Some(StatusCode::OK)
        );
        assert!(serve(&Method::GET, "/status").is_none());
        assert!(serve(&Method::GET, "/uiX").is_none());
    }
}
