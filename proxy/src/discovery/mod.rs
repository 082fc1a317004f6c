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
use tracing::{debug, info, warn};

pub use resolve::{Found, LookupError, ResolverError};

use crate::config::{BackendConfig, Config, DnsBackend, DnsConfig};
use crate::metrics::Metrics;

/// One DNS entry of one pool.
type EntryKey = (String, DnsBackend);

/// One lookup's outcome: what was found and how long it holds.
type Answer = Result<(Vec<Found>, Duration), LookupError>;

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

    /// Everything an apply of `config` needs from DNS, without changing what runs:
    /// the resolver (a new one when `[dns]` changed) and a first lookup of each
    /// entry not followed yet (all of them with a new resolver), so a new pool
    /// starts with its addresses. A failed lookup is not an error: the entry starts
    /// with no address (or its last good ones) and is retried with backoff once
    /// committed. Only a resolver that cannot be set up fails, and then the apply.
    pub async fn prepare(&self, config: &Config) -> Result<DiscoveryPlan, resolve::ResolverError> {
        let wanted: Vec<EntryKey> = config
            .pools
            .iter()
            .flat_map(|(pool, p)| p.dns.iter().map(|d| (pool.clone(), d.clone())))
            .collect();
        let (resolver, new_resolver, new) = {
            let inner = self.inner.lock();
            let rebuild = inner.dns.as_ref() != Some(&config.dns) && !wanted.is_empty();
            let (resolver, new_resolver) = if rebuild {
                let resolver = Arc::new(resolve::resolver(&config.dns)?);
                (Some(Arc::clone(&resolver)), true)
            } else {
                (inner.resolver.clone(), false)
            };
            let new: Vec<EntryKey> = wanted
                .iter()
                .filter(|k| new_resolver || !inner.tasks.contains_key(*k))
                .cloned()
                .collect();
            (resolver, new_resolver, new)
        };
        let mut plan = DiscoveryPlan {
            dns: config.dns.clone(),
            resolver: None,
            new_resolver,
            wanted,
            first: Vec::new(),
        };
        let Some(resolver) = resolver else {
            return Ok(plan);
        };
        let mut lookups = tokio::task::JoinSet::new();
        for key in new {
            let resolver = Arc::clone(&resolver);
            let timeout = config.dns.timeout;
            lookups.spawn(async move {
                let result = resolve::lookup(&resolver, &key.1, timeout).await;
                (key, result)
            });
        }
        while let Some(joined) = lookups.join_next().await {
            if let Ok(first) = joined {
                plan.first.push(first);
            }
        }
        plan.resolver = Some(resolver);
        Ok(plan)
    }

    /// `config` with the addresses found laid into each pool's backends: the plan's
    /// first answers, else the last good answer of an entry already followed (an
    /// address the pool already lists by IP is not added twice).
    pub fn overlay(&self, plan: &DiscoveryPlan, mut config: Config) -> Config {
        let results = self.results.lock();
        for (name, pool) in &mut config.pools {
            for entry in &pool.dns {
                let key = (name.clone(), entry.clone());
                let first = plan.first.iter().find_map(|(k, result)| match result {
                    Ok((found, _)) if *k == key => Some(found),
                    _ => None,
                });
                let Some(found) = first.or_else(|| results.get(&key)) else {
                    continue;
                };
                for f in found {
                    if !pool.backends.iter().any(|b| b.address == f.address) {
                        pool.backends.push(BackendConfig {
                            address: f.address,
                            weight: entry.weight,
                            origin: Some(Arc::clone(&f.host)),
                            name: None,
                        });
                    }
                }
            }
        }
        config
    }

    /// Makes the plan the running state, once its config is live (cannot fail):
    /// entries gone stop being followed, a new resolver replaces the old one, the
    /// first answers are kept and every new entry is kept fresh from now on.
    pub fn commit(&self, plan: DiscoveryPlan) {
        let DiscoveryPlan {
            dns,
            resolver,
            new_resolver,
            wanted,
            first,
        } = plan;
        let mut inner = self.inner.lock();
        let mut results = self.results.lock();
        if new_resolver {
            inner.resolver.clone_from(&resolver);
            inner.dns = Some(dns.clone());
            for (_, cancel) in inner.tasks.drain() {
                cancel.cancel();
            }
        }
        inner.tasks.retain(|key, cancel| {
            let keep = wanted.contains(key);
            if !keep {
                cancel.cancel();
            }
            keep
        });
        // Answers of entries still wanted stay served until their next lookup.
        results.retain(|key, _| wanted.contains(key));
        drop(results);
        let Some(resolver) = resolver else {
            return;
        };
        for (key, result) in first {
            if inner.tasks.contains_key(&key) {
                continue;
            }
            let cancel = self.shutdown.child_token();
            inner.tasks.insert(key.clone(), cancel.clone());
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
}

/// What [`Discovery::prepare`] found for a config, to lay over it
/// ([`Discovery::overlay`]) and to make the running state once it is applied
/// ([`Discovery::commit`]). Dropping it changes nothing.
pub struct DiscoveryPlan {
    dns: DnsConfig,
    /// The resolver to follow the entries with; `None` while no pool names a host.
    resolver: Option<Arc<TokioResolver>>,
    /// `resolver` was built for this config's `[dns]` table.
    new_resolver: bool,
    wanted: Vec<EntryKey>,
    /// First lookups of the entries not followed yet.
    first: Vec<(EntryKey, Answer)>,
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
    fn record(&mut self, result: Answer, notify: bool) -> Duration {
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
