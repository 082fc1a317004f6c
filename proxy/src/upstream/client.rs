//! The pooled HTTP client that carries requests to backends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::connect::{Connector, PoolTls, TcpSettings};
use crate::config::Limits;
use crate::error::BoxError;

/// The body type sent to backends.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;

/// Keep-alive connections to every backend, bounded per backend.
#[derive(Clone, Debug)]
pub struct UpstreamClient {
    client: Client<Connector, UpstreamBody>,
}

impl UpstreamClient {
    /// A plain-HTTP client (the request URI names the backend) honouring the connect
    /// timeout, idle pool limits, and the head size and field count limits for answers.
    pub fn new(limits: &Limits) -> Self {
        Self::build(limits, Connector::plain(tcp_settings(limits)))
    }

    /// A client for one backend over TLS (HTTP/2 where ALPN settles on it). Requests
    /// may carry any authority (the client's host): the connection always goes to
    /// `addr`, presenting the name the pool's TLS gives it.
    pub fn to_tls_backend(
        limits: &Limits,
        tls: &PoolTls,
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> Self {
        let connector = Connector::tls(
            tcp_settings(limits),
            addr,
            Arc::clone(tls.config()),
            tls.server_name(addr, origin),
        );
        Self::build(limits, connector)
    }

    fn build(limits: &Limits, connector: Connector) -> Self {
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
    pub fn inner(&self) -> &Client<Connector, UpstreamBody> {
        &self.client
    }
}

/// TCP settings for upstream connections from the configured limits.
pub fn tcp_settings(limits: &Limits) -> TcpSettings {
    TcpSettings {
        connect_timeout: limits.connect_timeout,
        keepalive: Duration::from_secs(60),
    }
}
