//! Property tests: thousands of generated inputs each for the config parser, header
//! normalisation, path normalisation and router matching. None may panic, and each
//! keeps its invariants. (Plugin output validation has its own, next to the
//! private validators, in `proxy/src/plugin/`.)

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use switchyard::config::Config;
use switchyard::metrics::Metrics;
use switchyard::path::{PathError, normalize};
use switchyard::proxy::{ensure_request_id, forwarded_for, set_forwarded, strip_hop_by_hop};
use switchyard::router::{Route, Router};
use switchyard::traffic::RouteTarget;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------------ config ---

const VALID: &str = r#"[admin]
listen = "127.0.0.1:0"

[limits]
header_read_timeout = "10s"
max_body_bytes = "1MiB"
tunnel_idle_timeout = "10m"

[[listener]]
name = "web"
listen = "127.0.0.1:0"
upgrades = ["websocket"]

[[route]]
name = "api"
listener = "web"
host = "api.example"
path_prefix = "/api"
pool = "app"
forward_path = "original"

[[route]]
name = "all"
listener = "web"
pool = "app"

[pool.app]
balance = "least-request"
backends = [{ address = "127.0.0.1:9001", weight = 2 }, { address = "127.0.0.1:9002" }]

[pool.app.breaker]
consecutive_failures = 5
open_for = "1s"

[pool.app.retry]
attempts = 2
on = ["connect-failure", "reset"]
"#;

/// Fragments that make edits look like TOML rather than noise.
const FRAGMENTS: &[&str] = &[
    "[",
    "]",
    "[[",
    "]]",
    "=",
    "\"",
    "'",
    "{",
    "}",
    ",",
    "\n",
    "#",
    ".",
    "-",
    "0",
    "1",
    "9999999999999999999999",
    "-1",
    "\"10x\"",
    "\"0s\"",
    "\"1KiB\"",
    "true",
    "pool",
    "route",
    "listener",
    "limits",
    "name",
    "listen",
    "\"127.0.0.1:0\"",
    "\"not an address\"",
    "path_prefix",
    "\"/a//b\"",
    "\"/%zz\"",
    "backends",
    "weight",
    "upgrades",
    "[\"h2c\"]",
    "forward_path",
    "max_connections_per_ip",
    "body_timeout",
    "\u{0}",
    "é",
    "[pool.x]",
];

fn edited_config() -> impl Strategy<Value = String> {
    let edit = (
        0..VALID.len(),
        0..4usize,
        prop::sample::select(FRAGMENTS),
        0..40usize,
    );
    prop::collection::vec(edit, 1..6).prop_map(|edits| {
        let mut text = VALID.to_string();
        for (at, kind, fragment, span) in edits {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let mut end = (at + span).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            match kind {
                0 => text.insert_str(at, fragment),
                1 => text.replace_range(at..end, ""),
                2 => text.replace_range(at..end, fragment),
                _ => {
                    let line = text[at..end].to_string();
                    text.insert_str(at, &line);
                }
            }
        }
        text
    })
}

/// Every problem points inside the file (or says it is not in it) and says something.
fn check_parse(text: &str) {
    match Config::parse(Path::new("t.toml"), text) {
        Ok(config) => {
            assert!(!config.listeners.is_empty());
            for route in &config.routes {
                assert!(config.pools.contains_key(&route.pool));
                assert!(config.listeners.iter().any(|l| l.name == route.listener));
                assert_eq!(normalize(&route.path_prefix).unwrap(), route.path_prefix);
            }
            for listener in &config.listeners {
                assert!(!listener.upgrades.iter().any(|u| u == "h2c"));
            }
        }
        Err(e) => {
            let lines = text.lines().count() + 1;
            assert!(!e.problems().is_empty(), "{e}");
            for p in e.problems() {
                assert_eq!(p.file, "t.toml");
                assert!(p.line <= lines, "line {} of {lines}: {p}", p.line);
                assert!(p.line == 0 || p.column >= 1, "{p}");
                assert!(!p.message.is_empty(), "{p}");
            }
        }
    }
}

#[test]
fn the_base_config_is_valid() {
    Config::parse(Path::new("t.toml"), VALID).unwrap();
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn config_parser_never_panics_on_arbitrary_text(text in "\\PC{0,400}") {
        check_parse(&text);
    }

    #[test]
    fn config_parser_locates_every_problem_of_an_edited_config(text in edited_config()) {
        check_parse(&text);
    }
}

// --------------------------------------------------------- header rewriting ---

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
];

fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(HOP_BY_HOP.to_vec()).prop_map(str::to_string),
        prop::sample::select(vec![
            "x-a",
            "x-b",
            "host",
            "content-type",
            "x-forwarded-for",
            "x-request-id"
        ])
        .prop_map(str::to_string),
        "[a-z][a-z0-9-]{0,10}",
    ]
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,30}",
        prop::collection::vec(header_name(), 1..4).prop_map(|n| n.join(", ")),
        Just("trailers".to_string()),
        Just("websocket".to_string()),
    ]
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((header_name(), header_value()), 0..20).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value.trim()),
            ) {
                map.append(n, v);
            }
        }
        map
    })
}

fn listed_in_connection(map: &HeaderMap) -> Vec<String> {
    map.get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn hop_by_hop_removal_keeps_exactly_the_end_to_end_fields(original in headers(), keep_upgrade in any::<bool>()) {
        let listed = listed_in_connection(&original);
        let mut map = original.clone();
        strip_hop_by_hop(&mut map, keep_upgrade);
        for name in map.keys() {
            let name = name.as_str();
            let allowed = (name == "te" && map.get_all("te").iter().all(|v| v == "trailers"))
                || (keep_upgrade && (name == "upgrade" || name == "connection"));
            if !allowed {
                prop_assert!(!HOP_BY_HOP.contains(&name), "{name} survived");
                prop_assert!(!listed.iter().any(|l| l == name), "{name} was listed in Connection");
            }
        }
        if keep_upgrade && map.contains_key("upgrade") {
            prop_assert_eq!(map.get("connection").unwrap(), "upgrade");
        }
        for name in original.keys() {
            let n = name.as_str();
            if !HOP_BY_HOP.contains(&n) && !listed.iter().any(|l| l == n) {
                let before: Vec<_> = original.get_all(name).iter().collect();
                let after: Vec<_> = map.get_all(name).iter().collect();
                prop_assert_eq!(before, after, "{} changed", n);
            }
        }
        // Running it again changes nothing.
        let once = map.clone();
        strip_hop_by_hop(&mut map, keep_upgrade);
        prop_assert_eq!(once, map);
    }

    #[test]
    fn forwarded_fields_are_the_proxys_own(mut map in headers(), ip in any::<[u8; 4]>(), tls in any::<bool>(), host in prop::option::of("[a-z]{1,10}(:[0-9]{1,5})?")) {
        let client = IpAddr::from(ip);
        let proto = if tls { "https" } else { "http" };
        let host = host.map(|h| HeaderValue::from_str(&h).unwrap());
        strip_hop_by_hop(&mut map, false);
        set_forwarded(&mut map, &forwarded_for(client), proto, host.as_ref());
        let xff = map.get("x-forwarded-for").unwrap().to_str().unwrap().to_string();
        let client_text = client.to_string();
        prop_assert!(xff == client_text || xff.ends_with(&format!(", {client}")), "{}", xff);
        prop_assert_eq!(map.get_all("x-forwarded-for").iter().count(), 1);
        prop_assert_eq!(map.get("x-forwarded-proto").unwrap(), proto);
        prop_assert_eq!(map.get("x-forwarded-host"), host.as_ref());
        let id = ensure_request_id(&mut map);
        prop_assert!(!id.is_empty() && id.len() <= 128);
        prop_assert_eq!(map.get("x-request-id").unwrap(), &id);
    }
}

// ------------------------------------------------------ path normalisation ---

/// Paths made of segments that exercise every rule: dots, empty segments,
/// percent-encodings of reserved and unreserved bytes, and plain text.
fn raw_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        Just(String::new()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%2e".to_string()),
        Just("%2E%2e".to_string()),
        Just("%2f".to_string()),
        Just("%41".to_string()),
        Just("%7e".to_string()),
        Just("%zz".to_string()),
        Just("%".to_string()),
        Just("caf\u{e9}".to_string()),
        "[a-zA-Z0-9._~-]{1,6}",
        "[a-z%0-9A-F]{1,8}",
    ];
    prop::collection::vec(segment, 0..8).prop_map(|s| format!("/{}", s.join("/")))
}

fn is_normal(p: &str) -> bool {
    let bytes = p.as_bytes();
    p.starts_with('/')
        && !p.contains("//")
        && !p.split('/').any(|s| s == "." || s == "..")
        && bytes.iter().enumerate().all(|(i, &b)| {
            if b != b'%' {
                return true;
            }
            let hex = |j: usize| {
                bytes
                    .get(j)
                    .filter(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
            };
            match (hex(i + 1), hex(i + 2)) {
                (Some(&h), Some(&l)) => {
                    let v = u8::from_str_radix(std::str::from_utf8(&[h, l]).unwrap(), 16).unwrap();
                    !(v.is_ascii_alphanumeric() || b"-._~".contains(&v))
                }
                _ => false,
            }
        })
}

/// Spells `path` differently without changing what it names: encodes unreserved
/// characters, doubles slashes, inserts `.` and `x/..` segments.
fn respell(path: &str, choices: &[u8]) -> String {
    let mut out = String::new();
    let mut escape = 0;
    for (i, c) in path.chars().enumerate() {
        if escape > 0 || c == '%' {
            // Keep an existing %XX escape as it is.
            escape = if c == '%' { 2 } else { escape - 1 };
            out.push(c);
            continue;
        }
        let choice = choices.get(i % choices.len().max(1)).copied().unwrap_or(0) % 5;
        match (c, choice) {
            ('/', 1) => out.push_str("//"),
            ('/', 2) => out.push_str("/./"),
            ('/', 3) => out.push_str("/zz/../"),
            (c, 4) if c.is_ascii_alphanumeric() || "-._~".contains(c) => {
                out.push_str(&format!("%{:02x}", c as u32));
            }
            (c, _) => out.push(c),
        }
    }
    out
}

proptest! {
    #![proptest_config(cases(4000))]

    #[test]
    fn path_normalisation_never_panics(text in "\\PC{0,60}") {
        let _ = normalize(&text);
    }

    #[test]
    fn normalised_paths_are_normal_and_stable(path in raw_path()) {
        match normalize(&path) {
            Ok(n) => {
                prop_assert!(is_normal(&n), "{} -> {}", path, n);
                let again = normalize(&n).unwrap();
                prop_assert_eq!(&again, &n, "idempotent");
            }
            Err(e) => {
                prop_assert_eq!(e, PathError::BadPercent);
                prop_assert!(path.contains('%'));
            }
        }
    }

    #[test]
    fn respelling_a_path_does_not_change_it(path in raw_path(), choices in prop::collection::vec(any::<u8>(), 1..16)) {
        if let Ok(n) = normalize(&path) {
            let other = respell(&n, &choices);
            prop_assert_eq!(normalize(&other).unwrap(), n, "{}", other);
        }
    }
}

// --------------------------------------------------------- router matching ---

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

const HOSTS: [&str; 3] = ["a.example", "b.example", "c.example"];

fn prefix() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec!["api", "a", "v1", "b", "admin"]),
        0..3,
    )
    .prop_map(|s| {
        if s.is_empty() {
            "/".to_string()
        } else {
            format!("/{}", s.join("/"))
        }
    })
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    prefix == "/"
        || path == prefix
        || (path.starts_with(prefix)
            && (prefix.ends_with('/') || path[prefix.len()..].starts_with('/')))
}

/// The reference: host-specific routes of the host first, then any-host routes;
/// the longest matching prefix wins within each.
fn expected<'a>(
    routes: &'a [(Option<&str>, String)],
    host: Option<&str>,
    path: &str,
) -> Option<&'a (Option<&'a str>, String)> {
    let host = host.map(|h| h.split(':').next().unwrap().to_ascii_lowercase());
    let best = |want: Option<&str>| {
        routes
            .iter()
            .filter(|(h, p)| h.as_deref() == want && prefix_matches(p, path))
            .max_by_key(|(_, p)| p.len())
    };
    host.as_deref()
        .and_then(|h| best(Some(h)))
        .or_else(|| best(None))
}

proptest! {
    #![proptest_config(cases(3000))]

    #[test]
    fn the_router_picks_the_longest_prefix_of_the_right_host(
        defs in prop::collection::btree_set((prop::option::of(prop::sample::select(HOSTS.to_vec())), prefix()), 0..10),
        host in prop::option::of(prop_oneof![
            prop::sample::select(HOSTS.to_vec()).prop_map(str::to_string),
            Just("A.Example:8080".to_string()),
            Just("other.example".to_string()),
        ]),
        path in raw_path(),
        choices in prop::collection::vec(any::<u8>(), 1..16),
    ) {
        let routes: Vec<(Option<&str>, String)> = defs.into_iter().collect();
        let mut router = Router::default();
        for (i, (h, p)) in routes.iter().enumerate() {
            router.add(*h, Arc::new(Route {
                name: format!("r{i}").into(),
                target: RouteTarget::Pool("p".into()),
                path_prefix: p.clone(),
                forward_original_path: false,
                metrics: metrics().route("r"),
            }));
        }
        let Ok(path) = normalize(&path) else { return Ok(()); };
        let got = router.route(host.as_deref(), &path).map(|r| r.name.to_string());
        let want = expected(&routes, host.as_deref(), &path)
            .map(|w| format!("r{}", routes.iter().position(|r| r == w).unwrap()));
        prop_assert_eq!(&got, &want, "host {:?}, path {}", host, path);
        // Any other spelling of the same path reaches the same route.
        let respelled = respell(&path, &choices);
        let respelled = normalize(&respelled).unwrap();
        let again = router.route(host.as_deref(), &respelled).map(|r| r.name.to_string());
        prop_assert_eq!(again, got);
    }
}
