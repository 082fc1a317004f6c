//! Limits the host enforces on plugins, and the checks on plugin output.
//!
//! Everything a plugin returns crosses these checks before the proxy acts on
//! it: a plugin that answers nonsense fails the call exactly as if it had
//! trapped.
#![forbid(unsafe_code)]

use std::time::Duration;

use http::HeaderName;

use super::error::PluginError;

// The limits a config may set are defined with the config, which checks them.
pub use crate::config::plugin_limits::{
    DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, MAX_MEMORY_BYTES, MAX_REQUEST_PATH_TIMEOUT,
    MIN_MEMORY_BYTES, TIMEOUT_RANGE,
};
/// Deadline for instantiation plus `init`, which may parse configuration.
pub const INIT_TIMEOUT: Duration = Duration::from_millis(250);
/// Interval of the engine's epoch ticker: the granularity of deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(1);
/// Native stack available to plugin code.
pub const MAX_WASM_STACK: usize = 256 << 10;
/// Largest body of a plugin-generated response.
pub const MAX_BODY_BYTES: usize = 4 << 10;
/// Largest `down` reason of a health verdict.
pub const MAX_REASON_BYTES: usize = 256;
/// Largest body prefix handed to a health plugin.
pub const MAX_PROBE_BODY_BYTES: usize = 4 << 10;
/// Most header names a plugin may ask for.
pub const MAX_WANTED_HEADERS: usize = 16;
/// Most header entries (name/value pairs) passed per call.
pub const MAX_HEADER_ENTRIES: usize = 32;
/// Longest open period a recovery plugin may ask for.
pub const MAX_OPEN: Duration = Duration::from_secs(3600);
/// Largest log line kept from a plugin; the rest is cut.
pub const MAX_LOG_BYTES: usize = 1024;
/// Log lines a plugin may emit per call; more are dropped.
pub const LOG_LINES_PER_CALL: u32 = 4;
/// Calls after which a warm instance is retired, bounding what guest state
/// (heap fragmentation, leaks) can build up.
pub const MAX_CALLS_PER_INSTANCE: u32 = 1_000_000;

/// Epoch ticks for a deadline: rounded up, plus one because the current
/// tick may end at any moment.
pub(crate) fn deadline_ticks(timeout: Duration) -> u64 {
    let tick = EPOCH_TICK.as_nanos().max(1);
    let ticks = timeout.as_nanos().div_ceil(tick);
    u64::try_from(ticks)
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// Checks a response status chosen by a plugin.
pub(crate) fn status(code: u16) -> Result<http::StatusCode, PluginError> {
    if !(200..=599).contains(&code) {
        return Err(PluginError::Invalid(format!(
            "status {code} is outside 200..=599"
        )));
    }
    http::StatusCode::from_u16(code)
        .map_err(|_| PluginError::Invalid(format!("status {code} is not valid")))
}

/// Checks the size of a body chosen by a plugin.
pub(crate) fn body(body: &str) -> Result<(), PluginError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(PluginError::Invalid(format!(
            "response body of {} bytes is over the {MAX_BODY_BYTES}-byte limit",
            body.len()
        )));
    }
    Ok(())
}

/// Checks a `down` reason.
pub(crate) fn reason(reason: &str) -> Result<(), PluginError> {
    if reason.len() > MAX_REASON_BYTES {
        return Err(PluginError::Invalid(format!(
            "reason of {} bytes is over the {MAX_REASON_BYTES}-byte limit",
            reason.len()
        )));
    }
    Ok(())
}

/// Parses the header names a plugin declares: legal, lower-case, few.
pub(crate) fn header_names(names: Vec<String>) -> Result<Vec<HeaderName>, PluginError> {
    if names.len() > MAX_WANTED_HEADERS {
        return Err(PluginError::Invalid(format!(
            "{} wanted headers, at most {MAX_WANTED_HEADERS} allowed",
            names.len()
        )));
    }
    let mut out: Vec<HeaderName> = Vec::with_capacity(names.len());
    for name in names {
        let parsed = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| PluginError::Invalid(format!("illegal header name {name:?}")))?;
        if !out.contains(&parsed) {
            out.push(parsed);
        }
    }
    Ok(out)
}

/// Truncates `s` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_up_and_add_one() {
        assert_eq!(deadline_ticks(Duration::from_millis(2)), 3);
        assert_eq!(deadline_ticks(Duration::from_micros(1500)), 3);
        assert_eq!(deadline_ticks(Duration::from_micros(100)), 2);
    }

    #[test]
    fn status_range() {
        assert!(status(199).is_err());
        assert!(status(200).is_ok());
        assert!(status(599).is_ok());
        assert!(status(600).is_err());
    }

    #[test]
    fn header_names_are_checked_and_deduplicated() {
        let ok = header_names(vec!["X-Canary".into(), "x-canary".into()]);
        assert_eq!(ok.map(|v| v.len()).ok(), Some(1));
        assert!(header_names(vec!["bad header\n".into()]).is_err());
        assert!(header_names(vec!["a".into(); 17]).is_err());
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        let mut s = "héllo".to_string();
        truncate(&mut s, 2);
        assert_eq!(s, "h");
    }
}
