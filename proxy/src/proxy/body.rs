//! Request bodies that can be replayed on retry, and response bodies that report how
//! they ended.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

use crate::error::{BoxError, ClientBodyError};
use crate::upstream::{ResponseBody, UpstreamBody, no_body};

/// What a client's request body may do, from `[limits]` and the pool's retry policy.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Longest wait for the next bytes of the body (`limits.body_idle_timeout`).
    pub idle: Duration,
    /// Longest time to receive the whole body (`limits.body_timeout`).
    pub total: Duration,
    /// Largest body accepted (`limits.max_body_bytes`); `None` = no limit.
    pub max_bytes: Option<u64>,
    /// Bodies up to this size are read before forwarding so they can be replayed
    /// (`retry.buffer_body`).
    pub buffer: u64,
}

impl ClientBodyError {
    fn code(self) -> u8 {
        match self {
            ClientBodyError::Malformed => 1,
            ClientBodyError::TooLarge => 2,
            ClientBodyError::Idle => 3,
            ClientBodyError::Slow => 4,
            ClientBodyError::Aborted => 5,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => ClientBodyError::Malformed,
            2 => ClientBodyError::TooLarge,
            3 => ClientBodyError::Idle,
            4 => ClientBodyError::Slow,
            5 => ClientBodyError::Aborted,
            _ => return None,
        })
    }

    /// Reads hyper's body error: a connection that ended early (or an HTTP/2 stream
    /// the client reset) is an abort, the rest is broken framing.
    fn classify(error: &hyper::Error) -> Self {
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = cause {
            if let Some(h2) = e.downcast_ref::<h2::Error>() {
                // An HTTP/2 client that cancels its stream or drops its connection.
                return if h2.is_reset() || h2.is_go_away() || h2.is_io() {
                    ClientBodyError::Aborted
                } else {
                    ClientBodyError::Malformed
                };
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                use std::io::ErrorKind;
                return match io.kind() {
                    ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe => ClientBodyError::Aborted,
                    _ => ClientBodyError::Malformed,
                };
            }
            cause = e.source();
        }
        if error.is_incomplete_message() || error.is_canceled() {
            ClientBodyError::Aborted
        } else {
            ClientBodyError::Malformed
        }
    }
}

const READING: u8 = 0;
const AWAITING_CLIENT: u8 = 1;
const DONE: u8 = 2;
const FAILED: u8 = 3;

/// How a client body being forwarded is doing, shared with the forward loop so it
/// can tell a slow backend from a slow client and a broken body from a broken
/// backend.
#[derive(Debug, Default)]
pub struct BodyWatch {
    state: AtomicU8,
    error: AtomicU8,
    /// Clock milliseconds when the last byte arrived (0 = not finished).
    finished_at_ms: AtomicU64,
    /// Clock milliseconds when the body last handed bytes on (or started).
    progress_at_ms: AtomicU64,
    /// Whether an upstream connection has asked for the body yet: until then the
    /// try is still connecting, which `limits.connect_timeout` bounds.
    handed_over: AtomicBool,
}

impl BodyWatch {
    /// The body is waiting for bytes the client has not sent yet.
    pub fn awaiting_client(&self) -> bool {
        self.state.load(Ordering::Acquire) == AWAITING_CLIENT
    }

    /// The whole body has been read.
    pub fn finished(&self) -> bool {
        self.state.load(Ordering::Acquire) == DONE
    }

    /// How long ago the whole body had arrived, if it has.
    pub fn finished_ms_ago(&self) -> Option<Duration> {
        match self.finished_at_ms.load(Ordering::Acquire) {
            0 => None,
            at => Some(Duration::from_millis(
                crate::clock::now_ms().saturating_sub(at),
            )),
        }
    }

    /// How long ago the body last handed bytes on to the backend's connection (or
    /// started). While it is neither waiting on the client nor finished, the backend
    /// is the one holding things up only once this exceeds its per-try timeout: a
    /// frame just handed on has not been written yet.
    pub fn progress_ms_ago(&self) -> Duration {
        Duration::from_millis(
            crate::clock::now_ms().saturating_sub(self.progress_at_ms.load(Ordering::Acquire)),
        )
    }

    /// Whether an upstream connection has started taking the body.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Acquire)
    }

    /// The first ask of an upstream connection: the backend's clock starts now, not
    /// when the client's body started arriving.
    fn hand_over(&self) {
        if !self.handed_over.swap(true, Ordering::AcqRel) {
            self.progressed();
        }
    }

    fn progressed(&self) {
        self.progress_at_ms
            .store(crate::clock::now_ms(), Ordering::Release);
    }

    fn finish(&self) {
        self.finished_at_ms
            .store(crate::clock::now_ms(), Ordering::Release);
        self.state.store(DONE, Ordering::Release);
    }

    /// Why the body failed, if it did.
    pub fn failure(&self) -> Option<ClientBodyError> {
        ClientBodyError::from_code(self.error.load(Ordering::Acquire))
    }

    fn fail(&self, error: ClientBodyError) {
        let _ = self
            .error
            .compare_exchange(0, error.code(), Ordering::AcqRel, Ordering::Acquire);
        self.state.store(FAILED, Ordering::Release);
    }
}

/// The client's body as read by the proxy: enforces the idle and total timeouts and
/// the size cap, and records in its [`BodyWatch`] how reading it went.
pub struct ClientBody {
    inner: Incoming,
    watch: Arc<BodyWatch>,
    limits: BodyLimits,
    read: u64,
    waiting: bool,
    idle: Pin<Box<Sleep>>,
    deadline: Pin<Box<Sleep>>,
}

impl ClientBody {
    /// Starts reading a client body now.
    pub fn new(inner: Incoming, limits: BodyLimits) -> Self {
        let now = Instant::now();
        let watch = Arc::<BodyWatch>::default();
        watch.progressed();
        Self {
            inner,
            watch,
            limits,
            read: 0,
            waiting: false,
            idle: Box::pin(tokio::time::sleep_until(now + limits.idle)),
            deadline: Box::pin(tokio::time::sleep_until(now + limits.total)),
        }
    }

    /// The shared view of this body's progress.
    pub fn watch(&self) -> &Arc<BodyWatch> {
        &self.watch
    }

    fn fail(&mut self, error: ClientBodyError) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.watch.fail(error);
        Poll::Ready(Some(Err(Box::new(error))))
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(error) = self.watch.failure() {
            return Poll::Ready(Some(Err(Box::new(error))));
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len() as u64;
                    if self.limits.max_bytes.is_some_and(|max| self.read > max) {
                        return self.fail(ClientBodyError::TooLarge);
                    }
                }
                self.waiting = false;
                self.watch.progressed();
                self.watch.state.store(READING, Ordering::Release);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let error = ClientBodyError::classify(&e);
                self.fail(error)
            }
            Poll::Ready(None) => {
                self.watch.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !self.waiting {
                    // The idle clock runs only while the body waits on the client,
                    // not while the backend is slow to read what it already has.
                    self.waiting = true;
                    let idle = self.limits.idle;
                    self.idle.as_mut().reset(Instant::now() + idle);
                    self.watch.state.store(AWAITING_CLIENT, Ordering::Release);
                }
                if self.idle.as_mut().poll(cx).is_ready() {
                    return self.fail(ClientBodyError::Idle);
                }
                if self.deadline.as_mut().poll(cx).is_ready() {
                    return self.fail(ClientBodyError::Slow);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client's request body, in the form that decides whether it can be sent twice.
pub enum RequestBody {
    /// No body: always replayable.
    Empty,
    /// A small body read in full before forwarding: replayable, and a broken one
    /// is refused before anything reaches a backend.
    Buffered(Bytes),
    /// A large or unsized body streamed through; replayable only while no attempt has
    /// started reading it (e.g. after a connect failure).
    Streaming {
        slot: Arc<Mutex<Option<Streamed>>>,
        watch: Arc<BodyWatch>,
    },
}

/// A streamed body: what was read ahead while deciding to stream, then the rest.
pub struct Streamed {
    prefix: Option<Bytes>,
    body: ClientBody,
}

impl RequestBody {
    /// Reads bodies of at most `limits.buffer` bytes in full (chunked ones too, as
    /// far as that limit); streams the rest. A body that breaks, stalls or is too
    /// large while being read here is the client's error.
    pub async fn prepare(
        body: Incoming,
        headers: &HeaderMap,
        limits: BodyLimits,
    ) -> Result<Self, ClientBodyError> {
        if body.is_end_stream() {
            return Ok(RequestBody::Empty);
        }
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if limits.max_bytes.is_some_and(|max| declared > Some(max)) {
            return Err(ClientBodyError::TooLarge);
        }
        let mut body = ClientBody::new(body, limits);
        match declared {
            Some(0) => return Ok(RequestBody::Empty),
            Some(len) if len > limits.buffer => return Ok(Self::streaming(None, body)),
            _ => {}
        }
        let mut buffered = BytesMut::new();
        loop {
            match body.frame().await {
                None => return Ok(RequestBody::Buffered(buffered.freeze())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        buffered.extend_from_slice(&data);
                    }
                    if buffered.len() as u64 > limits.buffer {
                        return Ok(Self::streaming(Some(buffered.freeze()), body));
                    }
                }
                Some(Err(_)) => {
                    return Err(body.watch().failure().unwrap_or(ClientBodyError::Malformed));
                }
            }
        }
    }

    fn streaming(prefix: Option<Bytes>, body: ClientBody) -> Self {
        let watch = Arc::clone(body.watch());
        RequestBody::Streaming {
            slot: Arc::new(Mutex::new(Some(Streamed { prefix, body }))),
            watch,
        }
    }

    /// Whether another attempt could send this body.
    pub fn can_replay(&self) -> bool {
        match self {
            RequestBody::Empty | RequestBody::Buffered(_) => true,
            RequestBody::Streaming { slot, .. } => slot.lock().is_some(),
        }
    }

    /// The progress of a streamed body (`None` when it was read in full already).
    pub fn watch(&self) -> Option<&Arc<BodyWatch>> {
        match self {
            RequestBody::Streaming { watch, .. } => Some(watch),
            _ => None,
        }
    }

    /// The body for one attempt, or `None` if a streamed body was already consumed.
    pub fn for_attempt(&self) -> Option<UpstreamBody> {
        match self {
            RequestBody::Empty => Some(no_body()),
            RequestBody::Buffered(bytes) => Some(
                Full::new(bytes.clone())
                    .map_err(|never| match never {})
                    .boxed(),
            ),
            RequestBody::Streaming { slot, .. } => {
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
    slot: Arc<Mutex<Option<Streamed>>>,
    body: Option<Streamed>,
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
            if let Some(streamed) = &taken {
                streamed.body.watch().hand_over();
            }
            self.body = taken;
        }
        match self.body.as_mut() {
            Some(streamed) => {
                if let Some(prefix) = streamed.prefix.take() {
                    return Poll::Ready(Some(Ok(Frame::data(prefix))));
                }
                Pin::new(&mut streamed.body).poll_frame(cx)
            }
            None => Poll::Ready(Some(Err("request body was already consumed".into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        let ended = |s: &Streamed| s.prefix.is_none() && s.body.is_end_stream();
        match &self.body {
            Some(s) => ended(s),
            None => self.slot.lock().as_ref().is_none_or(ended),
        }
    }

    fn size_hint(&self) -> SizeHint {
        let hint = |s: &Streamed| {
            let prefix = s.prefix.as_ref().map_or(0, |p| p.len() as u64);
            let inner = s.body.size_hint();
            let mut hint = SizeHint::new();
            hint.set_lower(inner.lower() + prefix);
            if let Some(upper) = inner.upper() {
                hint.set_upper(upper + prefix);
            }
            hint
        };
        match &self.body {
            Some(s) => hint(s),
            None => self
                .slot
                .lock()
                .as_ref()
                .map_or_else(SizeHint::default, hint),
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
    inner: ResponseBody,
    end: Option<E>,
}

impl<E: BodyEnd> TrackedBody<E> {
    /// Wraps a backend body.
    pub fn new(inner: ResponseBody, end: E) -> Self {
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
