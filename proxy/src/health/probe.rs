//! One health probe: a TCP connect, or an HTTP request whose status and body prefix
//! are captured for the evaluator.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Request, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::config::ProbeKind;
use crate::plugin::CustomProbe;

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

/// Runs one probe against `addr`, bounded by `timeout`.
pub async fn probe(kind: &ProbeKind, addr: SocketAddr, timeout: Duration) -> ProbeReport {
    probe_as(kind, None, addr, timeout).await
}

/// [`probe`], sending `custom` (a health plugin's `probe-request`) in place of an
/// HTTP check's configured method and path. A TCP check ignores it.
pub async fn probe_as(
    kind: &ProbeKind,
    custom: Option<&CustomProbe>,
    addr: SocketAddr,
    timeout: Duration,
) -> ProbeReport {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, run(kind, custom, addr)).await;
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
) -> Result<ProbeReport, ProbeError> {
    let stream = TcpStream::connect(addr).await.map_err(io_error)?;
    let ProbeKind::Http {
        method, path, host, ..
    } = kind
    else {
        return Ok(ProbeReport::default());
    };
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeError::Other(e.to_string()))?;
    let conn_task = tokio::spawn(conn);
    let host = host.clone().unwrap_or_else(|| addr.to_string());
    let (method, path) = match custom {
        Some(c) => (&c.method, c.path.as_str()),
        None => (method, path.as_str()),
    };
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(header::HOST, host)
        .header(header::USER_AGENT, "switchyard-health-check")
        .header(header::CONNECTION, "close");
    if let (Some(c), Some(headers)) = (custom, builder.headers_mut()) {
        headers.extend(c.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| ProbeError::Other(e.to_string()))?;
    let response = sender.send_request(request).await.map_err(hyper_error)?;
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
