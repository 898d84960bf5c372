//! Learning when the model's signal is worth using.
//!
//! Exchange rates are close to a random walk (Meese–Rogoff): most signals are noise most of the time.
//! The published mean is the random walk plus `c · p`, where `p` is the model's standardized prediction
//! and `c ∈ [0, 1]` is the shrunk, exponentially weighted regression coefficient of realised outcomes on
//! past predictions. A useless signal gets `c ≈ 0` (the random walk), a good one `c → 1`; the prior
//! weight `kappa` keeps `c` near zero until evidence accumulates, so the combination does not do worse
//! than the random walk in the long run.

use serde::{Deserialize, Serialize};

/// The combination weight of one horizon.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignalWeight {
    decay: f64,
    kappa: f64,
    s_yp: f64,
    s_pp: f64,
}

impl SignalWeight {
    /// `decay` of the weighted sums per realised forecast, `kappa` the prior weight towards zero.
    pub fn new(decay: f64, kappa: f64) -> Self {
        SignalWeight {
            decay,
            kappa,
            s_yp: 0.0,
            s_pp: 0.0,
        }
    }

    /// The weight to put on the signal now.
    pub fn weight(&self) -> f64 {
        let c = self.s_yp / (self.s_pp + self.kappa);
        if c.is_finite() { c.clamp(0.0, 1.0) } else { 0.0 }
    }

    /// Learns from one realised (standardized) outcome `y` of a prediction `p`, counted with `weight` in
    /// (0, 1]: overlapping multi-step forecasts are not independent evidence, so each counts `1/n`, which
    /// keeps the prior `kappa` meaningful for long horizons.
    pub fn update(&mut self, p: f64, y: f64, weight: f64) {
        if !(p.is_finite() && y.is_finite() && weight.is_finite()) {
            return;
        }
        let w = weight.clamp(0.0, 1.0);
        // decay^w to first order (1 - decay is small): a fractional observation decays fractionally.
        let decay = 1.0 - w * (1.0 - self.decay);
        // Winsorize: one crisis day must not decide the weight for months.
        let y = y.clamp(-6.0, 6.0);
        let p = p.clamp(-6.0, 6.0);
        self.s_yp = decay * self.s_yp + w * y * p;
        self.s_pp = decay * self.s_pp + w * p * p;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::synth::SplitMix64;

    #[test]
    fn noise_gets_no_weight_and_signal_gets_weight() {
        let mut rng = SplitMix64::new(4);
        let (mut noise, mut good) = (SignalWeight::new(0.999, 20.0), SignalWeight::new(0.999, 20.0));
        for _ in 0..20_000 {
            let p = rng.normal() * 0.3;
            noise.update(p, rng.normal(), 1.0);
            good.update(p, p + rng.normal(), 1.0);
        }
        assert!(noise.weight() < 0.2, "{}", noise.weight());
        assert!(good.weight() > 0.7, "{}", good.weight());
    }
}
