//! Where ACME state lives on disk: the account credentials and the certificate
//! with its key, written atomically and readable only by the proxy's user (0600).

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Files of one `[acme]` setup in its storage directory.
#[derive(Debug, Clone)]
pub struct Storage {
    account: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Storage {
    /// The files for `directory_url`'s account and the certificate for `names`
    /// (named after the first one).
    pub fn new(dir: &Path, directory_url: &str, names: &[String]) -> Self {
        let digest = Sha256::digest(directory_url.as_bytes());
        let tag: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        let primary = names.first().map_or("certificate", String::as_str);
        Self {
            account: dir.join(format!("account-{tag}.json")),
            cert: dir.join(format!("{primary}.crt")),
            key: dir.join(format!("{primary}.key")),
        }
    }

    /// The account credentials file.
    pub fn account(&self) -> &Path {
        &self.account
    }

    /// The certificate chain file.
    pub fn cert(&self) -> &Path {
        &self.cert
    }

    /// The private key file.
    pub fn key(&self) -> &Path {
        &self.key
    }
}

/// Writes `bytes` to `path` atomically (a temporary file, synced, renamed over it),
/// with mode 0600; creates the directory (0700) if needed. Blocking.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    if !dir.exists() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir)?;
    }
    let name = path
        .file_name()
        .map_or_else(|| "acme".into(), |n| n.to_string_lossy().into_owned());
    let temporary = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let result = (|| {
        let mut file = options.open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_files_readable_by_the_owner_only() {
        let dir = std::env::temp_dir().join(format!("switchyard-acme-store-{}", fastrand::u64(..)));
        let path = dir.join("nested").join("a.key");
        write_private(&path, b"secret").unwrap();
        write_private(&path, b"secret 2").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"secret 2");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
