//! The implausible-jump check: a log-return from the last accepted mid outside the robust band
//! `median ± k · 1.4826 · MAD` of recent returns (scaled by `sqrt` of the time gap) is quarantined, unless
//! several consecutive outliers agree with each other, which is a genuine level shift to re-anchor on.
//!
//! A second, short scale tells a fat finger from a market in turmoil: the median absolute return of the
//! last [`SHORT_WINDOW`] *observed* mids (accepted or not). A single bad print moves that median not at
//! all; a crisis, where most recent moves are large, moves it a lot. A return outside the long band is
//! still plausible when it lies inside `k` short-scale sigmas, so real crisis moves (USD/MXN in October
//! 2008 and March 2020 moved 3–6% a day after years of 0.5%) reach the model instead of being quarantined.
//! The short scale is only computed when the long band is exceeded, so it costs nothing on normal ticks.
//!
//! Consecutive outliers may also re-anchor sooner: a [`MoveJudge`] (the engine's shock detector) is asked
//! about every outlier and may confirm a genuine fast move at its second tick, so a market in a shock is
//! not quarantined piece by piece; it never confirms a lone print.
//!
//! The median and MAD are recomputed every `recompute_every` accepted returns with two linear-time
//! selections over a preallocated scratch buffer: O(window / recompute_every) amortised, no allocation.

use serde::{Deserialize, Serialize};

use super::config::QualityConfig;

/// Scale of the MAD that estimates sigma for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Observed returns behind the short (turmoil) scale.
pub(crate) const SHORT_WINDOW: usize = 16;

/// Observed returns needed before the short scale is used.
const SHORT_MIN: usize = 8;
/// Most consecutive outliers remembered while waiting for a re-anchor.
pub(crate) const MAX_REANCHOR: usize = 8;

/// A fixed-capacity ring of the most recent values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Ring {
    buf: Vec<f64>,
    head: usize,
    cap: usize,
}

impl Ring {
    pub(crate) fn new(cap: usize) -> Self {
        let cap = cap.max(1);
        Ring {
            buf: Vec::with_capacity(cap),
            head: 0,
            cap,
        }
    }

    pub(crate) fn push(&mut self, x: f64) {
        if self.buf.len() < self.cap {
            self.buf.push(x);
        } else if let Some(slot) = self.buf.get_mut(self.head) {
            *slot = x;
            self.head = if self.head + 1 == self.cap { 0 } else { self.head + 1 };
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn values(&self) -> &[f64] {
        &self.buf
    }
}

/// The median of `xs` (upper median for even lengths), reordering `xs`. `None` when empty.
fn median_in_place(xs: &mut [f64]) -> Option<f64> {
    if xs.is_empty() {
        return None;
    }
    let mid = xs.len() / 2;
    let (_, m, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    Some(*m)
}

/// Tells a genuine fast move from bad prints, for the consecutive implausible ticks the band cannot judge
/// on its own. The quality layer knows nothing of drift detection; the engine implements this with its
/// shock detector and passes it to [`crate::quality::Validator::check_judged`].
pub trait MoveJudge {
    /// Whether a move of `total` (log-return from the last accepted mid) over `observations` consecutive
    /// implausible ticks that agree with each other, the last of which moved by `last_step`, is a genuine
    /// move to re-anchor on now.
    fn confirms(&self, total: f64, last_step: f64, observations: usize) -> bool;
}

/// The judge that confirms nothing: re-anchoring waits for `reanchor_after` agreeing outliers.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoJudge;

impl MoveJudge for NoJudge {
    fn confirms(&self, _total: f64, _last_step: f64, _observations: usize) -> bool {
        false
    }
}

/// What the band says about a candidate mid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JumpOutcome {
    /// Inside the band (or too little history to judge).
    Plausible,
    /// Outside the band: quarantine.
    Implausible,
    /// Outside the band, but the last `reanchor_after` outliers agree, or the judge confirms a genuine
    /// move: accept and re-anchor.
    Reanchor,
}

/// The rolling robust band and the re-anchoring state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JumpBand {
    k: f64,
    min_sigma: f64,
    max_time_scale: f64,
    min_history: usize,
    recompute_every: usize,
    reanchor_after: usize,
    returns: Ring,
    gaps_us: Ring,
    /// Working space for the selections; its contents never matter between calls.
    #[serde(skip)]
    scratch: Vec<f64>,
    since_fit: usize,
    /// History length at the last fit (so early fits happen at each doubling while the window fills).
    fit_len: usize,
    fitted: bool,
    center: f64,
    sigma: f64,
    typical_gap_us: f64,
    pending: [f64; MAX_REANCHOR],
    pending_len: usize,
    recent_abs: Ring,
    last_observed_mid: Option<f64>,
    /// Sign of the last pending outlier's deviation from the anchor.
    pending_sign: f64,
}

impl JumpBand {
    pub(crate) fn new(cfg: &QualityConfig) -> Self {
        let window = cfg.jump_window.max(2);
        JumpBand {
            k: if cfg.jump_k.is_finite() && cfg.jump_k > 0.0 {
                cfg.jump_k
            } else {
                10.0
            },
            min_sigma: if cfg.jump_min_sigma.is_finite() {
                cfg.jump_min_sigma.max(0.0)
            } else {
                1e-4
            },
            max_time_scale: if cfg.jump_max_time_scale.is_finite() {
                cfg.jump_max_time_scale.max(1.0)
            } else {
                1.0
            },
            min_history: cfg.jump_min_history.clamp(2, window),
            recompute_every: cfg.jump_recompute_every.max(1),
            reanchor_after: cfg.reanchor_after.clamp(1, MAX_REANCHOR),
            returns: Ring::new(window),
            gaps_us: Ring::new(window),
            scratch: Vec::with_capacity(window),
            since_fit: 0,
            fit_len: 0,
            fitted: false,
            center: 0.0,
            sigma: 0.0,
            typical_gap_us: 1.0,
            pending: [0.0; MAX_REANCHOR],
            pending_len: 0,
            recent_abs: Ring::new(SHORT_WINDOW),
            last_observed_mid: None,
            pending_sign: 0.0,
        }
    }

    /// Half-width of the band for a return over `gap_us`, before centring.
    fn half_width(&self, gap_us: i64) -> f64 {
        let scale = if gap_us > 0 {
            (gap_us as f64 / self.typical_gap_us)
                .sqrt()
                .clamp(1.0, self.max_time_scale)
        } else {
            1.0
        };
        self.k * self.sigma.max(self.min_sigma) * scale
    }

    /// Judges the log-return `r` (from the anchor mid to `mid`, over `gap_us`); the band is at least
    /// `min_half_width` wide (used when the anchor is another source's mid, which may sit at an offset).
    /// Outliers the `judge` confirms as a genuine move re-anchor at once.
    pub(crate) fn assess(
        &mut self,
        r: f64,
        mid: f64,
        gap_us: i64,
        min_half_width: f64,
        judge: &dyn MoveJudge,
    ) -> JumpOutcome {
        if let Some(prev) = self.last_observed_mid {
            let observed = (mid / prev).ln();
            if observed.is_finite() {
                self.recent_abs.push(observed.abs());
            }
        }
        self.last_observed_mid = Some(mid);
        let deviation = (r - self.center).abs();
        let half_width = self.half_width(gap_us).max(min_half_width);
        if !self.fitted || deviation <= half_width || deviation <= half_width * self.turmoil_scale() {
            self.pending_len = 0;
            return JumpOutcome::Plausible;
        }
        // Consecutive outliers re-anchor when they agree with each other (a level shift) or all run away
        // from the anchor on the same side (a devaluation: the rate keeps moving, day after day); a fat
        // finger is alone, or followed by a tick back at the old level, which is plausible and resets this.
        let sign = (r - self.center).signum();
        let prev = self
            .pending_len
            .checked_sub(1)
            .and_then(|i| self.pending.get(i))
            .copied();
        let agrees = match prev {
            Some(prev) => (mid / prev).ln().abs() <= self.half_width(0) || sign == self.pending_sign,
            None => false,
        };
        self.pending_sign = sign;
        if !agrees {
            self.pending_len = 0;
        }
        if let Some(slot) = self.pending.get_mut(self.pending_len) {
            *slot = mid;
            self.pending_len += 1;
        }
        // The step this outlier made from the previous agreeing one (the whole move when it is the first).
        let last_step = match prev {
            Some(prev) if agrees => (mid / prev).ln(),
            _ => r,
        };
        if judge.confirms(r, last_step, self.pending_len) || self.pending_len >= self.reanchor_after {
            self.pending_len = 0;
            JumpOutcome::Reanchor
        } else {
            JumpOutcome::Implausible
        }
    }

    /// Learns an accepted return; refits the band every `recompute_every` returns.
    /// How many times wider than the long band the market has recently been moving (at least 1): the
    /// short-window robust sigma of observed returns over the long-window one.
    fn turmoil_scale(&self) -> f64 {
        if self.recent_abs.len() < SHORT_MIN {
            return 1.0;
        }
        let mut buf = [0.0; SHORT_WINDOW];
        let n = self.recent_abs.len().min(SHORT_WINDOW);
        buf[..n].copy_from_slice(&self.recent_abs.values()[..n]);
        let short_sigma = median_in_place(&mut buf[..n]).map_or(0.0, |m| MAD_TO_SIGMA * m);
        let scale = short_sigma / self.sigma.max(self.min_sigma);
        if scale.is_finite() { scale.max(1.0) } else { 1.0 }
    }

    pub(crate) fn learn(&mut self, r: f64, gap_us: i64) {
        self.returns.push(r);
        self.gaps_us.push(gap_us.max(0) as f64);
        self.since_fit += 1;
        let len = self.returns.len();
        let due = if self.fitted {
            self.since_fit >= self.recompute_every || len >= 2 * self.fit_len
        } else {
            len >= self.min_history
        };
        if due {
            self.refit();
        }
    }

    fn refit(&mut self) {
        self.since_fit = 0;
        self.fit_len = self.returns.len();
        self.scratch.clear();
        self.scratch.extend_from_slice(self.returns.values());
        let Some(center) = median_in_place(&mut self.scratch) else {
            return;
        };
        for x in self.scratch.iter_mut() {
            *x = (*x - center).abs();
        }
        let mad = median_in_place(&mut self.scratch).unwrap_or(0.0);
        self.scratch.clear();
        self.scratch.extend_from_slice(self.gaps_us.values());
        let gap = median_in_place(&mut self.scratch).unwrap_or(1.0);
        self.center = center;
        self.sigma = MAD_TO_SIGMA * mad;
        self.typical_gap_us = gap.max(1.0);
        self.fitted = true;
    }

    /// The median spacing of recent accepted ticks, once the band has been fitted.
    pub(crate) fn typical_gap_us(&self) -> Option<f64> {
        self.fitted.then_some(self.typical_gap_us)
    }

    /// Whether the band has enough history to judge.
    #[cfg(test)]
    pub(crate) fn is_fitted(&self) -> bool {
        self.fitted
    }

    /// Returns held (bounded by the window).
    #[cfg(test)]
    pub(crate) fn history_len(&self) -> usize {
        self.returns.len()
    }
}

impl PartialEq for JumpBand {
    /// Equality of the state that matters (the scratch buffer is excluded).
    fn eq(&self, other: &Self) -> bool {
        self.returns == other.returns
            && self.gaps_us == other.gaps_us
            && self.since_fit == other.since_fit
            && self.fit_len == other.fit_len
            && self.fitted == other.fitted
            && self.center == other.center
            && self.sigma == other.sigma
            && self.typical_gap_us == other.typical_gap_us
            && self.pending_len == other.pending_len
            && self.pending[..self.pending_len] == other.pending[..other.pending_len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::sketch::tests::SplitMix;

    fn band() -> JumpBand {
        JumpBand::new(&QualityConfig::default())
    }

    fn warm(b: &mut JumpBand, rng: &mut SplitMix, n: usize) {
        for _ in 0..n {
            b.learn(rng.normal() * 2e-4, 1_000_000);
        }
    }

    #[test]
    fn fits_after_min_history_and_flags_outliers() {
        let mut b = band();
        let mut rng = SplitMix(1);
        warm(&mut b, &mut rng, 31);
        assert!(!b.is_fitted());
        assert_eq!(b.assess(0.5, 1.0, 1_000_000, 0.0, &NoJudge), JumpOutcome::Plausible);
        warm(&mut b, &mut rng, 1);
        assert!(b.is_fitted());
        assert!((b.sigma - 2e-4).abs() < 1e-4, "sigma {}", b.sigma);
        assert_eq!(b.assess(1e-4, 1.0, 1_000_000, 0.0, &NoJudge), JumpOutcome::Plausible);
        assert_eq!(b.assess(0.05, 1.05, 1_000_000, 0.0, &NoJudge), JumpOutcome::Implausible);
        warm(&mut b, &mut rng, 10_000);
        assert_eq!(b.history_len(), 256);
    }

    #[test]
    fn long_gaps_widen_the_band_up_to_the_cap() {
        let mut b = band();
        warm(&mut b, &mut SplitMix(2), 64);
        let r = 0.01; // ~50 sigma over one typical gap
        assert_eq!(b.assess(r, 1.01, 1_000_000, 0.0, &NoJudge), JumpOutcome::Implausible);
        b.pending_len = 0;
        assert_eq!(
            b.assess(r, 1.01, 172_800_000_000, 0.0, &NoJudge),
            JumpOutcome::Plausible
        );
    }
}
