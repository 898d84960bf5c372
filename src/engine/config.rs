//! The engine's configuration (`[engine]`): serde types with defaults for everything, so an empty table is a
//! working configuration, and unknown keys are errors (a typo must not silently fall back to a default).

use serde::{Deserialize, Serialize};

use crate::drift::{DetectorId, DriftConfig};
use crate::horizon::Horizon;
use crate::model::{EtsFit, ModelKind};
use crate::quality::QualityConfig;

/// Model settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Published model name.
    pub name: String,
    /// Published model version.
    pub version: String,
    /// RLS forgetting factor in normal times (effective memory ≈ 1/(1-λ) realised forecasts).
    pub forgetting: f64,
    /// RLS forgetting factor while adapting after a residual drift alarm.
    pub adapt_forgetting: f64,
    /// Accepted ticks the faster forgetting lasts after an alarm.
    pub adapt_ticks: u64,
    /// RLS initial precision `δ` (P₀ = I/δ): small means vague prior weights.
    pub rls_delta: f64,
    /// EWMA decay of the volatility per observation (RiskMetrics uses 0.94 for daily data).
    pub vol_lambda: f64,
    /// Decay per realised forecast of the signal-weight sums (memory ≈ 1/(1-decay)).
    pub weight_decay: f64,
    /// Prior weight pulling the signal weight to zero (the random walk).
    pub weight_prior: f64,
    /// Learning rate of the adaptive 80% interval bounds; the 95% bounds learn at a tenth of it
    /// ([`crate::forecast::interval::SidedInterval`]).
    pub interval_gamma: f64,
    /// Kalman local-level filter settings.
    pub kalman: crate::model::LocalLevelConfig,
    /// Name of the domestic policy-rate factor (e.g. `BANXICO_RATE` or `TIIE28`), for the carry feature.
    pub domestic_rate: Option<String>,
    /// Name of the foreign policy-rate factor (e.g. `FED_FUNDS`).
    pub foreign_rate: Option<String>,
    /// Which model makes the published forecasts: `online` (the default: Kalman level, RLS signal,
    /// adaptive intervals) or `ets` (the batch-fitted exponential smoothing model in `ets`). Validation,
    /// quality, drift and evaluation are the same for both.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    pub kind: ModelKind,
    /// The fitted ETS model that `kind = "ets"` runs (`[engine.model.ets]`): form, parameters, residual
    /// variance and the state to start from. Configuration, not state: it is what the batch path
    /// produced, so it is part of the version's lineage and of the configuration hash every forecast
    /// carries, and a refit is a new configuration. The engine filters its own copy from this state.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    pub ets: Option<EtsFit>,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            name: "cambio-kalman-rls".into(),
            version: "1".into(),
            forgetting: 0.999,
            adapt_forgetting: 0.98,
            adapt_ticks: 250,
            rls_delta: 1.0,
            vol_lambda: 0.94,
            weight_decay: 0.999,
            weight_prior: 30.0,
            interval_gamma: crate::forecast::interval::DEFAULT_GAMMA,
            kalman: Default::default(),
            domestic_rate: None,
            foreign_rate: None,
            kind: ModelKind::Online,
            ets: None,
        }
    }
}

/// Which detectors watch which signal. Inputs get the full set; predictions the two cheap level tests
/// (CUSUM and Page-Hinkley: a forecast's mean shift is small and smooth, ADWIN adds nothing there for
/// its cost); residuals the level and structural-break tests (their volatility is the input's, so a
/// volatility test there would only repeat the input's alarm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignalDetectors {
    /// Standardized returns.
    pub input: Vec<DetectorId>,
    /// The standardized mean shift published for the first horizon.
    pub prediction: Vec<DetectorId>,
    /// Standardized errors of the first horizon when realised.
    pub residual: Vec<DetectorId>,
    /// A re-anchoring of the validator on a new level raises a `level_shift` alarm when the move is at
    /// least this many one-step sigmas. Default 100: in a heavy-tailed, volatility-clustered calm random
    /// walk the validator re-anchors on a few 30–60 sigma moves per million ticks, which are noise.
    pub level_shift_min_sigmas: f64,
}

impl Default for SignalDetectors {
    fn default() -> Self {
        use DetectorId::*;
        SignalDetectors {
            input: vec![LevelCusum, VolShift, Adwin, PageHinkley, Psi, Ks, Wasserstein],
            prediction: vec![LevelCusum, PageHinkley],
            residual: vec![LevelCusum, Adwin, RecursiveCusum, RecursiveCusumOfSquares],
            level_shift_min_sigmas: 100.0,
        }
    }
}

/// Everything one pair's engine needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineConfig {
    /// Forecast horizons, e.g. `["1step", "5step", "1h", "1d"]`.
    pub horizons: Vec<Horizon>,
    /// Most forecasts awaiting realisation per time horizon. Beyond it, forecasts are registered for
    /// scoring at most every `horizon / max_pending`, so memory stays bounded on fast streams (every
    /// forecast is still published).
    pub max_pending: usize,
    /// Model settings.
    pub model: ModelConfig,
    /// Data-quality checks and thresholds.
    pub quality: QualityConfig,
    /// Drift detectors' parameters (shared by every signal).
    pub drift: DriftConfig,
    /// Which detectors run on which signal.
    pub signals: SignalDetectors,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            horizons: ["1step", "5step", "1h", "1d"]
                .iter()
                .filter_map(|h| h.parse().ok())
                .collect(),
            max_pending: 512,
            model: ModelConfig::default(),
            quality: QualityConfig::default(),
            drift: DriftConfig::default(),
            signals: SignalDetectors::default(),
        }
    }
}

impl EngineConfig {
    /// Checks ranges serde cannot express.
    ///
    /// # Errors
    /// A message naming the first bad setting.
    pub fn validate(&self) -> Result<(), String> {
        let m = &self.model;
        if self.horizons.is_empty() || self.horizons.len() > 16 {
            return Err("horizons: give 1 to 16 horizons".into());
        }
        let mut seen = self.horizons.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != self.horizons.len() {
            return Err("horizons: duplicates".into());
        }
        if !(1..=100_000).contains(&self.max_pending) {
            return Err("max_pending must be in 1..=100000".into());
        }
        for (name, v) in [
            ("model.forgetting", m.forgetting),
            ("model.adapt_forgetting", m.adapt_forgetting),
        ] {
            if !(v > 0.5 && v <= 1.0) {
                return Err(format!("{name} must be in (0.5, 1]"));
            }
        }
        for (name, v) in [
            ("model.vol_lambda", m.vol_lambda),
            ("model.weight_decay", m.weight_decay),
        ] {
            if !(v > 0.0 && v < 1.0) {
                return Err(format!("{name} must be in (0, 1)"));
            }
        }
        if !(m.rls_delta > 0.0 && m.weight_prior >= 0.0 && m.interval_gamma > 0.0 && m.interval_gamma < 1.0) {
            return Err("model.rls_delta > 0, model.weight_prior >= 0, 0 < model.interval_gamma < 1".into());
        }
        m.kalman.validate().map_err(|e| format!("model.kalman: {e}"))?;
        match (&m.kind, &m.ets) {
            (ModelKind::Ets, None) => return Err("model.kind = \"ets\" needs a fitted model in model.ets".into()),
            (_, Some(fit)) => fit.check().map_err(|e| format!("model.ets: {e}"))?,
            (ModelKind::Online, None) => {}
        }
        self.quality.validate().map_err(|e| format!("quality: {e}"))?;
        self.drift.validate().map_err(|e| format!("drift: {e}"))?;
        Ok(())
    }
}

/// The configuration of an engine that runs the ETS model `fit` (`[engine.model] kind = "ets"`), with
/// everything else as in `base`: the batch path (`cambio retrain`) calls it after fitting
/// ([`crate::model::ets::fit`]) on the training window's log mids, one per accepted tick in order.
///
/// The engine starts filtering from `fit.state`, the state after the window's last observation, so
/// its first forecast is for the observation after the window: warm it on ticks after the window. To
/// warm it on the window itself (so that the validator, volatility, detectors and scores are warm too),
/// pass `fit.at_window_start()` instead: replaying the window then ends the filter exactly at the
/// fitted state.
///
/// The model's name gains an `-ets` suffix (unless it has one), so its forecasts, and a contest
/// between it and an online model of the same base configuration, tell the two apart.
pub fn ets_engine_config(base: &EngineConfig, fit: EtsFit) -> EngineConfig {
    let mut cfg = base.clone();
    if !cfg.model.name.ends_with("-ets") {
        cfg.model.name.push_str("-ets");
    }
    cfg.model.kind = ModelKind::Ets;
    cfg.model.ets = Some(fit);
    cfg
}
