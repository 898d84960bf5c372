//! The volatility that scales the published intervals: a mixture of a fast and a slow EWMA of squared
//! log-returns, with a sign asymmetry learned online.
//!
//! **Why not the RiskMetrics EWMA alone.** EWMA(0.94) reacts to every large return and forgets it within
//! weeks: its one-step variance forecast is noisy in calm periods and still catching up in a crisis. On
//! the daily USD/MXN histories, half a fast EWMA (λ = 0.85, memory ≈ 7 observations) plus
//! half a slow one (λ = 0.99, ≈ 100) gives sharper intervals at the same coverage than either alone or
//! than EWMA(0.94) (the slow part plays the long-run variance a GARCH(1,1) reverts to; the fast part
//! catches a crisis within days): `tests/reference/intervals_daily.py`, figures in `docs/measurements.md`.
//!
//! **Asymmetry.** Emerging-market currencies fall in a panic: USD/MXN volatility rises after the peso
//! depreciates (a positive return), as in a GJR-GARCH. Each EWMA is kept as two sums, of squared up-moves
//! and of squared down-moves (`v = v⁺ + v⁻`), and the forecast is `v + θ (v⁺ − v⁻)`. The coefficient `θ`
//! is not assumed: it is the slow (memory ≈ 1,000 returns) ridge regression of the next standardized
//! squared return `r²/v − 1` on `(v⁺ − v⁻)/v`, so it settles near 0.5 on USD/MXN and near 0 on a pair
//! whose volatility does not care about the sign, clamped to `[-0.9, 0.9]`. The forecast is floored at a
//! tenth of `v`, so a large `|θ|` never makes it vanish.
//!
//! Per observation only (the engine's step unit, as for [`super::EwmaVol`]'s `var_per_obs`); no
//! allocation; a few dozen flops per return.

use serde::{Deserialize, Serialize};

/// Decay per return of the fast EWMA.
const FAST_LAMBDA: f64 = 0.85;
/// Decay per return of the slow EWMA.
const SLOW_LAMBDA: f64 = 0.99;
/// Weight of the fast EWMA in the mixture (the slow one has the rest).
const FAST_WEIGHT: f64 = 0.5;
/// Decay per return of the sums of the asymmetry regression (memory ≈ 1,000 returns).
const THETA_DECAY: f64 = 0.999;
/// Ridge prior of the asymmetry regression, in units of its regressor squared: `θ` starts at 0 and
/// moves only when the data say so consistently.
const THETA_PRIOR: f64 = 50.0;
/// Largest `|θ|`.
const THETA_MAX: f64 = 0.9;
/// Largest standardized squared return the regression learns from (`r²/v − 1`, about a 7σ move): one
/// hostile print must not swing `θ`.
const MAX_EXCESS: f64 = 50.0;
/// Smallest variance reported (a constant series must not give zero-width intervals).
const VAR_FLOOR: f64 = 1e-16;
/// Largest squared return absorbed.
const VAR_CAP: f64 = 1.0;

/// One EWMA kept as the sums of squared up- and down-moves and of the weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct SignedEwma {
    up: f64,
    down: f64,
    weight: f64,
}

impl SignedEwma {
    fn update(&mut self, lambda: f64, r: f64, r2: f64) {
        self.up = lambda * self.up + if r > 0.0 { r2 } else { 0.0 };
        self.down = lambda * self.down + if r < 0.0 { r2 } else { 0.0 };
        self.weight = lambda * self.weight + 1.0;
    }

    /// `(v⁺, v⁻)`, the normalised sums.
    fn parts(&self) -> (f64, f64) {
        if self.weight > 0.0 {
            (self.up / self.weight, self.down / self.weight)
        } else {
            (0.0, 0.0)
        }
    }
}

/// Fast/slow EWMA mixture of squared log-returns with a learned sign asymmetry (see the module's
/// documentation). `Default` is a fresh estimator with no return yet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AsymVol {
    fast: SignedEwma,
    slow: SignedEwma,
    /// Σ x·y and Σ x² of the asymmetry regression (decayed; Σ x² includes the prior).
    sxy: f64,
    sxx: f64,
    /// The asymmetry coefficient in force.
    theta: f64,
    /// The symmetric variance `v` and the signed part `v⁺ − v⁻` the last forecast was made from, for the
    /// regression step when the next return arrives (`v = 0`: none yet).
    last_v: f64,
    last_signed: f64,
    n_obs: u64,
}

impl Default for AsymVol {
    fn default() -> Self {
        AsymVol {
            fast: SignedEwma::default(),
            slow: SignedEwma::default(),
            sxy: 0.0,
            sxx: THETA_PRIOR,
            theta: 0.0,
            last_v: 0.0,
            last_signed: 0.0,
            n_obs: 0,
        }
    }
}

impl AsymVol {
    /// Absorbs one log-return (over one observation). Non-finite returns are skipped.
    pub fn update(&mut self, r: f64) {
        if !r.is_finite() {
            return;
        }
        let r2 = (r * r).min(VAR_CAP);
        if self.last_v > 0.0 {
            let y = (r2 / self.last_v - 1.0).min(MAX_EXCESS);
            let x = self.last_signed / self.last_v;
            self.sxy = THETA_DECAY * self.sxy + x * y;
            self.sxx = THETA_DECAY * self.sxx + x * x + (1.0 - THETA_DECAY) * THETA_PRIOR;
            let theta = self.sxy / self.sxx;
            if theta.is_finite() {
                self.theta = theta.clamp(-THETA_MAX, THETA_MAX);
            }
        }
        self.fast.update(FAST_LAMBDA, r, r2);
        self.slow.update(SLOW_LAMBDA, r, r2);
        let (v, signed) = self.mixture();
        self.last_v = if v.is_finite() && v > 0.0 { v } else { 0.0 };
        self.last_signed = if signed.is_finite() { signed } else { 0.0 };
        self.n_obs += 1;
    }

    /// The mixture's symmetric variance `v` and signed part `v⁺ − v⁻`.
    fn mixture(&self) -> (f64, f64) {
        let (fu, fd) = self.fast.parts();
        let (su, sd) = self.slow.parts();
        let up = FAST_WEIGHT * fu + (1.0 - FAST_WEIGHT) * su;
        let down = FAST_WEIGHT * fd + (1.0 - FAST_WEIGHT) * sd;
        (up + down, up - down)
    }

    /// The variance of the next observation's log-return, floored; `None` before any return (the caller
    /// falls back on its own estimate).
    pub fn var_per_obs(&self) -> Option<f64> {
        if self.n_obs == 0 {
            return None;
        }
        let (v, signed) = self.mixture();
        let f = (v + self.theta * signed).max(0.1 * v).clamp(VAR_FLOOR, VAR_CAP);
        f.is_finite().then_some(f)
    }

    /// The asymmetry coefficient in force (positive: volatility rises after up-moves).
    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// Returns absorbed.
    pub fn n_obs(&self) -> u64 {
        self.n_obs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::synth::SplitMix64;

    #[test]
    fn learns_the_sign_asymmetry_and_none_where_there_is_none() {
        // A GJR-GARCH(1,1) whose variance reacts more to up-moves (0.13 r²) than to down-moves (0.03 r²),
        // and i.i.d. returns. The learned θ (memory ≈ 1,000 returns) wanders by about ±0.15 on the
        // second; on the first it settles near 0.4 (a Python replica on three seeds: 0.36 to 0.46).
        let mut rng = SplitMix64::new(3);
        let (mut asym, mut sym) = (AsymVol::default(), AsymVol::default());
        let mut v: f64 = 1e-4;
        for _ in 0..20_000 {
            let r = v.sqrt() * rng.normal();
            asym.update(r);
            v = 5e-6 + 0.9 * v + if r > 0.0 { 0.13 } else { 0.03 } * r * r;
            sym.update(0.01 * rng.normal());
        }
        assert!(asym.theta() > 0.25, "{}", asym.theta());
        assert!(sym.theta().abs() < 0.2, "{}", sym.theta());
        let v = sym.var_per_obs().unwrap();
        assert!((v / 1e-4 - 1.0).abs() < 0.5, "{v}");
    }

    #[test]
    fn hostile_input_never_yields_nan() {
        let mut v = AsymVol::default();
        assert_eq!(v.var_per_obs(), None);
        for r in [0.0, f64::NAN, 1e300, -1e300, f64::INFINITY, 0.0, 1e-300] {
            v.update(r);
            let x = v.var_per_obs().unwrap();
            assert!(x.is_finite() && x > 0.0);
        }
        let mut c = AsymVol::default();
        for _ in 0..1_000 {
            c.update(0.0);
        }
        assert_eq!(c.var_per_obs(), Some(VAR_FLOOR));
    }

    #[test]
    fn serde_round_trip_is_identical() {
        let mut v = AsymVol::default();
        for i in 0..300 {
            v.update(1e-3 * ((i as f64) * 0.37).sin());
        }
        let back: AsymVol = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(v, back);
    }
}
