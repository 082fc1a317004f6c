//! Upstream pools: backends, their shared runtime state, and the HTTP client to reach them.

mod backend;
pub mod client;
pub mod connect;
mod drain;
mod h1;
mod idle;
mod outgoing;
mod policies;
mod pool;
mod sticky;
mod transition;

pub use backend::{AdminState, Backend, BackendState, Usability};
pub use client::{
    ClientError, OutgoingHead, ResponseBody, ResponseBodyError, UpstreamBody, UpstreamClient,
};
pub use connect::{ConnectError, PoolTls, TcpSettings, UpstreamIo, UpstreamStream};
pub use drain::{DrainEnd, wait_drained};
pub use h1::H1Error;
pub use outgoing::{is_idempotent, no_body};
pub use policies::{PoolPolicies, Shadow};
pub use pool::{Pool, PoolSet};
pub use sticky::Sticky;
pub use transition::log_transition;
