//! What happened to the proxy lately, in order: health and breaker transitions,
//! operator changes (drain, enable, disable, weight, backends added or removed),
//! route switches and splits, rollout steps, config and plugin reloads. A bounded
//! ring owned by the metrics every layer already holds, read by the admin API's
//! `/events` and the dashboard's timeline.
//!
//! Events are rare next to requests (a transition, a change), so one short lock per
//! event is all they cost; the request path records nothing here except through a
//! breaker transition.

use std::collections::VecDeque;

use parking_lot::Mutex;

/// How many events are kept; older ones are dropped.
pub const CAPACITY: usize = 200;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A backend's active health check changed its verdict.
    Health,
    /// A backend's circuit breaker opened, half-opened or closed.
    Breaker,
    /// An operator changed a backend: drain, enable, disable, weight, added, removed.
    Backend,
    /// A route was switched to a pool or split across pools.
    Switch,
    /// A rollout started, stepped, completed, rolled back or was aborted.
    Rollout,
    /// The config was reloaded or a reload was refused.
    Reload,
    /// A plugin file was swapped in or refused.
    Plugin,
}

impl EventKind {
    /// The name in `/events` (and the dashboard's badge).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Health => "health",
            EventKind::Breaker => "breaker",
            EventKind::Backend => "backend",
            EventKind::Switch => "switch",
            EventKind::Rollout => "rollout",
            EventKind::Reload => "reload",
            EventKind::Plugin => "plugin",
        }
    }
}

/// One thing that happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Increasing from 1, so a reader can tell events it has seen.
    pub id: u64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub kind: EventKind,
    /// Whether it is bad news (a backend down, a breaker open, a refused reload).
    pub warning: bool,
    pub pool: Option<String>,
    /// The backend's key (`ip:port`).
    pub backend: Option<String>,
    /// What happened, in words.
    pub message: String,
}

/// The newest [`CAPACITY`] events.
#[derive(Debug, Default)]
pub struct Timeline {
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    next_id: u64,
    events: VecDeque<Event>,
}

/// What a caller says about an event; the timeline adds the id and the time.
#[derive(Debug, Clone, PartialEq)]
pub struct Happened {
    pub kind: EventKind,
    pub warning: bool,
    pub pool: Option<String>,
    pub backend: Option<String>,
    pub message: String,
}

impl Happened {
    /// An event about the proxy as a whole (a route, a reload, a plugin).
    pub fn new(kind: EventKind, message: impl Into<String>) -> Happened {
        Happened {
            kind,
            warning: false,
            pool: None,
            backend: None,
            message: message.into(),
        }
    }

    /// An event about one backend of a pool.
    pub fn backend(
        kind: EventKind,
        pool: &str,
        backend: &str,
        message: impl Into<String>,
    ) -> Happened {
        Happened {
            pool: Some(pool.to_string()),
            backend: Some(backend.to_string()),
            ..Happened::new(kind, message)
        }
    }

    /// Marks it as bad news.
    pub fn warning(self, warning: bool) -> Happened {
        Happened { warning, ..self }
    }
}

impl Timeline {
    /// Records an event that happened now.
    pub fn record(&self, happened: Happened) {
        self.record_at(unix_ms(), happened);
    }

    /// Records an event that happened at `at_ms` (Unix milliseconds).
    pub fn record_at(&self, at_ms: u64, happened: Happened) {
        let mut ring = self.inner.lock();
        ring.next_id += 1;
        let id = ring.next_id;
        if ring.events.len() == CAPACITY {
            ring.events.pop_front();
        }
        ring.events.push_back(Event {
            id,
            at_ms,
            kind: happened.kind,
            warning: happened.warning,
            pool: happened.pool,
            backend: happened.backend,
            message: happened.message,
        });
    }

    /// The events kept, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.inner.lock().events.iter().cloned().collect()
    }
}

/// Now, in milliseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_events_in_order_with_increasing_ids() {
        let timeline = Timeline::default();
        timeline.record_at(
            5,
            Happened::backend(EventKind::Health, "app", "10.0.0.1:80", "down").warning(true),
        );
        let first = &timeline.events()[0];
        assert_eq!((first.id, first.at_ms, first.warning), (1, 5, true));
        assert_eq!(first.pool.as_deref(), Some("app"));
        for i in 0..CAPACITY as u64 + 5 {
            timeline.record_at(10 + i, Happened::new(EventKind::Reload, format!("#{i}")));
        }
        let events = timeline.events();
        assert_eq!(events.len(), CAPACITY);
        assert_eq!(events[0].id, 7, "the oldest were dropped");
        assert_eq!(events.last().map(|e| e.id), Some(CAPACITY as u64 + 6));
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        assert!(unix_ms() > 1_600_000_000_000);
    }
}
