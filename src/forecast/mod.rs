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
    pub mean: f64,
    /// Lower end of the central 80% interval.
    pub lo80: f64,
    /// Upper end of the central 80% interval.
    pub hi80: f64,
    /// Lower end of the central 95% interval.
    pub lo95: f64,
    /// Upper end of the central 95% interval.
    pub hi95: f64,
    /// The interval is not calibrated yet: fewer than [`WARMUP_SCORED`] of this horizon's forecasts have
    /// been realised and scored, so its width is the prior's, not the data's.
    pub warming_up: bool,
}

/// Realised forecasts a horizon needs before its interval counts as calibrated. The interval multipliers
/// learn at rate `interval_gamma` (0.005 by default) per realised forecast; after about 100 they have
/// moved most of the way from the Gaussian prior to the data's quantiles, and the observed coverage of
/// the scenarios is within a point of its target from there on.
pub const WARMUP_SCORED: u64 = 100;

/// Significant digits of every price on the wire (mids, means, interval ends). Quotes carry 5 to 6
/// significant digits; a mid computed from bid and ask, or a forecast, carries float noise past the 15th
/// (`18.527659999999997`). Ten digits keep every quote exact and drop the noise, identically in replay and
/// serve since the engine rounds before either writes.
pub const PRICE_DIGITS: i32 = 10;

/// Rounds prices to [`PRICE_DIGITS`] significant digits, with the scale fixed once per tick from its mid
/// (the forecasts of one tick are within a few percent of it, so one scale serves them all).
#[derive(Debug, Clone, Copy)]
pub struct PriceRounder {
    scale: f64,
}

impl PriceRounder {
    /// The rounder for prices of the order of `mid`.
    pub fn for_mid(mid: f64) -> PriceRounder {
        let scale = if mid.is_finite() && mid > 0.0 {
            // 10^(digits - 1 - floor(log10 mid)), exact as long as the exponent stays within 10^±22.
            let exp = PRICE_DIGITS - 1 - mid.log10().floor() as i32;
            10f64.powi(exp.clamp(-22, 22))
        } else {
            0.0
        };
        PriceRounder { scale }
    }

    /// `x` rounded; the division of an integer by an exact power of ten gives the double nearest the
    /// decimal, whose shortest form has at most [`PRICE_DIGITS`] digits.
    pub fn round(self, x: f64) -> f64 {
        if self.scale == 0.0 || !x.is_finite() {
            return x;
        }
        let r = (x * self.scale).round() / self.scale;
        if r.is_finite() { r } else { x }
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
