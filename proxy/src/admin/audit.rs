//! The audit trail: every request that may change the proxy is logged as one line
//! under the `switchyard::audit` target (who, what, the state before and after, the
//! answer) and counted in `switchyard_admin_mutations_total`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::server::Server;

/// What a mutation path acts on, for the audit line and the metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// `/pools/{pool}/backends/{address}[/{action}]`.
    Backend {
        pool: String,
        address: String,
        action: &'static str,
    },
    /// `/pools/{pool}/backends`.
    Pool { pool: String },
    /// `/routes/{route}/{action}`.
    Route { route: String, action: &'static str },
    /// `/reload`.
    Reload,
    /// `/upgrade`: hand over to a new process.
    Upgrade,
    /// Anything else (answered 404 or 405).
    Other,
}

impl Subject {
    /// Recognises the path of a mutation.
    pub fn of(method: &Method, path: &str) -> Subject {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            ["pools", pool, "backends"] => Subject::Pool {
                pool: (*pool).to_string(),
            },
            ["pools", pool, "backends", address] => Subject::Backend {
                pool: (*pool).to_string(),
                address: (*address).to_string(),
                action: "remove_backend",
            },
            ["pools", pool, "backends", address, action] => Subject::Backend {
                pool: (*pool).to_string(),
                address: (*address).to_string(),
                action: match *action {
                    "drain" => "drain",
                    "enable" => "enable",
                    "disable" => "disable",
                    "weight" => "weight",
                    _ => "other",
                },
            },
            ["routes", route, rest @ ..] => Subject::Route {
                route: (*route).to_string(),
                action: match (rest, method) {
                    (["switch"], _) => "switch",
                    (["split"], _) => "split",
                    (["rollout"], &Method::DELETE) | (["rollout", "abort"], _) => "rollout_abort",
                    (["rollout"], _) => "rollout",
                    _ => "other",
                },
            },
            ["reload"] => Subject::Reload,
            ["upgrade"] => Subject::Upgrade,
            _ => Subject::Other,
        }
    }

    /// The metric label.
    pub fn action(&self) -> &'static str {
        match self {
            Subject::Backend { action, .. } | Subject::Route { action, .. } => action,
            Subject::Pool { .. } => "add_backend",
            Subject::Reload => "reload",
            Subject::Upgrade => "upgrade",
            Subject::Other => "other",
        }
    }

    /// The state the request may change, as it is now.
    pub fn describe(&self, server: &Server) -> Value {
        let snapshot = server.snapshot();
        match self {
            Subject::Backend { pool, address, .. } => snapshot
                .pools
                .get(pool)
                .and_then(|p| p.backends.iter().find(|b| b.is_called(address)))
                .map_or(Value::Null, |b| {
                    json!({
                        "admin_state": b.state.admin_state().as_str(),
                        "weight": b.state.weight.load(Ordering::Relaxed),
                    })
                }),
            Subject::Pool { pool } => snapshot.pools.get(pool).map_or(Value::Null, |p| {
                json!(
                    p.backends
                        .iter()
                        .map(|b| b.key.to_string())
                        .collect::<Vec<_>>()
                )
            }),
            Subject::Route { route, .. } => {
                let target = snapshot.route(route).map(|r| r.target.to_json());
                let rollout = server.rollout_json(route).map(
                    |r| json!({ "state": r["state"], "to": r["to"], "percent": r["percent"] }),
                );
                json!({ "target": target, "rollout": rollout })
            }
            Subject::Reload => json!({
                "listeners": snapshot.config.listeners.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
                "routes": snapshot.config.routes.len(),
                "pools": snapshot.config.pools.keys().collect::<Vec<_>>(),
                "plugins": snapshot.config.plugins.keys().collect::<Vec<_>>(),
            }),
            Subject::Upgrade => crate::process::to_json(),
            Subject::Other => Value::Null,
        }
    }
}

/// Who made a request: the client address and how it proved itself.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub address: SocketAddr,
    /// `token` (a valid bearer token) or `open` (no token is configured).
    pub via: &'static str,
}

/// One mutation on its way through: who asked for what.
#[derive(Debug)]
pub struct Entry {
    pub caller: Caller,
    pub method: Method,
    pub path: String,
    pub subject: Subject,
    /// The state before the endpoint ran.
    pub before: Value,
}

impl Entry {
    /// Notes the request and the state it may change, before the endpoint runs.
    pub fn begin(server: &Server, caller: Caller, method: &Method, path: &str) -> Entry {
        let subject = Subject::of(method, path);
        Entry {
            caller,
            method: method.clone(),
            path: path.to_string(),
            before: subject.describe(server),
            subject,
        }
    }

    /// Logs and counts the mutation once its endpoint answered `status`.
    pub fn finish(self, server: &Server, status: StatusCode) {
        let applied = status.is_success();
        let after = self.subject.describe(server);
        server
            .metrics()
            .control()
            .mutation(self.subject.action(), applied);
        tracing::info!(target: "switchyard::audit", caller = %self.caller.address, via = self.caller.via,
            method = %self.method, path = %self.path, action = self.subject.action(),
            status = status.as_u16(), before = %self.before, after = %after,
            "{}", if applied { "admin change applied" } else { "admin change rejected" });
    }
}

/// Logs one mutation refused before its endpoint (wrong host, cross-site, no JSON,
/// no valid token); nothing changed.
pub fn refused(caller: SocketAddr, method: &Method, path: &str, status: StatusCode, why: &str) {
    tracing::warn!(target: "switchyard::audit", caller = %caller, method = %method, path,
        status = status.as_u16(), why, "admin request refused");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_what_a_mutation_acts_on() {
        let post = Method::POST;
        assert_eq!(
            Subject::of(&post, "/pools/app/backends/127.0.0.1:1/drain").action(),
            "drain"
        );
        assert_eq!(
            Subject::of(&Method::DELETE, "/pools/app/backends/127.0.0.1:1").action(),
            "remove_backend"
        );
        assert_eq!(
            Subject::of(&post, "/pools/app/backends").action(),
            "add_backend"
        );
        assert_eq!(Subject::of(&post, "/routes/web/split").action(), "split");
        assert_eq!(
            Subject::of(&Method::DELETE, "/routes/web/rollout").action(),
            "rollout_abort"
        );
        assert_eq!(
            Subject::of(&post, "/routes/web/rollout").action(),
            "rollout"
        );
        assert_eq!(Subject::of(&post, "/reload").action(), "reload");
        assert_eq!(Subject::of(&post, "/upgrade").action(), "upgrade");
        assert_eq!(Subject::of(&post, "/status").action(), "other");
    }
}
