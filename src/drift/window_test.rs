//! Reference-versus-current window tests, with Evidently-like defaults.
//!
//! The reference window is the first `reference_size` values after a (re)start; the current window is a
//! sliding window of the last `current_size` values after the reference filled. Both are fixed-size, so
//! memory is bounded. The test is evaluated only every `every` updates (sorting a window per tick would
//! cost far more than the tens of nanoseconds a tick may spend here). After a detection the detector
//! restarts, so the new regime becomes the next reference.
//!
//! Metrics (one per detector, chosen by [`WindowMetric`]):
//! - PSI: bins at the reference window's deciles (numpy's linear quantiles, outer bins open), empty bins
//!   floored at `1e-4`; drift when PSI > 0.1.
//! - Two-sample Kolmogorov–Smirnov: the statistic `D` as `scipy.stats.ks_2samp`, and the asymptotic
//!   p-value `Q_KS(D·√(nm/(n+m)))` (Kolmogorov's limit law, `scipy.stats.kstwobign.sf`); drift when
//!   p < 0.05. The statistic reported is `1 - p` against threshold `0.95`, so that larger means "more drift"
//!   as for the other detectors.
//! - Normed Wasserstein: `scipy.stats.wasserstein_distance(ref, cur) / std(ref)` (population std);
//!   drift when > 0.1.

use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftError, check};

/// Floor for empty bin proportions in PSI (Evidently uses 0.0001), so the log stays finite.
pub const PSI_EPSILON: f64 = 1e-4;

/// Which distance a [`WindowTest`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowMetric {
    /// Population stability index over reference-decile bins.
    Psi,
    /// Two-sample Kolmogorov–Smirnov test (asymptotic p-value).
    Ks,
    /// Wasserstein-1 distance divided by the reference standard deviation.
    Wasserstein,
}

/// Window test parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowTestParams {
    /// The distance computed.
    pub metric: WindowMetric,
    /// Values in the reference window.
    pub reference_size: usize,
    /// Values in the current (sliding) window.
    pub current_size: usize,
    /// Evaluate every this many updates once both windows are full.
    pub every: usize,
    /// Drift threshold: PSI and normed Wasserstein above it; for KS the p-value below it.
    pub threshold: f64,
    /// Number of PSI bins.
    pub bins: usize,
}

impl WindowTestParams {
    /// Evidently-like defaults for a metric: PSI 10 bins and 0.1, KS p-value 0.05, normed Wasserstein 0.1.
    pub fn evidently(metric: WindowMetric) -> WindowTestParams {
        WindowTestParams {
            metric,
            reference_size: 1000,
            current_size: 1000,
            every: 250,
            threshold: match metric {
                WindowMetric::Psi => 0.1,
                WindowMetric::Ks => 0.05,
                WindowMetric::Wasserstein => 0.1,
            },
            bins: 10,
        }
    }

    /// Checks the ranges.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DriftError> {
        check(
            self.reference_size >= 10,
            "window_test.reference_size",
            "must be at least 10",
        )?;
        check(
            self.current_size >= 10,
            "window_test.current_size",
            "must be at least 10",
        )?;
        check(self.every >= 1, "window_test.every", "must be at least 1")?;
        check(self.bins >= 2, "window_test.bins", "must be at least 2")?;
        check(
            self.threshold > 0.0 && self.threshold.is_finite(),
            "window_test.threshold",
            "must be > 0",
        )
    }
}

impl Default for WindowTestParams {
    fn default() -> Self {
        WindowTestParams::evidently(WindowMetric::Ks)
    }
}

/// A reference-versus-current window test; see the module docs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WindowTest {
    params: WindowTestParams,
    /// Reference values, sorted once the window is full.
    reference: Vec<f64>,
    /// Inner PSI bin edges (the reference quantiles), computed when the reference fills.
    edges: Vec<f64>,
    /// Reference bin proportions (floored), computed when the reference fills.
    reference_props: Vec<f64>,
    /// Population standard deviation of the reference.
    reference_std: f64,
    /// Ring buffer of current values.
    current: Vec<f64>,
    head: usize,
    since_eval: usize,
    /// Last computed metric (PSI, normed Wasserstein, or `1 - p` for KS).
    value: f64,
    /// Last KS p-value (1 before any evaluation).
    p_value: f64,
    drift: bool,
    /// Sorted copy of the current window, scratch only.
    #[serde(skip)]
    scratch: Vec<f64>,
}

impl WindowTest {
    /// A fresh detector.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] when the parameters are out of range.
    pub fn new(params: WindowTestParams) -> Result<WindowTest, DriftError> {
        params.validate()?;
        Ok(WindowTest {
            params,
            reference: Vec::with_capacity(params.reference_size),
            edges: Vec::new(),
            reference_props: Vec::new(),
            reference_std: 0.0,
            current: Vec::with_capacity(params.current_size),
            head: 0,
            since_eval: 0,
            value: 0.0,
            p_value: 1.0,
            drift: false,
            scratch: Vec::new(),
        })
    }

    /// Forgets both windows.
    pub fn reset(&mut self) {
        self.reference.clear();
        self.edges.clear();
        self.reference_props.clear();
        self.reference_std = 0.0;
        self.current.clear();
        self.head = 0;
        self.since_eval = 0;
        self.value = 0.0;
        self.p_value = 1.0;
        self.drift = false;
    }

    /// The last KS p-value (meaningful for [`WindowMetric::Ks`]).
    pub fn p_value(&self) -> f64 {
        self.p_value
    }

    fn freeze_reference(&mut self) {
        sort(&mut self.reference);
        let n = self.reference.len() as f64;
        let mean = self.reference.iter().sum::<f64>() / n;
        self.reference_std = (self.reference.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
        if self.params.metric == WindowMetric::Psi {
            self.edges = psi_edges(&self.reference, self.params.bins);
            self.reference_props = bin_proportions(&self.reference, &self.edges);
        }
    }

    fn evaluate(&mut self) {
        let mut cur = std::mem::take(&mut self.scratch);
        cur.clear();
        cur.extend_from_slice(&self.current);
        sort(&mut cur);
        let p = self.params;
        match p.metric {
            WindowMetric::Psi => {
                let props = bin_proportions(&cur, &self.edges);
                self.value = psi_from_proportions(&self.reference_props, &props);
                self.drift = self.value > p.threshold;
            }
            WindowMetric::Ks => {
                let d = ks_statistic_sorted(&self.reference, &cur);
                self.p_value = ks_asymptotic_p_value(d, self.reference.len(), cur.len());
                self.value = 1.0 - self.p_value;
                self.drift = self.p_value < p.threshold;
            }
            WindowMetric::Wasserstein => {
                let w = wasserstein_sorted(&self.reference, &cur);
                self.value = w / self.reference_std.max(1e-12);
                self.drift = self.value > p.threshold;
            }
        }
        self.scratch = cur;
    }
}

impl DriftDetector for WindowTest {
    fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        if self.drift {
            self.reset();
        }
        let p = self.params;
        if self.reference.len() < p.reference_size {
            self.reference.push(x);
            if self.reference.len() == p.reference_size {
                self.freeze_reference();
            }
            return false;
        }
        if self.current.len() < p.current_size {
            self.current.push(x);
        } else {
            self.current[self.head] = x;
            self.head += 1;
            if self.head == p.current_size {
                self.head = 0;
            }
        }
        self.since_eval += 1;
        if self.current.len() == p.current_size && self.since_eval >= p.every {
            self.since_eval = 0;
            self.evaluate();
        }
        self.drift
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    /// PSI, normed Wasserstein, or `1 - p` for KS, at the last evaluation.
    fn statistic(&self) -> f64 {
        self.value
    }

    /// The threshold on [`DriftDetector::statistic`]'s scale (`1 - alpha` for KS).
    fn threshold(&self) -> f64 {
        match self.params.metric {
            WindowMetric::Ks => 1.0 - self.params.threshold,
            _ => self.params.threshold,
        }
    }

    fn name(&self) -> &'static str {
        match self.params.metric {
            WindowMetric::Psi => "psi",
            WindowMetric::Ks => "ks",
            WindowMetric::Wasserstein => "wasserstein",
        }
    }
}

fn sort(v: &mut [f64]) {
    v.sort_unstable_by(f64::total_cmp);
}

/// numpy's default (linear) quantile of sorted data.
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Inner PSI edges: the reference quantiles at `1/bins, …, (bins-1)/bins`.
pub fn psi_edges(sorted_reference: &[f64], bins: usize) -> Vec<f64> {
    (1..bins)
        .map(|i| quantile_sorted(sorted_reference, i as f64 / bins as f64))
        .collect()
}

/// Proportion of values per bin, bin `i` being `[edge[i-1], edge[i])` with open outer bins (numpy's
/// `digitize` with `right=False`); proportions are floored at [`PSI_EPSILON`].
pub fn bin_proportions(values: &[f64], edges: &[f64]) -> Vec<f64> {
    let mut counts = vec![0usize; edges.len() + 1];
    for v in values {
        counts[edges.partition_point(|e| e <= v)] += 1;
    }
    let n = values.len().max(1) as f64;
    counts.iter().map(|&c| (c as f64 / n).max(PSI_EPSILON)).collect()
}

/// PSI = Σ (cur − ref) · ln(cur / ref).
pub fn psi_from_proportions(reference: &[f64], current: &[f64]) -> f64 {
    reference.iter().zip(current).map(|(r, c)| (c - r) * (c / r).ln()).sum()
}

/// Two-sample KS statistic `sup |F_a − F_b|` of two sorted samples (as `scipy.stats.ks_2samp`).
pub fn ks_statistic_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut d = 0.0_f64;
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / na - j as f64 / nb).abs());
    }
    d
}

/// Asymptotic two-sided p-value of the two-sample KS statistic: Kolmogorov's
/// `Q(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}` at `λ = D·√(nm/(n+m))`.
pub fn ks_asymptotic_p_value(d: f64, n: usize, m: usize) -> f64 {
    let en = (n * m) as f64 / (n + m) as f64;
    kolmogorov_sf(d * en.sqrt())
}

/// Survival function of the Kolmogorov distribution (`scipy.stats.kstwobign.sf`).
pub fn kolmogorov_sf(lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 1.0;
    }
    if lambda < 1.0 {
        // Small λ: the alternating series converges slowly; use the dual (Jacobi theta) form of the CDF.
        let x = std::f64::consts::PI * std::f64::consts::PI / (8.0 * lambda * lambda);
        let mut cdf = 0.0;
        for k in 0..20 {
            let j = (2 * k + 1) as f64;
            cdf += (-j * j * x).exp();
        }
        cdf *= (2.0 * std::f64::consts::PI).sqrt() / lambda;
        return (1.0 - cdf).clamp(0.0, 1.0);
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let kf = k as f64;
        let term = (-2.0 * kf * kf * lambda * lambda).exp();
        sum += if k % 2 == 1 { term } else { -term };
        if term < 1e-300 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

/// Wasserstein-1 distance between two sorted samples (`scipy.stats.wasserstein_distance`): the integral of
/// `|F_a − F_b|` over the merged support.
pub fn wasserstein_sorted(a: &[f64], b: &[f64]) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j) = (0, 0);
    let mut prev = a[0].min(b[0]);
    let mut total = 0.0;
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&u), Some(&v)) => u.min(v),
            (Some(&u), None) => u,
            (None, Some(&v)) => v,
            (None, None) => break,
        };
        total += (i as f64 / na - j as f64 / nb).abs() * (x - prev);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        prev = x;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testutil::{SplitMix, assert_checkpoint_round_trip};

    #[test]
    fn identical_samples_have_zero_distance() {
        let a: Vec<f64> = (0..100).map(|i| i as f64).collect();
        assert_eq!(ks_statistic_sorted(&a, &a), 0.0);
        assert_eq!(wasserstein_sorted(&a, &a), 0.0);
        let shifted: Vec<f64> = a.iter().map(|v| v + 2.0).collect();
        assert!((wasserstein_sorted(&a, &shifted) - 2.0).abs() < 1e-12);
        assert!((kolmogorov_sf(1.3581) - 0.05).abs() < 1e-4);
        assert!((kolmogorov_sf(0.5) - 0.9639).abs() < 1e-3);
    }

    #[test]
    fn each_metric_flags_a_shift() {
        for metric in [WindowMetric::Psi, WindowMetric::Ks, WindowMetric::Wasserstein] {
            let mut rng = SplitMix::new(21);
            let mut t = WindowTest::new(WindowTestParams::evidently(metric)).unwrap_or_else(|e| panic!("{e}"));
            let mut at = None;
            for i in 0..5000 {
                let x = rng.normal() + if i >= 3000 { 1.0 } else { 0.0 };
                if t.update(x) {
                    at = Some(i);
                    break;
                }
            }
            assert!(at.is_some_and(|i| (3000..3600).contains(&i)), "{metric:?} {at:?}");
        }
    }

    #[test]
    fn checkpoint_round_trip() {
        let mut rng = SplitMix::new(2);
        let s: Vec<f64> = (0..5000)
            .map(|i| rng.normal() + if i > 2500 { 0.5 } else { 0.0 })
            .collect();
        for metric in [WindowMetric::Psi, WindowMetric::Ks, WindowMetric::Wasserstein] {
            let t = WindowTest::new(WindowTestParams::evidently(metric)).unwrap_or_else(|e| panic!("{e}"));
            assert_checkpoint_round_trip(t, &s, 1777);
        }
    }
}
