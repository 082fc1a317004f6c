//! What this process is: the build it runs (version and git revision) and where it
//! sits in a chain of zero-downtime upgrades, for `switchyard --version`, `/status`
//! and `switchyard_build_info`.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The crate version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git revision the binary was built from (`unknown` when built without git).
pub const REVISION: &str = env!("SWITCHYARD_REVISION");

/// `VERSION (rev REVISION)`: what `switchyard --version` prints.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (rev ",
    env!("SWITCHYARD_REVISION"),
    ")"
);

/// Where this process sits in a chain of upgrades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lineage {
    /// 0 for a cold start, one more for each upgrade that handed over to a new process.
    pub generation: u32,
    /// The process that handed its sockets over to this one.
    pub previous_pid: Option<u32>,
}

static LINEAGE: OnceLock<Lineage> = OnceLock::new();
static STARTED: OnceLock<u64> = OnceLock::new();

/// Records that this process took over from `previous_pid` (once, at start).
pub fn set_lineage(lineage: Lineage) {
    let _ = LINEAGE.set(lineage);
}

/// This process's lineage (a cold start unless [`set_lineage`] said otherwise).
pub fn lineage() -> Lineage {
    LINEAGE.get().copied().unwrap_or(Lineage {
        generation: 0,
        previous_pid: None,
    })
}

/// Marks the start time (the first call wins); `/status` reports it.
pub fn mark_started() -> u64 {
    *STARTED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// The `process` object of `/status`.
pub fn to_json() -> Value {
    let lineage = lineage();
    json!({
        "pid": std::process::id(),
        "version": VERSION,
        "revision": REVISION,
        "generation": lineage.generation,
        "previous_pid": lineage.previous_pid,
        "started_unix": mark_started(),
    })
}
