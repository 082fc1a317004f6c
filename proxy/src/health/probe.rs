//! One health probe: a TCP connect, or an HTTP request whose status and body prefix
//! are captured for the evaluator.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::config::ProbeKind;
use crate::plugin::CustomProbe;
use crate::upstream::connect::{self, ConnectError, PoolTls, TcpSettings, UpstreamStream};

/// At most this much of a probe response body is kept for evaluation.
pub const BODY_PREFIX_LIMIT: usize = 4096;

/// Why a probe got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("timeout")]
    Timeout,
    #[error("refused")]
    Refused,
    #[error("reset")]
    Reset,
    #[error("{0}")]
    Other(String),
}

/// What a probe observed.
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    pub status: Option<u16>,
    pub headers: http::HeaderMap,
    pub body_prefix: Bytes,
    pub latency: Duration,
    pub error: Option<ProbeError>,
}

/// The TLS a probe uses: the pool's settings and the name the backend presents.
pub type ProbeTls<'a> = (&'a PoolTls, Option<&'a str>);

/// Runs one probe against `addr`, bounded by `timeout`; over TLS (the pool's
/// settings: SNI, verification, client certificate, ALPN) when `tls` is given.
pub async fn probe(
    kind: &ProbeKind,
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<ProbeTls<'_>>,
) -> ProbeReport {
    probe_as(kind, None, addr, timeout, tls).await
}

/// [`probe`], sending `custom` (a health plugin's `probe-request`) in place of an
/// HTTP check's configured method and path, over the same connection and TLS a
/// configured probe would use. A TCP check ignores it.
pub async fn probe_as(
    kind: &ProbeKind,
    custom: Option<&CustomProbe>,
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<ProbeTls<'_>>,
) -> ProbeReport {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, run(kind, custom, addr, timeout, tls)).await;
    let mut report = match result {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => ProbeReport {
            error: Some(error),
            ..ProbeReport::default()
        },
        Err(_) => ProbeReport {
            error: Some(ProbeError::Timeout),
            ..ProbeReport::default()
        },
    };
    report.latency = started.elapsed();
    report
}

async fn run(
    kind: &ProbeKind,
    custom: Option<&CustomProbe>,
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<ProbeTls<'_>>,
) -> Result<ProbeReport, ProbeError> {
    let settings = TcpSettings {
        connect_timeout: timeout,
        keepalive: Duration::from_secs(60),
    };
    let tls = tls.map(|(t, origin)| (Arc::clone(t.config()), t.server_name(addr, origin)));
    let stream = connect::connect(addr, tls, settings)
        .await
        .map_err(connect_error)?;
    let ProbeKind::Http {
        method, path, host, ..
    } = kind
    else {
        return Ok(ProbeReport::default());
    };
    let host = host.clone().unwrap_or_else(|| addr.to_string());
    let (method, path) = match custom {
        Some(c) => (&c.method, c.path.as_str()),
        None => (method, path.as_str()),
    };
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, "switchyard-health-check");
    if let (Some(c), Some(headers)) = (custom, builder.headers_mut()) {
        headers.extend(c.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Other(e.to_string()))?;
    let (response, conn_task) = send(stream, request).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut prefix = BytesMut::new();
    while prefix.len() < BODY_PREFIX_LIMIT {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let take = data.len().min(BODY_PREFIX_LIMIT - prefix.len());
                    prefix.extend_from_slice(&data[..take]);
                }
            }
            Some(Err(e)) => return Err(hyper_error(e)),
            None => break,
        }
    }
    conn_task.abort();
    Ok(ProbeReport {
        status: Some(status),
        headers,
        body_prefix: prefix.freeze(),
        latency: Duration::ZERO,
        error: None,
    })
}

/// Sends the probe request over HTTP/2 when ALPN chose it, else HTTP/1.1; returns the
/// response and the task driving the connection (aborted once the body is read).
async fn send(
    stream: UpstreamStream,
    request: Request<Empty<Bytes>>,
) -> Result<
    (
        http::Response<hyper::body::Incoming>,
        tokio::task::JoinHandle<()>,
    ),
    ProbeError,
> {
    let mut request = request;
    let h2 = stream.negotiated_h2();
    let io = TokioIo::new(stream);
    if h2 {
        // HTTP/2 carries the scheme and authority as pseudo-headers.
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let path = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        *request.uri_mut() = format!("https://{host}{path}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| ProbeError::Other(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .map_err(|e| ProbeError::Other(e.to_string()))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        let response = sender.send_request(request).await.map_err(hyper_error)?;
        return Ok((response, task));
    }
    request
        .headers_mut()
        .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ProbeError::Other(e.to_string()))?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let response = sender.send_request(request).await.map_err(hyper_error)?;
    Ok((response, task))
}

fn connect_error(e: ConnectError) -> ProbeError {
    match e {
        ConnectError::Tcp(io) => io_error(io),
        ConnectError::Timeout(_) => ProbeError::Timeout,
        other => ProbeError::Other(other.to_string()),
    }
}

fn io_error(e: std::io::Error) -> ProbeError {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ProbeError::Refused,
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
            ProbeError::Reset
        }
        std::io::ErrorKind::TimedOut => ProbeError::Timeout,
        _ => ProbeError::Other(e.to_string()),
    }
}

fn hyper_error(e: hyper::Error) -> ProbeError {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        ProbeError::Reset
    } else if e.is_timeout() {
        ProbeError::Timeout
    } else {
        ProbeError::Other(e.to_string())
    }
}
