//! The load step's reads: after validation (a pure function of the text and the
//! environment snapshot), the files the config names are checked and the TLS
//! clients towards backends are built from theirs. Each failure is reported at the
//! field that names the file.

use std::collections::HashSet;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::error::Reporter;
use super::{Config, UpstreamTlsConfig};
use crate::crypto::client::{ClientTlsParams, build};

/// What the load step must read, as noted by validation.
#[derive(Debug, Default)]
pub(super) struct Reads {
    base_dir: PathBuf,
    files: Vec<FileRead>,
    clients: Vec<UpstreamTlsSettings>,
}

/// A file or directory the config names.
#[derive(Debug)]
struct FileRead {
    path: PathBuf,
    field: String,
    span: Range<usize>,
    directory: bool,
}

/// A pool's `tls` table, checked by validation; the load step reads its files and
/// builds the client.
#[derive(Debug)]
pub(super) struct UpstreamTlsSettings {
    pub pool: String,
    /// `pool.NAME.tls`, and where the table is.
    pub field: String,
    pub span: Range<usize>,
    pub sni: Option<String>,
    pub verify: bool,
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub alpn: Vec<String>,
}

impl Reads {
    /// Reads for a config at `config_path`: relative paths are resolved against its
    /// directory.
    pub(super) fn new(config_path: &Path) -> Reads {
        Reads {
            base_dir: config_path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            ..Reads::default()
        }
    }

    /// `relative` resolved against the config's directory, without reading anything.
    pub(super) fn path(&self, relative: &str) -> PathBuf {
        self.base_dir.join(relative)
    }

    /// The file named by `value` (resolved), to be checked by the load step.
    pub(super) fn file(&mut self, value: &Spanned<String>, field: impl Into<String>) -> PathBuf {
        self.note(value, field.into(), false)
    }

    /// The directory named by `value` (resolved), to be checked by the load step.
    pub(super) fn directory(
        &mut self,
        value: &Spanned<String>,
        field: impl Into<String>,
    ) -> PathBuf {
        self.note(value, field.into(), true)
    }

    fn note(&mut self, value: &Spanned<String>, field: String, directory: bool) -> PathBuf {
        let path = self.path(value.get_ref());
        self.files.push(FileRead {
            path: path.clone(),
            field,
            span: value.span(),
            directory,
        });
        path
    }

    /// A pool TLS client to build once its files are known to be there.
    pub(super) fn upstream_tls(&mut self, settings: UpstreamTlsSettings) {
        self.clients.push(settings);
    }
}

/// Checks every file `reads` names and builds the pools' TLS clients into `config`.
pub(super) fn resolve(config: &mut Config, reads: Reads, r: &mut Reporter<'_>) {
    let mut missing = HashSet::new();
    for read in &reads.files {
        if let Err(message) = check(&read.path, read.directory) {
            r.at(read.span.clone(), &read.field, message);
            missing.insert(read.path.clone());
        }
    }
    for settings in reads.clients {
        let files = [&settings.ca, &settings.client_cert, &settings.client_key];
        if files.into_iter().flatten().any(|f| missing.contains(f)) {
            continue;
        }
        let params = ClientTlsParams {
            ca: settings.ca.as_deref(),
            verify: settings.verify,
            client_auth: settings
                .client_cert
                .as_deref()
                .zip(settings.client_key.as_deref()),
            alpn: settings
                .alpn
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
        };
        match build(&params) {
            Ok(built) => {
                if let Some(pool) = config.pools.get_mut(&settings.pool) {
                    pool.tls = Some(UpstreamTlsConfig {
                        sni: settings.sni,
                        verify: settings.verify,
                        ca: settings.ca,
                        client_cert: settings.client_cert,
                        client_key: settings.client_key,
                        alpn: settings.alpn,
                        client: built.config,
                        fingerprint: built.fingerprint,
                    });
                }
            }
            Err(e) => r.at(settings.span, settings.field, e.to_string()),
        }
    }
}

/// Whether `path` is there, of the right kind, and can be opened.
fn check(path: &Path, directory: bool) -> Result<(), String> {
    let shown = path.display();
    let metadata = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && directory => {
            return Err(format!("directory {shown} does not exist"));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("file {shown} does not exist"));
        }
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    match (directory, metadata.is_dir()) {
        (true, true) => std::fs::read_dir(path)
            .map(drop)
            .map_err(|e| format!("cannot read directory {shown}: {e}")),
        (true, false) => Err(format!("{shown} is a file; expected a directory")),
        (false, true) => Err(format!("{shown} is a directory; expected a file")),
        (false, false) => std::fs::File::open(path)
            .map(drop)
            .map_err(|e| format!("cannot read {shown}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_what_is_wrong_with_a_path() {
        let dir = std::env::temp_dir().join(format!("switchyard-resolve-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("cert.pem");
        std::fs::write(&file, "x").unwrap();
        let gone = dir.join("gone.pem");
        assert_eq!(check(&file, false), Ok(()));
        assert_eq!(check(&dir, true), Ok(()));
        assert_eq!(
            check(&gone, false),
            Err(format!("file {} does not exist", gone.display()))
        );
        assert_eq!(
            check(&gone, true),
            Err(format!("directory {} does not exist", gone.display()))
        );
        assert_eq!(
            check(&dir, false),
            Err(format!("{} is a directory; expected a file", dir.display()))
        );
        assert_eq!(
            check(&file, true),
            Err(format!(
                "{} is a file; expected a directory",
                file.display()
            ))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
