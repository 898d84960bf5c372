//! Streaming field profiles: count, nulls, min, max, mean, variance (Welford) and sketch quantiles of the
//! values that reached the model, so drift in the data itself (spreads widening, ticks thinning) is visible
//! next to the dimension scores.

use serde::{Deserialize, Serialize};

use super::sketch::DdSketch;

/// The running profile of one numeric field. Constant memory: a handful of scalars and a bounded sketch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldProfile {
    count: u64,
    nulls: u64,
    /// Meaningful only when `count > 0` (kept as plain floats: no branch on an `Option` per value, and
    /// always finite so the state serializes to JSON).
    min: f64,
    max: f64,
    mean: f64,
    m2: f64,
    sketch: DdSketch,
}

/// A plain-data snapshot of a [`FieldProfile`] for reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSummary {
    /// Values seen.
    pub count: u64,
    /// Ticks on which the field was absent (or not finite).
    pub nulls: u64,
    /// Smallest value.
    pub min: Option<f64>,
    /// Largest value.
    pub max: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
    /// Sample variance (n − 1).
    pub variance: Option<f64>,
    /// 1st percentile (sketch, relative error ≤ alpha).
    pub p01: Option<f64>,
    /// 5th percentile.
    pub p05: Option<f64>,
    /// Median.
    pub p50: Option<f64>,
    /// 95th percentile.
    pub p95: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

impl FieldProfile {
    /// An empty profile whose quantiles have relative accuracy `alpha`.
    pub fn new(alpha: f64, max_buckets: usize) -> Self {
        FieldProfile {
            count: 0,
            nulls: 0,
            min: 0.0,
            max: 0.0,
            mean: 0.0,
            m2: 0.0,
            sketch: DdSketch::new(alpha, max_buckets),
        }
    }

    /// Records a value; `None` or a non-finite value counts as a null.
    #[inline]
    pub fn observe(&mut self, v: Option<f64>) {
        let Some(x) = v.filter(|x| x.is_finite()) else {
            self.nulls += 1;
            return;
        };
        if self.count == 0 {
            (self.min, self.max) = (x, x);
        } else {
            self.min = self.min.min(x);
            self.max = self.max.max(x);
        }
        self.count += 1;
        let d = x - self.mean;
        self.mean += d / self.count as f64;
        self.m2 += d * (x - self.mean);
        // Values near ±f64::MAX of both signs could overflow; keep the state finite so it always serializes.
        if !(self.mean.is_finite() && self.m2.is_finite()) {
            self.mean = self.mean.clamp(f64::MIN, f64::MAX);
            self.m2 = f64::MAX;
        }
        self.sketch.add(x);
    }

    /// The current summary.
    pub fn summary(&self) -> FieldSummary {
        let q = |p| self.sketch.quantile(p);
        FieldSummary {
            count: self.count,
            nulls: self.nulls,
            min: (self.count > 0).then_some(self.min),
            max: (self.count > 0).then_some(self.max),
            mean: (self.count > 0).then_some(self.mean),
            variance: (self.count > 1).then(|| self.m2 / (self.count - 1) as f64),
            p01: q(0.01),
            p05: q(0.05),
            p50: q(0.5),
            p95: q(0.95),
            p99: q(0.99),
        }
    }
}

/// The profile of one pair's accepted ticks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Bid price.
    pub bid: FieldProfile,
    /// Ask price.
    pub ask: FieldProfile,
    /// Mid price.
    pub mid: FieldProfile,
    /// Relative spread `(ask − bid) / mid`.
    pub spread_rel: FieldProfile,
    /// Log-return from the previous accepted mid (null on the first tick and on re-anchoring).
    pub log_return: FieldProfile,
    /// Gap between consecutive accepted ticks' timestamps, microseconds.
    pub gap_us: FieldProfile,
    /// Arrival lag `arrival_us − ts_us`, microseconds (null in file replay).
    pub arrival_lag_us: FieldProfile,
}

/// A plain-data snapshot of a [`Profile`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileReport {
    /// Bid price.
    pub bid: FieldSummary,
    /// Ask price.
    pub ask: FieldSummary,
    /// Mid price.
    pub mid: FieldSummary,
    /// Relative spread.
    pub spread_rel: FieldSummary,
    /// Log-return.
    pub log_return: FieldSummary,
    /// Inter-arrival gap, microseconds.
    pub gap_us: FieldSummary,
    /// Arrival lag, microseconds.
    pub arrival_lag_us: FieldSummary,
}

impl Profile {
    /// Empty profiles with quantile accuracy `alpha` and at most `max_buckets` buckets per sign each.
    pub fn new(alpha: f64, max_buckets: usize) -> Self {
        let f = || FieldProfile::new(alpha, max_buckets);
        Profile {
            bid: f(),
            ask: f(),
            mid: f(),
            spread_rel: f(),
            log_return: f(),
            gap_us: f(),
            arrival_lag_us: f(),
        }
    }

    /// The current summaries of every field.
    pub fn report(&self) -> ProfileReport {
        ProfileReport {
            bid: self.bid.summary(),
            ask: self.ask.summary(),
            mid: self.mid.summary(),
            spread_rel: self.spread_rel.summary(),
            log_return: self.log_return.summary(),
            gap_us: self.gap_us.summary(),
            arrival_lag_us: self.arrival_lag_us.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_two_pass_and_nulls_are_counted() {
        let xs = [1.0, 2.0, 4.0, 8.0, 16.0];
        let mut p = FieldProfile::new(0.01, 256);
        for &x in &xs {
            p.observe(Some(x));
        }
        p.observe(None);
        p.observe(Some(f64::NAN));
        let s = p.summary();
        let mean = xs.iter().sum::<f64>() / 5.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0;
        assert_eq!((s.count, s.nulls, s.min, s.max), (5, 2, Some(1.0), Some(16.0)));
        assert!((s.mean.unwrap() - mean).abs() < 1e-12);
        assert!((s.variance.unwrap() - var).abs() < 1e-9);
        assert!((s.p50.unwrap() - 4.0).abs() <= 0.04);
        let empty = FieldProfile::new(0.01, 256).summary();
        assert_eq!((empty.mean, empty.p50), (None, None));
        // Empty profiles survive JSON (no infinities in the state).
        let back: FieldProfile = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
    }
}
