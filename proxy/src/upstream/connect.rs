//! Connecting to a backend: TCP with a deadline, then TLS when the pool asks for it
//! (SNI, certificate verification, a client certificate, ALPN). [`connect`] is the
//! building block of the upstream client, health probes and the ACME client.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::config::UpstreamTlsConfig;

/// Why a connection to a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("`{0}` is not an ip:port address")]
    Address(String),
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Tcp(#[source] io::Error),
    #[error("TLS handshake with {name}: {source}")]
    Tls {
        name: String,
        #[source]
        source: io::Error,
    },
}

/// TCP settings for new connections to backends.
#[derive(Debug, Clone, Copy)]
pub struct TcpSettings {
    pub connect_timeout: Duration,
    /// TCP keep-alive idle time on upstream sockets.
    pub keepalive: Duration,
}

/// TLS towards one pool's backends: the client config and the configured `sni`.
#[derive(Debug)]
pub struct PoolTls {
    config: Arc<ClientConfig>,
    /// The config the client was built from, to tell whether a reload changed it.
    settings: UpstreamTlsConfig,
    sni: Option<ServerName<'static>>,
}

impl PoolTls {
    /// TLS from a pool's `tls` table.
    pub fn new(settings: &UpstreamTlsConfig) -> Self {
        let sni = settings
            .sni
            .as_deref()
            .and_then(|s| ServerName::try_from(s.to_string()).ok());
        Self {
            config: Arc::clone(&settings.client),
            settings: settings.clone(),
            sni,
        }
    }

    /// Whether this was built from `settings` (same options and file contents).
    pub fn built_from(&self, settings: &UpstreamTlsConfig) -> bool {
        self.settings == *settings
    }

    /// The name presented to and verified for the backend at `addr`: the configured
    /// `sni`, else the DNS name the backend was resolved from, else its IP address.
    pub fn server_name(&self, addr: SocketAddr, origin: Option<&str>) -> ServerName<'static> {
        if let Some(name) = &self.sni {
            return name.clone();
        }
        origin
            .and_then(|name| ServerName::try_from(name.to_string()).ok())
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }

    /// The client config with ALPN restricted to `protocols`.
    pub fn config_with_alpn(&self, protocols: &[&[u8]]) -> Arc<ClientConfig> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }

    /// The client config as configured.
    pub fn config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

/// An open connection to a backend, plain or TLS.
#[derive(Debug)]
pub enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl UpstreamStream {
    /// Whether ALPN settled on HTTP/2.
    pub fn negotiated_h2(&self) -> bool {
        match self {
            UpstreamStream::Plain(_) => false,
            UpstreamStream::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
        }
    }
}

/// Opens a connection to `addr` within `settings.connect_timeout`, then runs the TLS
/// handshake with `tls` (client config and the name to present) when given.
pub async fn connect(
    addr: SocketAddr,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    settings: TcpSettings,
) -> Result<UpstreamStream, ConnectError> {
    let tcp = tokio::time::timeout(settings.connect_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(settings.connect_timeout))?
        .map_err(ConnectError::Tcp)?;
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new().with_time(settings.keepalive);
    let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&keepalive);
    let Some((config, name)) = tls else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    let shown = name.to_str().into_owned();
    let handshake = TlsConnector::from(config).connect(name, tcp);
    let stream = tokio::time::timeout(settings.connect_timeout, handshake)
        .await
        .map_err(|_| ConnectError::Timeout(settings.connect_timeout))?
        .map_err(|source| ConnectError::Tls {
            name: shown,
            source,
        })?;
    Ok(UpstreamStream::Tls(Box::new(stream)))
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            UpstreamStream::Plain(s) => s.is_write_vectored(),
            UpstreamStream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_flush(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            UpstreamStream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            UpstreamStream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An [`UpstreamStream`] as hyper sees it.
#[derive(Debug)]
pub struct UpstreamIo {
    io: TokioIo<UpstreamStream>,
    h2: bool,
}

impl UpstreamIo {
    /// Wraps a connected stream.
    pub fn new(stream: UpstreamStream) -> Self {
        let h2 = stream.negotiated_h2();
        Self {
            io: TokioIo::new(stream),
            h2,
        }
    }

    /// Whether ALPN settled on HTTP/2.
    pub fn negotiated_h2(&self) -> bool {
        self.h2
    }
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        let connected = Connected::new();
        if self.h2 {
            connected.negotiated_h2()
        } else {
            connected
        }
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        hyper::rt::Write::is_write_vectored(&self.io)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
