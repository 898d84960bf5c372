//! A batch model: exponential smoothing (ETS, Hyndman et al. 2008) selected and fitted by `augurs-ets`'s
//! AutoETS on a training window, then run by cambio's own filtering equations between refits.
//!
//! The split keeps the checkpoint independent of augurs: [`fit`] asks AutoETS to choose the form and
//! estimate it, and keeps only plain numbers of our own in an [`EtsFit`] (form, smoothing parameters,
//! residual variance, states). From then on [`EtsFit::update`] advances the level and trend by one
//! observation and [`EtsFit::forecast`] gives the h-step point forecast and its variance from the analytic
//! formulas (Hyndman et al. 2008, ch. 6, class 1), so a refit changes the numbers and nothing else.
//!
//! The series is the engine's: the natural log of the accepted mids, one observation per accepted tick.
//! An additive error on the log price is a multiplicative error on the price, which is what a rate's
//! noise is; the intervals are symmetric in log space and become price intervals through `exp`.
//!
//! Only additive-error, non-seasonal forms are searched (`AZN`: ANN, AAN, AAdN):
//! - multiplicative error on a log price is meaningless (a log rate crosses zero near parity: USD/CHF,
//!   EUR/GBP), and AutoETS would drop it for such series anyway, so fits would differ by pair;
//! - FX fixings and ticks have no useful season in observation count: business-day fixings skip weekends
//!   and holidays, and tick spacing varies by orders of magnitude within a day, so "the same phase m
//!   observations ago" is not the same time of day or week. The intraday pattern of activity is in the
//!   volatility, which the engine's other components track, not in the level.
//!
//! `augurs-ets` 0.10 exposes a fitted model's forecasts, fitted values and information criteria but not
//! its parameters or states. [`fit`] recovers them from the fitted values with the model's own state
//! equations (least squares on identities that hold exactly, up to rounding) and then checks that its
//! filter reproduces augurs's in-sample one-step forecasts; a fit it cannot reproduce is refused
//! ([`EtsError::Recovery`]), never used approximately.

use augurs_core::{Fit, Predict};
use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

/// Which model produced a forecast: the online models or a batch-fitted ETS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// The online models (Kalman level, RLS signal, adaptive intervals): the default.
    #[default]
    Online,
    /// A batch-fitted exponential smoothing model ([`EtsFit`]), updated by its filtering equations.
    Ets,
}

impl ModelKind {
    /// The name used in configuration and on the wire.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Online => "online",
            ModelKind::Ets => "ets",
        }
    }
}

/// The ETS forms cambio runs (additive error, no season; see the module's documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtsForm {
    /// Simple exponential smoothing: a level, no trend.
    #[default]
    #[serde(rename = "ANN")]
    Ann,
    /// Holt's linear trend.
    #[serde(rename = "AAN")]
    Aan,
    /// Holt's trend damped by `phi` per step.
    #[serde(rename = "AAdN")]
    AadN,
}

impl EtsForm {
    /// The form's name in Hyndman's notation (`ANN`, `AAN`, `AAdN`).
    pub fn name(self) -> &'static str {
        match self {
            EtsForm::Ann => "ANN",
            EtsForm::Aan => "AAN",
            EtsForm::AadN => "AAdN",
        }
    }

    /// Parameters estimated besides the initial states (alpha; beta with a trend; phi when damped), as
    /// augurs counts them for the residual variance's degrees of freedom.
    fn n_params(self) -> usize {
        match self {
            EtsForm::Ann => 2,
            EtsForm::Aan => 4,
            EtsForm::AadN => 5,
        }
    }
}

/// The filter's state after an observation: level and trend of the log price (trend 0 without one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtsState {
    /// The level `l`.
    pub level: f64,
    /// The trend (slope per observation) `b`.
    pub trend: f64,
}

/// A fitted ETS model: the form AutoETS selected, its parameters and residual variance, and the filter's
/// state. Plain numbers only, so the checkpoint and the configuration do not depend on augurs's types.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtsFit {
    /// The selected form.
    pub form: EtsForm,
    /// Smoothing of the level, in (0, 1].
    pub alpha: f64,
    /// Smoothing of the trend, in [0, alpha] (0 without a trend).
    pub beta: f64,
    /// Damping of the trend per step, in (0, 1] (1 when not damped).
    pub phi: f64,
    /// Variance of the one-step errors of the log price (augurs's estimate: the sum of squared residuals
    /// over `n - parameters - 2`).
    pub sigma2: f64,
    /// The state before the window's first observation: filtering the window again from it reproduces
    /// the fit exactly ([`EtsFit::at_window_start`]).
    pub initial: EtsState,
    /// The state now (after the window's last observation when just fitted).
    pub state: EtsState,
    /// Observations in the training window.
    pub n_obs: u64,
    /// The corrected Akaike criterion of the selected form on the window (lower is better), for the record.
    pub aicc: f64,
}

/// Why a window could not be fitted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EtsError {
    /// Fewer observations than a fit needs.
    #[error("an ETS fit needs at least {MIN_OBS} observations, the window has {0}")]
    TooShort(usize),
    /// An observation is not a finite number.
    #[error("observation {0} of the window is not a finite number")]
    NotFinite(usize),
    /// augurs-ets could not fit any candidate form.
    #[error("AutoETS found no model: {0}")]
    Augurs(String),
    /// The fitted parameters could not be recovered so that cambio's filter reproduces augurs's fitted
    /// values.
    #[error("the fitted ETS model could not be reproduced: {0}")]
    Recovery(String),
}

/// Fewest observations [`fit`] accepts: the damped form has five parameters and two initial states.
pub const MIN_OBS: usize = 20;

/// Largest relative difference between cambio's filtered one-step forecasts and augurs's fitted values
/// that [`fit`] accepts (the recovery is exact up to rounding: about 1e-13 in practice).
const RECOVERY_TOLERANCE: f64 = 1e-9;

/// An h-step forecast of the log price: its mean and the variance of the observation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EtsForecast {
    /// Point forecast (log price).
    pub mean: f64,
    /// Variance of the observation at the horizon (log price squared).
    pub var: f64,
}

/// Selects and fits an ETS model on `obs`, the log prices of a training window in order.
///
/// # Errors
/// [`EtsError`]: a window too short or with a non-finite value, no form fitted, or a fit cambio cannot
/// reproduce.
pub fn fit(obs: &[f64]) -> Result<EtsFit, EtsError> {
    fit_with(obs, |y| {
        let fitted = augurs_ets::AutoETS::new(1, "AZN")?.fit(y)?;
        Ok(fitted.model().clone())
    })
}

/// [`fit`] with a given augurs fit of the window (the tests pin each form).
fn fit_with(
    obs: &[f64],
    fit_augurs: impl FnOnce(&[f64]) -> Result<augurs_ets::model::Model, augurs_ets::Error>,
) -> Result<EtsFit, EtsError> {
    if obs.len() < MIN_OBS {
        return Err(EtsError::TooShort(obs.len()));
    }
    if let Some(i) = obs.iter().position(|v| !v.is_finite()) {
        return Err(EtsError::NotFinite(i));
    }
    let model = fit_augurs(obs).map_err(|e| EtsError::Augurs(e.to_string()))?;
    let form = match (model.model_type().trend.included(), model.damped()) {
        (false, _) => EtsForm::Ann,
        (true, false) => EtsForm::Aan,
        (true, true) => EtsForm::AadN,
    };
    let f = model
        .predict_in_sample(None::<f64>)
        .map_err(|e| EtsError::Augurs(e.to_string()))?
        .point;
    if f.len() != obs.len() {
        return Err(EtsError::Recovery(format!(
            "{} fitted values for {} observations",
            f.len(),
            obs.len()
        )));
    }
    let e: Vec<f64> = obs.iter().zip(&f).map(|(y, f)| y - f).collect();
    let (alpha, beta, phi) = recover_params(form, &f, &e)?;
    // The state before the first observation, from the first two one-step forecasts:
    // f₀ = l₀ + φb₀ and f₁ = f₀ + αe₀ + φ(φb₀ + βe₀).
    let initial = match form {
        EtsForm::Ann => EtsState {
            level: f[0],
            trend: 0.0,
        },
        EtsForm::Aan | EtsForm::AadN => {
            let b0 = (f[1] - f[0] - alpha * e[0] - phi * beta * e[0]) / (phi * phi);
            EtsState {
                level: f[0] - phi * b0,
                trend: b0,
            }
        }
    };
    let sse: f64 = e.iter().map(|v| v * v).sum();
    let dof = obs.len() as f64 - form.n_params() as f64 - 2.0;
    let mut out = EtsFit {
        form,
        alpha,
        beta,
        phi,
        sigma2: sse / dof,
        initial,
        state: initial,
        n_obs: obs.len() as u64,
        aicc: model.aicc(),
    };
    // Filter the window with our own equations; they must give augurs's fitted values.
    let mut worst: f64 = 0.0;
    for (y, theirs) in obs.iter().zip(&f) {
        let ours = out.forecast(1).mean;
        worst = worst.max((ours - theirs).abs() / theirs.abs().max(1.0));
        out.update(*y);
    }
    if worst.is_nan() || worst > RECOVERY_TOLERANCE {
        return Err(EtsError::Recovery(format!(
            "the recovered {} filter departs from the fitted values by {worst:e} (relative)",
            form.name()
        )));
    }
    out.check().map_err(EtsError::Recovery)?;
    Ok(out)
}

/// The smoothing parameters behind one-step forecasts `f` with errors `e`, by least squares on the
/// state equations written in forecasts (`u_t = f_{t+1} - f_t`):
/// ANN `u_t = α e_t`; AAN `u_t - u_{t-1} = (α+β) e_t - α e_{t-1}`;
/// AAdN `u_t = (α+φβ) e_t + φ u_{t-1} - φα e_{t-1}`. QR, not normal equations: with a small β the
/// damped form's regressors are nearly collinear.
fn recover_params(form: EtsForm, f: &[f64], e: &[f64]) -> Result<(f64, f64, f64), EtsError> {
    let n = f.len();
    let u: Vec<f64> = f.windows(2).map(|w| w[1] - w[0]).collect();
    let solve = |rows: usize, cols: usize, fill: &dyn Fn(usize, &mut [f64]) -> f64| {
        let mut a = DMatrix::<f64>::zeros(rows, cols);
        let mut b = DVector::<f64>::zeros(rows);
        let mut row = vec![0.0; cols];
        for r in 0..rows {
            b[r] = fill(r, &mut row);
            for (c, v) in row.iter().enumerate() {
                a[(r, c)] = *v;
            }
        }
        let qr = a.qr();
        let (q, r) = qr.unpack();
        let qtb = q.transpose() * b;
        r.solve_upper_triangular(&qtb)
            .map(|x| x.iter().copied().collect::<Vec<f64>>())
            .ok_or_else(|| EtsError::Recovery("the fitted values do not determine the parameters".into()))
    };
    let (alpha, beta, phi) = match form {
        EtsForm::Ann => {
            let x = solve(n - 1, 1, &|t, row| {
                row[0] = e[t];
                u[t]
            })?;
            (x[0], 0.0, 1.0)
        }
        EtsForm::Aan => {
            let x = solve(n - 2, 2, &|r, row| {
                let t = r + 1;
                row[0] = e[t];
                row[1] = e[t - 1];
                u[t] - u[t - 1]
            })?;
            let alpha = -x[1];
            (alpha, x[0] - alpha, 1.0)
        }
        EtsForm::AadN => {
            let x = solve(n - 2, 3, &|r, row| {
                let t = r + 1;
                row[0] = e[t];
                row[1] = u[t - 1];
                row[2] = e[t - 1];
                u[t]
            })?;
            let phi = x[1];
            let alpha = -x[2] / phi;
            (alpha, (x[0] - alpha) / phi, phi)
        }
    };
    if ![alpha, beta, phi].iter().all(|v| v.is_finite()) {
        return Err(EtsError::Recovery("the recovered parameters are not finite".into()));
    }
    Ok((alpha, beta, phi))
}

/// The Gaussian quantiles of the central 80% and 95% intervals.
pub const Z80: f64 = 1.281_551_565_544_600_5;
/// See [`Z80`].
pub const Z95: f64 = 1.959_963_984_540_054;

impl EtsFit {
    /// Checks that the numbers describe a model the filter can run (they may come from a configuration
    /// file or a checkpoint): finite, `0 < α ≤ 1`, `0 ≤ β ≤ α`, `0 < φ ≤ 1`, `σ² > 0`; no trend
    /// parameters for ANN, `φ = 1` for AAN.
    ///
    /// # Errors
    /// What is wrong, in words.
    pub fn check(&self) -> Result<(), String> {
        let all = [
            self.alpha,
            self.beta,
            self.phi,
            self.sigma2,
            self.initial.level,
            self.initial.trend,
            self.state.level,
            self.state.trend,
        ];
        if !all.iter().all(|v| v.is_finite()) {
            return Err("every ETS number must be finite".into());
        }
        // A little rounding slack: the recovered parameters are exact only up to rounding.
        let slack = 1e-9;
        if !(self.alpha > 0.0 && self.alpha <= 1.0 + slack) {
            return Err(format!("alpha {} is not in (0, 1]", self.alpha));
        }
        if !(self.beta >= -slack && self.beta <= self.alpha + slack) {
            return Err(format!("beta {} is not in [0, alpha]", self.beta));
        }
        if !(self.phi > 0.0 && self.phi <= 1.0 + slack) {
            return Err(format!("phi {} is not in (0, 1]", self.phi));
        }
        if self.sigma2 <= 0.0 {
            return Err(format!("sigma2 {} is not positive", self.sigma2));
        }
        match self.form {
            EtsForm::Ann if self.beta != 0.0 || self.phi != 1.0 || self.state.trend != 0.0 => {
                Err("form ANN has no trend: beta 0, phi 1, trend 0".into())
            }
            EtsForm::Aan if self.phi != 1.0 => Err("form AAN is not damped: phi 1".into()),
            _ => Ok(()),
        }
    }

    /// A copy whose state is the one before the training window, for a caller that warms an engine by
    /// replaying the window itself: the filter then ends the warm-up where the fit ended.
    pub fn at_window_start(&self) -> EtsFit {
        EtsFit {
            state: self.initial,
            ..self.clone()
        }
    }

    /// Advances the state by one observation `y` (a log price). A non-finite `y` is skipped.
    ///
    /// The operations are augurs-ets's own, in its order (`q = l + φb`, `l' = q + α(y − q)`,
    /// `b' = φb + (β/α)(l' − l − φb)`), so the filter reproduces its fitted values to rounding.
    pub fn update(&mut self, y: f64) {
        if !y.is_finite() {
            return;
        }
        let EtsState { level: l, trend: b } = self.state;
        match self.form {
            EtsForm::Ann => {
                self.state.level = l + self.alpha * (y - l);
            }
            EtsForm::Aan | EtsForm::AadN => {
                let phi_b = self.phi * b;
                let q = l + phi_b;
                let level = q + self.alpha * (y - q);
                self.state = EtsState {
                    level,
                    trend: phi_b + (self.beta / self.alpha) * ((level - l) - phi_b),
                };
            }
        }
    }

    /// The forecast `h ≥ 1` observations ahead (0 is taken as 1): mean
    /// `l + (φ + … + φʰ) b` and the observation's variance (Hyndman et al. 2008, table 6.1, class 1):
    /// - ANN: `σ²(1 + (h−1)α²)`
    /// - AAN: `σ²(1 + (h−1)(α² + αβh + β²h(2h−1)/6))`
    /// - AAdN: `σ²(1 + α²(h−1) + βφh(2α(1−φ) + βφ)/(1−φ)² − βφ(1−φʰ)(2α(1−φ²) + βφ(1+2φ−φʰ))/((1−φ)²(1−φ²)))`
    ///
    /// Closed forms, so a long horizon (a day of one-second ticks) costs what one step does.
    ///
    /// The damped mean follows the book, `φ + φ² + … + φʰ`. augurs-ets 0.10.3's `predict` adds `φ` where
    /// `φ²` belongs (its running sum starts at `φ` and adds `φ^(i+1)` from `i = 0`), so its damped means
    /// beyond one step exceed these by `(φ − φʰ)·b`; its one-step forecasts, which the fit uses, agree.
    pub fn forecast(&self, h: u64) -> EtsForecast {
        let h = h.max(1) as f64;
        let (a, b, phi, s2) = (self.alpha, self.beta, self.phi, self.sigma2);
        let EtsState { level, trend } = self.state;
        match self.form {
            EtsForm::Ann => EtsForecast {
                mean: level,
                var: s2 * (1.0 + (h - 1.0) * a * a),
            },
            EtsForm::Aan => EtsForecast {
                mean: level + h * trend,
                var: s2 * (1.0 + (h - 1.0) * (a * a + a * b * h + b * b * h * (2.0 * h - 1.0) / 6.0)),
            },
            EtsForm::AadN => {
                let phi_h = phi.powf(h);
                // φ + φ² + … + φʰ; the limit h when φ is 1 (to rounding).
                let sum = if (phi - 1.0).abs() < 1e-10 {
                    h
                } else {
                    phi * (1.0 - phi_h) / (1.0 - phi)
                };
                let one_m = 1.0 - phi;
                let var = if one_m.abs() < 1e-10 {
                    s2 * (1.0 + (h - 1.0) * (a * a + a * b * h + b * b * h * (2.0 * h - 1.0) / 6.0))
                } else {
                    let e2 = b * phi * h / (one_m * one_m);
                    let e3 = 2.0 * a * one_m + b * phi;
                    let e4 = b * phi * (1.0 - phi_h) / (one_m * one_m * (1.0 - phi * phi));
                    let e5 = 2.0 * a * (1.0 - phi * phi) + b * phi * (1.0 + 2.0 * phi - phi_h);
                    s2 * (1.0 + a * a * (h - 1.0) + e2 * e3 - e4 * e5)
                };
                EtsForecast {
                    mean: level + sum * trend,
                    var,
                }
            }
        }
    }

    /// The forecast `h` observations ahead as `[mean, lo80, hi80, lo95, hi95]` of the log price
    /// (Gaussian intervals around the mean).
    pub fn log_interval(&self, h: u64) -> [f64; 5] {
        let EtsForecast { mean, var } = self.forecast(h);
        let sd = var.max(0.0).sqrt();
        [mean, mean - Z80 * sd, mean + Z80 * sd, mean - Z95 * sd, mean + Z95 * sd]
    }
}

#[cfg(test)]
mod tests {
    //! Reference: augurs-ets 0.10.3 (`Cargo.lock`). Our filter and closed forms must give augurs's own
    //! in-sample fitted values and forecasts from the end of the window.
    use super::*;
    use crate::replay::synth::SplitMix64;

    /// A log-price path: a random walk plus, when `drift` is not 0, a slope that itself wanders (the
    /// local trend AAN or AAdN is for).
    fn series(n: usize, seed: u64, sd: f64, drift: f64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        let (mut y, mut slope) = (2.9_f64, drift);
        (0..n)
            .map(|_| {
                slope += drift * 0.05 * rng.normal();
                y += slope + sd * rng.normal();
                y
            })
            .collect()
    }

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs().max(1.0)
    }

    /// Fits `obs` with the form `spec` (`None`: the AutoETS search of [`fit`]), by [`fit_with`] and by
    /// augurs directly, and checks that the filter from the recovered initial state gives augurs's fitted
    /// values, and that the forecasts from the end give augurs's means and 80% and 95% intervals.
    fn agrees_with_augurs(obs: &[f64], spec: Option<EtsForm>) -> Option<EtsFit> {
        use augurs_ets::model::{ErrorComponent, ModelType, SeasonalComponent, TrendComponent, Unfit};
        let augurs = |y: &[f64]| match spec {
            None => Ok(augurs_ets::AutoETS::new(1, "AZN")?.fit(y)?.model().clone()),
            Some(form) => Unfit::new(ModelType {
                error: ErrorComponent::Additive,
                trend: match form {
                    EtsForm::Ann => TrendComponent::None,
                    _ => TrendComponent::Additive,
                },
                season: SeasonalComponent::None,
            })
            .damped(form == EtsForm::AadN)
            .fit(y),
        };
        let ours = fit_with(obs, augurs);
        let Ok(theirs) = augurs(obs) else {
            // A form augurs cannot fit on this series is no fit for us either.
            assert!(matches!(ours, Err(EtsError::Augurs(_))), "{spec:?}");
            return None;
        };
        let ours = ours.unwrap();
        let fitted = theirs.predict_in_sample(None::<f64>).unwrap().point;
        let mut filter = ours.at_window_start();
        for (y, f) in obs.iter().zip(&fitted) {
            assert!(rel(filter.forecast(1).mean, *f) < 1e-9, "in-sample one-step forecast");
            filter.update(*y);
        }
        assert_eq!(
            filter, ours,
            "the window replayed from its start ends at the fitted state"
        );
        let horizon = 30;
        for level in [0.8, 0.95] {
            let p = theirs.predict(horizon, level).unwrap();
            let iv = p.intervals.unwrap();
            for h in 1..=horizon {
                let [mean, lo80, hi80, lo95, hi95] = ours.log_interval(h as u64);
                // augurs's damped means beyond one step carry (φ − φʰ)·b more (see `EtsFit::forecast`).
                let augurs_mean = mean + (ours.phi - ours.phi.powi(h as i32)) * ours.state.trend;
                let name = ours.form.name();
                assert!(rel(augurs_mean, p.point[h - 1]) < 1e-9, "{name} mean at {h}");
                let (lo, hi) = if level == 0.8 { (lo80, hi80) } else { (lo95, hi95) };
                // Half-widths to 1e-6 of themselves: augurs's normal quantile (distrs) and our constants
                // differ in the last digits; the variances agree to rounding.
                let (w_ours, w_theirs) = (hi - mean, iv.upper[h - 1] - p.point[h - 1]);
                assert!(
                    (w_ours - w_theirs).abs() <= 1e-6 * w_theirs,
                    "{name} {level} half-width at {h}: {w_ours} vs {w_theirs}"
                );
                assert!((mean - lo - w_ours).abs() <= 1e-12, "symmetric in log space");
            }
        }
        Some(ours)
    }

    /// Three series: a random walk, a wandering local trend, and slopes that decay.
    fn three_series() -> [Vec<f64>; 3] {
        let mut rng = SplitMix64::new(5);
        let (mut y, mut slope) = (2.9_f64, 0.0_f64);
        let decaying: Vec<f64> = (0..800)
            .map(|i| {
                if i % 200 == 0 {
                    slope = 4e-3 * rng.normal();
                }
                slope *= 0.9;
                y += slope + 5e-4 * rng.normal();
                y
            })
            .collect();
        [series(600, 7, 4e-3, 0.0), series(800, 11, 1e-3, 2e-3), decaying]
    }

    #[test]
    fn every_form_matches_augurs_on_every_series() {
        let mut fitted = [0; 3];
        for obs in three_series() {
            for (i, form) in [EtsForm::Ann, EtsForm::Aan, EtsForm::AadN].into_iter().enumerate() {
                if let Some(f) = agrees_with_augurs(&obs, Some(form)) {
                    assert_eq!(f.form, form);
                    fitted[i] += 1;
                }
            }
            assert!(agrees_with_augurs(&obs, None).is_some());
        }
        eprintln!("fitted per form (ANN, AAN, AAdN): {fitted:?}");
        assert!(
            fitted.iter().all(|&n| n >= 2),
            "each form is checked on at least two series: {fitted:?}"
        );
    }

    #[test]
    fn the_search_picks_a_trend_for_a_trending_series() {
        let [walk, trend, _] = three_series();
        let f = fit(&trend).unwrap();
        assert_ne!(f.form, EtsForm::Ann, "{f:?}");
        let w = fit(&walk).unwrap();
        assert!(w.alpha > 0.9, "a random walk smooths with alpha near 1: {w:?}");
    }

    #[test]
    fn closed_forms_equal_the_recursions() {
        let f = EtsFit {
            form: EtsForm::AadN,
            alpha: 0.7,
            beta: 0.1,
            phi: 0.9,
            sigma2: 1e-5,
            initial: EtsState::default(),
            state: EtsState {
                level: 3.0,
                trend: 0.01,
            },
            n_obs: 100,
            aicc: 0.0,
        };
        // Mean: φ + … + φʰ summed term by term. Variance: σ²(1 + Σ_{j<h} c_j²) with c_j = α + βφ(1−φʲ)/(1−φ).
        let (mut sum, mut pj, mut acc) = (0.0, 1.0, 0.0);
        for h in 1..=50u64 {
            pj *= f.phi;
            sum += pj;
            let fc = f.forecast(h);
            assert!((fc.mean - (3.0 + sum * 0.01)).abs() < 1e-12, "mean at {h}");
            assert!(
                (fc.var - f.sigma2 * (1.0 + acc)).abs() < 1e-12 * f.sigma2 * (1.0 + acc),
                "var at {h}"
            );
            let c = f.alpha + f.beta * f.phi * (1.0 - pj) / (1.0 - f.phi);
            acc += c * c;
        }
    }

    #[test]
    fn bad_windows_are_errors() {
        assert_eq!(fit(&[1.0; 5]), Err(EtsError::TooShort(5)));
        let mut obs = series(100, 3, 1e-3, 0.0);
        obs[40] = f64::NAN;
        assert_eq!(fit(&obs), Err(EtsError::NotFinite(40)));
    }

    #[test]
    fn a_fit_round_trips_through_toml_json_and_postcard() {
        let f = fit(&series(300, 9, 2e-3, 1e-3)).unwrap();
        let json: EtsFit = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(json, f);
        let pc: EtsFit = postcard::from_bytes(&postcard::to_allocvec(&f).unwrap()).unwrap();
        assert_eq!(pc, f);
        let toml_text = toml::to_string(&f).unwrap();
        let t: EtsFit = toml::from_str(&toml_text).unwrap();
        assert_eq!(t, f);
    }
}
