//! DNS lookups for backends: the resolver built from `[dns]`, and one lookup of an
//! entry (addresses, or SRV targets and their addresses) with how long it holds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::time::Instant;

use crate::config::{DnsBackend, DnsConfig};

/// A backend address found in DNS, with the host name it belongs to (used as SNI).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Found {
    pub address: SocketAddr,
    pub host: Arc<str>,
}

/// Why a lookup gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("{0}")]
    Dns(#[from] NetError),
    #[error("no address records")]
    Empty,
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// Why the resolver could not be set up (the system's configuration is unreadable).
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the DNS resolver: {0}")]
pub struct ResolverError(#[from] NetError);

/// Builds the resolver: the configured name servers (UDP, then TCP for truncated
/// answers), or the system's; its cache never outlives `max_ttl`, and a negative
/// answer is not cached past `min_ttl`.
pub fn resolver(config: &DnsConfig) -> Result<TokioResolver, ResolverError> {
    let mut builder = if config.servers.is_empty() {
        TokioResolver::builder_tokio()?
    } else {
        let servers = config
            .servers
            .iter()
            .map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            })
            .collect();
        TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        )
    };
    let options = builder.options_mut();
    options.timeout = config.timeout;
    options.attempts = 2;
    options.positive_max_ttl = Some(config.max_ttl);
    options.negative_max_ttl = Some(config.min_ttl);
    Ok(builder.build()?)
}

/// Looks `entry` up once; returns what was found (sorted) and how long it holds.
pub async fn lookup(
    resolver: &TokioResolver,
    entry: &DnsBackend,
    timeout: Duration,
) -> Result<(Vec<Found>, Duration), LookupError> {
    let lookup = async {
        if entry.srv {
            srv(resolver, &entry.name).await
        } else {
            addresses(resolver, &entry.name, entry.port).await
        }
    };
    // The resolver retries; this bounds the whole lookup (SRV and its targets).
    let (mut found, until) = tokio::time::timeout(timeout * 4, lookup)
        .await
        .map_err(|_| LookupError::Timeout(timeout * 4))??;
    if found.is_empty() {
        return Err(LookupError::Empty);
    }
    found.sort();
    found.dedup();
    Ok((found, until.saturating_duration_since(Instant::now())))
}

async fn addresses(
    resolver: &TokioResolver,
    name: &str,
    port: u16,
) -> Result<(Vec<Found>, Instant), LookupError> {
    let answer = resolver.lookup_ip(name).await?;
    let host: Arc<str> = name.trim_end_matches('.').into();
    let found = answer
        .iter()
        .map(|ip| Found {
            address: SocketAddr::new(ip, port),
            host: Arc::clone(&host),
        })
        .collect();
    Ok((found, answer.valid_until()))
}

/// SRV records of the lowest priority, each target resolved to its addresses.
async fn srv(resolver: &TokioResolver, name: &str) -> Result<(Vec<Found>, Instant), LookupError> {
    let answer = resolver.srv_lookup(name).await?;
    let mut until = answer.valid_until();
    let records: Vec<_> = answer
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::SRV(srv) => Some(srv.clone()),
            _ => None,
        })
        .collect();
    let Some(best) = records.iter().map(|s| s.priority).min() else {
        return Err(LookupError::Empty);
    };
    let mut found = Vec::new();
    for record in records.iter().filter(|s| s.priority == best) {
        let target = record.target.to_string();
        let (addresses, target_until) = addresses(resolver, &target, record.port).await?;
        until = until.min(target_until);
        found.extend(addresses);
    }
    Ok((found, until))
}
