//! Why one try at a backend failed, in the words the access log uses: refused, a
//! connect timeout, TLS, a reset, a timeout waiting for the answer, an invalid
//! answer, or the status of an answer that was retried or given up on.

use std::fmt;
use std::io;

use crate::upstream::{ClientError, ConnectError};

/// Why a try failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing listens at the backend's address (the TCP connect was refused).
    Refused,
    /// The TCP connect did not finish within `limits.connect_timeout`.
    ConnectTimeout,
    /// The TCP connect failed otherwise (no route to the host, unreachable).
    Connect,
    /// The TLS handshake failed (certificate, name, protocol).
    Tls,
    /// The connection broke after the request was sent.
    Reset,
    /// No answer within the pool's `per_try_timeout`.
    Timeout,
    /// The answer was not valid HTTP or broke the framing rules.
    BadResponse,
    /// The backend answered with this 5xx status.
    Status(u16),
}

impl Failure {
    /// What a failed send amounted to: the connect error's kind when the connection
    /// could not be opened, else a reset (`invalid` when hyper could not parse the
    /// answer).
    pub fn of_send(error: &ClientError, invalid: bool) -> Failure {
        if !error.is_connect() {
            return if invalid {
                Failure::BadResponse
            } else {
                Failure::Reset
            };
        }
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(e) = cause {
            if let Some(connect) = e.downcast_ref::<ConnectError>() {
                return match connect {
                    ConnectError::Timeout(_) => Failure::ConnectTimeout,
                    ConnectError::Tls { .. } => Failure::Tls,
                    ConnectError::Tcp(io) => of_io(io),
                    ConnectError::Address(_) => Failure::Connect,
                };
            }
            if let Some(io) = e.downcast_ref::<io::Error>() {
                return of_io(io);
            }
            cause = e.source();
        }
        Failure::Connect
    }
}

fn of_io(error: &io::Error) -> Failure {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => Failure::Refused,
        io::ErrorKind::TimedOut => Failure::ConnectTimeout,
        _ => Failure::Connect,
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Failure::Refused => "refused",
            Failure::ConnectTimeout => "connect-timeout",
            Failure::Connect => "connect-error",
            Failure::Tls => "tls",
            Failure::Reset => "reset",
            Failure::Timeout => "timeout",
            Failure::BadResponse => "bad-response",
            Failure::Status(status) => return write!(f, "{status}"),
        };
        f.write_str(text)
    }
}
