//! `[limits]`: timeouts and caps, each within what the HTTP stack can honour.

use crate::config::Limits;
use crate::config::error::Reporter;
use crate::config::file::LimitsSection;

pub(super) fn limits(section: &LimitsSection, r: &mut Reporter<'_>) -> Limits {
    let d = Limits::default();
    let limits = Limits {
        header_read_timeout: section
            .header_read_timeout
            .map_or(d.header_read_timeout, |v| v.0),
        idle_timeout: section.idle_timeout.map_or(d.idle_timeout, |v| v.0),
        max_header_bytes: section
            .max_header_bytes
            .map_or(d.max_header_bytes, |v| v.0 as usize),
        max_headers: section.max_headers.unwrap_or(d.max_headers),
        max_connections: section.max_connections.unwrap_or(d.max_connections),
        drain_timeout: section.drain_timeout.map_or(d.drain_timeout, |v| v.0),
        connect_timeout: section.connect_timeout.map_or(d.connect_timeout, |v| v.0),
        upstream_idle_per_backend: section
            .upstream_idle_per_backend
            .unwrap_or(d.upstream_idle_per_backend),
        upstream_idle_timeout: section
            .upstream_idle_timeout
            .map_or(d.upstream_idle_timeout, |v| v.0),
        body_idle_timeout: section
            .body_idle_timeout
            .map_or(d.body_idle_timeout, |v| v.0),
        body_timeout: section.body_timeout.map_or(d.body_timeout, |v| v.0),
        max_body_bytes: section.max_body_bytes.map(|v| v.0),
        max_uri_bytes: section
            .max_uri_bytes
            .map_or(d.max_uri_bytes, |v| v.0 as usize),
        tunnel_idle_timeout: section
            .tunnel_idle_timeout
            .map_or(d.tunnel_idle_timeout, |v| v.0),
        max_connections_per_ip: section.max_connections_per_ip,
    };
    if limits.max_header_bytes < 8 * 1024 {
        r.at(
            0..0,
            "limits.max_header_bytes",
            "must be at least 8KiB (the smallest buffer the HTTP parser accepts)",
        );
    }
    if limits.max_connections == 0 {
        r.at(0..0, "limits.max_connections", "must be at least 1");
    }
    if limits.max_connections_per_ip == Some(0) {
        r.at(
            0..0,
            "limits.max_connections_per_ip",
            "must be at least 1 (leave it out for no per-client cap)",
        );
    }
    if limits.max_body_bytes == Some(0) {
        r.at(
            0..0,
            "limits.max_body_bytes",
            "must be above 0 (leave it out for no limit)",
        );
    }
    if !(256..=64 * 1024).contains(&limits.max_uri_bytes) {
        r.at(
            0..0,
            "limits.max_uri_bytes",
            "must be between 256B and 64KiB",
        );
    }
    if limits.body_timeout < limits.body_idle_timeout {
        r.at(
            0..0,
            "limits.body_timeout",
            "must not be shorter than limits.body_idle_timeout",
        );
    }
    for (name, value) in [
        ("limits.header_read_timeout", limits.header_read_timeout),
        ("limits.idle_timeout", limits.idle_timeout),
        ("limits.connect_timeout", limits.connect_timeout),
        ("limits.body_idle_timeout", limits.body_idle_timeout),
        ("limits.body_timeout", limits.body_timeout),
        ("limits.tunnel_idle_timeout", limits.tunnel_idle_timeout),
    ] {
        if value.is_zero() {
            r.at(0..0, name, "must be greater than zero");
        }
    }
    limits
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{problems_with, valid_with};

    #[test]
    fn defaults_and_settings() {
        let config = valid_with("[limits]\nidle_timeout = \"5s\"\nmax_body_bytes = \"1MiB\"\n");
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(config.limits.max_body_bytes, Some(1 << 20));
        assert_eq!(config.limits.max_headers, 100);
    }

    #[test]
    fn every_bad_limit_is_reported_where_it_is_written() {
        assert_eq!(
            problems_with(
                "[limits]\nmax_connections = 0\nmax_header_bytes = \"1KiB\"\nmax_uri_bytes = 10\n\
                 max_body_bytes = 0\nmax_connections_per_ip = 0\nidle_timeout = \"0\"\n"
            ),
            [
                "t.toml:11:19: limits.max_connections: must be at least 1",
                "t.toml:12:20: limits.max_header_bytes: must be at least 8KiB (the smallest buffer the HTTP parser accepts)",
                "t.toml:13:17: limits.max_uri_bytes: must be between 256B and 64KiB",
                "t.toml:14:18: limits.max_body_bytes: must be above 0 (leave it out for no limit)",
                "t.toml:15:26: limits.max_connections_per_ip: must be at least 1 (leave it out for no per-client cap)",
                "t.toml:16:16: limits.idle_timeout: must be greater than zero",
            ]
        );
    }

    #[test]
    fn a_default_that_conflicts_is_reported_at_the_setting_that_does() {
        assert_eq!(
            problems_with("[limits]\nbody_timeout = \"5s\"\n"),
            [
                "t.toml:11:16: limits.body_timeout: must not be shorter than limits.body_idle_timeout"
            ]
        );
        assert_eq!(
            problems_with("[limits]\nbody_idle_timeout = \"90s\"\n"),
            ["t.toml:10:1: limits.body_timeout: must not be shorter than limits.body_idle_timeout"]
        );
    }
}
