//! The small responses every admin handler builds: JSON answers, 405s, and the body
//! of a mutation.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::error::{ProxyBody, full_body, text_response};
use crate::server::RouteChangeError;

/// A 405 naming the methods the endpoint takes.
pub(super) fn method_not_allowed(allow: &'static str) -> Response<ProxyBody> {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The body of a mutation: POST only (405 otherwise), at most 64 KiB (400 otherwise).
pub(super) async fn mutation_body(
    request: Request<Incoming>,
) -> Result<Bytes, Response<ProxyBody>> {
    if request.method() != Method::POST {
        return Err(method_not_allowed("POST"));
    }
    http_body_util::Limited::new(request.into_body(), 64 * 1024)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|_| text_response(StatusCode::BAD_REQUEST, "unreadable or oversized body\n"))
}

/// A JSON response. A 503 (a fleet's change refused while etcd is out of reach)
/// says when to try again.
pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<ProxyBody> {
    let body = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut response = Response::new(full_body(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The answer to a switch or split that cannot be made: 404 for a route or pool
/// that does not exist (as every admin command answers for an unknown name), 400
/// for a target that does not add up, 500 when applying it failed.
pub(super) fn route_change_refused(e: &RouteChangeError) -> (StatusCode, serde_json::Value) {
    let status = match e {
        RouteChangeError::NoRoute(_) | RouteChangeError::NoPool(_) => StatusCode::NOT_FOUND,
        RouteChangeError::Invalid(_) => StatusCode::BAD_REQUEST,
        RouteChangeError::Apply(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, serde_json::json!({ "error": e.to_string() }))
}
