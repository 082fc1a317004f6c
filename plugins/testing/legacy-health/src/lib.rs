//! A health-check plugin built against `switchyard:policy@0.1.0` (the WIT
//! files in `wit/` are that version, frozen): no `probe-request` export, 0.1.0
//! imports. The proxy must keep loading and calling it. Up on a 2xx, down
//! otherwise, with the status as the reason.

wit_bindgen::generate!({ world: "health-check", path: "wit" });

struct LegacyHealth;

impl Guest for LegacyHealth {
    fn init(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn wanted_headers() -> Vec<String> {
        Vec::new()
    }

    fn evaluate(probe: Probe) -> Verdict {
        match probe.status {
            Some(s) if (200..300).contains(&s) => Verdict::Up,
            Some(s) => Verdict::Down(format!("legacy: status {s}")),
            None => Verdict::Down("legacy: no answer".into()),
        }
    }
}

export!(LegacyHealth);
