//! A listener's certificates: loaded from files and a directory, chosen by SNI
//! (exact name, then wildcard, then the default), and reloaded in place. A reload
//! reads every file again; a pair that changed and no longer loads is refused and
//! the pair loaded before keeps serving.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tracing::{error, info, warn};

use super::certificate::{CertError, LoadedCert};
use super::slots::{AcmeSlot, ReloadCounts};
use crate::config::{CertificatePair, ListenerTlsConfig};
use crate::crypto::pem::{self, PemError};

/// Why a listener's certificates could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A pair did not load; `field` is where it is configured (see [`StoreError::field`]).
    #[error("{source}")]
    Pair {
        field: String,
        key: PathBuf,
        #[source]
        source: Box<CertError>,
    },
    #[error("{path}: cannot list the certificate directory: {source}")]
    Directory {
        field: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no certificate to serve: the files and directory hold none")]
    Empty,
    #[error("default = \"{0}\" matches none of the certificates")]
    NoDefault(String),
}

impl StoreError {
    /// The config field the error is about, relative to nothing:
    /// `listener[0].tls.key`, `listener[0].tls.certificates[1].cert`,
    /// `listener[0].tls.directory`; `None` when it is the table as a whole.
    pub fn field(&self) -> Option<String> {
        match self {
            StoreError::Pair { field, key, source } if !field.ends_with(".directory") => {
                let about_key = match source.as_ref() {
                    CertError::Pem(PemError::Read { path, .. })
                    | CertError::Pem(PemError::Malformed { path, .. }) => path == key,
                    CertError::Pem(PemError::NoKey { .. }) | CertError::KeyMismatch { .. } => true,
                    _ => false,
                };
                Some(format!(
                    "{field}.{}",
                    if about_key { "key" } else { "cert" }
                ))
            }
            StoreError::Pair { field, .. } | StoreError::Directory { field, .. } => {
                Some(field.clone())
            }
            StoreError::Empty | StoreError::NoDefault(_) => None,
        }
    }
}

/// The certificates of a listener as one handshake sees them.
#[derive(Debug, Default)]
pub struct CertSet {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the parent domain: `*.example.com` is found under `example.com`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    certificates: Vec<Arc<LoadedCert>>,
}

impl CertSet {
    /// Indexes `certificates`; where two claim a name, the earlier wins. The default
    /// is the first covering `default_name`, else the first certificate.
    pub fn build(certificates: Vec<Arc<LoadedCert>>, default_name: Option<&str>) -> Self {
        let mut set = CertSet::default();
        for cert in &certificates {
            for name in &cert.names {
                let (map, key) = match name.strip_prefix("*.") {
                    Some(parent) => (&mut set.wildcard, parent),
                    None => (&mut set.exact, name.as_str()),
                };
                map.entry(key.to_string())
                    .or_insert_with(|| Arc::clone(&cert.key));
            }
        }
        let default = match default_name {
            Some(name) => certificates.iter().find(|c| c.covers(name)),
            None => certificates.first(),
        };
        set.default = default.map(|c| Arc::clone(&c.key));
        set.certificates = certificates;
        set
    }

    /// The certificate for a handshake's SNI name (already lower-cased by rustls).
    pub fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = server_name {
            if let Some(cert) = self.exact.get(name) {
                return Some(Arc::clone(cert));
            }
            if let Some(cert) = name
                .split_once('.')
                .and_then(|(_, parent)| self.wildcard.get(parent))
            {
                return Some(Arc::clone(cert));
            }
        }
        self.default.clone()
    }

    /// Every certificate in the set, in precedence order.
    pub fn certificates(&self) -> &[Arc<LoadedCert>] {
        &self.certificates
    }
}

/// The last good load of one certificate/key file pair.
#[derive(Debug)]
struct Loaded {
    digest: [u8; 32],
    cert: Arc<LoadedCert>,
}

/// A cert/key file pair: explicit in the config, or found in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Pair {
    from_directory: bool,
    cert: PathBuf,
    key: PathBuf,
    /// Where it is configured (the pair's table, or the `directory` key).
    field: String,
}

/// One listener's certificates: where they come from, the last good load of each
/// pair, and the set handshakes read.
#[derive(Debug)]
pub struct CertStore {
    listener: Arc<str>,
    pairs: Vec<CertificatePair>,
    directory: Option<PathBuf>,
    /// Where the `tls` table is in the file.
    field: String,
    default: Option<String>,
    acme: Option<Arc<AcmeSlot>>,
    loaded: Mutex<BTreeMap<Pair, Loaded>>,
    current: ArcSwap<CertSet>,
    counts: Arc<ReloadCounts>,
}

impl CertStore {
    /// Loads every certificate of a listener; any pair that does not load is an
    /// error (a start or config change must not go live with a broken file). `acme`
    /// is the listener's ACME slot when it has one, `counts` its reload counters
    /// ([`TlsRegistry::load_store`](super::TlsRegistry::load_store) wires both).
    pub fn load(
        listener: &str,
        config: &ListenerTlsConfig,
        acme: Option<Arc<AcmeSlot>>,
        counts: Arc<ReloadCounts>,
    ) -> Result<Arc<Self>, StoreError> {
        let store = CertStore {
            listener: listener.into(),
            pairs: config.certificates.clone(),
            directory: config.directory.clone(),
            field: config.field.clone(),
            default: config.default.clone(),
            acme,
            loaded: Mutex::new(BTreeMap::new()),
            current: ArcSwap::from_pointee(CertSet::default()),
            counts,
        };
        let pairs = store.pairs()?;
        let mut loaded = BTreeMap::new();
        for pair in pairs {
            let (digest, cert) = load_pair(&pair).map_err(|source| StoreError::Pair {
                field: pair.field.clone(),
                key: pair.key.clone(),
                source: Box::new(source),
            })?;
            loaded.insert(
                pair,
                Loaded {
                    digest,
                    cert: Arc::new(cert),
                },
            );
        }
        *store.loaded.lock() = loaded;
        let set = store.assemble();
        if set.certificates.is_empty() && store.acme.is_none() {
            return Err(StoreError::Empty);
        }
        if let Some(name) = &store.default
            && !set.certificates.iter().any(|c| c.covers(name))
            && store.acme.is_none()
        {
            return Err(StoreError::NoDefault(name.clone()));
        }
        store.current.store(Arc::new(set));
        Ok(Arc::new(store))
    }

    /// The listener this store serves.
    pub fn listener(&self) -> &str {
        &self.listener
    }

    /// The set handshakes read now.
    pub fn current(&self) -> Arc<CertSet> {
        self.current.load_full()
    }

    /// The certificate for an SNI name (the handshake path: no lock, no allocation).
    pub fn resolve(&self, server_name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        self.current.load().resolve(server_name)
    }

    /// Directories whose changes may change this store: those of the explicit files,
    /// and the certificate directory.
    pub fn watched_directories(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = self
            .pairs
            .iter()
            .flat_map(|p| [p.cert.as_path(), p.key.as_path()])
            .map(parent_directory)
            .chain(self.directory.clone())
            .collect();
        dirs.sort();
        dirs.dedup();
        dirs
    }

    /// Reads every file again (blocking I/O: run it off the async workers). Changed
    /// pairs that load replace the old ones; changed pairs that do not are refused,
    /// logged and counted, and the old pair keeps serving. Files gone from the
    /// directory stop being served. Returns how many pairs were refused.
    pub fn reload(&self) -> usize {
        let pairs = match self.pairs() {
            Ok(pairs) => pairs,
            Err(e) => {
                error!(listener = %self.listener, error = %e, "certificate reload failed, keeping the served certificates");
                self.counts.failed.fetch_add(1, Ordering::Relaxed);
                return 1;
            }
        };
        // What is loaded now; the lock is not held while files are read.
        let known: HashMap<Pair, [u8; 32]> = self
            .loaded
            .lock()
            .iter()
            .map(|(pair, l)| (pair.clone(), l.digest))
            .collect();
        let mut refused = 0;
        let mut fresh = Vec::new();
        for pair in &pairs {
            let outcome = read_pair(pair)
                .map_err(CertError::from)
                .and_then(|(cert, key)| {
                    let digest = digest_of(&cert, &key);
                    if known.get(pair) == Some(&digest) {
                        return Ok(None);
                    }
                    parse_pair(pair, &cert, &key).map(|loaded| Some((digest, loaded)))
                });
            match outcome {
                Ok(None) => {}
                Ok(Some((digest, cert))) => {
                    info!(listener = %self.listener, certificate = %pair.cert.display(),
                        names = %cert.names.join(","), not_after = cert.not_after,
                        "certificate loaded");
                    self.counts.ok.fetch_add(1, Ordering::Relaxed);
                    fresh.push((pair.clone(), digest, cert));
                }
                Err(e) => {
                    refused += 1;
                    self.refuse(pair, &e, known.contains_key(pair));
                }
            }
        }
        let changed = {
            let mut loaded = self.loaded.lock();
            let before = loaded.len();
            loaded.retain(|pair, _| pairs.contains(pair));
            let removed = loaded.len() != before;
            if removed {
                info!(listener = %self.listener, "certificate files removed from the directory are no longer served");
            }
            let added = !fresh.is_empty();
            for (pair, digest, cert) in fresh {
                loaded.insert(
                    pair,
                    Loaded {
                        digest,
                        cert: Arc::new(cert),
                    },
                );
            }
            removed || added
        };
        if changed {
            self.rebuild();
        }
        refused
    }

    fn refuse(&self, pair: &Pair, error: &CertError, keeping: bool) {
        self.counts.failed.fetch_add(1, Ordering::Relaxed);
        if keeping {
            error!(listener = %self.listener, certificate = %pair.cert.display(), %error,
                "new certificate refused, the previous one keeps serving");
        } else {
            error!(listener = %self.listener, certificate = %pair.cert.display(), %error,
                "certificate refused");
        }
    }

    /// Re-indexes the loaded pairs and the ACME slot (after either changed).
    pub fn rebuild(&self) {
        let set = self.assemble();
        if set.certificates.is_empty() {
            warn!(listener = %self.listener, "no certificate to serve: handshakes will fail until one is loaded");
        }
        self.current.store(Arc::new(set));
    }

    /// The set from ACME certificates first (they are actively renewed), then the
    /// explicit pairs in config order, then the directory's files by name.
    fn assemble(&self) -> CertSet {
        let loaded = self.loaded.lock();
        let mut ordered: Vec<Arc<LoadedCert>> = self
            .acme
            .iter()
            .flat_map(|slot| slot.certificates().iter().cloned().collect::<Vec<_>>())
            .collect();
        let explicit = self.pairs.iter().filter_map(|p| {
            loaded
                .iter()
                .find(|(k, _)| !k.from_directory && k.cert == p.cert && k.key == p.key)
                .map(|(_, l)| Arc::clone(&l.cert))
        });
        ordered.extend(explicit);
        ordered.extend(
            loaded
                .iter()
                .filter(|(k, _)| k.from_directory)
                .map(|(_, l)| Arc::clone(&l.cert)),
        );
        let default = self.default.as_deref().filter(|name| {
            let found = ordered.iter().any(|c| c.covers(name));
            if !found && !ordered.is_empty() {
                warn!(listener = %self.listener, default = name, "no certificate covers the default name; the first one is the default");
            }
            found
        });
        CertSet::build(ordered, default)
    }

    /// The explicit pairs and the directory's pairs, sorted.
    fn pairs(&self) -> Result<Vec<Pair>, StoreError> {
        let mut pairs: Vec<Pair> = self
            .pairs
            .iter()
            .map(|p| Pair {
                from_directory: false,
                cert: p.cert.clone(),
                key: p.key.clone(),
                field: p.field.clone(),
            })
            .collect();
        if let Some(dir) = &self.directory {
            pairs.extend(directory_pairs(dir, &format!("{}.directory", self.field))?);
        }
        Ok(pairs)
    }
}

/// Certificates in a directory: every `*.pem`, `*.crt` or `*.cer` file, with its key
/// in the file of the same stem ending in `.key`, or in the same file.
fn directory_pairs(dir: &Path, field: &str) -> Result<Vec<Pair>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Directory {
        field: field.to_string(),
        path: dir.to_path_buf(),
        source,
    })?;
    let mut pairs = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_cert = Path::new(name.as_ref())
            .extension()
            .is_some_and(|e| e == "pem" || e == "crt" || e == "cer");
        if name.starts_with('.') || !is_cert || !path.is_file() {
            continue;
        }
        let key = path.with_extension("key");
        let key = if key.is_file() { key } else { path.clone() };
        pairs.push(Pair {
            from_directory: true,
            cert: path,
            key,
            field: field.to_string(),
        });
    }
    pairs.sort();
    Ok(pairs)
}

fn read_pair(pair: &Pair) -> Result<(Vec<u8>, Vec<u8>), PemError> {
    Ok((pem::read(&pair.cert)?, pem::read(&pair.key)?))
}

fn digest_of(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut digest = Sha256::new();
    digest.update((cert.len() as u64).to_be_bytes());
    digest.update(cert);
    digest.update(key);
    digest.finalize().into()
}

fn load_pair(pair: &Pair) -> Result<([u8; 32], LoadedCert), CertError> {
    let (cert, key) = read_pair(pair)?;
    let loaded = parse_pair(pair, &cert, &key)?;
    Ok((digest_of(&cert, &key), loaded))
}

fn parse_pair(pair: &Pair, cert: &[u8], key: &[u8]) -> Result<LoadedCert, CertError> {
    let origin = if pair.cert == pair.key {
        pair.cert.display().to_string()
    } else {
        format!("{} + {}", pair.cert.display(), pair.key.display())
    };
    LoadedCert::from_pem(cert, &pair.cert, key, &pair.key, origin)
}

fn parent_directory(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> Arc<LoadedCert> {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let p = Path::new("t.pem");
        Arc::new(
            LoadedCert::from_pem(
                c.cert.pem().as_bytes(),
                p,
                c.signing_key.serialize_pem().as_bytes(),
                p,
                names[0].to_string(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn picks_exact_then_wildcard_then_default() {
        let a = cert(&["a.test"]);
        let wild = cert(&["*.w.test"]);
        let fallback = cert(&["fallback.test"]);
        let set = CertSet::build(
            vec![Arc::clone(&a), Arc::clone(&wild), Arc::clone(&fallback)],
            Some("fallback.test"),
        );
        let is = |got: Option<Arc<CertifiedKey>>, want: &Arc<LoadedCert>| {
            Arc::ptr_eq(&got.unwrap(), &want.key)
        };
        assert!(is(set.resolve(Some("a.test")), &a));
        assert!(is(set.resolve(Some("x.w.test")), &wild));
        assert!(is(set.resolve(Some("x.y.w.test")), &fallback));
        assert!(is(set.resolve(Some("unknown.test")), &fallback));
        assert!(is(set.resolve(None), &fallback));
    }

    #[test]
    fn the_first_claim_on_a_name_wins() {
        let first = cert(&["same.test"]);
        let second = cert(&["same.test", "other.test"]);
        let set = CertSet::build(vec![Arc::clone(&first), Arc::clone(&second)], None);
        assert!(Arc::ptr_eq(
            &set.resolve(Some("same.test")).unwrap(),
            &first.key
        ));
        assert!(Arc::ptr_eq(
            &set.resolve(Some("other.test")).unwrap(),
            &second.key
        ));
    }
}
