//! HTTP/2 abuse limits that cost an attacker its connection rather than the proxy
//! its CPU. hyper and the h2 crate already bound concurrent streams, resets of
//! streams not yet accepted (rapid reset), CONTINUATION frames per header block and
//! the decoded header list; this meter watches the client's frame stream for the
//! floods they answer one frame at a time (PING, SETTINGS, RST_STREAM, PRIORITY,
//! empty DATA, CONTINUATION) and ends the connection when one goes over its budget.
//!
//! Budgets are token buckets per connection: a burst, refilled at a steady rate,
//! far above what browsers, gRPC clients or load balancers send. A header block
//! (HEADERS and its CONTINUATIONs) whose encoded size alone is over the header size
//! limit ends the connection too: its decoded list can only be larger.

/// The client preface that starts every HTTP/2 connection (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const FRAME_HEADER: usize = 9;
const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const PRIORITY: u8 = 0x2;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const CONTINUATION: u8 = 0x9;
const FLAG_ACK: u8 = 0x1;
const FLAG_END_STREAM: u8 = 0x1;
const FLAG_END_HEADERS: u8 = 0x4;

/// CONTINUATION frames allowed in one header block. A backstop: the h2 crate allows
/// only a few more frames than the header list size needs (5 at the defaults).
pub const MAX_CONTINUATIONS: u32 = 32;

/// A flood that ended a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Flood {
    #[error("HTTP/2 PING flood")]
    Ping,
    #[error("HTTP/2 SETTINGS flood")]
    Settings,
    #[error("HTTP/2 RST_STREAM flood (rapid reset)")]
    Reset,
    #[error("HTTP/2 PRIORITY flood")]
    Priority,
    #[error("HTTP/2 empty DATA frame flood")]
    EmptyData,
    #[error("HTTP/2 CONTINUATION flood")]
    Continuation,
    #[error("HTTP/2 header block larger than the header size limit")]
    HeaderBlock,
}

impl Flood {
    const ALL: [Flood; 7] = [
        Flood::Ping,
        Flood::Settings,
        Flood::Reset,
        Flood::Priority,
        Flood::EmptyData,
        Flood::Continuation,
        Flood::HeaderBlock,
    ];

    /// A small code for an atomic (0 is "none").
    pub(super) fn code(self) -> u8 {
        Self::ALL
            .iter()
            .position(|f| *f == self)
            .map_or(0, |i| i as u8 + 1)
    }

    /// The flood with this code.
    pub(super) fn from_code(code: u8) -> Option<Flood> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// The `reason` label of `switchyard_client_errors_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Flood::Ping => "h2_ping_flood",
            Flood::Settings => "h2_settings_flood",
            Flood::Reset => "h2_reset_flood",
            Flood::Priority => "h2_priority_flood",
            Flood::EmptyData => "h2_empty_data_flood",
            Flood::Continuation => "h2_continuation_flood",
            Flood::HeaderBlock => "h2_header_block_too_large",
        }
    }
}

/// A token bucket: `burst` frames at once, `per_second` more each second.
#[derive(Debug)]
struct Budget {
    burst: u64,
    per_second: u64,
    /// Tokens in thousandths, so slow refill rates stay exact.
    milli_tokens: u64,
    last_ms: u64,
}

impl Budget {
    const fn new(burst: u64, per_second: u64) -> Self {
        Self {
            burst,
            per_second,
            milli_tokens: burst * 1000,
            last_ms: 0,
        }
    }

    fn take(&mut self, now_ms: u64) -> bool {
        if self.last_ms != 0 {
            let elapsed = now_ms.saturating_sub(self.last_ms);
            self.milli_tokens =
                (self.milli_tokens + elapsed * self.per_second).min(self.burst * 1000);
        }
        self.last_ms = now_ms;
        if self.milli_tokens < 1000 {
            return false;
        }
        self.milli_tokens -= 1000;
        true
    }
}

/// PINGs a client may send (acks excluded): a burst, then per second. gRPC and
/// browsers send a handful per minute.
pub const PING_BUDGET: (u64, u64) = (20, 5);
/// SETTINGS frames a client may send (acks excluded): a burst, then per second.
pub const SETTINGS_BUDGET: (u64, u64) = (10, 1);
/// Streams a client may reset (rapid reset): a burst, then per second.
pub const RESET_BUDGET: (u64, u64) = (200, 50);
/// PRIORITY frames (deprecated, and a known flood): a burst, then per second.
pub const PRIORITY_BUDGET: (u64, u64) = (100, 50);
/// DATA frames with no data and no END_STREAM: a burst, then per second.
pub const EMPTY_DATA_BUDGET: (u64, u64) = (100, 50);

/// Follows the frames a client sends (after the preface) and spends their budgets.
#[derive(Debug)]
pub struct FrameMeter {
    header: [u8; FRAME_HEADER],
    header_len: usize,
    payload_left: usize,
    continuations: u32,
    /// Encoded bytes of the header block being received.
    block_bytes: usize,
    max_block_bytes: usize,
    ping: Budget,
    settings: Budget,
    reset: Budget,
    priority: Budget,
    empty_data: Budget,
}

impl FrameMeter {
    /// A meter for a connection whose header lists may be `max_block_bytes` long.
    pub fn new(max_block_bytes: usize) -> Self {
        Self {
            header: [0; FRAME_HEADER],
            header_len: 0,
            payload_left: 0,
            continuations: 0,
            block_bytes: 0,
            max_block_bytes,
            ping: Budget::new(PING_BUDGET.0, PING_BUDGET.1),
            settings: Budget::new(SETTINGS_BUDGET.0, SETTINGS_BUDGET.1),
            reset: Budget::new(RESET_BUDGET.0, RESET_BUDGET.1),
            priority: Budget::new(PRIORITY_BUDGET.0, PRIORITY_BUDGET.1),
            empty_data: Budget::new(EMPTY_DATA_BUDGET.0, EMPTY_DATA_BUDGET.1),
        }
    }

    /// Feeds bytes read from the client (frames only, the preface already removed).
    pub fn feed(&mut self, mut bytes: &[u8], now_ms: u64) -> Result<(), Flood> {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == FRAME_HEADER {
                self.header_len = 0;
                let h = self.header;
                let length = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
                self.payload_left = length;
                self.frame(h[3], h[4], length, now_ms)?;
            }
        }
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8, length: usize, now_ms: u64) -> Result<(), Flood> {
        let spend = |budget: &mut Budget, flood| {
            if budget.take(now_ms) {
                Ok(())
            } else {
                Err(flood)
            }
        };
        match kind {
            PING if flags & FLAG_ACK == 0 => spend(&mut self.ping, Flood::Ping),
            SETTINGS if flags & FLAG_ACK == 0 => spend(&mut self.settings, Flood::Settings),
            RST_STREAM => spend(&mut self.reset, Flood::Reset),
            PRIORITY => spend(&mut self.priority, Flood::Priority),
            DATA if length == 0 && flags & FLAG_END_STREAM == 0 => {
                spend(&mut self.empty_data, Flood::EmptyData)
            }
            HEADERS => {
                self.continuations = 0;
                self.block(length, flags)
            }
            CONTINUATION => {
                self.continuations += 1;
                if self.continuations > MAX_CONTINUATIONS {
                    return Err(Flood::Continuation);
                }
                self.block(length, flags)
            }
            _ => Ok(()),
        }
    }
}

impl FrameMeter {
    /// Adds a header block fragment; the block ends with END_HEADERS.
    fn block(&mut self, length: usize, flags: u8) -> Result<(), Flood> {
        self.block_bytes += length;
        if self.block_bytes > self.max_block_bytes {
            return Err(Flood::HeaderBlock);
        }
        if flags & FLAG_END_HEADERS != 0 {
            self.block_bytes = 0;
            self.continuations = 0;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut f = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn pings_within_budget_pass_and_a_flood_trips() {
        let mut m = FrameMeter::new(64 * 1024);
        let ping = frame(PING, 0, &[0; 8]);
        for _ in 0..PING_BUDGET.0 {
            assert_eq!(m.feed(&ping, 1000), Ok(()));
        }
        assert_eq!(m.feed(&ping, 1000), Err(Flood::Ping));
        // Acks are the client answering our pings: never counted.
        let mut m = FrameMeter::new(64 * 1024);
        for _ in 0..1000 {
            assert_eq!(m.feed(&frame(PING, FLAG_ACK, &[0; 8]), 1000), Ok(()));
        }
    }

    #[test]
    fn budgets_refill_over_time() {
        let mut m = FrameMeter::new(64 * 1024);
        let settings = frame(SETTINGS, 0, &[]);
        for i in 0..100u64 {
            // One SETTINGS per second is within the refill rate.
            assert_eq!(m.feed(&settings, 1 + i * 1000), Ok(()), "{i}");
        }
    }

    #[test]
    fn frames_split_across_reads_are_followed() {
        let mut m = FrameMeter::new(64 * 1024);
        let mut stream = Vec::new();
        for _ in 0..3 {
            stream.extend(frame(DATA, 0, &[7; 100]));
            stream.extend(frame(RST_STREAM, 0, &[0; 4]));
        }
        for chunk in stream.chunks(5) {
            m.feed(chunk, 1).unwrap();
        }
        assert_eq!(m.header_len, 0);
        assert_eq!(m.payload_left, 0);
    }

    #[test]
    fn a_header_block_over_the_limit_trips() {
        let mut m = FrameMeter::new(1000);
        m.feed(&frame(HEADERS, FLAG_END_HEADERS, &[0; 900]), 1)
            .unwrap();
        m.feed(&frame(HEADERS, 0, &[0; 600]), 1).unwrap();
        assert_eq!(
            m.feed(&frame(CONTINUATION, 0, &[0; 600]), 1),
            Err(Flood::HeaderBlock)
        );
    }

    #[test]
    fn long_continuation_runs_trip() {
        let mut m = FrameMeter::new(64 * 1024);
        m.feed(&frame(HEADERS, 0, &[0; 3]), 1).unwrap();
        for _ in 0..MAX_CONTINUATIONS {
            m.feed(&frame(CONTINUATION, 0, &[0]), 1).unwrap();
        }
        assert_eq!(
            m.feed(&frame(CONTINUATION, 0, &[0]), 1),
            Err(Flood::Continuation)
        );
    }
}
