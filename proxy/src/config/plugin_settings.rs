//! `[plugin.NAME]` as the config names it: the job a plugin does, where its
//! component is, its `config` table and the limits it runs under. The plugin runtime
//! builds its load spec from these; nothing here loads WebAssembly, so config stays
//! the bottom layer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Bounds and defaults of the per-plugin limits a config may set. The runtime
/// enforces the same numbers (it re-exports them), so a config that validates loads.
pub mod plugin_limits {
    use std::time::Duration;

    /// Default per-call deadline.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(2);
    /// Default linear-memory limit per instance.
    pub const DEFAULT_MEMORY_BYTES: u64 = 16 << 20;
    /// Largest memory limit a spec may ask for (the pooling allocator reserves
    /// slots of this size).
    pub const MAX_MEMORY_BYTES: u64 = 64 << 20;
    /// Smallest memory limit: Rust plugins need about 1 MiB to start.
    pub const MIN_MEMORY_BYTES: u64 = 1 << 20;
    /// Shortest and longest accepted per-call deadlines.
    pub const TIMEOUT_RANGE: (Duration, Duration) =
        (Duration::from_micros(100), Duration::from_secs(10));
    /// Longest deadline a plugin called inline on the request path (routing, recovery)
    /// may have: such a call holds a worker thread, so a slow one delays every request
    /// queued behind it. Health plugins judge probes off the request path and may take
    /// up to the full range.
    pub const MAX_REQUEST_PATH_TIMEOUT: Duration = Duration::from_millis(50);
}

/// Which world a plugin implements, i.e. which job it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// Picks a backend per request (`routing` world).
    Routing,
    /// Judges active health probes (`health-check` world).
    Health,
    /// Drives a circuit breaker (`recovery` world).
    Recovery,
}

impl PluginKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [PluginKind; 3] = [Self::Routing, Self::Health, Self::Recovery];

    /// The WIT world name: the `kind` written in config files, shown in
    /// `/status` and messages.
    pub fn world(self) -> &'static str {
        match self {
            Self::Routing => "routing",
            Self::Health => "health-check",
            Self::Recovery => "recovery",
        }
    }

    /// The kind a config file or command line names: the world name, or
    /// `health` for `health-check`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "routing" => Some(Self::Routing),
            "health-check" | "health" => Some(Self::Health),
            "recovery" => Some(Self::Recovery),
            _ => None,
        }
    }

    /// Whether calls run inline while a request is being served (routing picks the
    /// backend, recovery judges each outcome), so their deadline is capped at
    /// [`plugin_limits::MAX_REQUEST_PATH_TIMEOUT`].
    pub fn on_request_path(self) -> bool {
        matches!(self, Self::Routing | Self::Recovery)
    }
}

/// What one `[plugin.NAME]` table asks the runtime to load: the plugin runtime turns
/// it into its own load spec (adding instance reuse and quarantine defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSettings {
    /// The table's name, used in logs and metrics.
    pub name: String,
    /// The job it does.
    pub kind: PluginKind,
    /// The `.wasm` component, resolved against the config file's directory.
    pub path: PathBuf,
    /// The plugin's `config` table, encoded as JSON; passed to `init`.
    pub config_json: String,
    /// Deadline of one call.
    pub timeout: Duration,
    /// Memory limit of one instance.
    pub memory_bytes: u64,
}

/// A `[plugin.NAME]` table: what to load (the path resolved against the config
/// file's directory, the `config` table as JSON, the limits) and what a failed call
/// falls back to.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// What to load.
    pub spec: PluginSettings,
    pub on_error: OnError,
    /// Where the `config` table's keys are written, for messages.
    pub locations: ConfigLocations,
}

impl PluginConfig {
    /// The located form of a load failure: an `init` refusal naming a config field
    /// (`config.FIELD: message`) becomes `FILE:LINE:COL: plugin.NAME.config.FIELD:
    /// message`; `None` for any other failure.
    pub fn locate_error(&self, error: &impl InitRefusal) -> Option<String> {
        let message = error.init_refusal()?;
        self.locations.locate(&self.spec.name, message)
    }
}

/// A plugin load failure as config sees it: the message of an `init` that refused
/// its `config` table, if that is what happened. The plugin runtime's error
/// implements it, so config can place a refusal in the file without depending on
/// the runtime.
pub trait InitRefusal {
    /// The `init` error message, or `None` for any other failure.
    fn init_refusal(&self) -> Option<&str>;
}

/// Where each key of a plugin's `config` table sits in the config file, so that a
/// plugin refusing a field (`config.FIELD: message`, the form the plugin SDK uses)
/// is reported at that field's line and column. Layout is not configuration: two
/// tables that differ only in where their keys are written compare equal, so moving
/// lines around reloads no plugin.
#[derive(Debug, Clone, Default)]
pub struct ConfigLocations {
    file: String,
    /// Line and column of the `config` key (or `[plugin.NAME.config]` header).
    table: Option<(usize, usize)>,
    /// Line and column of every key and array element, by path (`tenants.acme[1]`,
    /// quoted where a key is not a plain word: `required."checks.db"`).
    keys: BTreeMap<String, (usize, usize)>,
}

impl PartialEq for ConfigLocations {
    fn eq(&self, _other: &Self) -> bool {
        true
    }
}

impl ConfigLocations {
    /// Locations of the keys of `table`, written at `table_at` in `file`.
    pub(crate) fn new(
        file: String,
        table_at: Option<(usize, usize)>,
        keys: BTreeMap<String, (usize, usize)>,
    ) -> Self {
        Self {
            file,
            table: table_at,
            keys,
        }
    }

    /// `FILE:LINE:COL: plugin.NAME.config.PATH: message` for an `init` error of the
    /// form `config.PATH: message` (or `config: message` for the whole table);
    /// `None` when the message has another form or the table is not in a file.
    pub fn locate(&self, plugin: &str, init_error: &str) -> Option<String> {
        if let Some(message) = init_error.strip_prefix("config: ") {
            let (line, column) = self.table?;
            return Some(format!(
                "{}:{line}:{column}: plugin.{plugin}.config: {message}",
                self.file
            ));
        }
        let rest = init_error.strip_prefix("config.")?;
        // The longest written path the message starts with: a missing nested key is
        // reported at the table that lacks it.
        let (path, (line, column)) = self
            .keys
            .iter()
            .filter(|(path, _)| {
                rest.strip_prefix(path.as_str()).is_some_and(|tail| {
                    tail.starts_with(": ") || tail.starts_with('.') || tail.starts_with('[')
                })
            })
            .max_by_key(|(path, _)| path.len())?;
        let full_path = rest.split_once(": ").map_or(path.as_str(), |(p, _)| p);
        let message = rest.strip_prefix(full_path)?.strip_prefix(": ")?;
        Some(format!(
            "{}:{line}:{column}: plugin.{plugin}.config.{full_path}: {message}",
            self.file
        ))
    }
}

/// What a request (or probe, or outcome) gets when its plugin call fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Use the native policy for that call: routing picks natively, health judges
    /// natively, the breaker applies its own thresholds.
    #[default]
    Fallback,
    /// Refuse: routing answers 503, health counts the probe as failed, the breaker
    /// keeps its state.
    FailClosed,
}

impl OnError {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::Fallback => "fallback",
            OnError::FailClosed => "fail-closed",
        }
    }
}
