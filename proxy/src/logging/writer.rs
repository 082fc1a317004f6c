//! A log writer that never makes a request wait for stderr.
//!
//! The thread that logs formats its line and appends it to a shared buffer under a
//! short lock; one writer thread takes the whole buffer and writes it to stderr in a
//! single call, then lingers a few milliseconds so the next lines gather into the next
//! batch. A thread that logs makes no system call, except to wake the writer when it
//! was asleep for lack of lines (at most once per batch). When stderr cannot keep up
//! (a full pipe, a slow journal), a line that does not fit in the buffer is dropped and
//! counted instead of stalling the request that logged it.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tracing_subscriber::fmt::MakeWriter;

/// Bytes of log lines waiting for stderr, beyond which new lines are dropped.
pub const DEFAULT_CAPACITY: usize = 4 * 1024 * 1024;
/// How long the writer lets lines gather after writing a batch.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(10);
/// A batch buffer grown beyond this by a burst is given back after it is written.
const KEEP_CAPACITY: usize = 256 * 1024;
/// At most one "lines dropped" warning this often.
const DROP_REPORT_EVERY: Duration = Duration::from_secs(10);

/// Queues formatted lines for the writer thread; cheap to clone.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter")
            .field("capacity", &self.shared.capacity)
            .field("dropped", &self.dropped())
            .finish()
    }
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: a first line after a quiet spell, a flush, or closing.
    wake: Condvar,
    /// Tells flushers that everything queued so far has been written.
    drained: Condvar,
    dropped: AtomicU64,
    capacity: usize,
}

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The writer sleeps until a line arrives: the next line must wake it.
    idle: bool,
    /// The writer is writing a batch taken from `pending`.
    writing: bool,
    /// Someone waits in [`BatchWriter::flush`]: write without lingering.
    flushing: usize,
    closing: bool,
}

impl BatchWriter {
    /// Starts the writer thread over `sink`, holding at most `capacity` bytes of
    /// lines and lingering `linger` after each batch.
    pub fn start(
        sink: impl Write + Send + 'static,
        capacity: usize,
        linger: Duration,
    ) -> io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            drained: Condvar::new(),
            dropped: AtomicU64::new(0),
            capacity,
        });
        let worker = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("switchyard-log".into())
            .spawn(move || worker.run(sink, linger))?;
        Ok(Self { shared })
    }

    /// Queues one formatted line (or several); drops it whole when the buffer is full.
    pub fn append(&self, line: &[u8]) {
        let shared = &*self.shared;
        let mut state = shared.state.lock();
        if state.pending.len() + line.len() > shared.capacity {
            drop(state);
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        state.pending.extend_from_slice(line);
        if std::mem::take(&mut state.idle) {
            shared.wake.notify_one();
        }
    }

    /// Lines dropped so far because the buffer was full or stderr failed.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Waits (at most `timeout`) until every line queued before the call is written.
    /// Returns whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let shared = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut state = shared.state.lock();
        state.flushing += 1;
        state.idle = false;
        shared.wake.notify_one();
        let done = loop {
            if state.pending.is_empty() && !state.writing {
                break true;
            }
            if shared.drained.wait_until(&mut state, deadline).timed_out() {
                break state.pending.is_empty() && !state.writing;
            }
        };
        state.flushing -= 1;
        done
    }

    /// Writes what is queued (within `timeout`) and stops the writer thread; lines
    /// appended afterwards are dropped.
    pub fn close(&self, timeout: Duration) -> bool {
        let flushed = self.flush(timeout);
        let mut state = self.shared.state.lock();
        state.closing = true;
        self.shared.wake.notify_one();
        flushed
    }
}

impl Shared {
    fn run(&self, mut sink: impl Write, linger: Duration) {
        let mut batch = Vec::new();
        let mut reported = 0;
        let mut last_report: Option<Instant> = None;
        loop {
            {
                let mut state = self.state.lock();
                while state.pending.is_empty() {
                    self.drained.notify_all();
                    if state.closing {
                        return;
                    }
                    state.idle = true;
                    self.wake.wait(&mut state);
                }
                state.idle = false;
                state.writing = true;
                std::mem::swap(&mut state.pending, &mut batch);
            }
            if sink.write_all(&batch).and_then(|()| sink.flush()).is_err() {
                let lines = batch.iter().filter(|&&b| b == b'\n').count().max(1);
                self.dropped.fetch_add(lines as u64, Ordering::Relaxed);
            }
            batch.clear();
            if batch.capacity() > KEEP_CAPACITY {
                batch = Vec::new();
            }
            let mut state = self.state.lock();
            state.writing = false;
            if state.pending.is_empty() {
                self.drained.notify_all();
            }
            // Let lines gather: nobody wakes a lingering writer except a flush.
            if state.flushing == 0 && !state.closing && !linger.is_zero() {
                let _ = self.wake.wait_for(&mut state, linger);
            }
            drop(state);

            let dropped = self.dropped.load(Ordering::Relaxed);
            if dropped > reported && last_report.is_none_or(|at| at.elapsed() >= DROP_REPORT_EVERY)
            {
                tracing::warn!(
                    dropped = dropped - reported,
                    total = dropped,
                    "log lines dropped: stderr could not keep up"
                );
                reported = dropped;
                last_report = Some(Instant::now());
            }
        }
    }
}

/// One `write` of the formatter: appended whole, or dropped whole.
pub struct LineWriter<'a> {
    writer: &'a BatchWriter,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.append(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.writer.append(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter { writer: self }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A sink whose writes wait until the test lets them through.
    struct Gate {
        out: Arc<Mutex<Vec<u8>>>,
        open: mpsc::Receiver<()>,
        gated: bool,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.gated {
                let _ = self.open.recv();
                self.gated = false;
            }
            self.out.lock().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn gated(capacity: usize) -> (BatchWriter, Arc<Mutex<Vec<u8>>>, mpsc::Sender<()>) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let (open, gate) = mpsc::channel();
        let sink = Gate {
            out: Arc::clone(&out),
            open: gate,
            gated: true,
        };
        let writer = BatchWriter::start(sink, capacity, Duration::from_millis(1)).unwrap();
        (writer, out, open)
    }

    #[test]
    fn lines_arrive_whole_and_in_order() {
        let (writer, out, open) = gated(1 << 20);
        open.send(()).unwrap();
        for i in 0..1000 {
            writer.append(format!("line {i}\n").as_bytes());
        }
        assert!(writer.flush(Duration::from_secs(10)));
        let text = String::from_utf8(out.lock().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1000);
        for (i, line) in lines.iter().enumerate() {
            assert_eq!(*line, format!("line {i}"));
        }
        assert_eq!(writer.dropped(), 0);
    }

    #[test]
    fn a_stalled_sink_drops_and_counts_lines_without_blocking_the_caller() {
        // The first line wakes the writer, which then blocks in the sink: every
        // later line waits in the buffer until it is full.
        let (writer, out, open) = gated(100);
        writer.append(b"first\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !writer.shared.state.lock().writing {
            assert!(
                Instant::now() < deadline,
                "the writer never took the first line"
            );
            std::thread::yield_now();
        }
        let started = Instant::now();
        let line = [b'x'; 9];
        for _ in 0..50 {
            writer.append(&[&line[..], b"\n"].concat());
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "appending never waits for the sink"
        );
        // 100 bytes hold ten 10-byte lines; the other forty are dropped.
        assert_eq!(writer.dropped(), 40);
        open.send(()).unwrap();
        assert!(writer.flush(Duration::from_secs(10)));
        let text = String::from_utf8(out.lock().clone()).unwrap();
        assert_eq!(text.lines().count(), 11, "{text}");
        assert!(text.starts_with("first\n"));
    }

    #[test]
    fn close_writes_what_is_queued_then_stops() {
        let (writer, out, open) = gated(1 << 20);
        open.send(()).unwrap();
        writer.append(b"last words\n");
        assert!(writer.close(Duration::from_secs(10)));
        assert_eq!(&*out.lock(), b"last words\n");
    }
}
