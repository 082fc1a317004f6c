//! Zero-downtime binary upgrade with the real binary: 20 clients through an upgrade
//! (no failed request, no refused connection), runtime state and health carried
//! over, a tunnel kept until it closes, the old process gone afterwards; SIGUSR2;
//! and a new process that cannot start leaving the old one serving.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::spawned::{
    KillOnDrop, NotifySocket, Spawned, admin_post, alive, binary, http_get, signal, status_of,
    temp_dir,
};
use support::{Mode, TestBackend};

/// Pool `app` over a, b, c (checked every 250 ms, down after 10 failures) and
/// pool `green` over g; route `all` to `app`.
fn config(a: SocketAddr, b: SocketAddr, c: SocketAddr, g: SocketAddr) -> String {
    format!(
        r#"[admin]
listen = "127.0.0.1:0"

[limits]
drain_timeout = "10s"

[[listener]]
name = "web"
listen = "127.0.0.1:0"

[[route]]
name = "all"
listener = "web"
pool = "app"

[pool.app]
backends = [{{ address = "{a}" }}, {{ address = "{b}" }}, {{ address = "{c}" }}]
[pool.app.health]
path = "/health"
interval = "250ms"
timeout = "200ms"
fall = 10

[pool.green]
backends = [{{ address = "{g}" }}]
"#
    )
}

/// A copy of the binary the test can replace on disk, as a package upgrade does.
fn installed_binary(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let path = bin.join("switchyard");
    std::fs::copy(binary(), &path).unwrap();
    path
}

/// Replaces the installed binary the way dpkg does: a new file renamed over the old
/// one, so the running process's executable becomes `(deleted)`.
fn replace_binary(path: &Path) {
    let staged = path.with_extension("dpkg-new");
    std::fs::copy(binary(), &staged).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// Clients that each open a fresh connection per request, counting answers,
/// refused connections and every other failure.
struct Clients {
    stop: Arc<AtomicBool>,
    ok: Arc<Vec<AtomicU64>>,
    refused: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    failures: Arc<parking_lot::Mutex<Vec<String>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Clients {
    fn start(count: usize, web: SocketAddr) -> Clients {
        let stop = Arc::new(AtomicBool::new(false));
        let ok: Arc<Vec<AtomicU64>> = Arc::new((0..count).map(|_| AtomicU64::new(0)).collect());
        let refused = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let threads = (0..count)
            .map(|i| {
                let (stop, ok, refused, failed, failures) = (
                    Arc::clone(&stop),
                    Arc::clone(&ok),
                    Arc::clone(&refused),
                    Arc::clone(&failed),
                    Arc::clone(&failures),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match http_get(web, "/") {
                            Ok((200, _)) => {
                                ok[i].fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                failures.lock().push(format!("{other:?}"));
                            }
                        }
                    }
                })
            })
            .collect();
        Clients {
            stop,
            ok,
            refused,
            failed,
            failures,
            threads,
        }
    }

    /// Requests answered so far, per client.
    fn answered(&self) -> Vec<u64> {
        self.ok.iter().map(|n| n.load(Ordering::Relaxed)).collect()
    }

    /// Waits until every client got `more` answers beyond `from`.
    fn wait_each(&self, from: &[u64], more: u64, within: Duration) {
        let deadline = Instant::now() + within;
        while self
            .answered()
            .iter()
            .zip(from)
            .any(|(now, was)| *now < was + more)
        {
            assert!(
                Instant::now() < deadline,
                "clients stalled: {:?} (from {from:?}); failures {:?}",
                self.answered(),
                self.failures.lock()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(self) -> (u64, u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        let total = self.ok.iter().map(|n| n.load(Ordering::Relaxed)).sum();
        let failures = self.failures.lock().clone();
        (
            total,
            self.refused.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            failures,
        )
    }
}

/// A WebSocket-style tunnel through the proxy to a backend's echo.
fn open_tunnel(web: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(web).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

fn echo(tunnel: &mut TcpStream, text: &str) -> String {
    tunnel.write_all(text.as_bytes()).unwrap();
    let mut buf = vec![0u8; text.len()];
    tunnel.read_exact(&mut buf).unwrap();
    String::from_utf8(buf).unwrap()
}

fn backend<'a>(
    status: &'a serde_json::Value,
    pool: &str,
    address: SocketAddr,
) -> &'a serde_json::Value {
    status["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == pool)
        .and_then(|p| {
            p["backends"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["address"] == address.to_string())
        })
        .unwrap_or_else(|| panic!("no {pool}/{address} in {status}"))
}

/// Polls `/status` until `condition` holds.
fn wait_status(
    admin: SocketAddr,
    within: Duration,
    condition: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let status = status_of(admin);
        if condition(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "condition never held: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_clients_through_an_upgrade_see_no_failure_and_the_new_process_answers() {
    let a = TestBackend::start("a").await;
    a.set_mode(Mode::Slow(Duration::from_millis(100)));
    let b = TestBackend::start("b").await;
    let c = TestBackend::start("c").await;
    c.kill();
    let g = TestBackend::start("g").await;
    let (a_at, b_at, c_at, g_at) = (a.addr, b.addr, c.addr, g.addr);
    tokio::task::spawn_blocking(move || {
        let dir = temp_dir("upgrade");
        let installed = installed_binary(&dir);
        let file = dir.join("switchyard.toml");
        std::fs::write(&file, config(a_at, b_at, c_at, g_at)).unwrap();
        let mut command = Command::new(&installed);
        command.args(["--no-access-log", "--config"]).arg(&file);
        let mut old = Spawned::start(command, &dir.join("log"), Duration::from_secs(60));
        let old_pid = old.child.id();
        let (web, admin) = (old.listener("web"), old.admin);

        // The old process knows c is down, and carries runtime changes made through
        // the admin API (no state file configured: they travel in the handover).
        wait_status(admin, Duration::from_secs(30), |s| {
            backend(s, "app", c_at)["health"] == "down"
        });
        for (path, body) in [
            (format!("/pools/app/backends/{b_at}/drain"), String::new()),
            (
                format!("/pools/app/backends/{a_at}/weight"),
                r#"{"weight": 5}"#.to_string(),
            ),
            (
                "/routes/all/split".to_string(),
                r#"{"pools": {"app": 80, "green": 20}}"#.to_string(),
            ),
        ] {
            let (code, answer) = admin_post(admin, &path, &body);
            assert_eq!(code, 200, "{path}: {answer}");
        }

        let mut tunnel = open_tunnel(web);
        assert_eq!(echo(&mut tunnel, "before"), "before");
        let clients = Clients::start(20, web);
        clients.wait_each(&[0; 20], 5, Duration::from_secs(60));

        // A package upgrade replaces the file, then `switchyard upgrade`.
        replace_binary(&installed);
        let before = clients.answered();
        let out = Command::new(binary())
            .args(["upgrade", "--admin"])
            .arg(admin.to_string())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{said}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            old.log_text()
        );
        let status = status_of(admin);
        let new_pid = status["process"]["pid"].as_u64().unwrap() as u32;
        let _cleanup = KillOnDrop(new_pid);
        assert_ne!(new_pid, old_pid, "{status}");
        assert!(
            said.contains(&format!("pid {new_pid} now serves")),
            "{said}"
        );
        assert_eq!(status["process"]["generation"], 1);
        assert_eq!(status["process"]["previous_pid"], old_pid);

        // Runtime state and health came over: b drained, a at weight 5, the split
        // in place, c down without the new process having concluded it itself
        // (no transition of its own: it needs ten failures, 2.5 s).
        assert_eq!(backend(&status, "app", b_at)["admin_state"], "drained");
        assert_eq!(backend(&status, "app", a_at)["weight"], 5);
        let route = &status["routes"][0];
        assert_eq!(route["target"]["split"]["app"], 80, "{route}");
        assert_eq!(route["target"]["split"]["green"], 20, "{route}");
        let c_status = backend(&status, "app", c_at);
        assert_eq!(c_status["health"], "down", "{c_status}");
        assert_eq!(c_status["health_transitions"], 0, "{c_status}");

        // Clients keep going on the new process.
        clients.wait_each(&before, 5, Duration::from_secs(60));
        let after_upgrade = clients.answered();
        clients.wait_each(&after_upgrade, 3, Duration::from_secs(60));

        // The old process still drains: the tunnel it holds works until closed.
        assert!(
            alive(old_pid),
            "the old process left before its tunnel closed"
        );
        assert_eq!(echo(&mut tunnel, "during"), "during");
        drop(tunnel);
        let exit = old
            .wait(Duration::from_secs(15))
            .expect("the old process exits once drained");
        assert!(exit.success(), "{exit:?}\n{}", old.log_text());

        let (total, refused, failed, failures) = clients.stop();
        assert_eq!(refused, 0, "refused connections");
        assert_eq!(failed, 0, "failed requests: {failures:?}");
        assert!(total >= 20 * 13, "{total} requests");

        // The new process answers alone.
        assert_eq!(http_get(web, "/").unwrap().0, 200);
        assert_eq!(status_of(admin)["process"]["pid"], new_pid);
        signal(new_pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(new_pid) {
            assert!(Instant::now() < deadline, "the new process does not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_upgrades_and_a_new_process_that_cannot_start_leaves_the_old_one_serving() {
    let a = TestBackend::start("a").await;
    let (b, c, g) = (
        TestBackend::start("b").await,
        TestBackend::start("c").await,
        TestBackend::start("g").await,
    );
    let (a_at, b_at, c_at, g_at) = (a.addr, b.addr, c.addr, g.addr);
    tokio::task::spawn_blocking(move || {
        let dir = temp_dir("upgrade-signal");
        let file = dir.join("switchyard.toml");
        let good = config(a_at, b_at, c_at, g_at);
        std::fs::write(&file, &good).unwrap();
        // Under systemd (NotifyAccess=main) the old process names the new main PID.
        let notify = NotifySocket::bind(&dir);
        let mut command = Command::new(binary());
        command
            .args(["--no-access-log", "--config"])
            .arg(&file)
            .env("NOTIFY_SOCKET", &notify.path);
        let old = Spawned::start(command, &dir.join("log"), Duration::from_secs(60));
        notify.until(Duration::from_secs(30), |m| m.contains("READY=1"));
        let old_pid = old.child.id();
        let (web, admin) = (old.listener("web"), old.admin);

        // The file on disk is broken (written while the watcher is off the hook:
        // the reload fails too, and the running config stays).
        std::fs::write(&file, good.replace("[pool.green]", "[pool.green")).unwrap();
        let (code, answer) = admin_post(admin, "/upgrade", "{}");
        assert_eq!(code, 500, "{answer}");
        assert!(answer.contains("failed to start"), "{answer}");
        assert!(answer.contains("keeps serving"), "{answer}");
        assert_eq!(status_of(admin)["process"]["pid"], old_pid);
        assert_eq!(http_get(web, "/").unwrap().0, 200);

        // Fixed: SIGUSR2 hands over.
        std::fs::write(&file, &good).unwrap();
        let clients = Clients::start(20, web);
        clients.wait_each(&[0; 20], 3, Duration::from_secs(60));
        signal(old_pid, "USR2");
        let status = wait_status(admin, Duration::from_secs(60), |s| {
            s["process"]["pid"] != old_pid
        });
        let new_pid = status["process"]["pid"].as_u64().unwrap() as u32;
        let _cleanup = KillOnDrop(new_pid);
        // MAINPID= the new process, then READY=1 (sent by the new one once it is
        // the main process).
        let told = notify.until(Duration::from_secs(30), |m| {
            m.contains(&format!("MAINPID={new_pid}"))
        });
        assert!(
            !told.iter().any(|m| m.contains("STOPPING=1")),
            "the old process does not report stopping the service: {told:?}"
        );
        notify.until(Duration::from_secs(30), |m| m.contains("READY=1"));
        let before = clients.answered();
        clients.wait_each(&before, 3, Duration::from_secs(60));
        let mut old = old;
        let exit = old
            .wait(Duration::from_secs(15))
            .expect("the old process exits");
        assert!(exit.success(), "{exit:?}");
        while let Some(late) = notify.next(Duration::from_millis(10)) {
            assert!(
                !late.contains("STOPPING=1"),
                "the drained old process must not stop the service: {late}"
            );
        }
        let (_, refused, failed, failures) = clients.stop();
        assert_eq!((refused, failed), (0, 0), "{failures:?}");
        assert!(
            old.log_text()
                .contains("SIGUSR2: upgrading to a new process"),
            "{}",
            old.log_text()
        );
        signal(new_pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while alive(new_pid) {
            assert!(Instant::now() < deadline, "the new process does not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}
