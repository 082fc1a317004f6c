//! A pool: its backends, its balancer and its policies, as of one config snapshot.

// foldhash: pools are looked up by name on every request; the names come from
// the config file, never from clients.
use foldhash::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::backend::{Backend, BackendState, Usability};
use super::client::UpstreamClient;
use super::connect::PoolTls;
use super::policies::PoolPolicies;
use super::sticky::Sticky;
use crate::balance::{Balancer, PickContext};
use crate::breaker::BreakerState;
use crate::config::Limits;
use crate::config::PoolConfig;
use crate::rollout::PoolTraffic;

/// One retry costs this many milli-tokens; each first attempt deposits
/// `budget_percent * 10`, so 20 % means one retry per five requests.
const RETRY_COST: i64 = 1000;
/// A pool starts with (and may save up to) this many retries, so a quiet pool can
/// still retry a single failure.
const RETRY_RESERVE: i64 = 10 * RETRY_COST;
const RETRY_CAP: i64 = 100 * RETRY_COST;

/// A pool of interchangeable backends.
#[derive(Debug)]
pub struct Pool {
    pub name: Arc<str>,
    pub config: PoolConfig,
    pub backends: Vec<Backend>,
    pub balancer: Balancer,
    /// Plugins standing in for (or beside) the native policies.
    pub policies: PoolPolicies,
    /// Request, failure and latency counters that rollout guards read; kept across rebuilds.
    pub traffic: Arc<PoolTraffic>,
    /// TLS to the backends (each backend has its own client); kept across rebuilds,
    /// with the backends' clients, while the pool's `tls` table and files stay the same.
    pub tls: Option<Arc<PoolTls>>,
    /// The backends' sticky cookies, when the pool has `[pool.NAME.sticky]`.
    pub sticky: Option<Sticky>,
    retry_tokens: AtomicI64,
}

impl Pool {
    /// Builds a pool, reusing the state of backends that `previous` already had.
    pub fn build(config: PoolConfig, previous: Option<&Pool>, policies: PoolPolicies) -> Self {
        Self::build_with(config, previous, policies, &Limits::default())
    }

    /// [`Pool::build`] with the limits a TLS pool's client is built with.
    pub fn build_with(
        config: PoolConfig,
        previous: Option<&Pool>,
        policies: PoolPolicies,
        limits: &Limits,
    ) -> Self {
        let kept_tls = previous
            .and_then(|p| p.tls.as_ref())
            .filter(|tls| config.tls.as_ref().is_some_and(|s| tls.built_from(s)));
        let tls = config
            .tls
            .as_ref()
            .map(|settings| kept_tls.map_or_else(|| Arc::new(PoolTls::new(settings)), Arc::clone));
        let backends: Vec<Backend> = config
            .backends
            .iter()
            .map(|b| {
                let kept = previous.and_then(|p| {
                    let old = p.backends.iter().find(|o| o.address == b.address)?;
                    let old_config_weight = p.config_weight(b.address);
                    if old_config_weight != Some(b.weight) {
                        old.state.weight.store(b.weight, Ordering::Relaxed);
                    }
                    Some(Arc::clone(&old.state))
                });
                let state = kept.unwrap_or_else(|| Arc::new(BackendState::new(b.weight)));
                let backend = Backend::with_state(b.address, state)
                    .resolved_from(b.origin.clone())
                    .named(b.name.clone());
                let Some(tls) = &tls else {
                    return backend;
                };
                // A backend keeps its connections while the pool's TLS and its name stay.
                let client = kept_tls
                    .and_then(|_| previous?.backends.iter().find(|o| o.address == b.address))
                    .filter(|o| o.origin == b.origin)
                    .and_then(|o| o.client.clone())
                    .unwrap_or_else(|| {
                        Arc::new(UpstreamClient::to_tls_backend(
                            limits,
                            tls,
                            b.address,
                            b.origin.as_deref(),
                        ))
                    });
                backend.over_tls(client)
            })
            .collect();
        if config.health.is_none() {
            for b in &backends {
                b.state.health.reset();
            }
        }
        let balancer = Balancer::build(&config.balance, &backends);
        let sticky = config
            .sticky
            .as_ref()
            .map(|s| Sticky::build(s, &config.name, &backends));
        Self {
            name: config.name.as_str().into(),
            retry_tokens: AtomicI64::new(
                previous.map_or(RETRY_RESERVE, |p| p.retry_tokens.load(Ordering::Relaxed)),
            ),
            traffic: previous.map_or_else(Arc::default, |p| Arc::clone(&p.traffic)),
            config,
            backends,
            balancer,
            policies,
            tls,
            sticky,
        }
    }

    /// The weight the config gives the backend at `address` (runtime changes aside).
    pub fn config_weight(&self, address: std::net::SocketAddr) -> Option<u32> {
        self.config.backend_weight(address)
    }

    /// The native pick: a usable backend not rejected by `exclude`, chosen by the
    /// pool's balancer. Whether a routing plugin decides instead is the select step's
    /// call (`crate::policy::routing::select`).
    pub fn pick(&self, ctx: &PickContext, exclude: impl Fn(usize) -> bool) -> Option<usize> {
        let now = ctx.now_ms;
        let panic = self.in_panic_mode(now);
        self.balancer.pick(&self.backends, ctx, |i| {
            !exclude(i) && self.selectable(i, now, panic)
        })
    }

    /// Whether backend `i` may be chosen for a new request: usable (anything goes in
    /// panic mode) and not set to weight 0, which takes a backend out of every
    /// balancer's and routing plugin's choice (a sticky cookie still reaches it).
    pub fn selectable(&self, i: usize, now_ms: u64, panic: bool) -> bool {
        let Some(b) = self.backends.get(i) else {
            return false;
        };
        b.state.weight.load(Ordering::Relaxed) > 0 && (panic || b.state.is_usable(now_ms))
    }

    /// Backends that could take a request right now.
    pub fn usable_count(&self, now_ms: u64) -> usize {
        self.backends
            .iter()
            .filter(|b| b.state.is_usable(now_ms))
            .count()
    }

    /// Why no backend of this pool could take a request now, backend by backend
    /// (`None` when one can). Used to refuse switching traffic where it must fail.
    pub fn unusable_reason(&self, now_ms: u64) -> Option<String> {
        let mut why = Vec::with_capacity(self.backends.len());
        for b in &self.backends {
            let state = &b.state;
            let reason = match state.usability(now_ms) {
                Usability::Usable => return None,
                Usability::AdminOff => state.admin_state().as_str().to_string(),
                Usability::HealthDown => "health checks down".to_string(),
                Usability::BreakerOpen => match state.breaker.state() {
                    BreakerState::Open => format!(
                        "circuit breaker open ({} ms left)",
                        state.breaker.open_until_ms().saturating_sub(now_ms)
                    ),
                    _ => "circuit breaker half-open, no trial left".to_string(),
                },
            };
            why.push(format!("{} {reason}", b.key));
        }
        Some(if why.is_empty() {
            format!("pool `{}` has no backends", self.name)
        } else {
            format!(
                "pool `{}` has no usable backend: {}",
                self.name,
                why.join(", ")
            )
        })
    }

    /// Envoy's panic threshold: when too few backends are usable, spread over all of
    /// them rather than overload the few that are left.
    pub fn in_panic_mode(&self, now_ms: u64) -> bool {
        let Some(threshold) = self.config.failover.panic_threshold else {
            return false;
        };
        let total = self.backends.len();
        total > 0 && self.usable_count(now_ms) * 100 < threshold as usize * total
    }

    /// Whether one more backend may be ejected by the breaker without exceeding
    /// `max_ejected_percent` of the pool. One ejection is always allowed (as in Envoy),
    /// so a pool of one can still fail fast.
    pub fn may_eject(&self) -> bool {
        let total = self.backends.len();
        let ejected = self
            .backends
            .iter()
            .filter(|b| b.state.breaker.state() != BreakerState::Closed)
            .count();
        ejected == 0
            || (ejected + 1) * 100 <= self.config.breaker.max_ejected_percent as usize * total
    }

    /// Credits the retry budget for a first attempt.
    pub fn deposit_retry_budget(&self) {
        let credit = i64::from(self.config.retry.budget_percent) * RETRY_COST / 100;
        let _ = self
            .retry_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t < RETRY_CAP).then(|| (t + credit).min(RETRY_CAP))
            });
    }

    /// Takes one retry from the budget; `false` when the budget is spent.
    pub fn withdraw_retry_budget(&self) -> bool {
        self.retry_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                (t >= RETRY_COST).then_some(t - RETRY_COST)
            })
            .is_ok()
    }

    /// Gives back a retry taken from the budget but never sent (the request was
    /// cancelled during the backoff).
    pub fn refund_retry_budget(&self) {
        let _ = self
            .retry_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                Some((t + RETRY_COST).min(RETRY_CAP))
            });
    }

    /// Retries the budget holds right now (whole retries), for `/status` and tests.
    pub fn retry_budget(&self) -> i64 {
        self.retry_tokens.load(Ordering::Relaxed) / RETRY_COST
    }
}

/// All pools of a snapshot, by name.
#[derive(Debug, Default)]
pub struct PoolSet {
    pools: HashMap<Arc<str>, Arc<Pool>>,
}

impl PoolSet {
    /// Builds every pool of the config, carrying backend state over from `previous`.
    pub fn build<'a>(
        configs: impl Iterator<Item = &'a PoolConfig>,
        previous: Option<&PoolSet>,
        limits: &Limits,
        mut policies: impl FnMut(&PoolConfig) -> PoolPolicies,
    ) -> Self {
        let pools = configs
            .map(|c| {
                let old = previous.and_then(|p| p.get(&c.name));
                let pool = Pool::build_with(c.clone(), old.map(Arc::as_ref), policies(c), limits);
                (Arc::clone(&pool.name), Arc::new(pool))
            })
            .collect();
        Self { pools }
    }

    /// The pool named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Pool>> {
        self.pools.get(name)
    }

    /// Every pool, sorted by name for stable output.
    pub fn iter_sorted(&self) -> Vec<&Arc<Pool>> {
        let mut pools: Vec<_> = self.pools.values().collect();
        pools.sort_by(|a, b| a.name.cmp(&b.name));
        pools
    }
}
