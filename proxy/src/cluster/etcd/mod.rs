//! An etcd v3 client over etcd's own JSON gRPC gateway (`/v3/kv/range`, `/v3/kv/txn`,
//! `/v3/watch`, `/v3/lease/*`, `/v3/auth/authenticate`), spoken with the hyper client
//! and rustls the proxy already uses. The gateway is etcd's documented HTTP API and
//! needs no generated protobuf code, so building Switchyard needs no `protoc`.
//!
//! Endpoints are tried in order, starting with the one that answered last: a refused
//! connection or an etcd member without a raft leader moves on to the next member,
//! so losing one member of a healthy etcd cluster is invisible to callers.

pub mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::{ClusterConfig, EtcdAuth, EtcdTls};
use crate::crypto::pem;
pub use wire::{Compare, Event, KeyValue, Op, RangeResponse, TxnResponse, WatchResponse};
use wire::{ErrorBody, Streamed, b64};

/// gRPC status codes etcd answers with that another member may not share.
const UNAVAILABLE: i32 = 14;
const DEADLINE_EXCEEDED: i32 = 4;
const UNAUTHENTICATED: i32 = 16;
/// A watch message larger than this is a broken stream, not data.
const MAX_WATCH_MESSAGE: usize = 16 * 1024 * 1024;

/// Why an etcd request failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// No member answered. With `unconfirmed`, a request was sent and its answer
    /// lost, so a write may still have taken effect.
    #[error("no etcd member answered ({detail})")]
    Unreachable { detail: String, unconfirmed: bool },
    /// etcd answered with an error.
    #[error("etcd refused the request: {message}")]
    Refused { code: i32, message: String },
    /// A watch started below the oldest revision etcd still keeps.
    #[error("etcd has compacted its history past revision {0}")]
    Compacted(i64),
    /// An answer that is not the gateway's JSON.
    #[error("unexpected answer from etcd: {0}")]
    Protocol(String),
    /// TLS to etcd could not be set up from the configured files.
    #[error("TLS to etcd: {0}")]
    Tls(String),
}

impl EtcdError {
    /// Whether a write may have taken effect although no answer said so.
    pub fn unconfirmed(&self) -> bool {
        matches!(
            self,
            EtcdError::Unreachable {
                unconfirmed: true,
                ..
            }
        )
    }
}

/// The client. Cheap to clone; clones share connections and the auth token.
#[derive(Clone)]
pub struct Etcd {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<Uri>,
    preferred: AtomicUsize,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
    auth: Option<EtcdAuth>,
    token: Mutex<Option<Arc<str>>>,
}

/// How one attempt at one member went.
enum Attempt<T> {
    Done(T),
    /// Try the next member (the reason is kept for the error).
    Next {
        why: String,
        sent: bool,
    },
    Fail(EtcdError),
}

impl Etcd {
    /// A client for the endpoints of `[cluster]`.
    pub fn new(config: &ClusterConfig) -> Result<Etcd, EtcdError> {
        let tls = tls_config(config.tls.as_ref())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(config.timeout));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Etcd {
            inner: Arc::new(Inner {
                endpoints: config.etcd.clone(),
                preferred: AtomicUsize::new(0),
                http: client,
                timeout: config.timeout,
                auth: config.auth.clone(),
                token: Mutex::new(None),
            }),
        })
    }

    /// The configured endpoints, for messages.
    pub fn endpoints(&self) -> String {
        let list: Vec<String> = self
            .inner
            .endpoints
            .iter()
            .map(ToString::to_string)
            .collect();
        list.join(", ")
    }

    /// Reads `key`, or with `end` every key in `[key, end)`, at `revision` (0: latest).
    pub async fn range(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        revision: i64,
    ) -> Result<RangeResponse, EtcdError> {
        let mut body = json!({ "key": b64(key) });
        if let Some(end) = end {
            body["range_end"] = json!(b64(end));
        }
        if revision > 0 {
            body["revision"] = json!(revision.to_string());
        }
        self.call("/v3/kv/range", &body).await
    }

    /// Every key in `[from, end)` at `revision` (0: latest). No limit is set, so
    /// etcd answers with the whole range at once.
    pub async fn range_between(
        &self,
        from: &[u8],
        end: &[u8],
        revision: i64,
    ) -> Result<RangeResponse, EtcdError> {
        self.range(from, Some(end), revision).await
    }

    /// Every key starting with `prefix`, at `revision` (0: latest).
    pub async fn range_prefix(
        &self,
        prefix: &[u8],
        revision: i64,
    ) -> Result<RangeResponse, EtcdError> {
        self.range_between(prefix, &wire::prefix_end(prefix), revision)
            .await
    }

    /// Runs a transaction: `success` if every compare holds, `failure` otherwise.
    pub async fn txn(
        &self,
        compare: &[Compare],
        success: &[Op],
        failure: &[Op],
    ) -> Result<TxnResponse, EtcdError> {
        let body = json!({
            "compare": compare.iter().map(Compare::to_json).collect::<Vec<_>>(),
            "success": success.iter().map(Op::to_json).collect::<Vec<_>>(),
            "failure": failure.iter().map(Op::to_json).collect::<Vec<_>>(),
        });
        self.call("/v3/kv/txn", &body).await
    }

    /// Writes one key (bound to `lease` when given); returns the revision.
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<i64, EtcdError> {
        let mut body = json!({ "key": b64(key), "value": b64(value) });
        if let Some(lease) = lease {
            body["lease"] = json!(lease.to_string());
        }
        let answer: wire::WriteResponse = self.call("/v3/kv/put", &body).await?;
        Ok(answer.header.revision)
    }

    /// Deletes every key starting with `prefix`.
    pub async fn delete_prefix(&self, prefix: &[u8]) -> Result<i64, EtcdError> {
        let body = json!({ "key": b64(prefix), "range_end": b64(&wire::prefix_end(prefix)) });
        let answer: wire::WriteResponse = self.call("/v3/kv/deleterange", &body).await?;
        Ok(answer.header.revision)
    }

    /// Drops the history before `revision` (keys' current values stay).
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        let body = json!({ "revision": revision.to_string() });
        let _: Value = self.call("/v3/kv/compaction", &body).await?;
        Ok(())
    }

    /// A new lease of `ttl`; returns its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let body = json!({ "TTL": ttl.as_secs().max(1).to_string() });
        let answer: wire::LeaseResponse = self.call("/v3/lease/grant", &body).await?;
        if !answer.error.is_empty() || answer.id == 0 {
            return Err(EtcdError::Refused {
                code: 0,
                message: format!("lease not granted: {}", answer.error),
            });
        }
        Ok(answer.id)
    }

    /// Renews a lease; returns its remaining TTL in seconds (0: the lease is gone).
    pub async fn keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        let body = json!({ "ID": lease.to_string() });
        let answer: Streamed<wire::LeaseResponse> = self.call("/v3/lease/keepalive", &body).await?;
        if let Some(error) = answer.error {
            return Err(refused(error));
        }
        Ok(answer.result.map_or(0, |r| r.ttl))
    }

    /// Ends a lease now: its keys go at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), EtcdError> {
        let body = json!({ "ID": lease.to_string() });
        let _: Value = self.call("/v3/lease/revoke", &body).await?;
        Ok(())
    }

    /// Starts a watch of every key starting with `prefix`, from `revision` on.
    pub async fn watch_prefix(&self, prefix: &[u8], revision: i64) -> Result<Watch, EtcdError> {
        let body = json!({
            "create_request": {
                "key": b64(prefix),
                "range_end": b64(&wire::prefix_end(prefix)),
                "start_revision": revision.to_string(),
            }
        });
        let body = Bytes::from(body.to_string());
        let mut reasons = Vec::new();
        for index in self.order() {
            let request = self.request(index, "/v3/watch", body.clone())?;
            let sent = tokio::time::timeout(self.inner.timeout, self.inner.http.request(request));
            match sent.await {
                Ok(Ok(response)) if response.status() == StatusCode::OK => {
                    let mut watch = Watch {
                        body: response.into_body(),
                        buffer: BytesMut::new(),
                    };
                    let first = tokio::time::timeout(self.inner.timeout, watch.next()).await;
                    match first {
                        Ok(Ok(Some(w))) if w.created && !w.canceled => {
                            self.inner.preferred.store(index, Ordering::Relaxed);
                            return Ok(watch);
                        }
                        Ok(Ok(Some(w))) if w.compact_revision > 0 => {
                            return Err(EtcdError::Compacted(w.compact_revision));
                        }
                        Ok(Ok(Some(w))) => {
                            reasons.push(format!(
                                "{}: watch not created: {}",
                                self.name(index),
                                w.cancel_reason
                            ));
                        }
                        Ok(Ok(None)) => {
                            reasons.push(format!("{}: watch stream ended", self.name(index)))
                        }
                        Ok(Err(e)) => reasons.push(format!("{}: {e}", self.name(index))),
                        Err(_) => {
                            reasons.push(format!("{}: no answer to the watch", self.name(index)))
                        }
                    }
                }
                Ok(Ok(response)) => {
                    let status = response.status();
                    let error = read_error(response).await;
                    if error.code == UNAUTHENTICATED && self.inner.auth.is_some() {
                        *self.inner.token.lock() = None;
                    }
                    reasons.push(format!("{}: {status}: {}", self.name(index), error.message));
                }
                Ok(Err(e)) => reasons.push(format!("{}: {}", self.name(index), connect_error(&e))),
                Err(_) => reasons.push(format!("{}: timed out", self.name(index))),
            }
        }
        Err(EtcdError::Unreachable {
            detail: reasons.join("; "),
            unconfirmed: false,
        })
    }

    /// Member indexes in the order to try them: the last one that worked first.
    fn order(&self) -> impl Iterator<Item = usize> + use<> {
        let n = self.inner.endpoints.len();
        let first = self.inner.preferred.load(Ordering::Relaxed) % n.max(1);
        (0..n).map(move |i| (first + i) % n)
    }

    fn name(&self, index: usize) -> String {
        self.inner.endpoints[index].to_string()
    }

    fn request(
        &self,
        index: usize,
        path: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, EtcdError> {
        let base = &self.inner.endpoints[index];
        let uri = format!(
            "{}://{}{path}",
            base.scheme_str().unwrap_or("http"),
            base.authority().map_or("", |a| a.as_str())
        );
        let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = self.inner.token.lock().clone() {
            request = request.header(header::AUTHORIZATION, token.as_ref());
        }
        request
            .body(Full::new(body))
            .map_err(|e| EtcdError::Protocol(e.to_string()))
    }

    /// Gets a token when etcd has auth on and none is held.
    async fn authenticate(&self, index: usize) -> Result<(), EtcdError> {
        let Some(auth) = &self.inner.auth else {
            return Ok(());
        };
        if self.inner.token.lock().is_some() {
            return Ok(());
        }
        let body = json!({ "name": auth.username, "password": auth.password });
        let request = self.request(
            index,
            "/v3/auth/authenticate",
            Bytes::from(body.to_string()),
        )?;
        let response = tokio::time::timeout(self.inner.timeout, self.inner.http.request(request))
            .await
            .map_err(|_| {
                unreachable(
                    format!("{}: authentication timed out", self.name(index)),
                    false,
                )
            })?
            .map_err(|e| {
                unreachable(
                    format!("{}: {}", self.name(index), connect_error(&e)),
                    false,
                )
            })?;
        if response.status() != StatusCode::OK {
            let error = read_error(response).await;
            return Err(EtcdError::Refused {
                code: error.code,
                message: format!(
                    "authentication as `{}` failed: {}",
                    auth.username, error.message
                ),
            });
        }
        let answer: wire::AuthResponse = read_json(response, self.inner.timeout).await?;
        *self.inner.token.lock() = Some(answer.token.into());
        Ok(())
    }

    /// One unary call, moving to the next member when one cannot answer. Members
    /// without a raft leader (an election in progress) are tried again until the
    /// deadline of twice the request timeout.
    async fn call<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, EtcdError> {
        let body = Bytes::from(body.to_string());
        let deadline = tokio::time::Instant::now() + self.inner.timeout * 2;
        let mut reasons = Vec::new();
        let mut unconfirmed = false;
        loop {
            let mut electing = false;
            for index in self.order() {
                match self.attempt(index, path, body.clone()).await {
                    Attempt::Done(value) => {
                        self.inner.preferred.store(index, Ordering::Relaxed);
                        return Ok(value);
                    }
                    Attempt::Fail(e) => return Err(e),
                    Attempt::Next { why, sent } => {
                        electing |= why.contains("leader");
                        unconfirmed |= sent;
                        reasons.push(why);
                    }
                }
            }
            if !electing || tokio::time::Instant::now() + Duration::from_millis(100) >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        reasons.dedup();
        Err(EtcdError::Unreachable {
            detail: reasons.join("; "),
            unconfirmed,
        })
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        index: usize,
        path: &str,
        body: Bytes,
    ) -> Attempt<T> {
        let name = self.name(index);
        for refreshed in [false, true] {
            if let Err(e) = self.authenticate(index).await {
                return match e {
                    EtcdError::Unreachable { detail, .. } => Attempt::Next {
                        why: detail,
                        sent: false,
                    },
                    other => Attempt::Fail(other),
                };
            }
            let request = match self.request(index, path, body.clone()) {
                Ok(r) => r,
                Err(e) => return Attempt::Fail(e),
            };
            let response =
                match tokio::time::timeout(self.inner.timeout, self.inner.http.request(request))
                    .await
                {
                    Ok(Ok(response)) => response,
                    Ok(Err(e)) => {
                        // A refused connection never carried the request.
                        let sent = !e.is_connect();
                        return Attempt::Next {
                            why: format!("{name}: {}", connect_error(&e)),
                            sent,
                        };
                    }
                    Err(_) => {
                        return Attempt::Next {
                            why: format!("{name}: timed out"),
                            sent: true,
                        };
                    }
                };
            if response.status() == StatusCode::OK {
                return match read_json(response, self.inner.timeout).await {
                    Ok(value) => Attempt::Done(value),
                    Err(e) => Attempt::Next {
                        why: format!("{name}: {e}"),
                        sent: true,
                    },
                };
            }
            let status = response.status();
            let error = read_error(response).await;
            match error.code {
                UNAUTHENTICATED if self.inner.auth.is_some() && !refreshed => {
                    *self.inner.token.lock() = None;
                    continue;
                }
                UNAVAILABLE | DEADLINE_EXCEEDED => {
                    return Attempt::Next {
                        why: format!("{name}: {}", error.message),
                        sent: error.code == DEADLINE_EXCEEDED,
                    };
                }
                _ if status.is_server_error() && error.message.is_empty() => {
                    return Attempt::Next {
                        why: format!("{name}: {status}"),
                        sent: true,
                    };
                }
                _ => return Attempt::Fail(refused(error)),
            }
        }
        Attempt::Next {
            why: format!("{name}: the auth token was refused twice"),
            sent: false,
        }
    }
}

fn unreachable(detail: String, unconfirmed: bool) -> EtcdError {
    EtcdError::Unreachable {
        detail,
        unconfirmed,
    }
}

fn refused(error: ErrorBody) -> EtcdError {
    let message = if error.message.is_empty() {
        error.error
    } else {
        error.message
    };
    EtcdError::Refused {
        code: error.code,
        message,
    }
}

/// A connection error with its cause (hyper's own text says little).
fn connect_error(e: &hyper_util::client::legacy::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

async fn read_json<T: DeserializeOwned>(
    response: http::Response<Incoming>,
    timeout: Duration,
) -> Result<T, EtcdError> {
    let bytes = tokio::time::timeout(timeout, response.into_body().collect())
        .await
        .map_err(|_| EtcdError::Protocol("the answer's body did not arrive in time".into()))?
        .map_err(|e| EtcdError::Protocol(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        EtcdError::Protocol(format!(
            "{e}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        ))
    })
}

async fn read_error(response: http::Response<Incoming>) -> ErrorBody {
    let status = response.status();
    let bytes = tokio::time::timeout(Duration::from_secs(2), response.into_body().collect())
        .await
        .ok()
        .and_then(Result::ok)
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let mut error = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
        code: 0,
        message: format!(
            "{status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).trim()
        ),
        error: String::new(),
    });
    if error.message.contains("CommonName of client") {
        error.message.push_str(
            " (with etcd auth on, etcd's gateway refuses client certificates that carry a Common Name: use one without, with cluster.username and password)",
        );
    }
    error
}

/// A running watch: one long HTTP answer carrying newline-separated JSON messages.
pub struct Watch {
    body: Incoming,
    buffer: BytesMut,
}

impl Watch {
    /// The next message; `None` when etcd ended the stream.
    pub async fn next(&mut self) -> Result<Option<WatchResponse>, EtcdError> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line = self.buffer.split_to(end + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let message: Streamed<WatchResponse> = serde_json::from_slice(line)
                    .map_err(|e| EtcdError::Protocol(format!("watch message: {e}")))?;
                if let Some(error) = message.error {
                    return Err(refused(error));
                }
                let Some(result) = message.result else {
                    continue;
                };
                if result.canceled && result.compact_revision > 0 {
                    return Err(EtcdError::Compacted(result.compact_revision));
                }
                if result.canceled {
                    return Err(EtcdError::Refused {
                        code: 0,
                        message: format!("watch cancelled: {}", result.cancel_reason),
                    });
                }
                return Ok(Some(result));
            }
            if self.buffer.len() > MAX_WATCH_MESSAGE {
                return Err(EtcdError::Protocol("watch message too large".into()));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => {
                    return Err(unreachable(format!("watch stream broke: {e}"), false));
                }
                Some(Ok(frame)) => {
                    if let Ok(mut data) = frame.into_data() {
                        while data.has_remaining() {
                            let chunk = data.chunk();
                            self.buffer.extend_from_slice(chunk);
                            let n = chunk.len();
                            data.advance(n);
                        }
                    }
                }
            }
        }
    }
}

/// rustls settings for `https://` endpoints (plain `http://` ones never use them).
fn tls_config(tls: Option<&EtcdTls>) -> Result<rustls::ClientConfig, EtcdError> {
    let provider = crate::crypto::provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EtcdError::Tls(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let Some(tls) = tls else {
        return Ok(builder.with_root_certificates(roots).with_no_client_auth());
    };
    let pem_error = |e: crate::tls::PemError| EtcdError::Tls(e.to_string());
    for cert in pem::read_certificates(&tls.ca).map_err(pem_error)? {
        roots
            .add(cert)
            .map_err(|e| EtcdError::Tls(format!("{}: {e}", tls.ca.display())))?;
    }
    let builder = builder.with_root_certificates(roots);
    let Some((cert, key)) = &tls.client else {
        return Ok(builder.with_no_client_auth());
    };
    let chain = pem::read_certificates(cert).map_err(pem_error)?;
    let key_der = pem::read_private_key(key).map_err(pem_error)?;
    builder
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| EtcdError::Tls(format!("client certificate: {e}")))
}
