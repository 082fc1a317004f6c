//! Applying a config is atomic: everything that can fail (sockets, certificates,
//! the admin listener's new address, token rules) is ready before one swap; a
//! failure names file, line and field and leaves the running config whole. Limits
//! and certificates take effect on reload, not only at start.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::*;
use switchyard::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "apply-test-token-0123456789";

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-apply-{tag}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts a proxy from `text` written to a file in `dir`; returns it and the file.
async fn proxy_from_file(dir: &Path, text: &str) -> (TestProxy, PathBuf) {
    let file = dir.join("switchyard.toml");
    std::fs::write(&file, text).unwrap();
    let config = Config::load(&file).unwrap_or_else(|e| panic!("bad test config:\n{e}"));
    let admin_listen = config.admin.listen;
    let server = switchyard::server::Server::start(
        config,
        switchyard::server::ServerOptions {
            access_log: false,
            shards: 0,
        },
    )
    .await
    .expect("proxy starts");
    server.set_config_path(file.clone());
    let admin = switchyard::admin::start(std::sync::Arc::clone(&server), admin_listen).unwrap();
    let web = server.listener_address("web").unwrap();
    (TestProxy { server, web, admin }, file)
}

/// Rewrites the file and reloads it as SIGHUP or `POST /reload` would.
async fn reload_with(proxy: &TestProxy, file: &Path, text: &str) -> Result<(), String> {
    std::fs::write(file, text).unwrap();
    switchyard::reload::reload(&proxy.server, file)
        .await
        .map_err(|e| e.to_string())
}

async fn admin_status(admin: std::net::SocketAddr, token: Option<&str>) -> (u16, String) {
    let mut req = http::Request::get(format!("http://{admin}/status"));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = client()
        .request(
            req.body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (code, String::from_utf8_lossy(&body).into_owned())
}

async fn failed_reloads(proxy: &TestProxy, token: Option<&str>) -> String {
    let mut req = http::Request::get(format!("http://{}/metrics", proxy.admin));
    if let Some(token) = token {
        req = req.header("authorization", format!("Bearer {token}"));
    }
    let resp = client()
        .request(
            req.body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8_lossy(&body)
        .lines()
        .find(|l| l.starts_with("switchyard_config_reloads_total{kind=\"failed\"}"))
        .unwrap_or("none")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_moves_the_admin_listener_and_closes_the_old_one() {
    let a = TestBackend::start("a").await;
    let dir = temp_dir("move");
    let before = simple_config(&[&a], "");
    let (proxy, file) = proxy_from_file(&dir, &before).await;
    let old = proxy.admin;

    // A keep-alive connection to the old address, open across the move.
    let mut kept = TcpStream::connect(old).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));

    let moved = before.replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"127.0.0.2:0\"",
    );
    reload_with(&proxy, &file, &moved).await.unwrap();
    let new = proxy.server.admin_address().unwrap();
    assert_eq!(new.ip().to_string(), "127.0.0.2", "moved to {new}");
    assert_eq!(admin_status(new, None).await.0, 200);
    assert!(
        eventually_connect_refused(old).await,
        "the old admin socket is closed"
    );
    // The connection accepted on the old socket is not served by the new rules.
    let _ = kept
        .write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        !answer.contains("\"pools\""),
        "an old connection got status after the move: {answer}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

async fn eventually_connect_refused(address: std::net::SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if TcpStream::connect(address).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_reports_every_mistake_at_once_and_keeps_the_running_config() {
    capture_json_logs("switchyard::reload=error");
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let dir = temp_dir("mistakes");
    let (proxy, file) = proxy_from_file(&dir, &simple_config(&[&a], "")).await;

    // Three mistakes in one edit: a reference, a misspelt field, a misspelt table key.
    let edit = simple_config(
        &[&a, &b],
        "balanse = \"weighted\"\n[pool.app.retry]\nattemps = 3\n",
    )
    .replace("pool = \"app\"", "pool = \"ap\"");
    let err = reload_with(&proxy, &file, &edit).await.unwrap_err();
    let f = file.display();
    assert_eq!(
        err,
        format!(
            "{f}:11:8: route[0].pool: no pool named `ap`, did you mean `app`? Defined: app\n\
             {f}:18:1: pool.app.balanse: unknown field, did you mean `balance`?\n\
             {f}:20:1: pool.app.retry.attemps: unknown field, did you mean `attempts`?"
        )
    );
    // Logged once, with every problem.
    let logged = captured_json_lines("config reload failed");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0]["message"]
            .as_str()
            .is_some_and(|m| m.ends_with(&err)),
        "{logged:?}"
    );
    // The running config still serves `a` alone.
    let backends = status(&proxy).await["pools"][0]["backends"].clone();
    assert_eq!(backends.as_array().map(Vec::len), Some(1), "{backends}");
    assert_eq!(backends[0]["address"], a.addr.to_string());
    assert!(failed_reloads(&proxy, None).await.ends_with(" 1"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_drops_the_token_off_loopback_is_refused_and_the_token_still_holds() {
    let a = TestBackend::start("a").await;
    let dir = temp_dir("token");
    let exposed = simple_config(&[&a], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"0.0.0.0:0\"\ntoken = \"{TOKEN}\""),
    );
    let (proxy, file) = proxy_from_file(&dir, &exposed).await;
    let admin = format!("127.0.0.1:{}", proxy.admin.port()).parse().unwrap();
    assert_eq!(admin_status(admin, Some(TOKEN)).await.0, 200);

    let tokenless = exposed.replace(&format!("\ntoken = \"{TOKEN}\""), "");
    let err = reload_with(&proxy, &file, &tokenless).await.unwrap_err();
    let expected = format!("{}:2:10: admin.listen", file.display());
    assert!(
        err.contains(&expected) && err.contains("needs a bearer token"),
        "{err}"
    );
    assert_eq!(
        admin_status(admin, None).await.0,
        401,
        "the running config's token still holds"
    );
    assert_eq!(admin_status(admin, Some(TOKEN)).await.0, 200);
    assert_eq!(proxy.server.admin_address().unwrap().port(), admin.port());

    // Moving a token-less loopback admin off loopback is refused the same way.
    let dir2 = temp_dir("token-move");
    let (local, file2) = proxy_from_file(&dir2, &simple_config(&[&a], "")).await;
    let outward = simple_config(&[&a], "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        "[admin]\nlisten = \"0.0.0.0:0\"",
    );
    let err = reload_with(&local, &file2, &outward).await.unwrap_err();
    assert!(
        err.contains("admin.listen") && err.contains("bearer token"),
        "{err}"
    );
    assert_eq!(local.server.admin_address(), Some(local.admin));
    assert!(
        failed_reloads(&local, None).await.ends_with(" 1"),
        "{}",
        failed_reloads(&local, None).await
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_cannot_bind_changes_nothing_and_names_file_and_field() {
    let (a, b) = (TestBackend::start("a").await, TestBackend::start("b").await);
    let dir = temp_dir("bind");
    let before = simple_config(&[&a], "");
    let (proxy, file) = proxy_from_file(&dir, &before).await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_address = taken.local_addr().unwrap();

    // Everything changes at once: the pool's backend, the admin address, a new
    // listener on a port someone else holds.
    let after = simple_config(&[&b], "")
        .replace(
            "[admin]\nlisten = \"127.0.0.1:0\"",
            "[admin]\nlisten = \"127.0.0.2:0\"",
        )
        .replace(
            "[[route]]",
            &format!("[[listener]]\nname = \"extra\"\nlisten = \"{taken_address}\"\n\n[[route]]"),
        );
    let err = reload_with(&proxy, &file, &after).await.unwrap_err();
    let line = after
        .lines()
        .position(|l| l.contains(&taken_address.to_string()))
        .unwrap()
        + 1;
    let expected = format!("{}:{line}:10: listener[1].listen", file.display());
    assert!(
        err.contains(&expected)
            && err.contains(&format!(
                "listener `extra` cannot listen on {taken_address}"
            )),
        "{err}"
    );
    // The old config is whole: same backend, same admin address, no new listener.
    let c = client();
    for _ in 0..5 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.1, "a");
    }
    assert_eq!(proxy.server.admin_address(), Some(proxy.admin));
    assert!(proxy.server.listener_address("extra").is_none());
    let (code, state) = admin_status(proxy.admin, None).await;
    assert_eq!(code, 200);
    assert!(state.contains(&a.addr.to_string()) && !state.contains(&b.addr.to_string()));

    // A certificate that cannot be used is the same: nothing changes.
    std::fs::write(dir.join("bad.pem"), "not a certificate").unwrap();
    let tls = before.replace(
        "[[route]]",
        &format!(
            "[[listener]]\nname = \"secure\"\nlisten = \"127.0.0.3:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n[[route]]",
            dir.join("bad.pem").display(),
            dir.join("bad.pem").display()
        ),
    );
    let err = reload_with(&proxy, &file, &tls).await.unwrap_err();
    assert!(
        err.contains(&format!("{}:", file.display()))
            && err.contains("listener[1].tls.cert")
            && err.contains("listener `secure`"),
        "{err}"
    );
    assert!(proxy.server.listener_address("secure").is_none());
    assert!(failed_reloads(&proxy, None).await.ends_with(" 2"));

    // Once the port is free the same file applies whole.
    drop(taken);
    reload_with(&proxy, &file, &after).await.unwrap();
    assert!(proxy.server.listener_address("extra").is_some());
    assert_eq!(
        proxy.server.admin_address().unwrap().ip().to_string(),
        "127.0.0.2"
    );
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.1, "b");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_changed_by_a_reload_apply_to_new_connections() {
    let a = TestBackend::start("a").await;
    let dir = temp_dir("limits");
    let before = simple_config(&[&a], "");
    let (proxy, file) = proxy_from_file(&dir, &before).await;
    let limited = before.replace(
        "[[listener]]",
        "[limits]\nheader_read_timeout = \"300ms\"\nmax_connections = 2\n\n[[listener]]",
    );
    reload_with(&proxy, &file, &limited).await.unwrap();

    // The head timeout: a stalled request head is cut off well before the 10 s default.
    let mut slow = TcpStream::connect(proxy.web).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(5), slow.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed by the reloaded head timeout: {closed:?}"
    );
    drop(slow);

    // The connection cap: two connections open, a third waits until one closes.
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(proxy.web).await.unwrap();
        s.write_all(request).await.unwrap();
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("answered within the cap")
            .unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    let mut third = TcpStream::connect(proxy.web).await.unwrap();
    third.write_all(request).await.unwrap();
    let early = tokio::time::timeout(Duration::from_millis(300), third.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "a third connection was served beyond the reloaded cap"
    );
    held.pop();
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop((held, third));
    let _ = std::fs::remove_dir_all(&dir);
}

fn certificate(dir: &Path, name: &str) -> Vec<u8> {
    let certified = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    certified.cert.der().to_vec()
}

/// The certificate a TLS listener presents (verification off: only which one).
async fn presented_certificate(address: std::net::SocketAddr) -> Vec<u8> {
    #[derive(Debug)]
    struct AnyCertificate(std::sync::Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(std::sync::Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_picks_up_renewed_certificates_on_the_same_socket() {
    let a = TestBackend::start("a").await;
    let dir = temp_dir("tls");
    let first = certificate(&dir, "localhost");
    let text = simple_config(&[&a], "").replace(
        "listen = \"127.0.0.1:0\"\n\n[[route]]",
        &format!(
            "listen = \"127.0.0.1:0\"\ntls = {{ cert = \"{}\", key = \"{}\" }}\n\n[[route]]",
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
    );
    let (proxy, file) = proxy_from_file(&dir, &text).await;
    assert_eq!(presented_certificate(proxy.web).await, first);
    let renewed = certificate(&dir, "localhost");
    assert_ne!(renewed, first);
    reload_with(&proxy, &file, &text).await.unwrap();
    assert_eq!(
        proxy.server.listener_address("web"),
        Some(proxy.web),
        "same socket"
    );
    assert_eq!(presented_certificate(proxy.web).await, renewed);
    let _ = std::fs::remove_dir_all(&dir);
}
