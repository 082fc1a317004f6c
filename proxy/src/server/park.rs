//! Idle HTTP/1 connections without hyper's buffers.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for every connection,
//! idle or not. A keep-alive connection that has been quiet for [`PARK_AFTER`] is
//! *parked*: its hyper connection is told the client went away (its next read sees
//! end of file, and its shutdown is skipped), so hyper finishes and frees everything
//! it holds, while the socket stays open here. When the client sends its next
//! request, the socket turns readable and a fresh hyper connection takes it over;
//! the client never notices.
//!
//! The stream lives in a [`Parkable`] shared by whichever hyper connection serves it
//! at the moment ([`ParkHandle`]) and the connection task; an upgraded connection
//! (WebSocket) takes its handle along and is never parked.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// How long a keep-alive connection sits idle before it is parked.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// A client stream that can outlive the hyper connections serving it.
pub struct Parkable<T> {
    shared: Arc<Shared<T>>,
}

struct Shared<T> {
    io: Mutex<T>,
    /// Reads end (EOF) and shutdown is skipped: the serving connection is to finish.
    parking: AtomicBool,
    /// A read saw that end of file: the serving connection has let go of the stream.
    parked: AtomicBool,
    /// The last write could not go out: hyper still holds bytes for the client, so
    /// the connection is not idle and must not see end of file.
    write_blocked: AtomicBool,
}

impl<T> Parkable<T> {
    /// Holds `io`.
    pub fn new(io: T) -> Self {
        Self {
            shared: Arc::new(Shared {
                io: Mutex::new(io),
                parking: AtomicBool::new(false),
                parked: AtomicBool::new(false),
                write_blocked: AtomicBool::new(false),
            }),
        }
    }

    /// A handle for the next hyper connection; clears any previous parking.
    pub fn handle(&self) -> ParkHandle<T> {
        self.shared.parking.store(false, Ordering::Relaxed);
        self.shared.parked.store(false, Ordering::Relaxed);
        ParkHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Asks the serving connection to finish: its next read sees end of file.
    pub fn park(&self) {
        self.shared.parking.store(true, Ordering::Relaxed);
    }

    /// Whether the serving connection finished because it was parked (rather than
    /// because the client closed, an error, or an upgrade).
    pub fn parked(&self) -> bool {
        self.shared.parked.load(Ordering::Relaxed)
    }
}

impl<T: Readiness> Parkable<T> {
    /// Waits until the client sends something (or closes).
    pub async fn readable(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.shared.io.lock().poll_readable(cx)).await
    }
}

/// The stream as one hyper connection sees it.
pub struct ParkHandle<T> {
    shared: Arc<Shared<T>>,
}

impl<T: AsyncRead + Unpin> AsyncRead for ParkHandle<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let shared = &*self.shared;
        if shared.parking.load(Ordering::Relaxed) && !shared.write_blocked.load(Ordering::Relaxed) {
            shared.parked.store(true, Ordering::Relaxed);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *shared.io.lock()).poll_read(cx, buf)
    }
}

impl<T> ParkHandle<T> {
    /// Notes whether a write went out, so a connection with bytes still to send is
    /// never parked.
    fn written<R>(&self, polled: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        self.shared
            .write_blocked
            .store(polled.is_pending(), Ordering::Relaxed);
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ParkHandle<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut *self.shared.io.lock()).poll_write(cx, buf);
        self.written(polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut *self.shared.io.lock()).poll_write_vectored(cx, bufs);
        self.written(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.shared.io.lock().is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut *self.shared.io.lock()).poll_flush(cx);
        self.written(polled)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.shared.parking.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut *self.shared.io.lock()).poll_shutdown(cx)
    }
}

/// Waiting for a stream to become readable without reading from it.
pub trait Readiness {
    /// Ready once the socket underneath has something to read (or was closed).
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl Readiness for TcpStream {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_read_ready(cx)
    }
}

/// A TLS stream is only parked once its hyper connection has read every byte the
/// TLS layer decrypted, so the socket's readiness is the stream's.
impl Readiness for tokio_rustls::server::TlsStream<TcpStream> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_ref().0.poll_read_ready(cx)
    }
}

impl<T: Readiness> Readiness for crate::conn::ActivityIo<T> {
    fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_ref().poll_readable(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn a_parked_handle_reads_end_of_file_and_keeps_the_socket_open() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let parkable = Parkable::new(server);

        let mut first = parkable.handle();
        client.write_all(b"one").await.unwrap();
        let mut buf = [0u8; 3];
        first.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"one");

        parkable.park();
        assert_eq!(first.read(&mut buf).await.unwrap(), 0, "end of file");
        first.shutdown().await.unwrap();
        drop(first);
        assert!(parkable.parked());

        // The socket is still open: the client's next bytes wake the parked stream
        // and reach the next handle.
        client.write_all(b"two").await.unwrap();
        parkable.readable().await.unwrap();
        let mut second = parkable.handle();
        assert!(!parkable.parked());
        second.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"two");
        second.write_all(b"ok").await.unwrap();
        let mut answer = [0u8; 2];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"ok");
    }

    #[tokio::test]
    async fn a_connection_with_bytes_still_to_send_is_not_parked() {
        use std::task::Waker;
        let (ours, mut peer) = tokio::io::duplex(16);
        let parkable = Parkable::new(ours);
        let mut handle = parkable.handle();
        let mut cx = Context::from_waker(Waker::noop());
        let mut pinned = Pin::new(&mut handle);
        assert!(matches!(
            pinned.as_mut().poll_write(&mut cx, &[1; 16]),
            Poll::Ready(Ok(16))
        ));
        // The peer reads nothing: the next write cannot go out.
        assert!(pinned.as_mut().poll_write(&mut cx, &[2; 16]).is_pending());
        parkable.park();
        let mut space = [0u8; 8];
        let mut buf = ReadBuf::new(&mut space);
        assert!(
            pinned.as_mut().poll_read(&mut cx, &mut buf).is_pending(),
            "no end of file while an answer is being written"
        );
        assert!(!parkable.parked());
        // Once the peer reads and the write goes out, the connection parks.
        let mut drained = [0u8; 16];
        peer.read_exact(&mut drained).await.unwrap();
        assert!(matches!(
            pinned.as_mut().poll_write(&mut cx, &[2; 16]),
            Poll::Ready(Ok(16))
        ));
        let mut buf = ReadBuf::new(&mut space);
        assert!(matches!(
            pinned.as_mut().poll_read(&mut cx, &mut buf),
            Poll::Ready(Ok(()))
        ));
        assert!(buf.filled().is_empty(), "end of file");
        assert!(parkable.parked());
    }
}
