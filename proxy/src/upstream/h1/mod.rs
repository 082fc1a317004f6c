//! HTTP/1.1 to backends, spoken directly on the connection by the request that
//! holds it: the request's head and body are written, the answer's head is parsed
//! when it has arrived, and its body is read by whoever reads the answer. No task,
//! channel or callback stands between the request and its socket.
//!
//! Framing follows RFC 9112: an answer's body ends at its `Content-Length`, at the
//! last chunk, or at the close; an answer that breaks the rules is an error, and a
//! connection goes back to its pool only when both its request and its answer
//! ended cleanly on it with nothing left over.

mod error;
mod request;
mod response;

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::TRAILER;
use http::{HeaderName, Method};
use http_body::{Body, Frame};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub use self::error::H1Error;
use self::request::BodyFraming;
use self::response::Piece;
pub(crate) use self::response::{Decoder, Head, HeadLimits};
use super::connect::UpstreamStream;
use super::outgoing::{OutgoingHead, UpstreamBody, is_idempotent};
use crate::error::BoxError;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// Request body data up to this size is copied after the head (one write); larger
/// pieces are written as they are.
const COPY_LIMIT: usize = 16 * 1024;

/// An exchange that failed, and whether its request may be sent again on another
/// connection: nothing came back, the request had no body to lose, and its method
/// may be repeated (RFC 9110 §9.2.2).
pub(crate) struct Failed {
    pub error: H1Error,
    pub may_resend: bool,
}

/// The request body still being sent.
struct Sending {
    framing: BodyFraming,
    body: Option<UpstreamBody>,
    /// A large piece of data being written as it is.
    pending: Option<Bytes>,
    /// Writing stopped for good after an error (the connection cannot be reused).
    abandoned: bool,
    /// The trailer fields the request announced (only those are sent).
    trailer_names: Vec<HeaderName>,
}

impl Sending {
    const DONE: Sending = Sending {
        framing: BodyFraming::None,
        body: None,
        pending: None,
        abandoned: false,
        trailer_names: Vec::new(),
    };

    fn finished(&self) -> bool {
        self.body.is_none() && self.pending.is_none()
    }
}

/// One HTTP/1.1 connection to a backend.
pub(crate) struct H1Conn {
    io: UpstreamStream,
    read: BytesMut,
    write: BytesMut,
    sending: Sending,
    limits: HeadLimits,
}

impl H1Conn {
    /// A fresh connection.
    pub fn new(io: UpstreamStream, limits: HeadLimits) -> Self {
        Self {
            io,
            read: BytesMut::new(),
            write: BytesMut::new(),
            sending: Sending::DONE,
            limits,
        }
    }

    /// Whether the connection can take a request: nothing is left of the last
    /// exchange, and nothing (a close, stray bytes, an error) arrived while it sat
    /// idle.
    pub fn settle(&mut self) -> bool {
        if !self.reusable_after_answer() {
            return false;
        }
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut probe)
            .is_pending()
    }

    /// Sends `head` and `body` and reads until the answer's head; the answer's body
    /// is left to [`H1Conn::poll_body`]. Informational answers (1xx but 101) are
    /// skipped.
    pub async fn exchange(
        &mut self,
        head: &OutgoingHead<'_>,
        body: UpstreamBody,
    ) -> Result<Head, Failed> {
        self.write.clear();
        let framing = request::encode_head(head, &body, &mut self.write);
        let bodiless = framing == BodyFraming::None;
        let trailer_names = match head.headers.contains_key(TRAILER) {
            true => request::announced_trailers(head.headers),
            false => Vec::new(),
        };
        self.sending = Sending {
            framing,
            body: (!bodiless).then_some(body),
            pending: None,
            abandoned: false,
            trailer_names,
        };
        let mut heard = false;
        let result = poll_fn(|cx| self.poll_head(cx, head.method, &mut heard)).await;
        result.map_err(|error| {
            let again = !heard
                && bodiless
                && is_idempotent(head.method)
                && matches!(
                    error,
                    H1Error::Closed | H1Error::Read(_) | H1Error::Write(_)
                );
            Failed {
                error,
                may_resend: again,
            }
        })
    }

    /// Writes what there is to write and reads until a final answer head.
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
        heard: &mut bool,
    ) -> Poll<Result<Head, H1Error>> {
        if let Poll::Ready(Err(e)) = self.poll_send(cx) {
            match e {
                // Was it the backend's early answer? Read what it sent first.
                H1Error::Write(_) if !self.read.is_empty() => {}
                e => return Poll::Ready(Err(e)),
            }
        }
        loop {
            if !self.read.is_empty() {
                *heard = true;
                if let Some(head) = response::parse_head(&mut self.read, self.limits, method)? {
                    if head.response.status().is_informational()
                        && head.response.status() != http::StatusCode::SWITCHING_PROTOCOLS
                    {
                        continue;
                    }
                    return Poll::Ready(Ok(head));
                }
            }
            match ready!(self.poll_fill(cx)) {
                Ok(0) => return Poll::Ready(Err(H1Error::Closed)),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(H1Error::Read(e))),
            }
        }
    }

    /// Moves the request along: writes buffered bytes, takes body frames as they
    /// come. `Ready(Ok)` once all of it is written and flushed.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), H1Error>> {
        if self.sending.abandoned {
            return Poll::Ready(Ok(()));
        }
        let result = self.poll_send_inner(cx);
        if let Poll::Ready(Err(_)) = &result {
            self.sending.abandoned = true;
            self.sending.body = None;
            self.sending.pending = None;
        }
        result
    }

    fn poll_send_inner(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), H1Error>> {
        loop {
            let mut waiting_for_body = false;
            // Gather what the body has ready, so a small body leaves with its head.
            while self.sending.pending.is_none() && self.write.len() < COPY_LIMIT {
                let Some(body) = self.sending.body.as_mut() else {
                    break;
                };
                match Pin::new(body).poll_frame(cx) {
                    Poll::Pending => {
                        waiting_for_body = true;
                        break;
                    }
                    Poll::Ready(frame) => self.take_frame(frame)?,
                }
            }
            ready!(poll_write_all(&mut self.io, cx, &mut self.write))?;
            if let Some(data) = self.sending.pending.as_mut() {
                ready!(poll_write_all(&mut self.io, cx, data))?;
                self.sending.pending = None;
                if self.sending.framing == BodyFraming::Chunked {
                    self.write.put_slice(request::CHUNK_END);
                }
                continue;
            }
            if self.sending.body.is_some() {
                if waiting_for_body {
                    return Poll::Pending;
                }
                continue;
            }
            ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(H1Error::Write)?;
            return Poll::Ready(Ok(()));
        }
    }

    /// Frames one item from the request body into the write buffer.
    fn take_frame(&mut self, frame: Option<Result<Frame<Bytes>, BoxError>>) -> Result<(), H1Error> {
        let sending = &mut self.sending;
        match frame {
            None => {
                request::finish(sending.framing, &[], None, &mut self.write)?;
                sending.body = None;
            }
            Some(Err(e)) => return Err(H1Error::ClientBody(e)),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    request::frame_data(&mut sending.framing, &data, &mut self.write)?;
                    if data.is_empty() {
                        return Ok(());
                    }
                    if data.len() <= COPY_LIMIT {
                        self.write.put_slice(&data);
                        if sending.framing == BodyFraming::Chunked {
                            self.write.put_slice(request::CHUNK_END);
                        }
                    } else {
                        sending.pending = Some(data);
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        let announced = &sending.trailer_names;
                        request::finish(
                            sending.framing,
                            announced,
                            Some(&trailers),
                            &mut self.write,
                        )?;
                        sending.body = None;
                    }
                }
            },
        }
        Ok(())
    }

    /// Reads more of the answer into the buffer; `Ok(0)` at the close.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < 1024 {
            self.read.reserve(READ_CHUNK);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read)
    }

    /// The next piece of the answer's body, keeping the request's body moving
    /// meanwhile (a backend may answer while it still reads).
    pub fn poll_body(
        &mut self,
        cx: &mut Context<'_>,
        decoder: &mut Decoder,
    ) -> Poll<Result<Option<Frame<Bytes>>, H1Error>> {
        if let Poll::Ready(Err(e @ H1Error::ClientBody(_))) = self.poll_send(cx) {
            return Poll::Ready(Err(e));
        }
        loop {
            match decoder.next(&mut self.read, self.limits.max_head)? {
                Piece::Data(data) => return Poll::Ready(Ok(Some(Frame::data(data)))),
                Piece::Trailers(trailers) => {
                    return Poll::Ready(Ok(Some(Frame::trailers(trailers))));
                }
                Piece::End => return Poll::Ready(Ok(None)),
                Piece::NeedMore => match ready!(self.poll_fill(cx)) {
                    Ok(0) if *decoder == Decoder::Close => *decoder = Decoder::Done,
                    Ok(0) => return Poll::Ready(Err(H1Error::Closed)),
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(Err(H1Error::Read(e))),
                },
            }
        }
    }

    /// Whether, after an answer read to its end, the connection can carry another
    /// exchange: all of the request went out and nothing follows the answer.
    pub fn reusable_after_answer(&self) -> bool {
        self.sending.finished()
            && !self.sending.abandoned
            && self.write.is_empty()
            && self.read.is_empty()
    }
}

/// Writes all of `buf` to `io`, taking written bytes off its front as they go.
fn poll_write_all(
    io: &mut UpstreamStream,
    cx: &mut Context<'_>,
    buf: &mut impl Buf,
) -> Poll<Result<(), H1Error>> {
    while buf.has_remaining() {
        let n = ready!(tokio_util::io::poll_write_buf(Pin::new(&mut *io), cx, buf))
            .map_err(H1Error::Write)?;
        if n == 0 {
            return Poll::Ready(Err(H1Error::Write(io::ErrorKind::WriteZero.into())));
        }
    }
    Poll::Ready(Ok(()))
}
