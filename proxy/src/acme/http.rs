//! The HTTPS client the ACME library talks to the CA through: hyper over our own
//! upstream connector, trusting the system roots or a configured CA (test CAs such
//! as pebble's, or a private ACME server).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use instant_acme::{BodyWrapper, BytesResponse, HttpClient};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use crate::tls::{ClientTlsError, ClientTlsParams};
use crate::upstream::connect::{self, ConnectError, TcpSettings, UpstreamIo};

/// Connect settings towards the CA.
const SETTINGS: TcpSettings = TcpSettings {
    connect_timeout: Duration::from_secs(10),
    keepalive: Duration::from_secs(60),
};
/// A whole request to the CA (a slow CA must not stall renewals forever).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTPS client for the ACME CA.
pub struct AcmeHttp {
    client: Client<HttpsConnector, BodyWrapper<Bytes>>,
}

impl AcmeHttp {
    /// A client trusting `ca` when given, else the system roots.
    pub fn new(ca: Option<&Path>) -> Result<Self, ClientTlsError> {
        let built = crate::crypto::client::build(&ClientTlsParams {
            ca,
            verify: true,
            client_auth: None,
            alpn: vec![b"http/1.1".to_vec()],
        })?;
        let connector = HttpsConnector {
            config: built.config,
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Self { client })
    }
}

impl HttpClient for AcmeHttp {
    fn request(
        &self,
        req: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.client.request(req));
        Box::pin(async move {
            match response.await {
                Ok(Ok(response)) => Ok(BytesResponse::from(response)),
                Ok(Err(e)) => Err(instant_acme::Error::Other(Box::new(e))),
                Err(_) => Err(instant_acme::Error::Str(
                    "request to the ACME server timed out",
                )),
            }
        })
    }
}

/// Resolves the CA's host name and connects with TLS, verifying that name.
#[derive(Clone)]
struct HttpsConnector {
    config: Arc<ClientConfig>,
}

impl tower_service::Service<Uri> for HttpsConnector {
    type Response = UpstreamIo;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let config = Arc::clone(&self.config);
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| ConnectError::Address(uri.to_string()))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let port = uri.port_u16().unwrap_or(443);
            let name = ServerName::try_from(host.clone())
                .map_err(|_| ConnectError::Address(uri.to_string()))?;
            let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(ConnectError::Tcp)?
                .collect();
            let mut last = ConnectError::Address(uri.to_string());
            for address in addresses {
                match connect::connect(address, Some((Arc::clone(&config), name.clone())), SETTINGS)
                    .await
                {
                    Ok(stream) => return Ok(UpstreamIo::new(stream)),
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }
}
