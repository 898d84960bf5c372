//! The pure core: one [`Engine`] per pair turns ticks into forecasts, quarantine records, quality changes,
//! alarms and adaptations, written into an output buffer.
//!
//! No I/O, no clock, no async: time comes from tick timestamps, so live serving and replay, which both call
//! [`Engine::on_tick`], produce bit-identical outputs for the same input. Per accepted tick the order is
//! fixed: realise due forecasts (score, then learn: predict-then-learn), update the filters, forecast.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use nalgebra::SVector;

use serde::Serialize;

pub mod config;
mod explain;
mod handover;

use crate::drift::{Alarm, DriftState, ShockDetector, Signal, SignalMonitor};
use crate::eval::{HorizonScore, HorizonSummary, Realised, ScoreSums};
use crate::forecast::combine::SignalWeight;
use crate::forecast::fastexp;
use crate::forecast::features::{FeatureState, N_FEATURES};
use crate::forecast::interval::{AdaptiveQuantile, SidedInterval};
use crate::forecast::{DriftStatus, Forecast, HorizonForecast, ModelId, ModelStamp, WARMUP_SCORED};
use crate::horizon::Horizon;
use crate::model::{
    AsymVol, EtsFit, EwmaVol, EwmaVolConfig, LocalLevel, ModelError, ModelKind, Rls, RlsConfig, RlsInit, VolDecay,
};
use crate::quality::{Dimension, Flags, MoveJudge, QualityReport, QuarantineReason, Status, Validator, Verdict};
use crate::tick::{Factor, Pair, Source, Tick};
use crate::time::format_ts;
pub use config::{EngineConfig, ModelConfig, SignalDetectors, ets_engine_config};

/// A tick that never reached the model, with its reason (subject `fx.quarantine.<PAIR>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "quarantined")]
pub struct Quarantined {
    /// The pair (the subject's or the replayed one).
    pub pair: Pair,
    /// The tick's time, when it could be read (RFC 3339).
    pub ts: Option<String>,
    /// The tick's sequence number, when it could be read.
    pub seq: Option<u64>,
    /// The tick's source, when it could be read.
    pub source: Option<Source>,
    /// Why.
    pub reason: QuarantineReason,
    /// Why, for a person: the field and value at fault and what was expected.
    pub detail: String,
    /// The bid as read, for a tick that was parsed (a reviewer judges the refused price itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid: Option<f64>,
    /// The ask as read, for a tick that was parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ask: Option<f64>,
    /// The single rate as read, for a parsed tick quoted with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mid: Option<f64>,
    /// The raw payload when the tick could not be parsed, so nothing is lost.
    pub raw: Option<String>,
}

/// A drift alarm of a pair (subject `fx.alert.<PAIR>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "alarm")]
pub struct PairAlarm {
    /// The pair.
    pub pair: Pair,
    /// The alarm: detector, signal, time, statistic and threshold.
    #[serde(flatten)]
    pub alarm: Alarm,
    /// The time as RFC 3339.
    pub ts: String,
}

/// The model changed how it learns because of a drift alarm.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "adapted")]
pub struct Adaptation {
    /// The pair.
    pub pair: Pair,
    /// When (RFC 3339).
    pub ts: String,
    /// The detector whose alarm triggered it.
    pub trigger: String,
    /// The forgetting factor now in force.
    pub forgetting: f64,
    /// Accepted ticks it lasts.
    pub ticks: u64,
}

/// A quality dimension's status changed (subject `fx.quality.<PAIR>`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "quality_changed")]
pub struct QualityChange {
    /// The pair.
    pub pair: Pair,
    /// The time of the tick that changed it (RFC 3339), when known.
    pub ts: Option<String>,
    /// The scores now.
    #[serde(flatten)]
    pub report: QualityReport,
}

/// Everything the engine emits. Each message carries its own `"type"` tag (`forecast`, `quarantined`,
/// `alarm`, `quality_changed`, `adapted`), so it reads the same on its own subject as in a replay's output
/// file.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// One per accepted tick.
    Forecast(Forecast),
    /// One per rejected tick.
    Quarantined(Quarantined),
    /// A drift alarm.
    Alarm(PairAlarm),
    /// A quality dimension's status changed.
    QualityChanged(QualityChange),
    /// The model adapted to a drift alarm.
    Adapted(Adaptation),
}

/// When a pending forecast is realised.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
enum Due {
    /// At this accepted-tick index.
    Step(u64),
    /// At the first accepted tick at or after this time (µs).
    Time(i64),
}

/// A forecast waiting for its horizon.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
struct Pending {
    due: Due,
    origin_log_mid: f64,
    origin_mid: f64,
    x: [f64; N_FEATURES],
    /// Standard deviation of the horizon's log-return at forecast time.
    sigma: f64,
    /// The RLS's standardized prediction.
    p: f64,
    /// The standardized mean shift published (`c·p`, bounded).
    shift: f64,
    /// mean, lo80, hi80, lo95, hi95.
    f: [f64; 5],
    /// Standard deviation of the horizon's log-return that scaled the interval ([`AsymVol`]); 0 in a
    /// forecast restored from a format-2 checkpoint, whose interval was scaled by `sigma`.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    isigma: f64,
}

/// Per-horizon model, calibration and score.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
struct HorizonState {
    horizon: Horizon,
    rls: Rls<N_FEATURES>,
    weight: SignalWeight,
    /// The symmetric multipliers of format 2, kept in place for the checkpoint's positional layout; the
    /// intervals now come from `sides`.
    q80: AdaptiveQuantile,
    q95: AdaptiveQuantile,
    score: HorizonScore,
    pending: VecDeque<Pending>,
    last_registered_us: Option<i64>,
    /// The four interval bounds, each calibrated on its own side (fresh in an engine restored from a
    /// format-2 checkpoint).
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    sides: SidedInterval,
}

impl HorizonState {
    /// The forecast from features `xv` for an observation `mid`, with `sigma` the RiskMetrics standard
    /// deviation of the horizon's log-return (the unit of the regression and of the mean shift) and
    /// `isigma` the interval's ([`AsymVol`]): the regression's clamped prediction, the shift from the
    /// random walk (in `sigma`s) and `[mean, lo80, hi80, lo95, hi95]`.
    fn predict(&self, xv: &SVector<f64, N_FEATURES>, sigma: f64, isigma: f64, mid: f64) -> (f64, f64, [f64; 5]) {
        let p = self.rls.predict(xv);
        let p = if p.is_finite() {
            p.clamp(-MAX_SIGNAL, MAX_SIGNAL)
        } else {
            0.0
        };
        let c = self.weight.weight();
        // An exchange-rate forecast that departs from the random walk by more than half a standard
        // deviation of the horizon's return is not credible, whatever the regression says.
        let shift = (c * p).clamp(-MAX_SHIFT, MAX_SHIFT);
        let m = shift * sigma;
        let [lo80, hi80, lo95, hi95] = self.sides.multipliers();
        // Each bound on its own side of the mean, in log space.
        let mean = mid * fastexp::exp(m);
        let mut f = [
            mean,
            mean * fastexp::exp(-lo80 * isigma),
            mean * fastexp::exp(hi80 * isigma),
            mean * fastexp::exp(-lo95 * isigma),
            mean * fastexp::exp(hi95 * isigma),
        ];
        if f.iter().any(|v| !v.is_finite()) {
            // Unreachable with in-range prices; the last guard so that no NaN or inf is ever published.
            f = f.map(|v| if v.is_finite() { v } else { mid });
        }
        (p, shift, f)
    }

    /// The published entry of a forecast made by [`HorizonState::predict`].
    fn entry(&self, f: &[f64; 5]) -> HorizonForecast {
        HorizonForecast {
            horizon: self.horizon,
            mean: f[0],
            lo80: f[1],
            hi80: f[2],
            lo95: f[3],
            hi95: f[4],
            warming_up: self.score.n < WARMUP_SCORED,
        }
    }

    /// Weight of one realised forecast in the interval updates: 1/n for an n-step
    /// horizon; for a time horizon, 1/n for the `n` observations it spans on average (`mean_dt_secs`
    /// apart), at least [`TIME_HORIZON_WEIGHT`] and at most 1. On daily fixings `1w` spans about five
    /// observations and learns like `5step` (at the constant alone its 80% interval, starting from the
    /// Gaussian quantile, took most of 19 years to converge and over-covered by 1.4 points); on ticks a
    /// time horizon spans far more than 16 observations and the constant applies.
    fn learning_weight(&self, mean_dt_secs: f64) -> f64 {
        self.overlap_weight(mean_dt_secs, 1.0 / TIME_HORIZON_WEIGHT)
    }

    /// Weight of one realised forecast in the signal weight: one over the number of forecasts that
    /// overlap it, so that each horizon period counts once as evidence for the signal. For a time horizon
    /// that is the observations it spans on average, at most `max_pending` (forecasts are registered at
    /// most that often per horizon). [`HorizonState::learning_weight`] caps the count at 16 instead,
    /// which keeps the intervals learning on fast streams but counted each 1h period on ticks 32 times as
    /// evidence for the signal: its in-sample weight then kept a positive bias, and the 1m and 1h means
    /// did 0.4% and 0.1% worse than the random walk on EUR/USD ticks.
    fn evidence_weight(&self, mean_dt_secs: f64, max_pending: usize) -> f64 {
        self.overlap_weight(mean_dt_secs, max_pending as f64)
    }

    /// One over the observations a horizon spans (`mean_dt_secs` apart), at most `max_overlap` of them,
    /// at least one.
    fn overlap_weight(&self, mean_dt_secs: f64, max_overlap: f64) -> f64 {
        let floor = 1.0 / max_overlap.max(1.0);
        match self.horizon {
            Horizon::Steps(n) => 1.0 / n as f64,
            Horizon::Time { us } if mean_dt_secs > 0.0 => {
                let w = mean_dt_secs * 1e6 / us as f64;
                if w.is_finite() { w.clamp(floor, 1.0) } else { floor }
            }
            Horizon::Time { .. } => floor,
        }
    }
}

/// Why an engine could not be built: its configuration is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EngineError {
    /// A configuration value is out of range.
    #[error("invalid engine configuration: {0}")]
    Config(String),
    /// A model rejected its settings.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A drift detector rejected its settings.
    #[error(transparent)]
    Drift(#[from] crate::drift::DriftError),
}

/// A pair's engine state and counters.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Engine {
    pair: Pair,
    model_id: Arc<ModelId>,
    cfg: EngineConfig,
    validator: Validator,
    kalman: LocalLevel,
    vol: EwmaVol,
    features: FeatureState,
    horizons: Vec<HorizonState>,
    monitors: Vec<SignalMonitor>,
    ticks: u64,
    accepted: u64,
    #[serde(serialize_with = "crate::evolve::counts::serialize", deserialize_with = "reasons_v2")]
    quarantined: [u64; QuarantineReason::ALL.len()],
    last_log_mid: Option<f64>,
    last_ts_us: Option<i64>,
    mean_dt_secs: f64,
    adapting_until: Option<u64>,
    adaptations: u64,
    alarms_total: u64,
    rate_differential: f64,
    factors: Vec<(String, f64)>,
    #[serde(
        serialize_with = "crate::evolve::counts::serialize",
        deserialize_with = "dimensions_v2"
    )]
    quality_worst: [Status; Dimension::ALL.len()],
    /// The shock detector on accepted returns, which also confirms fast moves for the validator. Added in
    /// format 3: an older record restores a fresh one (the configuration it reads is the default too).
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    shock: ShockDetector,
    /// The volatility that scales the intervals (fresh in an engine restored from a format-2 checkpoint:
    /// the intervals fall back on `vol` until it has seen a return).
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    ivol: AsymVol,
    /// The ETS model's running copy when the configured kind is `ets` (its state moves on every accepted
    /// tick; the configuration keeps the fitted one). `None` for an online engine.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    ets: Option<EtsFit>,
    #[serde(skip)]
    alarm_buf: Vec<Alarm>,
    /// What forecasts say produced them. Not checkpointed (it is derived): made
    /// from the configuration on first use, with the registry version the service sets after a restore.
    #[serde(skip)]
    stamp: Option<Arc<ModelStamp>>,
}

/// The quarantine reasons format 2 knew (see [`crate::evolve`]).
fn reasons_v2<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u64; QuarantineReason::ALL.len()], D::Error> {
    crate::evolve::counts::deserialize::<D, u64, 14, { QuarantineReason::ALL.len() }>(d)
}

/// The dimensions format 2 knew.
fn dimensions_v2<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[Status; Dimension::ALL.len()], D::Error> {
    crate::evolve::counts::deserialize::<D, Status, 6, { Dimension::ALL.len() }>(d)
}

/// The engine's shock detector as the validator's judge of fast moves (see [`MoveJudge`]).
struct ShockJudge<'a>(&'a ShockDetector);

impl MoveJudge for ShockJudge<'_> {
    fn confirms(&self, total: f64, last_step: f64, observations: usize) -> bool {
        self.0.confirms(total, last_step, observations)
    }
}

/// The configuration's short hash: FNV-1a (32 bits) of its canonical JSON, as 8 hex digits. Stable across
/// processes and platforms (serde_json writes fields in declaration order), so replay and serve agree.
pub fn config_hash(cfg: &EngineConfig) -> String {
    let json = serde_json::to_vec(cfg).unwrap_or_default();
    let mut h: u32 = 0x811c_9dc5;
    for b in json {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// Weight of each new spacing in the average tick spacing (memory of about 200 ticks).
const DT_ALPHA: f64 = 0.005;

/// Weight of one realised time-horizon forecast in the learning of intervals and signal weight: time
/// horizons register many overlapping forecasts on fast streams (up to `max_pending`), so each counts
/// as a fraction of an independent observation.
const TIME_HORIZON_WEIGHT: f64 = 1.0 / 16.0;

/// How many times the step horizons' prior pull to the random walk a time horizon's signal weight gets.
/// On tick streams a time horizon registers a forecast every few ticks, so its realised forecasts overlap
/// and their evidence about the signal is far thinner than their count: with the step horizons' prior the
/// 1m forecast on the EUR/USD month was 0.19% worse than the random walk (RMSE ratio 1.0019), with 10
/// times the prior 1.0002, with 100 times 1.00002, while daily time horizons (`1w`) stay at 1.0000. The
/// signal still earns weight where its evidence is strong enough to outweigh the prior.
const TIME_HORIZON_PRIOR: f64 = 100.0;

/// Largest standardized prediction the RLS may contribute (in standard deviations of the target).
const MAX_SIGNAL: f64 = 3.0;

/// Largest published mean shift from the random walk, in standard deviations of the horizon's return.
const MAX_SHIFT: f64 = 0.5;

/// Most horizons per engine (checked by [`EngineConfig::validate`]).
const MAX_HORIZONS: usize = 16;

/// Most distinct factors remembered per engine (factor names come from the network: bounded).
pub const MAX_FACTORS: usize = 64;

/// The RiskMetrics interval `[lo80, hi80, lo95, hi95]` of a forecast made at `origin_mid` with `sigma` the
/// EWMA standard deviation of the horizon's log-return: Gaussian, centred on the random walk. The
/// evaluation scores it beside the published interval, so the report shows what the calibrated intervals
/// gain over the textbook ones on the same forecasts.
fn ewma_baseline(origin_mid: f64, sigma: f64) -> [f64; 4] {
    let (e80, e95) = (fastexp::exp(Z80 * sigma), fastexp::exp(Z95 * sigma));
    [origin_mid / e80, origin_mid * e80, origin_mid / e95, origin_mid * e95]
}

/// The Gaussian quantiles of the central 80% and 95% intervals.
const Z80: f64 = 1.281_551_565_544_600_5;
const Z95: f64 = 1.959_963_984_540_054;

/// The one-step volatility assumed before any return has been seen (log units): wide on purpose, so the
/// first intervals are conservative; the EWMA replaces it within a few ticks.
const PRIOR_STEP_VOL: f64 = 5e-3;

/// Most steps an ETS forecast looks ahead (a time horizon on a stream far faster than it: the count
/// only has to be finite and exact enough for the closed forms).
const MAX_ETS_STEPS: f64 = 1e9;

/// The whole number of observations an ETS forecast looks ahead for a horizon spanning `steps`
/// observations ([`Engine::horizon_steps`]: exact for a step horizon, the number of typical spacings for a
/// time horizon), rounded to the nearest, at least one.
fn ets_horizon_steps(steps: f64) -> u64 {
    if steps.is_finite() {
        steps.round().clamp(1.0, MAX_ETS_STEPS) as u64
    } else {
        1
    }
}

/// An ETS forecast `steps` observations ahead of the log mid `y` (`mid`), in the shape of
/// [`HorizonState::predict`]'s: no regression prediction (0), the mean's shift from the random walk in
/// `sigma`s (what the prediction and residual detectors watch), and `[mean, lo80, hi80, lo95, hi95]` in
/// price from the model's analytic intervals.
fn ets_predict(model: &EtsFit, steps: u64, sigma: f64, y: f64, mid: f64) -> (f64, f64, [f64; 5]) {
    let f = model.log_interval(steps).map(f64::exp);
    if f.iter().any(|v| !v.is_finite() || *v <= 0.0) {
        // Only a model far outside any exchange rate's range gets here: publish the random walk rather
        // than a NaN or an infinity.
        return (0.0, 0.0, [mid; 5]);
    }
    let shift = (f[0].ln() - y) / sigma;
    (0.0, if shift.is_finite() { shift } else { 0.0 }, f)
}

/// A pair's summary for reports and status replies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineSummary {
    /// The pair.
    pub pair: Pair,
    /// Ticks seen (accepted + quarantined); after a promotion or rollback, the position in the pair's stream
    /// ([`Engine::adopt_position`]).
    pub ticks: u64,
    /// Ticks accepted.
    pub accepted: u64,
    /// Quarantined ticks per reason (only reasons that occurred).
    pub quarantined: BTreeMap<String, u64>,
    /// Prequential metrics per horizon.
    pub horizons: Vec<HorizonSummary>,
    /// Current quality scores.
    pub quality: QualityReport,
    /// Worst status each quality dimension reached.
    pub quality_worst: BTreeMap<String, Status>,
    /// Streaming profile of each field (count, nulls, min/max, mean/variance, sketch quantiles).
    pub profile: crate::quality::ProfileReport,
    /// Drift detectors' state per signal.
    pub drift: Vec<DriftState>,
    /// Alarms raised.
    pub alarms_total: u64,
    /// Adaptations made.
    pub adaptations: u64,
    /// Current signal weight per horizon (0 = random walk).
    pub signal_weights: Vec<f64>,
}

impl Engine {
    /// A fresh engine for `pair`.
    ///
    /// # Errors
    /// [`EngineError`] when the configuration is invalid.
    pub fn new(pair: Pair, cfg: &EngineConfig) -> Result<Engine, EngineError> {
        cfg.validate().map_err(EngineError::Config)?;
        let m = &cfg.model;
        let rls_cfg = RlsConfig {
            forgetting: m.forgetting,
            init: RlsInit::Ridge { delta: m.rls_delta },
            max_trace: 1e6,
        };
        let rls = Rls::new(rls_cfg)?;
        let vol_cfg = EwmaVolConfig {
            decay: VolDecay::PerObservation { lambda: m.vol_lambda },
            max_gap_secs: 4.0 * 86_400.0,
            initial_var_per_obs: PRIOR_STEP_VOL * PRIOR_STEP_VOL,
            ..EwmaVolConfig::default()
        };
        // The volatility-shift detector undoes the engine's EWMA standardization, so it must use its λ.
        let mut drift_cfg = cfg.drift.clone();
        drift_cfg.vol_shift.params.fast_lambda = m.vol_lambda;
        let horizons = cfg
            .horizons
            .iter()
            .map(|&horizon| {
                let gamma = m.interval_gamma;
                HorizonState {
                    horizon,
                    rls: rls.clone(),
                    weight: SignalWeight::new(
                        m.weight_decay,
                        match horizon {
                            Horizon::Steps(_) => m.weight_prior,
                            Horizon::Time { .. } => m.weight_prior * TIME_HORIZON_PRIOR,
                        },
                    ),
                    q80: AdaptiveQuantile::new(0.20, 1.2816, gamma),
                    q95: AdaptiveQuantile::new(0.05, 1.96, gamma),
                    score: HorizonScore::default(),
                    pending: VecDeque::new(),
                    last_registered_us: None,
                    sides: SidedInterval::new(gamma),
                }
            })
            .collect();
        Ok(Engine {
            pair,
            model_id: Arc::new(ModelId {
                name: m.name.clone(),
                version: m.version.clone(),
            }),
            validator: Validator::new(&cfg.quality),
            kalman: LocalLevel::new(m.kalman)?,
            vol: EwmaVol::new(vol_cfg)?,
            features: FeatureState::default(),
            horizons,
            monitors: vec![
                SignalMonitor::new(Signal::Input, &drift_cfg.restricted_to(&cfg.signals.input))?,
                SignalMonitor::new(Signal::Prediction, &drift_cfg.restricted_to(&cfg.signals.prediction))?,
                SignalMonitor::new(Signal::Residual, &drift_cfg.restricted_to(&cfg.signals.residual))?,
            ],
            ticks: 0,
            accepted: 0,
            quarantined: [0; QuarantineReason::ALL.len()],
            last_log_mid: None,
            last_ts_us: None,
            mean_dt_secs: 0.0,
            adapting_until: None,
            adaptations: 0,
            alarms_total: 0,
            rate_differential: 0.0,
            factors: Vec::new(),
            quality_worst: [Status::Ok; Dimension::ALL.len()],
            shock: ShockDetector::new(&cfg.drift.shock),
            ivol: AsymVol::default(),
            ets: match m.kind {
                ModelKind::Online => None,
                ModelKind::Ets => m.ets.clone(),
            },
            alarm_buf: Vec::new(),
            stamp: None,
            cfg: cfg.clone(),
        })
    }
    /// Checks that a decoded engine has the shape its own configuration gives (a valid configuration, one
    /// horizon state per configured horizon, the three monitored signals in order, at most
    /// [`MAX_FACTORS`] factors), so a checkpoint written wrong is refused at restore instead of failing on
    /// the next tick. The checksum of a checkpoint catches damage, not a payload built wrong.
    ///
    /// # Errors
    /// What is inconsistent, in words.
    pub fn check_restored(&self) -> Result<(), String> {
        self.cfg
            .validate()
            .map_err(|e| format!("its configuration is invalid: {e}"))?;
        let configured: Vec<Horizon> = self.horizons.iter().map(|h| h.horizon).collect();
        if configured != self.cfg.horizons {
            return Err(format!(
                "{} horizon states for {} configured horizons",
                self.horizons.len(),
                self.cfg.horizons.len()
            ));
        }
        let signals: Vec<Signal> = self.monitors.iter().map(SignalMonitor::signal).collect();
        if signals != [Signal::Input, Signal::Prediction, Signal::Residual] {
            return Err(format!(
                "{} drift monitors where there are 3 signals",
                self.monitors.len()
            ));
        }
        if self.factors.len() > MAX_FACTORS {
            return Err(format!("{} factors (at most {MAX_FACTORS})", self.factors.len()));
        }
        match (self.cfg.model.kind, &self.ets) {
            (ModelKind::Online, None) => {}
            (ModelKind::Ets, Some(fit)) => fit.check().map_err(|e| format!("its ETS model is invalid: {e}"))?,
            (ModelKind::Ets, None) => return Err("an ETS engine without its ETS model".into()),
            (ModelKind::Online, Some(_)) => return Err("an online engine with an ETS model".into()),
        }
        Ok(())
    }

    /// The pair this engine serves.
    pub fn pair(&self) -> Pair {
        self.pair
    }

    /// The model's name and configured release label (checkpointed with the engine).
    pub fn model_id(&self) -> &ModelId {
        &self.model_id
    }

    /// What this engine's forecasts say produced them: name, registry version, configuration hash.
    pub fn model_stamp(&self) -> ModelStamp {
        match &self.stamp {
            Some(s) => (**s).clone(),
            None => self.new_stamp(0),
        }
    }

    /// Records that this model was loaded from the registry's `version` (a restore, a rollback to a stored
    /// version, a promoted stored version): its forecasts carry that number from now on.
    pub fn set_registry_version(&mut self, version: u64) {
        self.stamp = Some(Arc::new(self.new_stamp(version)));
    }

    fn new_stamp(&self, version: u64) -> ModelStamp {
        ModelStamp {
            name: self.model_id.name.clone(),
            version,
            config: config_hash(&self.cfg),
            kind: match self.cfg.model.kind {
                ModelKind::Online => None,
                kind => Some(kind),
            },
        }
    }

    fn stamp(&mut self) -> Arc<ModelStamp> {
        match &self.stamp {
            Some(s) => Arc::clone(s),
            None => {
                let s = Arc::new(self.new_stamp(0));
                self.stamp = Some(Arc::clone(&s));
                s
            }
        }
    }

    /// Ticks seen so far (accepted and quarantined): the position of the next tick in this pair's stream,
    /// which the service uses to name forecasts for de-duplication.
    pub fn ticks(&self) -> u64 {
        self.ticks
    }

    /// Ticks accepted so far: step horizons count them, so a caller can tell when forecasts made before a
    /// moment have all been realised.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Takes over the stream position (see [`Engine::ticks`]) of the live engine this one replaces: a
    /// promoted challenger may have started later than the champion, and a rolled-back copy missed the
    /// ticks since it was taken, yet the service names forecasts by position, so the position must never
    /// go back or a new forecast would reuse an old one's de-duplication id. Only the counter moves: the
    /// accepted and quarantined counts stay this engine's own.
    pub fn adopt_position(&mut self, ticks: u64) {
        self.ticks = self.ticks.max(ticks);
    }

    /// The timestamp of the last accepted tick (µs), recorded in checkpoint metadata.
    pub fn last_ts_us(&self) -> Option<i64> {
        self.last_ts_us
    }

    /// The configuration this engine was built with: a promoted challenger brings its own, and the
    /// service reports which one is live.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Each configured horizon with its running accuracy sums, for accuracy over a window of tick time
    /// (the service's metrics difference two snapshots; the engine keeps no history for it).
    pub fn accuracy_sums(&self) -> impl Iterator<Item = (Horizon, crate::eval::AccuracySums)> + '_ {
        self.horizons.iter().map(|h| (h.horizon, h.score.accuracy_sums()))
    }

    /// The position of `horizon` among this engine's configured horizons (the index of its metrics in
    /// [`EngineSummary::horizons`] and of [`Engine::scored`]); `None` when it is not configured.
    pub fn horizon_index(&self, horizon: Horizon) -> Option<usize> {
        self.horizons.iter().position(|h| h.horizon == horizon)
    }

    /// The running squared-error sums of the horizon at `index` (see [`Engine::horizon_index`]), so a
    /// caller can score a window of forecasts as the difference of two snapshots (champion/challenger,
    /// rollback guard) without the engine keeping any history; `None` for an index out of range.
    pub fn scored(&self, index: usize) -> Option<ScoreSums> {
        self.horizons.get(index).map(|h| h.score.sums())
    }

    /// Processes one parsed tick, appending what it produced to `out`.
    pub fn on_tick(&mut self, tick: &Tick, out: &mut Vec<Output>) {
        self.ticks += 1;
        match self.validator.check_judged(tick, &ShockJudge(&self.shock)) {
            Verdict::Quarantine(reason) => {
                self.quarantined[reason.index()] += 1;
                let detail = explain::explain(reason, tick, &self.cfg.quality, self.validator.watermark_us());
                out.push(Output::Quarantined(Quarantined {
                    pair: self.pair,
                    ts: Some(format_ts(tick.ts_us)),
                    seq: tick.seq,
                    source: Some(tick.source),
                    reason,
                    detail,
                    bid: tick.bid,
                    ask: tick.ask,
                    mid: tick.mid,
                    raw: None,
                }));
            }
            Verdict::Accept { mid, flags } => self.accept(tick, mid, flags, out),
        }
        self.quality_transitions(out);
    }

    /// Counts a payload that could not be parsed into a tick (malformed, wrong pair), keeping its raw text
    /// and what was wrong with it (`detail`).
    pub fn on_rejected(
        &mut self,
        reason: QuarantineReason,
        detail: String,
        ts_us: Option<i64>,
        raw: String,
        out: &mut Vec<Output>,
    ) {
        self.ticks += 1;
        self.quarantined[reason.index()] += 1;
        self.validator.record_rejected(ts_us, reason);
        out.push(Output::Quarantined(Quarantined {
            pair: self.pair,
            ts: ts_us.map(format_ts),
            seq: None,
            source: None,
            reason,
            detail,
            bid: None,
            ask: None,
            mid: None,
            raw: Some(raw),
        }));
        self.quality_transitions(out);
    }

    /// Records a factor observation; the model joins the latest value of each factor as of each tick.
    pub fn on_factor(&mut self, factor: &Factor) {
        if !factor.value.is_finite() {
            return;
        }
        self.validator.on_factor(&factor.name, factor.ts_us);
        if let Some(slot) = self.factors.iter_mut().find(|(n, _)| *n == factor.name) {
            slot.1 = factor.value;
        } else if self.factors.len() < MAX_FACTORS {
            self.factors.push((factor.name.clone(), factor.value));
        } else {
            return;
        }
        let get = |name: &Option<String>| {
            name.as_ref()
                .and_then(|n| self.factors.iter().find(|(f, _)| f == n))
                .map(|(_, v)| *v)
        };
        if let (Some(d), Some(f)) = (get(&self.cfg.model.domestic_rate), get(&self.cfg.model.foreign_rate)) {
            self.rate_differential = d - f;
        }
    }

    fn quality_transitions(&mut self, out: &mut Vec<Output>) {
        if self.validator.take_status_change() {
            for (w, s) in self.quality_worst.iter_mut().zip(self.validator.statuses()) {
                *w = (*w).max(s);
            }
            out.push(Output::QualityChanged(QualityChange {
                pair: self.pair,
                ts: self.validator.watermark_us().map(format_ts),
                report: self.validator.scores(),
            }));
        }
    }

    fn step_sigma(&self) -> f64 {
        let s = self.vol.var_per_obs().sqrt();
        if s.is_finite() && s > 0.0 { s } else { PRIOR_STEP_VOL }
    }

    /// The number of observations a horizon spans. For a time horizon it comes from the average spacing
    /// of accepted ticks (weekends included), so `1w` on business-day fixings is about five steps and `1m`
    /// on one-second ticks sixty; the adaptive bounds correct what this misses.
    fn horizon_steps(&self, h: Horizon) -> f64 {
        match h {
            Horizon::Steps(n) => n as f64,
            Horizon::Time { us } if self.mean_dt_secs > 0.0 => (us as f64 / 1e6 / self.mean_dt_secs).max(1.0),
            Horizon::Time { .. } => 1.0,
        }
    }

    /// The standard deviations of the log-return to a horizon: the RiskMetrics one (the EWMA
    /// per-observation variance `var_obs` times the number of observations the horizon spans), the unit of
    /// the regression target, of the mean shift and of the EWMA baseline the evaluation scores intervals
    /// against; and the one that scales the interval ([`AsymVol`]'s variance `ivar`, the same way), the
    /// RiskMetrics one until it has seen a return. The variances are passed in, worked out once per tick.
    fn horizon_sigmas(&self, h: Horizon, var_obs: f64, ivar: Option<f64>) -> (f64, f64) {
        let steps = self.horizon_steps(h);
        let s = (var_obs * steps).sqrt();
        let sigma = if s.is_finite() && s > 0.0 { s } else { PRIOR_STEP_VOL };
        let isigma = match ivar {
            Some(v) => {
                let s = (v * steps).sqrt();
                if s.is_finite() && s > 0.0 { s } else { sigma }
            }
            None => sigma,
        };
        (sigma, isigma)
    }

    fn accept(&mut self, tick: &Tick, mid: f64, flags: Flags, out: &mut Vec<Output>) {
        let ts = tick.ts_us;
        let y = mid.ln();
        let step_sigma = self.step_sigma();
        let index = self.accepted;
        self.accepted += 1;
        self.alarm_buf.clear();
        // A repeated quote (a new sequence number, nothing else new) is still an observation: it realises
        // the forecasts due at it and gets its own forecast, so the output and the evaluation stay one
        // forecast per accepted tick. But its zero return carries no information: learning from a run of
        // them would shrink the volatility and feed the detectors zeros until the next real move looked
        // like a shock. The models learn only from ticks that bring a price.
        let learn = !flags.contains(Flags::UNCHANGED);

        // 1. Realise due forecasts: score them, then learn from them (predict-then-learn).
        let ets = self.ets.is_some();
        let mean_dt_secs = self.mean_dt_secs;
        let max_pending = self.cfg.max_pending;
        for (k, h) in self.horizons.iter_mut().enumerate() {
            while let Some(p) = h.pending.front() {
                let due = match p.due {
                    Due::Step(i) => index >= i,
                    Due::Time(t) => ts >= t,
                };
                if !due {
                    break;
                }
                let Some(p) = h.pending.pop_front() else { break };
                h.score.record(&Realised {
                    origin_mid: p.origin_mid,
                    mean: p.f[0],
                    lo80: p.f[1],
                    hi80: p.f[2],
                    lo95: p.f[3],
                    hi95: p.f[4],
                    actual: mid,
                    ewma: ewma_baseline(p.origin_mid, p.sigma),
                });
                if !learn {
                    continue;
                }
                let y_std = (y - p.origin_log_mid) / p.sigma;
                if ets {
                    // The ETS model learns only by filtering (step 2); its forecasts' residuals still feed
                    // the residual detectors, in the same unit.
                    if k == 0 {
                        self.monitors[2].update(ts, y_std - p.shift, &mut self.alarm_buf);
                    }
                    continue;
                }
                h.rls.update(&SVector::from(p.x), y_std.clamp(-10.0, 10.0));
                // Overlapping forecasts' errors cluster, so each counts less. The weight must not depend on
                // the current number pending: busy periods (many pending) are when misses happen, and
                // down-weighting them would bias coverage low. It is 1/n for an n-step horizon and a
                // constant for a time horizon.
                let weight = h.learning_weight(mean_dt_secs);
                h.weight
                    .update(p.p, y_std, h.evidence_weight(mean_dt_secs, max_pending));
                let isigma = if p.isigma > 0.0 { p.isigma } else { p.sigma };
                h.sides
                    .update((y - p.origin_log_mid - p.shift * p.sigma) / isigma, weight);
                if k == 0 {
                    self.monitors[2].update(ts, y_std - p.shift, &mut self.alarm_buf);
                }
            }
        }

        // 2. Update the filters with this observation.
        let ret = self.last_log_mid.filter(|_| learn).map(|prev| y - prev);
        if let Some(last) = self.last_ts_us.filter(|_| learn) {
            let dt = ts.saturating_sub(last).max(0) as f64 / 1e6;
            self.mean_dt_secs = if self.mean_dt_secs > 0.0 {
                self.mean_dt_secs + DT_ALPHA * (dt - self.mean_dt_secs)
            } else {
                dt
            };
        }
        self.last_ts_us = Some(ts);
        if learn {
            self.kalman.update(ts, y);
        }
        // The ETS model filters every accepted tick, a repeated quote included: it was fitted on the
        // series of accepted mids, one observation per accepted tick, as its step horizons count them.
        if let Some(model) = &mut self.ets {
            model.update(y);
        }
        if let Some(r) = ret {
            let z = r / step_sigma;
            let before = self.alarm_buf.len();
            self.shock.update(ts, r, &mut self.alarm_buf);
            let shocked = self.alarm_buf.len() > before;
            if flags.contains(Flags::REANCHORED) && z.abs() >= self.cfg.signals.level_shift_min_sigmas && !shocked {
                // The validator re-anchored on a new level after consecutive outliers agreed: a level
                // shift, reported as an alarm of the input signal with its size in one-step sigmas,
                // unless the shock detector has just reported the same move (one move, one alarm).
                self.alarm_buf.push(Alarm {
                    detector: "level_shift",
                    signal: Signal::Input,
                    ts_us: ts,
                    statistic: z.abs(),
                    threshold: self.cfg.signals.level_shift_min_sigmas,
                });
            }
            self.vol.update(ts, r);
            self.ivol.update(r);
            self.features.update(z);
            self.monitors[0].update(ts, z, &mut self.alarm_buf);
        }
        self.last_log_mid = Some(y);

        // 3. Forecast every horizon and register it for scoring.
        let gap = (self.kalman.level() - y) / self.step_sigma();
        let x = self.features.vector(gap, self.rate_differential);
        let xv = SVector::from(x);
        let mut fc = Vec::with_capacity(self.horizons.len());
        let max_pending = self.cfg.max_pending;
        let mut sigmas = [(0.0, 0.0); MAX_HORIZONS];
        let (var_obs, ivar) = (self.vol.var_per_obs(), self.ivol.var_per_obs());
        for (s, h) in sigmas.iter_mut().zip(&self.horizons) {
            *s = self.horizon_sigmas(h.horizon, var_obs, ivar);
        }
        let mut first_pred = 0.0;
        let mut ets_steps = [0u64; MAX_HORIZONS];
        if self.ets.is_some() {
            for (s, h) in ets_steps.iter_mut().zip(&self.horizons) {
                *s = ets_horizon_steps(self.horizon_steps(h.horizon));
            }
        }
        for (k, (h, &(sigma, isigma))) in self.horizons.iter_mut().zip(&sigmas).enumerate() {
            let (p, shift, f) = match &self.ets {
                None => h.predict(&xv, sigma, isigma, mid),
                Some(model) => ets_predict(model, ets_steps[k], sigma, y, mid),
            };
            if k == 0 {
                first_pred = shift;
            }
            fc.push(h.entry(&f));
            let due = match h.horizon {
                Horizon::Steps(n) => Some(Due::Step(index + n as u64)),
                Horizon::Time { us } => {
                    let spacing = us / max_pending as i64;
                    // Saturating: a tick dated near the end of `i64` time must not overflow; such a
                    // forecast is simply never due.
                    let free = h
                        .last_registered_us
                        .is_none_or(|last| ts.saturating_sub(last) >= spacing);
                    (free && h.pending.len() < max_pending + 1).then_some(Due::Time(ts.saturating_add(us)))
                }
            };
            if let Some(due) = due {
                h.last_registered_us = Some(ts);
                h.pending.push_back(Pending {
                    due,
                    origin_log_mid: y,
                    origin_mid: mid,
                    x,
                    sigma,
                    p,
                    shift,
                    f,
                    isigma,
                });
            }
        }
        if learn {
            self.monitors[1].update(ts, first_pred, &mut self.alarm_buf);
        }

        // 4. Alarms, and adaptation to residual drift.
        self.handle_alarms(ts, out);
        if self.adapting_until.is_some_and(|until| self.accepted >= until) {
            self.adapting_until = None;
            for h in &mut self.horizons {
                let _ = h.rls.set_forgetting(self.cfg.model.forgetting);
            }
        }

        let warming_up = fc.iter().any(|h| h.warming_up);
        let model = self.stamp();
        out.push(Output::Forecast(Forecast {
            pair: self.pair,
            ts_us: ts,
            seq: tick.seq,
            mid,
            horizons: fc,
            model,
            warming_up,
            quality: self.validator.overall_status(),
            flags,
            drift: if self.adapting_until.is_some() {
                DriftStatus::Adapting
            } else {
                DriftStatus::Stable
            },
        }));
    }

    fn handle_alarms(&mut self, ts: i64, out: &mut Vec<Output>) {
        let mut adapt_trigger = None;
        for alarm in self.alarm_buf.drain(..) {
            self.alarms_total += 1;
            if alarm.signal == Signal::Residual && adapt_trigger.is_none() {
                adapt_trigger = Some(alarm.detector.to_string());
            }
            out.push(Output::Alarm(PairAlarm {
                pair: self.pair,
                ts: format_ts(alarm.ts_us),
                alarm,
            }));
        }
        if let Some(trigger) = adapt_trigger {
            let m = &self.cfg.model;
            for h in &mut self.horizons {
                let _ = h.rls.set_forgetting(m.adapt_forgetting);
            }
            self.adapting_until = Some(self.accepted + m.adapt_ticks);
            self.adaptations += 1;
            out.push(Output::Adapted(Adaptation {
                pair: self.pair,
                ts: format_ts(ts),
                trigger,
                forgetting: m.adapt_forgetting,
                ticks: m.adapt_ticks,
            }));
        }
    }

    /// A summary of counters, metrics, quality and drift.
    pub fn summary(&self) -> EngineSummary {
        EngineSummary {
            pair: self.pair,
            ticks: self.ticks,
            accepted: self.accepted,
            quarantined: QuarantineReason::ALL
                .iter()
                .filter(|r| self.quarantined[r.index()] > 0)
                .map(|r| (r.name().to_string(), self.quarantined[r.index()]))
                .collect(),
            horizons: self
                .horizons
                .iter()
                .map(|h| h.score.summary(&h.horizon.to_string()))
                .collect(),
            quality: self.validator.scores(),
            quality_worst: Dimension::ALL
                .iter()
                .map(|d| (d.name().to_string(), self.quality_worst[d.index()]))
                .collect(),
            profile: self.validator.profile().report(),
            drift: self.monitors.iter().map(|m| m.state()).collect(),
            alarms_total: self.alarms_total,
            adaptations: self.adaptations,
            signal_weights: self.horizons.iter().map(|h| h.weight.weight()).collect(),
        }
    }
}
