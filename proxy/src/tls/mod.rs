//! Certificates and TLS settings, for listeners and for connections to backends.
//!
//! Listeners serve certificates from a [`CertStore`]: files or a directory, several per
//! listener chosen by SNI (exact, wildcard, default), watched and hot-reloaded (a bad
//! new pair is refused and the old one keeps serving), plus certificates an ACME
//! manager obtains. The [`TlsRegistry`] ties the stores of a process together for
//! metrics, ACME slots and pending challenges. The rustls configs used towards backends are
//! built by [`crate::crypto::client`]. Nothing here accepts connections: that is `server`'s job.

pub mod certificate;
pub mod challenge;
pub mod registry;
mod resolver;
mod slots;
pub mod store;
mod watch;

pub use crate::crypto::{
    BuiltClient, ClientTlsError, ClientTlsParams, PemError, provider, ticketer,
};
pub use certificate::{CertError, LoadedCert};
pub use challenge::{ACME_TLS_ALPN, Challenges};
pub use registry::TlsRegistry;
pub use resolver::SniResolver;
pub use slots::{AcmeSlot, ReloadCounts};
pub use store::{CertSet, CertStore};
pub use watch::watch;
