//! Per-connection timers hyper does not provide in the shape we need: a deadline for
//! receiving a whole request head (slowloris), separate from the idle keep-alive
//! timeout between requests. hyper's own `header_read_timeout` also runs while a
//! keep-alive connection sits idle, which would cap idle connections at 10 s.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::clock;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// What the watchdog needs to know about one client connection.
#[derive(Debug, Default)]
pub struct ConnActivity {
    in_flight: AtomicU32,
    /// When bytes of a new request head started arriving (0 = not receiving one).
    head_started_ms: AtomicU64,
    /// When the connection last became idle.
    idle_since_ms: AtomicU64,
    h2: AtomicBool,
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

    fn bytes_read(&self, data: &[u8]) {
        if !self.first_read_done.swap(true, Ordering::Relaxed) && data.starts_with(H2_PREFACE) {
            self.h2.store(true, Ordering::Relaxed);
        }
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started_ms.load(Ordering::Relaxed) == 0
            && !self.h2.load(Ordering::Relaxed)
        {
            self.head_started_ms
                .store(clock::now_ms(), Ordering::Relaxed);
        }
    }

    /// Whether the client has not sent a byte yet (a connection just accepted).
    pub fn received_nothing(&self) -> bool {
        !self.first_read_done.load(Ordering::Relaxed)
    }

    /// Resolves when the connection should be closed; checks on each deadline.
    pub async fn watchdog(&self, header_timeout: Duration, idle_timeout: Duration) -> Expiry {
        let header_ms = header_timeout.as_millis() as u64;
        let idle_ms = idle_timeout.as_millis() as u64;
        loop {
            let now = clock::now_ms();
            let head = self.head_started_ms.load(Ordering::Relaxed);
            let busy = self.in_flight.load(Ordering::Acquire) > 0;
            let mut wake = now + header_ms.min(idle_ms).max(100);
            if head != 0 {
                if now >= head + header_ms {
                    return Expiry::HeaderTimeout;
                }
                wake = wake.min(head + header_ms);
            } else if !busy {
                let idle = self.idle_since_ms.load(Ordering::Relaxed);
                if now >= idle + idle_ms {
                    return Expiry::Idle;
                }
                wake = wake.min(idle + idle_ms);
            }
            tokio::time::sleep(Duration::from_millis(wake.saturating_sub(now).max(5))).await;
        }
    }
}

/// An I/O stream that reports reads to its [`ConnActivity`].
pub struct ActivityIo<T> {
    inner: T,
    activity: Arc<ConnActivity>,
}

impl<T> ActivityIo<T> {
    /// Wraps a client stream.
    pub fn new(inner: T, activity: Arc<ConnActivity>) -> Self {
        Self { inner, activity }
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
        if let Poll::Ready(Ok(())) = &polled {
            let filled = &buf.filled()[before..];
            if !filled.is_empty() {
                self.activity.bytes_read(filled);
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
