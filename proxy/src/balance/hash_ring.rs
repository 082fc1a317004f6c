//! Consistent hashing on a ring of virtual nodes (ketama-style): adding or removing one
//! of N backends moves about 1/N of the keys, so caches and sessions mostly stay put.

use crate::upstream::Backend;

/// Virtual nodes per unit of weight.
const POINTS_PER_WEIGHT: u32 = 160;
/// Cap so a pool of heavy weights stays small in memory.
const MAX_POINTS_PER_BACKEND: u32 = 16_000;

/// The ring: sorted `(point, backend index)` pairs.
#[derive(Debug, Default)]
pub struct HashRing {
    points: Vec<(u64, u32)>,
}

impl HashRing {
    /// Places each backend's virtual nodes; the positions depend only on the address,
    /// so the same backend lands on the same points in every process and snapshot.
    pub fn build(backends: &[Backend]) -> Self {
        let mut points = Vec::new();
        for (index, backend) in backends.iter().enumerate() {
            let weight = backend
                .state
                .weight
                .load(std::sync::atomic::Ordering::Relaxed);
            let count = weight
                .saturating_mul(POINTS_PER_WEIGHT)
                .min(MAX_POINTS_PER_BACKEND);
            let base = hash_key(backend.key.as_bytes());
            for replica in 0..count {
                points.push((
                    mix(base ^ u64::from(replica).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    index as u32,
                ));
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// The first usable backend clockwise from `hash`.
    pub fn pick(&self, hash: u64, usable: impl Fn(usize) -> bool) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let start = self.points.partition_point(|&(p, _)| p < hash);
        let n = self.points.len();
        let mut last_rejected = usize::MAX;
        for step in 0..n {
            let index = self.points[(start + step) % n].1 as usize;
            if index == last_rejected {
                continue;
            }
            if usable(index) {
                return Some(index);
            }
            last_rejected = index;
        }
        None
    }
}

/// FNV-1a 64 finished with a mixer: stable across builds and platforms, unlike std's hasher.
pub fn hash_key(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// splitmix64's finaliser, to spread FNV's output over the whole ring.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::test_support::backends;

    #[test]
    fn adding_a_backend_moves_about_one_nth_of_keys() {
        let four = HashRing::build(&backends(&[1, 1, 1, 1]));
        let five = HashRing::build(&backends(&[1, 1, 1, 1, 1]));
        let keys = 20_000;
        let moved = (0..keys)
            .filter(|k| {
                let h = hash_key(format!("user-{k}").as_bytes());
                four.pick(h, |_| true) != five.pick(h, |_| true)
            })
            .count();
        let share = moved as f64 / keys as f64;
        assert!((0.12..0.28).contains(&share), "moved {share}");
    }

    #[test]
    fn unusable_backend_keys_go_to_others_only() {
        let ring = HashRing::build(&backends(&[1, 1, 1]));
        for k in 0..1000 {
            let h = hash_key(format!("k{k}").as_bytes());
            let normal = ring.pick(h, |_| true).unwrap();
            let without_0 = ring.pick(h, |i| i != 0).unwrap();
            assert_ne!(without_0, 0);
            if normal != 0 {
                assert_eq!(normal, without_0, "keys of healthy backends must not move");
            }
        }
    }
}
