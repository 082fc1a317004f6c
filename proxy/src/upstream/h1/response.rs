//! Reading a backend's answer: its head (status line and fields, within the
//! configured limits) and how its body is framed (RFC 9112 §6.3), then the body
//! itself, piece by piece, from whatever bytes have arrived.

use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Version};
use smallvec::SmallVec;

use super::error::H1Error;

/// Field slots parsed on the stack; a higher `max_headers` parses into the heap.
const STACK_FIELDS: usize = 64;
/// The longest chunk-size line (with extensions) waited for.
const MAX_CHUNK_LINE: usize = 4096;
/// Trailer fields read at the end of a chunked body.
const MAX_TRAILERS: usize = 32;

/// How big an answer head may get.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeadLimits {
    /// Bytes of status line and fields.
    pub max_head: usize,
    /// Number of fields.
    pub max_headers: usize,
}

/// A complete answer head and what it says about the rest of the exchange.
#[derive(Debug)]
pub(crate) struct Head {
    pub response: Response<()>,
    pub body: Decoder,
    /// Whether the connection may carry another request once this answer ends.
    pub keep_alive: bool,
}

/// Where one field sits in the head's bytes.
#[derive(Clone, Copy)]
struct FieldAt {
    name: (usize, usize),
    value: (usize, usize),
}

/// Parses an answer head from the front of `buf`, taking its bytes out when it is
/// complete. `None`: more bytes are needed. `method` is the request's (an answer to
/// `HEAD` has no body whatever its fields say).
pub(super) fn parse_head(
    buf: &mut BytesMut,
    limits: HeadLimits,
    method: &Method,
) -> Result<Option<Head>, H1Error> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
    let mut heap: Vec<MaybeUninit<httparse::Header<'_>>>;
    let slots = if limits.max_headers <= STACK_FIELDS {
        &mut stack[..limits.max_headers]
    } else {
        heap = (0..limits.max_headers)
            .map(|_| MaybeUninit::uninit())
            .collect();
        &mut heap[..]
    };
    let base = buf.as_ptr() as usize;
    let mut parsed = httparse::Response::new(&mut []);
    let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut parsed,
        buf,
        slots,
    );
    let len = match status {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head => {
            return Err(H1Error::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid_head(e)),
    };
    if len > limits.max_head {
        return Err(H1Error::HeadTooLarge);
    }
    let code = parsed.code.unwrap_or_default();
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    let at = |part: &[u8]| {
        let start = part.as_ptr() as usize - base;
        (start, start + part.len())
    };
    let fields: SmallVec<[FieldAt; 24]> = parsed
        .headers
        .iter()
        .map(|field| FieldAt {
            name: at(field.name.as_bytes()),
            value: at(field.value),
        })
        .collect();
    let status =
        StatusCode::from_u16(code).map_err(|_| H1Error::Invalid("status code outside 100-999"))?;
    let head = buf.split_to(len).freeze();
    let mut headers = HeaderMap::with_capacity(fields.len());
    let mut framing = Framing::default();
    for field in &fields {
        let name = HeaderName::from_bytes(&head[field.name.0..field.name.1])
            .map_err(|_| H1Error::Invalid("invalid field name"))?;
        let raw = &head[field.value.0..field.value.1];
        framing.note(&name, raw)?;
        // httparse took only visible characters, spaces, tabs and obs-text.
        let value = HeaderValue::from_maybe_shared(head.slice(field.value.0..field.value.1))
            .map_err(|_| H1Error::Invalid("invalid field value"))?;
        headers.append(name, value);
    }
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    let body = framing.decoder(status, method);
    let keep_alive = !matches!(body, Decoder::Close)
        && status != StatusCode::SWITCHING_PROTOCOLS
        && match version {
            Version::HTTP_11 => !framing.close,
            _ => framing.keep_alive && !framing.close,
        };
    Ok(Some(Head {
        response,
        body,
        keep_alive,
    }))
}

fn invalid_head(error: httparse::Error) -> H1Error {
    H1Error::Invalid(match error {
        httparse::Error::HeaderName => "invalid field name",
        httparse::Error::HeaderValue => "invalid field value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token",
        httparse::Error::TooManyHeaders => "more fields than limits.max_headers",
        httparse::Error::Version => "not an HTTP/1 answer",
    })
}

/// What the fields say about framing and the connection.
#[derive(Default)]
struct Framing {
    /// `Some(true)` when `Transfer-Encoding` ends in chunked.
    chunked: Option<bool>,
    length: Option<u64>,
    close: bool,
    keep_alive: bool,
}

impl Framing {
    fn note(&mut self, name: &HeaderName, value: &[u8]) -> Result<(), H1Error> {
        if name == CONTENT_LENGTH {
            for part in value.split(|b| *b == b',') {
                let len = parse_length(part.trim_ascii())
                    .ok_or(H1Error::Invalid("invalid Content-Length"))?;
                if self.length.is_some_and(|seen| seen != len) {
                    return Err(H1Error::Invalid("two different Content-Lengths"));
                }
                self.length = Some(len);
            }
        } else if name == TRANSFER_ENCODING {
            self.chunked = Some(last_coding_is_chunked(value));
        } else if name == CONNECTION {
            for token in value.split(|b| *b == b',') {
                let token = token.trim_ascii();
                if token.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        }
        Ok(())
    }

    /// RFC 9112 §6.3: no body for `HEAD`, 1xx, 204 and 304; then
    /// `Transfer-Encoding` (chunked, or up to the close), then `Content-Length`, else
    /// up to the close.
    fn decoder(&self, status: StatusCode, method: &Method) -> Decoder {
        if method == Method::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Decoder::Length(0);
        }
        match (self.chunked, self.length) {
            (Some(true), _) => Decoder::Chunked(Chunk::Size),
            (Some(false), _) => Decoder::Close,
            (None, Some(len)) => Decoder::Length(len),
            (None, None) => Decoder::Close,
        }
    }
}

/// Whether the last coding of one `Transfer-Encoding` value is chunked.
pub(super) fn last_coding_is_chunked(value: &[u8]) -> bool {
    let last = value.rsplit(|b| *b == b',').next().unwrap_or_default();
    last.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, b| match b {
        b'0'..=b'9' => Some(n * 10 + u64::from(b - b'0')),
        _ => None,
    })
}

/// How much of the answer's body is still to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decoder {
    /// This many bytes (none left: the body is over).
    Length(u64),
    /// Chunks, at this point of one.
    Chunked(Chunk),
    /// Everything until the backend closes the connection.
    Close,
    /// Read to its end.
    Done,
}

/// Where a chunked body stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer fields, then an empty line.
    Trailers,
}

/// What the buffered bytes gave.
#[derive(Debug)]
pub(crate) enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body is complete.
    End,
    /// The next piece has not fully arrived.
    NeedMore,
}

impl Decoder {
    /// Whether the body is over.
    pub fn is_end(&self) -> bool {
        matches!(self, Decoder::Done | Decoder::Length(0))
    }

    /// The bytes still to come, when known.
    pub fn remaining(&self) -> Option<u64> {
        match self {
            Decoder::Length(n) => Some(*n),
            Decoder::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of the body from the front of `buf`.
    pub fn next(&mut self, buf: &mut BytesMut, max_trailers: usize) -> Result<Piece, H1Error> {
        loop {
            match self {
                Decoder::Done | Decoder::Length(0) => {
                    *self = Decoder::Done;
                    return Ok(Piece::End);
                }
                Decoder::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Piece::NeedMore);
                    }
                    let n = (*left).min(buf.len() as u64);
                    *left -= n;
                    return Ok(Piece::Data(buf.split_to(n as usize).freeze()));
                }
                Decoder::Close => {
                    if buf.is_empty() {
                        return Ok(Piece::NeedMore);
                    }
                    return Ok(Piece::Data(buf.split().freeze()));
                }
                Decoder::Chunked(chunk) => match chunk {
                    Chunk::Size => match httparse::parse_chunk_size(buf) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            buf.advance(used);
                            *chunk = if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                            return Err(H1Error::Invalid("chunk-size line too long"));
                        }
                        Ok(httparse::Status::Partial) => return Ok(Piece::NeedMore),
                        Err(_) => return Err(H1Error::Invalid("invalid chunk size")),
                    },
                    Chunk::Data(left) => {
                        if buf.is_empty() {
                            return Ok(Piece::NeedMore);
                        }
                        let n = (*left).min(buf.len() as u64);
                        *left -= n;
                        if *left == 0 {
                            *chunk = Chunk::DataEnd;
                        }
                        return Ok(Piece::Data(buf.split_to(n as usize).freeze()));
                    }
                    Chunk::DataEnd => {
                        if buf.len() < 2 {
                            return Ok(Piece::NeedMore);
                        }
                        if &buf[..2] != b"\r\n" {
                            return Err(H1Error::Invalid("chunk data not followed by CRLF"));
                        }
                        buf.advance(2);
                        *chunk = Chunk::Size;
                    }
                    Chunk::Trailers => {
                        if buf.starts_with(b"\r\n") {
                            buf.advance(2);
                            *self = Decoder::Done;
                            return Ok(Piece::End);
                        }
                        let Some(trailers) = parse_trailers(buf, max_trailers)? else {
                            return Ok(Piece::NeedMore);
                        };
                        *self = Decoder::Done;
                        return Ok(Piece::Trailers(trailers));
                    }
                },
            }
        }
    }
}

/// The trailer section of a chunked body, when it has fully arrived.
fn parse_trailers(buf: &mut BytesMut, max_bytes: usize) -> Result<Option<HeaderMap>, H1Error> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_TRAILERS];
    let used = match httparse::parse_headers(buf, &mut fields) {
        Ok(httparse::Status::Complete((used, parsed))) => {
            let mut trailers = HeaderMap::with_capacity(parsed.len());
            for field in parsed {
                let name = HeaderName::from_bytes(field.name.as_bytes())
                    .map_err(|_| H1Error::Invalid("invalid trailer field name"))?;
                let value = HeaderValue::from_bytes(field.value)
                    .map_err(|_| H1Error::Invalid("invalid trailer field value"))?;
                trailers.append(name, value);
            }
            (used, trailers)
        }
        Ok(httparse::Status::Partial) if buf.len() >= max_bytes => {
            return Err(H1Error::Invalid("trailer section too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(H1Error::Invalid("invalid trailer section")),
    };
    buf.advance(used.0);
    Ok(Some(used.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_head: 8192,
        max_headers: 100,
    };

    fn head(bytes: &[u8], method: &Method) -> Result<Option<Head>, H1Error> {
        parse_head(&mut BytesMut::from(bytes), LIMITS, method)
    }

    fn body(decoder: &mut Decoder, bytes: &[u8]) -> (Vec<u8>, Option<HeaderMap>, bool) {
        let mut buf = BytesMut::from(bytes);
        let (mut data, mut trailers) = (Vec::new(), None);
        loop {
            match decoder.next(&mut buf, 8192).unwrap() {
                Piece::Data(d) => data.extend_from_slice(&d),
                Piece::Trailers(t) => trailers = Some(t),
                Piece::End => return (data, trailers, true),
                Piece::NeedMore => return (data, trailers, false),
            }
        }
    }

    #[test]
    fn a_head_arriving_in_pieces_is_parsed_once_complete() {
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        assert!(head(&whole[..20], &Method::GET).unwrap().is_none());
        let mut buf = BytesMut::from(&whole[..]);
        let parsed = parse_head(&mut buf, LIMITS, &Method::GET).unwrap().unwrap();
        assert_eq!(parsed.response.status(), StatusCode::OK);
        assert_eq!(parsed.response.headers()["x-a"], "b");
        assert_eq!(parsed.body, Decoder::Length(5));
        assert!(parsed.keep_alive);
        assert_eq!(&buf[..], b"hello", "the body stays in the buffer");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let cases: &[(&[u8], &Method, Decoder, bool)] = &[
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                &Method::HEAD,
                Decoder::Length(0),
                true,
            ),
            (
                b"HTTP/1.1 204 No Content\r\n\r\n",
                &Method::GET,
                Decoder::Length(0),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                &Method::GET,
                Decoder::Chunked(Chunk::Size),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                &Method::GET,
                Decoder::Close,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\n\r\n",
                &Method::GET,
                Decoder::Close,
                false,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
                &Method::GET,
                Decoder::Length(2),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
                &Method::GET,
                Decoder::Length(2),
                false,
            ),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
                &Method::GET,
                Decoder::Length(2),
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\n",
                &Method::GET,
                Decoder::Length(2),
                true,
            ),
        ];
        for (bytes, method, decoder, keep_alive) in cases {
            let parsed = head(bytes, method).unwrap().unwrap();
            let shown = String::from_utf8_lossy(bytes);
            assert_eq!(parsed.body, *decoder, "{shown}");
            assert_eq!(parsed.keep_alive, *keep_alive, "{shown}");
        }
    }

    #[test]
    fn invalid_heads_are_errors() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 2OO OK\r\n\r\n",
            b"HTTX/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length : 4\r\n\r\n",
            b"LEAK LEAK LEAK\r\n\r\n",
        ];
        for bytes in cases {
            assert!(
                head(bytes, &Method::GET).is_err(),
                "{}",
                String::from_utf8_lossy(bytes)
            );
        }
        let big = format!("HTTP/1.1 200 OK\r\nX-Big: {}\r\n", "b".repeat(9000));
        assert!(matches!(
            head(big.as_bytes(), &Method::GET),
            Err(H1Error::HeadTooLarge)
        ));
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert!(head(many.as_bytes(), &Method::GET).is_err());
    }

    #[test]
    fn chunked_bodies_decode_across_pieces_with_their_trailers() {
        let wire = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 9\r\n\r\n";
        for split in 0..wire.len() {
            let mut decoder = Decoder::Chunked(Chunk::Size);
            let mut buf = BytesMut::new();
            let (mut data, mut trailers, mut ended) = (Vec::new(), None, false);
            for part in [&wire[..split], &wire[split..]] {
                buf.extend_from_slice(part);
                loop {
                    match decoder.next(&mut buf, 8192).unwrap() {
                        Piece::Data(d) => data.extend_from_slice(&d),
                        Piece::Trailers(t) => trailers = Some(t),
                        Piece::End => {
                            ended = true;
                            break;
                        }
                        Piece::NeedMore => break,
                    }
                }
            }
            assert!(ended, "split at {split}");
            assert_eq!(data, b"hello world", "split at {split}");
            assert_eq!(trailers.unwrap()["x-sum"], "9", "split at {split}");
        }
    }

    #[test]
    fn broken_chunks_are_errors_and_lengths_stop_where_they_end() {
        let mut buf = BytesMut::from(&b"5\r\nhelloXX"[..]);
        let mut decoder = Decoder::Chunked(Chunk::Size);
        assert!(matches!(decoder.next(&mut buf, 8192), Ok(Piece::Data(_))));
        assert!(decoder.next(&mut buf, 8192).is_err());
        let mut decoder = Decoder::Chunked(Chunk::Size);
        assert!(
            decoder
                .next(&mut BytesMut::from(&b"zz\r\n"[..]), 8192)
                .is_err()
        );

        let mut decoder = Decoder::Length(3);
        let (data, _, ended) = body(&mut decoder, b"abcdef");
        assert_eq!(data, b"abc");
        assert!(ended);
    }
}
