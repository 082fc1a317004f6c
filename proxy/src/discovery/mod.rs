//! Backends named by DNS: every `host:port` (or `srv`) entry of a pool is resolved,
//! each address found becomes a backend, and the name is resolved again when its
//! records' TTL runs out (bounded by `dns.min_ttl` and `dns.max_ttl`). A changed
//! answer rebuilds the snapshot, so addresses that stay keep their backend state
//! (health, breaker, counters) and new ones start fresh. A failed lookup keeps the
//! last good addresses and is retried with backoff.

mod resolve;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

pub use resolve::{Found, LookupError};

use crate::config::{BackendConfig, Config, DnsBackend, DnsConfig};
use crate::metrics::Metrics;

/// One DNS entry of one pool.
type EntryKey = (String, DnsBackend);

struct Inner {
    dns: Option<DnsConfig>,
    resolver: Option<Arc<TokioResolver>>,
    tasks: HashMap<EntryKey, CancellationToken>,
}

/// Resolves the DNS entries of every pool and keeps them fresh.
pub struct Discovery {
    inner: Mutex<Inner>,
    /// The last good answer per entry; written by the refresh tasks.
    results: Arc<Mutex<HashMap<EntryKey, Vec<Found>>>>,
    changed: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
}

impl Discovery {
    /// Nothing resolved yet; tasks stop at `shutdown`.
    pub fn new(metrics: Arc<Metrics>, shutdown: CancellationToken) -> Self {
        Self {
            inner: Mutex::new(Inner {
                dns: None,
                resolver: None,
                tasks: HashMap::new(),
            }),
            results: Arc::default(),
            changed: watch::Sender::new(0),
            metrics,
            shutdown,
        }
    }

    /// Fires after an answer changed (the snapshot should be rebuilt).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Matches the running lookups to `config`: entries gone are dropped, new ones
    /// are resolved once now (so a new pool starts with its addresses) and then kept
    /// fresh; a changed `[dns]` table rebuilds the resolver.
    pub async fn sync(&self, config: &Config) {
        let wanted: Vec<EntryKey> = config
            .pools
            .iter()
            .flat_map(|(pool, p)| p.dns.iter().map(|d| (pool.clone(), d.clone())))
            .collect();
        let (resolver, new) = {
            let mut inner = self.inner.lock();
            if inner.dns.as_ref() != Some(&config.dns) && !wanted.is_empty() {
                match resolve::resolver(&config.dns) {
                    Ok(resolver) => {
                        inner.resolver = Some(Arc::new(resolver));
                        inner.dns = Some(config.dns.clone());
                        let mut results = self.results.lock();
                        for (_, cancel) in inner.tasks.drain() {
                            cancel.cancel();
                        }
                        // Keep answers (they stay served) but look every entry up again.
                        results.retain(|key, _| wanted.contains(key));
                    }
                    Err(e) => {
                        error!(error = %e, "cannot set up the DNS resolver; DNS-named backends keep their last addresses")
                    }
                }
            }
            let mut results = self.results.lock();
            inner.tasks.retain(|key, cancel| {
                let keep = wanted.contains(key);
                if !keep {
                    cancel.cancel();
                    results.remove(key);
                }
                keep
            });
            drop(results);
            let Some(resolver) = inner.resolver.clone() else {
                return;
            };
            let new: Vec<EntryKey> = wanted
                .into_iter()
                .filter(|k| !inner.tasks.contains_key(k))
                .collect();
            for key in &new {
                inner.tasks.insert(key.clone(), self.shutdown.child_token());
            }
            (resolver, new)
        };
        let dns = config.dns.clone();
        let mut first = tokio::task::JoinSet::new();
        for key in new {
            let resolver = Arc::clone(&resolver);
            let dns = dns.clone();
            first.spawn(async move {
                let result = resolve::lookup(&resolver, &key.1, dns.timeout).await;
                (key, result)
            });
        }
        while let Some(joined) = first.join_next().await {
            let Ok((key, result)) = joined else {
                continue;
            };
            let Some(cancel) = self.inner.lock().tasks.get(&key).cloned() else {
                continue;
            };
            let mut refresh = Refresh {
                key,
                resolver: Arc::clone(&resolver),
                dns: dns.clone(),
                results: Arc::clone(&self.results),
                changed: self.changed.clone(),
                metrics: Arc::clone(&self.metrics),
                cancel,
                failures: 0,
            };
            let delay = refresh.record(result, false);
            tokio::spawn(refresh.run(delay));
        }
    }

    /// `config` with the addresses found laid into each pool's backends (an address
    /// the pool already lists by IP is not added twice).
    pub fn overlay(&self, mut config: Config) -> Config {
        let results = self.results.lock();
        if results.is_empty() {
            return config;
        }
        for (name, pool) in &mut config.pools {
            for entry in &pool.dns {
                let Some(found) = results.get(&(name.clone(), entry.clone())) else {
                    continue;
                };
                for f in found {
                    if !pool.backends.iter().any(|b| b.address == f.address) {
                        pool.backends.push(BackendConfig {
                            address: f.address,
                            weight: entry.weight,
                            origin: Some(Arc::clone(&f.host)),
                        });
                    }
                }
            }
        }
        config
    }
}

/// Keeps one entry fresh.
struct Refresh {
    key: EntryKey,
    resolver: Arc<TokioResolver>,
    dns: DnsConfig,
    results: Arc<Mutex<HashMap<EntryKey, Vec<Found>>>>,
    changed: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    failures: u32,
}

impl Refresh {
    async fn run(mut self, mut delay: Duration) {
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            let result = resolve::lookup(&self.resolver, &self.key.1, self.dns.timeout).await;
            delay = self.record(result, true);
        }
    }

    /// Stores a lookup's outcome; returns when to look again.
    fn record(
        &mut self,
        result: Result<(Vec<Found>, Duration), LookupError>,
        notify: bool,
    ) -> Duration {
        let (pool, entry) = (&self.key.0, &self.key.1);
        match result {
            Ok((found, ttl)) => {
                self.metrics.dns_resolution(&entry.name, true);
                if self.failures > 0 {
                    info!(pool = %pool, name = %entry.name, "DNS name resolves again");
                }
                self.failures = 0;
                let changed = {
                    let mut results = self.results.lock();
                    if self.cancel.is_cancelled() {
                        return self.dns.max_ttl;
                    }
                    let previous = results.insert(self.key.clone(), found.clone());
                    previous.as_ref() != Some(&found)
                };
                if changed {
                    let addresses: Vec<String> =
                        found.iter().map(|f| f.address.to_string()).collect();
                    info!(pool = %pool, name = %entry.name, addresses = %addresses.join(","),
                        ttl_s = ttl.as_secs(), "DNS answer changed");
                    if notify {
                        self.changed.send_modify(|n| *n += 1);
                    }
                }
                ttl.clamp(self.dns.min_ttl, self.dns.max_ttl)
            }
            Err(e) => {
                self.metrics.dns_resolution(&entry.name, false);
                self.failures += 1;
                let kept = self.results.lock().get(&self.key).map_or(0, Vec::len);
                if self.failures == 1 {
                    warn!(pool = %pool, name = %entry.name, error = %e, kept_addresses = kept,
                        "DNS lookup failed; keeping the last good addresses");
                } else {
                    debug!(pool = %pool, name = %entry.name, error = %e, failures = self.failures, "DNS lookup failed again");
                }
                let exponent = (self.failures - 1).min(10);
                (self.dns.min_ttl * (1u32 << exponent)).min(self.dns.max_ttl)
            }
        }
    }
}
