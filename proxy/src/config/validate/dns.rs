//! `[dns]`: the name servers and the bounds on re-resolution.

use crate::config::DnsConfig;
use crate::config::error::Reporter;
use crate::config::file::DnsSection;

pub(super) fn dns(s: &DnsSection, r: &mut Reporter<'_>) -> DnsConfig {
    let d = DnsConfig::default();
    let servers = s.servers.as_ref().map_or_else(Vec::new, |list| {
        list.get_ref()
            .iter()
            .filter_map(|text| {
                let parsed = text.parse::<std::net::SocketAddr>().ok().or_else(|| {
                    text.parse::<std::net::IpAddr>()
                        .ok()
                        .map(|ip| std::net::SocketAddr::new(ip, 53))
                });
                if parsed.is_none() {
                    r.at(
                        list.span(),
                        "dns.servers",
                        format!("`{text}` is not an IP address or ip:port"),
                    );
                }
                parsed
            })
            .collect()
    });
    let config = DnsConfig {
        servers,
        min_ttl: s.min_ttl.map_or(d.min_ttl, |v| v.0),
        max_ttl: s.max_ttl.map_or(d.max_ttl, |v| v.0),
        timeout: s.timeout.map_or(d.timeout, |v| v.0),
    };
    if config.min_ttl.is_zero() || config.max_ttl < config.min_ttl {
        r.at(
            0..0,
            "dns.min_ttl",
            "min_ttl must be above zero and at most max_ttl",
        );
    }
    if config.timeout.is_zero() {
        r.at(0..0, "dns.timeout", "must be greater than zero");
    }
    config
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::testing::{problems_with, valid_with};

    #[test]
    fn servers_get_port_53_by_default() {
        let config =
            valid_with("[dns]\nservers = [\"10.0.0.2\", \"10.0.0.3:5353\"]\nmax_ttl = \"1m\"\n");
        assert_eq!(config.dns.servers[0].to_string(), "10.0.0.2:53");
        assert_eq!(config.dns.servers[1].to_string(), "10.0.0.3:5353");
        assert_eq!(config.dns.max_ttl, Duration::from_secs(60));
    }

    #[test]
    fn refuses_bad_servers_and_bounds() {
        assert_eq!(
            problems_with(
                "[dns]\nservers = [\"ns1.example\"]\nmin_ttl = \"10m\"\ntimeout = \"0\"\n"
            ),
            [
                "t.toml:11:11: dns.servers: `ns1.example` is not an IP address or ip:port",
                "t.toml:12:11: dns.min_ttl: min_ttl must be above zero and at most max_ttl",
                "t.toml:13:11: dns.timeout: must be greater than zero",
            ]
        );
    }
}
