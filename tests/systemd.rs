//! Running under systemd, with the real binary: what it tells a real `NOTIFY_SOCKET`
//! (readiness after the first health round, reloads, status, watchdog, stop),
//! socket activation with real inherited descriptors, the shipped unit file checked
//! by `systemd-analyze verify`, and log lines shaped for where they land.

mod support;

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::{Duration, Instant};

use command_fds::{CommandFdExt, FdMapping};
use support::spawned::{NotifySocket, Spawned, binary, field, http_get, status_of, temp_dir};
use support::{Mode, TestBackend, skip_or_fail};

fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// Two pools: `app` over a live backend, `dead` over a closed port; both checked.
fn two_pools(live: SocketAddr, dead: SocketAddr) -> String {
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

[[route]]
name = "dead"
listener = "web"
path_prefix = "/dead"
pool = "dead"

[pool.app]
backends = [{{ address = "{live}" }}]
[pool.app.health]
path = "/health"
interval = "1s"
timeout = "500ms"

[pool.dead]
backends = [{{ address = "{dead}" }}]
[pool.dead.health]
type = "tcp"
interval = "1s"
timeout = "500ms"
fall = 1
"#
    )
}

/// A loopback port with nothing listening on it.
fn closed_port() -> SocketAddr {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_after_the_first_health_round_then_reloads_watchdog_and_stopping() {
    let backend = TestBackend::start("app").await;
    let live = backend.addr;
    let backend_for_later = backend.clone();
    tokio::task::spawn_blocking(move || {
        let dir = temp_dir("notify");
        let config = dir.join("switchyard.toml");
        let text = two_pools(live, closed_port());
        std::fs::write(&config, &text).unwrap();
        let notify = NotifySocket::bind(&dir);
        let mut command = Command::new(binary());
        command
            .args(["--no-access-log", "--config"])
            .arg(&config)
            .env("NOTIFY_SOCKET", &notify.path)
            .env("WATCHDOG_USEC", "3000000")
            .env_remove("WATCHDOG_PID");
        let mut proxy = Spawned::start(command, &dir.join("log"), Duration::from_secs(60));

        // READY=1 comes once the first health round concluded: at that moment
        // /status already knows both backends, and STATUS says what it found.
        let ready = notify
            .until(Duration::from_secs(30), |m| m.contains("READY=1"))
            .pop()
            .unwrap();
        let status = status_of(proxy.admin);
        let health: Vec<&str> = status["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["backends"][0]["health"].as_str().unwrap())
            .collect();
        assert_eq!(health, vec!["up", "down"], "pools app, dead: {status}");
        assert_eq!(
            field(&ready, "STATUS"),
            Some("serving: 1/2 pools usable, 1/2 backends down; no usable backend in: dead"),
            "{ready}"
        );

        // The watchdog is fed every half WATCHDOG_USEC (1.5 s) while serving.
        let mut pings = Vec::new();
        while pings.len() < 3 {
            let message = notify
                .until(Duration::from_secs(10), |m| m.contains("WATCHDOG=1"))
                .pop()
                .unwrap();
            assert!(message.contains("WATCHDOG=1"));
            pings.push(Instant::now());
        }
        for pair in pings.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(
                gap < Duration::from_secs(3),
                "pings {gap:?} apart: systemd would have killed a healthy proxy"
            );
        }

        // SIGHUP: RELOADING=1 with the monotonic time it began, then READY=1.
        let before = monotonic_usec();
        proxy.signal("HUP");
        let seen = notify.until(Duration::from_secs(30), |m| m.contains("READY=1"));
        let after = monotonic_usec();
        let reloading = seen
            .iter()
            .find(|m| m.contains("RELOADING=1"))
            .unwrap_or_else(|| panic!("no RELOADING=1 before READY=1: {seen:?}"));
        let began: u64 = field(reloading, "MONOTONIC_USEC").unwrap().parse().unwrap();
        assert!(
            before <= began && began <= after,
            "{before} <= {began} <= {after}"
        );
        let reloaded = seen.last().unwrap();
        assert!(
            field(reloaded, "STATUS").is_some_and(|s| s.starts_with("serving: ")),
            "{reloaded}"
        );

        // A broken file (picked up by the file watcher) is a reload too: READY=1
        // again, and STATUS says the running config was kept.
        std::fs::write(&config, text.replace("[[route]]", "[[route]\n")).unwrap();
        let seen = notify.until(Duration::from_secs(30), |m| m.contains("READY=1"));
        assert!(seen.iter().any(|m| m.contains("RELOADING=1")), "{seen:?}");
        let failed = seen.last().unwrap();
        assert!(
            field(failed, "STATUS")
                .is_some_and(|s| s.starts_with("reload failed, running config kept: ")),
            "{failed}"
        );

        // SIGTERM with a slow request in flight: STOPPING=1 at once, no watchdog
        // ping while draining, the request answered, exit 0.
        backend_for_later.set_mode(Mode::Slow(Duration::from_millis(2500)));
        let web = proxy.listener("web");
        let slow = std::thread::spawn(move || http_get(web, "/"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while status_of(proxy.admin)["pools"][0]["backends"][0]["in_flight"] != 1 {
            assert!(Instant::now() < deadline, "the slow request never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        proxy.signal("TERM");
        let seen = notify.until(Duration::from_secs(10), |m| m.contains("STOPPING=1"));
        assert!(seen.last().unwrap().contains("STOPPING=1"));
        let exit = proxy
            .wait(Duration::from_secs(20))
            .expect("the proxy exits");
        assert!(exit.success(), "{exit:?}\n{}", proxy.log_text());
        while let Some(late) = notify.next(Duration::from_millis(10)) {
            assert!(
                !late.contains("WATCHDOG=1"),
                "watchdog fed after shutdown began: {late}"
            );
        }
        let (code, _) = slow
            .join()
            .unwrap()
            .expect("the in-flight request finishes");
        assert_eq!(code, 200);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_activation_serves_on_the_sockets_systemd_passed() {
    let backend = TestBackend::start("app").await;
    let live = backend.addr;
    tokio::task::spawn_blocking(move || {
        let dir = temp_dir("activation");
        // Three sockets as systemd would pass them: one named after a listener, one
        // matched by its address, one named `admin`.
        let by_name = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let by_address = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (named_at, address_at, admin_at) = (
            by_name.local_addr().unwrap(),
            by_address.local_addr().unwrap(),
            admin.local_addr().unwrap(),
        );
        let config = dir.join("switchyard.toml");
        // `web` asks for another address: the socket named `web` wins. `api` asks
        // for the address of a socket this test still holds, so binding it itself
        // would fail.
        std::fs::write(
            &config,
            format!(
                r#"[admin]
listen = "127.0.0.1:0"

[[listener]]
name = "web"
listen = "127.0.0.2:0"

[[listener]]
name = "api"
listen = "{address_at}"

[[route]]
name = "web"
listener = "web"
pool = "app"

[[route]]
name = "api"
listener = "api"
pool = "app"

[pool.app]
backends = [{{ address = "{live}" }}]
"#
            ),
        )
        .unwrap();
        let notify = NotifySocket::bind(&dir);
        let mut command = Command::new("sh");
        // systemd sets LISTEN_PID to the service's own pid; `exec` keeps the shell's.
        command
            .args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#, binary()])
            .args(["--no-access-log", "--config"])
            .arg(&config)
            .env("LISTEN_FDS", "3")
            .env("LISTEN_FDNAMES", "web:switchyard.socket:admin")
            .env("NOTIFY_SOCKET", &notify.path);
        let fds: Vec<OwnedFd> = [&by_name, &by_address, &admin]
            .iter()
            .map(|l| OwnedFd::from(l.try_clone().unwrap()))
            .collect();
        command
            .fd_mappings(
                fds.into_iter()
                    .enumerate()
                    .map(|(i, parent_fd)| FdMapping {
                        parent_fd,
                        child_fd: 3 + i as i32,
                    })
                    .collect(),
            )
            .unwrap();
        let proxy = Spawned::start(command, &dir.join("log"), Duration::from_secs(60));
        assert_eq!(proxy.listener("web"), named_at, "{}", proxy.log_text());
        assert_eq!(proxy.listener("api"), address_at);
        assert_eq!(proxy.admin, admin_at);
        notify.until(Duration::from_secs(30), |m| m.contains("READY=1"));
        // The sockets stay open in the proxy alone.
        drop((by_name, by_address, admin));
        for address in [named_at, address_at] {
            let (code, body) = http_get(address, "/").unwrap();
            assert_eq!((code, body.as_str()), (200, "app"), "via {address}");
        }
        let listeners = status_of(admin_at)["listeners"].clone();
        let addresses: Vec<&str> = listeners
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["address"].as_str().unwrap())
            .collect();
        assert_eq!(
            addresses,
            vec![named_at.to_string(), address_at.to_string()]
        );
        assert!(
            proxy
                .log_text()
                .contains("listening on an inherited socket"),
            "{}",
            proxy.log_text()
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

#[test]
fn the_shipped_unit_passes_systemd_analyze_verify() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../packaging/systemd/switchyard.service"
    ))
    .unwrap();
    for directive in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "WatchdogSec=",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "StateDirectory=switchyard",
        "LimitNOFILE=",
        "User=switchyard",
    ] {
        assert!(unit.contains(directive), "the unit lacks {directive}");
    }
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_or_fail("systemd-analyze not installed: skipping the unit file check");
        return;
    }
    // verify wants ExecStart's binary to exist: the one substitution is the path of
    // the binary under test for /usr/bin/switchyard.
    let dir = temp_dir("unit");
    let copy = dir.join("switchyard.service");
    std::fs::write(&copy, unit.replace("/usr/bin/switchyard", binary())).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings (exit 0): none may appear.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {}{stderr}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A one-backend config on ephemeral ports.
fn one_backend(live: SocketAddr) -> String {
    format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\n\
         [[route]]\nname = \"all\"\nlistener = \"web\"\npool = \"app\"\n\n\
         [pool.app]\nbackends = [{{ address = \"{live}\" }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_off_a_terminal_are_plain_and_json_logs_have_stable_fields() {
    let backend = TestBackend::start("app").await;
    let live = backend.addr;
    tokio::task::spawn_blocking(move || {
        let dir = temp_dir("logs");
        let config = dir.join("switchyard.toml");
        std::fs::write(&config, one_backend(live)).unwrap();

        // Text into a file: no colour codes, a timestamp first.
        let mut command = Command::new(binary());
        command.arg("--config").arg(&config).env_remove("NO_COLOR");
        let mut text = Spawned::start(command, &dir.join("text.log"), Duration::from_secs(60));
        assert_eq!(http_get(text.listener("web"), "/").unwrap().0, 200);
        text.signal("TERM");
        text.wait(Duration::from_secs(20)).unwrap();
        let log = text.log_text();
        assert!(!log.contains('\u{1b}'), "ANSI codes in a file:\n{log}");
        let access = log
            .lines()
            .find(|l| l.contains("switchyard::access"))
            .unwrap_or_else(|| panic!("no access line:\n{log}"));
        assert!(
            access.chars().next().is_some_and(|c| c.is_ascii_digit()) && access.contains('T'),
            "text lines start with an RFC 3339 timestamp: {access}"
        );

        // JSON: one object per line; these names are documented and stable.
        let mut command = Command::new(binary());
        command
            .args(["--log-format", "json", "--config"])
            .arg(&config);
        let mut json = Spawned::start(command, &dir.join("json.log"), Duration::from_secs(60));
        assert_eq!(http_get(json.listener("web"), "/").unwrap().0, 200);
        json.signal("TERM");
        json.wait(Duration::from_secs(20)).unwrap();
        let log = json.log_text();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        for line in &lines {
            for key in ["timestamp", "level", "target"] {
                assert!(line.get(key).is_some(), "no `{key}` in {line}");
            }
        }
        let listening = lines
            .iter()
            .find(|l| l["message"] == "listening")
            .unwrap_or_else(|| panic!("no `listening` line:\n{log}"));
        assert_eq!(listening["level"], "INFO");
        assert_eq!(listening["target"], "switchyard::server::listeners");
        assert_eq!(listening["listener"], "web");
        let access = lines
            .iter()
            .find(|l| l["target"] == "switchyard::access")
            .unwrap_or_else(|| panic!("no access line:\n{log}"));
        for key in [
            "request_id",
            "client",
            "method",
            "path",
            "route",
            "backend",
            "status",
            "duration_ms",
        ] {
            assert!(access.get(key).is_some(), "no `{key}` in {access}");
        }
        assert_eq!(access["status"], 200);
        assert_eq!(access["route"], "all");
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_the_journal_lines_carry_a_priority_and_no_timestamp() {
    let backend = TestBackend::start("app").await;
    let live = backend.addr;
    tokio::task::spawn_blocking(move || {
        let dir = temp_dir("journal");
        let config = dir.join("switchyard.toml");
        std::fs::write(&config, one_backend(live)).unwrap();
        let log = dir.join("journal.log");
        // systemd names the journal stream it connects to stderr by device and
        // inode; here that stream is a file, so the proxy sees exactly that.
        let file = std::fs::File::create(&log).unwrap();
        let stat = rustix::fs::fstat(&file).unwrap();
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&config)
            .env("JOURNAL_STREAM", format!("{}:{}", stat.st_dev, stat.st_ino))
            .env("INVOCATION_ID", "0123456789abcdef0123456789abcdef");
        let mut proxy = Spawned::start(command, &log, Duration::from_secs(60));
        assert_eq!(http_get(proxy.listener("web"), "/").unwrap().0, 200);
        proxy.signal("TERM");
        proxy.wait(Duration::from_secs(20)).unwrap();
        let text = proxy.log_text();
        let listening = text
            .lines()
            .find(|l| l.contains("listening") && l.contains("listener=web"))
            .unwrap_or_else(|| panic!("no listening line:\n{text}"));
        assert!(
            listening.starts_with("<6> INFO switchyard::server::listeners: listening"),
            "info lines start with <6>, no timestamp: {listening}"
        );
        let access = text
            .lines()
            .find(|l| l.contains("switchyard::access"))
            .unwrap_or_else(|| panic!("no access line:\n{text}"));
        assert!(
            access.starts_with("<6> INFO switchyard::access: request_id=\"")
                && access.contains(" method=GET path=\"/\" ")
                && access.contains(" status=200 "),
            "access lines take the journal's shape too: {access}"
        );
        assert!(!text.contains('\u{1b}'));
        assert!(
            text.lines().all(|l| l.starts_with('<') || l.is_empty()),
            "every line carries a priority:\n{text}"
        );

        // Another stream in JOURNAL_STREAM (stderr redirected elsewhere): plain
        // lines with timestamps.
        let other = dir.join("other.log");
        let mut command = Command::new(binary());
        command
            .arg("--config")
            .arg(&config)
            .env("JOURNAL_STREAM", format!("{}:{}", stat.st_dev, stat.st_ino));
        let mut proxy = Spawned::start(command, &other, Duration::from_secs(60));
        proxy.signal("TERM");
        proxy.wait(Duration::from_secs(20)).unwrap();
        let text = proxy.log_text();
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit())),
            "{text}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stderr_nobody_reads_drops_and_counts_log_lines_instead_of_stalling_requests() {
    let backend = TestBackend::start("app").await;
    let live = backend.addr;
    tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let dir = temp_dir("stalled-log");
        let config = dir.join("switchyard.toml");
        std::fs::write(&config, one_backend(live)).unwrap();
        // stderr is a pipe the test holds but does not read: it fills up, and the
        // proxy's writes to it block.
        let (mut reader, writer) = std::io::pipe().unwrap();
        let mut command = Command::new(binary());
        command.arg("--config").arg(&config);
        let proxy = Spawned::start_with_stderr(
            command,
            std::process::Stdio::from(writer),
            &dir.join("unused.log"),
            Duration::from_secs(60),
        );
        // Each access line carries the ~7 KB path: a few hundred fill the pipe and
        // the writer's 4 MiB queue; every request must still be answered.
        let path = format!("/{}", "p".repeat(7000));
        let web = proxy.listener("web");
        for i in 0..1500 {
            let (status, _) = http_get(web, &path)
                .unwrap_or_else(|e| panic!("request {i} was not answered: {e}"));
            assert_eq!(status, 200, "request {i}");
        }
        let (code, metrics) = http_get(proxy.admin, "/metrics").unwrap();
        assert_eq!(code, 200);
        let dropped: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("switchyard_log_lines_dropped_total "))
            .unwrap_or_else(|| panic!("no dropped-lines counter:\n{metrics}"))
            .trim()
            .parse()
            .unwrap();
        assert!(dropped > 0.0, "lines were dropped and counted: {dropped}");

        // Once stderr drains, the proxy says how many lines it dropped.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let mut seen = Vec::new();
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&seen);
                if text.contains("log lines dropped") {
                    let _ = tx.send(text.into_owned());
                    break;
                }
                let keep = seen.len().saturating_sub(4096);
                seen.drain(..keep);
            }
        });
        let text = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("a warning about the dropped lines once stderr drained");
        let warning = text
            .lines()
            .find(|l| l.contains("log lines dropped"))
            .unwrap();
        assert!(warning.contains("WARN"), "{warning}");
        drop(proxy);
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}
