//! rustls's certificate choice for a listener: TLS-ALPN-01 validation handshakes get
//! the pending challenge certificate, everyone else the store's choice by SNI.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::challenge::{ACME_TLS_ALPN, Challenges};
use super::store::CertStore;

/// Resolves a listener's certificate per handshake.
#[derive(Debug)]
pub struct SniResolver {
    store: Arc<CertStore>,
    /// Set when the listener answers TLS-ALPN-01 challenges.
    challenges: Option<Arc<Challenges>>,
}

impl SniResolver {
    /// A resolver over `store`, answering ACME validation when `challenges` is given.
    pub fn new(store: Arc<CertStore>, challenges: Option<Arc<Challenges>>) -> Self {
        Self { store, challenges }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        if let Some(challenges) = &self.challenges
            && let Some(mut protocols) = hello.alpn()
            && protocols.any(|p| p == ACME_TLS_ALPN)
        {
            return challenges.tls_alpn_certificate(hello.server_name()?);
        }
        self.store.resolve(hello.server_name())
    }
}
