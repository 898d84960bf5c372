//! Streaming drift detectors on inputs, predictions and residuals.
//!
//! The engine feeds each monitored signal (the input rate's standardized return, the model's standardized
//! prediction change, the standardized residual) to one [`SignalMonitor`], which runs a small set of
//! detectors and writes [`Alarm`]s into a caller-owned buffer. Everything here is pure, synchronous and
//! deterministic: no clock (time comes from `ts_us` of the tick), no I/O, no randomness.
//!
//! Map of the module:
//!
//! - [`adwin`]: ADWIN, a port of River 0.26's `river.drift.ADWIN` (same detection indices).
//! - [`page_hinkley`]: Page-Hinkley, as River's `river.drift.PageHinkley` (same detection indices).
//! - [`cusum`]: a two-sided tabular CUSUM, the Brown–Durbin–Evans CUSUM / CUSUM-of-squares tests on
//!   recursive residuals with statsmodels' significance bounds (run over a sliding window), and a
//!   volatility-rise detector for EWMA-standardized values.
//! - [`window_test`]: reference-versus-current window tests (PSI, two-sample Kolmogorov–Smirnov, normed
//!   Wasserstein distance) evaluated every few updates.
//! - [`monitor`]: [`SignalMonitor`] and its serde [`DriftConfig`], which wire the detectors to one signal,
//!   with reset and a refractory period so one change gives one alarm.
//! - [`shock`]: [`ShockDetector`], an immediate alarm on a move of many standard deviations over a few
//!   observations, measured against a slow robust scale the move cannot widen.
//!
//! Every detector implements [`DriftDetector`] (River's vocabulary) and its state is plain serde data, so
//! a checkpoint restores a detector that produces bit-identical subsequent outputs.

pub mod adwin;
pub mod cusum;
pub mod monitor;
pub mod page_hinkley;
pub mod shock;
pub mod window_test;

use serde::{Deserialize, Serialize};

pub use adwin::Adwin;
pub use cusum::{RecursiveCusum, TabularCusum, VolShiftCusum};
pub use monitor::{DetectorId, DetectorState, DriftConfig, DriftState, SignalMonitor};
pub use page_hinkley::PageHinkley;
pub use shock::{ShockConfig, ShockDetector};
pub use window_test::{WindowMetric, WindowTest};

/// A streaming change detector fed one value at a time, in River's vocabulary.
///
/// Kept object-safe and tiny so the monitor can hold a heterogeneous set of detectors and the engine can
/// report any of them the same way (`statistic` against `threshold`).
pub trait DriftDetector {
    /// Feeds one value; returns `true` when a drift is detected at this very update. Non-finite values are
    /// ignored (state unchanged, returns `false`) so a bad tick cannot poison the detector.
    fn update(&mut self, x: f64) -> bool;
    /// Whether the most recent (finite) update detected a drift, like River's `drift_detected`.
    fn drift_detected(&self) -> bool;
    /// The detector's current test statistic, on the same scale as [`DriftDetector::threshold`].
    fn statistic(&self) -> f64;
    /// The value the statistic must exceed for a detection.
    fn threshold(&self) -> f64;
    /// A short stable name for reports and alarms (`"adwin"`, `"page_hinkley"`, …).
    fn name(&self) -> &'static str;
}

/// Which signal of the engine a monitor watches; the engine runs one [`SignalMonitor`] per signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The input itself (standardized returns of the rate).
    Input,
    /// The model's predictions (standardized).
    Prediction,
    /// The model's one-step residuals (standardized): a level shift here means the model is biased.
    Residual,
}

impl Signal {
    /// The snake_case name used in reports and logs.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Input => "input",
            Signal::Prediction => "prediction",
            Signal::Residual => "residual",
        }
    }
}

/// One drift alarm, published by the engine; plain data so it serializes straight onto the bus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    /// The detector that fired ([`DriftDetector::name`]).
    pub detector: &'static str,
    /// The signal it watches.
    pub signal: Signal,
    /// Event time of the tick at which it fired, microseconds since the epoch.
    pub ts_us: i64,
    /// The detector's statistic at the alarm.
    pub statistic: f64,
    /// The threshold it exceeded.
    pub threshold: f64,
}

/// Why a drift configuration was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DriftError {
    /// A parameter is outside its valid range; the message names it.
    #[error("invalid drift parameter `{name}`: {reason}")]
    InvalidParameter {
        /// The parameter's name as in the config.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Returns `Ok(())` when `ok`, else the parameter error; keeps the validation code in each detector short.
pub(crate) fn check(ok: bool, name: &'static str, reason: &'static str) -> Result<(), DriftError> {
    if ok {
        Ok(())
    } else {
        Err(DriftError::InvalidParameter { name, reason })
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Seeded randomness for tests only (the core never draws random numbers).

    /// The seeded generator the synthetic scenarios use (one implementation for the whole crate).
    pub use crate::replay::synth::SplitMix64 as SplitMix;

    /// Feeds `stream` to a detector, serializes it to JSON at `cut`, restores it, and checks that the
    /// restored copy gives the same outputs as the original on the rest of the stream.
    pub fn assert_checkpoint_round_trip<D>(mut d: D, stream: &[f64], cut: usize)
    where
        D: super::DriftDetector + serde::Serialize + serde::de::DeserializeOwned,
    {
        for &x in &stream[..cut] {
            d.update(x);
        }
        let json = serde_json::to_string(&d).expect("serialize");
        let mut restored: D = serde_json::from_str(&json).expect("deserialize");
        for &x in &stream[cut..] {
            let a = d.update(x);
            let b = restored.update(x);
            assert_eq!(a, b);
            assert_eq!(d.statistic().to_bits(), restored.statistic().to_bits());
        }
    }
}
