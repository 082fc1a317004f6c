//! The immutable snapshot every request reads: routers, pools and their policies.
//!
//! A snapshot is built whole from a validated [`Config`] and published with one
//! `ArcSwap::store`, so no request ever sees half a config. Backend state (health,
//! breaker, counters, runtime weight) is carried from the previous snapshot by pool
//! name and address, the way Pingora's `Backends::do_update` reuses health by key,
//! but in a single swap.

// foldhash: routers are looked up by listener name on every request; the
// names come from the config file, never from clients.
use foldhash::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::plugin::PluginMap;
use crate::router::{Route, Router};
use crate::traffic::{Overrides, RouteTarget};
use crate::upstream::{PoolPolicies, PoolSet};

/// One consistent view of the configuration and its runtime objects.
#[derive(Debug)]
pub struct Snapshot {
    pub config: Arc<Config>,
    routers: HashMap<String, Router>,
    routes: HashMap<String, Arc<Route>>,
    pub pools: PoolSet,
}

impl Snapshot {
    /// Builds a snapshot, reusing backend state from `previous`; pools resolve their
    /// `plugin:NAME` references in `plugins`.
    pub fn build(
        config: Config,
        previous: Option<&Snapshot>,
        metrics: &Metrics,
        overrides: &Overrides,
        plugins: &PluginMap,
    ) -> Snapshot {
        let pools = PoolSet::build(
            config.pools.values(),
            previous.map(|p| &p.pools),
            &config.limits,
            |pool| PoolPolicies::resolve(pool, plugins, metrics),
        );
        let mut routers: HashMap<String, Router> = config
            .listeners
            .iter()
            .map(|l| (l.name.clone(), Router::with_upgrades(l.upgrades.clone())))
            .collect();
        let mut routes = HashMap::default();
        for r in &config.routes {
            let target = overrides
                .get(&r.name)
                .filter(|o| {
                    o.config_pool == r.pool
                        && o.target.pools().iter().all(|p| pools.get(p).is_some())
                })
                .map_or_else(
                    || RouteTarget::Pool(r.pool.as_str().into()),
                    |o| o.target.clone(),
                );
            let route = Arc::new(Route {
                name: r.name.as_str().into(),
                target,
                path_prefix: r.path_prefix.clone(),
                forward_original_path: r.forward_original_path,
                metrics: metrics.route(&r.name),
            });
            routes.insert(r.name.clone(), Arc::clone(&route));
            if let Some(router) = routers.get_mut(&r.listener) {
                router.add(r.host.as_deref(), route);
            }
        }
        Snapshot {
            config: Arc::new(config),
            routers,
            routes,
            pools,
        }
    }

    /// The route named `name` (for the admin API), from any listener.
    pub fn route(&self, name: &str) -> Option<&Arc<Route>> {
        self.routes.get(name)
    }

    /// The router of a listener.
    pub fn router(&self, listener: &str) -> Option<&Router> {
        self.routers.get(listener)
    }
}
