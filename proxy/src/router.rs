//! Host and path routing for one listener: pure, synchronous, allocation-free per request.

use std::collections::HashMap;
use std::sync::Arc;

use crate::metrics::RouteMetrics;

/// What a matched route carries to the rest of the pipeline.
#[derive(Debug)]
pub struct Route {
    pub name: Arc<str>,
    /// The pool (or pools, during a canary) this route sends to.
    pub target: crate::traffic::RouteTarget,
    pub path_prefix: String,
    /// Forward the client's original path bytes instead of the normalised path.
    pub forward_original_path: bool,
    pub metrics: RouteMetrics,
}

/// Routes of one listener: host-specific ones first, then those for any host; within
/// each, the longest matching path prefix wins. Paths are matched in their
/// normalised form ([`crate::path::normalize`]).
#[derive(Debug, Default)]
pub struct Router {
    by_host: HashMap<String, Vec<Arc<Route>>>,
    any_host: Vec<Arc<Route>>,
    upgrades: Vec<String>,
}

impl Router {
    /// A router for a listener that allows upgrades to `upgrades` (lower-case tokens).
    pub fn with_upgrades(upgrades: Vec<String>) -> Self {
        Self {
            upgrades,
            ..Self::default()
        }
    }

    /// Whether the listener allows upgrading to `protocol` (an `Upgrade` token,
    /// compared without case and without a `/version`).
    pub fn allows_upgrade(&self, protocol: &str) -> bool {
        let name = protocol.split('/').next().unwrap_or("").trim();
        self.upgrades.iter().any(|u| u.eq_ignore_ascii_case(name))
    }

    /// Adds a route; `host` must already be lower-case without a port.
    pub fn add(&mut self, host: Option<&str>, route: Arc<Route>) {
        let list = match host {
            Some(h) => self.by_host.entry(h.to_string()).or_default(),
            None => &mut self.any_host,
        };
        list.push(route);
        list.sort_by_key(|r| std::cmp::Reverse(r.path_prefix.len()));
    }

    /// The route for a request's host (any case, port allowed) and path.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<Route>> {
        if let Some(host) = host.map(strip_port) {
            let found = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                self.by_host.get(&host.to_ascii_lowercase())
            } else {
                self.by_host.get(host)
            };
            if let Some(route) = found.and_then(|routes| longest_prefix(routes, path)) {
                return Some(route);
            }
        }
        longest_prefix(&self.any_host, path)
    }

    /// Number of routes, for `/status`.
    pub fn len(&self) -> usize {
        self.any_host.len() + self.by_host.values().map(Vec::len).sum::<usize>()
    }

    /// True when no route is defined.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn longest_prefix<'a>(routes: &'a [Arc<Route>], path: &str) -> Option<&'a Arc<Route>> {
    routes.iter().find(|r| prefix_matches(&r.path_prefix, path))
}

/// `/api` matches `/api`, `/api/` and `/api/users` but not `/apiary`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => {
            rest.is_empty()
                || prefix.ends_with('/')
                || rest.starts_with('/')
                || rest.starts_with('?')
        }
        None => false,
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    host.rsplit_once(':')
        .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(name: &str, prefix: &str) -> Arc<Route> {
        Arc::new(Route {
            name: name.into(),
            target: crate::traffic::RouteTarget::Pool("p".into()),
            path_prefix: prefix.into(),
            forward_original_path: false,
            metrics: crate::metrics::Metrics::new().route(name),
        })
    }

    #[test]
    fn longest_prefix_and_host_precedence() {
        let mut r = Router::default();
        r.add(None, route("root", "/"));
        r.add(None, route("api", "/api"));
        r.add(None, route("api-v2", "/api/v2"));
        r.add(Some("app.example.com"), route("app", "/"));
        let name = |host, path| r.route(host, path).map(|x| x.name.to_string());
        assert_eq!(name(None, "/api/v2/users").as_deref(), Some("api-v2"));
        assert_eq!(name(None, "/api/v1").as_deref(), Some("api"));
        assert_eq!(name(None, "/apiary").as_deref(), Some("root"));
        assert_eq!(
            name(Some("App.Example.com:8080"), "/api").as_deref(),
            Some("app")
        );
        assert_eq!(
            name(Some("other.example.com"), "/api").as_deref(),
            Some("api")
        );
    }

    #[test]
    fn no_route_without_catch_all() {
        let mut r = Router::default();
        r.add(Some("a.example"), route("a", "/x"));
        assert!(r.route(Some("a.example"), "/y").is_none());
        assert!(r.route(None, "/x").is_none());
        assert_eq!(strip_port("[::1]:80"), "[::1]");
    }
}
