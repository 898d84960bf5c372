//! The local-level state-space model of the log-mid, filtered tick by tick.
//!
//! ```text
//! y_t = μ_t + ε_t,          ε_t ~ N(0, obs_var)                      (microstructure noise: bid-ask bounce)
//! μ_t = μ_{t-1} + η_t,      η_t ~ N(0, level_var_per_sec · dt_t)     (the efficient price, a random walk)
//! ```
//!
//! Why this model: it is the simplest one that separates noise from news, its filter is four scalar
//! operations per tick, and its one-step likelihood and h-step predictive variance are exact, so forecast
//! intervals come straight from it.
//!
//! **Irregular spacing.** `dt_t` comes from tick timestamps ([`TimeBase::Elapsed`]) and is capped at
//! `max_gap_secs`: over a weekend or a holiday the market is closed and the price does not diffuse at its
//! intraday rate, so charging the full 48 h of variance would make the filter forget everything at each
//! reopening. The reopening gap is then absorbed through the innovation (and, with adaptation, raises the
//! variance estimates for a while). Out-of-order or equal timestamps give `dt = 0` (a pure measurement
//! update). For daily fixings use [`TimeBase::PerObservation`], which charges a fixed `secs_per_obs` per
//! fixing whatever the calendar gap (the business-day convention: a weekend is one step).
//!
//! **Initialisation** is exact diffuse: the first observation sets `μ = y_0`, `P = obs_var`, and contributes
//! nothing to the log-likelihood (statsmodels' exact diffuse likelihood differs from ours only by its
//! constant `-½ln 2π` for that first observation).
//!
//! **Adaptation** ([`NoiseAdaptation`]) is moment matching on first differences, which for this model obey
//! `E[Δy_t²] = q·dt_t + 2r` and `E[Δy_t·Δy_{t-1}] = -r` (`q` the level variance per second, `r` the
//! observation noise). Exponentially weighted means of `Δy²`, `Δy_t·Δy_{t-1}` and `dt` give
//! `r̂ = -mean(ΔyΔy')` and `q̂ = (mean(Δy²) - 2r̂) / mean(dt)`, both clamped into `[var_floor, var_cap]`.
//! Unlike innovation-based (Sage-Husa) schemes, the estimates do not feed back through the filter's own
//! gain, so they cannot run away; the filter uses the estimates from *before* each tick (predict, then
//! learn), so the reported likelihood is an honest one-step-ahead score.

use serde::{Deserialize, Serialize};

use super::{Forecast, ModelError, StepStatus, clamp_finite};
use crate::time::US_PER_SEC;

/// How elapsed time between observations is measured, so the same filter serves ms-spaced ticks and daily
/// fixings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum TimeBase {
    /// `dt` is the timestamp difference in seconds, clamped to `[0, max_gap_secs]` (closures do not diffuse).
    Elapsed {
        /// Longest gap charged as diffusion time, seconds.
        max_gap_secs: f64,
    },
    /// Every observation counts as `secs_per_obs` seconds whatever the timestamps (e.g. 86 400 for fixings).
    PerObservation {
        /// Nominal seconds per observation.
        secs_per_obs: f64,
    },
}

/// Online re-estimation of the two noise variances; `None` in the config keeps them fixed (as the
/// reference tests need).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NoiseAdaptation {
    /// Half-life of the exponentially weighted moments, in observations.
    pub halflife_obs: f64,
    /// Differences to see before the estimates replace the configured variances.
    pub warmup_obs: u32,
}

impl Default for NoiseAdaptation {
    fn default() -> Self {
        NoiseAdaptation {
            halflife_obs: 2_000.0,
            warmup_obs: 50,
        }
    }
}

/// Settings of a [`LocalLevel`] filter; plain serde data so it can live in the engine config.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LocalLevelConfig {
    /// Variance of the observation noise ε (log-price units²); the initial value when adapting.
    pub obs_var: f64,
    /// Variance of the level's random walk per second of `dt`; the initial value when adapting.
    pub level_var_per_sec: f64,
    /// How `dt` is obtained from timestamps.
    pub time_base: TimeBase,
    /// Online adaptation of `obs_var` and `level_var_per_sec`, or `None` for fixed variances.
    pub adaptation: Option<NoiseAdaptation>,
    /// Floor for every variance (keeps gains and likelihoods finite on constant series).
    pub var_floor: f64,
    /// Cap for every variance (keeps a hostile jump or a huge gap from overflowing the state).
    pub var_cap: f64,
}

impl Default for LocalLevelConfig {
    /// Values for USD/MXN log-mids from a tick feed: ~12% annual volatility (`0.12² / 3.15e7 s ≈ 5e-10`
    /// per second), a half-spread of ~1 bp as noise, and one hour as the longest gap that diffuses.
    fn default() -> Self {
        LocalLevelConfig {
            obs_var: 1e-8,
            level_var_per_sec: 5e-10,
            time_base: TimeBase::Elapsed { max_gap_secs: 3_600.0 },
            adaptation: Some(NoiseAdaptation::default()),
            var_floor: 1e-18,
            var_cap: 1e4,
        }
    }
}

impl LocalLevelConfig {
    /// Checks every field's domain.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        if !pos(self.var_floor) || !pos(self.var_cap) || self.var_floor >= self.var_cap {
            return Err(ModelError::InvalidConfig("need 0 < var_floor < var_cap, finite"));
        }
        if !(self.obs_var.is_finite() && self.obs_var >= 0.0) {
            return Err(ModelError::InvalidConfig("obs_var must be finite and >= 0"));
        }
        if !(self.level_var_per_sec.is_finite() && self.level_var_per_sec >= 0.0) {
            return Err(ModelError::InvalidConfig("level_var_per_sec must be finite and >= 0"));
        }
        match self.time_base {
            TimeBase::Elapsed { max_gap_secs } if !(max_gap_secs.is_finite() && max_gap_secs >= 0.0) => {
                return Err(ModelError::InvalidConfig("max_gap_secs must be finite and >= 0"));
            }
            TimeBase::PerObservation { secs_per_obs } if !(secs_per_obs.is_finite() && secs_per_obs > 0.0) => {
                return Err(ModelError::InvalidConfig("secs_per_obs must be finite and > 0"));
            }
            _ => {}
        }
        if let Some(a) = self.adaptation
            && !(a.halflife_obs.is_finite() && a.halflife_obs >= 1.0)
        {
            return Err(ModelError::InvalidConfig(
                "adaptation.halflife_obs must be finite and >= 1",
            ));
        }
        Ok(())
    }
}

/// What one [`LocalLevel::update`] did: the one-step-ahead error and its variance are what the evaluator
/// scores and the drift detectors watch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KalmanStep {
    /// Whether the tick was filtered, absorbed into the diffuse start, or skipped.
    pub status: StepStatus,
    /// `y - μ_{t|t-1}`, the one-step-ahead prediction error (0 unless `Updated`).
    pub innovation: f64,
    /// Predicted variance of `y`, `P_{t|t-1} + obs_var` (> 0).
    pub innovation_var: f64,
    /// `log N(innovation; 0, innovation_var)` (0 unless `Updated`), added to [`LocalLevel::loglik`].
    pub loglik_increment: f64,
    /// The filtered level after the step.
    pub level: f64,
    /// The filtered level variance after the step.
    pub level_var: f64,
    /// The diffusion time charged for this step, seconds.
    pub dt_secs: f64,
}

impl KalmanStep {
    /// The innovation divided by its standard deviation: N(0,1) when the model is right.
    pub fn standardized_innovation(&self) -> f64 {
        self.innovation / self.innovation_var.max(f64::MIN_POSITIVE).sqrt()
    }
}

/// Exponentially weighted first-difference moments used for adaptation (and the mean spacing).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
struct DiffMoments {
    /// Weighted sums and their total weight (bias-corrected means are sum / weight).
    dy2: f64,
    dt: f64,
    weight: f64,
    cross: f64,
    cross_weight: f64,
    /// Differences seen.
    count: u64,
    /// The previous difference, for the lag-one cross moment.
    last_dy: Option<f64>,
}

/// The local-level Kalman filter: state is a handful of scalars, an update is a few flops and no allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocalLevel {
    cfg: LocalLevelConfig,
    level: f64,
    level_var: f64,
    obs_var: f64,
    level_var_per_sec: f64,
    last_ts_us: Option<i64>,
    last_y: f64,
    loglik: f64,
    n_obs: u64,
    moments: DiffMoments,
}

/// Bound on a single log-likelihood increment, so a hostile jump cannot make the running sum infinite.
const MAX_ABS_LOGLIK_INCREMENT: f64 = 1e12;
/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

impl LocalLevel {
    /// A filter with no observation yet.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] when the configuration is out of range.
    pub fn new(cfg: LocalLevelConfig) -> Result<Self, ModelError> {
        cfg.validate()?;
        Ok(LocalLevel {
            cfg,
            level: 0.0,
            level_var: cfg.var_cap,
            obs_var: cfg.obs_var.clamp(cfg.var_floor, cfg.var_cap),
            level_var_per_sec: cfg.level_var_per_sec.clamp(cfg.var_floor, cfg.var_cap),
            last_ts_us: None,
            last_y: 0.0,
            loglik: 0.0,
            n_obs: 0,
            moments: DiffMoments::default(),
        })
    }

    /// Filters one observation `y` (a log-mid) stamped `ts_us`. Non-finite `y` is skipped, leaving the state
    /// unchanged; the returned step never holds NaN.
    pub fn update(&mut self, ts_us: i64, y: f64) -> KalmanStep {
        let (floor, cap) = (self.cfg.var_floor, self.cfg.var_cap);
        if !y.is_finite() {
            return self.skipped();
        }
        let Some(last_ts) = self.last_ts_us else {
            // Exact diffuse start: the first observation is the level, known up to the noise.
            self.level = y;
            self.level_var = self.obs_var;
            self.last_ts_us = Some(ts_us);
            self.last_y = y;
            self.n_obs = 1;
            return self.step(StepStatus::Warmup, 0.0, self.level_var + self.obs_var, 0.0, 0.0);
        };
        let dt_secs = self.dt_secs(last_ts, ts_us);

        let pred_var = clamp_finite(self.level_var + self.level_var_per_sec * dt_secs, floor, cap);
        let innovation_var = pred_var + self.obs_var;
        let innovation = y - self.level;
        if !innovation.is_finite() {
            return self.skipped();
        }
        let gain = pred_var / innovation_var;
        self.level += gain * innovation;
        // The scalar Joseph form (1-K)²P + K²R equals P·R/F exactly; the product form is a product of
        // positives, so it can never go negative the way P - K·P can through cancellation.
        self.level_var = clamp_finite(pred_var * self.obs_var / innovation_var, floor, cap);
        let loglik_increment = clamp_finite(
            -0.5 * (LN_2PI + innovation_var.ln() + innovation * innovation / innovation_var),
            -MAX_ABS_LOGLIK_INCREMENT,
            MAX_ABS_LOGLIK_INCREMENT,
        );
        self.loglik += loglik_increment;

        self.learn_moments(y - self.last_y, dt_secs);
        self.last_ts_us = Some(last_ts.max(ts_us));
        self.last_y = y;
        self.n_obs += 1;
        self.step(
            StepStatus::Updated,
            innovation,
            innovation_var,
            loglik_increment,
            dt_secs,
        )
    }

    /// The predictive distribution of an *observation* `horizon_secs` after the last one:
    /// mean `μ_T`, variance `P_T + q·h + obs_var`. Before any observation the mean is 0 and the variance is
    /// the cap. Negative or NaN horizons count as 0; the horizon is not capped at `max_gap_secs` because the
    /// caller asked for it explicitly.
    pub fn forecast(&self, horizon_secs: f64) -> Forecast {
        let h = clamp_finite(horizon_secs, 0.0, f64::MAX);
        let var = self.level_var + self.level_var_per_sec * h + self.obs_var;
        Forecast {
            mean: self.level,
            var: clamp_finite(var, self.cfg.var_floor, f64::MAX),
        }
    }

    /// The predictive distribution `steps` observations ahead: `steps · secs_per_obs` seconds under
    /// [`TimeBase::PerObservation`], else `steps` times the (exponentially weighted) mean observed spacing.
    pub fn forecast_steps(&self, steps: u32) -> Forecast {
        self.forecast(f64::from(steps) * self.secs_per_step())
    }

    /// The filtered level `μ_{T|T}` (the denoised log-mid).
    pub fn level(&self) -> f64 {
        self.level
    }

    /// The filtered level variance `P_{T|T}`.
    pub fn level_var(&self) -> f64 {
        self.level_var
    }

    /// The observation noise variance in use (adapted or configured).
    pub fn obs_var(&self) -> f64 {
        self.obs_var
    }

    /// The level variance per second in use (adapted or configured).
    pub fn level_var_per_sec(&self) -> f64 {
        self.level_var_per_sec
    }

    /// The sum of one-step log-likelihood increments so far (exact diffuse: the first observation adds 0).
    pub fn loglik(&self) -> f64 {
        self.loglik
    }

    /// Observations absorbed (skipped ones excluded).
    pub fn n_obs(&self) -> u64 {
        self.n_obs
    }

    /// The configuration the filter was built with.
    pub fn config(&self) -> &LocalLevelConfig {
        &self.cfg
    }

    /// Seconds represented by one step (see [`LocalLevel::forecast_steps`]).
    pub fn secs_per_step(&self) -> f64 {
        match self.cfg.time_base {
            TimeBase::PerObservation { secs_per_obs } => secs_per_obs,
            TimeBase::Elapsed { .. } if self.moments.weight > 0.0 => self.moments.dt / self.moments.weight,
            TimeBase::Elapsed { .. } => 0.0,
        }
    }

    fn dt_secs(&self, last_ts_us: i64, ts_us: i64) -> f64 {
        match self.cfg.time_base {
            TimeBase::Elapsed { max_gap_secs } => {
                let dt_us = ts_us.saturating_sub(last_ts_us).max(0);
                (dt_us as f64 / US_PER_SEC as f64).min(max_gap_secs)
            }
            TimeBase::PerObservation { secs_per_obs } => secs_per_obs,
        }
    }

    /// Updates the difference moments and, when adapting and warmed up, the noise variances (used from the
    /// next tick on).
    fn learn_moments(&mut self, dy: f64, dt_secs: f64) {
        let (floor, cap) = (self.cfg.var_floor, self.cfg.var_cap);
        let halflife = self
            .cfg
            .adaptation
            .map_or(NoiseAdaptation::default().halflife_obs, |a| a.halflife_obs);
        let alpha = 1.0 - (-std::f64::consts::LN_2 / halflife).exp();
        let m = &mut self.moments;
        let dy2 = clamp_finite(dy * dy, 0.0, cap);
        m.dy2 = (1.0 - alpha) * m.dy2 + alpha * dy2;
        m.dt = (1.0 - alpha) * m.dt + alpha * dt_secs;
        m.weight = (1.0 - alpha) * m.weight + alpha;
        if let Some(last_dy) = m.last_dy {
            let cross = clamp_finite(dy * last_dy, -cap, cap);
            m.cross = (1.0 - alpha) * m.cross + alpha * cross;
            m.cross_weight = (1.0 - alpha) * m.cross_weight + alpha;
        }
        m.last_dy = Some(clamp_finite(dy, -cap.sqrt(), cap.sqrt()));
        m.count += 1;

        let Some(adapt) = self.cfg.adaptation else { return };
        if m.count < u64::from(adapt.warmup_obs) || m.weight <= 0.0 || m.cross_weight <= 0.0 {
            return;
        }
        let mean_dy2 = m.dy2 / m.weight;
        let mean_dt = m.dt / m.weight;
        let mean_cross = m.cross / m.cross_weight;
        // r cannot exceed half the raw difference variance (that would leave negative diffusion).
        let r = clamp_finite(-mean_cross, floor, (0.5 * mean_dy2).max(floor)).min(cap);
        self.obs_var = r;
        if mean_dt > 0.0 {
            self.level_var_per_sec = clamp_finite((mean_dy2 - 2.0 * r) / mean_dt, floor, cap);
        }
    }

    fn skipped(&self) -> KalmanStep {
        let f = (self.level_var + self.obs_var).max(self.cfg.var_floor);
        self.step(StepStatus::Skipped, 0.0, f, 0.0, 0.0)
    }

    fn step(&self, status: StepStatus, innovation: f64, innovation_var: f64, ll: f64, dt_secs: f64) -> KalmanStep {
        KalmanStep {
            status,
            innovation,
            innovation_var,
            loglik_increment: ll,
            level: self.level,
            level_var: self.level_var,
            dt_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(obs_var: f64, level_var_per_sec: f64) -> LocalLevelConfig {
        LocalLevelConfig {
            obs_var,
            level_var_per_sec,
            time_base: TimeBase::Elapsed { max_gap_secs: 1e9 },
            adaptation: None,
            ..LocalLevelConfig::default()
        }
    }

    fn assert_sane(s: &KalmanStep) {
        for v in [
            s.innovation,
            s.innovation_var,
            s.loglik_increment,
            s.level,
            s.level_var,
            s.dt_secs,
        ] {
            assert!(v.is_finite(), "{s:?}");
        }
        assert!(s.innovation_var > 0.0 && s.level_var > 0.0, "{s:?}");
    }

    /// A seeded linear congruential generator: the tests need noise but the core has no randomness.
    struct Lcg(u64);
    impl Lcg {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn normal(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    #[test]
    fn first_observation_is_the_level_and_scores_nothing() {
        let mut f = LocalLevel::new(fixed(0.04, 0.01)).unwrap();
        let s = f.update(0, 3.0);
        assert_eq!(s.status, StepStatus::Warmup);
        assert_eq!((f.level(), f.level_var(), f.loglik()), (3.0, 0.04, 0.0));
        let s = f.update(1_000_000, 3.1);
        assert_eq!(s.status, StepStatus::Updated);
        assert!((s.innovation_var - 0.09).abs() < 1e-15);
        assert!((f.forecast(2.0).var - (f.level_var() + 0.02 + 0.04)).abs() < 1e-15);
    }

    #[test]
    fn hostile_input_never_yields_nan() {
        let mut f = LocalLevel::new(LocalLevelConfig {
            adaptation: Some(NoiseAdaptation {
                halflife_obs: 5.0,
                warmup_obs: 2,
            }),
            ..LocalLevelConfig::default()
        })
        .unwrap();
        let inputs: [(i64, f64); 14] = [
            (0, 3.0),
            (0, 3.0),                  // dt = 0
            (-5_000_000, 3.0),         // time goes backwards
            (i64::MAX, 3.0),           // huge dt
            (i64::MIN, f64::NAN),      // NaN price
            (i64::MAX, f64::INFINITY), // infinite price
            (i64::MAX, 1e300),         // absurd jump
            (i64::MAX, -1e300),        // and back
            (i64::MAX, 3.0),
            (i64::MAX, 3.0),
            (i64::MAX, 3.0),
            (i64::MAX, f64::MIN_POSITIVE),
            (i64::MAX, 0.0),
            (i64::MAX, 3.0),
        ];
        for (ts, y) in inputs {
            let s = f.update(ts, y);
            assert_sane(&s);
            let fc = f.forecast(f64::INFINITY);
            assert!(fc.mean.is_finite() && fc.var.is_finite() && fc.var > 0.0);
            let fc = f.forecast(f64::NAN);
            assert!(fc.var.is_finite());
        }
        assert!(f.loglik().is_finite());
        assert!(
            serde_json::to_string(&f).is_ok(),
            "state must stay JSON-representable (no inf)"
        );
    }

    #[test]
    fn constant_series_stays_finite_with_adaptation() {
        let mut f = LocalLevel::new(LocalLevelConfig {
            adaptation: Some(NoiseAdaptation {
                halflife_obs: 10.0,
                warmup_obs: 3,
            }),
            ..LocalLevelConfig::default()
        })
        .unwrap();
        for i in 0..10_000 {
            assert_sane(&f.update(i * 1_000, 2.9957));
        }
        assert_eq!(f.level(), 2.9957);
        assert_eq!(f.obs_var(), f.config().var_floor);
        assert_eq!(f.level_var_per_sec(), f.config().var_floor);
        assert!(f.loglik().is_finite());
    }

    #[test]
    fn weekend_gap_is_capped_and_steps_mode_ignores_calendar() {
        let day = crate::time::US_PER_DAY;
        let mut f = LocalLevel::new(LocalLevelConfig {
            time_base: TimeBase::Elapsed { max_gap_secs: 3_600.0 },
            ..fixed(1e-8, 1e-9)
        })
        .unwrap();
        f.update(0, 3.0);
        assert_eq!(f.update(3 * day, 3.0).dt_secs, 3_600.0);

        let mut g = LocalLevel::new(LocalLevelConfig {
            time_base: TimeBase::PerObservation { secs_per_obs: 86_400.0 },
            ..fixed(1e-8, 1e-9)
        })
        .unwrap();
        g.update(0, 3.0);
        assert_eq!(g.update(3 * day, 3.0).dt_secs, 86_400.0);
        assert_eq!(g.forecast_steps(2), g.forecast(172_800.0));
    }

    #[test]
    fn adaptation_recovers_the_noise_variances() {
        let (r, q) = (2e-9f64, 4e-10f64);
        let mut f = LocalLevel::new(LocalLevelConfig {
            obs_var: 1e-6,
            level_var_per_sec: 1e-6,
            adaptation: Some(NoiseAdaptation {
                halflife_obs: 20_000.0,
                warmup_obs: 100,
            }),
            ..LocalLevelConfig::default()
        })
        .unwrap();
        let mut rng = Lcg(42);
        let (mut level, mut ts) = (3.0f64, 0i64);
        for _ in 0..100_000 {
            let dt_us = 1 + (rng.uniform() * 2_000_000.0) as i64; // irregular, up to 2 s
            ts += dt_us;
            level += (q * dt_us as f64 / 1e6).sqrt() * rng.normal();
            f.update(ts, level + r.sqrt() * rng.normal());
        }
        let (re, qe) = (f.obs_var() / r, f.level_var_per_sec() / q);
        assert!((0.8..1.25).contains(&re), "obs_var ratio {re}");
        assert!((0.8..1.25).contains(&qe), "level_var ratio {qe}");
    }

    #[test]
    fn serde_round_trip_is_identical_and_continues_identically() {
        let mut f = LocalLevel::new(LocalLevelConfig {
            adaptation: Some(NoiseAdaptation {
                halflife_obs: 50.0,
                warmup_obs: 5,
            }),
            ..LocalLevelConfig::default()
        })
        .unwrap();
        let mut rng = Lcg(7);
        let mut y = 2.99;
        for i in 0..500 {
            y += 1e-4 * rng.normal();
            f.update(i * 250_000, y);
        }
        let json = serde_json::to_string(&f).unwrap();
        let mut g: LocalLevel = serde_json::from_str(&json).unwrap();
        assert_eq!(f, g);
        for i in 500..600 {
            y += 1e-4 * rng.normal();
            assert_eq!(f.update(i * 250_000, y), g.update(i * 250_000, y));
        }
        assert_eq!(f, g);
    }

    #[test]
    fn rejects_bad_config() {
        assert!(
            LocalLevel::new(LocalLevelConfig {
                var_floor: 0.0,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            LocalLevel::new(LocalLevelConfig {
                obs_var: f64::NAN,
                ..Default::default()
            })
            .is_err()
        );
        assert!(
            LocalLevel::new(LocalLevelConfig {
                time_base: TimeBase::PerObservation { secs_per_obs: 0.0 },
                ..Default::default()
            })
            .is_err()
        );
    }
}
