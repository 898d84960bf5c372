//! Interval multipliers calibrated online by adaptive conformal inference (Gibbs & Candès, 2021).
//!
//! A Gaussian interval `mean ± 1.96σ` under-covers fat-tailed, volatility-clustered returns and
//! over-covers calm ones. Instead, each level's multiplier `q` is nudged after every realised forecast:
//! up when the outcome fell outside, down when inside, with step sizes chosen so that the long-run miss
//! rate converges to exactly `α` whatever the distribution. The EWMA volatility gives the scale (the
//! RiskMetrics anchor); the multiplier corrects its shape and bias.

use serde::{Deserialize, Serialize};

/// One interval level's adaptive multiplier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaptiveQuantile {
    /// Target miss rate (0.05 for a 95% interval).
    alpha: f64,
    /// Learning rate of `ln q`.
    gamma: f64,
    /// Current multiplier of the scale.
    q: f64,
    /// Bounds of `q`.
    q_min: f64,
    q_max: f64,
}

/// Smallest and largest multiplier allowed, as fractions and multiples of the Gaussian starting value:
/// the interval neither collapses nor explodes after a run of hits or misses (overlapping multi-step
/// forecasts miss in clusters during a crisis).
const Q_MIN_FACTOR: f64 = 0.25;
const Q_MAX_FACTOR: f64 = 4.0;

impl AdaptiveQuantile {
    /// Starts at the Gaussian quantile `z` for miss rate `alpha`.
    pub fn new(alpha: f64, z: f64, gamma: f64) -> Self {
        AdaptiveQuantile {
            alpha,
            gamma,
            q: z,
            q_min: z * Q_MIN_FACTOR,
            q_max: z * Q_MAX_FACTOR,
        }
    }

    /// The current multiplier.
    pub fn q(&self) -> f64 {
        self.q
    }

    /// Learns from one realised standardized error `|e|/σ`, with `weight` in (0, 1] scaling the step:
    /// when `n` forecasts overlap (an `n`-step horizon), their misses are not independent evidence, so each
    /// counts `1/n`.
    pub fn update(&mut self, abs_std_err: f64, weight: f64) {
        if !abs_std_err.is_finite() {
            return;
        }
        let miss = if abs_std_err > self.q { 1.0 } else { 0.0 };
        // Multiplicative step in log space: scale-free, and never crosses zero.
        self.q = (self.q
            * super::fastexp::exp(weight.clamp(0.0, 1.0) * self.gamma * (miss - self.alpha) / self.alpha.max(1e-3)))
        .clamp(self.q_min, self.q_max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::synth::SplitMix64;

    #[test]
    fn converges_to_the_target_miss_rate_on_fat_tails() {
        let mut q = AdaptiveQuantile::new(0.05, 1.96, 0.005);
        let mut rng = SplitMix64::new(9);
        let (mut miss, n) = (0u32, 200_000);
        for _ in 0..n {
            let e = rng.student_t_unit(3).abs();
            miss += u32::from(e > q.q());
            q.update(e, 1.0);
        }
        let rate = miss as f64 / n as f64;
        assert!((rate - 0.05).abs() < 0.003, "{rate}");
    }
}
