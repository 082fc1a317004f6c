//! A small, fast random number generator for per-request decisions.

/// xorshift64* (Vigna): a few shifts and one 64-bit multiply per number, and
/// 8 bytes of state. Chosen over generators built on 128-bit multiplies
/// because wasm32 has none (each becomes a library call). Not for
/// cryptography. Seed it once, in `init`, from the host ([`Rng::from_host`]);
/// every instance then draws its own sequence.
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
        // Spread the seed's bits (splitmix64's finaliser); the state must not
        // be zero.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self {
            state: (z ^ (z >> 31)) | 1,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0). For `n` up to 2^32 it scales the
    /// top 32 bits (no division; the bias is under `n` / 2^32).
    pub fn below(&mut self, n: u64) -> u64 {
        if n <= u64::from(u32::MAX) {
            ((self.next_u64() >> 32) * n) >> 32
        } else {
            self.next_u64() % n
        }
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
        assert!(rng.below(u64::MAX) < u64::MAX);
        assert_ne!(Rng::seeded(0).next_u64(), 0, "a zero seed still draws");
        assert!((0.0..1.0).contains(&rng.unit()));
        assert!(Rng::seeded(1).percent(100));
        assert!(!Rng::seeded(1).percent(0));
    }
}
