//! Canary routing policy.
//!
//! Requests that carry the configured header (optionally with a given value)
//! go to the canary backends; so does `percent` percent of the other
//! requests, chosen by a hash of the client address so one client keeps
//! seeing the same version. Everything else goes to the stable backends.
//! Within a group the choice is random, weighted by the backends' weights; an
//! empty or fully unhealthy group falls back to the other one.
//!
//! ```toml
//! [plugin.canary]
//! kind = "routing"
//! path = "plugins/canary.wasm"
//! config = { header = "x-canary", value = "always", percent = 5, canary = [2] }
//! ```

use serde::Deserialize;
use switchyard_policy::routing::{Candidate, Decision, Request};
use switchyard_policy::{ConfigError, Rng, RoutingPolicy, hash, host, pick, routing_policy};

/// The plugin's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Header that forces the canary.
    header: Option<String>,
    /// Value the header must have; any value when absent.
    value: Option<String>,
    /// Share of the other requests sent to the canary, 0..=100.
    #[serde(default)]
    percent: u8,
    /// `candidate.index` values of the canary backends.
    canary: Vec<u32>,
    /// Pick the percentage by client address (true) or at random (false).
    #[serde(default = "yes")]
    sticky: bool,
}

fn yes() -> bool {
    true
}

/// The policy: its configuration and a random generator.
pub struct Canary {
    config: Config,
    rng: Rng,
}

impl RoutingPolicy for Canary {
    type Config = Config;

    fn init(config: Config) -> Result<Self, ConfigError> {
        if config.percent > 100 {
            return Err(ConfigError::field("percent", "must be 0..=100"));
        }
        if config.canary.is_empty() {
            host::warn("canary list is empty: all traffic goes to stable");
        }
        Ok(Self {
            config,
            rng: Rng::from_host(),
        })
    }

    fn wanted_headers(&self) -> Vec<String> {
        self.config.header.iter().cloned().collect()
    }

    fn choose(&mut self, req: &Request, candidates: &[Candidate]) -> Decision {
        let to_canary = self.flagged(req) || self.in_percent(req);
        let canary = &self.config.canary;
        let group = |want: bool| {
            candidates
                .iter()
                .filter(move |c| canary.contains(&c.index) == want)
        };
        let choice = pick::weighted(group(to_canary), &mut self.rng)
            .or_else(|| pick::weighted(group(!to_canary), &mut self.rng));
        Decision::backend_or_503(choice)
    }
}

impl Canary {
    /// Whether the request carries the canary header (with the wanted value).
    fn flagged(&self, req: &Request) -> bool {
        let Some(name) = &self.config.header else {
            return false;
        };
        req.header(name)
            .is_some_and(|v| self.config.value.as_deref().is_none_or(|want| v == want))
    }

    /// Whether this request falls in the configured share.
    fn in_percent(&mut self, req: &Request) -> bool {
        let percent = u64::from(self.config.percent);
        if self.config.sticky {
            hash::stable(req.client_ip.as_bytes()) % 100 < percent
        } else {
            self.rng.below(100) < percent
        }
    }
}

routing_policy!(Canary);

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(json: &str) -> Canary {
        Canary::from_json(json).unwrap()
    }

    #[test]
    fn flagged_requests_go_to_the_canary_and_others_stay_stable() {
        let mut p = policy(r#"{"header": "x-canary", "value": "yes", "canary": [1]}"#);
        let all = [Candidate::new(0), Candidate::new(1)];
        let flagged = Request::get("/").with_header("x-canary", "yes");
        let other_value = Request::get("/").with_header("x-canary", "no");
        for _ in 0..20 {
            assert_eq!(p.choose(&flagged, &all), Decision::Backend(1));
            assert_eq!(p.choose(&other_value, &all), Decision::Backend(0));
        }
    }

    #[test]
    fn an_unusable_group_falls_back_to_the_other() {
        let mut p = policy(r#"{"header": "x-canary", "canary": [1]}"#);
        let all = [Candidate::new(0), Candidate::new(1).unhealthy()];
        let flagged = Request::get("/").with_header("x-canary", "1");
        assert_eq!(p.choose(&flagged, &all), Decision::Backend(0));
        assert_eq!(
            p.choose(&flagged, &[]),
            Decision::respond(503, "no usable backend")
        );
    }

    #[test]
    fn sticky_percentage_keeps_a_client_on_one_side() {
        let mut p = policy(r#"{"percent": 50, "canary": [1]}"#);
        let all = [Candidate::new(0), Candidate::new(1)];
        let mut canaried = 0;
        for i in 0..200 {
            let req = Request::get("/").with_client_ip(&format!("10.0.0.{i}"));
            let first = p.choose(&req, &all);
            assert_eq!(p.choose(&req, &all), first, "a client stays on its side");
            canaried += usize::from(first == Decision::Backend(1));
        }
        assert!((60..140).contains(&canaried), "{canaried} of 200");
    }

    #[test]
    fn bad_config_names_the_field() {
        let err = Canary::from_json(r#"{"percent": 101, "canary": []}"#)
            .err()
            .unwrap();
        assert_eq!(err.to_string(), "config.percent: must be 0..=100");
        let err = Canary::from_json(r#"{"canary": [1], "hedaer": "x"}"#)
            .err()
            .unwrap();
        assert_eq!(err.path(), "hedaer");
    }
}
