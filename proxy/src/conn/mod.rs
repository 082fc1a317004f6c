//! What the listeners and the request pipeline share about one client connection:
//! its activity timers (request-head deadline, idle keep-alive), the HTTP/2 flood
//! meter over what it sends, and its place under the connection caps. The server
//! accepts and watches connections; the pipeline marks requests started and
//! finished and keeps an upgraded connection's permit for its tunnel.

mod activity;
mod caps;
mod h2_flood;

use std::net::SocketAddr;
use std::sync::Arc;

pub use activity::{ActivityIo, ConnActivity, Expiry, Watch};
pub use caps::{ClientSlot, ConnPermit, PerClient};
pub use h2_flood::Flood;

/// What the pipeline knows about the client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub listener: Arc<str>,
    pub client: SocketAddr,
    /// The client's address as an `X-Forwarded-For` entry, formatted once.
    pub forwarded_for: http::HeaderValue,
    pub tls: bool,
    pub activity: Arc<ConnActivity>,
    /// The connection's place under the connection caps; an upgraded connection
    /// keeps it for as long as its tunnel lives.
    pub permit: Arc<ConnPermit>,
}
