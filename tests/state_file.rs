//! The state file under concurrent changes and restarts, and a hand-broken one: the
//! proxy starts, serves, restores what fits and says what it skipped.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-state-{tag}-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn with_state_file(config: String, state: &Path) -> String {
    config.replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!(
            "[admin]\nlisten = \"127.0.0.1:0\"\nstate_file = \"{}\"",
            state.display()
        ),
    )
}

async fn metrics_text(proxy: &TestProxy) -> String {
    let (_, _, body) = get(&client(), &format!("http://{}/metrics", proxy.admin)).await;
    String::from_utf8_lossy(&body).into_owned()
}

fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_changes_all_survive_a_restart() {
    let a = TestBackend::start("a").await;
    let dir = temp_dir("fifty");
    let state = dir.join("state.json");
    let config = with_state_file(simple_config(&[&a], ""), &state);
    let proxy = start_proxy(&config).await;

    let calls: Vec<_> = (1..=50u16)
        .map(|i| {
            let body = format!(
                r#"{{"address": "127.0.0.9:{}", "weight": {i}}}"#,
                20_000 + i
            );
            let admin = proxy.admin;
            tokio::spawn(async move {
                let req = http::Request::post(format!("http://{admin}/pools/app/backends"))
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                    .unwrap();
                client().request(req).await.unwrap().status().as_u16()
            })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 201);
    }
    // Each answer came after its change was on disk: read the file before any
    // shutdown flush.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(
        saved["members"]["added"]["app"].as_array().map(Vec::len),
        Some(50),
        "{saved}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(proxy.server.shutdown(Duration::from_secs(2)).await);
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "state.json")
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );

    let restarted = start_proxy(&config).await;
    let status = status(&restarted).await;
    let backends = status["pools"][0]["backends"].as_array().unwrap();
    assert_eq!(backends.len(), 51, "{status}");
    for i in 1..=50u16 {
        let address = format!("127.0.0.9:{}", 20_000 + i);
        let b = backends
            .iter()
            .find(|b| b["address"] == address)
            .unwrap_or_else(|| panic!("{address} was not restored"));
        assert_eq!(b["weight"], i, "{b}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn three_routes(blue: &TestBackend, green: &TestBackend) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
         [[route]]\nname = \"empty\"\nlistener = \"web\"\npath_prefix = \"/empty\"\npool = \"blue\"\n\
         [[route]]\nname = \"overfull\"\nlistener = \"web\"\npath_prefix = \"/overfull\"\npool = \"blue\"\n\
         [[route]]\nname = \"switched\"\nlistener = \"web\"\npath_prefix = \"/switched\"\npool = \"blue\"\n\
         [pool.blue]\nbackends = [{{ address = \"{}\" }}]\n[pool.green]\nbackends = [{{ address = \"{}\" }}]\n",
        blue.addr, green.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_broken_state_file_is_restored_in_part_and_never_breaks_requests() {
    capture_json_logs("switchyard=warn");
    let (blue, green, extra) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
        TestBackend::start("extra").await,
    );
    let dir = temp_dir("broken");
    let state = dir.join("state.json");
    let broken = serde_json::json!({
        "backends": {
            format!("green/{}", green.addr): {"admin_state": "disabled", "weight": 1, "config_weight": 1},
            format!("blue/{}", blue.addr): {"admin_state": "sideways", "weight": 1, "config_weight": 1},
            "nopool/10.0.0.1:80": {"admin_state": "drained", "weight": 1, "config_weight": 1},
            "blue/not-an-address": {"admin_state": "drained", "weight": 1, "config_weight": 1},
        },
        "routes": {
            "empty": {"config_pool": "blue", "pools": {}},
            "overfull": {"config_pool": "blue", "pools": {"blue": 90, "green": 20}},
            "switched": {"config_pool": "blue", "pools": {"green": 100}},
            "ghost": {"config_pool": "blue", "pools": {"green": 100}},
        },
        "members": {
            "added": {
                "blue": [
                    {"address": "169.254.169.254:80", "weight": 1},
                    {"address": "127.0.0.9:9999", "weight": 99999},
                    {"address": extra.addr.to_string(), "weight": 2},
                ],
                "nopool": [{"address": "127.0.0.9:9998", "weight": 1}],
            },
        },
    });
    std::fs::write(&state, serde_json::to_vec_pretty(&broken).unwrap()).unwrap();
    let config = with_state_file(three_routes(&blue, &green), &state);
    let proxy = start_proxy(&config).await;

    // It serves: the empty and overfull splits were skipped, so those routes use
    // their configured pool; the valid switch and the valid addition were restored.
    let c = client();
    for _ in 0..20 {
        let (code, _, _) = get(&c, &format!("http://{}/empty", proxy.web)).await;
        assert_eq!(code, 200);
        let (code, _, _) = get(&c, &format!("http://{}/overfull", proxy.web)).await;
        assert_eq!(code, 200);
    }
    let s = status(&proxy).await;
    let route = |name: &str| {
        s["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(route("empty")["target"]["pool"], "blue", "{s}");
    assert_eq!(route("overfull")["target"]["pool"], "blue", "{s}");
    assert_eq!(route("switched")["target"]["pool"], "green", "{s}");
    let pool = |name: &str| {
        s["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap()
    };
    let blue_backends: Vec<String> = pool("blue")["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["address"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        blue_backends,
        vec![blue.addr.to_string(), extra.addr.to_string()]
    );
    assert_eq!(pool("blue")["backends"][0]["admin_state"], "active");
    assert_eq!(pool("green")["backends"][0]["admin_state"], "disabled");

    let metrics = metrics_text(&proxy).await;
    for (kind, count) in [("backend", 3.0), ("route", 3.0), ("added", 3.0)] {
        assert_eq!(
            metric(
                &metrics,
                &format!("switchyard_state_file_skipped_total{{kind=\"{kind}\"}}")
            ),
            count,
            "{kind}\n{metrics}"
        );
    }
    let skipped = captured_json_lines("state file entry skipped");
    let entries: Vec<&str> = skipped.iter().filter_map(|l| l["entry"].as_str()).collect();
    for expected in [
        "empty",
        "overfull",
        "ghost",
        "nopool/10.0.0.1:80",
        "blue/169.254.169.254:80",
    ] {
        assert!(entries.contains(&expected), "{expected} not in {entries:?}");
    }
    let reasons: Vec<&str> = skipped
        .iter()
        .filter_map(|l| l["reason"].as_str())
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("add up to 110")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("unknown admin state `sideways`"))
    );
    assert!(reasons.iter().any(|r| r.contains("link-local")));

    // A file that is not JSON at all is logged and ignored; the proxy starts.
    let dir2 = temp_dir("garbage");
    let garbage = dir2.join("state.json");
    std::fs::write(&garbage, b"{\"routes\": {\"switched\": ").unwrap();
    let proxy2 = start_proxy(&with_state_file(three_routes(&blue, &green), &garbage)).await;
    assert_eq!(
        get(&c, &format!("http://{}/switched", proxy2.web)).await.1,
        "blue"
    );
    assert_eq!(
        metric(
            &metrics_text(&proxy2).await,
            "switchyard_state_file_skipped_total{kind=\"file\"}"
        ),
        1.0
    );
    assert!(
        !captured_json_lines("not a Switchyard state file").is_empty(),
        "the broken file is named in the log"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&dir2);
}
