//! Which addresses may become backends at run time (through the admin API or the
//! state file).
//!
//! A backend address is where the proxy sends client requests, with their headers
//! and bodies. An address the proxy itself answers on would loop requests back into
//! it (or, for the admin listener, expose the control plane as a public backend); a
//! link-local address is where cloud metadata services live (169.254.169.254); an
//! unspecified, multicast or broadcast address cannot be a server at all. The config
//! file is the operator's own word and is not checked here.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;

/// Why an address cannot be a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefused {
    #[error("{address} is the proxy's own listener `{listener}`: requests would loop back into it")]
    OwnListener {
        address: SocketAddr,
        listener: String,
    },
    #[error("{address} is the admin listener: it must never receive client traffic")]
    Admin { address: SocketAddr },
    #[error("{address} is link-local (169.254.0.0/16, fe80::/10), where metadata services live")]
    LinkLocal { address: SocketAddr },
    #[error("{address} is an unspecified address, not a server")]
    Unspecified { address: SocketAddr },
    #[error("{address} is a multicast or broadcast address, not a server")]
    NotUnicast { address: SocketAddr },
    #[error("{address} has port 0")]
    PortZero { address: SocketAddr },
    #[error("{address} is outside admin.backend_networks ({networks})")]
    OutsideNetworks {
        address: SocketAddr,
        networks: String,
    },
}

/// The proxy's own addresses and the allowed networks, as of one config.
#[derive(Debug, Clone, Default)]
pub struct AddressPolicy {
    /// Traffic listeners by name, as bound (and as configured, for port-0 listeners
    /// the bound port is what counts).
    pub listeners: Vec<(String, SocketAddr)>,
    /// The admin listener, as configured and as bound.
    pub admin: Vec<SocketAddr>,
    /// `admin.backend_networks`; empty allows every network.
    pub networks: Vec<IpNet>,
}

impl AddressPolicy {
    /// Checks one address; the first rule it breaks is the answer.
    pub fn check(&self, address: SocketAddr) -> Result<(), AddressRefused> {
        let ip = address.ip().to_canonical();
        if address.port() == 0 {
            return Err(AddressRefused::PortZero { address });
        }
        if ip.is_unspecified() {
            return Err(AddressRefused::Unspecified { address });
        }
        if is_link_local(ip) {
            return Err(AddressRefused::LinkLocal { address });
        }
        if ip.is_multicast() || ip == IpAddr::V4(Ipv4Addr::BROADCAST) {
            return Err(AddressRefused::NotUnicast { address });
        }
        if let Some((name, _)) = self
            .listeners
            .iter()
            .find(|(_, own)| reaches(address, *own))
        {
            return Err(AddressRefused::OwnListener {
                address,
                listener: name.clone(),
            });
        }
        if self.admin.iter().any(|own| reaches(address, *own)) {
            return Err(AddressRefused::Admin { address });
        }
        if !self.networks.is_empty() && !self.networks.iter().any(|n| n.contains(&ip)) {
            let networks: Vec<String> = self.networks.iter().map(ToString::to_string).collect();
            return Err(AddressRefused::OutsideNetworks {
                address,
                networks: networks.join(", "),
            });
        }
        Ok(())
    }
}

fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// Whether connecting to `target` would reach a socket bound to `own`: same port,
/// and the same address, or `own` listens on every address and `target` is one of
/// this host's (a loopback address stands for those; other local addresses cannot
/// be listed without asking the system, and connecting to them from here is rare).
fn reaches(target: SocketAddr, own: SocketAddr) -> bool {
    if target.port() != own.port() || own.port() == 0 {
        return false;
    }
    let (target_ip, own_ip) = (target.ip().to_canonical(), own.ip().to_canonical());
    target_ip == own_ip || (own_ip.is_unspecified() && target_ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn policy() -> AddressPolicy {
        AddressPolicy {
            listeners: vec![
                ("web".into(), addr("127.0.0.1:8080")),
                ("public".into(), addr("0.0.0.0:8443")),
            ],
            admin: vec![addr("127.0.0.1:9901")],
            networks: Vec::new(),
        }
    }

    #[test]
    fn refuses_own_addresses_and_non_servers() {
        let p = policy();
        for (address, expected) in [
            ("127.0.0.1:8080", "own listener `web`"),
            ("[::ffff:127.0.0.1]:8080", "own listener `web`"),
            ("127.0.0.1:8443", "own listener `public`"),
            ("127.0.0.1:9901", "admin listener"),
            ("169.254.169.254:80", "link-local"),
            ("[fe80::1]:80", "link-local"),
            ("[febf::1]:80", "link-local"),
            ("0.0.0.0:80", "unspecified"),
            ("[::]:80", "unspecified"),
            ("224.0.0.1:80", "multicast"),
            ("255.255.255.255:80", "broadcast"),
            ("10.0.0.1:0", "port 0"),
        ] {
            let refused = p.check(addr(address)).unwrap_err().to_string();
            assert!(refused.contains(expected), "{address}: {refused}");
        }
        for ok in [
            "127.0.0.1:9001",
            "10.0.0.5:8080",
            "[fd00::1]:443",
            "[fec0::1]:80",
        ] {
            assert_eq!(p.check(addr(ok)), Ok(()), "{ok}");
        }
    }

    #[test]
    fn backend_networks_narrow_the_choice() {
        let mut p = policy();
        p.networks = vec!["10.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()];
        assert_eq!(p.check(addr("10.1.2.3:80")), Ok(()));
        assert_eq!(p.check(addr("[fd12::1]:80")), Ok(()));
        let refused = p.check(addr("192.168.1.1:80")).unwrap_err().to_string();
        assert!(
            refused.contains("outside admin.backend_networks (10.0.0.0/8, fd00::/8)"),
            "{refused}"
        );
    }
}
