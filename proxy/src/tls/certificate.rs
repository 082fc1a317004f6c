//! A certificate chain and its key, checked and ready to serve, with the names and
//! expiry read from the leaf certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::crypto::pem::{self, PemError};

/// Why a certificate and key pair was refused.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{source_name}: the leaf certificate is not valid X.509: {message}")]
    Parse {
        source_name: String,
        message: String,
    },
    #[error(
        "{source_name}: the private key does not match the certificate, or is of an unsupported type: {error}"
    )]
    KeyMismatch {
        source_name: String,
        error: rustls::Error,
    },
    #[error("{source_name}: the certificate names no DNS name or common name")]
    NoName { source_name: String },
}

/// A chain with its signing key and what the leaf says about itself.
#[derive(Debug)]
pub struct LoadedCert {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// Lower-cased DNS names (subject alternative names, else the common name);
    /// wildcards keep their `*.` prefix.
    pub names: Vec<String>,
    /// When the leaf became valid, in seconds since the Unix epoch.
    pub not_before: i64,
    /// When the leaf expires, in seconds since the Unix epoch.
    pub not_after: i64,
    /// Where it came from (file names, or `acme`), for logs.
    pub origin: String,
}

impl LoadedCert {
    /// Checks a chain and key given as PEM: both parse, the key matches the leaf,
    /// and the leaf names at least one host.
    pub fn from_pem(
        cert_pem: &[u8],
        cert_path: &Path,
        key_pem: &[u8],
        key_path: &Path,
        origin: String,
    ) -> Result<Self, CertError> {
        let chain = pem::certificates(cert_pem, cert_path)?;
        let key = pem::private_key(key_pem, key_path)?;
        Self::from_der(chain, key, origin)
    }

    /// Checks a DER chain and key.
    pub fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        origin: String,
    ) -> Result<Self, CertError> {
        let (names, not_before, not_after) = describe(&chain[0], &origin)?;
        let certified =
            CertifiedKey::from_der(chain, key, &crate::crypto::provider()).map_err(|error| {
                CertError::KeyMismatch {
                    source_name: origin.clone(),
                    error,
                }
            })?;
        Ok(Self {
            key: Arc::new(certified),
            names,
            not_before,
            not_after,
            origin,
        })
    }

    /// Seconds left before expiry (negative once expired).
    pub fn seconds_left(&self, now_unix: i64) -> i64 {
        self.not_after - now_unix
    }

    /// Whether the certificate covers `name` exactly or through a wildcard.
    pub fn covers(&self, name: &str) -> bool {
        self.names.iter().any(|n| name_matches(n, name))
    }
}

/// Whether certificate name `pattern` (possibly `*.example.com`) covers host `name`.
pub fn name_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => name
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
        None => pattern == name,
    }
}

/// Names and validity period of a leaf certificate.
fn describe(leaf: &CertificateDer<'_>, origin: &str) -> Result<(Vec<String>, i64, i64), CertError> {
    let parse_error = |message: String| CertError::Parse {
        source_name: origin.to_string(),
        message,
    };
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| parse_error(e.to_string()))?;
    let mut names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        Ok(None) => Vec::new(),
        Err(e) => return Err(parse_error(e.to_string())),
    };
    if names.is_empty() {
        names.extend(
            cert.subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok())
                .map(str::to_ascii_lowercase),
        );
    }
    if names.is_empty() {
        return Err(CertError::NoName {
            source_name: origin.to_string(),
        });
    }
    let validity = cert.validity();
    Ok((
        names,
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(name_matches("example.com", "example.com"));
        assert!(!name_matches("example.com", "a.example.com"));
    }

    #[test]
    fn reads_names_and_expiry_and_refuses_a_foreign_key() {
        let a =
            rcgen::generate_simple_self_signed(vec!["a.test".into(), "*.b.test".into()]).unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let path = Path::new("x.pem");
        let loaded = LoadedCert::from_pem(
            a.cert.pem().as_bytes(),
            path,
            a.signing_key.serialize_pem().as_bytes(),
            path,
            "test".into(),
        )
        .unwrap();
        assert_eq!(loaded.names, ["a.test", "*.b.test"]);
        assert!(loaded.covers("x.b.test"));
        assert!(loaded.not_after > 0);
        let refused = LoadedCert::from_pem(
            a.cert.pem().as_bytes(),
            path,
            other.serialize_pem().as_bytes(),
            path,
            "test".into(),
        );
        assert!(
            matches!(refused, Err(CertError::KeyMismatch { .. })),
            "{refused:?}"
        );
    }
}
