//! A fleet of three Switchyard processes coordinated through a real three-member etcd
//! cluster on loopback: shared drains, conflicting changes, fleet rollouts and their
//! leader's death, etcd members dying, etcd gone and back, shared configs. Skipped
//! with a message where etcd is not installed (outside CI).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use support::fleet::{EtcdCluster, Instance, TempDir, until};
use support::{Load, Mode, TestBackend, metric_value};

/// Route `all` to pool `blue`; `pools` declares the pools.
fn instance_config(
    name: &str,
    etcd: &[String],
    prefix: &str,
    pools: &str,
    cluster: &str,
) -> String {
    let etcd: Vec<String> = etcd.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\nstate_file = \"{name}.state.json\"\n\n\
         [[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"blue\"\n\n{pools}\n\n\
         [cluster]\netcd = [{}]\nprefix = \"{prefix}\"\ninstance = \"{name}\"\nlease_ttl = \"2s\"\n{cluster}\n",
        etcd.join(", ")
    )
}

fn pool(name: &str, backends: &[&TestBackend], extra: &str) -> String {
    let list: Vec<String> = backends
        .iter()
        .map(|b| format!("{{ address = \"{}\" }}", b.addr))
        .collect();
    format!("[pool.{name}]\nbackends = [{}]\n{extra}\n", list.join(", "))
}

fn prefix() -> String {
    format!("/switchyard-test/{:08x}", fastrand::u32(..))
}

/// Waits until every instance sees all of them live, and a rollout leader.
async fn formed(fleet: &[&Instance]) {
    let n = fleet.len();
    for i in fleet {
        assert!(
            until(Duration::from_secs(20), || async {
                let view = i.get("/cluster").await;
                let live = view["instances"]
                    .as_array()
                    .map_or(0, |a| a.iter().filter(|x| x["stale"] == false).count());
                live == n && view["leader"].is_string() && view["connected"] == true
            })
            .await,
            "{} did not see the whole fleet: {}",
            i.name,
            i.get("/cluster").await
        );
    }
}

/// The instance the fleet elected to run rollouts.
async fn leader(fleet: &[&Instance]) -> String {
    fleet[0].get("/cluster").await["leader"]
        .as_str()
        .unwrap()
        .to_string()
}

fn url(i: &Instance) -> String {
    format!("http://{}/", i.web)
}

/// Sends `n` more requests through `instance` and counts failures.
async fn requests(instance: &Instance, n: usize) -> u64 {
    let c = support::client();
    let mut failed = 0;
    for _ in 0..n {
        if support::get(&c, &url(instance)).await.0 != 200 {
            failed += 1;
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drain_on_one_instance_stops_new_requests_through_the_others_within_a_second() {
    let Some(etcd) = EtcdCluster::start(3).await else {
        return;
    };
    let dir = TempDir::new("fleet-drain");
    let (x, y) = (TestBackend::start("x").await, TestBackend::start("y").await);
    let pools = pool("blue", &[&x, &y], "");
    let fleet = start_fleet(&etcd, &dir, &pools, "").await;
    let loads: Vec<Load> = fleet.iter().map(|i| Load::start(4, url(i))).collect();
    assert!(support::eventually(Duration::from_secs(10), || x.hits() > 20 && y.hits() > 20).await);

    let started = tokio::time::Instant::now();
    let (status, answer) = fleet[0]
        .call(
            "POST",
            &format!("/pools/blue/backends/{}/drain", x.addr),
            "",
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["revision"].as_i64().unwrap() > 0, "{answer}");
    let answered = started.elapsed();
    for other in &fleet[1..] {
        assert!(
            until(
                Duration::from_secs(1).saturating_sub(started.elapsed()),
                || async { other.admin_state(x.addr).await != "active" }
            )
            .await,
            "{} did not apply the drain within 1 s of the request to a",
            other.name
        );
    }
    let applied_everywhere = started.elapsed();
    // Once no instance has a request in flight to x, x gets nothing new.
    for i in &fleet {
        assert!(
            until(Duration::from_secs(10), || async {
                i.admin_state(x.addr).await == "drained"
            })
            .await
        );
    }
    let hits = x.hits();
    let before_y = y.hits();
    assert!(
        support::eventually(Duration::from_secs(20), || y.hits() > before_y + 600).await,
        "traffic goes on"
    );
    assert_eq!(
        x.hits(),
        hits,
        "a drained backend takes no new request through any instance"
    );
    for (i, load) in fleet.iter().zip(loads) {
        let (served, failed) = load.stop().await;
        assert!(served > 0);
        assert_eq!(failed, 0, "{} failed requests during the drain", i.name);
    }
    eprintln!(
        "drain answered after {answered:?}, applied on every instance {applied_everywhere:?} after the request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_conflicting_changes_at_once_one_wins_and_the_other_gets_409() {
    let Some(etcd) = EtcdCluster::start(3).await else {
        return;
    };
    let dir = TempDir::new("fleet-conflict");
    let (alpha, beta) = (
        TestBackend::start("alpha").await,
        TestBackend::start("beta").await,
    );
    let green = TestBackend::start("green").await;
    let prefix = prefix();
    let mut fleet = Vec::new();
    for name in ["a", "b", "c"] {
        // Instance c checks its backends for a body only alpha gives: it sees beta
        // down where the others see it up.
        let health = if name == "c" {
            "[pool.blue.health]\npath = \"/\"\nexpect_body = \"alpha\"\ninterval = \"100ms\"\nfall = 1\nrise = 1\n"
        } else {
            ""
        };
        let pools = format!(
            "{}{}",
            pool("blue", &[&alpha, &beta], health),
            pool("green", &[&green], "")
        );
        let config = instance_config(name, &etcd.endpoints(), &prefix, &pools, "");
        fleet.push(Instance::start(&dir.0, name, &config).await);
    }
    let refs: Vec<&Instance> = fleet.iter().collect();
    formed(&refs).await;

    // Two operators look at the fleet at the same revision and change the same
    // route differently at the same moment.
    let seen = fleet[0].get("/cluster").await["revision"].as_i64().unwrap();
    let (first, second) = tokio::join!(
        fleet[0].call(
            "POST",
            "/routes/all/switch",
            r#"{"pool": "green"}"#,
            Some(seen)
        ),
        fleet[1].call(
            "POST",
            "/routes/all/split",
            r#"{"pools": {"blue": 50, "green": 50}}"#,
            Some(seen)
        ),
    );
    let statuses = [first.0, second.0];
    assert!(
        statuses.contains(&200) && statuses.contains(&409),
        "one wins, one is refused: {first:?} {second:?}"
    );
    let (winner, loser) = if first.0 == 200 {
        (&first.1, &second.1)
    } else {
        (&second.1, &first.1)
    };
    assert_eq!(loser["key"], "state/route/all", "{loser}");
    assert_eq!(loser["revision"], winner["revision"], "{loser}");
    assert!(
        loser["error"]
            .as_str()
            .unwrap()
            .contains("send the change again")
    );
    for i in &fleet {
        assert!(
            until(Duration::from_secs(5), || async {
                i.target().await == winner["target"]
            })
            .await,
            "{} runs the winning change",
            i.name
        );
    }
    let loser_instance = if first.0 == 409 { &fleet[0] } else { &fleet[1] };
    let metrics = loser_instance.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "switchyard_cluster_commits_total{result=\"conflict\"}"
        ),
        1.0
    );

    // `switchyard ctl --if-revision` with a revision older than the winner's change.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args([
            "ctl",
            "--admin",
            &fleet[2].admin.to_string(),
            "--if-revision",
        ])
        .arg(seen.to_string())
        .args(["switch", "all", "blue"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("409") && said.contains("state/route/all"),
        "{said}"
    );

    // Changes to different things based on the same revision do not conflict.
    let seen = fleet[0].get("/cluster").await["revision"].as_i64().unwrap();
    let (path_alpha, path_beta) = (
        format!("/pools/blue/backends/{}/weight", alpha.addr),
        format!("/pools/blue/backends/{}/weight", beta.addr),
    );
    let (one, two) = tokio::join!(
        fleet[1].call("POST", &path_alpha, r#"{"weight": 3}"#, Some(seen)),
        fleet[2].call("POST", &path_beta, r#"{"weight": 2}"#, Some(seen)),
    );
    assert_eq!((one.0, two.0), (200, 200), "{one:?} {two:?}");

    // A backend added on one instance joins the pool everywhere; removed on
    // another, it leaves everywhere. An address the proxy refuses never reaches etcd.
    let extra = TestBackend::start("extra").await;
    let body = format!(r#"{{"address": "{}", "weight": 2}}"#, extra.addr);
    let (status, answer) = fleet[1]
        .call("POST", "/pools/green/backends", &body, None)
        .await;
    assert_eq!(status, 201, "{answer}");
    for i in &fleet {
        assert!(
            until(Duration::from_secs(1), || async {
                i.admin_state(extra.addr).await == "active"
            })
            .await,
            "{} has the added backend",
            i.name
        );
    }
    let (status, answer) = fleet[2]
        .call(
            "DELETE",
            &format!("/pools/green/backends/{}", extra.addr),
            "",
            None,
        )
        .await;
    assert!(status == 200 || status == 202, "{status} {answer}");
    for i in &fleet {
        assert!(
            until(Duration::from_secs(1), || async {
                i.admin_state(extra.addr).await == "absent"
            })
            .await,
            "{} removed it",
            i.name
        );
    }
    let (status, answer) = fleet[0]
        .call(
            "POST",
            "/pools/green/backends",
            r#"{"address": "169.254.169.254:80"}"#,
            None,
        )
        .await;
    assert_eq!(status, 403, "{answer}");

    // The fleet view shows c's different view of beta.
    let disagreement = until(Duration::from_secs(10), || async {
        let view = fleet[0].get("/cluster").await;
        view["disagreements"].as_array().is_some_and(|d| {
            d.iter().any(|x| {
                x["backend"] == format!("blue/{}", beta.addr)
                    && x["field"] == "health"
                    && x["views"]["c"] == "down"
                    && x["views"]["a"] != "down"
            })
        })
    })
    .await;
    assert!(disagreement, "{}", fleet[0].get("/cluster").await);

    // The dashboard shows the fleet and highlights that backend.
    if let Some(browser) = support::browser() {
        let out = tokio::process::Command::new("node")
            .arg(browser.join("fleet.mjs"))
            .arg(format!("http://{}", fleet[0].admin))
            .arg("3")
            .arg(format!("blue/{}", beta.addr))
            .current_dir(&browser)
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("fleet ok"),
            "dashboard fleet view: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Starts a fleet of three with pools `blue` and `green`.
async fn blue_green_fleet(
    etcd: &EtcdCluster,
    dir: &TempDir,
    blue: &TestBackend,
    green: &TestBackend,
    cluster: &str,
) -> Vec<Instance> {
    let pools = format!(
        "{}{}",
        pool("blue", &[blue], ""),
        pool("green", &[green], "")
    );
    start_fleet(etcd, dir, &pools, cluster).await
}

/// Starts instances a, b and c on `pools` under a fresh prefix, each with `cluster`
/// added to its `[cluster]` table, and waits until they see each other.
async fn start_fleet(
    etcd: &EtcdCluster,
    dir: &TempDir,
    pools: &str,
    cluster: &str,
) -> Vec<Instance> {
    let prefix = prefix();
    let mut fleet = Vec::new();
    for name in ["a", "b", "c"] {
        let config = instance_config(name, &etcd.endpoints(), &prefix, pools, cluster);
        fleet.push(Instance::start(&dir.0, name, &config).await);
    }
    let refs: Vec<&Instance> = fleet.iter().collect();
    formed(&refs).await;
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rollout_whose_green_fails_on_every_instance_rolls_back_fleet_wide() {
    let Some(etcd) = EtcdCluster::start(3).await else {
        return;
    };
    let dir = TempDir::new("fleet-rollback");
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    green.set_mode(Mode::Status(500));
    let fleet = blue_green_fleet(&etcd, &dir, &blue, &green, "").await;
    let refs: Vec<&Instance> = fleet.iter().collect();
    let leader = leader(&refs).await;
    // Traffic only through the other two: the leader sees none of its own, so it
    // can only judge the step on the fleet's counters.
    let others: Vec<&Instance> = fleet.iter().filter(|i| i.name != leader).collect();
    let loads: Vec<Load> = others.iter().map(|i| Load::start(4, url(i))).collect();
    let body =
        r#"{"to": "green", "steps": [50, 100], "interval": "2s", "guard": {"min_requests": 20}}"#;
    let (status, answer) = others[0]
        .call("POST", "/routes/all/rollout", body, None)
        .await;
    assert_eq!(status, 202, "{answer}");
    for i in &fleet {
        assert!(
            until(Duration::from_secs(20), || async {
                i.rollout().await["state"] == "rolled_back"
            })
            .await,
            "{}: {}",
            i.name,
            i.rollout().await
        );
    }
    let rollout = fleet[0].rollout().await;
    let reason = rollout["reason"].as_str().unwrap();
    assert!(
        reason.contains("error rate"),
        "judged on the fleet's traffic: {rollout}"
    );
    assert_eq!(rollout["leader"], leader.as_str());
    assert!(
        rollout["last_verdict"]["green"]["requests"]
            .as_u64()
            .unwrap()
            >= 20,
        "{rollout}"
    );
    for load in loads {
        load.stop().await;
    }
    let green_hits = green.hits();
    for i in &fleet {
        assert_eq!(
            i.target().await["pool"],
            "blue",
            "{} is back on blue",
            i.name
        );
        assert_eq!(requests(i, 50).await, 0, "{} serves from blue", i.name);
    }
    assert_eq!(
        green.hits(),
        green_hits,
        "no instance sends anything to green"
    );
}

/// Kills the rollout leader mid-rollout; another instance must resume it (or roll
/// it back, with `on_leader_loss = "roll-back"`).
async fn leader_dies_mid_rollout(policy: &str) -> Option<(Value, String)> {
    let etcd = EtcdCluster::start(3).await?;
    let dir = TempDir::new("fleet-leader");
    let (blue, green) = (
        TestBackend::start("blue").await,
        TestBackend::start("green").await,
    );
    let cluster = format!("on_leader_loss = \"{policy}\"");
    let mut fleet = blue_green_fleet(&etcd, &dir, &blue, &green, &cluster).await;
    let refs: Vec<&Instance> = fleet.iter().collect();
    let leader = leader(&refs).await;
    let survivors: Vec<usize> = (0..3).filter(|&i| fleet[i].name != leader).collect();
    let loads: Vec<Load> = survivors
        .iter()
        .map(|&i| Load::start(2, url(&fleet[i])))
        .collect();
    let body = r#"{"to": "green", "steps": [34, 67, 100], "interval": "3s", "guard": {"min_requests": 5}}"#;
    let (status, answer) = fleet[survivors[0]]
        .call("POST", "/routes/all/rollout", body, None)
        .await;
    assert_eq!(status, 202, "{answer}");
    let watching = survivors[0];
    assert!(
        until(Duration::from_secs(20), || async {
            let r = fleet[watching].rollout().await;
            r["step"] == 1 && r["state"] == "running"
        })
        .await,
        "{}",
        fleet[watching].rollout().await
    );
    let killed = fleet.iter().position(|i| i.name == leader).unwrap();
    fleet[killed].kill();
    let killed_at = tokio::time::Instant::now();
    let watcher = &fleet[watching];
    assert!(
        until(Duration::from_secs(15), || async {
            let view = watcher.get("/cluster").await;
            view["leader"].is_string() && view["leader"] != leader.as_str()
        })
        .await,
        "another instance is elected"
    );
    eprintln!(
        "a new rollout leader was elected {:?} after the old one was killed (lease_ttl 2s)",
        killed_at.elapsed()
    );
    let done = until(Duration::from_secs(30), || async {
        watcher.rollout().await["state"] != "running"
    })
    .await;
    let rollout = watcher.rollout().await;
    assert!(done, "the rollout was left hanging: {rollout}");
    let new_leader = rollout["leader"].as_str().unwrap_or("").to_string();
    assert_ne!(new_leader, leader, "{rollout}");
    for load in loads {
        let (served, failed) = load.stop().await;
        assert!(served > 0);
        assert_eq!(failed, 0, "the survivors served every request");
    }
    Some((rollout, leader))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_rollout_leader_mid_rollout_lets_another_instance_finish_it() {
    let Some((rollout, killed)) = leader_dies_mid_rollout("resume").await else {
        return;
    };
    assert_eq!(rollout["state"], "completed", "{rollout}");
    assert_eq!(rollout["percent"], 100, "{rollout}");
    assert!(rollout["leader"] != killed.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_on_leader_loss_roll_back_the_new_leader_rolls_the_rollout_back() {
    let Some((rollout, killed)) = leader_dies_mid_rollout("roll-back").await else {
        return;
    };
    assert_eq!(rollout["state"], "rolled_back", "{rollout}");
    let reason = rollout["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("`{killed}` went away")),
        "{reason}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn losing_one_etcd_member_changes_nothing_and_a_cut_off_instance_resyncs() {
    let Some(mut etcd) = EtcdCluster::start(3).await else {
        return;
    };
    let dir = TempDir::new("fleet-member");
    let (x, y) = (TestBackend::start("x").await, TestBackend::start("y").await);
    let pools = pool("blue", &[&x, &y], "");
    let prefix = prefix();
    let mut fleet = Vec::new();
    for name in ["a", "b", "c"] {
        // c only knows the third member: losing it cuts c off.
        let endpoints = if name == "c" {
            vec![etcd.endpoint(2)]
        } else {
            etcd.endpoints()
        };
        let config = instance_config(name, &endpoints, &prefix, &pools, "");
        fleet.push(Instance::start(&dir.0, name, &config).await);
    }
    let refs: Vec<&Instance> = fleet.iter().collect();
    formed(&refs).await;
    let loads: Vec<Load> = fleet.iter().map(|i| Load::start(2, url(i))).collect();

    // The member a and b talk to first dies: they move to another, and nothing
    // else changes.
    etcd.kill(0);
    let (status, answer) = fleet[0]
        .call(
            "POST",
            &format!("/pools/blue/backends/{}/drain", x.addr),
            "",
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    for i in &fleet {
        assert!(
            until(Duration::from_secs(1), || async {
                i.admin_state(x.addr).await != "active"
            })
            .await,
            "{} got the drain",
            i.name
        );
    }
    for i in &fleet[..2] {
        let metrics = i.metrics().await;
        assert_eq!(metric_value(&metrics, "switchyard_cluster_connected"), 1.0);
        assert_eq!(
            metric_value(&metrics, "switchyard_cluster_connection_losses_total"),
            0.0,
            "{} never lost etcd",
            i.name
        );
    }

    // Now c is cut off: it refuses changes and misses one made meanwhile...
    etcd.restart(0).await;
    etcd.kill(2);
    let c = &fleet[2];
    assert!(
        until(Duration::from_secs(10), || async {
            c.get("/status").await["cluster"]["connected"] == false
        })
        .await
    );
    let (status, answer) = c
        .call(
            "POST",
            &format!("/pools/blue/backends/{}/enable", x.addr),
            "",
            None,
        )
        .await;
    assert_eq!(status, 503, "{answer}");
    let (status, answer) = fleet[1]
        .call(
            "POST",
            &format!("/pools/blue/backends/{}/weight", y.addr),
            r#"{"weight": 7}"#,
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    async fn weight(i: &Instance, address: SocketAddr) -> Option<u64> {
        i.get("/status").await["pools"][0]["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["address"] == address.to_string())
            .map(|b| b["weight"].as_u64().unwrap())
    }
    assert!(
        until(Duration::from_secs(1), || async {
            weight(&fleet[0], y.addr).await == Some(7)
        })
        .await
    );
    assert_eq!(weight(c, y.addr).await, Some(1), "c cannot know yet");
    // ...and catches up when its member is back.
    etcd.restart(2).await;
    assert!(
        until(Duration::from_secs(10), || async {
            weight(c, y.addr).await == Some(7)
        })
        .await,
        "c resynced"
    );
    assert_eq!(
        c.admin_state(x.addr).await,
        "drained",
        "c's refused enable was applied nowhere"
    );
    for (i, load) in fleet.iter().zip(loads) {
        let (_, failed) = load.stop().await;
        assert_eq!(failed, 0, "{} failed requests", i.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_etcd_traffic_flows_changes_are_refused_and_the_fleet_resyncs_when_it_returns() {
    let Some(mut etcd) = EtcdCluster::start(3).await else {
        return;
    };
    let dir = TempDir::new("fleet-outage");
    let (x, y) = (TestBackend::start("x").await, TestBackend::start("y").await);
    let pools = pool("blue", &[&x, &y], "");
    let mut fleet = start_fleet(&etcd, &dir, &pools, "").await;
    let (status, _) = fleet[0]
        .call(
            "POST",
            &format!("/pools/blue/backends/{}/drain", x.addr),
            "",
            None,
        )
        .await;
    assert_eq!(status, 200);
    for i in &fleet {
        assert!(
            until(Duration::from_secs(1), || async {
                i.admin_state(x.addr).await != "active"
            })
            .await
        );
    }
    let loads: Vec<Load> = fleet[..2].iter().map(|i| Load::start(4, url(i))).collect();

    etcd.kill_all();
    for i in &fleet {
        assert!(
            until(Duration::from_secs(10), || async {
                i.get("/status").await["cluster"]["connected"] == false
            })
            .await,
            "{} noticed etcd is gone",
            i.name
        );
        assert_eq!(
            metric_value(&i.metrics().await, "switchyard_cluster_connected"),
            0.0
        );
        let (status, answer) = i
            .call(
                "POST",
                &format!("/pools/blue/backends/{}/enable", x.addr),
                "",
                None,
            )
            .await;
        assert_eq!(status, 503, "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains("not applied on any instance"),
            "{answer}"
        );
        assert_ne!(
            i.admin_state(x.addr).await,
            "active",
            "nothing applied on one box only"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["ctl", "--admin", &fleet[0].admin.to_string(), "status"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("etcd UNREACHABLE"), "{table}");
    // An instance starting while etcd is away starts from its state file.
    fleet[2].restart(&dir.0);
    assert_eq!(fleet[2].admin_state(x.addr).await, "drained");
    assert_eq!(fleet[2].get("/status").await["cluster"]["connected"], false);
    assert_eq!(requests(&fleet[2], 20).await, 0);

    etcd.restart_all().await;
    for i in &fleet {
        assert!(
            until(Duration::from_secs(15), || async {
                i.get("/status").await["cluster"]["connected"] == true
            })
            .await,
            "{} reconnected",
            i.name
        );
    }
    let (status, answer) = fleet[2]
        .call(
            "POST",
            &format!("/pools/blue/backends/{}/enable", x.addr),
            "",
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    for i in &fleet {
        assert!(
            until(Duration::from_secs(1), || async {
                i.admin_state(x.addr).await == "active"
            })
            .await,
            "{} follows the fleet again",
            i.name
        );
    }
    for (i, load) in fleet.iter().zip(loads) {
        let (served, failed) = load.stop().await;
        assert!(served > 0);
        assert_eq!(failed, 0, "{} failed requests while etcd was away", i.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pushed_config_and_its_plugins_reach_every_instance_and_refusals_are_reported() {
    let Some(mut etcd) = EtcdCluster::start(3).await else {
        return;
    };
    let dir = TempDir::new("fleet-push");
    let (x, y) = (TestBackend::start("x").await, TestBackend::start("y").await);
    let local_pools = pool("blue", &[&x], "");
    let prefix = prefix();
    let mut fleet = Vec::new();
    for name in ["a", "b", "c"] {
        let config = instance_config(
            name,
            &etcd.endpoints(),
            &prefix,
            &local_pools,
            "shared_config = true",
        );
        fleet.push(Instance::start(&dir.0, name, &config).await);
    }
    let refs: Vec<&Instance> = fleet.iter().collect();
    formed(&refs).await;
    drop(refs);

    let latency = switchyard::plugin::shipped_plugin_dir().join("latency.wasm");
    let shared = |extra: &str| {
        format!(
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n{extra}\n\
             [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"blue\"\n\n\
             [plugin.latency]\nkind = \"routing\"\npath = \"{}\"\n\n\
             [pool.blue]\nbalance = \"plugin:latency\"\nbackends = [{{ address = \"{}\" }}, {{ address = \"{}\" }}]\n\n\
             [cluster]\netcd = [\"{}\"]\nprefix = \"{prefix}\"\n",
            latency.display(),
            x.addr,
            y.addr,
            etcd.endpoint(0)
        )
    };
    let push = |file: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(["cluster", "push"])
            .arg(file)
            .output()
            .unwrap()
    };
    let status = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args([
                "cluster",
                "status",
                "--json",
                "--etcd",
                &etcd.endpoint(1),
                "--prefix",
                &prefix,
            ])
            .output()
            .unwrap()
    };

    // A config that does not validate is refused before anything is stored.
    let bad = dir.0.join("bad.toml");
    std::fs::write(&bad, shared("").replace("plugin:latency", "plugin:nope")).unwrap();
    let out = push(&bad);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad.toml:"),
        "{out:?}"
    );

    let good = dir.0.join("shared.toml");
    std::fs::write(&good, shared("")).unwrap();
    let out = push(&good);
    assert!(out.status.success(), "{out:?}");
    for i in &fleet {
        assert!(
            until(Duration::from_secs(10), || async {
                let s = i.get("/status").await;
                s["cluster"]["config"]["source"] == "cluster"
                    && s["plugins"].as_array().is_some_and(|p| p.len() == 1)
                    && s["pools"][0]["backends"]
                        .as_array()
                        .is_some_and(|b| b.len() == 2)
            })
            .await,
            "{} runs the pushed config: {}",
            i.name,
            i.get("/status").await
        );
        // Its own listener address stays (three instances on one machine).
        assert_eq!(requests(i, 10).await, 0);
    }
    let digest = fleet[0].get("/status").await["plugins"][0]["digest"].clone();
    for i in &fleet[1..] {
        assert_eq!(i.get("/status").await["plugins"][0]["digest"], digest);
    }
    assert!(
        until(Duration::from_secs(5), || async {
            status().status.success()
        })
        .await,
        "every instance runs the current revision: {:?}",
        status()
    );
    let report: Value = serde_json::from_slice(&status().stdout).unwrap();
    let revision = report["shared_config"]["revision"].as_i64().unwrap();

    // One more listener on one fixed port: the first instance binds it, the other
    // two cannot, refuse the revision, say why, and keep serving the previous one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra = format!("[[listener]]\nname = \"extra\"\nlisten = \"127.0.0.1:{port}\"\n");
    std::fs::write(&good, shared(&extra)).unwrap();
    assert!(push(&good).status.success());
    let settled = until(Duration::from_secs(10), || async {
        let out = status();
        let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let newest = report["shared_config"]["revision"].as_i64().unwrap_or(0);
        let instances = report["instances"].as_array().cloned().unwrap_or_default();
        let applied = instances
            .iter()
            .filter(|i| i["config"]["revision"] == newest)
            .count();
        let refused = instances
            .iter()
            .filter(|i| i["config"]["refused"]["revision"] == newest)
            .count();
        newest > revision && applied == 1 && refused == 2 && !out.status.success()
    })
    .await;
    let out = status();
    assert!(settled, "{}", String::from_utf8_lossy(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    for i in report["instances"].as_array().unwrap() {
        if let Some(error) = i["config"]["refused"]["error"].as_str() {
            assert!(error.contains("extra"), "{error}");
            assert_eq!(
                i["config"]["revision"], revision,
                "kept the previous revision"
            );
        }
    }
    for i in &fleet {
        assert_eq!(requests(i, 10).await, 0, "{} still serves", i.name);
    }

    // Started while etcd is away, an instance runs the last shared config it
    // applied (kept with its plugin in its cache directory), not its own file.
    etcd.kill_all();
    let mut refuser = None;
    for (n, i) in fleet.iter().enumerate() {
        let view = i.get("/status").await["cluster"]["config"].clone();
        if view["revision"] == revision {
            refuser = Some(n);
        }
    }
    let n = refuser.expect("an instance still on the first pushed revision");
    fleet[n].restart(&dir.0);
    let status = fleet[n].get("/status").await;
    assert_eq!(status["cluster"]["connected"], false, "{status}");
    assert_eq!(
        status["cluster"]["config"]["revision"], revision,
        "{status}"
    );
    assert_eq!(status["plugins"][0]["digest"], digest);
    assert_eq!(status["pools"][0]["backends"].as_array().unwrap().len(), 2);
    assert_eq!(requests(&fleet[n], 10).await, 0);
}

#[tokio::test]
async fn an_instance_without_cluster_has_no_fleet_view_and_no_fleet_metrics() {
    let x = TestBackend::start("x").await;
    let proxy = support::start_proxy(&support::simple_config(&[&x], "")).await;
    let (status, body) = support::admin_call(&proxy, "GET", "/cluster", "").await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("[cluster]"));
    assert!(support::status(&proxy).await.get("cluster").is_none());
    assert!(
        !support::metrics_text(&proxy)
            .await
            .contains("switchyard_cluster_")
    );
}

/// A CA, an etcd server certificate for 127.0.0.1 and a client certificate, as PEM
/// files in `dir`.
fn certificates(
    dir: &std::path::Path,
) -> (
    support::fleet::EtcdTls,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "fleet test CA");
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |names: Vec<String>, name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        // No Common Name: with etcd auth on, etcd's gateway refuses certificates that
        // carry one (the user comes from the username and password).
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, name);
        let cert = params.signed_by(&key, &ca).unwrap();
        let (cert_path, key_path) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}-key.pem")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    };
    let (cert, key) = leaf(vec!["127.0.0.1".into(), "localhost".into()], "etcd");
    let (client_cert, client_key) = leaf(Vec::new(), "switchyard");
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    (
        support::fleet::EtcdTls {
            cert,
            key,
            ca: ca_path,
        },
        client_cert,
        client_key,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fleet_reaches_etcd_over_tls_with_client_certificates_and_a_user() {
    let dir = TempDir::new("fleet-tls");
    let (tls, client_cert, client_key) = certificates(&dir.0);
    let Some(etcd) = EtcdCluster::start_with(1, Some(tls.clone())).await else {
        return;
    };
    let prefix = prefix();
    let b64 = |text: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(text)
    };
    let root_end = format!("{prefix}0");
    for (path, body) in [
        (
            "/v3/auth/user/add",
            serde_json::json!({"name": "root", "password": "root-secret"}),
        ),
        ("/v3/auth/role/add", serde_json::json!({"name": "root"})),
        (
            "/v3/auth/user/grant",
            serde_json::json!({"user": "root", "role": "root"}),
        ),
        (
            "/v3/auth/user/add",
            serde_json::json!({"name": "switchyard", "password": "fleet-secret"}),
        ),
        ("/v3/auth/role/add", serde_json::json!({"name": "fleet"})),
        (
            "/v3/auth/role/grant",
            serde_json::json!({"name": "fleet", "perm": {"permType": "READWRITE", "key": b64(&format!("{prefix}/")), "range_end": b64(&root_end)}}),
        ),
        (
            "/v3/auth/user/grant",
            serde_json::json!({"user": "switchyard", "role": "fleet"}),
        ),
        ("/v3/auth/enable", serde_json::json!({})),
    ] {
        etcd.post(path, body).await;
    }
    let (x, y) = (TestBackend::start("x").await, TestBackend::start("y").await);
    let pools = pool("blue", &[&x, &y], "");
    let secure = |password: &str| {
        format!(
            "username = \"switchyard\"\npassword = \"{password}\"\n[cluster.tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
            tls.ca.display(),
            client_cert.display(),
            client_key.display()
        )
    };
    let mut fleet = Vec::new();
    for name in ["a", "b"] {
        let config = instance_config(
            name,
            &etcd.endpoints(),
            &prefix,
            &pools,
            &secure("fleet-secret"),
        );
        fleet.push(Instance::start(&dir.0, name, &config).await);
    }
    let refs: Vec<&Instance> = fleet.iter().collect();
    formed(&refs).await;
    let (status, answer) = fleet[0]
        .call(
            "POST",
            &format!("/pools/blue/backends/{}/drain", x.addr),
            "",
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        until(Duration::from_secs(1), || async {
            fleet[1].admin_state(x.addr).await != "active"
        })
        .await,
        "the drain went through etcd over TLS"
    );

    // A wrong password is a clear error, and the instance still serves.
    let config = instance_config(
        "c",
        &etcd.endpoints(),
        &prefix,
        &pools,
        &secure("wrong-secret"),
    );
    let wrong = Instance::start(&dir.0, "c", &config).await;
    let cluster = wrong.get("/status").await["cluster"].clone();
    assert_eq!(cluster["connected"], false, "{cluster}");
    let error = cluster["error"].as_str().unwrap_or("");
    assert!(
        error.contains("authentication as `switchyard` failed"),
        "{error}"
    );
    assert_eq!(requests(&wrong, 10).await, 0);
    let (status, _) = wrong
        .call(
            "POST",
            &format!("/pools/blue/backends/{}/enable", x.addr),
            "",
            None,
        )
        .await;
    assert_eq!(status, 503);
}

#[test]
fn the_example_fleet_configs_are_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/cluster");
    for name in ["edge-1.toml", "edge-2.toml", "edge-3.toml", "shared.toml"] {
        let config = switchyard::config::Config::load(&dir.join(name))
            .unwrap_or_else(|e| panic!("config/cluster/{name}:\n{e}"));
        let cluster = config.cluster.expect("a [cluster] table");
        assert_eq!(cluster.prefix, "/switchyard/example");
        assert_eq!(cluster.etcd.len(), 3);
    }
    let script = std::process::Command::new("bash")
        .arg("-n")
        .arg(dir.join("run.sh"))
        .status()
        .unwrap();
    assert!(script.success(), "run.sh parses");
}
