//! A small, fast random number generator for per-request decisions.

/// wyrand: one multiply per number, good statistical quality, 8 bytes of
/// state. Not for cryptography. Seed it once, in `init`, from the host
/// ([`Rng::from_host`]); every instance then draws its own sequence.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator seeded from [`crate::host::random_u64`].
    pub fn from_host() -> Self {
        Self::seeded(crate::host::random_u64())
    }

    /// A generator with a fixed seed (the same seed gives the same numbers).
    pub fn seeded(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.state) * u128::from(self.state ^ 0xe703_7ed1_a0b4_28db);
        (t as u64) ^ ((t >> 64) as u64)
    }

    /// A number in `0..n` (0 when `n` is 0), without modulo bias worth
    /// mentioning (Lemire's multiply-shift).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability `percent` / 100 (always for 100 and above).
    pub fn percent(&mut self, percent: u32) -> bool {
        self.below(100) < u64::from(percent)
    }

    /// A float in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_spreads() {
        let mut rng = Rng::seeded(7);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            let v = rng.below(5);
            seen[v as usize] += 1;
        }
        assert!(seen.iter().all(|n| (800..1200).contains(n)), "{seen:?}");
        assert_eq!(rng.below(0), 0);
        assert!((0.0..1.0).contains(&rng.unit()));
        assert!(Rng::seeded(1).percent(100));
        assert!(!Rng::seeded(1).percent(0));
    }
}
