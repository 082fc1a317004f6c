//! rustls client configs for connections to backends: verification against the
//! system roots or a CA file (or none, when asked), a client certificate for mTLS,
//! and ALPN.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

use super::pem::{self, PemError};

/// Why a client TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientTlsError {
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error("{path}: not a usable CA certificate: {error}")]
    BadCa {
        path: std::path::PathBuf,
        error: rustls::Error,
    },
    #[error("no system root certificates found: install the ca-certificates package or set `ca`")]
    NoSystemRoots,
    #[error("client certificate and key do not form a usable pair: {0}")]
    ClientAuth(rustls::Error),
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// What a client config is built from.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsParams<'a> {
    /// CA bundle to trust; `None` trusts the system roots.
    pub ca: Option<&'a Path>,
    /// Check the peer's certificate chain and name.
    pub verify: bool,
    /// Client certificate chain and key for mutual TLS.
    pub client_auth: Option<(&'a Path, &'a Path)>,
    /// Protocols offered by ALPN, in preference order.
    pub alpn: Vec<Vec<u8>>,
}

/// A built client config and a digest of everything it was built from (settings
/// and file contents), to tell whether a reload changed it.
#[derive(Debug, Clone)]
pub struct BuiltClient {
    pub config: Arc<ClientConfig>,
    pub fingerprint: [u8; 32],
}

/// Builds a client config; reads the files named in `params`.
pub fn build(params: &ClientTlsParams<'_>) -> Result<BuiltClient, ClientTlsError> {
    let mut digest = Sha256::new();
    digest.update([u8::from(params.verify)]);
    for protocol in &params.alpn {
        digest.update((protocol.len() as u32).to_be_bytes());
        digest.update(protocol);
    }
    let roots = match params.ca {
        Some(path) => {
            let bytes = pem::read(path)?;
            digest.update(&bytes);
            let mut roots = RootCertStore::empty();
            for cert in pem::certificates(&bytes, path)? {
                roots.add(cert).map_err(|error| ClientTlsError::BadCa {
                    path: path.to_path_buf(),
                    error,
                })?;
            }
            Arc::new(roots)
        }
        None if params.verify => system_roots()?,
        None => Arc::new(RootCertStore::empty()),
    };
    let builder = ClientConfig::builder_with_provider(super::provider::provider())
        .with_safe_default_protocol_versions()?;
    let builder = if params.verify {
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate))
    };
    let mut config = match params.client_auth {
        Some((cert_path, key_path)) => {
            let cert_bytes = pem::read(cert_path)?;
            let key_bytes = pem::read(key_path)?;
            digest.update(&cert_bytes);
            digest.update(&key_bytes);
            let chain = pem::certificates(&cert_bytes, cert_path)?;
            let key = pem::private_key(&key_bytes, key_path)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(ClientTlsError::ClientAuth)?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = params.alpn.clone();
    Ok(BuiltClient {
        config: Arc::new(config),
        fingerprint: digest.finalize().into(),
    })
}

/// The operating system's trusted roots, read once per process.
fn system_roots() -> Result<Arc<RootCertStore>, ClientTlsError> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    if let Some(roots) = ROOTS.get() {
        return Ok(Arc::clone(roots));
    }
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "skipping an unreadable system root certificate");
    }
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(ClientTlsError::NoSystemRoots);
    }
    Ok(Arc::clone(ROOTS.get_or_init(|| Arc::new(roots))))
}

/// `verify = false`: any certificate is accepted, but the handshake signatures are
/// still checked, so the session is at least bound to the key the peer presented.
#[derive(Debug)]
struct AcceptAnyCertificate;

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &super::provider::provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &super::provider::provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        super::provider::provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}
