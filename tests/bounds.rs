//! Everything is bounded: tunnels hold their connection's permit, go idle and are
//! closed, and are closed on shutdown after the drain timeout; a stalled request
//! body is cut off (408) without blaming the backend; one client address can be
//! capped; an accept that keeps failing (out of file descriptors) backs off.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Sends `bytes` through a tunnel and expects them echoed.
async fn echo(s: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    let mut back = vec![0u8; bytes.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .map_err(|_| std::io::Error::other("no echo within 5 s"))??;
    assert_eq!(back, bytes);
    Ok(())
}

/// Whether the peer closed `s` within `within` (EOF or reset).
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A connection from a chosen loopback address (127.0.0.0/8 is all local on Linux).
async fn connect_from(source: IpAddr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(source, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_keep_their_connection_permit_for_their_whole_life() {
    let ws = TestBackend::start("ws").await;
    let proxy = start_proxy(&simple_config_with_limits(
        &[&ws],
        "max_connections = 3",
        "",
    ))
    .await;
    let mut tunnels = Vec::new();
    for _ in 0..3 {
        let mut t = open_tunnel(proxy.web).await;
        echo(&mut t, b"hi").await.unwrap();
        tunnels.push(t);
    }
    // The cap is taken by the three tunnels: a fourth connection waits.
    let waiting = tokio::spawn(raw_exchange(
        proxy.web,
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(10),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiting.is_finished(), "served beyond the connection cap");
    drop(tunnels.pop());
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a tunnel closed")
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text);
    for t in &mut tunnels {
        echo(t, b"still up").await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnels_are_closed_after_the_tunnel_idle_timeout() {
    let ws = TestBackend::start("ws").await;
    let proxy = start_proxy(&simple_config_with_limits(
        &[&ws],
        "tunnel_idle_timeout = \"400ms\"",
        "",
    ))
    .await;
    let mut t = open_tunnel(proxy.web).await;
    // Traffic either way keeps it open well past the timeout.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        echo(&mut t, b"keep").await.unwrap();
    }
    // The proxy wrote the last echo just before it was read here, so its idle clock
    // started no later than this.
    let idle_from = Instant::now();
    assert!(
        closed_within(&mut t, Duration::from_secs(5)).await,
        "idle tunnel closed"
    );
    let waited = idle_from.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "closed after the idle timeout, not before: {waited:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let b = backend_status(&proxy, ws.addr).await;
        if b["tunnels"] == 0 && b["in_flight"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the closed tunnel is still counted: {b}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_tunnels_once_the_drain_timeout_passes() {
    let ws = TestBackend::start("ws").await;
    let proxy = start_proxy(&simple_config(&[&ws], "")).await;
    let mut t = open_tunnel(proxy.web).await;
    echo(&mut t, b"before").await.unwrap();
    let server = std::sync::Arc::clone(&proxy.server);
    let started = Instant::now();
    let shutdown = tokio::spawn(async move { server.shutdown(Duration::from_millis(800)).await });
    // During the drain (the listener closed) the tunnel still works.
    wait_for("the drain to begin", Duration::from_secs(5), async || {
        TcpStream::connect(proxy.web).await.is_err()
    })
    .await;
    echo(&mut t, b"during the drain").await.unwrap();
    let drained = shutdown.await.unwrap();
    assert!(!drained, "a tunnel was still open at the deadline");
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(
        closed_within(&mut t, Duration::from_secs(3)).await,
        "closed once the drain timeout passed"
    );
    let pool = proxy.server.snapshot().pools.get("app").cloned().unwrap();
    assert!(
        eventually(Duration::from_secs(3), || pool.traffic.in_flight() == 0).await,
        "the closed tunnel released its request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_is_a_408_and_never_the_backends_fault() {
    let backend = RecordingBackend::start().await;
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[limits]\nbody_idle_timeout = \"300ms\"\nbody_timeout = \"1500ms\"\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"{}\" }}]\n\
         [pool.app.breaker]\nconsecutive_failures = 1\n\
         [pool.app.retry]\nper_try_timeout = \"200ms\"\nbuffer_body = \"1KiB\"\n",
        backend.addr
    );
    let proxy = start_proxy(&text).await;

    // A small body that stops: refused before anything is forwarded.
    let started = Instant::now();
    let answer = raw_exchange(
        proxy.web,
        b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten b",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(answer.status, 408, "{}", answer.text);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(backend.count(), 0);

    // A streamed body that stops after forwarding began: the backend has been
    // waiting longer than its 200 ms per-try timeout, but it is waiting for the
    // client, so the client gets the 408 and the backend is not blamed.
    let mut head = b"POST /large HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n".to_vec();
    head.extend_from_slice(&[b'z'; 4096]);
    let answer = raw_exchange(proxy.web, &head, Duration::from_secs(5)).await;
    assert_eq!(answer.status, 408, "{}", answer.text);

    // A body that trickles in (never idle for 300 ms) still has to finish within
    // body_timeout.
    let mut s = TcpStream::connect(proxy.web).await.unwrap();
    s.write_all(b"POST /trickle HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        if s.write_all(&[b't'; 64]).await.is_err() {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        assert!(started.elapsed() < Duration::from_secs(6), "never cut off");
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );

    let b = backend_status(&proxy, backend.addr).await;
    assert_eq!(b["failures"], 0, "{b}");
    assert_eq!(b["breaker"], "closed", "{b}");
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"body_idle_timeout\"}"
        ),
        2.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_client_errors_total{reason=\"body_timeout\"}"
        ),
        1.0
    );
}

/// Reads one request with a `Content-Length` body from `s` and answers how many body
/// bytes arrived.
async fn answer_body_length(mut s: TcpStream) {
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let (head_end, length) = loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "request head cut short");
        got.extend_from_slice(&buf[..n]);
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..at]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .unwrap_or(0);
            break (at + 4, length);
        }
    };
    while got.len() - head_end < length {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "request body cut short");
        got.extend_from_slice(&buf[..n]);
    }
    let text = format!("got {}", got.len() - head_end);
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
    s.write_all(answer.as_bytes()).await.unwrap();
}

/// A streamed body's per-try clock starts when the backend's connection takes the
/// body: a backend slow to accept the connection is bounded by `connect_timeout`,
/// not by a per-try timeout that would run out while the proxy is still connecting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_is_not_timed_out_while_the_backend_connection_is_being_made() {
    // A backend whose accept queue (backlog 0) is full: the proxy's SYN is dropped
    // and resent about a second later, once the queue has room again.
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let filler = TcpStream::connect(addr).await.unwrap();
    let served = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (queued, _) = listener.accept().await.unwrap();
        drop((queued, filler));
        let (stream, _) = listener.accept().await.unwrap();
        answer_body_length(stream).await;
    });
    let text = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[limits]\nconnect_timeout = \"5s\"\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"{addr}\" }}]\n\
         [pool.app.retry]\nattempts = 0\nper_try_timeout = \"200ms\"\nbuffer_body = \"1KiB\"\n"
    );
    let proxy = start_proxy(&text).await;
    let started = Instant::now();
    let mut request =
        b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".to_vec();
    request.extend_from_slice(&[b'u'; 100_000]);
    let answer = raw_exchange(proxy.web, &request, Duration::from_secs(6)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert!(answer.text.ends_with("got 100000"), "{}", answer.text);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the connection was made before the backend's queue had room: {:?}",
        started.elapsed()
    );
    served.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_address_can_be_capped() {
    let a = TestBackend::start("a").await;
    let proxy = start_proxy(&simple_config_with_limits(
        &[&a],
        "max_connections_per_ip = 3",
        "",
    ))
    .await;
    let here: IpAddr = "127.0.0.1".parse().unwrap();
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = connect_from(here, proxy.web).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A fourth from the same address is closed at once, unanswered.
    let mut fourth = connect_from(here, proxy.web).await;
    let _ = fourth.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(closed_within(&mut fourth, Duration::from_secs(2)).await);
    // Another address is not affected.
    let mut elsewhere = connect_from(other, proxy.web).await;
    elsewhere
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    elsewhere.read_to_end(&mut got).await.unwrap();
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    // Closing one frees its slot.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from(here, proxy.web).await;
        let _ = again
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let mut got = Vec::new();
        let _ = again.read_to_end(&mut got).await;
        if String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = metrics_text(&proxy).await;
    assert!(
        metric_value(
            &metrics,
            "switchyard_connections_refused_total{reason=\"per_client_cap\"}"
        ) >= 1.0
    );
}

#[test]
fn failing_accepts_back_off_instead_of_spinning() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let backend = runtime.block_on(TestBackend::start("a"));
    let dir = std::env::temp_dir().join(format!("switchyard-emfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:{port}\"\n\
             [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\
             [pool.app]\nbackends = [{{ address = \"{}\" }}]\n",
            backend.addr
        ),
    )
    .unwrap();
    let log = dir.join("proxy.log");
    // Few file descriptors, so idle connections exhaust them.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 128 && exec '{}' --config '{}' --workers 1 --no-access-log > '{}' 2>&1",
            env!("CARGO_BIN_EXE_switchyard"),
            config.display(),
            log.display()
        ))
        .spawn()
        .unwrap();
    let web: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ask = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(web).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ask().is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "the proxy never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Hold far more connections than the process has descriptors for.
    let held: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|_| std::net::TcpStream::connect(web).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let failures = text.matches("accept failed").count();
    // Once per streak and then at most once per 5 s, instead of once per attempt.
    assert!(
        (1..=2).contains(&failures),
        "accept failures logged {failures} times in 3 s:\n{}",
        &text[text.len().saturating_sub(2000)..]
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ask().is_some_and(|a| a.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "the proxy did not recover");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
