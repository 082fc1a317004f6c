//! Per-connection timers hyper does not provide in the shape we need: a deadline for
//! receiving a whole request head (slowloris), separate from the idle keep-alive
//! timeout between requests. hyper's own `header_read_timeout` also runs while a
//! keep-alive connection sits idle, which would cap idle connections at 10 s.
//!
//! The same reader recognises an HTTP/2 connection by its preface and runs the
//! [`FrameMeter`] over what the client sends, ending the connection on a flood.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::h2_flood::{Flood, FrameMeter, PREFACE};
use crate::clock;

/// What the watchdog needs to know about one client connection.
#[derive(Debug, Default)]
pub struct ConnActivity {
    in_flight: AtomicU32,
    /// When bytes of a new request head started arriving (0 = not receiving one).
    head_started_ms: AtomicU64,
    /// When the connection last became idle.
    idle_since_ms: AtomicU64,
    h2: AtomicBool,
    /// The HTTP/2 flood that ended the connection, if one did ([`Flood`] code).
    flood: AtomicU8,
    /// Whether the client has sent any byte yet.
    first_read_done: AtomicBool,
}

/// Why the watchdog ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// A request head took too long to arrive.
    HeaderTimeout,
    /// No request for the idle timeout.
    Idle,
}

impl ConnActivity {
    /// A connection that just opened (idle from now).
    pub fn new() -> Arc<Self> {
        let activity = Self::default();
        activity
            .idle_since_ms
            .store(clock::now_ms(), Ordering::Relaxed);
        Arc::new(activity)
    }

    /// A request head was parsed and the request is being served.
    pub fn request_started(&self) {
        self.head_started_ms.store(0, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// A request's response ended.
    pub fn request_finished(&self) {
        if self.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle_since_ms.store(clock::now_ms(), Ordering::Relaxed);
        }
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
            && !self.h2.load(Ordering::Relaxed)
        {
            self.head_started_ms
                .store(clock::now_ms(), Ordering::Relaxed);
        }
    }

    /// What is left of the idle timeout of a connection with no request in flight:
    /// a parked connection waits on this one timer.
    pub fn idle_left(&self, idle_timeout: Duration) -> Duration {
        let since = self.idle_since_ms.load(Ordering::Relaxed);
        let until = since.saturating_add(idle_timeout.as_millis() as u64);
        Duration::from_millis(until.saturating_sub(clock::now_ms()))
    }

    /// Whether the client has not sent a byte yet (a connection just accepted).
    pub fn received_nothing(&self) -> bool {
        !self.first_read_done.load(Ordering::Relaxed)
    }

    /// The HTTP/2 flood that ended this connection, if one did.
    pub fn flood(&self) -> Option<Flood> {
        Flood::from_code(self.flood.load(Ordering::Acquire))
    }

    /// The connection speaks HTTP/2: no request-head deadline applies to it.
    fn is_h2(&self) {
        self.h2.store(true, Ordering::Relaxed);
        self.head_started_ms.store(0, Ordering::Relaxed);
    }

    /// Resolves when the connection should be closed; checks on each deadline.
    pub async fn watchdog(&self, header_timeout: Duration, idle_timeout: Duration) -> Expiry {
        match self.watch(header_timeout, idle_timeout, None).await {
            Watch::Expired(expiry) => expiry,
            // Never asked for.
            Watch::Park => Expiry::Idle,
        }
    }

    /// [`Self::watchdog`] that also resolves once an HTTP/1 keep-alive connection
    /// has been idle for `park_after` (with no part of a next request received).
    pub async fn watch(
        &self,
        header_timeout: Duration,
        idle_timeout: Duration,
        park_after: Option<Duration>,
    ) -> Watch {
        let header_ms = header_timeout.as_millis() as u64;
        let idle_ms = idle_timeout.as_millis() as u64;
        let park_ms = park_after.map(|p| p.as_millis() as u64);
        loop {
            let now = clock::now_ms();
            let head = self.head_started_ms.load(Ordering::Relaxed);
            let busy = self.in_flight.load(Ordering::Acquire) > 0;
            let mut wake = now + header_ms.min(idle_ms).max(100);
            if let Some(park_ms) = park_ms {
                // Requests come and go without waking this: look again soon enough
                // to park within two `park_after` of the last one.
                wake = wake.min(now + park_ms.max(100));
            }
            if head != 0 {
                if now >= head + header_ms {
                    return Watch::Expired(Expiry::HeaderTimeout);
                }
                wake = wake.min(head + header_ms);
            } else if !busy {
                let idle = self.idle_since_ms.load(Ordering::Relaxed);
                if now >= idle + idle_ms {
                    return Watch::Expired(Expiry::Idle);
                }
                wake = wake.min(idle + idle_ms);
                if let Some(park_ms) = park_ms
                    && !self.h2.load(Ordering::Relaxed)
                    && self.first_read_done.load(Ordering::Relaxed)
                {
                    if now >= idle + park_ms {
                        return Watch::Park;
                    }
                    wake = wake.min(idle + park_ms);
                }
            }
            tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now).max(5))).await;
        }
    }
}

/// What [`ConnActivity::watch`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The connection is to be closed.
    Expired(Expiry),
    /// An idle HTTP/1 connection may be parked (see [`super::park`]).
    Park,
}

/// What the reader knows about the protocol so far.
#[derive(Debug)]
enum Protocol {
    /// Matching the first bytes against the HTTP/2 preface (`n` matched so far).
    Sniffing(usize),
    /// HTTP/1: nothing more to follow.
    Http1,
    /// HTTP/2: every frame goes through the meter.
    Http2(Box<FrameMeter>),
}

/// An I/O stream that reports reads to its [`ConnActivity`] and meters HTTP/2 frames.
pub struct ActivityIo<T> {
    inner: T,
    activity: Arc<ConnActivity>,
    protocol: Protocol,
    max_header_block: usize,
}

impl<T> ActivityIo<T> {
    /// Wraps a client stream whose HTTP/2 header blocks may be `max_header_block` long.
    pub fn new(inner: T, activity: Arc<ConnActivity>, max_header_block: usize) -> Self {
        Self {
            inner,
            activity,
            protocol: Protocol::Sniffing(0),
            max_header_block,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    fn observe(&mut self, mut data: &[u8]) -> io::Result<()> {
        if let Protocol::Sniffing(0) = self.protocol {
            self.activity.first_read_done.store(true, Ordering::Relaxed);
        }
        if let Protocol::Sniffing(matched) = self.protocol {
            let n = (PREFACE.len() - matched).min(data.len());
            if data[..n] == PREFACE[matched..matched + n] {
                if matched + n == PREFACE.len() {
                    self.activity.is_h2();
                    self.protocol =
                        Protocol::Http2(Box::new(FrameMeter::new(self.max_header_block)));
                } else {
                    self.protocol = Protocol::Sniffing(matched + n);
                }
                data = &data[n..];
            } else {
                self.protocol = Protocol::Http1;
            }
        }
        match &mut self.protocol {
            Protocol::Http2(meter) => meter.feed(data, clock::now_ms()).map_err(|flood| {
                self.activity.flood.store(flood.code(), Ordering::Release);
                io::Error::new(io::ErrorKind::InvalidData, flood)
            }),
            _ => {
                self.activity.bytes_read();
                Ok(())
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ActivityIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled
            && buf.filled().len() > before
        {
            let filled = &buf.filled()[before..];
            if let Err(e) = self.observe(filled) {
                return Poll::Ready(Err(e));
            }
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ActivityIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
