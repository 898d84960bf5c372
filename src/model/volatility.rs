//! RiskMetrics-style EWMA variance of log-returns, per second and per observation, for forecast intervals.
//!
//! **Irregular spacing.** The variance per second is a ratio of exponentially weighted sums,
//! `Σ w_i r_i² / Σ w_i dt_i`: a return over a long interval counts for its length, ticks at the same
//! timestamp (`dt = 0`) add their squared return but no time, and nothing divides by a single tiny `dt`.
//! Gaps are capped at `max_gap_secs`, as in the Kalman filter: a weekend is not 48 h of intraday diffusion.
//! The first return has no known interval (no previous timestamp), so it enters only the per-observation
//! estimate.
//!
//! **Decay** is either per observation (`λ` per return: RiskMetrics' daily `λ = 0.94`, right for fixings)
//! or per unit time (half-life in seconds: right for ticks, whose arrival rate varies with activity, so that
//! a burst of quotes does not flush the memory in seconds).
//!
//! Normalising by the sum of weights (rather than the textbook recursion `σ² ← λσ² + (1-λ)r²`) needs no
//! seed variance and is unbiased from the first return; once `λⁿ` is negligible the two coincide.
//!
//! Both estimates are floored (a constant series must not give zero-width intervals) and capped.

use serde::{Deserialize, Serialize};

use super::{ModelError, StepStatus, clamp_finite};
use crate::time::US_PER_SEC;

/// How fast old returns are forgotten.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum VolDecay {
    /// Multiply past weights by `lambda` at each return (RiskMetrics: 0.94 daily).
    PerObservation {
        /// Decay per observation, in `(0, 1)`.
        lambda: f64,
    },
    /// Multiply past weights by `2^(-dt/halflife_secs)` (dt capped at `max_gap_secs`).
    PerTime {
        /// Half-life of a return's weight, seconds.
        halflife_secs: f64,
    },
}

/// Settings of an [`EwmaVol`]; plain serde data for the engine config.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EwmaVolConfig {
    /// How fast old returns are forgotten.
    pub decay: VolDecay,
    /// Variance per second reported before any timed return.
    pub initial_var_per_sec: f64,
    /// Variance per observation reported before any return.
    pub initial_var_per_obs: f64,
    /// Floor of the variance per second.
    pub var_floor_per_sec: f64,
    /// Floor of the variance per observation.
    pub var_floor_per_obs: f64,
    /// Cap on any variance and on a squared return (keeps a hostile input from overflowing the sums).
    pub var_cap: f64,
    /// Longest gap counted as elapsed time, seconds.
    pub max_gap_secs: f64,
}

impl Default for EwmaVolConfig {
    /// USD/MXN ticks: ~12% annual volatility, a one-hour half-life, one hour as the longest gap.
    fn default() -> Self {
        EwmaVolConfig {
            decay: VolDecay::PerTime { halflife_secs: 3_600.0 },
            initial_var_per_sec: 5e-10,
            initial_var_per_obs: 1e-8,
            var_floor_per_sec: 1e-16,
            var_floor_per_obs: 1e-16,
            var_cap: 1.0,
            max_gap_secs: 3_600.0,
        }
    }
}

impl EwmaVolConfig {
    /// Checks every field's domain.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] naming the first bad field.
    pub fn validate(&self) -> Result<(), ModelError> {
        let pos = |v: f64| v.is_finite() && v > 0.0;
        match self.decay {
            VolDecay::PerObservation { lambda } if !(lambda.is_finite() && lambda > 0.0 && lambda < 1.0) => {
                return Err(ModelError::InvalidConfig("decay lambda must be in (0, 1)"));
            }
            VolDecay::PerTime { halflife_secs } if !pos(halflife_secs) => {
                return Err(ModelError::InvalidConfig("decay halflife_secs must be finite and > 0"));
            }
            _ => {}
        }
        if !pos(self.var_floor_per_sec) || !pos(self.var_floor_per_obs) || !pos(self.var_cap) {
            return Err(ModelError::InvalidConfig(
                "variance floors and cap must be finite and > 0",
            ));
        }
        if self.var_floor_per_sec >= self.var_cap || self.var_floor_per_obs >= self.var_cap {
            return Err(ModelError::InvalidConfig("variance floors must be below var_cap"));
        }
        if !(self.initial_var_per_sec.is_finite() && self.initial_var_per_obs.is_finite()) {
            return Err(ModelError::InvalidConfig("initial variances must be finite"));
        }
        if !(self.max_gap_secs.is_finite() && self.max_gap_secs >= 0.0) {
            return Err(ModelError::InvalidConfig("max_gap_secs must be finite and >= 0"));
        }
        Ok(())
    }
}

/// What one [`EwmaVol::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VolStep {
    /// `Updated`, or `Skipped` for a non-finite return.
    pub status: StepStatus,
    /// The variance per second after the update.
    pub var_per_sec: f64,
    /// The variance per observation after the update.
    pub var_per_obs: f64,
    /// The elapsed time charged to this return, seconds (0 for the first).
    pub dt_secs: f64,
}

/// EWMA variance of log-returns: four sums and a timestamp, no allocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EwmaVol {
    cfg: EwmaVolConfig,
    /// Weighted Σ r² over timed returns and Σ dt, for the variance per second.
    timed_r2: f64,
    timed_secs: f64,
    /// Weighted Σ r² over all returns and Σ weights, for the variance per observation.
    obs_r2: f64,
    obs_weight: f64,
    last_ts_us: Option<i64>,
    n_obs: u64,
}

impl EwmaVol {
    /// An estimator with no return yet.
    ///
    /// # Errors
    /// [`ModelError::InvalidConfig`] when the configuration is out of range.
    pub fn new(cfg: EwmaVolConfig) -> Result<Self, ModelError> {
        cfg.validate()?;
        Ok(EwmaVol {
            cfg,
            timed_r2: 0.0,
            timed_secs: 0.0,
            obs_r2: 0.0,
            obs_weight: 0.0,
            last_ts_us: None,
            n_obs: 0,
        })
    }

    /// Adds the log-return `log_return` realised up to `ts_us` (since the previous call's timestamp).
    /// Non-finite returns are skipped; timestamps going backwards count as `dt = 0`.
    pub fn update(&mut self, ts_us: i64, log_return: f64) -> VolStep {
        if !log_return.is_finite() {
            return VolStep {
                status: StepStatus::Skipped,
                var_per_sec: self.var_per_sec(),
                var_per_obs: self.var_per_obs(),
                dt_secs: 0.0,
            };
        }
        let r2 = clamp_finite(log_return * log_return, 0.0, self.cfg.var_cap);
        let dt_secs = self.last_ts_us.map(|last| {
            let dt_us = ts_us.saturating_sub(last).max(0);
            (dt_us as f64 / US_PER_SEC as f64).min(self.cfg.max_gap_secs)
        });
        let keep = match self.cfg.decay {
            VolDecay::PerObservation { lambda } => lambda,
            VolDecay::PerTime { halflife_secs } => {
                (-std::f64::consts::LN_2 * dt_secs.unwrap_or(0.0) / halflife_secs).exp()
            }
        };
        self.obs_r2 = keep * self.obs_r2 + r2;
        self.obs_weight = keep * self.obs_weight + 1.0;
        if let Some(dt) = dt_secs {
            self.timed_r2 = keep * self.timed_r2 + r2;
            self.timed_secs = keep * self.timed_secs + dt;
        }
        self.last_ts_us = Some(self.last_ts_us.map_or(ts_us, |last| last.max(ts_us)));
        self.n_obs += 1;
        VolStep {
            status: StepStatus::Updated,
            var_per_sec: self.var_per_sec(),
            var_per_obs: self.var_per_obs(),
            dt_secs: dt_secs.unwrap_or(0.0),
        }
    }

    /// The variance of the log-return per second of elapsed time (the configured initial value until some
    /// time has elapsed), floored and capped.
    pub fn var_per_sec(&self) -> f64 {
        let v = if self.timed_secs > 0.0 {
            self.timed_r2 / self.timed_secs
        } else {
            self.cfg.initial_var_per_sec
        };
        clamp_finite(v, self.cfg.var_floor_per_sec, self.cfg.var_cap)
    }

    /// The variance of the log-return over `horizon_secs` (random-walk scaling; negative or NaN → 0 s, so
    /// the result is 0 only for a zero horizon).
    pub fn var_over(&self, horizon_secs: f64) -> f64 {
        let h = clamp_finite(horizon_secs, 0.0, f64::MAX);
        clamp_finite(self.var_per_sec() * h, 0.0, f64::MAX)
    }

    /// The variance of one observation's log-return (the configured initial value before any return),
    /// floored and capped: the natural unit for daily fixings and step horizons.
    pub fn var_per_obs(&self) -> f64 {
        let v = if self.obs_weight > 0.0 {
            self.obs_r2 / self.obs_weight
        } else {
            self.cfg.initial_var_per_obs
        };
        clamp_finite(v, self.cfg.var_floor_per_obs, self.cfg.var_cap)
    }

    /// The variance of the log-return over `steps` observations (random-walk scaling).
    pub fn var_over_steps(&self, steps: u32) -> f64 {
        self.var_per_obs() * f64::from(steps)
    }

    /// Returns absorbed (skipped ones excluded).
    pub fn n_obs(&self) -> u64 {
        self.n_obs
    }

    /// The configuration the estimator was built with.
    pub fn config(&self) -> &EwmaVolConfig {
        &self.cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_obs(lambda: f64) -> EwmaVolConfig {
        EwmaVolConfig {
            decay: VolDecay::PerObservation { lambda },
            max_gap_secs: 1e9,
            ..EwmaVolConfig::default()
        }
    }

    #[test]
    fn per_observation_decay_is_riskmetrics() {
        let mut v = EwmaVol::new(per_obs(0.94)).unwrap();
        let rs = [0.01, -0.02, 0.005, 0.0, 0.015];
        for (i, r) in rs.iter().enumerate() {
            v.update(i as i64 * 86_400 * US_PER_SEC, *r);
        }
        let (mut num, mut den) = (0.0, 0.0);
        for (age, r) in rs.iter().rev().enumerate() {
            num += 0.94f64.powi(age as i32) * r * r;
            den += 0.94f64.powi(age as i32);
        }
        assert!((v.var_per_obs() - num / den).abs() < 1e-18);
        // Per second: the first return has no interval, the rest are one day each.
        let (mut num, mut den) = (0.0, 0.0);
        for (age, r) in rs[1..].iter().rev().enumerate() {
            num += 0.94f64.powi(age as i32) * r * r;
            den += 0.94f64.powi(age as i32) * 86_400.0;
        }
        assert!((v.var_per_sec() / (num / den) - 1.0).abs() < 1e-12);
        assert!((v.var_over(86_400.0) / (num / den * 86_400.0) - 1.0).abs() < 1e-12);
        assert_eq!(v.var_over_steps(3), 3.0 * v.var_per_obs());
    }

    #[test]
    fn irregular_spacing_estimates_variance_per_second() {
        // Returns with variance exactly proportional to dt: the ratio estimator recovers the rate.
        let mut v = EwmaVol::new(EwmaVolConfig::default()).unwrap();
        let rate = 4e-10;
        let mut ts = 0;
        for i in 0..10_000i64 {
            let dt_us = 1_000 + (i * 7_919) % 3_000_000;
            ts += dt_us;
            let r = (rate * dt_us as f64 / 1e6).sqrt() * if i % 2 == 0 { 1.0 } else { -1.0 };
            v.update(ts, r);
        }
        assert!((v.var_per_sec() / rate - 1.0).abs() < 0.05, "{}", v.var_per_sec());
    }

    #[test]
    fn hostile_input_never_yields_nan() {
        let mut v = EwmaVol::new(EwmaVolConfig::default()).unwrap();
        for (ts, r) in [
            (0, 0.0),
            (0, 0.1),
            (-10, 0.1),
            (i64::MAX, 1e300),
            (i64::MIN, f64::NAN),
            (i64::MAX, f64::INFINITY),
            (i64::MAX, 0.0),
        ] {
            let s = v.update(ts, r);
            assert!(s.var_per_sec.is_finite() && s.var_per_sec > 0.0);
            assert!(s.var_per_obs.is_finite() && s.var_per_obs > 0.0);
            assert!(v.var_over(f64::INFINITY).is_finite() && v.var_over(f64::NAN) == 0.0);
        }
        let mut c = EwmaVol::new(EwmaVolConfig::default()).unwrap();
        for i in 0..1_000 {
            c.update(i * 1_000, 0.0);
        }
        assert_eq!(c.var_per_sec(), c.config().var_floor_per_sec);
        assert_eq!(c.var_per_obs(), c.config().var_floor_per_obs);
    }

    #[test]
    fn serde_round_trip_is_identical() {
        let mut v = EwmaVol::new(EwmaVolConfig::default()).unwrap();
        for i in 0..300i64 {
            v.update(i * 123_457, 1e-4 * ((i as f64) * 0.37).sin());
        }
        let back: EwmaVol = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        assert_eq!(v, back);
    }
}
