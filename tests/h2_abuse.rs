//! HTTP/2 abuse costs the attacker its connection, not the proxy its CPU: rapid
//! reset, CONTINUATION, SETTINGS, PING, PRIORITY and empty-DATA floods and huge
//! header lists each end the offending connection (with the reason counted), while a
//! well-behaved HTTP/2 client on another connection keeps being served.
//!
//! The floods are written frame by frame (what an attacker sends); the reset flood
//! and the huge header list also come from the `h2` crate's client, and the
//! well-behaved client is the `h2` crate's too.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A run of frames, each already encoded.
type Frames = Vec<Vec<u8>>;

/// `GET /` for authority `x`, HPACK-encoded from the static table.
const GET_BLOCK: [u8; 6] = [0x82, 0x86, 0x84, 0x41, 0x01, b'x'];

/// A raw HTTP/2 connection that has sent the preface and an empty SETTINGS frame.
async fn raw_h2(web: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(web).await.unwrap();
    s.write_all(PREFACE).await.unwrap();
    s.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    s
}

/// Writes `frames` (stopping when the proxy closes the connection), then waits for
/// the proxy to close it; returns whether it did within 5 s.
async fn flood(mut s: TcpStream, frames: impl Iterator<Item = Vec<u8>>) -> bool {
    let mut batch = Vec::new();
    let mut frames = frames.peekable();
    while frames.peek().is_some() {
        batch.clear();
        for f in frames.by_ref().take(64) {
            batch.extend(f);
        }
        if s.write_all(&batch).await.is_err() {
            break;
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// An `h2` crate client connection.
async fn h2_client(web: SocketAddr) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(web).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// One GET through a well-behaved HTTP/2 client; returns the status and how long it took.
async fn well_behaved(web: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let mut client = h2_client(web).await.ready().await.unwrap();
    let request = http::Request::get(format!("http://{web}/"))
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("answered within 5 s")
        .unwrap();
    let status = response.status().as_u16();
    let mut body = response.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    (status, started.elapsed())
}

async fn reason_count(proxy: &TestProxy, reason: &str) -> f64 {
    let metrics = metrics_text(proxy).await;
    metric_value(
        &metrics,
        &format!("switchyard_client_errors_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_frame_floods_cost_the_attacker_its_connection() {
    let app = TestBackend::start("app").await;
    let proxy = start_proxy(&simple_config(&[&app], "")).await;
    let web = proxy.web;
    assert_eq!(well_behaved(web).await.0, 200);

    let ping = |i: u64| frame(PING, 0, 0, &i.to_be_bytes());
    let settings = || frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
    let priority = |i: u32| frame(PRIORITY, 0, 2 * i + 1, &[0, 0, 0, 0, 16]);
    // (what, frames, the reasons that may end it: the frame meter's, or h2's own
    // CONTINUATION bound when it sees the run first)
    let cases: Vec<(&str, Frames, &[&str])> = vec![
        ("PING", (0..10_000).map(ping).collect(), &["h2_ping_flood"]),
        (
            "SETTINGS",
            (0..10_000).map(|_| settings()).collect(),
            &["h2_settings_flood"],
        ),
        (
            "PRIORITY",
            (0..10_000).map(priority).collect(),
            &["h2_priority_flood"],
        ),
        (
            "empty DATA",
            std::iter::once(frame(HEADERS, END_HEADERS, 1, &GET_BLOCK))
                .chain((0..10_000).map(|_| frame(DATA, 0, 1, &[])))
                .collect(),
            &["h2_empty_data_flood"],
        ),
        (
            "CONTINUATION",
            std::iter::once(frame(HEADERS, 0, 1, &GET_BLOCK))
                .chain((0..10_000).map(|_| frame(CONTINUATION, 0, 1, &[0x80])))
                .collect(),
            &["h2_continuation_flood", "h2_enhance_your_calm"],
        ),
    ];
    for (name, frames, reasons) in cases {
        let count = async |proxy: &TestProxy| {
            let mut total = 0.0;
            for reason in reasons {
                total += reason_count(proxy, reason).await;
            }
            total
        };
        let before = count(&proxy).await;
        let closed = flood(raw_h2(web).await, frames.into_iter()).await;
        assert!(closed, "{name} flood: the connection was closed");
        assert_eq!(
            count(&proxy).await,
            before + 1.0,
            "{name} flood counted as {reasons:?}"
        );
        let (status, took) = well_behaved(web).await;
        assert_eq!(status, 200, "after the {name} flood, others are served");
        assert!(took < Duration::from_secs(2), "{name}: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_costs_the_attacker_its_connection_and_the_backend_little() {
    let app = TestBackend::start("app").await;
    let proxy = start_proxy(&simple_config(&[&app], "")).await;
    let web = proxy.web;

    // Frame by frame: 10,000 requests, each cancelled at once.
    let attempts = 10_000u32;
    let pairs = (0..attempts).flat_map(|i| {
        let id = 2 * i + 1;
        [
            frame(HEADERS, END_HEADERS | END_STREAM, id, &GET_BLOCK),
            frame(RST_STREAM, 0, id, &8u32.to_be_bytes()),
        ]
    });
    let closed = flood(raw_h2(web).await, pairs).await;
    assert!(closed, "rapid reset: the connection was closed");
    let hits = app.hits();
    eprintln!("rapid reset: the backend saw {hits} of {attempts} cancelled requests");
    assert!(
        hits < 1_000,
        "the backend saw {hits} of {attempts} cancelled requests"
    );

    // The same with the h2 crate's client: requests sent and reset straight away.
    // The client's connection task is watched: the proxy must end the connection.
    let tcp = TcpStream::connect(web).await.unwrap();
    let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    for _ in 0..attempts {
        if connection.is_finished() {
            break;
        }
        let ready = std::future::poll_fn(|cx| client.poll_ready(cx));
        if !matches!(
            tokio::time::timeout(Duration::from_secs(5), ready).await,
            Ok(Ok(()))
        ) {
            break;
        }
        let request = http::Request::get(format!("http://{web}/"))
            .body(())
            .unwrap();
        match client.send_request(request, false) {
            Ok((_, mut stream)) => stream.send_reset(h2::Reason::CANCEL),
            Err(_) => break,
        }
        // Let the connection task put the frames on the wire before the next pair.
        tokio::task::yield_now().await;
    }
    // The client handle stays alive, so only the proxy can have ended the connection.
    let ended_in_time = tokio::time::timeout(Duration::from_secs(5), connection).await;
    assert!(
        ended_in_time.is_ok(),
        "the proxy ended the resetting client's connection"
    );
    drop(client);
    // Whichever notices first ends the connection: the frame meter's reset budget,
    // or h2's own bound on resets of streams not yet accepted.
    let ended = reason_count(&proxy, "h2_reset_flood").await
        + reason_count(&proxy, "h2_enhance_your_calm").await;
    assert!(
        ended >= 2.0,
        "both resetting connections were ended and counted: {ended}"
    );
    let (status, took) = well_behaved(web).await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_header_list_costs_the_connection() {
    let app = TestBackend::start("app").await;
    let proxy = start_proxy(&simple_config(&[&app], "")).await;
    let web = proxy.web;
    let mut client = h2_client(web).await.ready().await.unwrap();
    // 200 KiB of varied bytes (HPACK's Huffman code cannot shrink it under 64 KiB).
    let value: String = (0..200 * 1024)
        .map(|i| {
            char::from(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"[i % 62])
        })
        .collect();
    let request = http::Request::get(format!("http://{web}/"))
        .header("x-huge", value)
        .body(())
        .unwrap();
    let outcome = match client.send_request(request, true) {
        Ok((response, _)) => tokio::time::timeout(Duration::from_secs(5), response)
            .await
            .expect("an answer or an error within 5 s")
            .map(|r| r.status().as_u16()),
        Err(e) => Err(e),
    };
    assert!(outcome.is_err(), "refused with the connection: {outcome:?}");
    assert_eq!(app.hits(), 0, "nothing was forwarded");
    assert_eq!(reason_count(&proxy, "h2_header_block_too_large").await, 1.0);
    assert_eq!(well_behaved(web).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_well_behaved_h2_load_is_never_mistaken_for_abuse() {
    let app = TestBackend::start("app").await;
    let proxy = start_proxy(&simple_config(&[&app], "")).await;
    let url = format!("http://{}/", proxy.web);
    // h2load (Debian's nghttp2-client): 4 connections, 100 concurrent streams each.
    let run = tokio::task::spawn_blocking(move || {
        std::process::Command::new("h2load")
            .args(["-n", "20000", "-c", "4", "-m", "100", "-t", "1", &url])
            .output()
    })
    .await
    .unwrap();
    let out = match run {
        Ok(out) => out,
        Err(e) => {
            skip_or_fail(&format!(
                "h2load not installed (apt-get install nghttp2-client): {e}"
            ));
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("h2load output: {text}"));
    assert!(
        line.contains("20000 succeeded, 0 failed, 0 errored"),
        "{line}\n{text}"
    );
    let metrics = metrics_text(&proxy).await;
    assert!(
        !metrics
            .lines()
            .any(|l| l.starts_with("switchyard_client_errors_total{reason=\"h2_")),
        "no flood was reported: {metrics}"
    );
}
