//! The TLS building blocks that need nothing else of the proxy: the rustls crypto
//! provider, PEM reading, and the client configs used towards backends.
//!
//! They sit in the bottom layer so the config's load step can build a backend's TLS
//! client (and report a bad CA or key at its field) without reaching up into
//! [`crate::tls`], which serves certificates and imports these in turn.

pub mod client;
pub mod pem;
pub mod provider;

pub use client::{BuiltClient, ClientTlsError, ClientTlsParams};
pub use pem::PemError;
pub use provider::{provider, ticketer};
