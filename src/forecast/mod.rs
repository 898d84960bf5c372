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
}

/// Which model produced a forecast: name and version, shared by every forecast of an engine.
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

/// One forecast, published for every accepted tick (subject `fx.pred.<PAIR>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    pub model: Arc<ModelId>,
    /// The tick's quality: overall status of the pair's windowed scores.
    pub quality: crate::quality::Status,
    /// Quality flags raised on this tick (accepted with flags).
    pub flags: crate::quality::Flags,
    /// Drift state.
    pub drift: DriftStatus,
}
