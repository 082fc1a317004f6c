//! The shared config (opt-in with `cluster.shared_config = true`).
//!
//! `switchyard cluster push FILE` validates a config exactly like `check` and stores
//! its text under `config`, and each plugin file it names under
//! `plugin/{sha256}/{chunk}`. Every instance that opted in fetches the plugins by
//! digest (checking each digest), validates the config again, and applies it
//! atomically like a reload, keeping its own `[admin]` and `[cluster]` tables and
//! the addresses of the listeners its own file names (instances on one machine
//! cannot share a port). An instance that refuses a revision keeps what it runs and
//! says why in its heartbeat; `switchyard cluster status` shows who runs what.
//!
//! The last applied revision is kept in `cluster.cache_dir`, so an instance that
//! starts while etcd is out of reach runs it rather than its own file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use sha2::Digest;
use tracing::{error, info, warn};

use super::etcd::{Etcd, EtcdError};
use super::keys::{self, Keys};
use super::records::{ConfigView, PluginBlob, Refusal, SharedConfigRecord, unix_ms};
use super::{Cluster, Host};
use crate::config::Config;

/// Plugin files are stored in chunks well under etcd's default request limit (1.5 MiB).
pub const CHUNK_BYTES: usize = 512 * 1024;
/// The file in `cache_dir` holding the last applied shared config.
const CACHE_FILE: &str = "shared-config.json";

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Etcd(#[from] EtcdError),
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Hex SHA-256.
fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Stores `config` (already validated, read from `text`) and its plugin files; returns
/// the revision instances will know it by. Plugin files neither this config nor the
/// one it replaces use are deleted.
pub async fn push(etcd: &Etcd, keys: &Keys, config: &Config, text: &str) -> Result<i64, PushError> {
    let previous = etcd.range(&keys.full(keys::CONFIG), None, 0).await?;
    let mut keep: BTreeSet<String> = previous
        .kvs
        .first()
        .and_then(|kv| serde_json::from_slice::<SharedConfigRecord>(&kv.value).ok())
        .map(|r| r.plugins.into_values().map(|b| b.sha256).collect())
        .unwrap_or_default();
    let mut plugins = BTreeMap::new();
    for (name, plugin) in &config.plugins {
        let path = &plugin.spec.path;
        let bytes = std::fs::read(path).map_err(|source| PushError::Read {
            path: path.clone(),
            source,
        })?;
        let sha256 = sha256_hex(&bytes);
        let mut chunks = 0;
        for (index, chunk) in bytes.chunks(CHUNK_BYTES).enumerate() {
            etcd.put(&keys.full(&keys::plugin_chunk(&sha256, index)), chunk, None)
                .await?;
            chunks += 1;
        }
        keep.insert(sha256.clone());
        plugins.insert(
            name.clone(),
            PluginBlob {
                sha256,
                size: bytes.len() as u64,
                chunks,
            },
        );
    }
    let record = SharedConfigRecord {
        file: config.source.file_name().map_or_else(
            || "switchyard.toml".into(),
            |n| n.to_string_lossy().into_owned(),
        ),
        text: text.to_string(),
        plugins,
        pushed_ms: unix_ms(),
        pushed_by: crate::config::host_name(),
    };
    let value = serde_json::to_vec(&record).unwrap_or_default();
    let revision = etcd.put(&keys.full(keys::CONFIG), &value, None).await?;
    let stored = etcd.range_prefix(&keys.full(keys::PLUGIN), 0).await?;
    let unused: BTreeSet<String> = stored
        .kvs
        .iter()
        .filter_map(|kv| keys.relative(&kv.key))
        .filter_map(|rel| {
            rel.strip_prefix(keys::PLUGIN)?
                .split('/')
                .next()
                .map(str::to_string)
        })
        .filter(|digest| !keep.contains(digest))
        .collect();
    for digest in unused {
        etcd.delete_prefix(&keys.full(&keys::plugin(&digest)))
            .await?;
    }
    Ok(revision)
}

/// Follows the shared config, applying each new revision.
pub(super) async fn run<H: Host>(server: Weak<H>, cluster: Arc<Cluster>) {
    let mut changes = cluster.changes.subscribe();
    loop {
        let current = cluster.mirror.lock().shared_config();
        if let Some((record, revision)) = current
            && revision > cluster.shared_attempt.load(Ordering::Acquire)
        {
            let Some(live) = server.upgrade() else {
                break;
            };
            apply_revision(live.as_ref(), &cluster, &record, revision).await;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = cluster.stop.cancelled() => break,
        }
    }
}

/// Applies one revision of the shared config, or records why not.
pub(super) async fn apply_revision<H: Host>(
    server: &H,
    cluster: &Cluster,
    record: &SharedConfigRecord,
    revision: i64,
) {
    cluster.shared_attempt.fetch_max(revision, Ordering::AcqRel);
    match prepare(cluster, record, revision, true).await {
        Ok(shared) => match install(server, cluster, shared, revision).await {
            Ok(()) => {
                info!(revision, file = %record.file, "applied the fleet's shared config");
                save_cache(cluster, record, revision).await;
            }
            Err(why) => refuse(cluster, revision, why),
        },
        Err(why) => refuse(cluster, revision, why),
    }
    cluster.publish.notify_one();
}

fn refuse(cluster: &Cluster, revision: i64, why: String) {
    error!(
        revision,
        "refusing the fleet's shared config, keeping the running one:\n{why}"
    );
    cluster.config_view.lock().refused = Some(Refusal {
        revision,
        error: why,
    });
}

/// Fetches (or, offline, finds) the plugin files and validates the config text on
/// this instance, plugin paths pointing at the fetched files.
async fn prepare(
    cluster: &Cluster,
    record: &SharedConfigRecord,
    revision: i64,
    fetch: bool,
) -> Result<Config, String> {
    let dir = cluster.config.cache_dir.join("plugins");
    let mut files = BTreeMap::new();
    for (name, blob) in &record.plugins {
        let path = dir.join(format!("{}.wasm", blob.sha256));
        if !has_digest(&path, &blob.sha256).await {
            if !fetch {
                return Err(format!(
                    "plugin `{name}` ({}) is not in {} and etcd cannot be reached",
                    blob.sha256,
                    dir.display()
                ));
            }
            fetch_plugin(&cluster.etcd, &cluster.keys, blob, &path)
                .await
                .map_err(|e| format!("plugin `{name}`: {e}"))?;
        }
        files.insert(name.clone(), path);
    }
    let local = cluster.local.lock().clone();
    let base = local
        .source
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let path = base.join(&record.file);
    // The pushed file's own [admin] and [cluster] tables are not this instance's
    // (they helped `push` find etcd): left out, line numbers kept.
    let text = without_tables(&record.text, &["admin", "cluster"]);
    let mut shared = Config::parse(&path, &text).map_err(|e| {
        format!(
            "cluster config revision {revision} ({}) does not validate here:\n{e}",
            record.file
        )
    })?;
    for (name, plugin) in &mut shared.plugins {
        let Some(file) = files.get(name) else {
            return Err(format!(
                "cluster config revision {revision}: plugin `{name}` was not pushed with it"
            ));
        };
        plugin.spec.path = file.clone();
    }
    Ok(shared)
}

/// Applies a prepared shared config over this instance's own settings.
async fn install<H: Host>(
    server: &H,
    cluster: &Cluster,
    shared: Config,
    revision: i64,
) -> Result<(), String> {
    let local = cluster.local.lock().clone();
    let merged = merge(shared.clone(), &local)?;
    let digest = merged.digest.clone();
    server
        .apply(merged)
        .await
        .map_err(|e| format!("cluster config revision {revision} cannot be applied here: {e}"))?;
    *cluster.shared.lock() = Some(shared);
    *cluster.config_view.lock() = ConfigView {
        source: "cluster".into(),
        digest,
        revision: Some(revision),
        refused: None,
    };
    Ok(())
}

/// `text` with the tables named in `tables` (and their sub-tables) turned into
/// comments, so every other line keeps its number for error messages.
fn without_tables(text: &str, tables: &[&str]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut skipping = false;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if trimmed.starts_with('[') {
            let header = trimmed
                .trim_start_matches('[')
                .split([']', '.'])
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches('"');
            skipping = tables.contains(&header);
        }
        if skipping && !trimmed.is_empty() && !trimmed.starts_with('#') {
            out.push_str("# ");
        }
        out.push_str(line);
    }
    out
}

/// The shared config with this instance's own `[admin]`, `[cluster]` and listener
/// addresses.
pub fn merge(mut shared: Config, local: &Config) -> Result<Config, String> {
    shared.admin = local.admin.clone();
    shared.cluster = local.cluster.clone();
    for listener in &mut shared.listeners {
        if let Some(own) = local.listeners.iter().find(|l| l.name == listener.name) {
            listener.listen = own.listen;
        }
    }
    shared.locations.remove("admin.listen");
    let admin = shared.admin.listen;
    if admin.port() != 0
        && let Some(l) = shared.listeners.iter().find(|l| l.listen == admin)
    {
        return Err(format!(
            "listener `{}` of the shared config would take this instance's admin address {admin}",
            l.name
        ));
    }
    Ok(shared)
}

impl Cluster {
    /// The config to apply when this instance's own file was reloaded: the file
    /// itself, or with a shared config running, the shared config over the file's
    /// own settings.
    pub fn local_reloaded(&self, file: Config) -> Result<Config, String> {
        *self.local.lock() = file.clone();
        if file.cluster != Some(self.config.clone()) {
            warn!("changes to [cluster] take effect at the next start");
        }
        match self.shared.lock().clone() {
            Some(shared) => merge(shared, &file),
            None => Ok(file),
        }
    }
}

async fn has_digest(path: &Path, sha256: &str) -> bool {
    let path = path.to_path_buf();
    let wanted = sha256.to_string();
    tokio::task::spawn_blocking(move || {
        std::fs::read(&path).is_ok_and(|b| sha256_hex(&b) == wanted)
    })
    .await
    .unwrap_or(false)
}

/// Reads a plugin's chunks, checks size and digest, and writes the file atomically.
async fn fetch_plugin(
    etcd: &Etcd,
    keys: &Keys,
    blob: &PluginBlob,
    path: &Path,
) -> Result<(), String> {
    let chunks = etcd
        .range_prefix(&keys.full(&keys::plugin(&blob.sha256)), 0)
        .await
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(blob.size as usize);
    for kv in &chunks.kvs {
        bytes.extend_from_slice(&kv.value);
    }
    if chunks.kvs.len() != blob.chunks
        || bytes.len() as u64 != blob.size
        || sha256_hex(&bytes) != blob.sha256
    {
        return Err(format!(
            "the stored file does not match its digest {} ({} bytes in {} chunks, expected {} in {})",
            blob.sha256,
            bytes.len(),
            chunks.kvs.len(),
            blob.size,
            blob.chunks
        ));
    }
    let shown = path.display().to_string();
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || write_private(&path, &bytes))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot write {shown}: {e}"))
}

/// Writes a file under a private directory, atomically (temp file, rename).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        fastrand::u64(..)
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)?;
    let written = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    revision: i64,
    record: SharedConfigRecord,
}

async fn save_cache(cluster: &Cluster, record: &SharedConfigRecord, revision: i64) {
    let path = cluster.config.cache_dir.join(CACHE_FILE);
    let Ok(bytes) = serde_json::to_vec(&Cached {
        revision,
        record: record.clone(),
    }) else {
        return;
    };
    let written = tokio::task::spawn_blocking(move || write_private(&path, &bytes)).await;
    if !matches!(written, Ok(Ok(()))) {
        warn!(dir = %cluster.config.cache_dir.display(),
            "cannot keep the shared config in the cache directory; a start without etcd will use the config file");
    }
}

/// At a start without etcd: applies the last shared config this instance ran, if
/// it kept one (and its plugin files).
pub(super) async fn apply_cached<H: Host>(server: &H, cluster: &Cluster) {
    let path = cluster.config.cache_dir.join(CACHE_FILE);
    let read = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || std::fs::read(path)).await
    };
    let Ok(Ok(bytes)) = read else {
        return;
    };
    let Ok(cached) = serde_json::from_slice::<Cached>(&bytes) else {
        warn!(file = %path.display(), "ignoring an unreadable shared config cache");
        return;
    };
    cluster
        .shared_attempt
        .fetch_max(cached.revision, Ordering::AcqRel);
    let result = match prepare(cluster, &cached.record, cached.revision, false).await {
        Ok(shared) => install(server, cluster, shared, cached.revision).await,
        Err(why) => Err(why),
    };
    match result {
        Ok(()) => info!(
            revision = cached.revision,
            "etcd out of reach: running the last shared config this instance applied"
        ),
        Err(why) => {
            // A newer revision from etcd gets its chance once etcd answers.
            cluster.shared_attempt.store(0, Ordering::Release);
            warn!(
                revision = cached.revision,
                "cannot run the cached shared config; running the config file:\n{why}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_reads_a_pushed_file_without_its_admin_and_cluster_tables() {
        let text = "[admin]\nlisten = \"0.0.0.0:9901\"\n\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:1\"\n\
                    [cluster]\netcd = [\n  \"https://a:2379\",\n]\n[cluster.tls]\nca = \"missing.pem\"\n\
                    [[route]]\nname = \"r\"\nlistener = \"web\"\npool = \"app\"\n[pool.app]\nbackends = [{ address = \"127.0.0.1:2\" }]\n";
        let kept = without_tables(text, &["admin", "cluster"]);
        assert_eq!(
            kept.lines().count(),
            text.lines().count(),
            "line numbers are kept"
        );
        let config = Config::parse(Path::new("shared.toml"), &kept).unwrap();
        assert!(config.cluster.is_none());
        assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9901");
        assert_eq!(config.routes.len(), 1);
    }

    #[test]
    fn merging_keeps_this_instances_own_settings() {
        let shared = Config::parse(
            Path::new("shared.toml"),
            "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\n[[listener]]\nname = \"extra\"\nlisten = \"127.0.0.1:8443\"\n\
             [[route]]\nname = \"r\"\nlistener = \"web\"\npool = \"app\"\n[pool.app]\nbackends = [{ address = \"127.0.0.1:2\" }]\n",
        )
        .unwrap();
        let local = Config::parse(
            Path::new("local.toml"),
            "[admin]\nlisten = \"127.0.0.1:9902\"\n[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8082\"\n\
             [[route]]\nname = \"r\"\nlistener = \"web\"\npool = \"app\"\n[pool.app]\nbackends = [{ address = \"127.0.0.1:3\" }]\n\
             [cluster]\netcd = [\"http://127.0.0.1:2379\"]\ninstance = \"edge-2\"\n",
        )
        .unwrap();
        let merged = merge(shared, &local).unwrap();
        assert_eq!(merged.admin.listen.to_string(), "127.0.0.1:9902");
        assert_eq!(merged.cluster, local.cluster);
        assert_eq!(merged.listeners[0].listen.to_string(), "127.0.0.1:8082");
        assert_eq!(merged.listeners[1].listen.to_string(), "127.0.0.1:8443");
        assert_eq!(
            merged.pools["app"].backends[0].address.to_string(),
            "127.0.0.1:2"
        );
        let clash = Config::parse(
            Path::new("shared.toml"),
            "[[listener]]\nname = \"extra\"\nlisten = \"127.0.0.1:9902\"\n\
             [[route]]\nname = \"r\"\nlistener = \"extra\"\npool = \"app\"\n[pool.app]\nbackends = [{ address = \"127.0.0.1:2\" }]\n",
        )
        .unwrap();
        assert!(merge(clash, &local).unwrap_err().contains("admin address"));
    }
}
