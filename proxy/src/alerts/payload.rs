//! Alertmanager's webhook payload (version 4), as Alertmanager itself sends it to
//! webhook receivers: what relays to Slack, PagerDuty or a ticket system expect.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::event::AlertState;

/// What Alertmanager writes for "no end yet".
const NO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert of a group as last seen: labels, annotations and times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub starts_at: SystemTime,
    pub ends_at: Option<SystemTime>,
}

/// The alert's identity: a digest of its labels (what Alertmanager calls its
/// fingerprint), 16 hex digits.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash = Sha256::new();
    for (key, value) in labels {
        hash.update(key.as_bytes());
        hash.update([0xff]);
        hash.update(value.as_bytes());
        hash.update([0xfe]);
    }
    hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// RFC 3339 in UTC, as Alertmanager writes times.
pub fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| NO_TIME.to_string())
}

/// `{}:{alertname="X", pool="app"}`: the group's key, as Alertmanager spells it.
pub fn group_key(group_labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = group_labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect();
    format!("{{}}:{{{}}}", pairs.join(", "))
}

/// The webhook body for one notification of a group.
pub fn webhook(
    receiver: &str,
    group_labels: &BTreeMap<String, String>,
    alerts: &[&Stored],
    external_url: &str,
) -> Value {
    let firing = alerts.iter().any(|a| a.state != AlertState::Resolved);
    let common = |pick: fn(&Stored) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
        let mut common = alerts.first().map(|a| pick(a).clone()).unwrap_or_default();
        for alert in alerts.iter().skip(1) {
            common.retain(|k, v| pick(alert).get(k) == Some(v));
        }
        common
    };
    let generator = format!("{}status", external_url);
    let items: Vec<Value> = alerts
        .iter()
        .map(|a| {
            json!({
                "status": if a.state == AlertState::Resolved { "resolved" } else { "firing" },
                "labels": a.labels,
                "annotations": a.annotations,
                "startsAt": rfc3339(a.starts_at),
                "endsAt": a.ends_at.map_or_else(|| NO_TIME.to_string(), rfc3339),
                "generatorURL": generator,
                "fingerprint": fingerprint(&a.labels),
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": group_key(group_labels),
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common(|a| &a.labels),
        "commonAnnotations": common(|a| &a.annotations),
        "externalURL": external_url,
        "alerts": items,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn stored(backend: &str, state: AlertState) -> Stored {
        Stored {
            labels: BTreeMap::from([
                ("alertname".into(), "SwitchyardBackendDown".into()),
                ("pool".into(), "app".into()),
                ("backend".into(), backend.into()),
            ]),
            annotations: BTreeMap::from([("summary".into(), format!("{backend} down"))]),
            state,
            starts_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            ends_at: (state == AlertState::Resolved)
                .then(|| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_060)),
        }
    }

    #[test]
    fn the_payload_is_alertmanagers_webhook_format() {
        let a = stored("10.0.0.1:80", AlertState::Firing);
        let b = stored("10.0.0.2:80", AlertState::Resolved);
        let group = BTreeMap::from([
            ("alertname".to_string(), "SwitchyardBackendDown".to_string()),
            ("pool".to_string(), "app".to_string()),
        ]);
        let body = webhook("ops", &group, &[&a, &b], "http://127.0.0.1:9901/");
        assert_eq!(body["version"], "4");
        assert_eq!(body["status"], "firing");
        assert_eq!(body["receiver"], "ops");
        assert_eq!(
            body["groupKey"],
            "{}:{alertname=\"SwitchyardBackendDown\", pool=\"app\"}"
        );
        assert_eq!(body["groupLabels"]["pool"], "app");
        assert_eq!(body["commonLabels"]["alertname"], "SwitchyardBackendDown");
        assert!(body["commonLabels"].get("backend").is_none());
        assert!(body["commonAnnotations"].get("summary").is_none());
        assert_eq!(body["alerts"][0]["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(body["alerts"][0]["endsAt"], NO_TIME);
        assert_eq!(body["alerts"][1]["status"], "resolved");
        assert_eq!(body["alerts"][1]["endsAt"], "2023-11-14T22:14:20Z");
        assert_eq!(
            body["alerts"][0]["generatorURL"],
            "http://127.0.0.1:9901/status"
        );
        assert_eq!(body["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
        assert_ne!(
            body["alerts"][0]["fingerprint"],
            body["alerts"][1]["fingerprint"]
        );
    }
}
