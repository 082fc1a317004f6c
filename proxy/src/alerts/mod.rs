//! Alerts where operators already look: webhooks in Alertmanager's webhook format
//! (`[[alert]]`), so whatever takes Alertmanager's notifications (a Slack, Teams or
//! PagerDuty relay, a ticket bridge) takes them as they are.
//!
//! Anything may raise an [`AlertEvent`] through the cheap, cloneable [`Alerts`]
//! handle; raising never blocks and never waits on a receiver (a full queue drops
//! the event and counts it). Conditions (a backend down, a breaker open, a pool
//! with no usable backend, a failover, a quarantined plugin) are watched off the
//! request path by [`watch`], which raises the alert when they begin and resolves
//! it when they end; one-off incidents (a rollout rolled back, a plugin or config
//! refused on reload) are raised where they happen.
//!
//! The dispatcher groups alerts per receiver by `group_by` labels, waits
//! `group_wait` before a new group's first notification, `group_interval` between
//! updates of a group, repeats still-firing groups every `repeat_interval`, and
//! never sends the same alert in the same state twice in a row. Each receiver has a
//! bounded queue and one delivery task that retries with exponential backoff; what
//! it gives up on is counted in `switchyard_alerts_dropped_total`, what arrives in
//! `switchyard_alerts_sent_total`.

mod deliver;
mod dispatch;
mod event;
mod payload;
mod watch;

use std::sync::Arc;

use tokio::sync::{mpsc, watch as channel};
use tokio_util::sync::CancellationToken;

use crate::config::AlertConfig;
use crate::metrics::Metrics;

pub use event::{Alert, AlertEvent, AlertState, Settings};
pub use watch::watch;

/// Events waiting for the dispatcher; beyond this they are dropped (`overflow`).
const EVENT_QUEUE: usize = 4096;

/// The handle everything raises alerts through. Cheap to clone; never blocks.
#[derive(Debug, Clone)]
pub struct Alerts {
    events: mpsc::Sender<AlertEvent>,
    settings: Arc<channel::Sender<Settings>>,
    metrics: Arc<Metrics>,
}

impl Alerts {
    /// Starts the dispatcher; it stops when `stop` fires.
    pub fn start(metrics: Arc<Metrics>, stop: CancellationToken) -> Alerts {
        let (events, rx) = mpsc::channel(EVENT_QUEUE);
        let (settings, settings_rx) = channel::channel(Settings::default());
        tokio::spawn(dispatch::run(rx, settings_rx, Arc::clone(&metrics), stop));
        Alerts {
            events,
            settings: Arc::new(settings),
            metrics,
        }
    }

    /// Raises (or resolves) an alert. Never waits: when too many events are queued
    /// the event is dropped and counted (`reason="overflow"`).
    pub fn send(&self, event: AlertEvent) {
        if let Err(mpsc::error::TrySendError::Full(event)) = self.events.try_send(event) {
            self.metrics.alerts_dropped("", "overflow", 1);
            tracing::warn!(?event, "alert dropped: too many alert events at once");
        }
    }

    /// Applies `[[alert]]` from a (re)loaded config. Receivers whose settings did
    /// not change keep their groups and queue.
    pub fn configure(&self, receivers: &[AlertConfig]) {
        self.settings.send_if_modified(|s| {
            let changed = s.receivers != receivers;
            s.receivers = receivers.to_vec();
            changed
        });
    }

    /// Where the admin API is (`http://ADDRESS/`), for links in the payload.
    pub fn set_external_url(&self, url: String) {
        self.settings.send_if_modified(|s| {
            let changed = s.external_url.as_deref() != Some(url.as_str());
            s.external_url = Some(url);
            changed
        });
    }
}
