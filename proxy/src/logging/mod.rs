//! Log output: human text or JSON lines on stderr, shaped for where they land.
//!
//! - Colours only when stderr is a terminal (and `NO_COLOR` is unset): a file, a pipe
//!   or the journal gets plain text.
//! - Under systemd with stderr connected to the journal (`JOURNAL_STREAM` names
//!   stderr's device and inode), text lines carry no timestamp, since journald stamps
//!   every line itself, and start with a syslog priority prefix (`<3>` error, `<4>`
//!   warning, `<6>` info, `<7>` debug) so `journalctl -p warning` filters by level.
//! - `--log-format json` writes one object per line with stable field names:
//!   `timestamp` (RFC 3339, UTC), `level` (`ERROR`, `WARN`, `INFO`, `DEBUG`, `TRACE`),
//!   `target` (the module, e.g. `switchyard::audit`), `message`, then the event's own
//!   fields at the top level (e.g. `pool`, `backend`, `error`). JSON keeps its
//!   timestamp under the journal too, so every consumer sees the same schema.
//!
//! Lines are written by one thread in batches ([`writer`]): a request that logs never
//! waits for stderr, and when stderr cannot keep up lines are dropped and counted
//! ([`dropped_lines`], exported as `switchyard_log_lines_dropped_total`). Access
//! lines skip `tracing`'s formatter: [`access`] writes them by hand in the same
//! shape (except on a terminal, where the formatter's colours are kept).

pub mod access;
pub mod writer;

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::Duration;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

pub use access::{AccessLines, AccessShape};
pub use writer::BatchWriter;

/// How long the process waits at exit for queued lines to reach stderr.
const EXIT_FLUSH: Duration = Duration::from_secs(2);

/// The writer of the installed subscriber, for [`dropped_lines`].
static INSTALLED: OnceLock<BatchWriter> = OnceLock::new();

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per event (see the module docs for the fields).
    Json,
}

/// Where stderr goes, as far as log formatting cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// stderr is a terminal: colours are welcome.
    pub terminal: bool,
    /// stderr is a journald stream: no timestamps, syslog priority prefixes.
    pub journal: bool,
}

impl Destination {
    /// Looks at stderr and the environment (`JOURNAL_STREAM`, `NO_COLOR`).
    pub fn detect() -> Self {
        let stderr = std::io::stderr();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        // `st_dev` and `st_ino` are narrower than u64 on some targets.
        #[allow(clippy::unnecessary_cast)]
        let journal = std::env::var("JOURNAL_STREAM").ok().is_some_and(|value| {
            rustix::fs::fstat(&stderr)
                .is_ok_and(|st| journal_stream_is(&value, st.st_dev as u64, st.st_ino as u64))
        });
        Self {
            terminal: stderr.is_terminal() && !no_color,
            journal,
        }
    }
}

/// Whether a `JOURNAL_STREAM` value (`DEVICE:INODE`, as systemd sets it for a
/// service whose output goes to the journal) names the stream with this device and
/// inode. A service whose stderr was redirected elsewhere inherits the variable but
/// not the stream, so both numbers must match.
pub fn journal_stream_is(value: &str, device: u64, inode: u64) -> bool {
    let Some((dev, ino)) = value.trim().split_once(':') else {
        return false;
    };
    dev.parse::<u64>().ok() == Some(device) && ino.parse::<u64>().ok() == Some(inode)
}

/// The syslog priority journald reads from a `<N>` line prefix.
pub fn syslog_priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// Installs the global subscriber writing to stderr through a [`BatchWriter`].
/// `filter` is an `EnvFilter` directive such as `info` or `switchyard=debug` (an
/// invalid one falls back to `info`). Keep the returned [`LogOutput`] until the
/// process ends: dropping it writes out the lines still queued.
pub fn init(format: LogFormat, filter: &str) -> std::io::Result<LogOutput> {
    use tracing_subscriber::util::SubscriberInitExt;
    let writer = BatchWriter::start(
        std::io::stderr(),
        writer::DEFAULT_CAPACITY,
        writer::DEFAULT_LINGER,
    )?;
    let destination = Destination::detect();
    dispatch(format, filter, destination, writer.clone()).init();
    if let Some(shape) = access_shape(format, destination) {
        crate::proxy::attach_sink(Box::new(AccessLines::new(shape, writer.clone())));
    }
    let _ = INSTALLED.set(writer.clone());
    crate::metrics::attach_log_drops(dropped_lines);
    Ok(LogOutput { writer })
}

/// The subscriber [`init`] installs, writing to `writer` and shaped for
/// `destination`; benchmarks and tests build it without installing it.
pub fn dispatch<W>(
    format: LogFormat,
    filter: &str,
    destination: Destination,
    writer: W,
) -> tracing::Dispatch
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(true);
    match format {
        LogFormat::Json => builder
            .with_ansi(false)
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .finish()
            .into(),
        LogFormat::Text if destination.journal => {
            let lines = tracing_subscriber::fmt::format()
                .with_target(true)
                .with_ansi(false)
                .without_time();
            builder
                .with_ansi(false)
                .event_format(SyslogPrefix(lines))
                .finish()
                .into()
        }
        LogFormat::Text => builder.with_ansi(destination.terminal).finish().into(),
    }
}

/// The shape in which [`AccessLines`] writes access lines as [`dispatch`] would
/// for `format` and `destination`; `None` on a terminal, whose coloured lines are
/// left to the formatter.
pub fn access_shape(format: LogFormat, destination: Destination) -> Option<AccessShape> {
    match format {
        LogFormat::Json => Some(AccessShape::Json),
        LogFormat::Text if destination.journal => Some(AccessShape::Journal),
        LogFormat::Text if destination.terminal => None,
        LogFormat::Text => Some(AccessShape::Text),
    }
}

/// Log lines dropped since start because stderr could not keep up (0 before
/// [`init`]).
pub fn dropped_lines() -> u64 {
    INSTALLED.get().map_or(0, BatchWriter::dropped)
}

/// The installed log output. Dropping it (or [`LogOutput::flush`]) writes out the
/// lines still queued, so nothing logged before exit is lost or printed after a
/// final message on stderr.
#[derive(Debug)]
pub struct LogOutput {
    writer: BatchWriter,
}

impl LogOutput {
    /// Waits (bounded) until every line logged so far is on stderr.
    pub fn flush(&self) {
        self.writer.flush(EXIT_FLUSH);
    }
}

impl Drop for LogOutput {
    fn drop(&mut self) {
        self.writer.close(EXIT_FLUSH);
    }
}

/// Prefixes each line with its syslog priority for journald.
struct SyslogPrefix<F>(F);

impl<S, N, F> FormatEvent<S, N> for SyslogPrefix<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        write!(writer, "<{}>", syslog_priority(event.metadata().level()))?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_this_stream() {
        assert!(journal_stream_is("8:12345", 8, 12345));
        assert!(!journal_stream_is("8:12345", 8, 12346));
        assert!(!journal_stream_is("9:12345", 8, 12345));
        assert!(!journal_stream_is("", 8, 12345));
        assert!(!journal_stream_is("8", 8, 12345));
    }

    #[test]
    fn priorities_follow_syslog() {
        assert_eq!(syslog_priority(&Level::ERROR), 3);
        assert_eq!(syslog_priority(&Level::WARN), 4);
        assert_eq!(syslog_priority(&Level::INFO), 6);
        assert_eq!(syslog_priority(&Level::DEBUG), 7);
    }
}
