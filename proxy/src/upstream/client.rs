//! The pooled HTTP client that carries requests to backends.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::config::Limits;

/// Boxed error type of request and response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type sent to backends.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// Keep-alive connections to every backend, bounded per backend.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<HttpConnector, UpstreamBody>,
}

impl UpstreamClient {
    /// A client honouring the connect timeout, idle pool limits, and the head size
    /// and field count limits for answers.
    pub fn new(limits: &Limits) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.connect_timeout));
        connector.set_nodelay(true);
        connector.set_keepalive(Some(Duration::from_secs(60)));
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(limits.upstream_idle_timeout)
            .pool_max_idle_per_host(limits.upstream_idle_per_backend)
            // An answer head over the request limits is a 502, never relayed.
            .http1_max_buf_size(limits.max_header_bytes.max(8192))
            .http1_max_headers(limits.max_headers)
            .build(connector);
        Self { client }
    }

    /// The underlying hyper-util client.
    pub fn inner(&self) -> &Client<HttpConnector, UpstreamBody> {
        &self.client
    }
}
