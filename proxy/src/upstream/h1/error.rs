//! Why an HTTP/1 exchange with a backend failed, told apart so the proxy can blame
//! the right party: the backend (an invalid answer, a cut connection) or the
//! client (its body broke while it was being sent).

use std::io;

use crate::error::BoxError;

/// Why an HTTP/1 exchange with a backend failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// Writing to the backend failed.
    #[error("writing to the backend: {0}")]
    Write(#[source] io::Error),
    /// Reading from the backend failed.
    #[error("reading from the backend: {0}")]
    Read(#[source] io::Error),
    /// The backend closed the connection before its answer was complete.
    #[error("the backend closed the connection before its answer was complete")]
    Closed,
    /// The answer was not valid HTTP/1 or broke its framing.
    #[error("invalid answer: {0}")]
    Invalid(&'static str),
    /// The answer's head grew past `limits.max_header_bytes`.
    #[error("answer head larger than limits.max_header_bytes")]
    HeadTooLarge,
    /// The request's body did not fit its own framing.
    #[error("request body {0}")]
    RequestBody(&'static str),
    /// The client's body failed while it was being sent.
    #[error("request body: {0}")]
    ClientBody(#[source] BoxError),
}

impl H1Error {
    /// The answer itself was at fault: not HTTP, over the limits, broken framing.
    pub fn is_invalid_answer(&self) -> bool {
        matches!(self, H1Error::Invalid(_) | H1Error::HeadTooLarge)
    }
}
