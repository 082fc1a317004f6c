//! A slow-header attack of 1,000 connections and 1,000 idle WebSocket tunnels, both
//! beyond the per-client connection cap, while normal clients keep sending requests:
//! every normal request is answered, and their median latency during the attack is
//! measured against the same clients' median before it.
//!
//! The test holds about 3,500 sockets at once, more than the common default soft
//! limit of 1,024 file descriptors, so it raises its own soft limit (to at most the
//! hard limit) first.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::Mutex;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const SLOW_HEADERS: usize = 1000;
const TUNNELS: usize = 1000;
const PER_CLIENT_CAP: usize = 250;
const FDS_NEEDED: u64 = 6000;

async fn connect_from(source: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(to).await
}

/// A keep-alive HTTP/1.1 client whose connections come from `source`.
fn client_from(source: IpAddr) -> Client<HttpConnector, Full<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_local_address(Some(source));
    Client::builder(TokioExecutor::new()).build(connector)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// `clients` loops of GET from `source`, for `period`; every answer must be 200.
async fn measure(
    web: SocketAddr,
    source: IpAddr,
    clients: usize,
    period: Duration,
) -> Vec<Duration> {
    let samples = Arc::new(Mutex::new(Vec::new()));
    let until = Instant::now() + period;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let samples = Arc::clone(&samples);
            tokio::spawn(async move {
                let c = client_from(source);
                let url = format!("http://{web}/");
                while Instant::now() < until {
                    let started = Instant::now();
                    let (code, _, _) = tokio::time::timeout(Duration::from_secs(10), get(&c, &url))
                        .await
                        .expect("a normal request was answered within 10 s");
                    assert_eq!(code, 200, "a normal request failed");
                    samples.lock().push(started.elapsed());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    Arc::try_unwrap(samples).unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_tunnels_beyond_the_cap_leave_normal_requests_answered() {
    let limit = rlimit::increase_nofile_limit(FDS_NEEDED).unwrap_or(0);
    if limit < FDS_NEEDED {
        panic!("this test needs {FDS_NEEDED} file descriptors; the hard limit allows {limit}");
    }
    let app = TestBackend::start("app").await;
    let ws = TestBackend::start("ws").await;
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\
         [limits]\nmax_connections_per_ip = {PER_CLIENT_CAP}\nheader_read_timeout = \"10s\"\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"ws\"\nlistener = \"web\"\npath_prefix = \"/ws\"\npool = \"ws\"\n\
         [[route]]\nname = \"app\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"{}\" }}]\n\
         [pool.ws]\nbackends = [{{ address = \"{}\" }}]\n",
        app.addr, ws.addr
    );
    let proxy = start_proxy(&text).await;
    let web = proxy.web;
    let normal: IpAddr = "127.0.0.2".parse().unwrap();
    let slow_source: IpAddr = "127.0.0.3".parse().unwrap();
    let tunnel_source: IpAddr = "127.0.0.4".parse().unwrap();

    let mut before = measure(web, normal, 4, Duration::from_secs(1)).await;
    let p50_before = median(&mut before);

    // The attack: heads that never finish, and upgrades that then sit idle.
    let slow: Vec<TcpStream> = {
        let mut out = Vec::with_capacity(SLOW_HEADERS);
        for _ in 0..SLOW_HEADERS {
            if let Ok(mut s) = connect_from(slow_source, web).await {
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await;
                out.push(s);
            }
        }
        out
    };
    let mut tunnels = Vec::with_capacity(TUNNELS);
    let mut refused = 0;
    for _ in 0..TUNNELS {
        let Ok(mut s) = connect_from(tunnel_source, web).await else {
            refused += 1;
            continue;
        };
        let _ = s
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            )
            .await;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 && buf.starts_with(b"HTTP/1.1 101") => tunnels.push(s),
            _ => refused += 1,
        }
    }
    assert_eq!(
        tunnels.len(),
        PER_CLIENT_CAP,
        "tunnels up to the cap are opened, the rest refused"
    );
    assert_eq!(refused, TUNNELS - PER_CLIENT_CAP);

    let mut during = measure(web, normal, 4, Duration::from_secs(2)).await;
    let p50_during = median(&mut during);
    eprintln!(
        "normal requests: p50 {p50_before:?} before the attack ({} requests), {p50_during:?} during it ({} requests)",
        before.len(),
        during.len()
    );
    assert!(during.len() >= 20, "normal clients kept being served");
    assert!(
        p50_during < Duration::from_millis(100),
        "median latency under attack {p50_during:?} (before: {p50_before:?})"
    );

    let metrics = metrics_text(&proxy).await;
    let refused_at_accept = metric_value(
        &metrics,
        "switchyard_connections_refused_total{reason=\"per_client_cap\"}",
    );
    assert!(
        refused_at_accept >= ((SLOW_HEADERS - PER_CLIENT_CAP) + (TUNNELS - PER_CLIENT_CAP)) as f64,
        "{refused_at_accept}"
    );
    let b = backend_status(&proxy, ws.addr).await;
    assert_eq!(b["tunnels"], PER_CLIENT_CAP, "{b}");

    // The attack ends; everything it held is given back.
    drop(slow);
    drop(tunnels);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let b = backend_status(&proxy, ws.addr).await;
        if b["tunnels"] == 0 && b["in_flight"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
