//! How the engine turns model state into published forecasts: features, the signal weight that falls back
//! to the random walk, calibrated intervals, and the plain-data [`Forecast`] message.

pub mod combine;
pub mod fastexp;
pub mod features;
pub mod interval;
pub mod wire;

use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::horizon::Horizon;
use crate::tick::Pair;
use crate::time::format_ts;

/// The forecast of one horizon, in price units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HorizonForecast {
    /// The horizon.
    pub horizon: Horizon,
    /// Forecast of the mid at the horizon.
    #[serde(serialize_with = "ser_price")]
    pub mean: f64,
    /// Lower end of the central 80% interval.
    #[serde(serialize_with = "ser_price")]
    pub lo80: f64,
    /// Upper end of the central 80% interval.
    #[serde(serialize_with = "ser_price")]
    pub hi80: f64,
    /// Lower end of the central 95% interval.
    #[serde(serialize_with = "ser_price")]
    pub lo95: f64,
    /// Upper end of the central 95% interval.
    #[serde(serialize_with = "ser_price")]
    pub hi95: f64,
    /// The interval is not calibrated yet: fewer than [`WARMUP_SCORED`] of this horizon's forecasts have
    /// been realised and scored, so its width is the prior's, not the data's.
    pub warming_up: bool,
}

/// Realised forecasts a horizon needs before its interval counts as calibrated. The 80% bounds learn at
/// rate `interval_gamma` (0.005 by default) per realised forecast, the 95% bounds at a tenth of it; after
/// about 100 the 80% bounds have moved most of the way from the Gaussian prior to the data's quantiles
/// (the 95% ones start close to theirs), and the observed coverage of the scenarios is within a point of
/// its target from there on.
pub const WARMUP_SCORED: u64 = 100;

/// Significant digits of every price on the wire (mids, means, interval ends). Quotes carry 5 to 6
/// significant digits; a mid computed from bid and ask, or a forecast, carries float noise past the 15th
/// (`18.527659999999997`). Ten digits keep every quote exact and drop the noise. The engine keeps full
/// precision (its state and scores are unchanged); the wire encoding rounds, in the serde form and in the
/// hand-written writer alike, so replay and serve publish the same digits.
pub const PRICE_DIGITS: i32 = 10;

/// `x` rounded to [`PRICE_DIGITS`] significant digits (unchanged outside 10⁻¹²..10¹⁰ or when not finite).
pub fn round_price(x: f64) -> f64 {
    PriceRounder::for_mid(x.abs()).round(x)
}

/// Serialises a price rounded as the wire carries it ([`round_price`]).
fn ser_price<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(round_price(*x))
}

/// Rounds prices of the order of a given price to [`PRICE_DIGITS`] significant digits.
///
/// It runs about 20 times per forecast, so it avoids the slow paths: the decimal exponent comes from a table
/// of exact powers of ten (no `log10`, no `powi`), and rounding to an integer uses the 1.5·2⁵² trick (round
/// half to even, exact for the magnitudes below 2⁵² it is used on) instead of a call to `round`. The one
/// division left is what makes the result exactly the double nearest the decimal.
#[derive(Debug, Clone, Copy)]
pub struct PriceRounder {
    scale: f64,
}

/// 10⁰ to 10²², each exact in binary.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Adding and subtracting it rounds a double below 2⁵¹ in magnitude to the nearest integer.
const ROUNDER: f64 = 6_755_399_441_055_744.0;

impl PriceRounder {
    /// The rounder for prices of the order of `mid`. Prices from 10⁻¹² to below 10¹⁰ are rounded (every
    /// exchange rate); anything else passes through unchanged.
    pub fn for_mid(mid: f64) -> PriceRounder {
        let digits = PRICE_DIGITS as usize;
        let mut scale = 0.0;
        if mid.is_finite() && mid > 0.0 {
            if mid >= 1.0 {
                // mid in [10^e, 10^(e+1)) → scale 10^(digits - 1 - e).
                let mut e = 0;
                while e + 1 < digits && mid >= POW10[e + 1] {
                    e += 1;
                }
                if mid < POW10[e + 1] {
                    scale = POW10[digits - 1 - e];
                }
            } else {
                // mid in [10^-k, 10^(1-k)) → scale 10^(digits - 1 + k).
                let mut k = 1;
                while k + digits <= POW10.len() && mid * POW10[k] < 1.0 {
                    k += 1;
                }
                if k + digits <= POW10.len() {
                    scale = POW10[digits - 1 + k];
                }
            }
        }
        PriceRounder { scale }
    }

    /// `x` rounded; the division of an integer by an exact power of ten gives the double nearest the
    /// decimal, whose shortest form has at most [`PRICE_DIGITS`] digits.
    pub fn round(self, x: f64) -> f64 {
        let v = x * self.scale;
        // Outside the trick's range (or no scale, or not finite): unchanged.
        if v.is_nan() || v.abs() >= 2_251_799_813_685_248.0 || self.scale == 0.0 {
            return x;
        }
        let n = if v >= 0.0 {
            (v + ROUNDER) - ROUNDER
        } else {
            (v - ROUNDER) + ROUNDER
        };
        n / self.scale
    }
}

/// Which model produced a forecast, as every forecast carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ModelStamp {
    /// The model's name (`[engine.model] name`).
    pub name: String,
    /// The model registry's version this model was loaded from (restored at start, rolled back to, or
    /// promoted from the registry); 0 when it was not loaded from the registry (a fresh model, a replay).
    pub version: u64,
    /// A short hash (8 hex digits) of the engine configuration, so two forecasts with the same version
    /// and configuration come from the same model definition.
    pub config: String,
    /// The kind of model, when it is not the online one (`"ets"`); absent for the online models, so their
    /// forecasts read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<crate::model::ModelKind>,
}

/// The model's name and configured release label, kept in the engine's checkpointed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ModelId {
    /// Model name (from the configuration).
    pub name: String,
    /// Model version (from the configuration; the registry bumps it).
    pub version: String,
}

/// The drift state carried by every forecast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftStatus {
    /// No recent alarm.
    Stable,
    /// A residual alarm fired recently; the model is forgetting faster.
    Adapting,
}

fn ts_ser<S: Serializer>(ts_us: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ts(*ts_us))
}

/// One forecast, published for every accepted tick (subject `fx.pred.<PAIR>`), tagged `"type":"forecast"`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "forecast")]
pub struct Forecast {
    /// The pair.
    pub pair: Pair,
    /// The tick's time (RFC 3339 on the wire).
    #[serde(rename = "ts", serialize_with = "ts_ser")]
    pub ts_us: i64,
    /// The tick's sequence number, if it had one.
    pub seq: Option<u64>,
    /// The tick's mid.
    #[serde(serialize_with = "ser_price")]
    pub mid: f64,
    /// One entry per configured horizon.
    pub horizons: Vec<HorizonForecast>,
    /// The model that produced it.
    pub model: Arc<ModelStamp>,
    /// The tick's quality: overall status of the pair's windowed scores.
    pub quality: crate::quality::Status,
    /// Quality flags raised on this tick (accepted with flags).
    pub flags: crate::quality::Flags,
    /// Drift state.
    pub drift: DriftStatus,
    /// Some horizon's interval is still warming up (see [`HorizonForecast::warming_up`]).
    pub warming_up: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_round_to_ten_significant_digits_without_noise() {
        let r = PriceRounder::for_mid(18.527659999999997);
        assert_eq!(r.round(18.527659999999997).to_string(), "18.52766");
        assert_eq!(r.round(18.5276612345678).to_string(), "18.52766123");
        assert_eq!(r.round(-18.5276612345678).to_string(), "-18.52766123");
        let small = PriceRounder::for_mid(0.0067123456789012);
        assert_eq!(small.round(0.0067123456789012).to_string(), "0.006712345679");
        let big = PriceRounder::for_mid(150.123456789012);
        assert_eq!(big.round(150.123456789012).to_string(), "150.1234568");
        for odd in [f64::NAN, f64::INFINITY, 0.0, -1.0, 1e300] {
            let r = PriceRounder::for_mid(odd);
            assert_eq!(r.round(1.234567890123).to_bits(), 1.234567890123f64.to_bits(), "{odd}");
        }
        // Every quote of up to ten digits survives exactly.
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let q = (x % 9_000_000 + 1_000_000) as f64 / 100_000.0;
            assert_eq!(PriceRounder::for_mid(q).round(q), q);
        }
    }
}
