//! Real parts for fleet tests: an etcd cluster of several members on loopback ports
//! with temporary data directories, and Switchyard instances run from the real
//! binary (so killing one is killing a process).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};

use super::{client, ports_for_tools, skip_or_fail};

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-{tag}-{}-{:08x}",
            std::process::id(),
            fastrand::u32(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // A failed test leaves its logs (etcd members, instances) for inspection.
            eprintln!("kept {} (logs of the failed test)", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    /// A plain-HTTP client port beside the TLS one (for health checks and setup).
    plain: u16,
    process: Option<Child>,
}

/// Server certificate, key and client CA of an etcd that wants TLS with client
/// certificates on its client port.
#[derive(Clone)]
pub struct EtcdTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// A real etcd cluster on loopback.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: TempDir,
    token: String,
    tls: Option<EtcdTls>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one is healthy. `None` when etcd is
    /// not installed (outside CI; under `CI=true` that is a failure).
    pub async fn start(n: usize) -> Option<EtcdCluster> {
        Self::start_with(n, None).await
    }

    /// [`EtcdCluster::start`], with TLS and client certificates on the client port
    /// (a plain port stays open beside it, see [`EtcdCluster::plain_endpoint`]).
    pub async fn start_with(n: usize, tls: Option<EtcdTls>) -> Option<EtcdCluster> {
        if Command::new("etcd")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            skip_or_fail(
                "etcd not installed (apt-get install etcd-server): skipping the fleet tests",
            );
            return None;
        }
        let ports = ports_for_tools(3 * n);
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: ports[3 * i],
                peer: ports[3 * i + 1],
                plain: ports[3 * i + 2],
                process: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            members,
            dir: TempDir::new("etcd"),
            token: format!("t{:016x}", fastrand::u64(..)),
            tls,
        };
        for i in 0..n {
            cluster.spawn(i);
        }
        cluster.wait_healthy().await;
        Some(cluster)
    }

    fn spawn(&mut self, i: usize) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect();
        let m = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.0.join(format!("{}.log", m.name)))
            .unwrap();
        let mut command = Command::new("etcd");
        match &self.tls {
            Some(tls) => {
                command
                    .arg("--listen-client-urls")
                    .arg(format!(
                        "https://127.0.0.1:{},http://127.0.0.1:{}",
                        m.client, m.plain
                    ))
                    .arg("--advertise-client-urls")
                    .arg(format!("https://127.0.0.1:{}", m.client))
                    .arg("--cert-file")
                    .arg(&tls.cert)
                    .arg("--key-file")
                    .arg(&tls.key)
                    .arg("--trusted-ca-file")
                    .arg(&tls.ca)
                    .arg("--client-cert-auth");
            }
            None => {
                command
                    .arg("--listen-client-urls")
                    .arg(format!("http://127.0.0.1:{}", m.client))
                    .arg("--advertise-client-urls")
                    .arg(format!("http://127.0.0.1:{}", m.client));
            }
        }
        let child = command
            .arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(self.dir.0.join(&m.name))
            .arg("--listen-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer))
            .arg("--initial-advertise-peer-urls")
            .arg(format!("http://127.0.0.1:{}", m.peer))
            .arg("--initial-cluster")
            .arg(initial.join(","))
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--logger")
            .arg("zap")
            .arg("--log-level")
            .arg("warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd starts");
        self.members[i].process = Some(child);
    }

    /// The client URL of member `i`.
    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.members[i].client)
    }

    /// A plain-HTTP client URL of member `i` (its only one without TLS).
    pub fn plain_endpoint(&self, i: usize) -> String {
        match self.tls {
            Some(_) => format!("http://127.0.0.1:{}", self.members[i].plain),
            None => self.endpoint(i),
        }
    }

    /// POSTs a JSON body to etcd's gateway on member 0's plain port (setup).
    pub async fn post(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let request = Request::post(format!("{}{path}", self.plain_endpoint(0)))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = client().request(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        assert!(status.is_success(), "etcd {path}: {status} {value}");
        value
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts member `i` again on its data directory and waits for the running
    /// members to be healthy.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_healthy().await;
    }

    /// Starts every stopped member again.
    pub async fn restart_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].process.is_none() {
                self.spawn(i);
            }
        }
        self.wait_healthy().await;
    }

    /// Waits (up to 30 s) until every running member answers `/health` healthy.
    pub async fn wait_healthy(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let c = client();
        for (i, m) in self.members.iter().enumerate() {
            if m.process.is_none() {
                continue;
            }
            loop {
                let url = format!("{}/health", self.plain_endpoint(i));
                let healthy = match c.get(url.parse().unwrap()).await {
                    Ok(r) => r
                        .into_body()
                        .collect()
                        .await
                        .map(|b| String::from_utf8_lossy(&b.to_bytes()).contains("\"true\""))
                        .unwrap_or(false),
                    Err(_) => false,
                };
                if healthy {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "etcd member {} did not become healthy; log in {}",
                    m.name,
                    self.dir.0.display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A Switchyard process with its config file, traffic and admin addresses.
pub struct Instance {
    pub name: String,
    pub web: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    process: Option<Child>,
}

impl Instance {
    /// Writes `config` to `dir/{name}.toml` and runs the binary on it; returns once
    /// it printed its listener and admin addresses (it is ready then).
    pub async fn start(dir: &Path, name: &str, config: &str) -> Instance {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, config).unwrap();
        Self::run(dir, name, path)
    }

    fn run(dir: &Path, name: &str, path: PathBuf) -> Instance {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("--config")
            .arg(&path)
            .arg("--no-access-log")
            .arg("--log-level")
            .arg("info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("switchyard starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log_path = dir.join(format!("{name}.log"));
        std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log_path)
                .ok();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{line}");
                }
                let _ = tx.send(line);
            }
        });
        let (mut web, mut admin) = (None, None);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while web.is_none() || admin.is_none() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx.recv_timeout(left).unwrap_or_else(|_| {
                panic!("instance {name} did not start; log in {}", dir.display())
            });
            let address = |after: &str| -> Option<SocketAddr> {
                let rest = line.split(after).nth(1)?;
                rest.trim_start_matches("http://")
                    .split('/')
                    .next()?
                    .parse()
                    .ok()
            };
            if line.starts_with("switchyard: listener `web` on ") {
                web = address(" on ");
            } else if line.starts_with("switchyard: admin on ") {
                admin = address(" on ");
            }
        }
        // Keep draining the output so the process never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Instance {
            name: name.to_string(),
            web: web.unwrap(),
            admin: admin.unwrap(),
            config: path,
            process: Some(child),
        }
    }

    /// Starts the same config again (new addresses when they were port 0).
    pub fn restart(&mut self, dir: &Path) {
        self.kill();
        *self = Self::run(dir, &self.name.clone(), self.config.clone());
    }

    /// Kills the process (SIGKILL): no goodbye to the fleet, its lease must expire.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// GET on the admin API, as JSON.
    pub async fn get(&self, path: &str) -> serde_json::Value {
        let (status, value) = self.call("GET", path, "", None).await;
        assert_eq!(status, 200, "GET {path} on {}: {value}", self.name);
        value
    }

    /// A call to the admin API with a JSON body and optional `If-Match`.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: &str,
        if_match: Option<i64>,
    ) -> (u16, serde_json::Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin))
            .header("content-type", "application/json");
        if let Some(revision) = if_match {
            request = request.header("if-match", revision.to_string());
        }
        let response = client()
            .request(
                request
                    .body(Full::new(Bytes::from(body.to_string())))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(&bytes).into())
            }),
        )
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        let (_, _, body) = super::get(&client(), &format!("http://{}/metrics", self.admin)).await;
        String::from_utf8_lossy(&body).into_owned()
    }

    /// A backend's `admin_state` in `/status`.
    pub async fn admin_state(&self, address: SocketAddr) -> String {
        let status = self.get("/status").await;
        status["pools"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["backends"].as_array().unwrap().iter())
            .find(|b| b["address"] == address.to_string())
            .map(|b| b["admin_state"].as_str().unwrap().to_string())
            .unwrap_or_else(|| "absent".into())
    }

    /// The target of route `all` in `/status`.
    pub async fn target(&self) -> serde_json::Value {
        self.get("/status").await["routes"][0]["target"].clone()
    }

    /// The rollout of route `all` in `/status`.
    pub async fn rollout(&self) -> serde_json::Value {
        self.get("/status").await["routes"][0]["rollout"].clone()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls an async condition every 20 ms until it holds or `within` passes.
pub async fn until<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
