//! Strict upstream answers: a backend that answers with a head over the limits, an
//! invalid status line, conflicting framing or an HTTP/0.9-style reply gets its
//! request answered 502, counted as that backend's failure, and none of its bytes
//! relayed; its connection is never reused. The same holds for a pool that speaks
//! TLS to its backends (each backend has a client of its own).

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend that answers every request head with `answer`, then keeps the
/// connection open (so the proxy alone decides whether to reuse it); counts accepts.
async fn canned_backend(answer: Vec<u8>) -> (SocketAddr, Arc<AtomicU64>) {
    canned_backend_over(answer, None).await
}

/// [`canned_backend`], over TLS with `tls` when given.
async fn canned_backend_over(
    answer: Vec<u8>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> (SocketAddr, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&accepted);
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            count.fetch_add(1, Ordering::Relaxed);
            let answer = Arc::clone(&answer);
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => answer_every_head(stream, &answer).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer_every_head(stream, &answer).await;
                        }
                    }
                }
            });
        }
    });
    (addr, accepted)
}

async fn answer_every_head<S>(mut stream: S, answer: &[u8])
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 8192];
    let mut seen = Vec::new();
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            seen.drain(..end + 4);
            if stream.write_all(answer).await.is_err() || stream.flush().await.is_err() {
                return;
            }
        }
    }
}

fn config(backend: SocketAddr) -> String {
    single_try_config(backend, "2s")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_answers_are_a_502_and_a_backend_failure_never_relayed() {
    let big_head = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 4\r\n\r\nLEAK",
        "b".repeat(70 * 1024)
    );
    let mut many_fields = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..150 {
        many_fields.push_str(&format!("X-F{i}: v\r\n"));
    }
    many_fields.push_str("Content-Length: 4\r\n\r\nLEAK");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("head over max_header_bytes", big_head.into_bytes()),
        ("more fields than max_headers", many_fields.into_bytes()),
        (
            "status code not digits",
            b"HTTP/1.1 2OO OK\r\nContent-Length: 4\r\n\r\nLEAK".to_vec(),
        ),
        (
            "not an HTTP version",
            b"HTTX/1.1 200 OK\r\nContent-Length: 4\r\n\r\nLEAK".to_vec(),
        ),
        (
            "status above 599",
            b"HTTP/1.1 600 Odd\r\nContent-Length: 4\r\n\r\nLEAK".to_vec(),
        ),
        (
            "Content-Length with Transfer-Encoding",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nLEAK\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "a transfer coding other than chunked",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nLEAK".to_vec(),
        ),
        (
            "chunked twice",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n4\r\nLEAK\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "two different Content-Lengths",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nLEAK!".to_vec(),
        ),
        ("an HTTP/0.9-style answer", b"LEAK LEAK LEAK\r\n\r\n".to_vec()),
        (
            "101 to a request that did not ask to upgrade",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nLEAK"
                .to_vec(),
        ),
        (
            "obs-fold in a header",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n 2\r\nContent-Length: 4\r\n\r\nLEAK".to_vec(),
        ),
        (
            "space before a colon",
            b"HTTP/1.1 200 OK\r\nContent-Length : 4\r\n\r\nLEAK".to_vec(),
        ),
    ];
    for (name, answer) in cases {
        let (backend, accepted) = canned_backend(answer).await;
        let proxy = start_proxy(&config(backend)).await;
        for _ in 0..2 {
            let got = raw_exchange(
                proxy.web,
                b"GET /thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Duration::from_secs(5),
            )
            .await;
            let shown = &got.text[..got.text.len().min(200)];
            assert_eq!(got.status, 502, "{name}: {shown}");
            assert!(!got.text.contains("LEAK"), "{name}: relayed: {shown}");
        }
        let b = backend_status(&proxy, backend).await;
        assert_eq!(b["failures"], 2, "{name}: counted against the backend: {b}");
        assert_eq!(b["in_flight"], 0, "{name}: {b}");
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            2,
            "{name}: the connection of an invalid answer is never reused"
        );
        proxy.server.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_valid_answer_from_the_same_kind_of_backend_is_relayed() {
    // The control case: the canned backend itself works when its answer is valid.
    let (backend, accepted) =
        canned_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfine!".to_vec()).await;
    let proxy = start_proxy(&config(backend)).await;
    for _ in 0..3 {
        let (code, _, body) = get(&client(), &format!("http://{}/", proxy.web)).await;
        assert_eq!((code, body.as_ref()), (200, b"fine!".as_ref()));
    }
    assert_eq!(accepted.load(Ordering::Relaxed), 1, "kept alive and reused");
    let b = backend_status(&proxy, backend).await;
    assert_eq!(b["failures"], 0);
}

/// A TLS acceptor for `app.test`, issued by `ca`, speaking HTTP/1.1.
fn app_test_acceptor(ca: &support::tls::TestCa) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    let issued = ca.server(&["app.test"]);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            rustls::pki_types::CertificateDer::pem_slice_iter(issued.cert.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap(),
            rustls::pki_types::PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).unwrap(),
        )
        .unwrap();
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(server))
}

/// [`config`] with the pool speaking TLS to `app.test`, trusting `ca_file`.
fn tls_pool_config(backend: SocketAddr, ca_file: &std::path::Path) -> String {
    format!(
        "{}[pool.app.tls]\nca = \"{}\"\nsni = \"app.test\"\nalpn = [\"http/1.1\"]\n",
        config(backend),
        ca_file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_answers_over_upstream_tls_are_a_502_and_their_connection_is_not_reused() {
    let ca = support::tls::TestCa::new("strict answers CA");
    let dir = support::tls::temp_dir("strict-tls");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let big_head = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 4\r\n\r\nLEAK",
        "b".repeat(70 * 1024)
    );
    let mut many_fields = String::from("HTTP/1.1 200 OK\r\n");
    for i in 0..150 {
        many_fields.push_str(&format!("X-F{i}: v\r\n"));
    }
    many_fields.push_str("Content-Length: 4\r\n\r\nLEAK");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("head over max_header_bytes", big_head.into_bytes()),
        ("more fields than max_headers", many_fields.into_bytes()),
        (
            "Content-Length with Transfer-Encoding",
            b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nLEAK\r\n0\r\n\r\n"
                .to_vec(),
        ),
        (
            "101 to a request that did not ask to upgrade",
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nLEAK"
                .to_vec(),
        ),
    ];
    for (name, answer) in cases {
        let (backend, accepted) = canned_backend_over(answer, Some(app_test_acceptor(&ca))).await;
        let proxy = start_proxy(&tls_pool_config(backend, &ca_file)).await;
        for _ in 0..2 {
            let got = raw_exchange(
                proxy.web,
                b"GET /thing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Duration::from_secs(5),
            )
            .await;
            let shown = &got.text[..got.text.len().min(200)];
            assert_eq!(got.status, 502, "{name}: {shown}");
            assert!(!got.text.contains("LEAK"), "{name}: relayed: {shown}");
        }
        let b = backend_status(&proxy, backend).await;
        assert_eq!(b["failures"], 2, "{name}: counted against the backend: {b}");
        assert_eq!(b["in_flight"], 0, "{name}: {b}");
        assert_eq!(
            accepted.load(Ordering::Relaxed),
            2,
            "{name}: the connection of an invalid answer is never reused"
        );
        proxy.server.shutdown(Duration::from_secs(1)).await;
    }

    // The control case: a valid answer over the same TLS is relayed and its
    // connection kept for the next request.
    let (backend, accepted) = canned_backend_over(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfine!".to_vec(),
        Some(app_test_acceptor(&ca)),
    )
    .await;
    let proxy = start_proxy(&tls_pool_config(backend, &ca_file)).await;
    for _ in 0..3 {
        let (code, _, body) = get(&client(), &format!("http://{}/", proxy.web)).await;
        assert_eq!((code, body.as_ref()), (200, b"fine!".as_ref()));
    }
    assert_eq!(accepted.load(Ordering::Relaxed), 1, "kept alive and reused");
    let _ = std::fs::remove_dir_all(&dir);
}
