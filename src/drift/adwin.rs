//! ADWIN (adaptive windowing, Bifet & Gavaldà 2007), a port of River 0.26's `river.drift.ADWIN`.
//!
//! The window is stored as exponential histograms: level `i` holds up to `max_buckets` summaries of `2^i`
//! values each (a sum and a sum of squared deviations), so memory is O(log n) however long the window
//! grows. Every `clock` updates, every boundary between summaries is tried as a cut into an older part W0
//! and a newer part W1; when their means differ by more than the Hoeffding/Bernstein bound, the oldest
//! summary is dropped and the cut check repeats. Arithmetic follows River's order of operations so the
//! detection indices are identical (asserted against River's own outputs in `tests/drift_reference.rs`).
//! Like River, the detector starts afresh on the update after a detection.

use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftError, check};

/// One summary of `2^level` consecutive values.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Summary {
    /// Sum of the values.
    total: f64,
    /// Sum of squared deviations from their mean.
    variance: f64,
}

/// ADWIN parameters; the defaults are River's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdwinParams {
    /// Confidence of the cut test: smaller means fewer false alarms and slower detection.
    pub delta: f64,
    /// Cuts are checked every `clock` updates (River's speed/latency trade-off).
    pub clock: u32,
    /// Summaries kept per level before the two oldest are merged.
    pub max_buckets: usize,
    /// Neither side of a cut may hold fewer values than this.
    pub min_window_length: u32,
    /// No cut is checked before the window holds more values than this.
    pub grace_period: u32,
}

impl Default for AdwinParams {
    fn default() -> Self {
        AdwinParams {
            delta: 0.002,
            clock: 32,
            max_buckets: 5,
            min_window_length: 5,
            grace_period: 10,
        }
    }
}

impl AdwinParams {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DriftError> {
        check(self.delta > 0.0 && self.delta < 1.0, "adwin.delta", "must be in (0, 1)")?;
        check(self.clock >= 1, "adwin.clock", "must be at least 1")?;
        check(self.max_buckets >= 2, "adwin.max_buckets", "must be at least 2")?;
        check(
            self.min_window_length >= 1,
            "adwin.min_window_length",
            "must be at least 1",
        )
    }
}

/// The ADWIN detector; see the module docs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Adwin {
    params: AdwinParams,
    /// Sum of the values in the window.
    total: f64,
    /// Sum of squared deviations from the window mean.
    variance: f64,
    /// Number of values in the window (a float, as in River, because it enters the bound).
    width: f64,
    /// Updates since the last (re)start; cuts are checked when it is a multiple of `clock`.
    tick: u64,
    /// `levels[i]` holds summaries of `2^i` values, oldest first.
    levels: Vec<Vec<Summary>>,
    /// Whether the last update detected a drift (the next update restarts the window).
    drift: bool,
    /// Detections since construction (not reset by the restart after a detection).
    n_detections: u64,
    /// Largest `|mean(W0) - mean(W1)| / epsilon_cut` seen at the last cut check (1.0 is the boundary).
    last_ratio: f64,
}

impl Default for Adwin {
    fn default() -> Self {
        Adwin::new(AdwinParams::default())
    }
}

impl Adwin {
    /// A fresh detector. Parameters are not checked here (call [`AdwinParams::validate`] on config input).
    pub fn new(params: AdwinParams) -> Adwin {
        Adwin {
            params,
            total: 0.0,
            variance: 0.0,
            width: 0.0,
            tick: 0,
            levels: vec![Vec::with_capacity(params.max_buckets + 1)],
            drift: false,
            n_detections: 0,
            last_ratio: 0.0,
        }
    }

    /// Number of values in the adaptive window.
    pub fn width(&self) -> u64 {
        self.width as u64
    }

    /// Mean of the window, River's `estimation` (0 when empty).
    pub fn estimation(&self) -> f64 {
        if self.width == 0.0 {
            0.0
        } else {
            self.total / self.width
        }
    }

    /// Total detections since construction.
    pub fn n_detections(&self) -> u64 {
        self.n_detections
    }

    /// Number of stored summaries, to show that memory stays O(log n).
    pub fn n_summaries(&self) -> usize {
        self.levels.iter().map(Vec::len).sum()
    }

    /// Forgets the window (keeps parameters and the detection count).
    pub fn reset(&mut self) {
        let n = self.n_detections;
        *self = Adwin::new(self.params);
        self.n_detections = n;
    }

    fn insert(&mut self, x: f64) {
        self.width += 1.0;
        let mut incremental = 0.0;
        if self.width > 1.0 {
            let d = x - self.total / (self.width - 1.0);
            incremental = (self.width - 1.0) * d * d / self.width;
        }
        self.variance += incremental;
        self.total += x;
        self.levels[0].push(Summary {
            total: x,
            variance: 0.0,
        });
        self.compress();
    }

    /// Merges the two oldest summaries of every full level into one of the next level.
    fn compress(&mut self) {
        let full = self.params.max_buckets + 1;
        let mut level = 0;
        while self.levels[level].len() == full {
            let n = (1u64 << level) as f64;
            let a = self.levels[level][0];
            let b = self.levels[level][1];
            let (mu_a, mu_b) = (a.total / n, b.total / n);
            let merged = Summary {
                total: a.total + b.total,
                variance: a.variance + b.variance + n * 0.5 * (mu_a - mu_b) * (mu_a - mu_b),
            };
            self.levels[level].drain(..2);
            if level + 1 == self.levels.len() {
                self.levels.push(Vec::with_capacity(full));
            }
            self.levels[level + 1].push(merged);
            level += 1;
        }
    }

    /// Drops the oldest summary (the first of the last level).
    fn drop_oldest(&mut self) {
        let last = self.levels.len() - 1;
        let Some(&oldest) = self.levels[last].first() else {
            return;
        };
        let n = (1u64 << last) as f64;
        let mu = oldest.total / n;
        self.width -= n;
        self.total -= oldest.total;
        let mu_window = self.total / self.width;
        self.variance -= oldest.variance + n * self.width * (mu - mu_window) * (mu - mu_window) / (n + self.width);
        self.levels[last].remove(0);
        if self.levels[last].is_empty() && last > 0 {
            self.levels.pop();
        }
    }

    /// Tries every cut, dropping the oldest summary while some cut is significant; returns whether any was.
    fn detect(&mut self) -> bool {
        let p = self.params;
        let min_len = p.min_window_length as f64;
        let mut detected = false;
        loop {
            // Both are constant during one pass (the window only changes when a cut is found).
            let delta_prime = (2.0 * self.width.ln() / p.delta).ln();
            let window_var = self.variance / self.width;
            let (mut n0, mut n1, mut u0, mut u1) = (0.0_f64, self.width, 0.0_f64, self.total);
            let mut cut = false;
            let mut ratio_max = 0.0_f64;
            'scan: for level in (0..self.levels.len()).rev() {
                let size = (1u64 << level) as f64;
                let len = self.levels[level].len();
                for k in 0..len {
                    let t = self.levels[level][k].total;
                    n0 += size;
                    n1 -= size;
                    u0 += t;
                    u1 -= t;
                    if level == 0 && k + 1 == len {
                        break 'scan;
                    }
                    if n1 >= min_len && n0 >= min_len {
                        let delta_mean = (u0 / n0) - (u1 / n1);
                        let m_recip = 1.0 / (n0 - min_len + 1.0) + 1.0 / (n1 - min_len + 1.0);
                        let epsilon =
                            (2.0 * m_recip * window_var * delta_prime).sqrt() + 2.0 / 3.0 * delta_prime * m_recip;
                        let ratio = delta_mean.abs() / epsilon;
                        if ratio > ratio_max {
                            ratio_max = ratio;
                        }
                        if delta_mean.abs() > epsilon {
                            cut = true;
                            break 'scan;
                        }
                    }
                }
            }
            self.last_ratio = ratio_max;
            if !cut {
                return detected;
            }
            detected = true;
            self.drop_oldest();
        }
    }
}

impl DriftDetector for Adwin {
    fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        if self.drift {
            self.reset();
        }
        self.insert(x);
        self.tick += 1;
        let p = self.params;
        self.drift = self.tick.is_multiple_of(p.clock as u64) && self.width > p.grace_period as f64 && self.detect();
        if self.drift {
            self.n_detections += 1;
        }
        self.drift
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    /// The largest `|mean(W0) - mean(W1)| / epsilon_cut` over the cuts tried at the last check.
    fn statistic(&self) -> f64 {
        self.last_ratio
    }

    fn threshold(&self) -> f64 {
        1.0
    }

    fn name(&self) -> &'static str {
        "adwin"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testutil::{SplitMix, assert_checkpoint_round_trip};

    #[test]
    fn constant_stream_never_drifts_and_memory_is_logarithmic() {
        let mut a = Adwin::default();
        for _ in 0..100_000 {
            assert!(!a.update(1.0));
        }
        assert_eq!(a.width(), 100_000);
        assert!(a.n_summaries() <= 5 * 17 + 1, "{}", a.n_summaries());
        assert!((a.estimation() - 1.0).abs() < 1e-12);
    }

    #[test]
    fn detects_a_mean_shift_and_shrinks_the_window() {
        let mut rng = SplitMix::new(7);
        let mut a = Adwin::default();
        let mut first = None;
        for i in 0..4000 {
            let x = rng.normal() + if i >= 2000 { 1.0 } else { 0.0 };
            if a.update(x) && first.is_none() {
                first = Some(i);
            }
        }
        let at = first.expect("detected");
        assert!((2000..2200).contains(&at), "{at}");
    }

    #[test]
    fn non_finite_values_are_ignored() {
        let mut a = Adwin::default();
        a.update(1.0);
        assert!(!a.update(f64::NAN));
        assert!(!a.update(f64::INFINITY));
        assert_eq!(a.width(), 1);
    }

    #[test]
    fn checkpoint_round_trip_mid_stream() {
        let mut rng = SplitMix::new(11);
        let s: Vec<f64> = (0..6000)
            .map(|i| rng.normal() + if i > 3000 { 2.0 } else { 0.0 })
            .collect();
        assert_checkpoint_round_trip(Adwin::default(), &s, 2999);
    }
}
