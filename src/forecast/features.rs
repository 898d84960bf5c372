//! The regression features the RLS model sees at each accepted tick, all on a unit scale so the
//! least-squares problem is well conditioned whatever the pair's price level or volatility.

use serde::{Deserialize, Serialize};

/// Number of features (fixed so the RLS can use stack-allocated matrices).
pub const N_FEATURES: usize = 6;

/// Names of the features, in order (for status replies and documentation).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "const",
    "ret_1",
    "mom_fast",
    "mom_slow",
    "kalman_gap",
    "rate_differential",
];

/// Running state behind the features: momentum averages of standardized returns.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FeatureState {
    mom_fast: f64,
    mom_slow: f64,
    last_std_ret: f64,
}

/// Decay of the fast momentum (half-life ≈ 5 observations).
const FAST: f64 = 0.870_550_563_296_124;
/// Decay of the slow momentum (half-life ≈ 50 observations).
const SLOW: f64 = 0.986_232_704_493_359_7;

impl FeatureState {
    /// Learns one standardized return (return divided by the one-step volatility before it).
    pub fn update(&mut self, std_ret: f64) {
        let z = if std_ret.is_finite() {
            std_ret.clamp(-8.0, 8.0)
        } else {
            0.0
        };
        self.last_std_ret = z;
        self.mom_fast = FAST * self.mom_fast + (1.0 - FAST) * z;
        self.mom_slow = SLOW * self.mom_slow + (1.0 - SLOW) * z;
    }

    /// The feature vector now. `kalman_gap` is the filtered level minus the last log-mid, in one-step
    /// volatilities (microstructure noise reverts); `rate_differential` is domestic minus foreign policy
    /// rate in percentage points divided by 10 (carry), 0 when no factor is configured or known.
    pub fn vector(&self, kalman_gap: f64, rate_differential: f64) -> [f64; N_FEATURES] {
        let clean = |v: f64, lim: f64| if v.is_finite() { v.clamp(-lim, lim) } else { 0.0 };
        [
            1.0,
            self.last_std_ret,
            self.mom_fast * 3.0,
            self.mom_slow * 10.0,
            clean(kalman_gap, 8.0),
            clean(rate_differential / 10.0, 5.0),
        ]
    }
}
