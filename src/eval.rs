//! Prequential (predict, then learn) evaluation per horizon.
//!
//! Every forecast that is registered for scoring is scored once, when its horizon is realised, against the
//! realised mid; the same point is scored for the random walk (the last mid at forecast time), which is the
//! benchmark exchange-rate forecasts must beat (Meese–Rogoff). Only sums are kept: memory is constant.

use serde::{Deserialize, Serialize};

/// Running sums of the prequential scores of one horizon.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HorizonScore {
    /// Forecasts scored.
    pub n: u64,
    sum_abs_err: f64,
    sum_sq_err: f64,
    rw_sum_abs_err: f64,
    rw_sum_sq_err: f64,
    covered80: u64,
    covered95: u64,
    sum_winkler95: f64,
    sum_width95: f64,
    /// Σ Winkler score of the 80% interval.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    sum_winkler80: f64,
    /// Σ pinball loss of the four bounds.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    sum_pinball: f64,
    /// The RiskMetrics baseline's interval scores on the same forecasts.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    ewma: IntervalSums,
}

/// Running interval scores of one set of intervals (the RiskMetrics EWMA(λ) Gaussian baseline): the same
/// sums as [`HorizonScore`] keeps for the published intervals, over the same forecasts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct IntervalSums {
    /// Forecasts scored (those since the engine started keeping them: a restored format-2 engine starts
    /// at 0, so the comparison covers the same forecasts on both sides only from then on).
    pub n: u64,
    covered80: u64,
    covered95: u64,
    sum_winkler80: f64,
    sum_winkler95: f64,
    sum_pinball: f64,
}

impl IntervalSums {
    fn record(&mut self, b: &[f64; 4], y: f64) {
        self.n += 1;
        self.covered80 += u64::from(b[0] <= y && y <= b[1]);
        self.covered95 += u64::from(b[2] <= y && y <= b[3]);
        self.sum_winkler80 += winkler(b[0], b[1], y, 0.20);
        self.sum_winkler95 += winkler(b[2], b[3], y, 0.05);
        self.sum_pinball += pinball4(b, y);
    }

    fn mean_of(&self, sum: f64) -> f64 {
        if self.n == 0 { 0.0 } else { sum / self.n as f64 }
    }
}

/// The running squared-error sums of one horizon at one moment, for scores over a window of forecasts
/// (the difference of two snapshots): a champion/challenger contest and the rollback guard compare
/// recent errors, which the cumulative metrics of [`HorizonScore`] would dilute in the whole history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreSums {
    /// Forecasts scored.
    pub n: u64,
    /// Sum of squared errors of the forecast mean (price units squared).
    pub sum_sq_err: f64,
    /// The random walk's sum of squared errors on the same points.
    pub rw_sum_sq_err: f64,
}

impl ScoreSums {
    /// The sums of the forecasts scored since `earlier`, a snapshot of the same score; `None` when
    /// `earlier` is not an earlier snapshot of this score (it counts more forecasts), e.g. after the engine
    /// was replaced by an older one.
    pub fn since(&self, earlier: &ScoreSums) -> Option<ScoreSums> {
        let n = self.n.checked_sub(earlier.n)?;
        // Differences of growing sums: clamp the rounding that could make an all-zero window negative.
        Some(ScoreSums {
            n,
            sum_sq_err: (self.sum_sq_err - earlier.sum_sq_err).max(0.0),
            rw_sum_sq_err: (self.rw_sum_sq_err - earlier.rw_sum_sq_err).max(0.0),
        })
    }

    /// Root mean squared error of the forecast mean (price units); 0 when nothing was scored.
    pub fn rmse(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.sum_sq_err / self.n as f64).sqrt()
        }
    }

    /// RMSE relative to the random walk's on the same points (below 1 beats the random walk); 1 when the
    /// random walk made no error (nothing scored, or a constant price).
    pub fn rmse_ratio(&self) -> f64 {
        if self.rw_sum_sq_err > 0.0 {
            (self.sum_sq_err / self.rw_sum_sq_err).sqrt()
        } else {
            1.0
        }
    }
}

/// The running accuracy sums of one horizon at one moment, for accuracy over a window of forecasts (the
/// difference of two snapshots, see [`AccuracySums::since`]): operators watch recent accuracy, which the
/// cumulative figures of [`HorizonScore`] dilute in the whole history. Read-only: nothing is kept for it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AccuracySums {
    /// Forecasts scored.
    pub n: u64,
    /// Σ squared error of the forecast mean.
    pub sum_sq_err: f64,
    /// The random walk's Σ squared error on the same points.
    pub rw_sum_sq_err: f64,
    /// Outcomes inside the 80% interval.
    pub covered80: u64,
    /// Outcomes inside the 95% interval.
    pub covered95: u64,
    /// Σ Winkler score of the 95% interval.
    pub sum_winkler95: f64,
}

impl AccuracySums {
    /// The sums of the forecasts scored since `earlier`; `None` when `earlier` is not an earlier snapshot
    /// of this score (it counts more forecasts, e.g. after the engine was replaced by an older one).
    pub fn since(&self, earlier: &AccuracySums) -> Option<AccuracySums> {
        Some(AccuracySums {
            n: self.n.checked_sub(earlier.n)?,
            sum_sq_err: (self.sum_sq_err - earlier.sum_sq_err).max(0.0),
            rw_sum_sq_err: (self.rw_sum_sq_err - earlier.rw_sum_sq_err).max(0.0),
            covered80: self.covered80.checked_sub(earlier.covered80)?,
            covered95: self.covered95.checked_sub(earlier.covered95)?,
            sum_winkler95: (self.sum_winkler95 - earlier.sum_winkler95).max(0.0),
        })
    }

    /// RMSE relative to the random walk's (1 when the random walk made no error).
    pub fn rmse_ratio(&self) -> f64 {
        if self.rw_sum_sq_err > 0.0 {
            (self.sum_sq_err / self.rw_sum_sq_err).sqrt()
        } else {
            1.0
        }
    }

    /// Share of outcomes inside the 80% interval (0 when nothing was scored).
    pub fn coverage80(&self) -> f64 {
        self.mean_of(self.covered80 as f64)
    }

    /// Share of outcomes inside the 95% interval (0 when nothing was scored).
    pub fn coverage95(&self) -> f64 {
        self.mean_of(self.covered95 as f64)
    }

    /// Mean Winkler score of the 95% interval (0 when nothing was scored).
    pub fn winkler95(&self) -> f64 {
        self.mean_of(self.sum_winkler95)
    }

    fn mean_of(&self, sum: f64) -> f64 {
        if self.n == 0 { 0.0 } else { sum / self.n as f64 }
    }
}

/// One realised forecast: what was predicted at origin and what happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Realised {
    /// The mid at forecast time (the random walk's forecast).
    pub origin_mid: f64,
    /// The forecast mean of the mid at the horizon.
    pub mean: f64,
    /// The 80% interval.
    pub lo80: f64,
    /// The 80% interval.
    pub hi80: f64,
    /// The 95% interval.
    pub lo95: f64,
    /// The 95% interval.
    pub hi95: f64,
    /// The mid that realised the horizon.
    pub actual: f64,
    /// The RiskMetrics baseline's `[lo80, hi80, lo95, hi95]` for the same forecast, scored beside it.
    pub ewma: [f64; 4],
}

/// The Winkler (interval) score of a central `(1-alpha)` interval: its width plus `2/alpha` times the
/// distance by which the outcome falls outside it. Lower is better; it rewards narrow intervals that cover.
pub fn winkler(lo: f64, hi: f64, y: f64, alpha: f64) -> f64 {
    let width = hi - lo;
    if y < lo {
        width + 2.0 / alpha * (lo - y)
    } else if y > hi {
        width + 2.0 / alpha * (y - hi)
    } else {
        width
    }
}

/// The pinball (quantile) loss of `q` as the `tau` quantile of `y`.
pub fn pinball(q: f64, y: f64, tau: f64) -> f64 {
    let d = y - q;
    if d >= 0.0 { tau * d } else { (tau - 1.0) * d }
}

/// The mean pinball loss of the bounds `[lo80, hi80, lo95, hi95]` as the 10%, 90%, 2.5% and 97.5%
/// quantiles: one number for the whole predictive distribution the intervals describe (lower is better).
fn pinball4(b: &[f64; 4], y: f64) -> f64 {
    (pinball(b[0], y, 0.10) + pinball(b[1], y, 0.90) + pinball(b[2], y, 0.025) + pinball(b[3], y, 0.975)) / 4.0
}

impl HorizonScore {
    /// Scores one realised forecast. Non-finite inputs are ignored (they cannot occur from the engine, which
    /// never publishes NaN, but a score must not be poisoned by one).
    pub fn record(&mut self, r: &Realised) {
        let vals = [r.origin_mid, r.mean, r.lo80, r.hi80, r.lo95, r.hi95, r.actual];
        if vals.iter().any(|v| !v.is_finite()) {
            return;
        }
        let e = r.actual - r.mean;
        let rw = r.actual - r.origin_mid;
        self.n += 1;
        self.sum_abs_err += e.abs();
        self.sum_sq_err += e * e;
        self.rw_sum_abs_err += rw.abs();
        self.rw_sum_sq_err += rw * rw;
        self.covered80 += u64::from(r.lo80 <= r.actual && r.actual <= r.hi80);
        self.covered95 += u64::from(r.lo95 <= r.actual && r.actual <= r.hi95);
        self.sum_winkler95 += winkler(r.lo95, r.hi95, r.actual, 0.05);
        self.sum_width95 += r.hi95 - r.lo95;
        self.sum_winkler80 += winkler(r.lo80, r.hi80, r.actual, 0.20);
        self.sum_pinball += pinball4(&[r.lo80, r.hi80, r.lo95, r.hi95], r.actual);
        if r.ewma.iter().all(|v| v.is_finite()) {
            self.ewma.record(&r.ewma, r.actual);
        }
    }

    fn mean_of(&self, sum: f64) -> f64 {
        if self.n == 0 { 0.0 } else { sum / self.n as f64 }
    }

    /// Mean absolute error of the forecast mean (price units).
    pub fn mae(&self) -> f64 {
        self.mean_of(self.sum_abs_err)
    }

    /// Root mean squared error of the forecast mean (price units).
    pub fn rmse(&self) -> f64 {
        self.mean_of(self.sum_sq_err).sqrt()
    }

    /// The random walk's MAE on the same points.
    pub fn rw_mae(&self) -> f64 {
        self.mean_of(self.rw_sum_abs_err)
    }

    /// The random walk's RMSE on the same points.
    pub fn rw_rmse(&self) -> f64 {
        self.mean_of(self.rw_sum_sq_err).sqrt()
    }

    /// RMSE relative to the random walk's (below 1 beats the random walk); 1 when nothing was scored.
    pub fn rmse_ratio(&self) -> f64 {
        let rw = self.rw_rmse();
        if rw > 0.0 { self.rmse() / rw } else { 1.0 }
    }

    /// Share of outcomes inside the 80% interval.
    pub fn coverage80(&self) -> f64 {
        self.mean_of(self.covered80 as f64)
    }

    /// Share of outcomes inside the 95% interval.
    pub fn coverage95(&self) -> f64 {
        self.mean_of(self.covered95 as f64)
    }

    /// Mean Winkler score of the 95% interval (price units).
    pub fn winkler95(&self) -> f64 {
        self.mean_of(self.sum_winkler95)
    }

    /// Mean width of the 95% interval (price units).
    pub fn width95(&self) -> f64 {
        self.mean_of(self.sum_width95)
    }

    /// The squared-error sums so far, for scores over a window (see [`ScoreSums::since`]).
    pub fn sums(&self) -> ScoreSums {
        ScoreSums {
            n: self.n,
            sum_sq_err: self.sum_sq_err,
            rw_sum_sq_err: self.rw_sum_sq_err,
        }
    }

    /// The accuracy sums so far, for accuracy over a window (see [`AccuracySums::since`]).
    pub fn accuracy_sums(&self) -> AccuracySums {
        AccuracySums {
            n: self.n,
            sum_sq_err: self.sum_sq_err,
            rw_sum_sq_err: self.rw_sum_sq_err,
            covered80: self.covered80,
            covered95: self.covered95,
            sum_winkler95: self.sum_winkler95,
        }
    }

    /// A plain-data summary for reports and status replies.
    pub fn summary(&self, horizon: &str) -> HorizonSummary {
        HorizonSummary {
            horizon: horizon.to_string(),
            n: self.n,
            mae: self.mae(),
            rmse: self.rmse(),
            rw_mae: self.rw_mae(),
            rw_rmse: self.rw_rmse(),
            rmse_ratio: self.rmse_ratio(),
            coverage80: self.coverage80(),
            coverage95: self.coverage95(),
            winkler95: self.winkler95(),
            width95: self.width95(),
            winkler80: self.mean_of(self.sum_winkler80),
            pinball: self.mean_of(self.sum_pinball),
            ewma_n: self.ewma.n,
            ewma_coverage80: self.ewma.mean_of(self.ewma.covered80 as f64),
            ewma_coverage95: self.ewma.mean_of(self.ewma.covered95 as f64),
            ewma_winkler80: self.ewma.mean_of(self.ewma.sum_winkler80),
            ewma_winkler95: self.ewma.mean_of(self.ewma.sum_winkler95),
            ewma_pinball: self.ewma.mean_of(self.ewma.sum_pinball),
        }
    }
}

/// The prequential metrics of one horizon, as reported.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HorizonSummary {
    /// The horizon as configured (`1step`, `1d`, …).
    pub horizon: String,
    /// Forecasts scored.
    pub n: u64,
    /// Mean absolute error (price units).
    pub mae: f64,
    /// Root mean squared error (price units).
    pub rmse: f64,
    /// The random walk's MAE on the same points.
    pub rw_mae: f64,
    /// The random walk's RMSE on the same points.
    pub rw_rmse: f64,
    /// `rmse / rw_rmse`.
    pub rmse_ratio: f64,
    /// Share of outcomes inside the 80% interval.
    pub coverage80: f64,
    /// Share of outcomes inside the 95% interval.
    pub coverage95: f64,
    /// Mean Winkler score of the 95% interval.
    pub winkler95: f64,
    /// Mean width of the 95% interval.
    pub width95: f64,
    /// Mean Winkler score of the 80% interval.
    #[serde(default)]
    pub winkler80: f64,
    /// Mean pinball loss of the four interval bounds (as the 2.5, 10, 90 and 97.5% quantiles).
    #[serde(default)]
    pub pinball: f64,
    /// Forecasts the RiskMetrics baseline was scored on (all of `n`, unless the engine was restored from
    /// a checkpoint written before the baseline was kept).
    #[serde(default)]
    pub ewma_n: u64,
    /// The RiskMetrics baseline (EWMA variance with the engine's `vol_lambda`, Gaussian, centred on the
    /// random walk): share of outcomes inside its 80% interval.
    #[serde(default)]
    pub ewma_coverage80: f64,
    /// The baseline's 95% coverage.
    #[serde(default)]
    pub ewma_coverage95: f64,
    /// The baseline's mean Winkler score at 80%.
    #[serde(default)]
    pub ewma_winkler80: f64,
    /// The baseline's mean Winkler score at 95%.
    #[serde(default)]
    pub ewma_winkler95: f64,
    /// The baseline's mean pinball loss.
    #[serde(default)]
    pub ewma_pinball: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn winkler_matches_definition() {
        assert_eq!(winkler(1.0, 2.0, 1.5, 0.05), 1.0);
        assert!((winkler(1.0, 2.0, 0.5, 0.05) - (1.0 + 40.0 * 0.5)).abs() < 1e-12);
        assert!((winkler(1.0, 2.0, 3.0, 0.05) - (1.0 + 40.0)).abs() < 1e-12);
    }

    #[test]
    fn scores_against_the_random_walk() {
        let mut s = HorizonScore::default();
        let r = |mean: f64, actual: f64| Realised {
            origin_mid: 10.0,
            mean,
            lo80: mean - 0.5,
            hi80: mean + 0.5,
            lo95: mean - 1.0,
            hi95: mean + 1.0,
            actual,
            ewma: [9.5, 10.5, 9.0, 11.0],
        };
        s.record(&r(10.0, 10.4));
        s.record(&r(10.0, 9.0));
        s.record(&r(f64::NAN, 9.0));
        assert_eq!(s.n, 2);
        assert!((s.mae() - 0.7).abs() < 1e-12);
        assert!((s.rmse_ratio() - 1.0).abs() < 1e-12);
        assert_eq!(s.coverage80(), 0.5);
        assert_eq!(s.coverage95(), 1.0);
        assert!((s.winkler95() - 2.0).abs() < 1e-12);
        let sum = s.summary("1step");
        // Outcomes 10.4 and 9.0 against the baseline [9.5, 10.5] and [9.0, 11.0].
        assert_eq!((sum.ewma_n, sum.ewma_coverage80, sum.ewma_coverage95), (2, 0.5, 1.0));
        assert!((sum.ewma_winkler80 - (1.0 + (1.0 + 10.0 * 0.5)) / 2.0).abs() < 1e-12);
        assert!((sum.ewma_winkler95 - 2.0).abs() < 1e-12);
        // Pinball of the bounds for 9.0: lo80 9.0 → 0; hi80 10.0 at 0.9 → 0.1; lo95 8.5 at 0.025 → 0.0125;
        // hi95 10.5 at 0.975 → 0.0375.
        assert!(sum.pinball > 0.0 && sum.ewma_pinball > 0.0);
        assert!((pinball(10.0, 9.0, 0.9) - 0.1).abs() < 1e-12 && (pinball(8.5, 9.0, 0.025) - 0.0125).abs() < 1e-12);

        let before = s.sums();
        s.record(&r(10.0, 10.3));
        let w = s.sums().since(&before).unwrap();
        assert_eq!(w.n, 1);
        assert!((w.rmse() - 0.3).abs() < 1e-9);
        assert!((w.rmse_ratio() - 1.0).abs() < 1e-9);
        assert!(before.since(&s.sums()).is_none());
        assert_eq!(ScoreSums::default().rmse(), 0.0);
        assert_eq!(ScoreSums::default().rmse_ratio(), 1.0);
    }
}
