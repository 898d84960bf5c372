//! Page-Hinkley test, as River 0.26's `river.drift.PageHinkley`.
//!
//! It accumulates the deviations of each value from the running mean (with a forgetting factor `alpha`
//! and a tolerance `delta`) and signals when the cumulative sum has risen (or fallen) more than `threshold`
//! above its running minimum (below its running maximum). The arithmetic follows River's so detection
//! indices are identical; like River, the detector starts afresh on the update after a detection.

use serde::{Deserialize, Serialize};

use super::{DriftDetector, DriftError, check};

/// Which direction of change in the mean is tested.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhMode {
    /// Increases only.
    Up,
    /// Decreases only.
    Down,
    /// Both directions (River's default).
    Both,
}

/// Page-Hinkley parameters; the defaults are River's.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PageHinkleyParams {
    /// No detection before this many values since the (re)start.
    pub min_instances: u64,
    /// Tolerated drift per value (the CUSUM reference value).
    pub delta: f64,
    /// Detection threshold (lambda), on the scale of the data.
    pub threshold: f64,
    /// Forgetting factor applied to the cumulative sums.
    pub alpha: f64,
    /// Direction(s) tested.
    pub mode: PhMode,
}

impl Default for PageHinkleyParams {
    fn default() -> Self {
        PageHinkleyParams {
            min_instances: 30,
            delta: 0.005,
            threshold: 50.0,
            alpha: 1.0 - 0.0001,
            mode: PhMode::Both,
        }
    }
}

impl PageHinkleyParams {
    /// Checks the ranges.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DriftError> {
        check(
            self.delta >= 0.0 && self.delta.is_finite(),
            "page_hinkley.delta",
            "must be finite and >= 0",
        )?;
        check(
            self.threshold > 0.0 && self.threshold.is_finite(),
            "page_hinkley.threshold",
            "must be > 0",
        )?;
        check(
            self.alpha > 0.0 && self.alpha <= 1.0,
            "page_hinkley.alpha",
            "must be in (0, 1]",
        )
    }
}

/// The Page-Hinkley detector; see the module docs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PageHinkley {
    params: PageHinkleyParams,
    /// Count of values since the (re)start (a float, as River's `stats.Mean`).
    n: f64,
    mean: f64,
    sum_increase: f64,
    sum_decrease: f64,
    /// Running minimum of `sum_increase`; `None` stands for River's `+inf` (JSON has no infinity).
    min_increase: Option<f64>,
    max_decrease: f64,
    drift: bool,
    statistic: f64,
}

impl Default for PageHinkley {
    fn default() -> Self {
        PageHinkley::new(PageHinkleyParams::default())
    }
}

impl PageHinkley {
    /// A fresh detector. Parameters are not checked here (call [`PageHinkleyParams::validate`]).
    pub fn new(params: PageHinkleyParams) -> PageHinkley {
        PageHinkley {
            params,
            n: 0.0,
            mean: 0.0,
            sum_increase: 0.0,
            sum_decrease: 0.0,
            min_increase: None,
            max_decrease: -1.0,
            drift: false,
            statistic: 0.0,
        }
    }

    /// Forgets everything but the parameters.
    pub fn reset(&mut self) {
        *self = PageHinkley::new(self.params);
    }
}

impl DriftDetector for PageHinkley {
    fn update(&mut self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        if self.drift {
            self.reset();
        }
        let p = &self.params;
        self.n += 1.0;
        self.mean += (1.0 / self.n) * (x - self.mean);
        let dev = x - self.mean;
        self.sum_increase = p.alpha * self.sum_increase + dev - p.delta;
        self.sum_decrease = p.alpha * self.sum_decrease + dev + p.delta;
        let min_increase = match self.min_increase {
            Some(m) if m <= self.sum_increase => m,
            _ => self.sum_increase,
        };
        self.min_increase = Some(min_increase);
        if self.sum_decrease > self.max_decrease {
            self.max_decrease = self.sum_decrease;
        }
        if self.n >= p.min_instances as f64 {
            let inc = self.sum_increase - min_increase;
            let dec = self.max_decrease - self.sum_decrease;
            let (up, down) = (inc > p.threshold, dec > p.threshold);
            self.drift = match p.mode {
                PhMode::Up => up,
                PhMode::Down => down,
                PhMode::Both => up || down,
            };
            self.statistic = match p.mode {
                PhMode::Up => inc,
                PhMode::Down => dec,
                PhMode::Both => inc.max(dec),
            };
        }
        self.drift
    }

    fn drift_detected(&self) -> bool {
        self.drift
    }

    /// The larger tested excursion (`sum - min` upwards, `max - sum` downwards).
    fn statistic(&self) -> f64 {
        self.statistic
    }

    fn threshold(&self) -> f64 {
        self.params.threshold
    }

    fn name(&self) -> &'static str {
        "page_hinkley"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testutil::{SplitMix, assert_checkpoint_round_trip};

    #[test]
    fn detects_upward_shift_after_min_instances() {
        let mut ph = PageHinkley::default();
        let mut at = None;
        for i in 0..2000 {
            let x = if i < 1000 { 0.0 } else { 5.0 };
            if ph.update(x) {
                at = Some(i);
                break;
            }
        }
        // 5 per step above a mean that lags: crosses 50 within about a dozen steps.
        let at = at.expect("detected");
        assert!((1000..1030).contains(&at), "{at}");
    }

    #[test]
    fn non_finite_ignored_and_round_trip() {
        let mut ph = PageHinkley::default();
        assert!(!ph.update(f64::NAN));
        assert_eq!(ph.n, 0.0);
        let mut rng = SplitMix::new(3);
        let s: Vec<f64> = (0..3000)
            .map(|i| rng.normal() * 3.0 + if i > 1500 { 4.0 } else { 0.0 })
            .collect();
        assert_checkpoint_round_trip(PageHinkley::default(), &s, 1400);
    }
}
