//! What one attempt against one backend amounted to: what the breaker, a recovery
//! plugin, the rollout guards and the retry rules all judge. It sits beside the
//! breaker, below the pools and the request path that produce it.

use std::time::Duration;

/// What one attempt against one backend amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A non-5xx response, with the time to its headers.
    Success(Duration),
    /// The TCP connect failed.
    ConnectFailed,
    /// The connection broke after the request was sent.
    Reset,
    /// The answer was not valid HTTP or broke the framing rules (bad status line,
    /// conflicting lengths, a head over the limits, an HTTP/0.9-style answer).
    BadResponse,
    /// No response headers within the per-try timeout.
    TimedOut,
    /// A 5xx response.
    ServerError(u16),
    /// The response body broke midway.
    BodyFailed,
}

impl Outcome {
    /// Short name for logs and plugins.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success(_) => "success",
            Outcome::ConnectFailed => "connect-failure",
            Outcome::Reset => "reset",
            Outcome::BadResponse => "bad-response",
            Outcome::TimedOut => "timeout",
            Outcome::ServerError(_) => "5xx",
            Outcome::BodyFailed => "body-failure",
        }
    }
}
