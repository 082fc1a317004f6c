//! Choosing among candidates. Every function skips unhealthy candidates and
//! those of weight 0, and returns `None` when nothing is left.

use crate::rng::Rng;
use crate::routing::Candidate;

fn eligible(c: &&Candidate) -> bool {
    c.healthy && c.weight > 0
}

/// The usable candidates.
pub fn healthy<'a>(
    candidates: impl IntoIterator<Item = &'a Candidate>,
) -> impl Iterator<Item = &'a Candidate> {
    candidates.into_iter().filter(eligible)
}

/// The candidate with the fewest requests in flight per unit of weight; ties go
/// to the lower latency average, then to the lower index.
pub fn least_loaded<'a>(
    candidates: impl IntoIterator<Item = &'a Candidate>,
) -> Option<&'a Candidate> {
    healthy(candidates).min_by(|a, b| {
        // in_flight / weight compared without division.
        let load_a = u64::from(a.in_flight) * u64::from(b.weight);
        let load_b = u64::from(b.in_flight) * u64::from(a.weight);
        load_a
            .cmp(&load_b)
            .then(a.latency_ewma_us.cmp(&b.latency_ewma_us))
            .then(a.index.cmp(&b.index))
    })
}

/// A random candidate, each with a chance proportional to its weight.
pub fn weighted<'a>(
    candidates: impl IntoIterator<Item = &'a Candidate> + Clone,
    rng: &mut Rng,
) -> Option<&'a Candidate> {
    let total: u64 = healthy(candidates.clone())
        .map(|c| u64::from(c.weight))
        .sum();
    let mut roll = rng.below(total);
    healthy(candidates).find(|c| {
        let w = u64::from(c.weight);
        if roll < w {
            return true;
        }
        roll -= w;
        false
    })
}

/// Power of two choices: two distinct random candidates, the one with the
/// lower `cost` wins. Avoids the herd that "always the cheapest" creates.
pub fn two_choices<'a, K: Ord>(
    candidates: &'a [Candidate],
    rng: &mut Rng,
    cost: impl Fn(&Candidate) -> K,
) -> Option<&'a Candidate> {
    let n = healthy(candidates).count() as u64;
    let nth = |i: u64| healthy(candidates).nth(i as usize);
    match n {
        0 => None,
        1 => nth(0),
        _ => {
            let a = rng.below(n);
            // The second draw skips the first, so the two differ.
            let mut b = rng.below(n - 1);
            if b >= a {
                b += 1;
            }
            let (x, y) = (nth(a)?, nth(b)?);
            Some(if cost(y) < cost(x) { y } else { x })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_loaded_divides_by_weight_and_skips_the_unhealthy() {
        let cands = [
            Candidate::new(0).with_in_flight(4),
            Candidate::new(1).with_in_flight(6).with_weight(3),
            Candidate::new(2).unhealthy(),
        ];
        assert_eq!(least_loaded(&cands).map(|c| c.index), Some(1));
        assert_eq!(least_loaded(&cands[2..]), None);
    }

    #[test]
    fn weighted_follows_weights() {
        let cands = [
            Candidate::new(0).with_weight(1),
            Candidate::new(1).with_weight(3),
        ];
        let mut rng = Rng::seeded(1);
        let ones = (0..4000)
            .filter(|_| weighted(&cands, &mut rng).unwrap().index == 1)
            .count();
        assert!((2800..3200).contains(&ones), "{ones}");
        assert!(weighted(&cands[..0], &mut rng).is_none());
    }

    #[test]
    fn two_choices_prefers_the_cheaper_of_two() {
        let cands: Vec<Candidate> = (0..2)
            .map(|i| Candidate::new(i).with_in_flight(i * 10))
            .collect();
        let mut rng = Rng::seeded(3);
        for _ in 0..20 {
            assert_eq!(
                two_choices(&cands, &mut rng, |c| c.in_flight)
                    .unwrap()
                    .index,
                0
            );
        }
    }
}
