//! `[pool.NAME.health]`: the active check (HTTP or TCP), its timing and hysteresis.

use std::ops::RangeInclusive;
use std::time::Duration;

use crate::config::error::Reporter;
use crate::config::file::{HealthSection, StatusSpec};
use crate::config::suggest::unknown_choice;
use crate::config::{HealthConfig, HumanDuration, ProbeKind};

const CHECK_TYPES: [&str; 2] = ["http", "tcp"];

pub(super) fn health(field: &str, h: &HealthSection, r: &mut Reporter<'_>) -> HealthConfig {
    let field = format!("{field}.health");
    let interval = h.interval.map_or(Duration::from_secs(2), |d| d.0);
    let timeout = h
        .timeout
        .as_ref()
        .map_or(Duration::from_secs(1).min(interval), |d| d.get_ref().0);
    if let Some(t) = &h.timeout
        && t.get_ref().0 >= interval
    {
        r.at(
            t.span(),
            format!("{field}.timeout"),
            format!(
                "timeout ({}) must be shorter than interval ({})",
                t.get_ref(),
                HumanDuration(interval)
            ),
        );
    }
    if interval < Duration::from_millis(10) {
        r.at(0..0, format!("{field}.interval"), "must be at least 10ms");
    }
    let jitter = match &h.jitter {
        None => 0.1,
        Some(j) => match parse_percent(j.get_ref()) {
            Some(p) if (0.0..=50.0).contains(&p) => p / 100.0,
            _ => {
                r.at(
                    j.span(),
                    format!("{field}.jitter"),
                    "expected a percentage between \"0%\" and \"50%\"",
                );
                0.0
            }
        },
    };
    let probe = match h.kind.as_ref().map(|k| k.get_ref().as_str()) {
        None | Some("http") => http_probe(&field, h, r),
        Some("tcp") => ProbeKind::Tcp,
        Some(other) => {
            let span = h.kind.as_ref().map(|k| k.span()).unwrap_or(0..0);
            r.at(
                span,
                format!("{field}.type"),
                unknown_choice("check type", other, &CHECK_TYPES, CHECK_TYPES),
            );
            ProbeKind::Tcp
        }
    };
    let rise = h.rise.unwrap_or(2);
    let fall = h.fall.unwrap_or(3);
    for (key, value) in [("rise", rise), ("fall", fall)] {
        if value == 0 {
            r.at(0..0, format!("{field}.{key}"), "must be at least 1");
        }
    }
    HealthConfig {
        probe,
        interval,
        timeout,
        jitter,
        rise: rise.max(1),
        fall: fall.max(1),
        plugin: None,
    }
}

/// An HTTP probe: method, path, host, expected statuses and body.
fn http_probe(field: &str, h: &HealthSection, r: &mut Reporter<'_>) -> ProbeKind {
    let method = h.method.as_deref().unwrap_or("GET");
    let method = http::Method::from_bytes(method.as_bytes()).unwrap_or_else(|_| {
        r.at(0..0, format!("{field}.method"), "not a valid HTTP method");
        http::Method::GET
    });
    let path = h.path.clone().unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        r.at(0..0, format!("{field}.path"), "must start with `/`");
    }
    let expect_status = match &h.expect_status {
        None => vec![200..=399],
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match parse_status(s) {
                Ok(range) => Some(range),
                Err(msg) => {
                    r.at(0..0, format!("{field}.expect_status[{i}]"), msg);
                    None
                }
            })
            .collect(),
    };
    ProbeKind::Http {
        method,
        path,
        host: h.host.clone(),
        expect_status,
        expect_body: h.expect_body.clone(),
    }
}

fn parse_percent(text: &str) -> Option<f64> {
    text.trim().strip_suffix('%')?.trim().parse().ok()
}

fn parse_status(spec: &StatusSpec) -> Result<RangeInclusive<u16>, String> {
    let valid = |c: u16| (100..=599).contains(&c);
    match spec {
        StatusSpec::Code(c) if valid(*c) => Ok(*c..=*c),
        StatusSpec::Code(c) => Err(format!("{c} is not an HTTP status (100-599)")),
        StatusSpec::Range(text) => {
            let parsed = match text.split_once('-') {
                Some((a, b)) => a.trim().parse().ok().zip(b.trim().parse().ok()),
                None => text.trim().parse().ok().map(|c| (c, c)),
            };
            match parsed {
                Some((a, b)) if valid(a) && valid(b) && a <= b => Ok(a..=b),
                _ => Err(format!(
                    "`{text}` is not a status or range like \"200-399\""
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{problems_with, valid_with};
    use crate::config::ProbeKind;

    fn health(body: &str) -> Vec<String> {
        problems_with(&format!("[pool.app.health]\n{body}"))
    }

    #[test]
    fn defaults_and_http_settings() {
        let config = valid_with(
            "[pool.app.health]\npath = \"/ready\"\nexpect_status = [204, \"300-302\"]\ninterval = \"500ms\"\njitter = \"20%\"\n",
        );
        let h = config.pools["app"].health.as_ref().unwrap();
        assert_eq!(h.interval, Duration::from_millis(500));
        assert_eq!(
            h.timeout,
            Duration::from_millis(500).min(Duration::from_secs(1))
        );
        assert_eq!((h.rise, h.fall), (2, 3));
        assert!((h.jitter - 0.2).abs() < 1e-9);
        let ProbeKind::Http {
            path,
            expect_status,
            ..
        } = &h.probe
        else {
            panic!("an HTTP probe by default");
        };
        assert_eq!(path, "/ready");
        assert_eq!(expect_status, &[204..=204, 300..=302]);
    }

    #[test]
    fn refuses_bad_timing_and_expectations() {
        assert_eq!(
            health(
                "type = \"htp\"\ninterval = \"5ms\"\ntimeout = \"1s\"\njitter = \"80%\"\nrise = 0\nfall = 0\n"
            ),
            [
                "t.toml:11:8: pool.app.health.type: unknown check type `htp`, did you mean `http`? Expected one of: http, tcp",
                "t.toml:12:12: pool.app.health.interval: must be at least 10ms",
                "t.toml:13:11: pool.app.health.timeout: timeout (1s) must be shorter than interval (5ms)",
                "t.toml:14:10: pool.app.health.jitter: expected a percentage between \"0%\" and \"50%\"",
                "t.toml:15:8: pool.app.health.rise: must be at least 1",
                "t.toml:16:8: pool.app.health.fall: must be at least 1",
            ]
        );
        assert_eq!(
            health("path = \"ready\"\nmethod = \"G T\"\nexpect_status = [200, 700, \"2xx\"]\n"),
            [
                "t.toml:11:8: pool.app.health.path: must start with `/`",
                "t.toml:12:10: pool.app.health.method: not a valid HTTP method",
                "t.toml:13:23: pool.app.health.expect_status[1]: 700 is not an HTTP status (100-599)",
                "t.toml:13:28: pool.app.health.expect_status[2]: `2xx` is not a status or range like \"200-399\"",
            ]
        );
    }
}
