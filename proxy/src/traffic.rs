//! Runtime traffic switching for deploys: a route moved to another pool (blue/green)
//! or split across pools by percentage (canary), optionally sticky per client.
//!
//! Overrides live beside the config and are applied by rebuilding the snapshot, so a
//! switch is one atomic swap: no request sees a half-switched route.

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderMap;

use crate::balance::request_key_hash;
use crate::config::HashOn;

/// Where a route sends its requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Every request to one pool.
    Pool(Arc<str>),
    /// Requests spread over pools by weight; with `sticky`, a client keeps its side.
    Split {
        pools: Vec<(Arc<str>, u32)>,
        sticky: Option<HashOn>,
    },
}

impl RouteTarget {
    /// The pool for one request.
    pub fn choose(&self, headers: &HeaderMap) -> &Arc<str> {
        match self {
            RouteTarget::Pool(pool) => pool,
            RouteTarget::Split { pools, sticky } => {
                let total: u64 = pools.iter().map(|(_, w)| u64::from(*w)).sum();
                if total == 0 {
                    return &pools[0].0;
                }
                let roll = sticky
                    .as_ref()
                    .and_then(|on| request_key_hash(on, headers, None))
                    .map_or_else(|| fastrand::u64(..total), |h| h % total);
                let mut acc = 0;
                for (pool, weight) in pools {
                    acc += u64::from(*weight);
                    if roll < acc {
                        return pool;
                    }
                }
                &pools[pools.len() - 1].0
            }
        }
    }

    /// Every pool this target may send to.
    pub fn pools(&self) -> Vec<&Arc<str>> {
        match self {
            RouteTarget::Pool(p) => vec![p],
            RouteTarget::Split { pools, .. } => pools.iter().map(|(p, _)| p).collect(),
        }
    }

    /// JSON for `/status` and admin answers.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            RouteTarget::Pool(p) => serde_json::json!({ "pool": p.as_ref() }),
            RouteTarget::Split { pools, sticky } => {
                let split: serde_json::Map<String, serde_json::Value> = pools
                    .iter()
                    .map(|(p, w)| (p.to_string(), serde_json::json!(w)))
                    .collect();
                serde_json::json!({
                    "split": split,
                    "sticky": sticky.as_ref().map(sticky_name),
                })
            }
        }
    }
}

impl RouteTarget {
    /// The target in words, for logs and the event timeline: `all traffic to pool
    /// green`, or `split blue 90%, green 10%` (with its stickiness).
    pub fn describe(&self) -> String {
        match self {
            RouteTarget::Pool(p) => format!("all traffic to pool {p}"),
            RouteTarget::Split { pools, sticky } => {
                let shares: Vec<String> = pools.iter().map(|(p, w)| format!("{p} {w}%")).collect();
                match sticky {
                    Some(on) => format!(
                        "split {} (sticky on {})",
                        shares.join(", "),
                        sticky_name(on)
                    ),
                    None => format!("split {}", shares.join(", ")),
                }
            }
        }
    }
}

/// The rules every target set at run time follows, through the admin API or the
/// state file: a split names at least one pool and its percentages add up to 100; a
/// split over one pool is a plain switch to it. Whether the pools exist is the
/// caller's check (it knows the live config).
pub fn checked(target: RouteTarget) -> Result<RouteTarget, String> {
    let RouteTarget::Split { pools, sticky } = target else {
        return Ok(target);
    };
    if pools.is_empty() {
        return Err("a split needs at least one pool".into());
    }
    let total: u64 = pools.iter().map(|(_, w)| u64::from(*w)).sum();
    if total != 100 {
        return Err(format!(
            "split percentages must add up to 100 (these add up to {total})"
        ));
    }
    if pools.len() == 1 {
        return Ok(RouteTarget::Pool(Arc::clone(&pools[0].0)));
    }
    Ok(RouteTarget::Split { pools, sticky })
}

/// Parses `header:NAME` or `cookie:NAME`.
pub fn parse_sticky(text: &str) -> Result<HashOn, String> {
    if let Some(name) = text.strip_prefix("header:") {
        return http::HeaderName::from_bytes(name.as_bytes())
            .map(HashOn::Header)
            .map_err(|_| format!("`{name}` is not a header name"));
    }
    if let Some(name) = text.strip_prefix("cookie:") {
        return Ok(HashOn::Cookie(name.to_string()));
    }
    Err(format!(
        "sticky must be \"header:NAME\" or \"cookie:NAME\", not `{text}`"
    ))
}

/// `header:NAME` / `cookie:NAME`, the inverse of [`parse_sticky`].
pub fn sticky_name(on: &HashOn) -> String {
    match on {
        HashOn::Header(h) => format!("header:{h}"),
        HashOn::Cookie(c) => format!("cookie:{c}"),
        HashOn::ClientIp => "client-ip".to_string(),
    }
}

/// A runtime override of one route, remembered with the pool the config named when
/// it was made: if a later config changes that route's pool, the config wins.
#[derive(Debug, Clone)]
pub struct RouteOverride {
    pub target: RouteTarget,
    pub config_pool: String,
}

/// All route overrides, by route name.
pub type Overrides = HashMap<String, RouteOverride>;

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pools: &[(&str, u32)]) -> RouteTarget {
        RouteTarget::Split {
            pools: pools.iter().map(|(p, w)| (Arc::from(*p), *w)).collect(),
            sticky: None,
        }
    }

    #[test]
    fn splits_add_up_to_100_and_one_pool_is_a_switch() {
        assert!(
            checked(split(&[]))
                .unwrap_err()
                .contains("at least one pool")
        );
        assert!(
            checked(split(&[("blue", 90), ("green", 20)]))
                .unwrap_err()
                .contains("add up to 110")
        );
        assert!(checked(split(&[("blue", 0), ("green", 0)])).is_err());
        assert_eq!(
            checked(split(&[("green", 100)])),
            Ok(RouteTarget::Pool("green".into()))
        );
        let canary = split(&[("blue", 90), ("green", 10)]);
        assert_eq!(checked(canary.clone()), Ok(canary));
    }
}
