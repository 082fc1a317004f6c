//! Stable hashing: the same key gives the same number on every instance, every
//! proxy and every version of this crate, so a client or tenant keeps landing
//! on the same backend.

use crate::routing::Candidate;

/// A 64-bit hash of `bytes` (FNV-1a, then a finaliser that spreads every input
/// bit over the whole word, so `hash % n` and `hash >> k` are both usable).
/// Stable: part of this crate's contract.
pub fn stable(bytes: &[u8]) -> u64 {
    let fnv = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    mix(fnv)
}

/// The murmur3 64-bit finaliser.
fn mix(mut z: u64) -> u64 {
    z ^= z >> 33;
    z = z.wrapping_mul(0xff51_afd7_ed55_8ccd);
    z ^= z >> 33;
    z = z.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    z ^ (z >> 33)
}

/// Rendezvous (highest random weight) hashing: the healthy candidate of
/// non-zero weight that `key` ranks first. Each backend's share follows its
/// weight, and when a backend goes away only the keys it held move; the others
/// stay where they were. `None` when no candidate qualifies.
pub fn rendezvous<'a>(
    key: &[u8],
    candidates: impl IntoIterator<Item = &'a Candidate>,
) -> Option<&'a Candidate> {
    let key_hash = stable(key);
    candidates
        .into_iter()
        .filter(|c| c.healthy && c.weight > 0)
        .map(|c| {
            let h = mix(key_hash ^ mix(u64::from(c.index).wrapping_add(0x9e37_79b9_7f4a_7c15)));
            // A uniform draw in (0, 1], turned into a weighted score
            // (weight / -ln u): larger weights win proportionally more keys.
            let u = ((h >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
            (f64::from(c.weight) / -u.ln(), c)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.index.cmp(&a.1.index)))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_fixed() {
        // These values are part of the contract: changing them moves clients.
        assert_eq!(stable(b""), mix(0xcbf2_9ce4_8422_2325));
        assert_eq!(stable(b"acme"), stable(b"acme"));
        assert_ne!(stable(b"acme"), stable(b"acmf"));
    }

    #[test]
    fn rendezvous_moves_only_the_keys_of_a_removed_backend() {
        let all: Vec<Candidate> = (0..4).map(Candidate::new).collect();
        let keys: Vec<String> = (0..400).map(|i| format!("client-{i}")).collect();
        let before: Vec<u32> = keys
            .iter()
            .map(|k| rendezvous(k.as_bytes(), &all).unwrap().index)
            .collect();
        let mut counts = [0; 4];
        before.iter().for_each(|i| counts[*i as usize] += 1);
        assert!(counts.iter().all(|n| (60..140).contains(n)), "{counts:?}");
        let without_2: Vec<Candidate> = all.iter().filter(|c| c.index != 2).cloned().collect();
        for (k, old) in keys.iter().zip(&before) {
            let new = rendezvous(k.as_bytes(), &without_2).unwrap().index;
            if *old != 2 {
                assert_eq!(new, *old, "{k} moved although its backend stayed");
            }
        }
    }

    #[test]
    fn rendezvous_follows_weights() {
        let cands = [Candidate::new(0).with_weight(3), Candidate::new(1)];
        let heavy = (0..2000)
            .filter(|i| rendezvous(format!("{i}").as_bytes(), &cands).unwrap().index == 0)
            .count();
        assert!((1350..1650).contains(&heavy), "{heavy}");
    }
}
