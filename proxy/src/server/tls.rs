//! What a TLS listener accepts with: a rustls server config over the listener's
//! certificate store (SNI choice, hot reload, ACME certificates and challenges),
//! with the configured version floor and ALPN, and session resumption on.
//!
//! [`build_acceptor`] is the one entry point: it loads every certificate (blocking
//! file reads) and fails on any bad file, so a start or config change can be refused
//! before anything changes. [`ListenerTls::watch`] then keeps the store in step with
//! its files while the listener runs.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::ServerSessionMemoryCache;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::config::{ListenerTlsConfig, TlsVersion};
use crate::tls::store::StoreError;
use crate::tls::{ACME_TLS_ALPN, CertStore, SniResolver, TlsRegistry};

/// TLS sessions remembered per listener for resumption by session ID (TLS 1.2);
/// TLS 1.3 clients resume with stateless tickets.
const SESSION_CACHE: usize = 16 * 1024;

/// Why a listener's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Certificates(Box<StoreError>),
    #[error("TLS settings rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

impl From<StoreError> for TlsError {
    fn from(e: StoreError) -> Self {
        TlsError::Certificates(Box::new(e))
    }
}

impl TlsError {
    /// The config field the error is about (`listener[0].tls.key`,
    /// `listener[0].tls.certificates[1].cert`, `listener[0].tls.directory`), to
    /// locate it in the file; `None` for the `tls` table as a whole.
    pub fn field(&self) -> Option<String> {
        match self {
            TlsError::Certificates(e) => e.field(),
            TlsError::Rustls(_) => None,
        }
    }
}

/// A TLS listener's acceptor and the certificate store behind it.
pub struct ListenerTls {
    acceptor: TlsAcceptor,
    store: Arc<CertStore>,
    watching: Option<DropGuard>,
}

impl ListenerTls {
    /// The acceptor handshakes go through.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The certificates served.
    pub fn store(&self) -> &Arc<CertStore> {
        &self.store
    }

    /// Starts reloading the certificates when their files change; stops when
    /// `stop` fires or this is dropped (with the last [`TlsSlot`] holding it).
    pub fn watch(&mut self, stop: &CancellationToken) {
        let token = stop.child_token();
        crate::tls::watch(Arc::clone(&self.store), token.clone());
        self.watching = Some(token.drop_guard());
    }
}

/// Builds a TLS listener's acceptor: loads its certificates (a bad one is an error),
/// and sets the version floor, ALPN (plus `acme-tls/1` when ACME validates through
/// it) and session resumption (an in-memory session cache and stateless tickets).
pub fn build_acceptor(
    listener: &str,
    config: &ListenerTlsConfig,
    registry: &TlsRegistry,
) -> Result<ListenerTls, TlsError> {
    let store = registry.load_store(listener, config)?;
    let resolver = SniResolver::new(
        Arc::clone(&store),
        config.acme.then(|| Arc::clone(registry.challenges())),
    );
    let versions: &[&'static rustls::SupportedProtocolVersion] = match config.min_version {
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
    };
    let mut server = ServerConfig::builder_with_provider(crate::crypto::provider())
        .with_protocol_versions(versions)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = config.alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    if config.acme {
        server.alpn_protocols.push(ACME_TLS_ALPN.to_vec());
    }
    server.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE);
    server.ticketer = crate::tls::ticketer()?;
    Ok(ListenerTls {
        acceptor: TlsAcceptor::from(Arc::new(server)),
        store,
        watching: None,
    })
}

/// A running listener's TLS, shared by its accept loop and its connections. The
/// certificate watch lasts while anything holds it, so a listener restarted on its
/// socket with the same `tls` table (another setting changed) keeps its store and
/// watch, and loads nothing to restart; a changed `tls` table gets a new slot.
#[derive(Clone)]
pub struct TlsSlot(Arc<ListenerTls>);

impl TlsSlot {
    /// A slot holding `tls`.
    pub fn new(tls: ListenerTls) -> Self {
        Self(Arc::new(tls))
    }

    /// The acceptor handshakes go through.
    pub fn acceptor(&self) -> &TlsAcceptor {
        self.0.acceptor()
    }

    /// The certificates served.
    pub fn store(&self) -> &Arc<CertStore> {
        self.0.store()
    }
}
