//! One certificate order against the ACME CA: account, order, challenges answered
//! through the listeners, CSR, certificate. Challenge answers are withdrawn however
//! the order ends.

use std::sync::Arc;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;
use tracing::info;

use super::http::AcmeHttp;
use super::storage::{Storage, write_private};
use crate::config::{AcmeChallenge, AcmeConfig};
use crate::tls::{CertError, Challenges, ClientTlsError, LoadedCert};

/// How long the CA is given to validate the challenges, then to issue.
const VALIDATION_WAIT: Duration = Duration::from_secs(120);

/// Why an order did not produce a certificate.
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error("cannot reach the ACME server: {0}")]
    Client(#[from] ClientTlsError),
    #[error("{path}: {source}")]
    Storage {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: unreadable account credentials: {source}")]
    Credentials {
        path: std::path::PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("authorization for {name} is {status:?}")]
    Authorization {
        name: String,
        status: AuthorizationStatus,
    },
    #[error("the CA offers no {0} challenge for {1}")]
    NoChallenge(&'static str, String),
    #[error("the order ended {0:?}: the CA could not validate the challenges")]
    Invalid(OrderStatus),
    #[error("cannot generate a key or request: {0}")]
    Key(#[from] rcgen::Error),
    #[error("the issued certificate does not load: {0}")]
    Certificate(#[from] CertError),
    #[error("cannot use the tls-alpn-01 validation key: {0}")]
    ValidationKey(rustls::Error),
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl OrderError {
    /// Whether the CA no longer knows the stored account (a new one is needed).
    pub fn account_gone(&self) -> bool {
        matches!(self, OrderError::Acme(instant_acme::Error::Api(problem))
            if problem.r#type.as_deref() == Some("urn:ietf:params:acme:error:accountDoesNotExist"))
    }
}

/// Answers in flight for one order, withdrawn on drop.
struct Answers<'a> {
    challenges: &'a Challenges,
    tokens: Vec<String>,
    names: Vec<String>,
}

impl Drop for Answers<'_> {
    fn drop(&mut self) {
        for token in &self.tokens {
            self.challenges.clear_http(token);
        }
        for name in &self.names {
            self.challenges.clear_tls_alpn(name);
        }
    }
}

/// Obtains a certificate for `config.names` and stores it; returns it loaded.
pub async fn obtain(
    config: &AcmeConfig,
    storage: &Storage,
    challenges: &Challenges,
) -> Result<LoadedCert, OrderError> {
    let account = account(config, storage).await?;
    let identifiers: Vec<Identifier> = config
        .names
        .iter()
        .map(|n| Identifier::Dns(n.clone()))
        .collect();
    let mut order = account.new_order(&NewOrder::new(&identifiers)).await?;
    let mut answers = Answers {
        challenges,
        tokens: Vec::new(),
        names: Vec::new(),
    };
    let kind = match config.challenge {
        AcmeChallenge::Http01 => ChallengeType::Http01,
        AcmeChallenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        let name = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            status => return Err(OrderError::Authorization { name, status }),
        }
        let mut challenge = authorization.challenge(kind.clone()).ok_or_else(|| {
            OrderError::NoChallenge(
                match config.challenge {
                    AcmeChallenge::Http01 => "http-01",
                    AcmeChallenge::TlsAlpn01 => "tls-alpn-01",
                },
                name.clone(),
            )
        })?;
        let key_authorization = challenge.key_authorization();
        match config.challenge {
            AcmeChallenge::Http01 => {
                challenges.set_http(&challenge.token, key_authorization.as_str());
                answers.tokens.push(challenge.token.clone());
            }
            AcmeChallenge::TlsAlpn01 => {
                let certificate =
                    validation_certificate(&name, key_authorization.digest().as_ref())?;
                challenges.set_tls_alpn(&name, Arc::new(certificate));
                answers.names.push(name.clone());
            }
        }
        challenge.set_ready().await?;
    }
    let retries = RetryPolicy::new().timeout(VALIDATION_WAIT);
    let status = order.poll_ready(&retries).await?;
    if status != OrderStatus::Ready {
        return Err(OrderError::Invalid(status));
    }
    drop(answers);
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(config.names.clone())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    let request = params.serialize_request(&key)?;
    order.finalize_csr(request.der()).await?;
    let chain = order.poll_certificate(&retries).await?;
    let key_pem = key.serialize_pem();
    let loaded = LoadedCert::from_pem(
        chain.as_bytes(),
        storage.cert(),
        key_pem.as_bytes(),
        storage.key(),
        "acme".to_string(),
    )?;
    let files = storage.clone();
    tokio::task::spawn_blocking(move || -> Result<(), OrderError> {
        write_private(files.key(), key_pem.as_bytes()).map_err(|source| OrderError::Storage {
            path: files.key().to_path_buf(),
            source,
        })?;
        write_private(files.cert(), chain.as_bytes()).map_err(|source| OrderError::Storage {
            path: files.cert().to_path_buf(),
            source,
        })
    })
    .await??;
    Ok(loaded)
}

/// The stored account, or a new one (stored 0600).
async fn account(config: &AcmeConfig, storage: &Storage) -> Result<Account, OrderError> {
    let http = Box::new(AcmeHttp::new(config.ca.as_deref())?);
    let path = storage.account().to_path_buf();
    let stored = tokio::task::spawn_blocking({
        let path = path.clone();
        move || std::fs::read(&path)
    })
    .await?;
    if let Ok(bytes) = stored {
        let credentials: AccountCredentials =
            serde_json::from_slice(&bytes).map_err(|source| OrderError::Credentials {
                path: path.clone(),
                source,
            })?;
        return Ok(Account::builder_with_http(http)
            .from_credentials(credentials)
            .await?);
    }
    let contact: Vec<&str> = config.contact.iter().map(String::as_str).collect();
    let (account, credentials) = Account::builder_with_http(http)
        .create(
            &NewAccount {
                contact: &contact,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            config.directory.clone(),
            None,
        )
        .await?;
    let json = serde_json::to_vec(&credentials).map_err(|source| OrderError::Credentials {
        path: path.clone(),
        source,
    })?;
    tokio::task::spawn_blocking(move || {
        write_private(&path, &json).map_err(|source| OrderError::Storage { path, source })
    })
    .await??;
    info!(directory = %config.directory, "ACME account created");
    Ok(account)
}

/// The self-signed certificate that proves control of `name` for TLS-ALPN-01: it
/// carries the key authorization's digest in the critical acmeIdentifier extension.
fn validation_certificate(name: &str, digest: &[u8]) -> Result<CertifiedKey, OrderError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key)?;
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    // Not `CertifiedKey::from_der`: its consistency check parses the certificate and
    // refuses the critical acmeIdentifier extension this certificate exists for.
    let signing_key = crate::crypto::provider()
        .key_provider
        .load_private_key(der)
        .map_err(OrderError::ValidationKey)?;
    Ok(CertifiedKey::new(
        vec![CertificateDer::from(cert.der().to_vec())],
        signing_key,
    ))
}
