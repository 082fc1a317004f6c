//! Exponentially weighted moving average.

/// An exponentially weighted moving average: each new sample moves the average
/// by `alpha` of the difference. Keeps one float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ewma {
    alpha: f64,
    value: Option<f64>,
}

impl Ewma {
    /// An average where each sample weighs `alpha` (0 < alpha <= 1; clamped).
    pub fn new(alpha: f64) -> Self {
        Self {
            alpha: alpha.clamp(f64::MIN_POSITIVE, 1.0),
            value: None,
        }
    }

    /// An average whose memory halves every `samples` samples.
    pub fn with_half_life(samples: u32) -> Self {
        Self::new(1.0 - 0.5f64.powf(1.0 / f64::from(samples.max(1))))
    }

    /// Adds a sample (the first one is taken as is) and returns the average.
    pub fn observe(&mut self, sample: f64) -> f64 {
        let next = match self.value {
            None => sample,
            Some(v) => v + self.alpha * (sample - v),
        };
        self.value = Some(next);
        next
    }

    /// The average, `None` before the first sample.
    pub fn value(&self) -> Option<f64> {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_life_halves_the_memory() {
        let mut e = Ewma::with_half_life(10);
        e.observe(100.0);
        for _ in 0..10 {
            e.observe(0.0);
        }
        assert!((e.value().unwrap() - 50.0).abs() < 0.01, "{e:?}");
        assert_eq!(Ewma::new(0.5).value(), None);
    }
}
