//! A health-check plugin that returns out-of-range verdicts, for the
//! proxy's output-validation tests. Never load it in production.
//!
//! The probe's `latency-us` selects the behaviour: 1 returns `degraded(200)`,
//! 2 returns `down` with a 64 KiB reason, 3 spins forever; anything else is
//! `up`.

use std::hint::black_box;

wit_bindgen::generate!({ world: "health-check", path: "../../../wit" });

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
}

export!(HostileHealth);
