//! CUSUM detectors.
//!
//! - [`TabularCusum`]: the two-sided tabular CUSUM of Page (1954) / Montgomery on values that are already
//!   standardized (the engine divides by its EWMA volatility), with reference value `k` and decision
//!   interval `h` in units of standard deviations. O(1) per update, no memory.
//! - [`RecursiveCusum`]: the Brown–Durbin–Evans (1975) CUSUM and CUSUM-of-squares tests on recursive
//!   residuals, with the significance bounds of statsmodels 0.15 (`RecursiveLSResults.cusum`,
//!   `cusum_squares`, `_cusum_significance_bounds`, `_cusum_squares_significance_bounds`).
//!
//! **Streaming choice for the recursive tests.** statsmodels' tests are whole-sample tests (the CUSUM is
//! divided by the standard deviation of *all* recursive residuals, the CUSUM of squares by their total), so
//! they cannot be updated value by value. We run them on a sliding window of the last `window` values of
//! the signal, re-evaluated every `every` updates (O(window) per evaluation, so O(window/every) amortised),
//! with the model of a constant mean fitted recursively from the start of the window (`RecursiveLS` with a
//! single constant regressor: the recursive residual of value `t` is
//! `(x_t - mean(x_0..t)) * sqrt(t / (t + 1))` and the first value is burned, `d = 1`). After a detection
//! the window restarts empty. On a window the statistics equal statsmodels' (tested against fixtures).
//! Bound convention: path element `j` (0-based) is the sum up to observation `r = d + j + 1`, as in
//! Brown–Durbin–Evans, so the CUSUM-of-squares path ends at 1 on its mean line.

use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftError, check};

/// Tabular CUSUM parameters.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TabularCusumParams {
    /// In-control mean of the input.
    pub target: f64,
    /// Reference value (slack) per update: half the shift one wants to detect quickly.
    pub k: f64,
    /// Decision interval: a side alarms when its sum exceeds `h`.
    pub h: f64,
    /// Test decreases too (else only increases, e.g. for squared values where only rises matter).
    pub two_sided: bool,
    /// After a restart (a detection, or [`TabularCusum::reset`]), the first this-many values re-estimate
    /// the target as their mean before testing resumes, so a lasting shift gives one alarm and the new
    /// level becomes the reference. 0 keeps `target` fixed.
    pub rebase_updates: u64,
}

impl Default for TabularCusumParams {
    fn default() -> Self {
        TabularCusumParams {
            target: 0.0,
            k: 0.5,
            h: 5.0,
            two_sided: true,
            rebase_updates: 0,
        }
    }
}

impl TabularCusumParams {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] naming the first bad field.
    pub fn validate(&self, name: &'static str) -> Result<(), DriftError> {
        check(self.target.is_finite(), name, "target must be finite")?;
        check(self.k >= 0.0 && self.k.is_finite(), name, "k must be finite and >= 0")?;
        check(self.h > 0.0 && self.h.is_finite(), name, "h must be finite and > 0")
    }
}

/// The two-sided tabular CUSUM; see the module docs. Restarts (sums to zero) after a detection.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TabularCusum {
    params: TabularCusumParams,
    /// The in-control mean in use (the configured one, or the re-estimated one after a restart).
    target: f64,
    /// Values still to collect before the re-estimated target is used.
    rebase_left: u64,
    rebase_sum: f64,
    /// Upper cumulative sum `S+`.
    hi: f64,
    /// Lower cumulative sum `S-` (kept non-negative).
    lo: f64,
    drift: bool,
}

impl TabularCusum {
    /// A fresh detector. Parameters are not checked here (call [`TabularCusumParams::validate`]).
    pub fn new(params: TabularCusumParams) -> TabularCusum {
        TabularCusum {
            params,
            target: params.target,
            rebase_left: 0,
            rebase_sum: 0.0,
            hi: 0.0,
            lo: 0.0,
            drift: false,
        }
    }

    /// Sets both sums to zero and, when `rebase_updates > 0`, starts re-estimating the target.
    pub fn reset(&mut self) {
        let target = self.target;
        *self = TabularCusum::new(self.params);
        self.target = target;
        self.rebase_left = self.params.rebase_updates;
    }

    /// The in-control mean currently tested against.
    pub fn target(&self) -> f64 {
        self.target
    }
}

impl DriftDetector for TabularCusum {
    fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        if self.drift {
            self.reset();
        }
        if self.rebase_left > 0 {
            self.rebase_sum += x;
            self.rebase_left -= 1;
            if self.rebase_left == 0 {
                self.target = self.rebase_sum / self.params.rebase_updates as f64;
            }
            return false;
        }
        let p = &self.params;
        let z = x - self.target;
        self.hi = (self.hi + z - p.k).max(0.0);
        if p.two_sided {
            self.lo = (self.lo - z - p.k).max(0.0);
        }
        self.drift = self.hi > p.h || self.lo > p.h;
        self.drift
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    /// The larger of the two sums.
    fn statistic(&self) -> f64 {
        self.hi.max(self.lo)
    }

    fn threshold(&self) -> f64 {
        self.params.h
    }

    fn name(&self) -> &'static str {
        "cusum"
    }
}

/// Which Brown–Durbin–Evans test a [`RecursiveCusum`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecursiveTest {
    /// CUSUM of recursive residuals: sensitive to a shift in the mean.
    Cusum,
    /// CUSUM of squared recursive residuals: sensitive to a change in the variance.
    CusumOfSquares,
}

/// Parameters of the windowed recursive-residual tests.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecursiveCusumParams {
    /// Which test.
    pub test: RecursiveTest,
    /// Number of values in the tested window.
    pub window: usize,
    /// The test is evaluated every `every` updates (once the window is full).
    pub every: usize,
    /// Significance level. CUSUM: statsmodels' table for 0.01, 0.05, 0.10; any other level in (0, 0.5)
    /// uses the exact Brownian-motion crossing probability. CUSUM of squares: one of statsmodels' levels
    /// 0.2, 0.1, 0.05, 0.02, 0.01 (Edgerton–Wells approximation).
    pub alpha: f64,
}

impl Default for RecursiveCusumParams {
    fn default() -> Self {
        RecursiveCusumParams {
            test: RecursiveTest::Cusum,
            window: 500,
            every: 100,
            alpha: 0.05,
        }
    }
}

impl RecursiveCusumParams {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DriftError> {
        check(self.window >= 8, "recursive_cusum.window", "must be at least 8")?;
        check(self.every >= 1, "recursive_cusum.every", "must be at least 1")?;
        let ok = match self.test {
            RecursiveTest::Cusum => cusum_bound_scalar(self.alpha).is_some(),
            RecursiveTest::CusumOfSquares => cusum_squares_crit(100, 1, self.alpha).is_some(),
        };
        check(ok, "recursive_cusum.alpha", "unsupported significance level")
    }
}

/// Windowed CUSUM / CUSUM-of-squares test on recursive residuals; see the module docs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RecursiveCusum {
    params: RecursiveCusumParams,
    /// Ring buffer of the last `window` values.
    buf: Vec<f64>,
    /// Next write position in `buf` once it is full.
    head: usize,
    /// Updates since the last evaluation.
    since_eval: usize,
    /// Bound constant (`a` for CUSUM, the critical value for CUSUM of squares) for this window length.
    bound: f64,
    /// Largest `|path| / bound` at the last evaluation (1.0 is the significance boundary).
    ratio: f64,
    drift: bool,
    /// Scratch space for an evaluation, not state.
    #[serde(skip)]
    scratch: Vec<f64>,
    /// Per position `t`: `(sqrt(t / (t + 1)), 1 / (t + 1))`, precomputed so an evaluation costs no square
    /// roots or divisions per value; rebuilt on first use (not state).
    #[serde(skip)]
    factors: Vec<(f64, f64)>,
}

impl RecursiveCusum {
    /// A fresh detector.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] when the parameters are out of range.
    pub fn new(params: RecursiveCusumParams) -> Result<RecursiveCusum, DriftError> {
        params.validate()?;
        let bound = match params.test {
            RecursiveTest::Cusum => cusum_bound_scalar(params.alpha),
            RecursiveTest::CusumOfSquares => cusum_squares_crit(params.window, 1, params.alpha),
        };
        Ok(RecursiveCusum {
            params,
            buf: Vec::with_capacity(params.window),
            head: 0,
            since_eval: 0,
            bound: bound.unwrap_or(f64::MAX),
            ratio: 0.0,
            drift: false,
            scratch: Vec::new(),
            factors: Vec::new(),
        })
    }

    /// Empties the window.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.head = 0;
        self.since_eval = 0;
        self.ratio = 0.0;
        self.drift = false;
    }

    fn evaluate(&mut self) -> f64 {
        let mut ordered = std::mem::take(&mut self.scratch);
        ordered.clear();
        ordered.extend_from_slice(&self.buf[self.head..]);
        ordered.extend_from_slice(&self.buf[..self.head]);
        let n = ordered.len();
        let d = 1;
        if self.factors.len() != n {
            self.factors = (0..n)
                .map(|t| ((t as f64 / (t as f64 + 1.0)).sqrt(), 1.0 / (t as f64 + 1.0)))
                .collect();
        }
        // Recursive residuals in place: element t (t >= 1) becomes w_t; element 0 is burned.
        let mut mean = ordered[0];
        for (v, &(scale, recip)) in ordered.iter_mut().zip(&self.factors).skip(1) {
            let x = *v;
            *v = (x - mean) * scale;
            mean += (x - mean) * recip;
        }
        let w = &ordered[d..];
        let m = w.len() as f64;
        let ratio = match self.params.test {
            RecursiveTest::Cusum => {
                let mean_w = w.iter().sum::<f64>() / m;
                let ss = w.iter().map(|v| (v - mean_w) * (v - mean_w)).sum::<f64>();
                let sd = (ss / (m - 1.0)).sqrt();
                let a = self.bound;
                let root = ((n - d) as f64).sqrt();
                let (base, slope) = (a * root, 2.0 * a / root);
                let mut s = 0.0;
                let mut worst = 0.0_f64;
                for (j, v) in w.iter().enumerate() {
                    s += v;
                    // |S/sd| / upper > worst  <=>  |S| > worst * sd * upper (no division per value).
                    let upper = base + slope * (j + 1) as f64;
                    if s.abs() > worst * sd * upper {
                        worst = s.abs() / (sd * upper);
                    }
                }
                worst
            }
            RecursiveTest::CusumOfSquares => {
                let total = w.iter().map(|v| v * v).sum::<f64>();
                let (inv_total, inv_m) = (1.0 / total, 1.0 / m);
                let mut s = 0.0;
                let mut worst = 0.0_f64;
                for (j, v) in w.iter().enumerate() {
                    s += v * v;
                    worst = worst.max((s * inv_total - (j + 1) as f64 * inv_m).abs());
                }
                worst / self.bound
            }
        };
        self.scratch = ordered;
        if ratio.is_finite() { ratio } else { 0.0 }
    }
}

impl DriftDetector for RecursiveCusum {
    fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        if self.drift {
            self.reset();
        }
        let n = self.params.window;
        if self.buf.len() < n {
            self.buf.push(x);
        } else {
            self.buf[self.head] = x;
            self.head += 1;
            if self.head == n {
                self.head = 0;
            }
        }
        self.since_eval += 1;
        if self.buf.len() == n && self.since_eval >= self.params.every {
            self.since_eval = 0;
            self.ratio = self.evaluate();
            self.drift = self.ratio > 1.0;
        }
        self.drift
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    /// Largest excursion of the path relative to its significance bound at the last evaluation.
    fn statistic(&self) -> f64 {
        self.ratio
    }

    fn threshold(&self) -> f64 {
        1.0
    }

    fn name(&self) -> &'static str {
        match self.params.test {
            RecursiveTest::Cusum => "recursive_cusum",
            RecursiveTest::CusumOfSquares => "recursive_cusum_of_squares",
        }
    }
}

/// Recursive residuals of the constant-mean model (statsmodels `RecursiveLS(x, ones).resid_recursive[1:]`):
/// `w_t = (x_t - mean(x_0..t)) * sqrt(t / (t + 1))` for `t >= 1`. Written into `out` (cleared first).
pub fn recursive_residuals_mean(x: &[f64], out: &mut Vec<f64>) {
    out.clear();
    let Some(&first) = x.first() else {
        return;
    };
    let mut mean = first;
    for (t, &v) in x.iter().enumerate().skip(1) {
        out.push((v - mean) * (t as f64 / (t as f64 + 1.0)).sqrt());
        mean += (v - mean) / (t as f64 + 1.0);
    }
}

/// statsmodels' CUSUM path: `cumsum(w) / std(w, ddof=1)`, written into `out`.
pub fn cusum_path(w: &[f64], out: &mut Vec<f64>) {
    out.clear();
    let m = w.len() as f64;
    let mean = w.iter().sum::<f64>() / m;
    let sd = (w.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (m - 1.0)).sqrt();
    let mut s = 0.0;
    for v in w {
        s += v;
        out.push(s / sd);
    }
}

/// statsmodels' CUSUM-of-squares path: `cumsum(w²) / sum(w²)`, written into `out`.
pub fn cusum_squares_path(w: &[f64], out: &mut Vec<f64>) {
    out.clear();
    let total = w.iter().map(|v| v * v).sum::<f64>();
    let mut s = 0.0;
    for v in w {
        s += v * v;
        out.push(s / total);
    }
}

/// The constant `a` of the CUSUM bound `±(a·√(n−d) + 2a·(r−d)/√(n−d))`.
///
/// statsmodels' table for 0.01, 0.05 and 0.10 (its 0.10 entry, 0.950, is reproduced as is for
/// compatibility, though Brown–Durbin–Evans give 0.850); any other level in (0, 0.5) solves
/// `2[1 − Φ(3a) + e^{−4a²} Φ(a)] = alpha`, the probability that Brownian motion crosses the lines.
/// `None` for a level outside (0, 0.5).
pub fn cusum_bound_scalar(alpha: f64) -> Option<f64> {
    if alpha == 0.01 {
        return Some(1.143);
    }
    if alpha == 0.05 {
        return Some(0.948);
    }
    if alpha == 0.10 {
        return Some(0.950);
    }
    if !(alpha > 0.0 && alpha < 0.5) {
        return None;
    }
    let crossing = |a: f64| 2.0 * (1.0 - normal_cdf(3.0 * a) + (-4.0 * a * a).exp() * normal_cdf(a));
    let (mut lo, mut hi) = (0.3_f64, 6.0_f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if crossing(mid) > alpha {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(0.5 * (lo + hi))
}

/// Upper CUSUM bound at observation `point` for a sample of `nobs` with `d` burned observations
/// (statsmodels `_cusum_significance_bounds`; the lower bound is its negative).
pub fn cusum_upper_bound(a: f64, nobs: usize, d: usize, point: f64) -> f64 {
    let root = ((nobs - d) as f64).sqrt();
    a * root + 2.0 * a * (point - d as f64) / root
}

/// Edgerton–Wells critical value of the CUSUM-of-squares test (statsmodels
/// `_cusum_squares_significance_bounds`): the bounds are `(r − d)/(n − d) ± crit`. `None` unless `alpha` is
/// one of 0.2, 0.1, 0.05, 0.02, 0.01 or the sample is too short.
pub fn cusum_squares_crit(nobs: usize, d: usize, alpha: f64) -> Option<f64> {
    const SCALARS: [[f64; 5]; 3] = [
        [1.0729830, 1.2238734, 1.3581015, 1.5174271, 1.6276236],
        [-0.6698868, -0.6700069, -0.6701218, -0.6702672, -0.6703724],
        [-0.5816458, -0.7351697, -0.8858694, -1.0847745, -1.2365861],
    ];
    let ix = [0.1, 0.05, 0.025, 0.01, 0.005].iter().position(|&a| a == alpha / 2.0)?;
    let n = 0.5 * (nobs.checked_sub(d)? as f64) - 1.0;
    if n <= 0.0 {
        return None;
    }
    Some(SCALARS[0][ix] / n.powf(0.5) + SCALARS[1][ix] / n + SCALARS[2][ix] / n.powf(1.5))
}

/// Standard normal CDF via `erfc` (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7), enough for
/// solving a bound constant.
pub(crate) fn normal_cdf(x: f64) -> f64 {
    0.5 * erfc(-x / std::f64::consts::SQRT_2)
}

fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testutil::{SplitMix, assert_checkpoint_round_trip};

    #[test]
    fn tabular_cusum_detects_shift_with_expected_delay() {
        let mut c = TabularCusum::new(TabularCusumParams::default());
        for _ in 0..100 {
            assert!(!c.update(0.0));
        }
        // Shift of 2: S+ grows by 1.5 per step, exceeds 5 on the 4th step.
        let at = (0..10).find(|_| c.update(2.0));
        assert_eq!(at, Some(3));
        assert!(!c.update(0.0), "restarts after a detection");
        assert_eq!(c.statistic(), 0.0);
    }

    #[test]
    fn bound_scalar_matches_table_and_crossing_formula() {
        assert_eq!(cusum_bound_scalar(0.05), Some(0.948));
        // The crossing formula gives back the tabled 1% and 5% values (BDE 1975: 1.143, 0.948).
        let a = cusum_bound_scalar(0.0100001).unwrap_or(0.0);
        assert!((a - 1.143).abs() < 2e-3, "{a}");
        let a = cusum_bound_scalar(0.0499999).unwrap_or(0.0);
        assert!((a - 0.948).abs() < 2e-3, "{a}");
        assert!(cusum_bound_scalar(0.7).is_none());
    }

    #[test]
    fn recursive_cusum_flags_mean_shift_but_not_noise() {
        let mut rng = SplitMix::new(5);
        let p = RecursiveCusumParams {
            alpha: 0.001,
            ..Default::default()
        };
        let mut c = RecursiveCusum::new(p).unwrap_or_else(|e| panic!("{e}"));
        let mut alarms = 0;
        for _ in 0..20_000 {
            alarms += c.update(rng.normal()) as usize;
        }
        assert!(alarms <= 2, "{alarms}");
        let mut at = None;
        for i in 0..2000 {
            if c.update(rng.normal() + 1.0) {
                at = Some(i);
                break;
            }
        }
        assert!(at.is_some_and(|i| i < 300), "{at:?}");
    }

    #[test]
    fn recursive_cusum_of_squares_flags_variance_jump() {
        let mut rng = SplitMix::new(6);
        let p = RecursiveCusumParams {
            test: RecursiveTest::CusumOfSquares,
            alpha: 0.01,
            ..Default::default()
        };
        let mut c = RecursiveCusum::new(p).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..1000 {
            c.update(rng.normal());
        }
        let at = (0..2000).find(|_| c.update(4.0 * rng.normal()));
        assert!(at.is_some_and(|i| i < 300), "{at:?}");
    }

    #[test]
    fn tabular_cusum_rebases_after_a_detection() {
        let p = TabularCusumParams {
            rebase_updates: 50,
            ..Default::default()
        };
        let mut c = TabularCusum::new(p);
        let at = (0..100).find(|_| c.update(2.0));
        assert_eq!(at, Some(3));
        // The new level (2.0) becomes the target: no further detections while it lasts.
        assert!((0..1000).all(|_| !c.update(2.0)));
        assert_eq!(c.target(), 2.0);
    }

    #[test]
    fn vol_shift_sees_through_the_ewma_standardization() {
        // Simulate the engine: returns with a volatility jump, divided by an EWMA(0.94) volatility.
        let mut rng = SplitMix::new(12);
        let mut d = VolShiftCusum::new(VolShiftParams::default());
        let mut ewma = 1.0_f64;
        let mut at = None;
        for i in 0..5000 {
            let r = rng.normal() * if i >= 3000 { 6.0 } else { 1.0 };
            let x = r / ewma.sqrt();
            ewma = 0.94 * ewma + 0.06 * r * r;
            if d.update(x) {
                at = Some(i);
                break;
            }
        }
        assert!(at.is_some_and(|i| (3000..3100).contains(&i)), "{at:?}");
        assert!(!d.update(f64::NAN));
    }

    #[test]
    fn checkpoint_round_trip() {
        let mut rng = SplitMix::new(8);
        let s: Vec<f64> = (0..3000)
            .map(|i| rng.normal() + if i > 1500 { 1.0 } else { 0.0 })
            .collect();
        let p = RecursiveCusumParams::default();
        assert_checkpoint_round_trip(RecursiveCusum::new(p).unwrap_or_else(|e| panic!("{e}")), &s, 1234);
        assert_checkpoint_round_trip(TabularCusum::new(TabularCusumParams::default()), &s, 1234);
        let sq = RecursiveCusumParams {
            test: RecursiveTest::CusumOfSquares,
            ..Default::default()
        };
        assert_checkpoint_round_trip(RecursiveCusum::new(sq).unwrap_or_else(|e| panic!("{e}")), &s, 1234);
        assert_checkpoint_round_trip(VolShiftCusum::new(VolShiftParams::default()), &s, 1234);
    }
}

/// Parameters of [`VolShiftCusum`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VolShiftParams {
    /// Decay of the engine's EWMA variance that standardized the input (must match the engine: 0.94).
    pub fast_lambda: f64,
    /// Decay of the slow baseline variance this detector compares against (0.995: about 200 ticks).
    pub slow_lambda: f64,
    /// Cap on one tick's squared return over the baseline (before the log), so one fat-tailed tick weighs
    /// at most `ln(cap)`.
    pub cap: f64,
    /// Reference value subtracted per tick from the log ratio (whose in-control mean is about -1.3 to
    /// -1.7, the mean of `ln z²`; under a ×4 jump it starts near +1).
    pub k: f64,
    /// Decision interval.
    pub h: f64,
    /// Updates after a (re)start before detection, while the baseline settles.
    pub warmup: u64,
}

impl Default for VolShiftParams {
    fn default() -> Self {
        VolShiftParams {
            fast_lambda: 0.94,
            slow_lambda: 0.995,
            cap: 25.0,
            k: 0.25,
            h: 24.0,
            warmup: 200,
        }
    }
}

impl VolShiftParams {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DriftError> {
        check(
            self.fast_lambda > 0.0 && self.fast_lambda < 1.0,
            "vol_shift.fast_lambda",
            "must be in (0, 1)",
        )?;
        check(
            self.slow_lambda > 0.0 && self.slow_lambda < 1.0,
            "vol_shift.slow_lambda",
            "must be in (0, 1)",
        )?;
        check(self.cap > 1.0 && self.cap.is_finite(), "vol_shift.cap", "must be > 1")?;
        check(self.k.is_finite(), "vol_shift.k", "must be finite")?;
        check(self.h > 0.0 && self.h.is_finite(), "vol_shift.h", "must be > 0")
    }
}

/// One-sided CUSUM for a rise in volatility, on values standardized by a fast EWMA volatility.
///
/// **Why not a CUSUM of `x²`?** The engine divides each return by its EWMA volatility (λ = 0.94, about
/// 16 ticks), so a jump in volatility shows in `x²` only for a dozen ticks before the EWMA catches up:
/// measured on a calm GARCH/Student-t stream, no CUSUM of `x²` (or of `log x²`) separated a ×4 jump from
/// calm bursts. But the standardization is invertible up to a constant: the EWMA variance evolves as
/// `V_t = V_{t-1} (λ + (1-λ) x_t²)`, so `x_t² V_{t-1}` is the squared return in fixed (unknown) units. This
/// detector keeps the ratio `R = S / V` of a slow EWMA variance `S` of those reconstructed returns to the
/// fast one, and runs a one-sided CUSUM on `ln(clamp(x² / R, 1e-6, cap)) - k`, i.e. on each squared return
/// measured against the slow baseline (in logs, so fat tails weigh little). A ×4 volatility jump gives
/// ratios around 16 until the baseline (about 200 ticks) catches up. A restart sets the baseline to the
/// current fast variance (`R = 1`). O(1) per update, a few flops.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct VolShiftCusum {
    params: VolShiftParams,
    /// Slow baseline variance in units of the engine's current fast EWMA variance.
    ratio: f64,
    /// Updates since the (re)start.
    n: u64,
    sum: f64,
    drift: bool,
}

impl VolShiftCusum {
    /// A fresh detector. Parameters are not checked here (call [`VolShiftParams::validate`]).
    pub fn new(params: VolShiftParams) -> VolShiftCusum {
        VolShiftCusum {
            params,
            ratio: 1.0,
            n: 0,
            sum: 0.0,
            drift: false,
        }
    }

    /// Restarts with the current fast variance as the baseline.
    pub fn reset(&mut self) {
        *self = VolShiftCusum::new(self.params);
    }
}

impl DriftDetector for VolShiftCusum {
    /// `x` is the engine's standardized value, not winsorized (the reconstruction needs the exact value).
    fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        if self.drift {
            self.reset();
        }
        let p = &self.params;
        let x2 = x * x;
        // Log of the squared return over the slow baseline (floored, capped): logs tame the fat tails.
        let u = (x2 / self.ratio).clamp(1e-6, p.cap).ln();
        self.ratio =
            (p.slow_lambda * self.ratio + (1.0 - p.slow_lambda) * x2) / (p.fast_lambda + (1.0 - p.fast_lambda) * x2);
        self.n += 1;
        if self.n > p.warmup {
            self.sum = (self.sum + u - p.k).max(0.0);
        }
        self.drift = self.sum > p.h;
        self.drift
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    fn statistic(&self) -> f64 {
        self.sum
    }

    fn threshold(&self) -> f64 {
        self.params.h
    }

    fn name(&self) -> &'static str {
        "vol_shift_cusum"
    }
}
