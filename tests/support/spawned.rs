//! The real `switchyard` binary as a child process: config files, the addresses it
//! prints, its log file, and a real `NOTIFY_SOCKET` to hear what it tells systemd.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The binary under test.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_switchyard")
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-{tag}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A proxy process and what it printed.
pub struct Spawned {
    pub child: Child,
    /// Traffic listener addresses, by name, as printed.
    pub listeners: Vec<(String, SocketAddr)>,
    pub admin: SocketAddr,
    /// Where its stderr (the logs) goes.
    pub log: PathBuf,
    /// Every later stdout line (a process started by an upgrade prints here too).
    pub stdout: mpsc::Receiver<String>,
}

impl Spawned {
    /// Starts `command` with stdout piped and stderr to `log`, and waits (up to
    /// `within`) until it printed its admin address.
    pub fn start(command: Command, log: &Path, within: Duration) -> Spawned {
        let log_file = std::fs::File::create(log).unwrap();
        Self::start_with_stderr(command, Stdio::from(log_file), log, within)
    }

    /// [`Spawned::start`] with stderr going to `stderr` (`log` is then only where
    /// [`Spawned::log_text`] looks).
    pub fn start_with_stderr(
        mut command: Command,
        stderr: Stdio,
        log: &Path,
        within: Duration,
    ) -> Spawned {
        command
            .stdout(Stdio::piped())
            .stderr(stderr)
            .stdin(Stdio::null());
        // `Spawned` waits for it on drop.
        #[allow(clippy::zombie_processes)]
        let mut child = command.spawn().expect("the proxy starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + within;
        let mut listeners = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(_) => {
                    let _ = child.kill();
                    panic!(
                        "the proxy did not print its admin address in time; log:\n{}",
                        std::fs::read_to_string(log).unwrap_or_default()
                    );
                }
            };
            if let Some(rest) = line.strip_prefix("switchyard: listener `") {
                let (name, tail) = rest.split_once('`').unwrap();
                listeners.push((name.to_string(), address_in(tail)));
            } else if line.starts_with("switchyard: admin on http://") {
                return Spawned {
                    child,
                    listeners,
                    admin: address_in(&line),
                    log: log.to_path_buf(),
                    stdout: rx,
                };
            }
        }
    }

    /// The address of traffic listener `name`.
    pub fn listener(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener `{name}` printed: {:?}", self.listeners))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `USR2`) with `kill`.
    pub fn signal(&self, name: &str) {
        signal(self.child.id(), name);
    }

    /// Waits for the process to exit, up to `within`.
    pub fn wait(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        wait_pid(&mut self.child, within)
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends signal `name` to `pid` with `kill`.
pub fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// The blocking form of [`super::wait_for`], for tests that drive a child process
/// from a plain thread: polls `condition` every 10 ms until it holds, and fails the
/// test, naming `what` it waited for, when `within` passes first.
#[track_caller]
pub fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child to exit, up to `within`.
pub fn wait_pid(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            // The state follows the parenthesised command name.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

fn address_in(text: &str) -> SocketAddr {
    let rest = text.split("http://").nth(1).unwrap();
    rest.split('/').next().unwrap().parse().unwrap()
}

/// A real `NOTIFY_SOCKET`: a Unix datagram socket the proxy reports to.
pub struct NotifySocket {
    pub path: PathBuf,
    socket: UnixDatagram,
}

impl NotifySocket {
    /// Binds one in `dir`.
    pub fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket { path, socket }
    }

    /// The next message, if one comes within `within`.
    pub fn next(&self, within: Duration) -> Option<String> {
        self.socket
            .set_read_timeout(Some(within.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = vec![0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Messages until one satisfies `done` (returned last), within `within`.
    pub fn until(&self, within: Duration, done: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(message) => {
                    let finished = done(&message);
                    seen.push(message);
                    if finished {
                        return seen;
                    }
                }
                None => panic!("no matching notification within {within:?}; got {seen:?}"),
            }
        }
    }
}

/// The value of `KEY=` in a notification, if present.
pub fn field<'a>(message: &'a str, key: &str) -> Option<&'a str> {
    message
        .lines()
        .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
}

/// Blocking HTTP/1.1 GET on a fresh connection (`Connection: close`); returns the
/// status code and body.
pub fn http_get(address: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// `/status` of a proxy, parsed.
pub fn status_of(admin: SocketAddr) -> serde_json::Value {
    let (code, body) = http_get(admin, "/status").unwrap();
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Blocking admin call as tools make it (`Content-Type: application/json`) on a
/// fresh connection; returns the status and body.
pub fn admin_post(admin: SocketAddr, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(admin).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Kills a process by pid when dropped (one this test started indirectly, such as
/// the new process of an upgrade), unless it already exited.
pub struct KillOnDrop(pub u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(self.0.to_string())
                .status();
        }
    }
}
