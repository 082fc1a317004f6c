//! The `sd_notify` protocol: newline-separated `KEY=VALUE` assignments in one
//! datagram to the Unix socket named by `NOTIFY_SOCKET` (a path, or `@name` in the
//! abstract namespace). The socket is non-blocking, so a stalled service manager can
//! never hold an async worker: a message that does not fit is dropped and logged.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;
use std::time::Duration;

/// One state change told to the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notify<'a> {
    /// Start-up (or a reload) finished: every listener is serving.
    Ready,
    /// A reload begins; `READY=1` follows when it ended, whatever the outcome.
    Reloading,
    /// Shutdown begins.
    Stopping,
    /// A one-line summary for `systemctl status`.
    Status(&'a str),
    /// The runtime is alive (`WatchdogSec=`).
    Watchdog,
    /// Another process of the service is now its main process (zero-downtime
    /// upgrade).
    MainPid(u32),
    /// `CLOCK_MONOTONIC` in microseconds, sent with `RELOADING=1`.
    MonotonicUsec(u64),
}

impl Notify<'_> {
    fn line(&self) -> String {
        match self {
            Notify::Ready => "READY=1".into(),
            Notify::Reloading => "RELOADING=1".into(),
            Notify::Stopping => "STOPPING=1".into(),
            // A newline would end the assignment and start a forged one.
            Notify::Status(text) => format!("STATUS={}", text.replace(['\n', '\r'], " ")),
            Notify::Watchdog => "WATCHDOG=1".into(),
            Notify::MainPid(pid) => format!("MAINPID={pid}"),
            Notify::MonotonicUsec(usec) => format!("MONOTONIC_USEC={usec}"),
        }
    }
}

/// Encodes assignments as one `sd_notify` message.
pub fn message(states: &[Notify<'_>]) -> String {
    let mut text = String::new();
    for state in states {
        text.push_str(&state.line());
        text.push('\n');
    }
    text
}

/// A connected, non-blocking socket to the service manager.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
}

impl Notifier {
    /// Connects to `NOTIFY_SOCKET`; `Ok(None)` when it is not set (not started by
    /// systemd with `Type=notify`).
    pub fn from_env() -> io::Result<Option<Notifier>> {
        match std::env::var_os("NOTIFY_SOCKET") {
            Some(address) if !address.is_empty() => Self::connect(&address).map(Some),
            _ => Ok(None),
        }
    }

    /// Connects to a socket path, or an abstract name written `@name`.
    pub fn connect(address: &std::ffi::OsStr) -> io::Result<Notifier> {
        let socket = UnixDatagram::unbound()?;
        let bytes = address.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            #[cfg(target_os = "linux")]
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                let address = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.connect_addr(&address)?;
            }
            #[cfg(not(target_os = "linux"))]
            Some(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "abstract notify sockets need Linux",
                ));
            }
            None => socket.connect(std::path::Path::new(address))?,
        }
        socket.set_nonblocking(true)?;
        Ok(Notifier { socket })
    }

    /// Sends one message.
    pub fn send(&self, states: &[Notify<'_>]) -> io::Result<()> {
        let text = message(states);
        let sent = self.socket.send(text.as_bytes())?;
        if sent == text.len() {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "notification cut short",
            ))
        }
    }
}

/// The process's notifier: connected on first use, shared by everyone.
fn global() -> Option<&'static Notifier> {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    NOTIFIER
        .get_or_init(|| match Notifier::from_env() {
            Ok(notifier) => notifier,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach the service manager's NOTIFY_SOCKET");
                None
            }
        })
        .as_ref()
}

/// Set once this process stopped being the service's serving main process (it is
/// stopping, or handed over to a new one); held while a watchdog ping is sent so
/// none follows.
static RETIRED: parking_lot::Mutex<bool> = parking_lot::Mutex::new(false);

/// `STOPPING=1`; no watchdog ping is sent after it.
pub fn stopping() {
    let mut retired = RETIRED.lock();
    *retired = true;
    notify(&[Notify::Stopping]);
}

/// `MAINPID=` the new process of an upgrade, with a status line; this process
/// sends no watchdog ping after it.
pub fn hand_over(pid: u32, status: &str) {
    let mut retired = RETIRED.lock();
    *retired = true;
    notify(&[Notify::MainPid(pid), Notify::Status(status)]);
}

/// `WATCHDOG=1` (with a new status line, if given), unless this process is
/// stopping or handed over.
pub fn watchdog(status: Option<&str>) {
    let retired = RETIRED.lock();
    if *retired {
        return;
    }
    match status {
        Some(status) => notify(&[Notify::Watchdog, Notify::Status(status)]),
        None => notify(&[Notify::Watchdog]),
    }
}

/// Whether a service manager listens (`NOTIFY_SOCKET` is set and reachable).
pub fn enabled() -> bool {
    global().is_some()
}

/// Tells the service manager, if there is one. Never blocks; a failure is logged.
pub fn notify(states: &[Notify<'_>]) {
    if let Some(notifier) = global()
        && let Err(e) = notifier.send(states)
    {
        tracing::warn!(error = %e, "notification to the service manager failed");
    }
}

/// `CLOCK_MONOTONIC` now, in microseconds (what `MONOTONIC_USEC` wants).
pub fn monotonic_usec() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (now.tv_sec as u64) * 1_000_000 + (now.tv_nsec as u64) / 1_000
}

/// `RELOADING=1` with the time the reload began.
pub fn reloading() {
    notify(&[Notify::Reloading, Notify::MonotonicUsec(monotonic_usec())]);
}

/// The watchdog period the service manager expects pings within (`WATCHDOG_USEC`),
/// when it applies to this process (`WATCHDOG_PID` unset or ours).
pub fn watchdog_period() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    let ours = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|p| p.trim().parse::<u32>().ok())
        .is_none_or(|pid| pid == std::process::id());
    (ours && usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_assignment_per_line() {
        assert_eq!(
            message(&[Notify::Ready, Notify::Status("2/2 pools usable")]),
            "READY=1\nSTATUS=2/2 pools usable\n"
        );
        assert_eq!(message(&[Notify::MainPid(42)]), "MAINPID=42\n");
    }

    #[test]
    fn a_status_cannot_smuggle_another_assignment() {
        assert_eq!(
            message(&[Notify::Status("ok\nMAINPID=1")]),
            "STATUS=ok MAINPID=1\n"
        );
    }

    #[test]
    fn datagrams_reach_a_real_socket_including_abstract_ones() {
        let dir = std::env::temp_dir().join(format!("sy-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = UnixDatagram::bind(&path).unwrap();
        let notifier = Notifier::connect(path.as_os_str()).unwrap();
        notifier.send(&[Notify::Stopping]).unwrap();
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1\n");
        let _ = std::fs::remove_dir_all(&dir);

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("switchyard-notify-test-{}", std::process::id());
            let address =
                std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let receiver = UnixDatagram::bind_addr(&address).unwrap();
            let notifier = Notifier::connect(format!("@{name}").as_ref()).unwrap();
            notifier.send(&[Notify::Watchdog]).unwrap();
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"WATCHDOG=1\n");
        }
    }
}
