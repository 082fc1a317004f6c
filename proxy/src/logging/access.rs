//! Access lines written by hand, byte for byte as the `tracing` formatter of the
//! installed log output would write them, without its per-field visitors, `Debug`
//! formatting and style prefixes.
//!
//! A line is formatted into a buffer kept by the thread that serves the request and
//! handed to the [`BatchWriter`] in one piece. The second part of the timestamp is
//! formatted once per second and thread; strings that need no escaping (nearly all
//! of them) are copied as they are, and the rest take the exact escaping routine the
//! `tracing` formatter uses.

use std::cell::RefCell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::writer::BatchWriter;
use crate::proxy::{AccessRecord, AccessSink};

/// The target every access line names.
const TARGET: &str = "switchyard::access";
/// journald's priority prefix for `info` lines.
const INFO_PRIORITY: &[u8] = b"<6>";
/// A line buffer grown beyond this (a long path or list of failed tries) is given
/// back after its line is queued.
const KEEP_LINE_CAPACITY: usize = 16 * 1024;
/// Below this many microseconds, a duration prints as its digits with the decimal
/// point put in by hand; the floating-point formatters print the same digits there
/// (checked by the tests), above it they are asked.
const EXACT_MICROS_BELOW: u128 = 1_000_000_000_000_000;

/// The shape of an access line: that of the log output it joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessShape {
    /// `2026-01-02T03:04:05.123456Z  INFO switchyard::access: request_id="..." ...`
    Text,
    /// The text line for journald: a syslog priority prefix and no timestamp.
    Journal,
    /// One JSON object: `timestamp`, `level`, the fields in order, then `target`.
    Json,
}

/// An [`AccessSink`] that formats lines in one [`AccessShape`] and queues them on
/// the log output's [`BatchWriter`].
#[derive(Debug)]
pub struct AccessLines {
    shape: AccessShape,
    writer: BatchWriter,
}

impl AccessLines {
    /// Lines in `shape`, queued on `writer`.
    pub fn new(shape: AccessShape, writer: BatchWriter) -> Self {
        Self { shape, writer }
    }
}

thread_local! {
    /// The serving thread's line buffer and timestamp cache.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

impl AccessSink for AccessLines {
    fn write(&self, record: &AccessRecord<'_>) {
        SCRATCH.with_borrow_mut(|scratch| {
            let Scratch { line, stamp } = scratch;
            line.clear();
            let now = match self.shape {
                AccessShape::Journal => None,
                AccessShape::Text | AccessShape::Json => Some(SystemTime::now()),
            };
            format_line(self.shape, record, now, stamp, line);
            self.writer.append(line);
            if line.capacity() > KEEP_LINE_CAPACITY {
                *line = Vec::new();
            }
        });
    }
}

/// What a thread keeps between its access lines.
#[derive(Default)]
struct Scratch {
    line: Vec<u8>,
    stamp: SecondStamp,
}

/// `YYYY-MM-DDTHH:MM:SS` of the last second a timestamp was formatted in.
#[derive(Default)]
struct SecondStamp {
    second: Option<u64>,
    text: Vec<u8>,
}

/// Appends the line of `record` in `shape` to `out`, stamped `now` (unused by the
/// journal shape, which has no timestamp).
fn format_line(
    shape: AccessShape,
    record: &AccessRecord<'_>,
    now: Option<SystemTime>,
    stamp: &mut SecondStamp,
    out: &mut Vec<u8>,
) {
    match shape {
        AccessShape::Text => {
            write_timestamp(out, now.unwrap_or_else(SystemTime::now), stamp);
            out.extend_from_slice(b"  INFO ");
            text_fields(record, out);
        }
        AccessShape::Journal => {
            out.extend_from_slice(INFO_PRIORITY);
            out.extend_from_slice(b" INFO ");
            text_fields(record, out);
        }
        AccessShape::Json => json_line(record, now.unwrap_or_else(SystemTime::now), stamp, out),
    }
}

/// The text line from the target on: `switchyard::access: name=value ...`, values
/// as the `tracing` formatter prints them (strings quoted and escaped as `Debug`
/// does, addresses and methods as they display, numbers bare).
fn text_fields(r: &AccessRecord<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(TARGET.as_bytes());
    out.push(b':');
    fields(r, Notation::Debug, out);
    out.push(b'\n');
}

/// The JSON line: the fields in the order the text line has them, between the
/// timestamp and level and the target, as the flattened `tracing` JSON format puts
/// them.
fn json_line(r: &AccessRecord<'_>, now: SystemTime, stamp: &mut SecondStamp, out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    write_timestamp(out, now, stamp);
    out.extend_from_slice(b"\",\"level\":\"INFO\"");
    fields(r, Notation::Json, out);
    out.extend_from_slice(b",\"target\":\"");
    out.extend_from_slice(TARGET.as_bytes());
    out.extend_from_slice(b"\"}\n");
}

/// The record's fields in their one order, each preceded by its key as `notation`
/// writes keys (` name=` or `,"name":`); the optional ones only when present.
fn fields(r: &AccessRecord<'_>, notation: Notation, out: &mut Vec<u8>) {
    let mut field = Field { notation, out };
    field.string("request_id", r.request_id);
    field.key("client");
    field.displayed(|out| socket_addr(out, r.client));
    field.key("method");
    field.displayed(|out| out.extend_from_slice(r.method.as_str().as_bytes()));
    field.string("path", r.path);
    field.string("route", r.route);
    field.string("backend", r.backend);
    if let Some(name) = r.backend_name {
        field.string("backend_name", name);
    }
    field.key("status");
    integer(field.out, r.status);
    if let Some(failure) = r.failure {
        field.string("failure", failure);
    }
    if let Some(tries) = r.tries {
        field.key("tries");
        integer(field.out, tries);
    }
    if let Some(failed) = r.failed_tries {
        field.string("failed_tries", failed);
    }
    field.key("duration_ms");
    millis(field.out, r.elapsed, notation);
    field.string("outcome", r.outcome);
}

/// Writes keys and values of one line in one notation.
struct Field<'a> {
    notation: Notation,
    out: &'a mut Vec<u8>,
}

impl Field<'_> {
    /// ` name=` or `,"name":`.
    fn key(&mut self, name: &str) {
        match self.notation {
            Notation::Debug => {
                self.out.push(b' ');
                self.out.extend_from_slice(name.as_bytes());
                self.out.push(b'=');
            }
            Notation::Json => {
                self.out.extend_from_slice(b",\"");
                self.out.extend_from_slice(name.as_bytes());
                self.out.extend_from_slice(b"\":");
            }
        }
    }

    /// A string field: `Debug`-quoted in text, a JSON string in JSON.
    fn string(&mut self, name: &str, value: &str) {
        self.key(name);
        match self.notation {
            Notation::Debug => debug_str(self.out, value),
            Notation::Json => json_str(self.out, value),
        }
    }

    /// A value printed through `Display` (needing no escaping): bare in text,
    /// between quotes in JSON.
    fn displayed(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        let quoted = matches!(self.notation, Notation::Json);
        if quoted {
            self.out.push(b'"');
        }
        write(self.out);
        if quoted {
            self.out.push(b'"');
        }
    }
}

/// RFC 3339 in UTC to the microsecond, `2026-01-02T03:04:05.123456Z`, as the
/// `tracing` formatter's system-time timer prints it.
fn write_timestamp(out: &mut Vec<u8>, now: SystemTime, stamp: &mut SecondStamp) {
    let Ok(since_epoch) = now.duration_since(UNIX_EPOCH) else {
        // Before 1970: not worth a cache.
        date_time(out, now);
        let _ = write!(
            out,
            ".{:06}Z",
            time::OffsetDateTime::from(now).microsecond()
        );
        return;
    };
    let second = since_epoch.as_secs();
    if stamp.second != Some(second) {
        stamp.text.clear();
        date_time(&mut stamp.text, UNIX_EPOCH + Duration::from_secs(second));
        stamp.second = Some(second);
    }
    out.extend_from_slice(&stamp.text);
    out.push(b'.');
    let micros = since_epoch.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS` of `at` in UTC (a year past 9999 gets a `+`, one before
/// year 0 a `-`, as in the `tracing` timer).
fn date_time(out: &mut Vec<u8>, at: SystemTime) {
    let at = time::OffsetDateTime::from(at);
    let year = at.year();
    let _ = if year > 9999 {
        write!(out, "+{year}")
    } else if year < 0 {
        write!(out, "{year:05}")
    } else {
        write!(out, "{year:04}")
    };
    let _ = write!(
        out,
        "-{:02}-{:02}T{:02}:{:02}:{:02}",
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
}

/// `value` in decimal.
fn integer(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `addr` as it displays: `1.2.3.4:5`, `[::1]:5`.
fn socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            let mut digits = itoa::Buffer::new();
            for (i, octet) in v4.ip().octets().into_iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                out.extend_from_slice(digits.format(octet).as_bytes());
            }
            out.push(b':');
            out.extend_from_slice(digits.format(v4.port()).as_bytes());
        }
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{v6}");
        }
    }
}

/// `s` as `{:?}` prints it: quoted, with `"`, `\` and what is not printable ASCII
/// escaped.
fn debug_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// `s` as a JSON string, as serde_json writes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// The notation of a line's fields: the text formatter's (`Debug` for strings and
/// floats) or the JSON formatter's (serde_json's).
#[derive(Clone, Copy)]
enum Notation {
    /// `{:?}`, as the text formatter prints string and `f64` fields.
    Debug,
    /// serde_json's, as the JSON formatter prints them.
    Json,
}

/// `elapsed` in milliseconds to the microsecond, as the access line's `f64`
/// `duration_ms` ([`crate::clock::millis`]) prints: at least one decimal, at most
/// three (`0.0`, `1.5`, `12.034`).
fn millis(out: &mut Vec<u8>, elapsed: Duration, notation: Notation) {
    let micros = elapsed.as_micros();
    if micros >= EXACT_MICROS_BELOW {
        let ms = crate::clock::millis(elapsed);
        let _ = match notation {
            Notation::Debug => write!(out, "{ms:?}"),
            Notation::Json => serde_json::to_writer(&mut *out, &ms).map_err(std::io::Error::other),
        };
        return;
    }
    let whole = (micros / 1000) as u64;
    let fraction = (micros % 1000) as u16;
    integer(out, whole);
    out.push(b'.');
    if fraction == 0 {
        out.push(b'0');
        return;
    }
    let digits = [
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ];
    let len = digits
        .iter()
        .rposition(|&d| d != b'0')
        .map_or(1, |last| last + 1);
    out.extend_from_slice(&digits[..len]);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use parking_lot::Mutex;

    use super::*;
    use crate::logging::{Destination, LogFormat, dispatch};

    /// Where a reference subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn plain(journal: bool) -> Destination {
        Destination {
            terminal: false,
            journal,
        }
    }

    /// The line the `tracing` formatter writes for `record`.
    fn traced(format: LogFormat, destination: Destination, record: &AccessRecord<'_>) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = dispatch(format, "info", destination, move || writer.clone());
        tracing::dispatcher::with_default(&subscriber, || record.emit_traced());
        String::from_utf8(captured.0.lock().clone()).expect("utf-8")
    }

    /// The line [`AccessLines`] writes for `record` at `now`.
    fn direct(shape: AccessShape, record: &AccessRecord<'_>, now: SystemTime) -> String {
        let mut out = Vec::new();
        format_line(
            shape,
            record,
            Some(now),
            &mut SecondStamp::default(),
            &mut out,
        );
        String::from_utf8(out).expect("utf-8")
    }

    /// Asserts the direct line equals the traced one byte for byte. The traced line
    /// reads the clock itself, so its timestamp (found by `stamp_at`) must lie
    /// between the direct line's stamped just before and just after it.
    fn assert_same(
        format: LogFormat,
        destination: Destination,
        shape: AccessShape,
        record: &AccessRecord<'_>,
        stamp_at: Option<usize>,
    ) {
        let before = SystemTime::now();
        let reference = traced(format, destination, record);
        let after = SystemTime::now();
        let (early, late) = (direct(shape, record, before), direct(shape, record, after));
        assert!(reference.ends_with('\n') && reference.matches('\n').count() == 1);
        let Some(at) = stamp_at else {
            assert_eq!(early, reference);
            return;
        };
        let stamp = at..at + "2026-01-02T03:04:05.123456Z".len();
        assert_eq!(early[..at], reference[..at], "{reference}");
        assert_eq!(early[stamp.end..], reference[stamp.end..], "{reference}");
        assert!(
            early[stamp.clone()] <= reference[stamp.clone()]
                && reference[stamp.clone()] <= late[stamp.clone()],
            "{early}{reference}{late}"
        );
    }

    fn assert_same_in_every_shape(record: &AccessRecord<'_>) {
        let json_stamp = "{\"timestamp\":\"".len();
        assert_same(
            LogFormat::Text,
            plain(false),
            AccessShape::Text,
            record,
            Some(0),
        );
        assert_same(
            LogFormat::Text,
            plain(true),
            AccessShape::Journal,
            record,
            None,
        );
        assert_same(
            LogFormat::Json,
            plain(false),
            AccessShape::Json,
            record,
            Some(json_stamp),
        );
        // JSON keeps its timestamp under the journal.
        assert_same(
            LogFormat::Json,
            plain(true),
            AccessShape::Json,
            record,
            Some(json_stamp),
        );
    }

    fn full_record(method: &http::Method) -> AccessRecord<'_> {
        AccessRecord {
            request_id: "4f1c2a9be07d4c55a3c1d2e3f4a5b6c7",
            client: "192.0.2.10:51234".parse().expect("address"),
            method,
            path: "/api/items/42",
            route: "all",
            backend: "127.0.0.1:8081",
            backend_name: Some("alpha"),
            status: 502,
            failure: Some("refused"),
            tries: Some(3),
            failed_tries: Some("127.0.0.1:8082 (bravo): refused; 127.0.0.1:8083: 500"),
            elapsed: Duration::from_micros(1234),
            outcome: "complete",
        }
    }

    #[test]
    fn direct_lines_equal_the_traced_ones_with_every_field() {
        let method = http::Method::GET;
        assert_same_in_every_shape(&full_record(&method));
    }

    #[test]
    fn direct_lines_equal_the_traced_ones_without_the_optional_fields() {
        let method = http::Method::from_bytes(b"PURGE").expect("method");
        let record = AccessRecord {
            backend: "-",
            backend_name: None,
            route: "-",
            status: 404,
            failure: None,
            tries: None,
            failed_tries: None,
            elapsed: Duration::ZERO,
            outcome: "client-aborted",
            ..full_record(&method)
        };
        assert_same_in_every_shape(&record);
    }

    #[test]
    fn direct_lines_escape_strings_and_print_addresses_as_traced_ones_do() {
        let method = http::Method::POST;
        for path in [
            "/a\"quoted\"/b\\c",
            "/tab\there/new\nline/esc\u{1b}[31m/del\u{7f}",
            "/caf\u{e9}/\u{2028}/\u{301}combining/\u{80}c1",
            "/it's",
        ] {
            for client in [
                "[::1]:8080",
                "[fe80::1%3]:1",
                "0.0.0.0:0",
                "255.255.255.255:65535",
            ] {
                let record = AccessRecord {
                    path,
                    request_id: path,
                    client: client.parse().expect("address"),
                    ..full_record(&method)
                };
                assert_same_in_every_shape(&record);
            }
        }
    }

    #[test]
    fn durations_print_as_the_floating_point_formatters_print_them() {
        let method = http::Method::GET;
        for micros in [
            0,
            1,
            10,
            100,
            999,
            1000,
            1001,
            1010,
            1100,
            60_000_000,
            3_600_000_123,
        ] {
            let record = AccessRecord {
                elapsed: Duration::from_micros(micros),
                ..full_record(&method)
            };
            assert_same_in_every_shape(&record);
        }
        let mut samples: Vec<u128> = (0..300_000).collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200_000 {
            // xorshift: spread over every magnitude up to the hand-formatted limit.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            samples.push(u128::from(x >> (x % 64)) % EXACT_MICROS_BELOW);
        }
        samples.extend([
            EXACT_MICROS_BELOW - 1,
            EXACT_MICROS_BELOW,
            EXACT_MICROS_BELOW * 7 + 1,
        ]);
        let mut out = Vec::new();
        for micros in samples {
            let elapsed = Duration::from_micros(micros as u64);
            let ms = crate::clock::millis(elapsed);
            out.clear();
            millis(&mut out, elapsed, Notation::Debug);
            assert_eq!(out, format!("{ms:?}").as_bytes(), "{micros} us");
            out.clear();
            millis(&mut out, elapsed, Notation::Json);
            assert_eq!(out, serde_json::to_vec(&ms).expect("json"), "{micros} us");
        }
    }

    #[test]
    fn timestamps_are_those_of_the_tracing_timer() {
        use tracing_subscriber::fmt::format::Writer;
        use tracing_subscriber::fmt::time::FormatTime;
        let mut stamp = SecondStamp::default();
        for _ in 0..1000 {
            let before = SystemTime::now();
            let mut reference = String::new();
            tracing_subscriber::fmt::time::SystemTime
                .format_time(&mut Writer::new(&mut reference))
                .expect("time");
            let after = SystemTime::now();
            let (mut early, mut late) = (Vec::new(), Vec::new());
            write_timestamp(&mut early, before, &mut stamp);
            write_timestamp(&mut late, after, &mut stamp);
            let (early, late) = (
                String::from_utf8(early).unwrap(),
                String::from_utf8(late).unwrap(),
            );
            assert!(
                early <= reference && reference <= late,
                "{early} {reference} {late}"
            );
        }
        // Fixed points, from `date -u -d @SECONDS +%FT%T`.
        for (seconds, micros, text) in [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (951_782_400, 7, "2000-02-29T00:00:00.000007Z"),
            (1_798_761_599, 999_999, "2026-12-31T23:59:59.999999Z"),
            (4_107_542_400, 120_000, "2100-03-01T00:00:00.120000Z"),
        ] {
            let at = UNIX_EPOCH + Duration::from_secs(seconds) + Duration::from_micros(micros);
            let mut out = Vec::new();
            write_timestamp(&mut out, at, &mut stamp);
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn the_journal_prefix_is_the_info_priority() {
        assert_eq!(
            INFO_PRIORITY,
            format!(
                "<{}>",
                crate::logging::syslog_priority(&tracing::Level::INFO)
            )
            .as_bytes()
        );
    }

    #[test]
    fn nothing_is_formatted_or_written_when_the_access_target_is_filtered_out() {
        let method = http::Method::GET;
        let record = full_record(&method);
        for (filter, written) in [
            ("info", true),
            ("warn", false),
            ("info,switchyard::access=off", false),
            ("warn,switchyard::access=info", true),
        ] {
            let captured = Captured::default();
            let sink_out = captured.clone();
            let writer = BatchWriter::start(sink_out, 1 << 20, Duration::ZERO).expect("writer");
            let lines = AccessLines::new(AccessShape::Text, writer.clone());
            let subscriber = dispatch(LogFormat::Text, filter, plain(false), std::io::sink);
            tracing::dispatcher::with_default(&subscriber, || record.emit_to(&lines));
            assert!(writer.close(Duration::from_secs(10)));
            let text = String::from_utf8(captured.0.lock().clone()).expect("utf-8");
            assert_eq!(
                text.contains("switchyard::access: "),
                written,
                "{filter}: {text}"
            );
        }
    }
}
