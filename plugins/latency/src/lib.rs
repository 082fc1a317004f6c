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
//! while still steering away from slow or busy backends. The host ages each
//! backend's latency average (it halves for every second without traffic), so a
//! backend measured slow once is tried again a few seconds later instead of
//! starving on that old figure.
//!
//! Config (all optional): `{ "error-penalty": 4 }`, how strongly the error
//! rate counts (0 ignores it).

use serde::Deserialize;
use switchyard_policy::routing::{Candidate, Decision, Request};
use switchyard_policy::{ConfigError, Rng, RoutingPolicy, pick, routing_policy};

/// The plugin's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Weight of the error rate in the cost, 0..=1000.
    #[serde(default = "default_penalty")]
    error_penalty: u16,
}

fn default_penalty() -> u16 {
    4
}

/// The policy: the error penalty and a random generator.
pub struct Latency {
    penalty: u64,
    rng: Rng,
}

impl RoutingPolicy for Latency {
    type Config = Config;

    fn init(config: Config) -> Result<Self, ConfigError> {
        if config.error_penalty > 1000 {
            return Err(ConfigError::field("error-penalty", "must be 0..=1000"));
        }
        Ok(Self {
            penalty: u64::from(config.error_penalty),
            rng: Rng::from_host(),
        })
    }

    fn choose(&mut self, _req: &Request, candidates: &[Candidate]) -> Decision {
        let penalty = self.penalty;
        Decision::backend_or_503(pick::two_choices(candidates, &mut self.rng, |c| {
            cost(c, penalty)
        }))
    }
}

/// Expected cost of sending one more request to `c`; lower is better. 64-bit
/// arithmetic (wasm32 has no 128-bit multiply), saturating far beyond any real
/// latency times load.
fn cost(c: &Candidate, penalty: u64) -> u64 {
    let latency = u64::from(c.latency_ewma_us) + 1;
    let load = u64::from(c.in_flight) + 1;
    let errors = 1000 + penalty * u64::from(c.error_rate_permille);
    latency.saturating_mul(load).saturating_mul(errors) / u64::from(c.weight.max(1))
}

routing_policy!(Latency);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slow_backend_loses_every_duel() {
        let mut p = Latency::from_json("{}").unwrap();
        let all = [
            Candidate::new(0).with_latency_us(900),
            Candidate::new(1).with_latency_us(40_000),
        ];
        for _ in 0..50 {
            assert_eq!(p.choose(&Request::get("/"), &all), Decision::Backend(0));
        }
    }

    #[test]
    fn errors_and_load_raise_the_cost() {
        let base = Candidate::new(0).with_latency_us(1000);
        assert!(cost(&base.with_error_rate_permille(500), 4) > cost(&base, 4));
        assert!(cost(&base.with_in_flight(3), 4) > cost(&base, 4));
        assert!(cost(&base.with_weight(4), 4) < cost(&base, 4));
        assert!(Latency::from_json(r#"{"error-penalty": 5000}"#).is_err());
    }
}
