//! Upstream pools: backends, their shared runtime state, and the HTTP client to reach them.

mod backend;
pub mod client;
mod pool;

pub use backend::{AdminState, Backend, BackendState, Usability};
pub use client::{UpstreamBody, UpstreamClient};
pub use pool::{Pool, PoolSet};
