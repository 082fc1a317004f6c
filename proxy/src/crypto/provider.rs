//! The one place that picks the crypto implementation behind rustls, so listeners,
//! upstream connections and the ACME client all use the same one.

use std::sync::{Arc, OnceLock};

use rustls::crypto::CryptoProvider;
use rustls::server::ProducesTickets;

/// The process-wide crypto provider (built once).
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    Arc::clone(PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())))
}

/// A ticket encrypter for stateless session resumption (rotated by rustls).
pub fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    rustls::crypto::ring::Ticketer::new()
}
