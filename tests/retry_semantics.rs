//! What may be retried after a backend fails mid-request, and what a client sees when
//! a backend breaks its response: hand-written TCP backends that reset or truncate.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use support::{TestBackend, TestProxy, client, start_proxy, status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What a raw backend does after reading a request head.
#[derive(Clone, Copy)]
enum Raw {
    /// Close the connection without answering (a reset after the request was sent).
    Close,
    /// Promise 1000 bytes, send 10, close.
    Truncate,
}

async fn raw_backend(behaviour: Raw) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                if let Raw::Truncate = behaviour {
                    let _ = stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
                        .await;
                    let _ = stream.flush().await;
                }
            });
        }
    });
    addr
}

/// A loopback address nothing listens on.
async fn refused_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

fn config(addresses: &[SocketAddr], pool_extra: &str) -> String {
    let list: Vec<String> = addresses
        .iter()
        .map(|a| format!("{{ address = \"{a}\" }}"))
        .collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbalance = \"round-robin\"\nbackends = [{}]\n{pool_extra}\n",
        list.join(", ")
    )
}

async fn send(
    proxy: &TestProxy,
    method: http::Method,
    body: &'static str,
) -> Result<(u16, Bytes), String> {
    let request = http::Request::builder()
        .method(method)
        .uri(format!("http://{}/", proxy.web))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let response = client().request(request).await.map_err(|e| e.to_string())?;
    let code = response.status().as_u16();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((code, bytes))
}

async fn backend_counter(proxy: &TestProxy, addr: SocketAddr, field: &str) -> u64 {
    let s = status(proxy).await;
    s["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["address"] == addr.to_string())
        .map(|b| b[field].as_u64().unwrap())
        .unwrap()
}

const NO_BREAKER: &str = "[pool.app.breaker]\nconsecutive_failures = 0\n\
    [pool.app.retry]\nattempts = 2\non = [\"connect-failure\", \"reset\", \"timeout\"]\nper_try_timeout = \"2s\"\nbackoff = \"5ms\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_is_retried_for_get_but_never_for_post() {
    let good = TestBackend::start("good").await;
    let resetting = raw_backend(Raw::Close).await;
    let proxy = start_proxy(&config(&[resetting, good.addr], NO_BREAKER)).await;

    // A POST that reached the resetting backend may have had effects: no replay.
    let before = good.hits();
    let (mut ok, mut bad_gateway) = (0, 0);
    for _ in 0..6 {
        match send(&proxy, http::Method::POST, "order=1").await.unwrap().0 {
            200 => ok += 1,
            502 => bad_gateway += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(
        bad_gateway >= 1 && ok >= 1,
        "round-robin reached both backends ({ok} ok, {bad_gateway} 502)"
    );
    assert_eq!(
        good.hits() - before,
        ok,
        "a POST that failed on the resetting backend was replayed"
    );

    // A GET is idempotent: the reset is retried on the good backend.
    let failures_before = backend_counter(&proxy, resetting, "failures").await;
    for _ in 0..6 {
        assert_eq!(send(&proxy, http::Method::GET, "").await.unwrap().0, 200);
    }
    assert!(backend_counter(&proxy, resetting, "failures").await > failures_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_is_retried_after_a_connect_failure() {
    let good = TestBackend::start("good").await;
    let refused = refused_address().await;
    let proxy = start_proxy(&config(&[refused, good.addr], NO_BREAKER)).await;
    for _ in 0..6 {
        let (code, body) = send(&proxy, http::Method::POST, "order=2").await.unwrap();
        assert_eq!(
            code, 200,
            "a POST that was never sent must be retried: {body:?}"
        );
    }
    assert!(backend_counter(&proxy, refused, "connect_errors").await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_body_is_never_a_complete_success() {
    let truncating = raw_backend(Raw::Truncate).await;
    let proxy = start_proxy(&config(
        &[truncating],
        "[pool.app.breaker]\nconsecutive_failures = 0\n",
    ))
    .await;
    for _ in 0..3 {
        match send(&proxy, http::Method::GET, "").await {
            Err(_) | Ok((502, _)) => {}
            Ok((code, body)) => panic!(
                "truncated response delivered as complete: {code}, {} bytes",
                body.len()
            ),
        }
    }
    let mut recorded = false;
    for _ in 0..100 {
        if backend_counter(&proxy, truncating, "failures").await >= 3 {
            recorded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(recorded, "the broken bodies count against the backend");
}
