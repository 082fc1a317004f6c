//! The dispatcher: one task that turns alert events into notifications per
//! receiver, grouped, de-duplicated and paced (see [`super`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::deliver::{self, Notification};
use super::event::{AlertEvent, AlertState, Settings};
use super::payload::{self, Stored};
use crate::config::{AlertConfig, AlertTopic};
use crate::metrics::Metrics;

/// Runs until `stop` fires or every [`super::Alerts`] handle is gone.
pub(super) async fn run(
    mut events: mpsc::Receiver<AlertEvent>,
    mut settings: watch::Receiver<Settings>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut dispatcher = Dispatcher {
        instance: hostname(),
        active: BTreeMap::new(),
        receivers: Vec::new(),
        external_url: String::new(),
        metrics,
        stop: stop.clone(),
    };
    dispatcher.apply(&settings.borrow_and_update().clone());
    loop {
        let next = dispatcher.next_flush();
        tokio::select! {
            event = events.recv() => match event {
                Some(event) => dispatcher.handle(&event),
                None => break,
            },
            changed = settings.changed() => {
                if changed.is_err() {
                    break;
                }
                let current = settings.borrow_and_update().clone();
                dispatcher.apply(&current);
            }
            () = sleep_until(next), if next.is_some() => dispatcher.flush(Instant::now()),
            () = stop.cancelled() => break,
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

struct Dispatcher {
    /// The `instance` label on every alert: this machine's host name.
    instance: String,
    /// Conditions firing now, so a receiver added by a reload hears of them.
    active: BTreeMap<String, (AlertTopic, Stored)>,
    receivers: Vec<Receiver>,
    external_url: String,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
}

impl Dispatcher {
    /// Takes new settings: unchanged receivers keep their groups and queue; new
    /// ones start with the conditions firing now.
    fn apply(&mut self, settings: &Settings) {
        self.external_url = settings.external_url.clone().unwrap_or_default();
        let mut old = std::mem::take(&mut self.receivers);
        let now = Instant::now();
        for config in &settings.receivers {
            match old.iter().position(|r| r.config == *config) {
                Some(index) => self.receivers.push(old.swap_remove(index)),
                None => {
                    let mut receiver = Receiver::new(config.clone(), &self.metrics, &self.stop);
                    for (fingerprint, (topic, stored)) in &self.active {
                        if receiver.wants(*topic) {
                            receiver.fire(fingerprint, stored.clone(), now);
                        }
                    }
                    self.receivers.push(receiver);
                }
            }
        }
    }

    fn handle(&mut self, event: &AlertEvent) {
        let alert = event.alert();
        let mut labels = alert.labels;
        labels.insert("instance".into(), self.instance.clone());
        let fingerprint = payload::fingerprint(&labels);
        let now = Instant::now();
        let stored = match alert.state {
            AlertState::Firing => {
                if self.active.contains_key(&fingerprint) {
                    return;
                }
                let stored = Stored {
                    labels,
                    annotations: alert.annotations,
                    state: AlertState::Firing,
                    starts_at: SystemTime::now(),
                    ends_at: None,
                };
                self.active
                    .insert(fingerprint.clone(), (alert.topic, stored.clone()));
                stored
            }
            AlertState::Resolved => {
                let Some((_, mut stored)) = self.active.remove(&fingerprint) else {
                    return;
                };
                stored.state = AlertState::Resolved;
                stored.ends_at = Some(SystemTime::now());
                stored
            }
            AlertState::Once => Stored {
                labels,
                annotations: alert.annotations,
                state: AlertState::Once,
                starts_at: SystemTime::now(),
                ends_at: None,
            },
        };
        for receiver in self.receivers.iter_mut().filter(|r| r.wants(alert.topic)) {
            match stored.state {
                AlertState::Resolved => receiver.resolve(&fingerprint, stored.clone(), now),
                _ => receiver.fire(&fingerprint, stored.clone(), now),
            }
        }
    }

    fn next_flush(&self) -> Option<Instant> {
        self.receivers.iter().filter_map(Receiver::next_flush).min()
    }

    fn flush(&mut self, now: Instant) {
        for receiver in &mut self.receivers {
            receiver.flush(now, &self.external_url, &self.metrics);
        }
    }
}

/// One `[[alert]]` receiver: its groups and its delivery queue.
struct Receiver {
    config: AlertConfig,
    groups: BTreeMap<String, Group>,
    queue: mpsc::Sender<Notification>,
}

/// Alerts that go out together.
struct Group {
    labels: BTreeMap<String, String>,
    /// By fingerprint: firing ones, and those resolved or one-off since the last
    /// notification.
    alerts: BTreeMap<String, Stored>,
    /// What the last notification said about each alert still in the group.
    notified: BTreeMap<String, AlertState>,
    next_flush: Option<Instant>,
    last_sent: Option<Instant>,
}

impl Receiver {
    fn new(config: AlertConfig, metrics: &Arc<Metrics>, stop: &CancellationToken) -> Self {
        let queue = deliver::spawn(config.clone(), Arc::clone(metrics), stop.clone());
        Receiver {
            config,
            groups: BTreeMap::new(),
            queue,
        }
    }

    fn wants(&self, topic: AlertTopic) -> bool {
        self.config.topics.contains(&topic)
    }

    fn group(&mut self, labels: &BTreeMap<String, String>, now: Instant) -> &mut Group {
        let group_labels: BTreeMap<String, String> = self
            .config
            .group_by
            .iter()
            .filter_map(|key| labels.get(key).map(|v| (key.clone(), v.clone())))
            .collect();
        let key = payload::group_key(&group_labels);
        let wait = self.config.group_wait;
        self.groups.entry(key).or_insert_with(|| Group {
            labels: group_labels,
            alerts: BTreeMap::new(),
            notified: BTreeMap::new(),
            next_flush: Some(now + wait),
            last_sent: None,
        })
    }

    fn fire(&mut self, fingerprint: &str, stored: Stored, now: Instant) {
        let interval = self.config.group_interval;
        let group = self.group(&stored.labels, now);
        if group
            .alerts
            .get(fingerprint)
            .is_some_and(|a| a.state == stored.state)
        {
            return;
        }
        group.alerts.insert(fingerprint.to_string(), stored);
        group.schedule(now, interval);
    }

    fn resolve(&mut self, fingerprint: &str, stored: Stored, now: Instant) {
        let interval = self.config.group_interval;
        let group = self.group(&stored.labels, now);
        if !group.notified.contains_key(fingerprint) {
            // Fired and resolved before anyone heard of it: nothing to tell.
            group.alerts.remove(fingerprint);
        } else {
            group.alerts.insert(fingerprint.to_string(), stored);
            group.schedule(now, interval);
        }
        if group.alerts.is_empty() && group.notified.is_empty() {
            let key = payload::group_key(&group.labels);
            self.groups.remove(&key);
        }
    }

    fn next_flush(&self) -> Option<Instant> {
        self.groups.values().filter_map(|g| g.next_flush).min()
    }

    /// Sends every group that is due and has news (or is due a repeat).
    fn flush(&mut self, now: Instant, external_url: &str, metrics: &Metrics) {
        let repeat = self.config.repeat_interval;
        for group in self.groups.values_mut() {
            if group.next_flush.is_none_or(|at| at > now) {
                continue;
            }
            let states: BTreeMap<String, AlertState> = group
                .alerts
                .iter()
                .map(|(f, a)| (f.clone(), a.state))
                .collect();
            let firing = states.values().any(|s| *s == AlertState::Firing);
            let repeat_due = firing && group.last_sent.is_some_and(|t| now >= t + repeat);
            if !group.alerts.is_empty() && (states != group.notified || repeat_due) {
                let alerts: Vec<&Stored> = group.alerts.values().collect();
                let body =
                    payload::webhook(&self.config.name, &group.labels, &alerts, external_url);
                let notification = Notification {
                    body: serde_json::to_vec(&body).unwrap_or_default().into(),
                    alerts: alerts.len() as u64,
                };
                if let Err(mpsc::error::TrySendError::Full(n)) = self.queue.try_send(notification) {
                    metrics.alerts_dropped(&self.config.name, "queue_full", n.alerts);
                    tracing::warn!(receiver = %self.config.name, "alert receiver's queue is full; notification dropped");
                }
                group.last_sent = Some(now);
            }
            group.alerts.retain(|_, a| a.state == AlertState::Firing);
            group.notified = group
                .alerts
                .keys()
                .map(|f| (f.clone(), AlertState::Firing))
                .collect();
            group.next_flush = if group.alerts.is_empty() {
                None
            } else {
                Some(group.last_sent.unwrap_or(now) + repeat)
            };
        }
        self.groups
            .retain(|_, g| !g.alerts.is_empty() || g.next_flush.is_some());
    }
}

impl Group {
    /// A change to tell: at the end of `group_wait` for a group not sent yet,
    /// else `group_interval` after the last notification (or now, if that passed).
    fn schedule(&mut self, now: Instant, interval: std::time::Duration) {
        let Some(last) = self.last_sent else {
            if self.next_flush.is_none() {
                self.next_flush = Some(now);
            }
            return;
        };
        let candidate = (last + interval).max(now);
        self.next_flush = Some(self.next_flush.map_or(candidate, |at| at.min(candidate)));
    }
}

/// This machine's name, for the `instance` label.
fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "localhost".to_string()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn config() -> AlertConfig {
        AlertConfig {
            name: "ops".into(),
            url: http::Uri::from_static("http://127.0.0.1:1/"),
            topics: AlertTopic::ALL.to_vec(),
            group_by: vec!["alertname".into(), "pool".into()],
            group_wait: Duration::from_secs(5),
            group_interval: Duration::from_secs(60),
            repeat_interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(1),
            retries: 0,
            queue: 16,
            headers: vec![],
        }
    }

    fn receiver() -> (Receiver, mpsc::Receiver<Notification>) {
        let (queue, rx) = mpsc::channel(16);
        (
            Receiver {
                config: config(),
                groups: BTreeMap::new(),
                queue,
            },
            rx,
        )
    }

    fn down(backend: &str) -> (String, Stored) {
        let mut alert = AlertEvent::BackendDown {
            pool: "app".into(),
            backend: backend.into(),
            reason: "refused".into(),
        }
        .alert();
        alert.labels.insert("instance".into(), "test".into());
        let fingerprint = payload::fingerprint(&alert.labels);
        (
            fingerprint,
            Stored {
                labels: alert.labels,
                annotations: alert.annotations,
                state: AlertState::Firing,
                starts_at: SystemTime::now(),
                ends_at: None,
            },
        )
    }

    fn statuses(rx: &mut mpsc::Receiver<Notification>) -> Vec<Vec<(String, String)>> {
        let mut out = Vec::new();
        while let Ok(n) = rx.try_recv() {
            let body: serde_json::Value = serde_json::from_slice(&n.body).unwrap();
            let mut alerts: Vec<(String, String)> = body["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["labels"]["backend"].as_str().unwrap().to_string(),
                        a["status"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            alerts.sort();
            out.push(alerts);
        }
        out
    }

    #[test]
    fn groups_wait_dedupe_pace_and_repeat() {
        let metrics = Metrics::new();
        let (mut r, mut rx) = receiver();
        let t0 = Instant::now();
        let (fa, a) = down("a");
        let (fb, b) = down("b");
        r.fire(&fa, a.clone(), t0);
        r.fire(&fa, a.clone(), t0 + Duration::from_secs(1));
        r.fire(&fb, b.clone(), t0 + Duration::from_secs(2));
        assert_eq!(
            r.next_flush(),
            Some(t0 + Duration::from_secs(5)),
            "group_wait"
        );
        r.flush(t0 + Duration::from_secs(4), "", &metrics);
        assert!(statuses(&mut rx).is_empty(), "not before group_wait");
        r.flush(t0 + Duration::from_secs(5), "", &metrics);
        assert_eq!(
            statuses(&mut rx),
            vec![vec![
                ("a".into(), "firing".into()),
                ("b".into(), "firing".into())
            ]],
            "one notification for the group, each alert once"
        );

        // A change after that waits for group_interval; the unchanged alert is
        // sent along (the whole group), the resolved one once.
        let t1 = t0 + Duration::from_secs(10);
        let mut b_resolved = b.clone();
        b_resolved.state = AlertState::Resolved;
        b_resolved.ends_at = Some(SystemTime::now());
        r.resolve(&fb, b_resolved, t1);
        assert_eq!(r.next_flush(), Some(t0 + Duration::from_secs(65)));
        r.flush(t0 + Duration::from_secs(65), "", &metrics);
        assert_eq!(
            statuses(&mut rx),
            vec![vec![
                ("a".into(), "firing".into()),
                ("b".into(), "resolved".into())
            ]]
        );

        // Nothing new: silence until the repeat interval.
        assert_eq!(r.next_flush(), Some(t0 + Duration::from_secs(65 + 3600)));
        r.flush(t0 + Duration::from_secs(65 + 3600), "", &metrics);
        assert_eq!(statuses(&mut rx), vec![vec![("a".into(), "firing".into())]]);
    }

    #[test]
    fn an_alert_resolved_before_anyone_heard_of_it_is_never_sent() {
        let metrics = Metrics::new();
        let (mut r, mut rx) = receiver();
        let t0 = Instant::now();
        let (fa, a) = down("a");
        r.fire(&fa, a.clone(), t0);
        let mut resolved = a;
        resolved.state = AlertState::Resolved;
        r.resolve(&fa, resolved, t0 + Duration::from_secs(1));
        r.flush(t0 + Duration::from_secs(10), "", &metrics);
        assert!(statuses(&mut rx).is_empty());
        assert!(r.groups.is_empty());
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let metrics = Metrics::new();
        let (queue, _rx) = mpsc::channel(1);
        let mut r = Receiver {
            config: AlertConfig {
                group_by: vec!["alertname".into(), "backend".into()],
                group_wait: Duration::ZERO,
                ..config()
            },
            groups: BTreeMap::new(),
            queue,
        };
        let t0 = Instant::now();
        for backend in ["a", "b", "c"] {
            let (f, s) = down(backend);
            r.fire(&f, s, t0);
        }
        r.flush(t0, "", &metrics);
        let text = metrics.encode_prometheus();
        assert!(
            text.contains(
                r#"switchyard_alerts_dropped_total{receiver="ops",reason="queue_full"} 2"#
            ),
            "{text}"
        );
    }
}
