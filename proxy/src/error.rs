//! Why a request could not be proxied, and the response the client gets for it.
//!
//! Every failure leaves through [`ProxyError::status`] and [`ProxyError::response`], so
//! the mapping from cause to 4xx/5xx lives in one place (linkerd's `HttpRescue`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::upstream::client::BoxError;

/// Body type of responses the proxy sends to clients.
pub type ProxyBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A failure while handling one request.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No route of the listener matches the host and path.
    #[error("no route matches this host and path")]
    NoRoute,
    /// Every backend of the pool (and its backup) is down, ejected or drained.
    #[error("no usable backend in pool `{pool}`")]
    NoBackend { pool: Arc<str> },
    /// The TCP connect failed or timed out; the request was never sent.
    #[error("cannot connect to backend {backend}: {source}")]
    Connect {
        backend: Arc<str>,
        #[source]
        source: BoxError,
    },
    /// The backend did not send response headers within the per-try timeout.
    #[error("backend {backend} did not answer within {timeout:?}")]
    Timeout {
        backend: Arc<str>,
        timeout: Duration,
    },
    /// The connection failed after the request was sent (reset, closed, garbage).
    #[error("backend {backend} failed: {source}")]
    Upstream {
        backend: Arc<str>,
        #[source]
        source: BoxError,
    },
    /// The backend answered with a retryable status and no retry was left.
    #[error("backend {backend} answered {status}")]
    Status {
        backend: Arc<str>,
        status: StatusCode,
    },
    /// The answer broke the framing or status rules; it was not relayed.
    #[error("backend {backend} answered invalid HTTP: {reason}")]
    BadResponse {
        backend: Arc<str>,
        reason: &'static str,
    },
    /// The client's request body broke, stalled or was too large.
    #[error("request body: {0}")]
    ClientBody(#[from] crate::proxy::ClientBodyError),
    /// The request broke an edge rule (Host, transfer coding, path, sizes).
    #[error("{0}")]
    Edge(#[from] crate::proxy::EdgeError),
    /// The routing plugin answered the request itself.
    #[error("the routing policy answered {status}")]
    PolicyResponse { status: StatusCode, body: Bytes },
    /// The routing plugin refused the request.
    #[error("the routing policy rejected the request")]
    Rejected,
    /// The routing plugin failed and its `on_error` is `fail-closed`.
    #[error("the routing policy of pool `{pool}` failed")]
    PolicyFailed { pool: Arc<str> },
}

impl ProxyError {
    /// The status the client receives.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoBackend { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::BadResponse { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Status { status, .. } => *status,
            ProxyError::ClientBody(e) => e.status(),
            ProxyError::Edge(e) => e.status(),
            ProxyError::PolicyResponse { status, .. } => *status,
            ProxyError::Rejected => StatusCode::FORBIDDEN,
            ProxyError::PolicyFailed { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Whether the client is to blame (a 4xx the edge or body reader decided): such
    /// answers close the HTTP/1 connection, since the rest of it cannot be trusted.
    pub fn is_client_error(&self) -> bool {
        matches!(self, ProxyError::ClientBody(_) | ProxyError::Edge(_))
    }

    /// A short plain-text response; 503s carry `Retry-After`.
    pub fn response(&self) -> Response<ProxyBody> {
        let status = self.status();
        if let ProxyError::PolicyResponse { body, .. } = self {
            let mut response = Response::new(full_body(body.clone()));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return response;
        }
        let text = match self {
            ProxyError::NoRoute => "no route for this host and path\n",
            ProxyError::NoBackend { .. } => "no backend available, retry later\n",
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::BadResponse { .. } => "bad gateway\n",
            ProxyError::Timeout { .. } => "backend timed out\n",
            ProxyError::Status { .. } => "backend unavailable\n",
            ProxyError::ClientBody(e) => match e {
                crate::proxy::ClientBodyError::TooLarge => "request body too large\n",
                crate::proxy::ClientBodyError::Idle | crate::proxy::ClientBodyError::Slow => {
                    "request body timed out\n"
                }
                _ => "bad request body\n",
            },
            ProxyError::Edge(e) => match e {
                crate::proxy::EdgeError::MissingHost => "missing Host header\n",
                crate::proxy::EdgeError::MultipleHost => "more than one Host header\n",
                crate::proxy::EdgeError::InvalidHost => "invalid Host header\n",
                crate::proxy::EdgeError::TransferEncoding => "invalid Transfer-Encoding\n",
                crate::proxy::EdgeError::UnknownCoding => "unsupported transfer coding\n",
                crate::proxy::EdgeError::UriTooLong => "request target too long\n",
                crate::proxy::EdgeError::Path(_) => "invalid request path\n",
                crate::proxy::EdgeError::BodyTooLarge => "request body too large\n",
                crate::proxy::EdgeError::Connect => "CONNECT is not supported\n",
            },
            ProxyError::PolicyResponse { .. } => "",
            ProxyError::Rejected => "rejected by the routing policy\n",
            ProxyError::PolicyFailed { .. } => "routing policy unavailable, retry later\n",
        };
        let mut response = text_response(status, text);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A small `text/plain` response.
pub fn text_response(status: StatusCode, text: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(full_body(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Wraps bytes as a [`ProxyBody`].
pub fn full_body(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}
