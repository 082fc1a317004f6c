//! TLS on listeners (certificates chosen by SNI, reloaded from their files under
//! load, refused when broken, version floor, ALPN, resumption, expiry metric, a config
//! reload that keeps or changes the tls table) and TLS to backends (a private CA,
//! client certificates, HTTP/2 by ALPN, health probes, a health plugin's own probe).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rustls::RootCertStore;
use support::tls::{
    TestCa, client_config, get_over, handshake, replace_file, served_names, temp_dir, write_pair,
};
use support::{TestBackend, client, eventually, get, simple_config, start_proxy, status};

/// A config with one TLS listener `web` (its `tls` table given) in front of `backend`.
fn tls_config(backend: &TestBackend, tls_table: &str) -> String {
    simple_config(&[backend], "").replace(
        "listen = \"127.0.0.1:0\"\n\n[[route]]",
        &format!("listen = \"127.0.0.1:0\"\ntls = {tls_table}\n\n[[route]]"),
    )
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The value of one series in `/metrics`, if present.
async fn metric(proxy: &support::TestProxy, series: &str) -> Option<f64> {
    let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_picks_the_certificate_for_each_of_three_names() {
    let backend = TestBackend::start("app").await;
    let ca = TestCa::new("sni test CA");
    let dir = temp_dir("sni");
    let (a_cert, a_key) = write_pair(&dir, "a", &ca.server(&["a.test"]));
    let (b_cert, b_key) = write_pair(&dir, "b", &ca.server(&["b.test"]));
    let (c_cert, c_key) = write_pair(&dir, "c", &ca.server(&["*.c.test"]));
    let table = format!(
        "{{ certificates = [{{ cert = \"{}\", key = \"{}\" }}, {{ cert = \"{}\", key = \"{}\" }}, \
         {{ cert = \"{}\", key = \"{}\" }}], default = \"b.test\" }}",
        path(&a_cert),
        path(&a_key),
        path(&b_cert),
        path(&b_key),
        path(&c_cert),
        path(&c_key)
    );
    let proxy = start_proxy(&tls_config(&backend, &table)).await;
    let config = client_config(ca.roots(), &[b"http/1.1"]);

    for (sni, expected) in [
        ("a.test", "a.test"),
        ("b.test", "b.test"),
        ("www.c.test", "*.c.test"),
    ] {
        let stream = handshake(proxy.web, sni, Arc::clone(&config))
            .await
            .unwrap_or_else(|e| panic!("handshake for {sni}: {e}"));
        assert_eq!(served_names(&stream), [expected], "SNI {sni}");
        let (code, body) = get_over(stream, sni, "/").await;
        assert_eq!(
            (code, body.as_str()),
            (200, "app"),
            "request with SNI {sni}"
        );
    }
    // A name no certificate carries gets the default one (which the client then
    // rejects for the wrong name, as it should).
    let rejected = handshake(proxy.web, "other.test", Arc::clone(&config)).await;
    assert!(rejected.is_err(), "a certificate for other.test was served");
    let insecure = client_config_for_names(&ca);
    let stream = handshake(proxy.web, "other.test", insecure).await.unwrap();
    assert_eq!(served_names(&stream), ["b.test"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A client that trusts the CA but accepts any name, to see which certificate the
/// default is.
fn client_config_for_names(ca: &TestCa) -> Arc<rustls::ClientConfig> {
    #[derive(Debug)]
    struct AnyName(Arc<rustls::client::WebPkiServerVerifier>);
    impl rustls::client::danger::ServerCertVerifier for AnyName {
        fn verify_server_cert(
            &self,
            end_entity: &rustls::pki_types::CertificateDer<'_>,
            intermediates: &[rustls::pki_types::CertificateDer<'_>],
            _name: &rustls::pki_types::ServerName<'_>,
            ocsp: &[u8],
            now: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            let names = support::tls::names_of(end_entity);
            let name = rustls::pki_types::ServerName::try_from(names[0].clone()).unwrap();
            self.0
                .verify_server_cert(end_entity, intermediates, &name, ocsp, now)
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls12_signature(message, cert, dss)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.0.verify_tls13_signature(message, cert, dss)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_verify_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(ca.roots()),
        Arc::clone(&provider),
    )
    .build()
    .unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyName(verifier)))
            .with_no_client_auth(),
    )
}

/// Clients that each open a new TLS connection per request, with a full handshake
/// each time (no resumption, so every connection is shown the current certificate),
/// counting requests that did not end in 200 and the certificates seen.
struct TlsLoad {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Vec<String>>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TlsLoad {
    fn start(
        clients: usize,
        addr: std::net::SocketAddr,
        sni: &'static str,
        roots: RootCertStore,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let mut config = (*client_config(roots, &[b"http/1.1"])).clone();
        config.resumption = rustls::client::Resumption::disabled();
        let config = Arc::new(config);
        let tasks = (0..clients)
            .map(|_| {
                let (stop, served, failed, seen, config) = (
                    Arc::clone(&stop),
                    Arc::clone(&served),
                    Arc::clone(&failed),
                    Arc::clone(&seen),
                    Arc::clone(&config),
                );
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let ok = match handshake(addr, sni, Arc::clone(&config)).await {
                            Ok(stream) => {
                                let names = served_names(&stream);
                                let ok = get_over(stream, sni, "/").await.0 == 200;
                                let mut seen = seen.lock();
                                if !seen.contains(&names) {
                                    seen.push(names);
                                }
                                ok
                            }
                            Err(_) => false,
                        };
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        TlsLoad {
            stop,
            served,
            failed,
            seen,
            tasks,
        }
    }

    fn saw(&self, names: &[&str]) -> bool {
        self.seen.lock().iter().any(|n| n == names)
    }

    async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.served.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_the_certificate_files_under_load_serves_the_new_one_with_no_failed_request() {
    let backend = TestBackend::start("app").await;
    let ca = TestCa::new("reload test CA");
    let dir = temp_dir("reload");
    let (cert, key) = write_pair(&dir, "app", &ca.server(&["app.test"]));
    // The single-pair form, as configs written before several certificates existed.
    let table = format!("{{ cert = \"{}\", key = \"{}\" }}", path(&cert), path(&key));
    let proxy = start_proxy(&tls_config(&backend, &table)).await;

    // A keep-alive connection opened before the swap must keep working after it.
    let kept = handshake(
        proxy.web,
        "app.test",
        client_config(ca.roots(), &[b"http/1.1"]),
    )
    .await
    .unwrap();
    let (mut kept, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(kept))
            .await
            .unwrap();
    tokio::spawn(conn);

    let load = TlsLoad::start(4, proxy.web, "app.test", ca.roots());
    assert!(
        eventually(Duration::from_secs(10), || load
            .served
            .load(Ordering::Relaxed)
            > 20)
        .await,
        "no traffic before the swap"
    );
    let renewed = ca.server(&["app.test", "renewed.app.test"]);
    replace_file(&key, &renewed.key);
    replace_file(&cert, &renewed.cert);
    assert!(
        eventually(Duration::from_secs(20), || load
            .saw(&["app.test", "renewed.app.test"]))
        .await,
        "the renewed certificate was never served"
    );
    let after = load.served.load(Ordering::Relaxed);
    assert!(
        eventually(Duration::from_secs(10), || load
            .served
            .load(Ordering::Relaxed)
            > after + 20)
        .await,
        "traffic stopped after the swap"
    );
    let (served, failed) = load.stop().await;
    assert_eq!(
        failed, 0,
        "{failed} of {served} requests failed across the swap"
    );

    let request = http::Request::get("/")
        .header("host", "app.test")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = kept.send_request(request).await.unwrap();
    assert_eq!(
        response.status(),
        200,
        "the connection opened before the swap broke"
    );
    assert!(
        metric(
            &proxy,
            "switchyard_tls_certificate_reloads_total{listener=\"web\",result=\"ok\"}"
        )
        .await
        .is_some_and(|v| v >= 1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_replacement_is_refused_and_the_old_certificate_keeps_serving() {
    let backend = TestBackend::start("app").await;
    let ca = TestCa::new("broken replacement CA");
    let dir = temp_dir("broken");
    let (cert, key) = write_pair(&dir, "app", &ca.server(&["app.test"]));
    let table = format!("{{ cert = \"{}\", key = \"{}\" }}", path(&cert), path(&key));
    let proxy = start_proxy(&tls_config(&backend, &table)).await;
    let config = client_config(ca.roots(), &[b"http/1.1"]);
    let failed = "switchyard_tls_certificate_reloads_total{listener=\"web\",result=\"failed\"}";

    // A certificate whose key is not the one on disk: refused.
    let other = ca.server(&["app.test", "mismatch.app.test"]);
    replace_file(&cert, &other.cert);
    let mut refused = false;
    for _ in 0..200 {
        if metric(&proxy, failed).await.is_some_and(|v| v >= 1.0) {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the mismatched pair was not counted as refused");
    let stream = handshake(proxy.web, "app.test", Arc::clone(&config))
        .await
        .unwrap();
    assert_eq!(
        served_names(&stream),
        ["app.test"],
        "the old certificate stopped serving"
    );
    assert_eq!(get_over(stream, "app.test", "/").await.0, 200);

    // Garbage: refused as well, the old certificate still serves.
    let before = metric(&proxy, failed).await.unwrap();
    replace_file(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    let mut refused_again = false;
    for _ in 0..200 {
        if metric(&proxy, failed).await.is_some_and(|v| v > before) {
            refused_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused_again, "the garbage file was not counted as refused");
    let stream = handshake(proxy.web, "app.test", Arc::clone(&config))
        .await
        .unwrap();
    assert_eq!(served_names(&stream), ["app.test"]);

    // A good pair after the bad ones is taken.
    let fixed = ca.server(&["app.test", "fixed.app.test"]);
    replace_file(&key, &fixed.key);
    replace_file(&cert, &fixed.cert);
    let mut taken = false;
    for _ in 0..200 {
        let stream = handshake(proxy.web, "app.test", Arc::clone(&config))
            .await
            .unwrap();
        if served_names(&stream) == ["app.test", "fixed.app.test"] {
            taken = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(taken, "a good pair after a broken one was not picked up");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_directory_is_watched_and_expiry_is_exported_per_name() {
    let backend = TestBackend::start("app").await;
    let ca = TestCa::new("directory CA");
    let dir = temp_dir("certdir");
    write_pair(&dir, "one", &ca.server_until(&["one.test"], 2031, 1, 1));
    let table = format!("{{ directory = \"{}\" }}", path(&dir));
    let proxy = start_proxy(&tls_config(&backend, &table)).await;
    let config = client_config(ca.roots(), &[b"http/1.1"]);

    let stream = handshake(proxy.web, "one.test", Arc::clone(&config))
        .await
        .unwrap();
    assert_eq!(served_names(&stream), ["one.test"]);
    // A combined file (chain and key in one .pem) dropped into the directory.
    let two = ca.server_until(&["two.test"], 2030, 6, 1);
    std::fs::write(dir.join(".two.tmp"), format!("{}{}", two.cert, two.key)).unwrap();
    std::fs::rename(dir.join(".two.tmp"), dir.join("two.pem")).unwrap();
    let mut picked_up = false;
    for _ in 0..200 {
        if let Ok(stream) = handshake(proxy.web, "two.test", Arc::clone(&config)).await
            && served_names(&stream) == ["two.test"]
        {
            picked_up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        picked_up,
        "a certificate added to the directory was not served"
    );

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let one = metric(
        &proxy,
        "switchyard_tls_certificate_expiry_seconds{name=\"one.test\"}",
    )
    .await
    .expect("expiry of one.test exported");
    let two = metric(
        &proxy,
        "switchyard_tls_certificate_expiry_seconds{name=\"two.test\"}",
    )
    .await
    .expect("expiry of two.test exported");
    let until = |y: i32, m: u8, d: u8| rcgen::date_time_ymd(y, m, d).unix_timestamp() as f64 - now;
    assert!(
        (one - until(2031, 1, 1)).abs() < 120.0,
        "one.test expiry {one}"
    );
    assert!(
        (two - until(2030, 6, 1)).abs() < 120.0,
        "two.test expiry {two}"
    );
    let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    support::assert_promtool_accepts(&String::from_utf8_lossy(&body));

    // Removed from the directory: no longer served (the other one is the default now).
    std::fs::remove_file(dir.join("two.pem")).unwrap();
    let mut dropped = false;
    for _ in 0..200 {
        if handshake(proxy.web, "two.test", Arc::clone(&config))
            .await
            .is_err()
        {
            dropped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        dropped,
        "a certificate removed from the directory was still served"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_floor_alpn_and_session_resumption_follow_the_config() {
    let backend = TestBackend::start("app").await;
    let ca = TestCa::new("handshake CA");
    let dir = temp_dir("handshake");
    let (cert, key) = write_pair(&dir, "app", &ca.server(&["app.test"]));
    let table = format!(
        "{{ cert = \"{}\", key = \"{}\", min_version = \"1.3\", alpn = [\"http/1.1\"] }}",
        path(&cert),
        path(&key)
    );
    let proxy = start_proxy(&tls_config(&backend, &table)).await;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls12_only = Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(ca.roots())
            .with_no_client_auth(),
    );
    assert!(
        handshake(proxy.web, "app.test", tls12_only).await.is_err(),
        "a TLS 1.2 client got in with min_version = 1.3"
    );

    let config = client_config(ca.roots(), &[b"h2", b"http/1.1"]);
    let first = handshake(proxy.web, "app.test", Arc::clone(&config))
        .await
        .unwrap();
    assert_eq!(first.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert_eq!(
        first.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(
        first.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Full)
    );
    // Reading a response lets the client take the session tickets sent after the handshake.
    assert_eq!(get_over(first, "app.test", "/").await.0, 200);
    let second = handshake(proxy.web, "app.test", Arc::clone(&config))
        .await
        .unwrap();
    assert_eq!(
        second.get_ref().1.handshake_kind(),
        Some(rustls::HandshakeKind::Resumed),
        "the second connection did not resume the session"
    );
    assert_eq!(get_over(second, "app.test", "/").await.0, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_table_change_swaps_certificates_without_closing_the_socket() {
    let backend = TestBackend::start("app").await;
    let ca = TestCa::new("table change CA");
    let dir = temp_dir("table");
    let (a_cert, a_key) = write_pair(&dir, "a", &ca.server(&["a.test"]));
    let (b_cert, b_key) = write_pair(&dir, "b", &ca.server(&["b.test"]));
    let file = dir.join("switchyard.toml");
    let one = format!(
        "{{ cert = \"{}\", key = \"{}\" }}",
        path(&a_cert),
        path(&a_key)
    );
    let config_one = tls_config(&backend, &one);
    std::fs::write(&file, &config_one).unwrap();
    let (proxy, _watcher) = support::start_watched_proxy(&file).await;
    let config = client_config(ca.roots(), &[b"http/1.1"]);
    let kept = handshake(proxy.web, "a.test", Arc::clone(&config))
        .await
        .unwrap();

    let both = format!(
        "{{ certificates = [{{ cert = \"{}\", key = \"{}\" }}, {{ cert = \"{}\", key = \"{}\" }}] }}",
        path(&a_cert),
        path(&a_key),
        path(&b_cert),
        path(&b_key)
    );
    std::fs::write(&file, tls_config(&backend, &both)).unwrap();
    let mut swapped = false;
    for _ in 0..200 {
        if let Ok(stream) = handshake(proxy.web, "b.test", Arc::clone(&config)).await
            && served_names(&stream) == ["b.test"]
        {
            swapped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        swapped,
        "the second certificate of the new tls table was not served"
    );
    assert_eq!(proxy.server.listener_address("web"), Some(proxy.web));
    assert_eq!(
        get_over(kept, "a.test", "/").await.0,
        200,
        "an open connection was closed"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_keeps_the_tls_table_applies_over_a_broken_certificate_on_disk() {
    let backend = TestBackend::start("app").await;
    let ca = TestCa::new("kept table CA");
    let dir = temp_dir("kept");
    let (cert, key) = write_pair(&dir, "app", &ca.server(&["app.test"]));
    let table = format!("{{ cert = \"{}\", key = \"{}\" }}", path(&cert), path(&key));
    let text = tls_config(&backend, &table);
    let proxy = start_proxy(&text).await;
    let config = client_config(ca.roots(), &[b"http/1.1"]);
    let failed = "switchyard_tls_certificate_reloads_total{listener=\"web\",result=\"failed\"}";
    let before = metric(&proxy, failed).await.unwrap_or(0.0);

    // The file breaks on disk; a reload that changes the limits (so the listener
    // restarts on its socket) but not the tls table still applies, the pair is
    // refused, and the old certificate keeps serving.
    replace_file(
        &cert,
        "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n",
    );
    let changed = format!("{text}\n[limits]\nidle_timeout = \"30s\"\n");
    let next = switchyard::config::Config::parse(Path::new("test.toml"), &changed).unwrap();
    proxy
        .server
        .apply(next)
        .await
        .expect("a certificate the reload does not change cannot fail it");
    assert_eq!(
        proxy.server.snapshot().config.limits.idle_timeout,
        Duration::from_secs(30)
    );
    assert_eq!(proxy.server.listener_address("web"), Some(proxy.web));
    assert!(
        metric(&proxy, failed).await.is_some_and(|v| v > before),
        "the broken pair was not refused"
    );
    let stream = handshake(proxy.web, "app.test", Arc::clone(&config))
        .await
        .unwrap();
    assert_eq!(served_names(&stream), ["app.test"]);
    assert_eq!(get_over(stream, "app.test", "/").await.0, 200);

    // A reload that changes the tls table to the broken file is refused whole,
    // naming the field.
    let (other_cert, other_key) = write_pair(&dir, "other", &ca.server(&["other.test"]));
    replace_file(&other_cert, "not a certificate");
    let broken = tls_config(
        &backend,
        &format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            path(&other_cert),
            path(&other_key)
        ),
    );
    let next = switchyard::config::Config::parse(Path::new("test.toml"), &broken).unwrap();
    let error = proxy.server.apply(next).await.unwrap_err().to_string();
    assert!(
        error.contains("listener[0].tls.cert") && error.contains("listener `web`"),
        "{error}"
    );
    assert_eq!(
        proxy.server.snapshot().config.limits.idle_timeout,
        Duration::from_secs(30),
        "the refused reload changed the running config"
    );
    let stream = handshake(proxy.web, "app.test", Arc::clone(&config))
        .await
        .unwrap();
    assert_eq!(served_names(&stream), ["app.test"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TLS backend serving `cert` for its name and, when `client_ca` is given,
/// requiring a client certificate issued by it.
async fn tls_backend(
    name: &str,
    server: &support::tls::Issued,
    client_ca: Option<&TestCa>,
) -> TestBackend {
    TestBackend::start_tls(name, backend_tls(server, client_ca)).await
}

/// A backend's TLS settings: `server`'s certificate, h2 and HTTP/1.1 by ALPN, and a
/// client certificate from `client_ca` required when it is given.
fn backend_tls(
    server: &support::tls::Issued,
    client_ca: Option<&TestCa>,
) -> Arc<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<_> = rustls::pki_types::CertificateDer::pem_slice_iter(server.cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(server.key.as_bytes()).unwrap();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(ca.roots()),
                provider,
            )
            .build()
            .unwrap(),
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

/// What a [`recording_tls_backend`] saw of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    /// The name the client sent by SNI.
    sni: Option<String>,
    version: http::Version,
    path: String,
    /// The `x-probe` header, empty when absent.
    probe: String,
}

/// A TLS backend (see [`backend_tls`]) that answers 200 and records each request.
async fn recording_tls_backend(
    config: Arc<rustls::ServerConfig>,
) -> (std::net::SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let record = Arc::clone(&seen);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, record) = (acceptor.clone(), Arc::clone(&record));
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_string);
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    record.lock().push(Seen {
                        sni: sni.clone(),
                        version: req.version(),
                        path: req
                            .uri()
                            .path_and_query()
                            .map_or(String::new(), |p| p.as_str().to_string()),
                        probe: req
                            .headers()
                            .get("x-probe")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string(),
                    });
                    async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (address, seen)
}

/// A health plugin's own probe (`probe-request`) goes over the pool's upstream TLS,
/// as the configured probe would: its SNI and CA, HTTP/2 by ALPN, and the method,
/// path and headers the plugin asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_plugins_own_probe_goes_over_the_pools_upstream_tls() {
    let ca = TestCa::new("backend server CA");
    let dir = temp_dir("probe-request");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (address, seen) =
        recording_tls_backend(backend_tls(&ca.server(&["backend.test"]), None)).await;
    // The test plugin asks for `GET /custom?from=plugin` with `x-probe: hostile` in
    // a pool named `custom`.
    let plugin = switchyard::plugin::test_plugin_dir().join("hostile_health.wasm");
    let config = format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"custom\"\n\
         [pool.custom]\nbackends = [{{ address = \"{address}\" }}]\n\
         tls = {{ sni = \"backend.test\", ca = \"{}\" }}\n\
         [pool.custom.health]\npath = \"/configured\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\n\
         rise = 1\nfall = 1\nevaluate = \"plugin:hh\"\n\
         [plugin.hh]\nkind = \"health-check\"\npath = '{}'\ntimeout = \"50ms\"\n",
        path(&ca_file),
        path(&plugin)
    );
    let proxy = start_proxy(&config).await;
    assert!(
        eventually(Duration::from_secs(10), || seen.lock().len() >= 2).await,
        "no probe reached the TLS backend"
    );
    let expected = Seen {
        sni: Some("backend.test".into()),
        version: http::Version::HTTP_2,
        path: "/custom?from=plugin".into(),
        probe: "hostile".into(),
    };
    for request in seen.lock().iter() {
        assert_eq!(request, &expected);
    }
    let mut up = false;
    for _ in 0..100 {
        if status(&proxy).await["pools"][0]["backends"][0]["health"] == "up" {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        up,
        "the plugin's probes over TLS did not see the backend up"
    );
    proxy.server.shutdown(Duration::from_secs(2)).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pools_speak_tls_to_backends_with_a_private_ca_client_certificates_and_h2() {
    let server_ca = TestCa::new("backend server CA");
    let client_ca = TestCa::new("proxy client CA");
    let dir = temp_dir("upstream");
    let server_ca_file = dir.join("server-ca.pem");
    std::fs::write(&server_ca_file, server_ca.pem()).unwrap();
    let (client_cert, client_key) = write_pair(&dir, "proxy-client", &client_ca.client("proxy"));
    let backend = tls_backend(
        "secure",
        &server_ca.server(&["backend.test"]),
        Some(&client_ca),
    )
    .await;

    let health = "[pool.app.health]\npath = \"/\"\ninterval = \"100ms\"\ntimeout = \"90ms\"\nrise = 1\nfall = 1\n";
    let mtls = format!(
        "tls = {{ sni = \"backend.test\", ca = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}\n{health}",
        path(&server_ca_file),
        path(&client_cert),
        path(&client_key)
    );
    let proxy = start_proxy(&simple_config(&[&backend], &mtls)).await;
    let c = client();
    for _ in 0..5 {
        let (code, name, _) = get(&c, &format!("http://{}/", proxy.web)).await;
        assert_eq!((code, name.as_str()), (200, "secure"));
    }
    assert!(
        backend.h2_hits() >= 5,
        "ALPN did not settle on h2 ({} h2 requests)",
        backend.h2_hits()
    );
    // Over HTTP/2 the client's host travels as :authority, which servers go by.
    let (code, _, body) = support::get_with(
        &c,
        &format!("http://{}/headers", proxy.web),
        Some(("host", "shop.example")),
    )
    .await;
    assert_eq!(code, 200);
    let seen: std::collections::HashMap<String, String> = serde_json::from_slice(&body).unwrap();
    assert_eq!(seen[":authority"], "shop.example", "{seen:?}");
    assert!(
        eventually(Duration::from_secs(10), || backend.hits() > 6).await,
        "no health probe reached the TLS backend"
    );
    let mut up = false;
    for _ in 0..100 {
        let s = status(&proxy).await;
        if s["pools"][0]["backends"][0]["health"] == "up" {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "health probes over TLS did not see the backend up");
    // Its probes would keep reaching the backend (over h2) during the checks below.
    proxy.server.shutdown(Duration::from_secs(2)).await;

    // Without the client certificate the backend refuses the handshake: a 502 (no
    // health check here, so the request itself meets the refusal)...
    let no_client_cert = format!(
        "tls = {{ sni = \"backend.test\", ca = \"{}\" }}\n",
        path(&server_ca_file)
    );
    let proxy = start_proxy(&simple_config(&[&backend], &no_client_cert)).await;
    let (code, _, _) = get(&c, &format!("http://{}/", proxy.web)).await;
    assert_eq!(
        code, 502,
        "a backend requiring mTLS answered without a client certificate"
    );
    // ...and probes with the same settings mark it down.
    let proxy = start_proxy(&simple_config(
        &[&backend],
        &format!("{no_client_cert}{health}"),
    ))
    .await;
    let mut down = false;
    for _ in 0..100 {
        if status(&proxy).await["pools"][0]["backends"][0]["health"] == "down" {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        down,
        "health probes without a client certificate did not mark the backend down"
    );
    proxy.server.shutdown(Duration::from_secs(2)).await;

    // A CA that did not sign the backend's certificate: verification fails.
    let wrong_ca_file = dir.join("wrong-ca.pem");
    std::fs::write(&wrong_ca_file, client_ca.pem()).unwrap();
    let wrong = format!(
        "tls = {{ sni = \"backend.test\", ca = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}",
        path(&wrong_ca_file),
        path(&client_cert),
        path(&client_key)
    );
    let proxy = start_proxy(&simple_config(&[&backend], &wrong)).await;
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 502);

    // The wrong name fails too, unless verification is off.
    let wrong_name = format!(
        "tls = {{ sni = \"other.test\", ca = \"{}\", client_cert = \"{}\", client_key = \"{}\" }}",
        path(&server_ca_file),
        path(&client_cert),
        path(&client_key)
    );
    let proxy = start_proxy(&simple_config(&[&backend], &wrong_name)).await;
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 502);
    let unverified = format!(
        "tls = {{ sni = \"other.test\", verify = false, client_cert = \"{}\", client_key = \"{}\", alpn = [\"http/1.1\"] }}",
        path(&client_cert),
        path(&client_key)
    );
    let before_h2 = backend.h2_hits();
    let proxy = start_proxy(&simple_config(&[&backend], &unverified)).await;
    assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    assert_eq!(
        backend.h2_hits(),
        before_h2,
        "alpn = [\"http/1.1\"] still spoke h2"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn broken_tls_files_are_config_errors_with_their_location() {
    let dir = temp_dir("tls-config");
    let junk = dir.join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let text = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n[[route]]\nname = \"r\"\nlistener = \"web\"\npool = \"app\"\n\
         [pool.app]\nbackends = [{{ address = \"127.0.0.1:1\" }}]\ntls = {{ ca = \"{}\" }}\n",
        path(&junk)
    );
    let error = switchyard::config::Config::parse(Path::new("t.toml"), &text).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("t.toml:10:"), "{message}");
    assert!(message.contains("pool.app.tls"), "{message}");
    assert!(message.contains("no PEM certificate"), "{message}");

    // A pair whose key belongs to another certificate passes validation (both files
    // exist and parse) but not loading, which names the pair's key.
    let ca = TestCa::new("config CA");
    let (good_cert, good_key) = write_pair(&dir, "good", &ca.server(&["good.test"]));
    let (bad_cert, _) = write_pair(&dir, "bad", &ca.server(&["bad.test"]));
    let text = format!(
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         tls = {{ cert = \"{}\", key = \"{}\", certificates = [{{ cert = \"{}\", key = \"{}\" }}] }}\n",
        path(&good_cert),
        path(&good_key),
        path(&bad_cert),
        path(&good_key)
    );
    let config = switchyard::config::Config::parse(Path::new("t.toml"), &text).unwrap();
    let tls = config.listeners[0].tls.as_ref().unwrap();
    let registry = switchyard::tls::TlsRegistry::new();
    let Err(error) = switchyard::server::build_acceptor("web", tls, &registry) else {
        panic!("a pair with a foreign key was accepted");
    };
    assert_eq!(
        error.field().as_deref(),
        Some("listener[0].tls.certificates[0].key")
    );
    assert!(error.to_string().contains("does not match"), "{error}");

    let text =
        "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\ntls = { min_version = \"1.3\" }\n";
    let message = switchyard::config::Config::parse(Path::new("t.toml"), text)
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("listener[0].tls: no certificate"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
