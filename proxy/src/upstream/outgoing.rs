//! The body type of requests sent to backends, shared by the client and the
//! HTTP/1 codec beneath it.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;

use crate::error::BoxError;

/// The body type sent to backends: boxed, as a request's body may come from the
/// client, a replay buffer, or nothing.
pub type UpstreamBody = BoxBody<Bytes, BoxError>;
