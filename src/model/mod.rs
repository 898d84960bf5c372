//! Online models of the log-mid: a local-level Kalman filter for irregular spacing, recursive least
//! squares with exponential forgetting over features, and EWMA volatility.
//!
//! Map of the module (all pure, synchronous and deterministic: time comes only from tick timestamps):
//!
//! - [`kalman`]: [`LocalLevel`], the local-level state-space model `y = μ + ε`, `μ` a random walk whose
//!   variance grows with elapsed time (or per observation), with online moment-matched noise variances.
//! - [`rls`]: [`Rls`], recursive least squares with exponential forgetting, exact diffuse start and a cap on
//!   the covariance, for regressions of returns on features; const generic feature count, no allocation.
//! - [`volatility`]: [`EwmaVol`], RiskMetrics-style EWMA variance of log-returns per second and per
//!   observation, the RiskMetrics scale of the drift detectors' standardized returns.
//! - [`asym_vol`]: [`AsymVol`], a fast/slow EWMA mixture with a learned sign asymmetry, the scale of the
//!   published intervals.
//! - [`ets`]: the batch model kind: [`EtsFit`], exponential smoothing selected and fitted by augurs-ets's
//!   AutoETS on a training window, then run by its own filtering equations.
//!
//! Every state struct is plain serde data so that checkpoints round-trip to an identical model. Hot-path
//! outcomes (a skipped non-finite input, a warm-up step) are fields of the returned step values, not errors;
//! [`ModelError`] is only for configuration mistakes.

pub mod asym_vol;
pub mod ets;
pub mod kalman;
pub mod rls;
pub mod volatility;

pub use asym_vol::AsymVol;
pub use ets::{EtsError, EtsFit, EtsForm, EtsState, ModelKind};
pub use kalman::{KalmanStep, LocalLevel, LocalLevelConfig, NoiseAdaptation, TimeBase};
pub use rls::{Rls, RlsConfig, RlsInit, RlsStep};
pub use volatility::{EwmaVol, EwmaVolConfig, VolDecay, VolStep};

use serde::{Deserialize, Serialize};

/// Why a model could not be built or reconfigured. Only configuration is fallible: updates never fail,
/// they skip bad input and say so in their step value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// A configuration value is out of its domain (the name of the field and what it must be).
    #[error("invalid model configuration: {0}")]
    InvalidConfig(&'static str),
    /// A forgetting factor outside `(0, 1]` (or not finite) was requested.
    #[error("forgetting factor {0} is not in (0, 1]")]
    InvalidForgetting(f64),
    /// A supplied initial covariance is not symmetric positive definite with finite entries.
    #[error("initial covariance is not symmetric positive definite")]
    BadCovariance,
}

/// What an update did with its input: the hot path reports outcomes as values, never as errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepStatus {
    /// The observation was absorbed into the initial (diffuse) estimate: no prediction existed yet, so the
    /// step's errors and likelihood are zero and must not be scored.
    Warmup,
    /// A normal predict-then-update step.
    Updated,
    /// The input was not finite (or the step would have broken the state); the model is unchanged.
    Skipped,
}

/// A point forecast with the variance of a future observation, the plain data behind every interval the
/// engine publishes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Forecast {
    /// Predicted mean (for the Kalman filter, of the log-mid).
    pub mean: f64,
    /// Predicted variance of the future observation (level uncertainty plus noise), never NaN, `>= 0`.
    pub var: f64,
}

impl Forecast {
    /// The symmetric interval `mean ± z·sd`, e.g. `z = 1.96` for a 95% Gaussian interval.
    pub fn interval(&self, z: f64) -> (f64, f64) {
        let half = z * self.var.max(0.0).sqrt();
        (self.mean - half, self.mean + half)
    }
}

/// Replaces a non-finite or out-of-range value by the nearest bound (NaN goes to `lo`): the one guard used
/// before every value is stored in model state, so NaN can never enter it.
#[inline]
pub(crate) fn clamp_finite(v: f64, lo: f64, hi: f64) -> f64 {
    if v.is_nan() { lo } else { v.clamp(lo, hi) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_is_symmetric_and_survives_a_bad_variance() {
        let f = Forecast { mean: 1.0, var: 4.0 };
        assert_eq!(f.interval(1.96), (1.0 - 3.92, 1.0 + 3.92));
        let g = Forecast { mean: 1.0, var: -1.0 };
        assert_eq!(g.interval(1.96), (1.0, 1.0));
    }

    #[test]
    fn clamp_finite_maps_nan_to_the_floor() {
        assert_eq!(clamp_finite(f64::NAN, 1.0, 2.0), 1.0);
        assert_eq!(clamp_finite(f64::INFINITY, 1.0, 2.0), 2.0);
        assert_eq!(clamp_finite(f64::NEG_INFINITY, 1.0, 2.0), 1.0);
        assert_eq!(clamp_finite(1.5, 1.0, 2.0), 1.5);
    }
}
