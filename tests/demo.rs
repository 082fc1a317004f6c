//! `switchyard demo` as a new user runs it: the real binary, traffic through it while
//! `charlie` flaps, and the commands it prints, run as printed.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use support::spawned::{Spawned, binary, status_of, temp_dir};
use support::{client, get, wait_for};

/// What the clients saw: answers by backend name, and every answer that was not a 200.
#[derive(Default)]
struct Seen {
    by_backend: HashMap<String, u64>,
    errors: Vec<(u16, String)>,
}

/// The demo's `/status` entry for backend `name` of pool `pool`.
fn backend(admin: SocketAddr, pool: &str, name: &str) -> serde_json::Value {
    let status = status_of(admin);
    status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == pool)
        .flat_map(|p| p["backends"].as_array().unwrap().iter())
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no backend {name} in pool {pool}: {status}"))
}

/// Lines the demo printed after its admin address, up to the last command it suggests.
fn guide(demo: &Spawned) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        let line = demo
            .stdout
            .recv_timeout(Duration::from_secs(30))
            .expect("the demo prints its guide");
        let last = line.contains(" rollout demo ");
        lines.push(line);
        if last {
            return lines;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_tells_its_story_without_an_error_reaching_a_client() {
    let dir = temp_dir("demo");
    let mut command = Command::new(binary());
    command.args(["demo", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"]);
    let demo = Spawned::start(command, &dir.join("demo.log"), Duration::from_secs(60));
    let (web, admin) = (demo.listener("web"), demo.admin);
    let guide = guide(&demo);
    let text = guide.join("\n");
    for name in ["alpha", "bravo", "charlie", "delta", "echo"] {
        let address = backend(admin, if name < "d" { "blue" } else { "green" }, name)["address"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            text.contains(&format!("{name:<8} http://{address}/")),
            "the guide says where {name} is:\n{text}"
        );
    }

    // Clients send requests the whole time charlie answers, fails and recovers.
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    let (status, backend, body) = get(&c, &format!("http://{web}/")).await;
                    {
                        let mut seen = seen.lock();
                        if status == 200 {
                            *seen.by_backend.entry(backend).or_default() += 1;
                        } else {
                            let body = String::from_utf8_lossy(&body).into_owned();
                            seen.errors.push((status, body));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    let served = |name: &str| seen.lock().by_backend.get(name).copied().unwrap_or(0);

    wait_for(
        "every blue backend to serve a client",
        Duration::from_secs(20),
        async || ["alpha", "bravo", "charlie"].iter().all(|n| served(n) > 0),
    )
    .await;
    wait_for(
        "charlie to be ejected",
        Duration::from_secs(40),
        async || {
            let charlie = backend(admin, "blue", "charlie");
            charlie["ejections"].as_u64() >= Some(1) && charlie["usable"] == false
        },
    )
    .await;
    let while_out = served("charlie");
    wait_for(
        "charlie to come back and serve clients again",
        Duration::from_secs(40),
        async || {
            served("charlie") >= while_out + 5
                && backend(admin, "blue", "charlie")["usable"] == true
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    {
        let seen = seen.lock();
        assert!(
            seen.errors.is_empty(),
            "clients saw {} errors while charlie flapped, e.g. {:?}; answers: {:?}",
            seen.errors.len(),
            &seen.errors[..seen.errors.len().min(3)],
            seen.by_backend
        );
        println!("answers while charlie flapped: {:?}", seen.by_backend);
    }
    let charlie = backend(admin, "blue", "charlie");
    assert!(charlie["failures"].as_u64() >= Some(1), "{charlie}");

    // The printed commands run as printed, in order.
    let c = client();
    for line in guide.iter().map(|l| l.trim()) {
        if line.starts_with('#') || !line.starts_with(binary()) {
            continue;
        }
        let args: Vec<&str> = line.split_whitespace().collect();
        let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if line.ends_with(" switch demo green") {
            for _ in 0..10 {
                let (status, backend, _) = get(&c, &format!("http://{web}/")).await;
                assert_eq!(status, 200);
                assert!(
                    ["delta", "echo"].contains(&backend.as_str()),
                    "green answers after the switch, not {backend}"
                );
            }
        }
    }
    let status = status_of(admin);
    let route = &status["routes"][0];
    assert_eq!(route["rollout"]["to"], "green", "{route}");
}
