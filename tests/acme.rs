//! ACME end to end against pebble (Let's Encrypt's test CA, Debian package
//! `pebble`), started here on loopback with pebble-challtestsrv as its DNS: the proxy
//! retries while the CA is down, then obtains a certificate through HTTP-01 or
//! TLS-ALPN-01, stores it 0600 and serves it; a restart serves the stored one.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use support::tls::{TestCa, client_config, get_over, handshake, served_names, temp_dir};
use support::{TestBackend, client, get, ports_for_tools, skip_or_fail, start_proxy};

const NAME: &str = "acme.switchyard.test";

/// A child process killed when dropped.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Finds an executable on the PATH.
fn find(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join(tool))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    ports_for_tools(1)[0]
}

fn spawn(program: &Path, args: &[&str], envs: &[(&str, &str)], log: PathBuf) -> Process {
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    Process { child, log }
}

/// pebble and its DNS, on loopback ports; validation goes to `http_port` (HTTP-01)
/// and `tls_port` (TLS-ALPN-01) of 127.0.0.1.
struct Pebble {
    _dns: Process,
    ca: Process,
    management: u16,
}

impl Pebble {
    /// Starts both; `acme_port` is where the ACME directory will answer.
    async fn start(
        dir: &Path,
        https: &TestCa,
        acme_port: u16,
        http_port: u16,
        tls_port: u16,
    ) -> Pebble {
        let pebble = find("pebble").unwrap();
        let challtestsrv = find("pebble-challtestsrv").unwrap();
        // Ports are picked free and handed over, so another process on the machine can
        // take one in between: pebble then exits on "address already in use", and the
        // start is tried again on fresh ports.
        let mut logs = String::new();
        for attempt in 1..=5 {
            match Self::try_start(
                dir,
                https,
                &pebble,
                &challtestsrv,
                acme_port,
                http_port,
                tls_port,
            )
            .await
            {
                Ok(started) => return started,
                Err(log) => logs.push_str(&format!("--- attempt {attempt} ---\n{log}\n")),
            }
        }
        panic!("pebble did not start:\n{logs}");
    }

    /// One start on freshly picked ports; the logs of both tools when either exits or
    /// pebble does not answer within 10 s.
    async fn try_start(
        dir: &Path,
        https: &TestCa,
        pebble: &Path,
        challtestsrv: &Path,
        acme_port: u16,
        http_port: u16,
        tls_port: u16,
    ) -> Result<Pebble, String> {
        let dns_port = free_port();
        let management = free_port();
        let dns_management = free_port();
        let mut dns = spawn(
            challtestsrv,
            &[
                "-dns01",
                &format!("127.0.0.1:{dns_port}"),
                "-http01",
                "",
                "-https01",
                "",
                "-tlsalpn01",
                "",
                "-management",
                &format!("127.0.0.1:{dns_management}"),
                "-defaultIPv4",
                "127.0.0.1",
                "-defaultIPv6",
                "",
            ],
            &[],
            dir.join("challtestsrv.log"),
        );
        // pebble's own HTTPS listener, with a certificate from the test's CA.
        let served = https.server(&["127.0.0.1", "localhost"]);
        std::fs::write(dir.join("pebble-cert.pem"), &served.cert).unwrap();
        std::fs::write(dir.join("pebble-key.pem"), &served.key).unwrap();
        let config = serde_json::json!({
            "pebble": {
                "listenAddress": format!("127.0.0.1:{acme_port}"),
                "managementListenAddress": format!("127.0.0.1:{management}"),
                "certificate": dir.join("pebble-cert.pem"),
                "privateKey": dir.join("pebble-key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": false
            }
        });
        let config_file = dir.join("pebble-config.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let mut ca = spawn(
            pebble,
            &[
                "-config",
                config_file.to_str().unwrap(),
                "-dnsserver",
                &format!("127.0.0.1:{dns_port}"),
            ],
            &[
                // No random validation delays, no deliberately rejected nonces.
                ("PEBBLE_VA_NOSLEEP", "1"),
                ("PEBBLE_WFE_NONCEREJECT", "0"),
            ],
            dir.join("pebble.log"),
        );
        for _ in 0..200 {
            let exited = matches!(ca.child.try_wait(), Ok(Some(_)))
                || matches!(dns.child.try_wait(), Ok(Some(_)));
            if exited {
                break;
            }
            // A TLS handshake under the test's CA tells pebble from a stranger that
            // took the port.
            let pebble_answers = |port: u16| {
                tokio::time::timeout(
                    Duration::from_secs(1),
                    handshake(
                        ([127, 0, 0, 1], port).into(),
                        "127.0.0.1",
                        client_config(https.roots(), &[b"http/1.1"]),
                    ),
                )
            };
            if matches!(pebble_answers(acme_port).await, Ok(Ok(_)))
                && matches!(pebble_answers(management).await, Ok(Ok(_)))
                && tokio::net::TcpStream::connect(("127.0.0.1", dns_port))
                    .await
                    .is_ok()
            {
                return Ok(Pebble {
                    _dns: dns,
                    ca,
                    management,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "--- pebble ---\n{}\n--- pebble-challtestsrv ---\n{}",
            ca.log(),
            dns.log()
        ))
    }

    /// The root certificate this pebble run issues under (fresh every run).
    async fn root(&self, https: &TestCa) -> rustls::RootCertStore {
        use rustls::pki_types::pem::PemObject;
        let addr: SocketAddr = ([127, 0, 0, 1], self.management).into();
        let stream = handshake(
            addr,
            "127.0.0.1",
            client_config(https.roots(), &[b"http/1.1"]),
        )
        .await
        .unwrap();
        let (code, pem) = get_over(stream, "127.0.0.1", "/roots/0").await;
        assert_eq!(code, 200, "pebble management: {pem}");
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
            .unwrap();
        roots
    }
}

fn tools_present() -> bool {
    if find("pebble").is_some() && find("pebble-challtestsrv").is_some() {
        return true;
    }
    skip_or_fail(
        "pebble and pebble-challtestsrv not installed (apt-get install pebble): skipping the ACME test",
    );
    false
}

fn config(
    backend: &TestBackend,
    acme_port: u16,
    storage: &Path,
    ca: &Path,
    challenge: &str,
) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"websecure\"\nlisten = \"127.0.0.1:0\"\ntls = {{}}\n\n\
         [[route]]\nname = \"plain\"\nlistener = \"web\"\npool = \"app\"\n\n\
         [[route]]\nname = \"secure\"\nlistener = \"websecure\"\npool = \"app\"\n\n\
         [pool.app]\nbackends = [{{ address = \"{}\" }}]\n\n\
         [acme]\ndirectory = \"https://127.0.0.1:{acme_port}/dir\"\ncontact = [\"mailto:ops@switchyard.test\"]\n\
         storage = \"{}\"\nlistener = \"websecure\"\nnames = [\"{NAME}\"]\nchallenge = \"{challenge}\"\n\
         ca = \"{}\"\nretry_min = \"200ms\"\nretry_max = \"1s\"\n",
        backend.addr,
        storage.display(),
        ca.display()
    )
}

async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let (_, _, body) = get(&client(), &format!("http://{admin}/metrics")).await;
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn obtains_and_serves_a_certificate(challenge: &str) {
    if !tools_present() {
        return;
    }
    let dir = temp_dir("acme");
    let https = TestCa::new("pebble HTTPS test CA");
    let https_ca = dir.join("pebble-https-ca.pem");
    std::fs::write(&https_ca, https.pem()).unwrap();
    let storage = dir.join("acme");
    let backend = TestBackend::start("app").await;
    let acme_port = free_port();
    let proxy = start_proxy(&config(&backend, acme_port, &storage, &https_ca, challenge)).await;
    let secure = proxy.server.listener_address("websecure").unwrap();

    // The CA is not up yet: orders fail, are counted, and retried with backoff.
    let failed = "switchyard_acme_orders_total{listener=\"websecure\",result=\"failed\"}";
    let mut counted = false;
    for _ in 0..200 {
        if metric(proxy.admin, failed).await >= 1.0 {
            counted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(counted, "a failed order was not counted");
    assert!(
        metric(
            proxy.admin,
            "switchyard_acme_consecutive_failures{listener=\"websecure\"}"
        )
        .await
            >= 1.0
    );

    let pebble = Pebble::start(&dir, &https, acme_port, proxy.web.port(), secure.port()).await;
    let roots = pebble.root(&https).await;
    let verified = client_config(roots, &[b"http/1.1"]);
    let mut served = None;
    for _ in 0..600 {
        if let Ok(stream) = handshake(secure, NAME, Arc::clone(&verified)).await {
            served = Some(stream);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(stream) = served else {
        let last_error = proxy
            .server
            .tls()
            .acme_slot("websecure")
            .last_error
            .lock()
            .clone();
        panic!(
            "no certificate from pebble was served within 60s; last ACME error: {last_error:?}\n--- pebble ---\n{}",
            pebble.ca.log()
        );
    };
    assert_eq!(served_names(&stream), [NAME]);
    assert_eq!(get_over(stream, NAME, "/").await, (200, "app".to_string()));
    let issued = "switchyard_acme_orders_total{listener=\"websecure\",result=\"issued\"}";
    assert_eq!(metric(proxy.admin, issued).await, 1.0);
    assert_eq!(
        metric(
            proxy.admin,
            "switchyard_acme_consecutive_failures{listener=\"websecure\"}"
        )
        .await,
        0.0
    );
    let expiry = format!("switchyard_tls_certificate_expiry_seconds{{name=\"{NAME}\"}}");
    assert!(metric(proxy.admin, &expiry).await > 0.0);

    // Stored with the account, readable by the owner only.
    let mut stored: Vec<String> = std::fs::read_dir(&storage)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    stored.sort();
    assert_eq!(stored.len(), 3, "{stored:?}");
    assert!(
        stored
            .iter()
            .any(|f| f.starts_with("account-") && f.ends_with(".json"))
    );
    assert!(stored.contains(&format!("{NAME}.crt")) && stored.contains(&format!("{NAME}.key")));
    #[cfg(unix)]
    for file in &stored {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(storage.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} has mode {:o}", mode & 0o777);
    }

    // Restarted with the CA gone: the stored certificate serves at once, no new order.
    drop(pebble);
    proxy.server.shutdown(Duration::from_secs(2)).await;
    let again = start_proxy(&config(&backend, acme_port, &storage, &https_ca, challenge)).await;
    let secure = again.server.listener_address("websecure").unwrap();
    let mut resumed = false;
    for _ in 0..100 {
        if let Ok(stream) = handshake(secure, NAME, Arc::clone(&verified)).await {
            assert_eq!(served_names(&stream), [NAME]);
            resumed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        resumed,
        "the stored certificate was not served after a restart"
    );
    assert_eq!(metric(again.admin, issued).await, 0.0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_issues_a_certificate_through_http_01() {
    obtains_and_serves_a_certificate("http-01").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pebble_issues_a_certificate_through_tls_alpn_01() {
    obtains_and_serves_a_certificate("tls-alpn-01").await;
}
