//! What the client sends to a backend: the request's head, borrowed from the
//! client's request (the HTTP/1 path writes it from there, without a copy), and
//! its body.

use std::net::SocketAddr;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::combinators::BoxBody;

use crate::error::BoxError;

/// The body type sent to backends: boxed, as a request's body may come from the
/// client, a replay buffer, or nothing.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// The head of one request to a backend. Borrowed, so a try costs no copy of the
/// client's fields, and a retry sends the same head again.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingHead<'a> {
    /// The client's method, unchanged.
    pub method: &'a Method,
    /// `http` or `https`: what an HTTP/2 backend is told.
    pub scheme: &'a Scheme,
    /// The request's authority: `Host` when the fields have none, `:authority` on
    /// HTTP/2.
    pub authority: &'a Authority,
    /// The path the backend gets (normalised, prefix rewritten) and the query.
    pub path_and_query: &'a PathAndQuery,
    /// The fields as rewritten for the backend (hop-by-hop gone, forwarding added).
    pub headers: &'a HeaderMap,
    /// The backend's address (a client for one TLS backend connects to its own).
    pub addr: SocketAddr,
}

impl OutgoingHead<'_> {
    /// The whole request with an absolute URI, for the paths where hyper's client
    /// owns what it sends (HTTP/2 backends, upgrades).
    pub fn to_request(&self, body: UpstreamBody) -> Request<UpstreamBody> {
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(self.path_and_query.clone())
            .build()
            .unwrap_or_else(|_| Uri::from_static("/"));
        let mut request = Request::new(body);
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.headers_mut() = self.headers.clone();
        *request.version_mut() = http::Version::HTTP_11;
        request
    }
}

/// Whether repeating a request with this method is harmless (RFC 9110 §9.2.2):
/// what decides both retries on another backend and a resend after a closed
/// connection.
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// An ended body: a request without one, or one sent again after its first
/// connection turned out closed (only requests without a body are).
pub fn no_body() -> UpstreamBody {
    use http_body_util::BodyExt;
    http_body_util::Empty::new()
        .map_err(|never: std::convert::Infallible| match never {})
        .boxed()
}
