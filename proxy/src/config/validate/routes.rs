//! `[[route]]`: which listener, host and path prefix go to which pool. A route names
//! a listener and a pool that must exist; two routes may not match the same requests.

use std::collections::{BTreeMap, HashSet};

use crate::config::error::Reporter;
use crate::config::file::RouteSection;
use crate::config::suggest::{unknown_choice, unknown_reference};
use crate::config::{ListenerConfig, PoolConfig, RouteConfig};

const FORWARD_PATHS: [&str; 2] = ["normalized", "original"];

pub(super) fn routes(
    sections: &[RouteSection],
    listeners: &[ListenerConfig],
    pools: &BTreeMap<String, PoolConfig>,
    r: &mut Reporter<'_>,
) -> Vec<RouteConfig> {
    let mut names = HashSet::new();
    let mut matches = HashSet::new();
    let mut out = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        let field = format!("route[{i}]");
        let name = s.name.get_ref().clone();
        if !names.insert(name.clone()) {
            r.at(
                s.name.span(),
                format!("{field}.name"),
                format!("duplicate route name `{name}`"),
            );
        }
        if !listeners.iter().any(|l| &l.name == s.listener.get_ref()) {
            r.at(
                s.listener.span(),
                format!("{field}.listener"),
                unknown_reference(
                    "listener",
                    s.listener.get_ref(),
                    listeners.iter().map(|l| l.name.as_str()),
                ),
            );
        }
        if !pools.contains_key(s.pool.get_ref()) {
            r.at(
                s.pool.span(),
                format!("{field}.pool"),
                unknown_reference("pool", s.pool.get_ref(), pools.keys().map(String::as_str)),
            );
        }
        let host = s.host.as_ref().map(|h| {
            let host = h.get_ref().trim().to_ascii_lowercase();
            if host.is_empty() || host.contains('/') || host.contains(' ') {
                r.at(
                    h.span(),
                    format!("{field}.host"),
                    "expected a host name such as app.example.com",
                );
            }
            host
        });
        let path_prefix = match &s.path_prefix {
            Some(p) if !p.get_ref().starts_with('/') => {
                r.at(
                    p.span(),
                    format!("{field}.path_prefix"),
                    "must start with `/`",
                );
                p.get_ref().clone()
            }
            Some(p) => {
                match crate::path::normalize(p.get_ref()) {
                    Ok(normal) if normal != p.get_ref().as_str() => r.at(
                        p.span(),
                        format!("{field}.path_prefix"),
                        format!(
                            "request paths are matched after normalisation, so `{}` would never match; write `{normal}`",
                            p.get_ref()
                        ),
                    ),
                    Ok(_) => {}
                    Err(e) => r.at(p.span(), format!("{field}.path_prefix"), e.to_string()),
                }
                p.get_ref().clone()
            }
            None => "/".to_string(),
        };
        if !matches.insert((
            s.listener.get_ref().clone(),
            host.clone(),
            path_prefix.clone(),
        )) {
            r.at(
                s.name.span(),
                field.to_string(),
                "another route already matches the same listener, host and path_prefix",
            );
        }
        let forward_original_path = match s.forward_path.as_ref().map(|f| (f, f.get_ref().as_str()))
        {
            None | Some((_, "normalized" | "normalised")) => false,
            Some((_, "original")) => true,
            Some((f, other)) => {
                r.at(
                    f.span(),
                    format!("{field}.forward_path"),
                    unknown_choice("forward_path", other, &FORWARD_PATHS, FORWARD_PATHS),
                );
                false
            }
        };
        out.push(RouteConfig {
            name,
            listener: s.listener.get_ref().clone(),
            host,
            path_prefix,
            pool: s.pool.get_ref().clone(),
            forward_original_path,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::testing::{problems, valid_with};

    const LISTENER_AND_POOLS: &str = "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:0\"\n\
        [pool.app]\nbackends = [{ address = \"127.0.0.1:1\" }]\n\
        [pool.static]\nbackends = [{ address = \"127.0.0.1:2\" }]\n";

    fn route(body: &str) -> Vec<String> {
        problems(&format!("{LISTENER_AND_POOLS}[[route]]\n{body}"))
    }

    #[test]
    fn hosts_are_lower_cased_and_prefixes_default_to_the_root() {
        let config = valid_with(
            "[[route]]\nname = \"shop\"\nlistener = \"web\"\nhost = \"Shop.Example.com\"\npool = \"app\"\nforward_path = \"original\"\n",
        );
        let shop = &config.routes[1];
        assert_eq!(shop.host.as_deref(), Some("shop.example.com"));
        assert_eq!(shop.path_prefix, "/");
        assert!(shop.forward_original_path);
    }

    #[test]
    fn unknown_references_suggest_the_near_name() {
        assert_eq!(
            route("name = \"r\"\nlistener = \"wbe\"\npool = \"ap\"\n"),
            [
                "t.toml:10:12: route[0].listener: no listener named `wbe`, did you mean `web`? Defined: web",
                "t.toml:11:8: route[0].pool: no pool named `ap`, did you mean `app`? Defined: app, static",
            ]
        );
        assert_eq!(
            route("name = \"r\"\nlistener = \"web\"\npool = \"nope\"\n"),
            ["t.toml:11:8: route[0].pool: no pool named `nope`; defined: app, static"]
        );
    }

    #[test]
    fn refuses_bad_matches() {
        assert_eq!(
            route(
                "name = \"r\"\nlistener = \"web\"\npool = \"app\"\nhost = \"a b\"\npath_prefix = \"/x/../y\"\nforward_path = \"raw\"\n\
                 [[route]]\nname = \"r\"\nlistener = \"web\"\npool = \"app\"\nhost = \"a b\"\npath_prefix = \"/x/../y\"\n\
                 [[route]]\nname = \"rel\"\nlistener = \"web\"\npool = \"app\"\npath_prefix = \"x\"\n"
            ),
            [
                "t.toml:12:8: route[0].host: expected a host name such as app.example.com",
                "t.toml:13:15: route[0].path_prefix: request paths are matched after normalisation, so `/x/../y` would never match; write `/y`",
                "t.toml:14:16: route[0].forward_path: unknown forward_path `raw`; expected one of: normalized, original",
                "t.toml:16:8: route[1].name: duplicate route name `r`",
                "t.toml:16:8: route[1]: another route already matches the same listener, host and path_prefix",
                "t.toml:19:8: route[1].host: expected a host name such as app.example.com",
                "t.toml:20:15: route[1].path_prefix: request paths are matched after normalisation, so `/x/../y` would never match; write `/y`",
                "t.toml:25:15: route[2].path_prefix: must start with `/`",
            ]
        );
    }
}
