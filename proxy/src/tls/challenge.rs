//! ACME challenge answers in flight: HTTP-01 tokens served on plain listeners and
//! TLS-ALPN-01 certificates served to clients that offer the `acme-tls/1` protocol.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;
use rustls::sign::CertifiedKey;

/// The ALPN protocol of TLS-ALPN-01 validation (RFC 8737).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// The path prefix of HTTP-01 validation requests (RFC 8555 §8.3).
pub const HTTP_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Pending challenge answers, shared by the ACME manager (writer) and the listeners
/// (readers). Empty nearly always, so readers check a counter before any lock.
#[derive(Debug, Default)]
pub struct Challenges {
    pending: AtomicUsize,
    http: RwLock<HashMap<String, String>>,
    tls_alpn: RwLock<HashMap<String, Arc<CertifiedKey>>>,
}

impl Challenges {
    /// Answers `GET /.well-known/acme-challenge/TOKEN` with the key authorization.
    pub fn set_http(&self, token: &str, key_authorization: &str) {
        self.http
            .write()
            .insert(token.to_string(), key_authorization.to_string());
        self.pending.fetch_add(1, Ordering::Release);
    }

    /// Serves `certificate` to `acme-tls/1` handshakes for `name`.
    pub fn set_tls_alpn(&self, name: &str, certificate: Arc<CertifiedKey>) {
        self.tls_alpn
            .write()
            .insert(name.to_ascii_lowercase(), certificate);
        self.pending.fetch_add(1, Ordering::Release);
    }

    /// Forgets an HTTP-01 token.
    pub fn clear_http(&self, token: &str) {
        if self.http.write().remove(token).is_some() {
            self.pending.fetch_sub(1, Ordering::Release);
        }
    }

    /// Forgets a TLS-ALPN-01 certificate.
    pub fn clear_tls_alpn(&self, name: &str) {
        if self
            .tls_alpn
            .write()
            .remove(&name.to_ascii_lowercase())
            .is_some()
        {
            self.pending.fetch_sub(1, Ordering::Release);
        }
    }

    /// The key authorization for an HTTP-01 request path, if one is pending.
    pub fn http_answer(&self, path: &str) -> Option<String> {
        if self.pending.load(Ordering::Acquire) == 0 {
            return None;
        }
        let token = path.strip_prefix(HTTP_CHALLENGE_PREFIX)?;
        self.http.read().get(token).cloned()
    }

    /// The TLS-ALPN-01 certificate for `name`, if one is pending.
    pub fn tls_alpn_certificate(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        if self.pending.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.tls_alpn.read().get(name).cloned()
    }
}
