//! Writing a request to a backend: its head in origin form, then its body framed
//! the way HTTP/1.1 allows (RFC 9112 §6, §7): by `Content-Length` when the length is
//! known, chunked otherwise, nothing at all when there is no body.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{CONTENT_LENGTH, HOST, TRAILER, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, Method};
use http_body::Body;

use super::error::H1Error;
use super::response::last_coding_is_chunked;
use crate::upstream::outgoing::OutgoingHead;

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFraming {
    /// No body: the head is the whole request.
    None,
    /// Exactly this many bytes are still to come.
    Length(u64),
    /// Chunks, ended by a zero-size chunk and the trailer section.
    Chunked,
}

/// Writes `head` into `out` in origin form and says how the body follows: the
/// request line carries the path and query, and the authority becomes `Host` when
/// the fields have none.
pub(super) fn encode_head<B: Body>(
    head: &OutgoingHead<'_>,
    body: &B,
    out: &mut BytesMut,
) -> BodyFraming {
    let (method, headers) = (head.method, head.headers);
    let framing = framing(method, headers, body);
    let target = Some(head.path_and_query.as_str())
        .filter(|p| !p.is_empty())
        .unwrap_or("/");
    out.reserve(64 + target.len() + headers.len() * 32);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    if !headers.contains_key(HOST) {
        put_field(out, b"host", head.authority.as_str().as_bytes());
    }
    let has_te = headers.contains_key(TRANSFER_ENCODING);
    for (name, value) in headers {
        // A length goes only where it frames the body; any other transfer coding
        // the edge let through is written as it came, with chunked last.
        if name == CONTENT_LENGTH && has_te {
            continue;
        }
        if name == TRANSFER_ENCODING && framing == BodyFraming::None {
            continue;
        }
        put_field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        BodyFraming::Chunked if !ends_in_chunked(headers) => {
            put_field(out, b"transfer-encoding", b"chunked")
        }
        BodyFraming::Length(len) if !headers.contains_key(CONTENT_LENGTH) => {
            let mut digits = itoa::Buffer::new();
            put_field(out, b"content-length", digits.format(len).as_bytes());
        }
        _ => {}
    }
    out.put_slice(b"\r\n");
    framing
}

/// The framing the request's fields and body call for, as HTTP/1.1 clients agree:
/// an ended body sends nothing, `Transfer-Encoding` means chunked, a valid
/// `Content-Length` is kept, a body of known size gets its length, and one of
/// unknown size is chunked (except on methods that never carry one).
fn framing<B: Body>(method: &Method, headers: &HeaderMap, body: &B) -> BodyFraming {
    if body.is_end_stream() {
        return BodyFraming::None;
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        return BodyFraming::Chunked;
    }
    if let Some(len) = content_length(headers) {
        return BodyFraming::Length(len);
    }
    if let Some(len) = body.size_hint().exact() {
        return BodyFraming::Length(len);
    }
    match *method {
        Method::GET | Method::HEAD | Method::CONNECT => BodyFraming::None,
        _ => BodyFraming::Chunked,
    }
}

/// The request's `Content-Length`, when it is one valid number.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let first = values.next()?.to_str().ok()?.trim().parse().ok()?;
    values.next().is_none().then_some(first)
}

/// Whether the fields' transfer codings end in chunked (none at all: no).
fn ends_in_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .next_back()
        .is_some_and(|value| last_coding_is_chunked(value.as_bytes()))
}

fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// Frames one piece of the body for the wire: what goes before the data (a chunk's
/// size line) is written into `before`; the caller writes the data and, for a
/// chunk, [`CHUNK_END`]. Counts down a known length and refuses a body longer than
/// it announced.
pub(super) fn frame_data(
    framing: &mut BodyFraming,
    data: &Bytes,
    before: &mut BytesMut,
) -> Result<(), H1Error> {
    match framing {
        BodyFraming::None => {
            if !data.is_empty() {
                return Err(H1Error::RequestBody("a body where none was announced"));
            }
        }
        BodyFraming::Length(left) => {
            let len = data.len() as u64;
            if len > *left {
                return Err(H1Error::RequestBody("longer than its Content-Length"));
            }
            *left -= len;
        }
        BodyFraming::Chunked => {
            if !data.is_empty() {
                // Writing to a BytesMut cannot fail.
                let _ = write!(before, "{:x}\r\n", data.len());
            }
        }
    }
    Ok(())
}

/// What follows a chunk's data.
pub(super) const CHUNK_END: &[u8] = b"\r\n";

/// Ends the body: the last chunk and the trailer fields the head announced in
/// `Trailer` (only those: a recipient may not expect others). A body shorter than
/// its length is an error.
pub(super) fn finish(
    framing: BodyFraming,
    request_headers_trailer: &[HeaderName],
    trailers: Option<&HeaderMap>,
    out: &mut BytesMut,
) -> Result<(), H1Error> {
    match framing {
        BodyFraming::None => Ok(()),
        BodyFraming::Length(0) => Ok(()),
        BodyFraming::Length(_) => Err(H1Error::RequestBody("shorter than its Content-Length")),
        BodyFraming::Chunked => {
            out.put_slice(b"0\r\n");
            if let Some(trailers) = trailers {
                for (name, value) in trailers {
                    if request_headers_trailer.contains(name) {
                        put_field(out, name.as_str().as_bytes(), value.as_bytes());
                    }
                }
            }
            out.put_slice(b"\r\n");
            Ok(())
        }
    }
}

/// The field names a request announces in `Trailer`.
pub(super) fn announced_trailers(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(TRAILER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;
    use http_body_util::{Empty, Full};

    fn head<B: Body>(request: Request<B>) -> (String, BodyFraming) {
        let mut out = BytesMut::new();
        let (parts, body) = request.into_parts();
        let authority = parts.uri.authority().cloned().unwrap();
        let path = parts.uri.path_and_query().cloned().unwrap();
        let head = OutgoingHead {
            method: &parts.method,
            scheme: &http::uri::Scheme::HTTP,
            authority: &authority,
            path_and_query: &path,
            headers: &parts.headers,
            addr: ([127, 0, 0, 1], 1).into(),
        };
        let framing = encode_head(&head, &body, &mut out);
        (String::from_utf8(out.to_vec()).unwrap(), framing)
    }

    #[test]
    fn an_absolute_uri_becomes_origin_form_with_its_authority_as_host() {
        let request = Request::get("http://10.0.0.1:8080/a/b?c=d")
            .header("x-one", "1")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let (text, framing) = head(request);
        assert_eq!(
            text,
            "GET /a/b?c=d HTTP/1.1\r\nhost: 10.0.0.1:8080\r\nx-one: 1\r\n\r\n"
        );
        assert_eq!(framing, BodyFraming::None);
    }

    #[test]
    fn a_host_field_of_the_request_is_kept() {
        let request = Request::get("http://10.0.0.1:8080/")
            .header("host", "example.com")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let (text, _) = head(request);
        assert_eq!(text, "GET / HTTP/1.1\r\nhost: example.com\r\n\r\n");
    }

    #[test]
    fn a_body_of_known_size_gets_its_length() {
        let request = Request::post("http://a:1/up")
            .body(Full::new(Bytes::from_static(b"hello")))
            .unwrap();
        let (text, framing) = head(request);
        assert!(text.ends_with("content-length: 5\r\n\r\n"), "{text}");
        assert_eq!(framing, BodyFraming::Length(5));
    }

    #[test]
    fn a_body_of_unknown_size_is_chunked_and_a_stray_length_dropped() {
        let request = Request::post("http://a:1/up")
            .header("transfer-encoding", "chunked")
            .header("content-length", "12")
            .body(Unsized)
            .unwrap();
        let (text, framing) = head(request);
        assert_eq!(
            text,
            "POST /up HTTP/1.1\r\nhost: a:1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(framing, BodyFraming::Chunked);
    }

    #[test]
    fn an_ended_body_keeps_its_length_and_adds_nothing() {
        let request = Request::post("http://a:1/up")
            .header("content-length", "0")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let (text, framing) = head(request);
        assert_eq!(
            text,
            "POST /up HTTP/1.1\r\nhost: a:1\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(framing, BodyFraming::None);
    }

    #[test]
    fn chunks_are_framed_and_lengths_are_held_to() {
        let mut before = BytesMut::new();
        let mut chunked = BodyFraming::Chunked;
        frame_data(&mut chunked, &Bytes::from(vec![b'x'; 300]), &mut before).unwrap();
        assert_eq!(&before[..], b"12c\r\n");
        let mut length = BodyFraming::Length(4);
        before.clear();
        frame_data(&mut length, &Bytes::from_static(b"abc"), &mut before).unwrap();
        assert!(before.is_empty());
        assert!(frame_data(&mut length, &Bytes::from_static(b"de"), &mut before).is_err());
        assert!(finish(length, &[], None, &mut before).is_err());
        let mut out = BytesMut::new();
        let mut trailers = HeaderMap::new();
        trailers.insert("x-sum", "9".parse().unwrap());
        trailers.insert("x-other", "1".parse().unwrap());
        let announced = [HeaderName::from_static("x-sum")];
        finish(BodyFraming::Chunked, &announced, Some(&trailers), &mut out).unwrap();
        assert_eq!(&out[..], b"0\r\nx-sum: 9\r\n\r\n");
    }

    /// A body whose size nobody knows in advance.
    struct Unsized;

    impl Body for Unsized {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(None)
        }
    }
}
