//! Recursive least squares with exponential forgetting, for regressions of the next return on features.
//!
//! The recursion, with forgetting factor `λ ∈ (0, 1]` (effective memory ≈ `1/(1-λ)` observations):
//!
//! ```text
//! e = y - wᵀx                 (a priori prediction error: predict, then learn)
//! k = P x / (λ + xᵀ P x)
//! w ← w + k e
//! P ← (P - k xᵀ P) / λ        (then symmetrised)
//! ```
//!
//! This is padasip's `FilterRLS` (its `mu` is our `λ`) and, with `λ = 1`, statsmodels' `RecursiveLS`.
//!
//! **Initialisation.** [`RlsInit::Diffuse`] is the exact diffuse start statsmodels uses: until the
//! (forgetting-weighted) normal equations `Σ λ^{t-s} x xᵀ` are well conditioned, observations are only
//! accumulated; then `P = (XᵀX)⁻¹`, `w = P Xᵀy` (OLS on the first observations) and the recursion takes
//! over. [`RlsInit::Ridge`] is the classic `P = I/δ`, `w = 0`; [`Rls::with_prior`] takes any prior.
//!
//! **Blow-up guard.** With `λ < 1` and no excitation in some direction, `P` grows like `λ^{-t}` there and
//! the next excitation would produce a huge gain. After every update the trace of `P` is capped at
//! `max_trace` by *scaling* `P` (which keeps its shape, i.e. which directions are well known) rather than
//! adding a ridge; a non-finite or non-positive-diagonal `P` (only reachable through rounding) is reset to
//! `(max_trace / N)·I`, keeping the weights. `P` is symmetrised after every update.

use nalgebra::{SMatrix, SVector};
use serde::{Deserialize, Serialize};

use super::{ModelError, StepStatus};

/// How the weights and their covariance start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RlsInit {
    /// Exact diffuse: accumulate observations until the normal equations are well conditioned, then start
    /// from their OLS solution. Matches statsmodels' `RecursiveLS`.
    Diffuse,
    /// `w = 0`, `P = I/delta` (padasip's `eps` is `delta`).
    Ridge {
        /// Regularisation; small means a vague prior.
        delta: f64,
    },
}

/// Settings of an [`Rls`]; plain serde data for the engine config.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RlsConfig {
    /// Forgetting factor `λ ∈ (0, 1]`; `1` is ordinary recursive least squares.
    pub forgetting: f64,
    /// How weights and covariance start.
    pub init: RlsInit,
    /// Cap on `trace(P)` (see the module docs); must be large enough not to bind in normal operation.
    pub max_trace: f64,
}

impl Default for RlsConfig {
    /// Memory of ~1000 observations, exact diffuse start.
    fn default() -> Self {
        RlsConfig {
            forgetting: 0.999,
            init: RlsInit::Diffuse,
            max_trace: 1e8,
        }
    }
}

/// What one [`Rls::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RlsStep<const N: usize> {
    /// `Warmup` while the diffuse start is still accumulating (the errors are then 0 and not scored).
    pub status: StepStatus,
    /// `wᵀx` with the weights before the update.
    pub prediction: f64,
    /// `y - wᵀx`, the a priori error.
    pub prediction_error: f64,
    /// `e / sqrt(1 + xᵀ P x)` with `P` before the update: statsmodels' `resid_recursive` (for `λ = 1` and
    /// i.i.d. noise these are i.i.d. `N(0, σ²)`, the basis of CUSUM tests).
    pub recursive_residual: f64,
    /// The gain `k` applied to the error.
    pub gain: SVector<f64, N>,
}

/// The forgetting-weighted normal equations of the diffuse start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NormalEquations<const N: usize> {
    xtx: SMatrix<f64, N, N>,
    xty: SVector<f64, N>,
    count: u64,
}

/// Recursive least squares over `N` features: fixed-size state, no allocation per update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rls<const N: usize> {
    cfg: RlsConfig,
    forgetting: f64,
    weights: SVector<f64, N>,
    p: SMatrix<f64, N, N>,
    warmup: Option<NormalEquations<N>>,
    n_updates: u64,
}

/// Smallest `min(diag L)² / max(diag L)²` of the Cholesky factor accepted to end the diffuse start: a rough
/// reciprocal condition number, so a near-collinear start does not give an absurd `P`.
const MIN_RCOND: f64 = 1e-12;

fn validate(cfg: &RlsConfig) -> Result<(), ModelError> {
    if !(cfg.forgetting.is_finite() && cfg.forgetting > 0.0 && cfg.forgetting <= 1.0) {
        return Err(ModelError::InvalidForgetting(cfg.forgetting));
    }
    if !(cfg.max_trace.is_finite() && cfg.max_trace > 0.0) {
        return Err(ModelError::InvalidConfig("max_trace must be finite and > 0"));
    }
    if let RlsInit::Ridge { delta } = cfg.init
        && !(delta.is_finite() && delta > 0.0)
    {
        return Err(ModelError::InvalidConfig("init delta must be finite and > 0"));
    }
    Ok(())
}

impl<const N: usize> Rls<N> {
    /// A model with no observation yet.
    ///
    /// # Errors
    /// [`ModelError`] when the forgetting factor, `max_trace` or `delta` is out of range.
    pub fn new(cfg: RlsConfig) -> Result<Self, ModelError> {
        validate(&cfg)?;
        let (p, warmup) = match cfg.init {
            RlsInit::Diffuse => (
                SMatrix::<f64, N, N>::identity() * (cfg.max_trace / N.max(1) as f64),
                Some(NormalEquations {
                    xtx: SMatrix::zeros(),
                    xty: SVector::zeros(),
                    count: 0,
                }),
            ),
            RlsInit::Ridge { delta } => (SMatrix::<f64, N, N>::identity() / delta, None),
        };
        Ok(Rls {
            cfg,
            forgetting: cfg.forgetting,
            weights: SVector::zeros(),
            p,
            warmup,
            n_updates: 0,
        })
    }

    /// A model starting from a supplied prior `w ~ (weights, p)` (e.g. a previous fit), ignoring `cfg.init`.
    ///
    /// # Errors
    /// [`ModelError::BadCovariance`] when `p` is not finite symmetric positive definite or `weights` is not
    /// finite; otherwise as [`Rls::new`].
    pub fn with_prior(cfg: RlsConfig, weights: SVector<f64, N>, p: SMatrix<f64, N, N>) -> Result<Self, ModelError> {
        validate(&cfg)?;
        let finite = weights.iter().chain(p.iter()).all(|v| v.is_finite());
        let symmetric = (p - p.transpose()).amax() <= 1e-12 * p.amax().max(1.0);
        if !finite || !symmetric || p.cholesky().is_none() {
            return Err(ModelError::BadCovariance);
        }
        Ok(Rls {
            cfg,
            forgetting: cfg.forgetting,
            weights,
            p,
            warmup: None,
            n_updates: 0,
        })
    }

    /// `wᵀx`, the prediction with the current weights (0 during the diffuse start).
    pub fn predict(&self, x: &SVector<f64, N>) -> f64 {
        let y = self.weights.dot(x);
        if y.is_finite() { y } else { 0.0 }
    }

    /// Predicts `y` from `x`, then learns from the error. Non-finite `x` or `y` is skipped and the model is
    /// unchanged; the returned step never holds NaN.
    pub fn update(&mut self, x: &SVector<f64, N>, y: f64) -> RlsStep<N> {
        if !y.is_finite() || !x.iter().all(|v| v.is_finite()) {
            return Self::quiet(StepStatus::Skipped);
        }
        let lambda = self.forgetting;
        if let Some(ne) = self.warmup.as_mut() {
            let xtx = ne.xtx * lambda + x * x.transpose();
            let xty = ne.xty * lambda + x * y;
            if !xtx.iter().chain(xty.iter()).all(|v| v.is_finite()) {
                // An overflowing observation would poison the normal equations for good.
                return Self::quiet(StepStatus::Skipped);
            }
            ne.xtx = xtx;
            ne.xty = xty;
            ne.count += 1;
            if ne.count >= N as u64 {
                self.try_end_warmup();
            }
            return Self::quiet(StepStatus::Warmup);
        }

        let px = self.p * x;
        let xpx = x.dot(&px);
        let prediction = self.weights.dot(x);
        let error = y - prediction;
        let denom = lambda + xpx;
        if !(error.is_finite() && denom.is_finite() && denom > 0.0 && xpx >= 0.0) {
            return Self::quiet(StepStatus::Skipped);
        }
        let gain = px / denom;
        let new_weights = self.weights + gain * error;
        if !new_weights.iter().all(|v| v.is_finite()) {
            return Self::quiet(StepStatus::Skipped);
        }
        self.weights = new_weights;
        // P ← (P − Px·(Px)ᵀ/denom)/λ. Written with the outer product of Px with itself (whose (i,j) and
        // (j,i) entries are the same product, bit for bit), P stays exactly symmetric without a separate
        // symmetrising pass.
        self.p = (self.p - (px * px.transpose()) * (1.0 / denom)) * (1.0 / lambda);
        self.guard_covariance();
        self.n_updates += 1;
        RlsStep {
            status: StepStatus::Updated,
            prediction,
            prediction_error: error,
            recursive_residual: error / (1.0 + xpx).sqrt(),
            gain,
        }
    }

    /// The current weights (zeros during the diffuse start).
    pub fn weights(&self) -> &SVector<f64, N> {
        &self.weights
    }

    /// The current `P` (the weights' covariance divided by the noise variance).
    pub fn covariance(&self) -> &SMatrix<f64, N, N> {
        &self.p
    }

    /// The forgetting factor in use.
    pub fn forgetting(&self) -> f64 {
        self.forgetting
    }

    /// Changes the forgetting factor from the next update on: the engine forgets faster for a while after a
    /// drift alarm, then restores the configured value ([`Rls::config`]`.forgetting`).
    ///
    /// # Errors
    /// [`ModelError::InvalidForgetting`] unless `0 < lambda <= 1`; the model is then unchanged.
    pub fn set_forgetting(&mut self, lambda: f64) -> Result<(), ModelError> {
        if !(lambda.is_finite() && lambda > 0.0 && lambda <= 1.0) {
            return Err(ModelError::InvalidForgetting(lambda));
        }
        self.forgetting = lambda;
        Ok(())
    }

    /// Whether the diffuse start is still accumulating (predictions are then not meaningful).
    pub fn is_warming_up(&self) -> bool {
        self.warmup.is_some()
    }

    /// Recursive updates done (warm-up and skipped observations excluded).
    pub fn n_updates(&self) -> u64 {
        self.n_updates
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &RlsConfig {
        &self.cfg
    }

    fn try_end_warmup(&mut self) {
        let Some(ne) = self.warmup.as_ref() else { return };
        let Some(chol) = ne.xtx.cholesky() else { return };
        let diag = chol.l_dirty().diagonal();
        let (lo, hi) = (diag.min(), diag.max());
        if !(hi > 0.0 && (lo / hi).powi(2) > MIN_RCOND) {
            return;
        }
        let p = chol.inverse();
        let weights = p * ne.xty;
        if !(p.iter().chain(weights.iter()).all(|v| v.is_finite())) {
            return;
        }
        self.p = (p + p.transpose()) * 0.5;
        self.weights = weights;
        self.warmup = None;
        self.guard_covariance();
    }

    fn guard_covariance(&mut self) {
        let trace = self.p.trace();
        let diag_ok = self.p.diagonal().iter().all(|&d| d > 0.0);
        // One sum tells whether every entry is finite (any NaN or infinity makes it non-finite).
        if !trace.is_finite() || !diag_ok || !self.p.sum().is_finite() {
            self.p = SMatrix::identity() * (self.cfg.max_trace / N.max(1) as f64);
        } else if trace > self.cfg.max_trace {
            self.p *= self.cfg.max_trace / trace;
        }
    }

    fn quiet(status: StepStatus) -> RlsStep<N> {
        RlsStep {
            status,
            prediction: 0.0,
            prediction_error: 0.0,
            recursive_residual: 0.0,
            gain: SVector::zeros(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type V2 = SVector<f64, 2>;

    fn ridge(lambda: f64) -> RlsConfig {
        RlsConfig {
            forgetting: lambda,
            init: RlsInit::Ridge { delta: 0.01 },
            max_trace: 1e6,
        }
    }

    fn is_symmetric<const N: usize>(p: &SMatrix<f64, N, N>) -> bool {
        p == &p.transpose()
    }

    #[test]
    fn diffuse_start_is_ols_on_the_first_observations() {
        let mut m = Rls::<2>::new(RlsConfig {
            forgetting: 1.0,
            ..RlsConfig::default()
        })
        .unwrap();
        assert_eq!(m.update(&V2::new(1.0, 1.0), 3.0).status, StepStatus::Warmup);
        assert!(m.is_warming_up());
        assert_eq!(m.update(&V2::new(1.0, 2.0), 5.0).status, StepStatus::Warmup);
        assert!(!m.is_warming_up());
        // y = 1 + 2x exactly
        assert!((m.weights() - V2::new(1.0, 2.0)).amax() < 1e-12);
        let s = m.update(&V2::new(1.0, 3.0), 8.0);
        assert_eq!(s.status, StepStatus::Updated);
        assert!((s.prediction_error - 1.0).abs() < 1e-12);
    }

    #[test]
    fn collinear_start_keeps_warming_up() {
        let mut m = Rls::<2>::new(RlsConfig::default()).unwrap();
        for i in 0..10 {
            m.update(&V2::new(1.0, 2.0), f64::from(i));
        }
        assert!(m.is_warming_up());
        m.update(&V2::new(1.0, 3.0), 1.0);
        assert!(!m.is_warming_up());
        assert!(m.weights().iter().all(|w| w.is_finite()));
    }

    #[test]
    fn no_excitation_with_forgetting_caps_the_trace_and_stays_symmetric() {
        let mut m = Rls::<2>::new(ridge(0.9)).unwrap();
        for i in 0..100 {
            m.update(&V2::new(1.0, 0.5 * f64::from(i % 3)), 1.0);
        }
        // Only the first feature excited from now on: P blows up along the second without the cap.
        for _ in 0..5_000 {
            let s = m.update(&V2::new(1.0, 0.0), 1.0);
            assert!(s.gain.iter().all(|g| g.is_finite()));
            assert!(is_symmetric(m.covariance()));
            assert!(m.covariance().trace() <= 1e6 * (1.0 + 1e-12));
        }
        let s = m.update(&V2::new(0.0, 1.0), 2.0);
        assert!(s.prediction_error.is_finite() && m.weights().iter().all(|w| w.is_finite()));
    }

    #[test]
    fn hostile_input_is_skipped_and_never_yields_nan() {
        let mut m = Rls::<2>::new(ridge(0.98)).unwrap();
        m.update(&V2::new(1.0, 2.0), 1.0);
        let before = m.clone();
        for (x, y) in [
            (V2::new(f64::NAN, 1.0), 1.0),
            (V2::new(1.0, f64::INFINITY), 1.0),
            (V2::new(1.0, 1.0), f64::NAN),
            (V2::new(1e300, 1e300), 1.0),
        ] {
            let s = m.update(&x, y);
            assert_eq!(s.status, StepStatus::Skipped);
        }
        assert_eq!(m, before);
        for (x, y) in [
            (V2::new(1e150, -1e150), 1e300),
            (V2::new(0.0, 0.0), 0.0),
            (V2::new(1e-300, 0.0), -1e300),
        ] {
            let s = m.update(&x, y);
            for v in [s.prediction, s.prediction_error, s.recursive_residual] {
                assert!(v.is_finite(), "{s:?}");
            }
            assert!(m.weights().iter().chain(m.covariance().iter()).all(|v| v.is_finite()));
            assert!(m.predict(&V2::new(1.0, 1.0)).is_finite());
        }
    }

    #[test]
    fn forgetting_factor_change_tracks_a_break_faster() {
        let run = |fast: bool| {
            let mut m = Rls::<2>::new(ridge(0.999)).unwrap();
            for i in 0..2_000 {
                let x = V2::new(1.0, f64::from(i % 7) - 3.0);
                let y = if i < 1_000 { x[1] } else { 2.0 * x[1] };
                if fast && i == 1_000 {
                    m.set_forgetting(0.9).unwrap();
                }
                if fast && i == 1_100 {
                    m.set_forgetting(0.999).unwrap();
                }
                m.update(&x, y);
                if i == 1_150 {
                    return m.weights()[1];
                }
            }
            unreachable!()
        };
        let (slow, fast) = (run(false), run(true));
        assert!((fast - 2.0).abs() < 0.01, "fast {fast}");
        assert!((slow - 2.0).abs() > 0.2, "slow {slow}");
        let mut m = Rls::<2>::new(ridge(0.999)).unwrap();
        for bad in [0.0, -0.5, 1.01, f64::NAN] {
            assert!(m.set_forgetting(bad).is_err());
        }
        assert_eq!(m.forgetting(), 0.999);
    }

    #[test]
    fn serde_round_trip_is_identical_in_warmup_and_after() {
        let mut m = Rls::<3>::new(RlsConfig::default()).unwrap();
        let x = |i: u32| SVector::<f64, 3>::new(1.0, f64::from(i).sin(), f64::from(i * i % 11) / 7.0);
        m.update(&x(1), 0.3);
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(m, serde_json::from_str::<Rls<3>>(&json).unwrap());
        for i in 2..200 {
            m.update(&x(i), 0.1 * f64::from(i).cos());
        }
        let json = serde_json::to_string(&m).unwrap();
        let mut back: Rls<3> = serde_json::from_str(&json).unwrap();
        assert_eq!(m, back);
        assert_eq!(m.update(&x(500), 0.2), back.update(&x(500), 0.2));
    }

    #[test]
    fn with_prior_rejects_a_bad_covariance() {
        let cfg = RlsConfig::default();
        let w = V2::zeros();
        assert!(Rls::with_prior(cfg, w, SMatrix::<f64, 2, 2>::new(1.0, 2.0, 2.0, 1.0)).is_err());
        assert!(Rls::with_prior(cfg, w, SMatrix::<f64, 2, 2>::new(1.0, 0.1, 0.0, 1.0)).is_err());
        assert!(Rls::with_prior(cfg, w, SMatrix::<f64, 2, 2>::identity()).is_ok());
    }
}
