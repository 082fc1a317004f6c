//! A health-check plugin that returns out-of-range verdicts, for the
//! proxy's output-validation tests. Never load it in production.
//!
//! The probe's `latency-us` selects the behaviour: 1 returns `degraded(200)`,
//! 2 returns `down` with a 64 KiB reason, 3 spins forever; anything else is
//! `up`.
//!
//! `probe-request` obeys the pool name: `bad-method`, `bad-path` and
//! `forbidden-header` ask for an invalid probe, `spin` spins forever,
//! `custom` asks for `GET /custom?from=plugin` with `x-probe: hostile`;
//! anything else keeps the configured probe.

use std::hint::black_box;

wit_bindgen::generate!({ world: "health-check", path: "../../../wit" });

use switchyard::policy::types::Header;

struct HostileHealth;

impl Guest for HostileHealth {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn wanted_headers() -> Vec<String> {
        Vec::new()
    }

    fn evaluate(probe: Probe) -> Verdict {
        match probe.latency_us {
            1 => Verdict::Degraded(200),
            2 => Verdict::Down("r".repeat(64 * 1024)),
            3 => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            _ => Verdict::Up,
        }
    }

    fn probe_request(target: ProbeTarget) -> Option<CustomProbe> {
        let probe = |method: &str, path: &str, header: (&str, &str)| CustomProbe {
            method: method.into(),
            path: path.into(),
            headers: vec![Header {
                name: header.0.into(),
                value: header.1.into(),
            }],
        };
        match target.pool.as_str() {
            "bad-method" => Some(probe("G ET", "/", ("x-probe", "hostile"))),
            "bad-path" => Some(probe("GET", "no-slash", ("x-probe", "hostile"))),
            "forbidden-header" => Some(probe("GET", "/", ("host", "evil.test"))),
            "spin" => {
                let mut n = 0u64;
                loop {
                    n = black_box(n.wrapping_add(1));
                }
            }
            "custom" => Some(probe("GET", "/custom?from=plugin", ("x-probe", "hostile"))),
            _ => None,
        }
    }
}

export!(HostileHealth);
