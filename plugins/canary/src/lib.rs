//! Canary routing policy.
//!
//! Requests that carry the configured header (optionally with a given value)
//! go to the canary backends; so does `percent` percent of the other
//! requests, chosen by a hash of the client address so one client keeps
//! seeing the same version. Everything else goes to the stable backends.
//! Within a group the choice is random, weighted by the backends' weights.
//!
//! ```toml
//! [plugin.canary]
//! kind = "routing"
//! path = "plugins/canary.wasm"
//! config = { header = "x-canary", value = "always", percent = 5, canary = [2] }
//! ```

use std::cell::{Cell, RefCell};

use serde::Deserialize;

wit_bindgen::generate!({ world: "routing", path: "../../wit" });

use switchyard::policy::host::{self, LogLevel};
use switchyard::policy::routing_types::Response;

/// The plugin's configuration, decoded from the JSON the proxy passes.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    /// Header that forces the canary (lower case).
    header: Option<String>,
    /// Value the header must have; any value when absent.
    value: Option<String>,
    /// Share of the other requests sent to the canary, 0..=100.
    #[serde(default)]
    percent: u8,
    /// `candidate.index` values of the canary backends.
    canary: Vec<u32>,
    /// Pick the percentage by client address (true) or at random (false).
    #[serde(default = "default_sticky")]
    sticky: bool,
}

fn default_sticky() -> bool {
    true
}

thread_local! {
    static CONFIG: RefCell<Config> = RefCell::new(Config::default());
    static RNG: Cell<u64> = const { Cell::new(0x9e37_79b9_7f4a_7c15) };
}

struct Canary;

impl Guest for Canary {
    fn init(config: String) -> Result<(), String> {
        let mut cfg: Config =
            serde_json::from_str(&config).map_err(|e| format!("canary config: {e}"))?;
        if cfg.percent > 100 {
            return Err(format!(
                "canary config: percent {} is over 100",
                cfg.percent
            ));
        }
        if let Some(h) = cfg.header.as_mut() {
            h.make_ascii_lowercase();
        }
        if cfg.canary.is_empty() {
            host::log(
                LogLevel::Warn,
                "canary list is empty: all traffic goes to stable",
            );
        }
        RNG.set(host::random_u64() | 1);
        CONFIG.set(cfg);
        Ok(())
    }

    fn wanted_headers() -> Vec<String> {
        CONFIG.with_borrow(|c| c.header.iter().cloned().collect())
    }

    fn choose(req: Request, candidates: Vec<Candidate>) -> Decision {
        CONFIG.with_borrow(|cfg| {
            let to_canary = flagged(cfg, &req) || in_percent(cfg, &req);
            let is_canary = |c: &Candidate| cfg.canary.contains(&c.index);
            let first = pick(&candidates, |c| is_canary(c) == to_canary);
            // An empty or fully unhealthy group falls back to the other one.
            match first.or_else(|| pick(&candidates, |c| is_canary(c) != to_canary)) {
                Some(index) => Decision::Backend(index),
                None => Decision::Respond(Response {
                    status: 503,
                    body: "no healthy backend".into(),
                }),
            }
        })
    }
}

/// Whether the request carries the canary header (with the wanted value).
fn flagged(cfg: &Config, req: &Request) -> bool {
    let Some(name) = cfg.header.as_deref() else {
        return false;
    };
    req.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case(name) && cfg.value.as_deref().is_none_or(|v| h.value == v)
    })
}

/// Whether this request falls in the configured share.
fn in_percent(cfg: &Config, req: &Request) -> bool {
    if cfg.percent == 0 {
        return false;
    }
    let roll = if cfg.sticky {
        fnv1a(req.client_ip.as_bytes())
    } else {
        next_random()
    };
    roll % 100 < u64::from(cfg.percent)
}

/// Weighted random choice among healthy candidates accepted by `keep`.
fn pick(candidates: &[Candidate], keep: impl Fn(&Candidate) -> bool) -> Option<u32> {
    let eligible = |c: &&Candidate| c.healthy && c.weight > 0 && keep(c);
    let total: u64 = candidates
        .iter()
        .filter(eligible)
        .map(|c| u64::from(c.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let mut roll = next_random() % total;
    for c in candidates.iter().filter(eligible) {
        let w = u64::from(c.weight);
        if roll < w {
            return Some(c.index);
        }
        roll -= w;
    }
    None
}

/// xorshift64*: cheap, seeded once from the host.
fn next_random() -> u64 {
    let mut x = RNG.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    RNG.set(x);
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// FNV-1a, so a client address maps to the same bucket on every instance.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

export!(Canary);
