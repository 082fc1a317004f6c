//! Where a fleet keeps things in etcd, all under its `[cluster] prefix`:
//!
//! | key (after `PREFIX/`) | value | written by |
//! |---|---|---|
//! | `state/backend/{pool}/{address}` | a backend's operator state (drain, weight) | admin changes |
//! | `state/route/{route}` | a route's switch or split | admin changes, the rollout leader |
//! | `state/member/{pool}/{address}` | a backend added or removed at run time | admin changes |
//! | `rollout/{route}` | a fleet rollout: plan and progress | admin changes, the rollout leader |
//! | `instance/{name}` | an instance's heartbeat: health view, counters, config (leased) | that instance |
//! | `leader` | the instance running rollouts (leased) | the elected instance |
//! | `config` | the shared config (`switchyard cluster push`) | the CLI |
//! | `plugin/{sha256}/{chunk}` | plugin files of the shared config, by digest | the CLI |
//!
//! Names in keys are escaped (`%` and `/`), so a pool called `a/b` cannot pose as
//! another key.

/// The shared runtime state: every key an admin change writes.
pub const STATE: &str = "state/";
/// A backend's drain, enable, disable or weight.
pub const BACKEND: &str = "state/backend/";
/// A route's switch or split.
pub const ROUTE: &str = "state/route/";
/// A backend added or removed at run time.
pub const MEMBER: &str = "state/member/";
/// A fleet rollout.
pub const ROLLOUT: &str = "rollout/";
/// An instance's heartbeat.
pub const INSTANCE: &str = "instance/";
/// The rollout leader.
pub const LEADER: &str = "leader";
/// The shared config.
pub const CONFIG: &str = "config";
/// Plugin files of the shared config, by digest.
pub const PLUGIN: &str = "plugin/";

/// Escapes a name for one key segment.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            c => out.push(c),
        }
    }
    out
}

/// The inverse of [`escape`].
pub fn unescape(segment: &str) -> String {
    segment.replace("%2F", "/").replace("%25", "%")
}

/// `state/backend/{pool}/{address}`.
pub fn backend(pool: &str, address: &str) -> String {
    format!("{BACKEND}{}/{}", escape(pool), escape(address))
}

/// `state/route/{route}`.
pub fn route(route: &str) -> String {
    format!("{ROUTE}{}", escape(route))
}

/// `state/member/{pool}/{address}`.
pub fn member(pool: &str, address: &str) -> String {
    format!("{MEMBER}{}/{}", escape(pool), escape(address))
}

/// `rollout/{route}`.
pub fn rollout(route: &str) -> String {
    format!("{ROLLOUT}{}", escape(route))
}

/// `instance/{name}`.
pub fn instance(name: &str) -> String {
    format!("{INSTANCE}{}", escape(name))
}

/// `plugin/{digest}/`: the chunks of one plugin file.
pub fn plugin(digest: &str) -> String {
    format!("{PLUGIN}{digest}/")
}

/// `plugin/{digest}/{index}`.
pub fn plugin_chunk(digest: &str, index: usize) -> String {
    format!("{PLUGIN}{digest}/{index:05}")
}

/// The two segments after `group` (`pool`, `address`), unescaped.
pub fn pair(rel: &str, group: &str) -> Option<(String, String)> {
    let (a, b) = rel.strip_prefix(group)?.split_once('/')?;
    (!b.contains('/')).then(|| (unescape(a), unescape(b)))
}

/// The one segment after `group`, unescaped.
pub fn single(rel: &str, group: &str) -> Option<String> {
    let name = rel.strip_prefix(group)?;
    (!name.is_empty() && !name.contains('/')).then(|| unescape(name))
}

/// Full keys of one fleet.
#[derive(Debug, Clone)]
pub struct Keys {
    /// `PREFIX/`.
    root: String,
}

impl Keys {
    /// Keys under `prefix` (validated: starts with `/`, no trailing `/`).
    pub fn new(prefix: &str) -> Keys {
        Keys {
            root: format!("{prefix}/"),
        }
    }

    /// `PREFIX/`: every key of the fleet starts with it.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// The full key of a relative one.
    pub fn full(&self, rel: &str) -> Vec<u8> {
        format!("{}{rel}", self.root).into_bytes()
    }

    /// The relative key of a full one (`None` when outside the fleet's prefix).
    pub fn relative<'a>(&self, key: &'a [u8]) -> Option<&'a str> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(self.root.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_read_back() {
        let key = backend("a/b", "127.0.0.1:80");
        assert_eq!(key, "state/backend/a%2Fb/127.0.0.1:80");
        assert_eq!(
            pair(&key, BACKEND),
            Some(("a/b".to_string(), "127.0.0.1:80".to_string()))
        );
        assert_eq!(single(&route("50%/x"), ROUTE).as_deref(), Some("50%/x"));
        let keys = Keys::new("/sy/prod");
        assert_eq!(keys.full(LEADER), b"/sy/prod/leader".to_vec());
        assert_eq!(keys.relative(b"/sy/prod/config"), Some(CONFIG));
        assert_eq!(keys.relative(b"/sy/production/config"), None);
        assert!(plugin_chunk("ab", 3).starts_with(&plugin("ab")));
    }
}
