//! Protocol upgrades (WebSocket): after a 101, bytes are copied both ways until either
//! side closes. A tunnel is bounded like any connection: it keeps its client
//! connection's permit (global and per-client caps) for its whole life, counts as in
//! flight on its backend, is closed after `limits.tunnel_idle_timeout` without a byte
//! either way, when its backend's drain grace ends, and on shutdown once the drain
//! timeout has passed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;

use super::body::{BodyEnd, BodyOutcome};
use super::completion::Completion;
use crate::clock;
use crate::conn::ConnPermit;

/// The upgraded connections of a proxy: tracked, so shutdown can wait for them
/// within its drain timeout, and closed together once it passes.
#[derive(Debug, Default)]
pub struct Tunnels {
    tracker: TaskTracker,
    close: CancellationToken,
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TunnelEnd {
    /// One side closed.
    Closed,
    /// One side failed (reset, broken pipe).
    Failed,
    /// No byte either way for the idle timeout.
    Idle,
    /// The backend's drain grace period ended.
    Drained,
    /// Shutdown's drain timeout passed.
    Shutdown,
}

impl Tunnels {
    /// Waits until every tunnel has ended; call [`Tunnels::close_all`] to make them.
    pub async fn wait(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// Closes every open tunnel now (shutdown's drain timeout passed).
    pub fn close_all(&self) {
        self.close.cancel();
    }

    /// Joins the client's and the backend's upgraded connections in a tracked task.
    pub(super) fn spawn(
        &self,
        client: OnUpgrade,
        backend: OnUpgrade,
        mut done: Completion,
        permit: Arc<ConnPermit>,
        idle_timeout: Duration,
    ) {
        let state = done.attempt.upstream().map(|(_, b)| Arc::clone(&b.state));
        let drained = state.as_ref().map(|s| s.tunnel_token()).unwrap_or_default();
        if let Some(s) = &state {
            s.tunnels.fetch_add(1, Ordering::AcqRel);
        }
        let shutdown = self.close.clone();
        self.tracker.spawn(async move {
            let end = match tokio::try_join!(client, backend) {
                Ok((client, backend)) => {
                    let last_active = Arc::new(AtomicU64::new(clock::now_ms()));
                    let mut client = Touched {
                        inner: TokioIo::new(client),
                        last_active: Arc::clone(&last_active),
                    };
                    let mut backend = TokioIo::new(backend);
                    tokio::select! {
                        copied = tokio::io::copy_bidirectional(&mut client, &mut backend) => match copied {
                            Ok((up, down)) => {
                                debug!(bytes_up = up, bytes_down = down, "upgraded connection closed");
                                TunnelEnd::Closed
                            }
                            Err(e) => {
                                debug!(error = %e, "upgraded connection failed");
                                TunnelEnd::Failed
                            }
                        },
                        () = idle(&last_active, idle_timeout) => TunnelEnd::Idle,
                        () = drained.cancelled() => TunnelEnd::Drained,
                        () = shutdown.cancelled() => TunnelEnd::Shutdown,
                    }
                }
                Err(e) => {
                    debug!(error = %e, "upgrade did not complete");
                    TunnelEnd::Failed
                }
            };
            match end {
                TunnelEnd::Idle => debug!(
                    idle_ms = idle_timeout.as_millis() as u64,
                    "upgraded connection closed: idle timeout"
                ),
                TunnelEnd::Drained => {
                    debug!("upgraded connection closed: the backend's drain grace is over")
                }
                TunnelEnd::Shutdown => {
                    debug!("upgraded connection closed: shutdown drain timeout passed")
                }
                TunnelEnd::Closed | TunnelEnd::Failed => {}
            }
            if let Some(s) = &state {
                s.tunnels.fetch_sub(1, Ordering::AcqRel);
            }
            done.finish(if end == TunnelEnd::Failed {
                BodyOutcome::Abandoned
            } else {
                BodyOutcome::Complete
            });
            drop(permit);
        });
    }
}

/// Resolves once no byte has moved for `timeout`.
async fn idle(last_active: &AtomicU64, timeout: Duration) {
    let timeout_ms = timeout.as_millis() as u64;
    loop {
        let since = last_active.load(Ordering::Relaxed);
        let now = clock::now_ms();
        if now.saturating_sub(since) >= timeout_ms {
            return;
        }
        let left = since + timeout_ms - now;
        tokio::time::sleep(Duration::from_millis(left.max(1))).await;
    }
}

/// The client side of a tunnel, noting when bytes last moved (a read is the client
/// talking, a write is the backend answering).
struct Touched<T> {
    inner: T,
    last_active: Arc<AtomicU64>,
}

impl<T> Touched<T> {
    fn touch(&self) {
        self.last_active.store(clock::now_ms(), Ordering::Relaxed);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Touched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Touched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
