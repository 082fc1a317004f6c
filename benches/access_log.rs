//! Cost of one access-log line on the thread that serves the request: formatting
//! plus handing the line to the batch writer, written by hand as the proxy does
//! (`*_direct`: text, journal and JSON shapes) and through `tracing`'s formatter
//! (`*_batched`: what the proxy did before, and still does on a terminal), against
//! the same line written synchronously with one `write` per line (to /dev/null, so
//! the figure is the system call alone, not a disk), and against the access log
//! turned off.

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use switchyard::logging::{self, AccessLines, AccessShape, BatchWriter, Destination, LogFormat};
use switchyard::proxy::AccessRecord;

fn record(method: &http::Method) -> AccessRecord<'_> {
    AccessRecord {
        request_id: "4f1c2a9be07d4c55a3c1d2e3f4a5b6c7",
        client: "192.0.2.10:51234".parse().expect("address"),
        method,
        path: "/api/items/42",
        route: "all",
        backend: "127.0.0.1:8081",
        backend_name: Some("alpha"),
        status: 200,
        failure: None,
        tries: None,
        failed_tries: None,
        elapsed: Duration::from_micros(1234),
        outcome: "complete",
    }
}

/// A writer that makes one `write` system call per line, as the log did before it
/// was batched.
#[derive(Clone)]
struct SyncDevNull(std::sync::Arc<std::fs::File>);

impl Write for &SyncDevNull {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for SyncDevNull {
    type Writer = &'a SyncDevNull;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

fn access_line(c: &mut Criterion) {
    let method = http::Method::GET;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .expect("/dev/null");
    let plain = Destination {
        terminal: false,
        journal: false,
    };
    let batched = || {
        BatchWriter::start(
            std::io::sink(),
            logging::writer::DEFAULT_CAPACITY,
            logging::writer::DEFAULT_LINGER,
        )
        .expect("writer thread")
    };
    let cases = [
        (
            "text_batched",
            logging::dispatch(LogFormat::Text, "info", plain, batched()),
        ),
        (
            "json_batched",
            logging::dispatch(LogFormat::Json, "info", plain, batched()),
        ),
        (
            "text_write_per_line",
            logging::dispatch(
                LogFormat::Text,
                "info",
                plain,
                SyncDevNull(std::sync::Arc::new(file)),
            ),
        ),
        (
            "access_log_filtered_out",
            logging::dispatch(LogFormat::Text, "warn", plain, batched()),
        ),
    ];
    let mut group = c.benchmark_group("access_line");
    let info = logging::dispatch(LogFormat::Text, "info", plain, std::io::sink);
    for (name, shape) in [
        ("text_direct", AccessShape::Text),
        ("journal_direct", AccessShape::Journal),
        ("json_direct", AccessShape::Json),
    ] {
        let lines = AccessLines::new(shape, batched());
        tracing::dispatcher::with_default(&info, || {
            group.bench_function(name, |b| {
                b.iter(|| black_box(record(&method)).emit_to(&lines))
            });
        });
    }
    for (name, dispatch) in cases {
        tracing::dispatcher::with_default(&dispatch, || {
            group.bench_function(name, |b| b.iter(|| black_box(record(&method)).emit()));
        });
    }
    group.finish();
}

criterion_group!(benches, access_line);
criterion_main!(benches);
