//! `switchyard demo`: five small named backends on loopback in two pools, `blue` (in
//! production, with the flaky `charlie`) and `green` (the next version), fronted by
//! an embedded config, so a fresh clone shows health checks, ejection, retries and
//! deploy-time switching in action, and prints the commands that try them.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::config::{Config, ConfigError};

/// The embedded demo config, with placeholders for addresses.
pub const DEMO_CONFIG: &str = include_str!("../../config/demo.toml");

/// How long `charlie` answers well, then badly, in turn.
pub const FLAP_PERIOD: Duration = Duration::from_secs(10);

/// How a demo backend behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Always answers 200.
    Steady,
    /// Answers well for `period`, then 500 to everything (its health check too) for
    /// `period`, in turn: an application that fails inside, as a crashed dependency
    /// makes it do.
    Flaky { period: Duration },
}

/// One demo backend: its name, its pool, how it behaves.
#[derive(Debug, Clone, Copy)]
pub struct DemoBackend {
    pub name: &'static str,
    pub pool: &'static str,
    pub behaviour: Behaviour,
}

/// The demo's backends, in the order the config lists them.
pub const BACKENDS: [DemoBackend; 5] = [
    DemoBackend {
        name: "alpha",
        pool: "blue",
        behaviour: Behaviour::Steady,
    },
    DemoBackend {
        name: "bravo",
        pool: "blue",
        behaviour: Behaviour::Steady,
    },
    DemoBackend {
        name: "charlie",
        pool: "blue",
        behaviour: Behaviour::Flaky {
            period: FLAP_PERIOD,
        },
    },
    DemoBackend {
        name: "delta",
        pool: "green",
        behaviour: Behaviour::Steady,
    },
    DemoBackend {
        name: "echo",
        pool: "green",
        behaviour: Behaviour::Steady,
    },
];

/// Starts a demo backend named `name` of pool `pool` on `address` (port 0 for any)
/// and returns where it listens. Every answer carries `x-backend: NAME`.
pub async fn spawn_backend(
    name: &'static str,
    pool: &'static str,
    address: SocketAddr,
    behaviour: Behaviour,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let started = Instant::now();
    let served = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<Incoming>| {
                    let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                    let failing = match behaviour {
                        Behaviour::Steady => false,
                        Behaviour::Flaky { period } => {
                            (started.elapsed().as_millis() / period.as_millis().max(1)) % 2 == 1
                        }
                    };
                    async move {
                        let (status, body) = if failing {
                            (
                                StatusCode::INTERNAL_SERVER_ERROR,
                                format!("{name} ({pool}, {bound}) is having a bad moment\n"),
                            )
                        } else if request.uri().path() == "/health" {
                            (StatusCode::OK, "ok\n".to_string())
                        } else {
                            (
                                StatusCode::OK,
                                format!(
                                    "hello from {name} ({pool}, {bound}), request #{n}, path {}\n",
                                    request.uri().path()
                                ),
                            )
                        };
                        let mut response = Response::new(Full::new(Bytes::from(body)));
                        *response.status_mut() = status;
                        response
                            .headers_mut()
                            .insert("x-backend", http::HeaderValue::from_static(name));
                        Ok::<_, Infallible>(response)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// The demo's running backends: where each listens.
#[derive(Debug)]
pub struct Demo {
    /// Each of [`BACKENDS`] with its address.
    pub backends: Vec<(DemoBackend, SocketAddr)>,
}

/// Starts the demo backends and returns the demo config pointing at them, with
/// where they listen.
pub async fn prepare(
    listen: SocketAddr,
    admin: SocketAddr,
) -> std::io::Result<Result<(Config, Demo), ConfigError>> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut backends = Vec::with_capacity(BACKENDS.len());
    let mut text = DEMO_CONFIG
        .replace("{{listen}}", &listen.to_string())
        .replace("{{admin}}", &admin.to_string())
        .replace(
            "{{plugins}}",
            &crate::plugin::shipped_plugin_dir().display().to_string(),
        );
    for b in BACKENDS {
        let address = spawn_backend(b.name, b.pool, any, b.behaviour).await?;
        text = text.replace(&format!("{{{{{}}}}}", b.name), &address.to_string());
        backends.push((b, address));
    }
    Ok(Config::parse(Path::new("<demo>"), &text).map(|config| (config, Demo { backends })))
}

impl Demo {
    /// What the demo prints once it serves on `web` (admin API on `admin`): which
    /// backend is where, and commands to try, runnable as printed (`exe` is this
    /// binary, as the shell should name it).
    pub fn guide(&self, web: SocketAddr, admin: SocketAddr, exe: &str) -> String {
        let mut out =
            String::from("switchyard: demo backends (each answers \"hello from NAME\"):\n");
        for pool in ["blue", "green"] {
            let about = match pool {
                "blue" => "in production: route `demo` sends every request here",
                _ => "the next version, idle until you switch; sticky by cookie sy_srv",
            };
            let _ = writeln!(out, "  pool {pool:<5} {about}");
            for (b, address) in self.backends.iter().filter(|(b, _)| b.pool == pool) {
                let note = match b.behaviour {
                    Behaviour::Steady => String::new(),
                    Behaviour::Flaky { period } => format!(
                        "  answers 500 for {} s of every {} s",
                        period.as_secs(),
                        2 * period.as_secs()
                    ),
                };
                let _ = writeln!(out, "    {:<8} http://{address}/{note}", b.name);
            }
        }
        let ctl = if admin == SocketAddr::from(([127, 0, 0, 1], 9901)) {
            format!("{exe} ctl")
        } else {
            format!("{exe} ctl --admin {admin}")
        };
        let _ = write!(
            out,
            "switchyard: try these in another terminal:\n\
             \x20 # charlie's 500s are retried on another backend: no error reaches you\n\
             \x20 for i in $(seq 20); do curl -s http://{web}/; done\n\
             \x20 # the pools and their backends, by name; why each blue backend gets traffic or not\n\
             \x20 {ctl} status\n\
             \x20 {ctl} why blue\n\
             \x20 # take charlie out (its requests in flight finish), then back in\n\
             \x20 {ctl} drain blue charlie\n\
             \x20 {ctl} enable blue charlie\n\
             \x20 # blue/green: every request to green, then back to blue\n\
             \x20 {ctl} switch demo green\n\
             \x20 {ctl} switch demo blue\n\
             \x20 # a canary: 10 % of requests to green (a switch ends it)\n\
             \x20 {ctl} split demo blue=90 green=10\n\
             \x20 {ctl} switch demo blue\n\
             \x20 # a guarded rollout in steps, rolled back if green fails\n\
             \x20 {ctl} rollout demo --to green --steps 10,50,100 --interval 10s\n"
        );
        out
    }
}

/// How the shell should name the binary at `exe` from `cwd`: a relative path when
/// it lies below, else the absolute one.
pub fn command_name(exe: &Path, cwd: &Path) -> String {
    let relative: Option<PathBuf> = exe.strip_prefix(cwd).ok().map(Path::to_path_buf);
    match relative {
        Some(path) if path.components().count() > 0 => format!("./{}", path.display()),
        _ => exe.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_is_named_as_a_shell_runs_it() {
        assert_eq!(
            command_name(
                Path::new("/src/switchyard/target/release/switchyard"),
                Path::new("/src/switchyard")
            ),
            "./target/release/switchyard"
        );
        assert_eq!(
            command_name(Path::new("/usr/bin/switchyard"), Path::new("/home/me")),
            "/usr/bin/switchyard"
        );
    }
}
