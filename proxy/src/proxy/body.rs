//! Request bodies that can be replayed on retry, and response bodies that report how
//! they ended.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use parking_lot::Mutex;

use crate::error::ProxyError;
use crate::upstream::UpstreamBody;
use crate::upstream::client::BoxError;

/// How long the proxy waits for a small request body it buffers for retries.
const BUFFER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The client's request body, in the form that decides whether it can be sent twice.
#[derive(Debug)]
pub enum RequestBody {
    /// No body: always replayable.
    Empty,
    /// A small body read in full: replayable.
    Buffered(Bytes),
    /// A large or unsized body streamed through; replayable only while no attempt has
    /// started reading it (e.g. after a connect failure).
    Streaming(Arc<Mutex<Option<Incoming>>>),
}

impl RequestBody {
    /// Buffers bodies whose declared length is at most `limit`; streams the rest.
    pub async fn prepare(
        body: Incoming,
        headers: &HeaderMap,
        limit: u64,
    ) -> Result<Self, ProxyError> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared {
            Some(0) => Ok(RequestBody::Empty),
            Some(len) if len <= limit => {
                let collected = tokio::time::timeout(BUFFER_READ_TIMEOUT, body.collect())
                    .await
                    .map_err(|_| ProxyError::ClientBody("client sent the body too slowly".into()))?
                    .map_err(|e| ProxyError::ClientBody(e.to_string()))?;
                Ok(RequestBody::Buffered(collected.to_bytes()))
            }
            _ => Ok(RequestBody::Streaming(Arc::new(Mutex::new(Some(body))))),
        }
    }

    /// Whether another attempt could send this body.
    pub fn can_replay(&self) -> bool {
        match self {
            RequestBody::Empty | RequestBody::Buffered(_) => true,
            RequestBody::Streaming(slot) => slot.lock().is_some(),
        }
    }

    /// The body for one attempt, or `None` if a streamed body was already consumed.
    pub fn for_attempt(&self) -> Option<UpstreamBody> {
        match self {
            RequestBody::Empty => Some(Empty::new().map_err(|never| match never {}).boxed()),
            RequestBody::Buffered(bytes) => Some(
                Full::new(bytes.clone())
                    .map_err(|never| match never {})
                    .boxed(),
            ),
            RequestBody::Streaming(slot) => {
                if slot.lock().is_none() {
                    return None;
                }
                Some(
                    TakeOnFirstPoll {
                        slot: Arc::clone(slot),
                        body: None,
                    }
                    .boxed(),
                )
            }
        }
    }
}

/// Leaves the client's body in a shared slot until the upstream connection actually
/// reads it, so a failed connect hands it back untouched for the next attempt.
struct TakeOnFirstPoll {
    slot: Arc<Mutex<Option<Incoming>>>,
    body: Option<Incoming>,
}

impl Body for TakeOnFirstPoll {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.body.is_none() {
            let taken = self.slot.lock().take();
            self.body = taken;
        }
        match self.body.as_mut() {
            Some(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(Some(Err("request body was already consumed".into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.body {
            Some(b) => b.is_end_stream(),
            None => self.slot.lock().as_ref().is_none_or(Body::is_end_stream),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.body {
            Some(b) => b.size_hint(),
            None => self
                .slot
                .lock()
                .as_ref()
                .map_or_else(SizeHint::default, Body::size_hint),
        }
    }
}

/// How a proxied response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyOutcome {
    /// Every byte reached the client.
    Complete,
    /// The backend failed midway (reset, truncated, malformed): the client's stream is aborted.
    UpstreamFailed,
    /// The client went away before the end.
    Abandoned,
}

/// Told once how a response body ended.
pub trait BodyEnd: Send + Sync + 'static {
    /// Called exactly once per body.
    fn finish(&mut self, outcome: BodyOutcome);
}

/// A backend response body that tells its [`BodyEnd`] how it ended.
pub struct TrackedBody<E: BodyEnd> {
    inner: Incoming,
    end: Option<E>,
}

impl<E: BodyEnd> TrackedBody<E> {
    /// Wraps a backend body.
    pub fn new(inner: Incoming, end: E) -> Self {
        Self {
            inner,
            end: Some(end),
        }
    }
}

impl<E: BodyEnd + Unpin> Body for TrackedBody<E> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(mut end) = self.end.take() {
                    end.finish(BodyOutcome::Complete);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(mut end) = self.end.take() {
                    end.finish(BodyOutcome::UpstreamFailed);
                }
            }
            _ => {}
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<E: BodyEnd> Drop for TrackedBody<E> {
    fn drop(&mut self) {
        if let Some(mut end) = self.end.take() {
            end.finish(if self.inner.is_end_stream() {
                BodyOutcome::Complete
            } else {
                BodyOutcome::Abandoned
            });
        }
    }
}
