//! Latency-aware routing: power of two choices.
//!
//! Two distinct healthy candidates are drawn at random (weighted draws would
//! cost a pass over the list; weights enter the score instead) and the one
//! with the lower cost wins:
//!
//! ```text
//! cost = (latency_ewma_us + 1) * (in_flight + 1) * (1000 + penalty * error_rate_permille)
//!        / weight
//! ```
//!
//! Power of two choices avoids the herd behaviour of "always the fastest"
//! while still steering away from slow or busy backends.
//!
//! Config (all optional): `{ "error-penalty": 4 }`, how strongly the error
//! rate counts (0 ignores it).

use std::cell::Cell;

use serde::Deserialize;

wit_bindgen::generate!({ world: "routing", path: "../../wit" });

use switchyard::policy::host;
use switchyard::policy::routing_types::Response;

thread_local! {
    static RNG: Cell<u64> = const { Cell::new(0x9e37_79b9_7f4a_7c15) };
    static PENALTY: Cell<u64> = const { Cell::new(4) };
}

struct Latency;

impl Guest for Latency {
    fn init(config: String) -> Result<(), String> {
        PENALTY.set(parse_penalty(&config)?);
        RNG.set(host::random_u64() | 1);
        Ok(())
    }

    fn wanted_headers() -> Vec<String> {
        Vec::new()
    }

    fn choose(_req: Request, candidates: Vec<Candidate>) -> Decision {
        let healthy = candidates
            .iter()
            .filter(|c| c.healthy && c.weight > 0)
            .count();
        let nth = |n: usize| {
            candidates
                .iter()
                .filter(|c| c.healthy && c.weight > 0)
                .nth(n)
        };
        let chosen = match healthy {
            0 => None,
            1 => nth(0),
            n => {
                let a = (next_random() % n as u64) as usize;
                // Draw the second from the remaining n - 1 so the two differ.
                let mut b = (next_random() % (n as u64 - 1)) as usize;
                if b >= a {
                    b += 1;
                }
                match (nth(a), nth(b)) {
                    (Some(x), Some(y)) => Some(if cost(y) < cost(x) { y } else { x }),
                    (x, y) => x.or(y),
                }
            }
        };
        match chosen {
            Some(c) => Decision::Backend(c.index),
            None => Decision::Respond(Response {
                status: 503,
                body: "no healthy backend".into(),
            }),
        }
    }
}

/// The plugin's configuration, decoded from the JSON the proxy passes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Config {
    /// Weight of the error rate in the cost, 0..=1000.
    #[serde(default = "default_penalty")]
    error_penalty: u16,
}

fn default_penalty() -> u16 {
    4
}

fn parse_penalty(config: &str) -> Result<u64, String> {
    let cfg: Config = serde_json::from_str(config).map_err(|e| format!("latency config: {e}"))?;
    if cfg.error_penalty > 1000 {
        return Err("latency config: error-penalty must be 0..=1000".into());
    }
    Ok(u64::from(cfg.error_penalty))
}

/// Expected cost of sending one more request to `c`; lower is better.
fn cost(c: &Candidate) -> u128 {
    let latency = u128::from(c.latency_ewma_us) + 1;
    let load = u128::from(c.in_flight) + 1;
    let errors = 1000 + u128::from(PENALTY.get()) * u128::from(c.error_rate_permille);
    latency * load * errors / u128::from(c.weight.max(1))
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

export!(Latency);
