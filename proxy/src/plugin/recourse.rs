//! What a seam does when a plugin call fails: the one rule every seam (backend
//! choice, probe verdicts, breaker decisions) follows.

use super::error::PluginError;
use crate::config::OnError;

/// What the seam does after a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recourse {
    /// Use the native policy for this call.
    Native,
    /// Refuse, as `on_error = "fail-closed"` asks.
    FailClosed,
}

/// Quarantine always falls back (the plugin is not being run at all); other
/// failures follow the configured `on_error`.
pub(crate) fn recourse(error: &PluginError, on_error: OnError) -> Recourse {
    match (error, on_error) {
        (PluginError::Quarantined, _) | (_, OnError::Fallback) => Recourse::Native,
        (_, OnError::FailClosed) => Recourse::FailClosed,
    }
}
