//! Why a request could not be proxied, and the response the client gets for it.
//!
//! Every failure leaves through [`ProxyError::status`] and [`ProxyError::response`], so
//! the mapping from cause to 4xx/5xx lives in one place (linkerd's `HttpRescue`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use crate::path::PathError;

/// Boxed error type of request and response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

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
    ClientBody(#[from] ClientBodyError),
    /// The request broke an edge rule (Host, transfer coding, path, sizes).
    #[error("{0}")]
    Edge(#[from] EdgeError),
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
                ClientBodyError::TooLarge => "request body too large\n",
                ClientBodyError::Idle | ClientBodyError::Slow => "request body timed out\n",
                _ => "bad request body\n",
            },
            ProxyError::Edge(e) => match e {
                EdgeError::MissingHost => "missing Host header\n",
                EdgeError::MultipleHost => "more than one Host header\n",
                EdgeError::InvalidHost => "invalid Host header\n",
                EdgeError::TransferEncoding => "invalid Transfer-Encoding\n",
                EdgeError::UnknownCoding => "unsupported transfer coding\n",
                EdgeError::UriTooLong => "request target too long\n",
                EdgeError::Path(_) => "invalid request path\n",
                EdgeError::BodyTooLarge => "request body too large\n",
                EdgeError::Connect => "CONNECT is not supported\n",
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

/// Why the edge refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EdgeError {
    /// An HTTP/1.1 request without `Host` (RFC 9112 §3.2).
    #[error("HTTP/1.1 request without a Host header")]
    MissingHost,
    /// More than one `Host` field.
    #[error("more than one Host header")]
    MultipleHost,
    /// A `Host` (or absolute-form authority) that is not `host[:port]`.
    #[error("invalid Host header or request authority")]
    InvalidHost,
    /// `chunked` applied more than once, or other list syntax the proxy will not guess at.
    #[error("Transfer-Encoding must be exactly `chunked`")]
    TransferEncoding,
    /// A transfer coding other than `chunked` (RFC 9112 §6.1: 501).
    #[error("unsupported transfer coding")]
    UnknownCoding,
    /// The request target is longer than `limits.max_uri_bytes`.
    #[error("request target too long")]
    UriTooLong,
    /// A path with a broken percent-encoding, or not starting with `/`.
    #[error("{0}")]
    Path(PathError),
    /// The declared body is over `limits.max_body_bytes`.
    #[error("request body larger than the limit")]
    BodyTooLarge,
    /// CONNECT: a reverse proxy does not open tunnels to arbitrary addresses.
    #[error("CONNECT is not supported")]
    Connect,
}

impl EdgeError {
    /// The status the client gets.
    pub fn status(self) -> StatusCode {
        match self {
            EdgeError::MissingHost
            | EdgeError::MultipleHost
            | EdgeError::InvalidHost
            | EdgeError::TransferEncoding
            | EdgeError::Path(_) => StatusCode::BAD_REQUEST,
            EdgeError::UnknownCoding => StatusCode::NOT_IMPLEMENTED,
            EdgeError::UriTooLong => StatusCode::URI_TOO_LONG,
            EdgeError::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            EdgeError::Connect => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The `reason` label of `switchyard_client_errors_total`.
    pub fn reason(self) -> &'static str {
        match self {
            EdgeError::MissingHost => "missing_host",
            EdgeError::MultipleHost => "multiple_host",
            EdgeError::InvalidHost => "invalid_host",
            EdgeError::TransferEncoding => "transfer_encoding",
            EdgeError::UnknownCoding => "unknown_transfer_coding",
            EdgeError::UriTooLong => "uri_too_long",
            EdgeError::Path(_) => "invalid_path",
            EdgeError::BodyTooLarge => "body_too_large",
            EdgeError::Connect => "connect_method",
        }
    }
}

/// Why a client's request body could not be read. Always the client's fault: the
/// client gets a 4xx and nothing counts against a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientBodyError {
    /// The framing broke (chunk-size line, line endings, extensions, trailers).
    #[error("the request body is malformed")]
    Malformed,
    /// Over `limits.max_body_bytes`.
    #[error("the request body is larger than the limit")]
    TooLarge,
    /// Nothing arrived for `limits.body_idle_timeout`.
    #[error("the client sent no body bytes within the body idle timeout")]
    Idle,
    /// The whole body took longer than `limits.body_timeout`.
    #[error("the request body took longer than the body timeout")]
    Slow,
    /// The connection closed or was reset before the body ended.
    #[error("the client went away before the end of the request body")]
    Aborted,
}

impl ClientBodyError {
    /// The status the client gets.
    pub fn status(self) -> http::StatusCode {
        use http::StatusCode;
        match self {
            ClientBodyError::Malformed | ClientBodyError::Aborted => StatusCode::BAD_REQUEST,
            ClientBodyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ClientBodyError::Idle | ClientBodyError::Slow => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The `reason` label of `switchyard_client_errors_total`.
    pub fn reason(self) -> &'static str {
        match self {
            ClientBodyError::Malformed => "body_malformed",
            ClientBodyError::TooLarge => "body_too_large",
            ClientBodyError::Idle => "body_idle_timeout",
            ClientBodyError::Slow => "body_timeout",
            ClientBodyError::Aborted => "client_aborted",
        }
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
