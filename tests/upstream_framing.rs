//! How the proxy reads a backend's HTTP/1 answers: interim (1xx) answers are
//! skipped, a chunked body arrives whole with its trailers, an answer to `HEAD` has
//! no body whatever its `Content-Length` says, a body that ends at the close is
//! relayed whole, and a backend that answers before the upload ends is heard. Each
//! case also checks whether the connection was reused, which only a correctly
//! framed, fully read exchange allows.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted backend does with one request.
struct Reply {
    bytes: Vec<u8>,
    /// Close the connection once the reply is written.
    close: bool,
    /// Answer right after the head, then read (and drop) the rest until the proxy
    /// closes.
    early: bool,
}

/// A backend that answers each request head with `script(head)`; counts accepts.
async fn scripted_backend(script: fn(&str) -> Reply) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, script));
        }
    });
    (addr, accepted)
}

async fn serve(mut stream: TcpStream, script: fn(&str) -> Reply) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut seen = Vec::new();
    loop {
        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head: Vec<u8> = seen.drain(..end + 4).collect();
            let reply = script(&String::from_utf8_lossy(&head));
            if stream.write_all(&reply.bytes).await.is_err() {
                return;
            }
            if reply.early {
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
            if reply.close {
                return;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

fn reply(bytes: &[u8]) -> Reply {
    Reply {
        bytes: bytes.to_vec(),
        close: false,
        early: false,
    }
}

fn config(backend: SocketAddr) -> String {
    single_try_config(backend, "5s")
}

async fn get(proxy: &TestProxy, request: &str) -> RawAnswer {
    raw_exchange(proxy.web, request.as_bytes(), Duration::from_secs(5)).await
}

const GET: &str = "GET /thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_answers_are_skipped_and_the_final_one_relayed() {
    let (backend, accepted) = scripted_backend(|_| {
        reply(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
              HTTP/1.1 100 Continue\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        )
    })
    .await;
    let proxy = start_proxy(&config(backend)).await;
    for _ in 0..2 {
        let got = get(&proxy, GET).await;
        assert_eq!(got.status, 200, "{}", got.text);
        assert!(got.text.ends_with("\r\n\r\nhello"), "{}", got.text);
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_answer_arrives_whole_and_its_connection_is_reused() {
    let (backend, accepted) = scripted_backend(|_| {
        reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;note=x\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 11\r\n\r\n",
        )
    })
    .await;
    let proxy = start_proxy(&config(backend)).await;
    for _ in 0..3 {
        let got = get(&proxy, GET).await;
        assert_eq!(got.status, 200, "{}", got.text);
        let body = got
            .text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        assert!(
            body.contains("hello") && body.contains(" world"),
            "{}",
            got.text
        );
        assert!(
            !body.contains("note=x"),
            "chunk framing leaked: {}",
            got.text
        );
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection was reused"
    );
    let b = backend_status(&proxy, backend).await;
    assert_eq!(b["failures"], 0, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_to_head_has_no_body_whatever_its_length_says() {
    let (backend, accepted) = scripted_backend(|head| {
        if head.starts_with("HEAD ") {
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        } else {
            reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        }
    })
    .await;
    let proxy = start_proxy(&config(backend)).await;
    let got = get(
        &proxy,
        "HEAD /thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(got.status, 200, "{}", got.text);
    assert!(got.text.ends_with("\r\n\r\n"), "{}", got.text);
    // The next request goes on the same connection and gets the right answer:
    // nothing of the HEAD exchange was taken for a body.
    let got = get(&proxy, GET).await;
    assert!(got.text.ends_with("\r\n\r\nhello"), "{}", got.text);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the connection was reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_ends_at_the_close_is_relayed_whole_and_not_reused() {
    let (backend, accepted) = scripted_backend(|_| Reply {
        bytes: b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(),
        close: true,
        early: false,
    })
    .await;
    let proxy = start_proxy(&config(backend)).await;
    for _ in 0..2 {
        let got = get(&proxy, GET).await;
        assert_eq!(got.status, 200, "{}", got.text);
        assert!(got.text.ends_with("until the end"), "{}", got.text);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "never reused");
    let b = backend_status(&proxy, backend).await;
    assert_eq!(b["failures"], 0, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_answering_before_the_upload_ends_is_heard() {
    let (backend, accepted) = scripted_backend(|_| Reply {
        bytes: b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 8\r\n\r\ntoo much".to_vec(),
        close: false,
        early: true,
    })
    .await;
    let proxy = start_proxy(&config(backend)).await;
    // 64 KiB of an announced 4 MiB: the answer must come while the upload is
    // still under way.
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4194304\r\n\r\n".to_vec();
    request.extend(std::iter::repeat_n(b'u', 64 * 1024));
    let got = raw_exchange(proxy.web, &request, Duration::from_secs(5)).await;
    assert_eq!(got.status, 413, "{}", &got.text[..got.text.len().min(300)]);
    assert!(got.text.contains("too much"), "{}", got.text);
    // Its connection, with the upload cut short, is not reused (this backend
    // would never answer on it again).
    let got = get(&proxy, GET).await;
    assert_eq!(got.status, 413, "{}", got.text);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "not reused");
    let b = backend_status(&proxy, backend).await;
    assert_eq!(b["failures"], 0, "a 4xx is not the backend failing: {b}");
    assert_eq!(b["in_flight"], 0, "{b}");
}
