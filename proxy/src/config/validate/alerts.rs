//! `[[alert]]`: webhook receivers: an http URL each, known topics, sane timings.

use std::collections::HashSet;
use std::time::Duration;

use toml::Spanned;

use crate::config::alert_defaults as d;
use crate::config::error::Reporter;
use crate::config::file::AlertSection;
use crate::config::suggest::unknown_choice;
use crate::config::{AlertConfig, AlertTopic, HumanDuration};

pub(super) fn alerts(sections: &[Spanned<AlertSection>], r: &mut Reporter<'_>) -> Vec<AlertConfig> {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    for (i, spanned) in sections.iter().enumerate() {
        let s = spanned.get_ref();
        let field = format!("alert[{i}]");
        let url = url(&field, &s.url, r);
        let name = match &s.name {
            Some(n) if n.get_ref().trim().is_empty() => {
                r.at(n.span(), format!("{field}.name"), "must not be empty");
                String::new()
            }
            Some(n) => n.get_ref().trim().to_string(),
            None => url
                .authority()
                .map_or_else(|| format!("alert{i}"), |a| a.to_string()),
        };
        if !names.insert(name.clone()) {
            let span = s.name.as_ref().map_or(s.url.span(), |n| n.span());
            r.at(
                span,
                format!("{field}.name"),
                format!("another [[alert]] is named `{name}`; give each a distinct name"),
            );
        }
        let topics = topics(&field, s.events.as_ref(), r);
        let group_by = match &s.group_by {
            None => d::GROUP_BY.iter().map(|l| l.to_string()).collect(),
            Some(list) => {
                let labels: Vec<String> = list
                    .get_ref()
                    .iter()
                    .map(|l| l.trim().to_string())
                    .collect();
                if labels.iter().any(|l| {
                    l.is_empty() || !l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                }) {
                    r.at(
                        list.span(),
                        format!("{field}.group_by"),
                        "expected label names such as [\"alertname\", \"pool\"]",
                    );
                }
                labels
            }
        };
        let duration = |value: &Option<Spanned<HumanDuration>>, default: Duration| {
            value.as_ref().map_or(default, |v| v.get_ref().0)
        };
        let group_wait = duration(&s.group_wait, d::GROUP_WAIT);
        let group_interval = duration(&s.group_interval, d::GROUP_INTERVAL);
        let repeat_interval = duration(&s.repeat_interval, d::REPEAT_INTERVAL);
        let timeout = duration(&s.timeout, d::TIMEOUT);
        for (key, value) in [("group_interval", group_interval), ("timeout", timeout)] {
            if value.is_zero() {
                r.at(0..0, format!("{field}.{key}"), "must be greater than zero");
            }
        }
        if repeat_interval < group_interval {
            r.at(
                0..0,
                format!("{field}.repeat_interval"),
                "must not be shorter than group_interval",
            );
        }
        let retries = s.retries.as_ref().map_or(d::RETRIES, |v| {
            if *v.get_ref() > 20 {
                r.at(v.span(), format!("{field}.retries"), "at most 20 retries");
            }
            *v.get_ref()
        });
        let queue = s.queue.as_ref().map_or(d::QUEUE, |v| {
            if !(1..=10_000).contains(v.get_ref()) {
                r.at(
                    v.span(),
                    format!("{field}.queue"),
                    "must be between 1 and 10000",
                );
            }
            (*v.get_ref()).max(1)
        });
        let headers = headers(&field, s.headers.as_ref(), r);
        out.push(AlertConfig {
            name,
            url,
            topics,
            group_by,
            group_wait,
            group_interval,
            repeat_interval,
            timeout,
            retries,
            queue,
            headers,
        });
    }
    out
}

/// The receiver's `url`: plain http with a host.
fn url(field: &str, url: &Spanned<String>, r: &mut Reporter<'_>) -> http::Uri {
    match url.get_ref().parse::<http::Uri>() {
        Ok(parsed) if parsed.scheme_str() == Some("http") && parsed.authority().is_some() => parsed,
        Ok(parsed) if parsed.scheme_str() == Some("https") => {
            r.at(
                url.span(),
                format!("{field}.url"),
                "https receivers are not supported yet: point url at a relay over http on a trusted network (such as one on loopback)",
            );
            parsed
        }
        _ => {
            r.at(
                url.span(),
                format!("{field}.url"),
                format!(
                    "`{}` is not an http URL such as \"http://127.0.0.1:9093/hook\"",
                    url.get_ref()
                ),
            );
            http::Uri::from_static("http://invalid/")
        }
    }
}

/// `events`: known topics; every topic when not set.
fn topics(
    field: &str,
    events: Option<&Spanned<Vec<String>>>,
    r: &mut Reporter<'_>,
) -> Vec<AlertTopic> {
    let Some(list) = events else {
        return AlertTopic::ALL.to_vec();
    };
    let known: Vec<&str> = AlertTopic::ALL.iter().map(|t| t.as_str()).collect();
    list.get_ref()
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let topic = AlertTopic::parse(e);
            if topic.is_none() {
                r.at(
                    0..0,
                    format!("{field}.events[{i}]"),
                    unknown_choice("event", e, &known, known.iter().copied()),
                );
            }
            topic
        })
        .collect()
}

/// Extra request `headers`, except those the proxy sets itself.
fn headers(
    field: &str,
    map: Option<&Spanned<std::collections::BTreeMap<String, String>>>,
    r: &mut Reporter<'_>,
) -> Vec<(http::HeaderName, http::HeaderValue)> {
    let mut headers = Vec::new();
    let Some(map) = map else {
        return headers;
    };
    for (name, value) in map.get_ref() {
        let parsed = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        );
        match parsed {
            (Ok(n), Ok(v))
                if n != http::header::HOST
                    && n != http::header::CONTENT_TYPE
                    && n != http::header::CONTENT_LENGTH =>
            {
                headers.push((n, v));
            }
            _ => r.at(
                0..0,
                format!("{field}.headers.{name}"),
                format!("header `{name}` is not valid here (Host, Content-Type and Content-Length are set by the proxy)"),
            ),
        }
    }
    headers
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{problems_with, valid_with};
    use crate::config::AlertTopic;

    #[test]
    fn defaults_and_settings() {
        let config = valid_with(
            "[[alert]]\nurl = \"http://127.0.0.1:9093/hook\"\nevents = [\"backend\", \"rollout\"]\ngroup_wait = \"1s\"\n\
             headers = { Authorization = \"Bearer x\" }\n",
        );
        let alert = &config.alerts[0];
        assert_eq!(alert.name, "127.0.0.1:9093");
        assert_eq!(alert.topics, [AlertTopic::Backend, AlertTopic::Rollout]);
        assert_eq!(alert.group_wait, Duration::from_secs(1));
        assert_eq!(alert.group_by, ["alertname", "pool"]);
        assert_eq!(alert.headers[0].0, http::header::AUTHORIZATION);
    }

    #[test]
    fn refuses_bad_receivers_with_their_place() {
        assert_eq!(
            problems_with(
                "[[alert]]\nurl = \"https://hooks.example.com/x\"\nevents = [\"backends\", \"deploy\"]\n\
                 group_by = [\"a-b\"]\nrepeat_interval = \"1s\"\nretries = 21\nqueue = 0\nheaders = { Host = \"x\" }\n\
                 [[alert]]\nname = \"hooks.example.com\"\nurl = \"ftp://x\"\ntimeout = \"0\"\n"
            ),
            [
                "t.toml:11:7: alert[0].url: https receivers are not supported yet: point url at a relay over http on a trusted network (such as one on loopback)",
                "t.toml:12:11: alert[0].events[0]: unknown event `backends`, did you mean `backend`? Expected one of: backend, breaker, pool, failover, rollout, plugin, config",
                "t.toml:12:23: alert[0].events[1]: unknown event `deploy`; expected one of: backend, breaker, pool, failover, rollout, plugin, config",
                "t.toml:13:12: alert[0].group_by: expected label names such as [\"alertname\", \"pool\"]",
                "t.toml:14:19: alert[0].repeat_interval: must not be shorter than group_interval",
                "t.toml:15:11: alert[0].retries: at most 20 retries",
                "t.toml:16:9: alert[0].queue: must be between 1 and 10000",
                "t.toml:17:20: alert[0].headers.Host: header `Host` is not valid here (Host, Content-Type and Content-Length are set by the proxy)",
                "t.toml:19:8: alert[1].name: another [[alert]] is named `hooks.example.com`; give each a distinct name",
                "t.toml:20:7: alert[1].url: `ftp://x` is not an http URL such as \"http://127.0.0.1:9093/hook\"",
                "t.toml:21:11: alert[1].timeout: must be greater than zero",
            ]
        );
    }
}
