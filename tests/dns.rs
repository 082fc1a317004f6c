//! Backends named by DNS, resolved through a test DNS server on loopback: traffic
//! follows a changed answer with no failed request, addresses that stay keep their
//! state, a failed lookup keeps the last good addresses, SRV records give targets and
//! ports, a TLS pool presents the DNS name as SNI, a refused reload leaves the names
//! followed as they were, and a state file cannot remove what DNS gave.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use support::dns::{Answer, TestDns};
use support::tls::{TestCa, temp_dir};
use support::{Load, TestBackend, client, eventually, get, start_proxy, status};

/// One listener, one route, pool `app` with `backends`, resolving through `dns`.
fn config(dns: &TestDns, backends: &str, pool_extra: &str) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[dns]\nservers = [\"{}\"]\nmin_ttl = \"100ms\"\nmax_ttl = \"1s\"\n\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\n\
         [pool.app]\nbackends = [{backends}]\n{pool_extra}\n",
        dns.addr
    )
}

/// Two backends on the same port of two loopback addresses, as two hosts would be.
async fn two_hosts() -> (TestBackend, TestBackend, u16) {
    for _ in 0..20 {
        let a = TestBackend::start_on("a", "127.0.0.2:0".parse().unwrap()).await;
        let port = a.addr.port();
        if std::net::TcpListener::bind(("127.0.0.3", port)).is_ok() {
            let b = TestBackend::start_on("b", SocketAddr::from(([127, 0, 0, 3], port))).await;
            return (a, b, port);
        }
        a.kill();
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

/// The backends of pool `app` in `/status`: address and requests served.
async fn backends(proxy: &support::TestProxy) -> Vec<(String, u64)> {
    status(proxy).await["pools"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["address"].as_str().unwrap().to_string(),
                b["requests"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn wait_for_backends(proxy: &support::TestProxy, wanted: &[String]) -> Vec<(String, u64)> {
    for _ in 0..300 {
        let now = backends(proxy).await;
        let mut addresses: Vec<&String> = now.iter().map(|(a, _)| a).collect();
        addresses.sort();
        if addresses.iter().copied().eq(wanted.iter()) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "pool never had exactly {wanted:?}: {:?}",
        backends(proxy).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_follows_a_changed_dns_answer_with_no_failed_request() {
    let dns = TestDns::start().await;
    let (a, b, port) = two_hosts().await;
    let (ip_a, ip_b) = (Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3));
    dns.set("app.test", Answer::A(vec![ip_a], 1));
    let proxy = start_proxy(&config(
        &dns,
        &format!("{{ address = \"app.test:{port}\" }}"),
        "",
    ))
    .await;
    let key_a = format!("{ip_a}:{port}");
    let key_b = format!("{ip_b}:{port}");
    assert_eq!(
        backends(&proxy).await.len(),
        1,
        "the name was not resolved at start"
    );

    let load = Load::start(4, format!("http://{}/", proxy.web));
    assert!(eventually(Duration::from_secs(10), || a.hits() > 50).await);
    let served_by_a = backends(&proxy).await[0].1;

    // Both addresses: the one that stays keeps its state (its request counter goes on).
    dns.set("app.test", Answer::A(vec![ip_a, ip_b], 1));
    let both = wait_for_backends(&proxy, &[key_a.clone(), key_b.clone()]).await;
    let a_now = both.iter().find(|(k, _)| *k == key_a).unwrap().1;
    assert!(
        a_now >= served_by_a,
        "{key_a}'s state was reset: {a_now} < {served_by_a}"
    );
    assert!(eventually(Duration::from_secs(10), || b.hits() > 20).await);

    // Only the new address: traffic leaves the old one.
    dns.set("app.test", Answer::A(vec![ip_b], 1));
    wait_for_backends(&proxy, std::slice::from_ref(&key_b)).await;
    let a_after = a.hits();
    let b_after = b.hits();
    assert!(eventually(Duration::from_secs(10), || b.hits() > b_after + 50).await);
    assert!(
        a.hits() <= a_after + 4,
        "requests still went to the old address"
    );

    let (served, failed) = load.stop().await;
    assert_eq!(
        failed, 0,
        "{failed} of {served} requests failed while the answer changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_keeps_the_last_good_addresses() {
    let dns = TestDns::start().await;
    let backend = TestBackend::start("only").await;
    dns.set("app.test", Answer::A(vec![Ipv4Addr::LOCALHOST], 1));
    let address = format!("{{ address = \"app.test:{}\" }}", backend.addr.port());
    let proxy = start_proxy(&config(&dns, &address, "")).await;
    let url = format!("http://{}/", proxy.web);
    assert_eq!(get(&client(), &url).await.0, 200);

    dns.set("app.test", Answer::Fail);
    let failed = "switchyard_dns_resolutions_total{name=\"app.test\",result=\"failed\"}";
    let mut failures = 0.0;
    for _ in 0..300 {
        let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
        let text = String::from_utf8_lossy(&body).into_owned();
        failures = text
            .lines()
            .find_map(|l| l.strip_prefix(failed)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0);
        if failures >= 2.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(failures >= 2.0, "lookups did not fail ({failures})");
    assert_eq!(
        backends(&proxy).await.len(),
        1,
        "the last good address was dropped"
    );
    for _ in 0..10 {
        assert_eq!(get(&client(), &url).await.0, 200);
    }
    // A name that disappears (NXDOMAIN) also keeps the last good addresses.
    dns.remove("app.test");
    let before = dns.queries();
    assert!(eventually(Duration::from_secs(10), || dns.queries() > before + 2).await);
    assert_eq!(
        backends(&proxy).await.len(),
        1,
        "NXDOMAIN dropped the last good address"
    );
    assert_eq!(get(&client(), &url).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_records_give_targets_and_ports_of_the_lowest_priority() {
    let dns = TestDns::start().await;
    let one = TestBackend::start("one").await;
    let two = TestBackend::start("two").await;
    let spare = TestBackend::start("spare").await;
    for name in ["one.test", "two.test", "spare.test"] {
        dns.set(name, Answer::A(vec![Ipv4Addr::LOCALHOST], 30));
    }
    dns.set(
        "_http._tcp.app.test",
        Answer::Srv(
            vec![
                (10, 1, one.addr.port(), "one.test".into()),
                (10, 1, two.addr.port(), "two.test".into()),
                (20, 1, spare.addr.port(), "spare.test".into()),
            ],
            30,
        ),
    );
    let proxy = start_proxy(&config(&dns, "{ srv = \"_http._tcp.app.test\" }", "")).await;
    let c = client();
    for _ in 0..20 {
        assert_eq!(get(&c, &format!("http://{}/", proxy.web)).await.0, 200);
    }
    assert!(
        one.hits() >= 5 && two.hits() >= 5,
        "one {} two {}",
        one.hits(),
        two.hits()
    );
    assert_eq!(
        spare.hits(),
        0,
        "a higher-priority-number target got traffic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_pool_presents_the_dns_name_as_sni() {
    use rustls::pki_types::pem::PemObject;
    let dns = TestDns::start().await;
    let ca = TestCa::new("dns sni CA");
    let issued = ca.server(&["secure.test"]);
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
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
    let backend = TestBackend::start_tls("secure", std::sync::Arc::new(server)).await;
    dns.set("secure.test", Answer::A(vec![Ipv4Addr::LOCALHOST], 30));
    let dir = temp_dir("dns-sni");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let proxy = start_proxy(&config(
        &dns,
        &format!("{{ address = \"secure.test:{}\" }}", backend.addr.port()),
        &format!("tls = {{ ca = \"{}\" }}", ca_file.display()),
    ))
    .await;
    let (code, name, _) = get(&client(), &format!("http://{}/", proxy.web)).await;
    assert_eq!((code, name.as_str()), (200, "secure"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The value of one series in `/metrics`, if present.
async fn metric(proxy: &support::TestProxy, series: &str) -> Option<f64> {
    let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reload_leaves_the_dns_names_followed_as_before() {
    let dns = TestDns::start().await;
    let (_a, b, port) = two_hosts().await;
    dns.set("app.test", Answer::A(vec![Ipv4Addr::new(127, 0, 0, 2)], 1));
    dns.set(
        "other.test",
        Answer::A(vec![Ipv4Addr::new(127, 0, 0, 3)], 1),
    );
    let proxy = start_proxy(&config(
        &dns,
        &format!("{{ address = \"app.test:{port}\" }}"),
        "",
    ))
    .await;
    wait_for_backends(&proxy, &[format!("127.0.0.2:{port}")]).await;

    // A reload that names the pool's backends by another name and adds a listener on
    // a taken address is refused before anything changes.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = config(&dns, &format!("{{ address = \"other.test:{port}\" }}"), "").replace(
        "[[route]]",
        &format!(
            "[[listener]]\nname = \"extra\"\nlisten = \"{}\"\n\n[[route]]",
            taken.local_addr().unwrap()
        ),
    );
    let next =
        switchyard::config::Config::parse(std::path::Path::new("test.toml"), &refused).unwrap();
    let error = proxy.server.apply(next).await.unwrap_err().to_string();
    assert!(error.contains("listener `extra` cannot listen"), "{error}");
    assert_eq!(
        backends(&proxy).await[0].0,
        format!("127.0.0.2:{port}"),
        "the refused reload changed the pool"
    );
    let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    assert!(
        !String::from_utf8_lossy(&body).contains("name=\"other.test\""),
        "the refused reload's DNS name is followed"
    );

    // The running config's name is still followed: a changed answer moves the
    // traffic, and a rebuild of the snapshot (an admin change) keeps what it found.
    dns.set("app.test", Answer::A(vec![Ipv4Addr::new(127, 0, 0, 3)], 1));
    wait_for_backends(&proxy, &[format!("127.0.0.3:{port}")]).await;
    proxy.server.reapply().await.unwrap();
    assert_eq!(backends(&proxy).await.len(), 1);
    let before = b.hits();
    for _ in 0..5 {
        assert_eq!(
            get(&client(), &format!("http://{}/", proxy.web)).await.1,
            "b"
        );
    }
    assert_eq!(b.hits(), before + 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_cannot_remove_a_backend_found_in_dns() {
    let dns = TestDns::start().await;
    let (_a, _b, port) = two_hosts().await;
    dns.set(
        "app.test",
        Answer::A(
            vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)],
            30,
        ),
    );
    let dir = temp_dir("dns-state");
    let state = dir.join("state.json");
    let saved = serde_json::json!({
        "members": {"removed": {"app": [{"address": format!("127.0.0.2:{port}"), "weight": 1}]}}
    });
    std::fs::write(&state, serde_json::to_vec(&saved).unwrap()).unwrap();
    let text = config(&dns, &format!("{{ address = \"app.test:{port}\" }}"), "").replace(
        "[admin]\nlisten = \"127.0.0.1:0\"\n",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\nstate_file = \"{}\"\n",
            state.display()
        ),
    );
    let proxy = start_proxy(&text).await;
    let mut addresses: Vec<String> = backends(&proxy).await.into_iter().map(|(a, _)| a).collect();
    addresses.sort();
    assert_eq!(
        addresses,
        [format!("127.0.0.2:{port}"), format!("127.0.0.3:{port}")],
        "the state file took out a backend DNS gave"
    );
    assert_eq!(
        metric(
            &proxy,
            "switchyard_state_file_skipped_total{kind=\"removed\"}"
        )
        .await,
        Some(1.0)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
