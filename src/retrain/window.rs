//! The training window: the data after the last structural change before the hold-out, found by Bayesian
//! online changepoint detection (Adams & MacKay 2007, `augurs-changepoint`'s [`NormalGammaDetector`]),
//! but never shorter than a configured minimum.
//!
//! **What the detector sees, and why.** Log returns, not prices: a price is a random walk, and a Gaussian
//! changepoint model on a random walk finds a "change" at every trend. On returns, a Normal model with
//! unknown mean *and precision* (the Normal-Gamma conjugate prior) sees both kinds of change an
//! exchange-rate model must restart on: a drift (mean) and, far more often, a volatility regime
//! (precision). The autoregressive-GP detector (`DefaultArgpcpDetector`) models smooth dynamics the returns
//! do not have, at a cost cubic in its lag window; BOCPD with a conjugate prior costs a few operations per
//! run length kept. Returns are scaled by their robust scale (median absolute return / 0.6745), so the unit
//! prior fits any pair and price level, and winsorized at ±[`CLIP`] scales, so one bad print cannot open a
//! regime of its own.
//!
//! **Bounded work.** The detector keeps one probability per live run length, and the crate keeps every
//! step's distribution to read the most likely changepoints back: memory grows with the square of the
//! points. So returns are summed in blocks (each sum divided by √block, which keeps their scale) until at
//! most [`MAX_POINTS`] points remain: daily data of 34 years is blocks of 3 days, a million ticks blocks
//! of 334. The changepoint is then known to the block.

use augurs_changepoint::dist::NormalGamma;
use augurs_changepoint::{Detector, NormalGammaDetector};
use serde::Serialize;

/// Most points given to the detector (memory ∝ points², see the module docs).
pub const MAX_POINTS: usize = 3_000;
/// Winsorizing bound of the scaled returns.
pub const CLIP: f64 = 6.0;
/// The detector's expected regime length in points (the hazard is its inverse).
pub const HAZARD_POINTS: f64 = 500.0;
/// The detector's name as reported.
pub const DETECTOR: &str = "bocpd normal-gamma on log returns";

/// Why the window starts where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowReason {
    /// At the last changepoint found.
    Changepoint,
    /// The last changepoint left fewer observations than the minimum: the minimum, ending at the hold-out.
    Minimum,
    /// No changepoint found: the whole history before the hold-out.
    NoChange,
}

/// The window chosen among the ticks before the hold-out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowChoice {
    /// Index of the window's first tick.
    pub start: usize,
    /// Why.
    pub reason: WindowReason,
    /// Index of the first tick after the last changepoint found, if any.
    pub changepoint: Option<usize>,
    /// Changepoints found in all.
    pub changepoints: usize,
    /// Returns per detector point.
    pub block: usize,
}

/// Chooses the window among `mids` (the price of each tick before the hold-out, in order; a tick without
/// a usable price is `NaN` and gives no return) with at least `min_window` ticks when there are that many.
pub fn choose(mids: &[f64], min_window: usize) -> WindowChoice {
    let n = mids.len();
    // returns[k] is the log return into tick `tick_of[k]`.
    let mut returns = Vec::with_capacity(n);
    let mut tick_of = Vec::with_capacity(n);
    let mut prev: Option<f64> = None;
    for (i, &m) in mids.iter().enumerate() {
        if !(m.is_finite() && m > 0.0) {
            continue;
        }
        if let Some(p) = prev {
            returns.push((m / p).ln());
            tick_of.push(i);
        }
        prev = Some(m);
    }
    let block = returns.len().div_ceil(MAX_POINTS).max(1);
    let points: Vec<f64> = returns
        .chunks(block)
        .map(|c| c.iter().sum::<f64>() / (c.len() as f64).sqrt())
        .collect();
    let minimum = |cp: Option<usize>, changepoints: usize| WindowChoice {
        start: n.saturating_sub(min_window),
        reason: WindowReason::Minimum,
        changepoint: cp,
        changepoints,
        block,
    };
    let Some(scale) = robust_scale(&points) else {
        return WindowChoice {
            reason: WindowReason::NoChange,
            start: 0,
            ..minimum(None, 0)
        };
    };
    let x: Vec<f64> = points.iter().map(|p| (p / scale).clamp(-CLIP, CLIP)).collect();
    let mut detector = NormalGammaDetector::normal_gamma(HAZARD_POINTS, NormalGamma::new_unchecked(0.0, 1.0, 1.0, 1.0));
    let cps: Vec<usize> = detector
        .detect_changepoints(&x)
        .into_iter()
        .filter(|&c| c > 0 && c < x.len())
        .collect();
    let Some(&last) = cps.last() else {
        return WindowChoice {
            reason: WindowReason::NoChange,
            start: 0,
            ..minimum(None, 0)
        };
    };
    // The new regime's first return is the first of block `last`; it ends at tick `tick_of[..]`, so the
    // window starts at the tick before it (the price that return starts from).
    let first_return = (last * block).min(returns.len().saturating_sub(1));
    let start = tick_of[first_return].saturating_sub(1);
    if n - start < min_window {
        return minimum(Some(start), cps.len());
    }
    WindowChoice {
        start,
        reason: WindowReason::Changepoint,
        changepoint: Some(start),
        changepoints: cps.len(),
        block,
    }
}

/// The median absolute value / 0.6745 (the standard deviation of a Normal), else the root mean square;
/// `None` when every value is zero or there are none.
fn robust_scale(x: &[f64]) -> Option<f64> {
    if x.is_empty() {
        return None;
    }
    let mut a: Vec<f64> = x.iter().map(|v| v.abs()).collect();
    a.sort_by(f64::total_cmp);
    let med = a[a.len() / 2] / 0.6745;
    if med > 0.0 && med.is_finite() {
        return Some(med);
    }
    let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
    (rms > 0.0 && rms.is_finite()).then_some(rms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::synth::SplitMix64;

    fn prices(calm: usize, wild: usize, mult: f64, seed: u64) -> Vec<f64> {
        let mut rng = SplitMix64::new(seed);
        let mut p = 20.0f64;
        let mut out = vec![p];
        for i in 0..calm + wild {
            let s = if i < calm { 0.004 } else { 0.004 * mult };
            p *= (s * rng.normal()).exp();
            out.push(p);
        }
        out
    }

    #[test]
    fn a_volatility_regime_five_times_larger_starts_the_window_at_the_break() {
        let mids = prices(1_500, 1_000, 5.0, 7);
        let w = choose(&mids, 200);
        assert_eq!(w.reason, WindowReason::Changepoint, "{w:?}");
        // The break is between tick 1500 and 1501: the window starts within a few ticks of it.
        assert!((1_495..=1_510).contains(&w.start), "{w:?}");
    }

    #[test]
    fn a_short_last_regime_gives_the_minimum_window() {
        let mids = prices(2_000, 100, 5.0, 8);
        let w = choose(&mids, 500);
        assert_eq!(w.reason, WindowReason::Minimum, "{w:?}");
        assert_eq!(w.start, mids.len() - 500);
        assert!(w.changepoint.is_some_and(|c| c >= 1_990), "{w:?}");
    }

    #[test]
    fn long_histories_are_blocked_and_a_constant_price_has_no_change() {
        let mids = prices(9_000, 0, 1.0, 9);
        let w = choose(&mids, 100);
        assert_eq!(w.block, 3);
        let flat = vec![17.0; 1_000];
        let w = choose(&flat, 100);
        assert_eq!((w.reason, w.start), (WindowReason::NoChange, 0));
        assert_eq!(choose(&[], 10).start, 0);
    }
}
