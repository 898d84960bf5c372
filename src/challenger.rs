//! Champion/challenger: a second engine (a variant configuration, or a previous version from the model
//! registry) runs in shadow on the same ticks as the live one, both scored prequentially; the challenger
//! is promoted when it beats the champion by a margin over a window of forecasts, and a guard rolls the
//! live model back to a known-good copy when its errors degrade past a threshold after a drift
//! adaptation.
//!
//! This is the pure part: no clock, no I/O. The service calls [`Contest::on_tick`] after applying each
//! tick to the champion, publishes the [`Verdict`] it may return as an alert, and hands it a fresh
//! known-good copy at each checkpoint ([`Contest::set_fallback`]). Time comes from tick timestamps, so a
//! replay decides exactly as the live service did.
//!
//! Windows are scored from the engines' running squared-error sums ([`Engine::scored`]): a window's RMSE
//! is the difference of two snapshots, so no history is kept and memory is constant.

use serde::{Deserialize, Serialize};

use crate::engine::EngineConfig;
use crate::engine::{Engine, Output};
use crate::eval::ScoreSums;
use crate::forecast::ModelStamp;
use crate::horizon::Horizon;
use crate::quality::QuarantineReason;
use crate::tick::{Factor, Pair, Tick};
use crate::time::format_ts;

/// What the rollback guard compares before and after an adaptation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GuardMetric {
    /// RMSE relative to the random walk's on the same forecasts. The guard's question is whether the
    /// adaptation made the model worse, and the random walk faces the same market: when volatility
    /// quadruples both errors quadruple and the ratio does not move, so a volatile market is not mistaken
    /// for a broken model (an adaptation is usually triggered precisely by such a change).
    RmseRatio,
    /// RMSE in price units, as the errors are published. Simple, but it also rises when the market gets
    /// more volatile, which no rollback can fix.
    Rmse,
}

impl GuardMetric {
    /// The metric over a window of forecasts.
    fn of(self, w: &ScoreSums) -> f64 {
        match self {
            GuardMetric::RmseRatio => w.rmse_ratio(),
            GuardMetric::Rmse => w.rmse(),
        }
    }
}

/// The `[challenger]` table: whether a challenger runs in shadow, how it is judged, and the rollback
/// guard of the live model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChallengerConfig {
    /// Run a challenger in shadow (default false: it doubles each pair's CPU and memory).
    pub enabled: bool,
    /// A variant configuration for the challenger (`[challenger.engine]`, the keys of `[engine]`; keys not
    /// given take the built-in defaults, not `[engine]`'s). `None`: the challenger is a previous version
    /// of the pair's model, supplied by the service from the model registry.
    pub engine: Option<EngineConfig>,
    /// The horizon whose errors decide (default: the first horizon of `[engine]`); both models must have
    /// it.
    pub horizon: Option<Horizon>,
    /// Scored forecasts per comparison window (default 2000, about half an hour of one-second ticks for
    /// a step horizon). Both models score the same points, so their errors are strongly correlated and
    /// the difference of their RMSEs is far less noisy than either.
    pub window: u64,
    /// The challenger is promoted when its RMSE over a window is at most `(1 - margin)` times the
    /// champion's over the same window (default 0.02: a 2% improvement, so noise and warm-up do not flip
    /// the live model back and forth). In `[0, 1)`; the challenger must be strictly better even at 0.
    pub margin: f64,
    /// Run the rollback guard (default false: like the challenger, it makes the served model differ from
    /// what `cambio replay` computes for the same ticks, so it is asked for). It runs whether or not a
    /// challenger does: it needs only the live model and a known-good copy of it, which the service
    /// refreshes every `4 × rollback_window` accepted ticks.
    pub rollback: bool,
    /// What the guard compares (default `rmse_ratio`, see [`GuardMetric`]).
    pub rollback_metric: GuardMetric,
    /// After a drift adaptation, roll back when the metric over the next `rollback_window` scored
    /// forecasts exceeds `rollback_threshold` times its value over the last completed window before the
    /// adaptation (default 1.05 with `rmse_ratio`, see the module's tests for why; use about 1.25 with
    /// `rmse`).
    pub rollback_threshold: f64,
    /// Scored forecasts per guard window, before and after an adaptation (default 500: long enough that
    /// one outlier does not decide, short enough to act within minutes on one-second ticks).
    pub rollback_window: u64,
}

impl Default for ChallengerConfig {
    fn default() -> Self {
        ChallengerConfig {
            enabled: false,
            engine: None,
            horizon: None,
            window: 2_000,
            margin: 0.02,
            rollback: false,
            rollback_metric: GuardMetric::RmseRatio,
            rollback_threshold: 1.05,
            rollback_window: 500,
        }
    }
}

/// Fewest scored forecasts per window: an RMSE over fewer is mostly noise.
const MIN_WINDOW: u64 = 10;

impl ChallengerConfig {
    /// Checks ranges serde cannot express, and that the deciding horizon exists in `engine` (the
    /// `[engine]` table, the champion's configuration) and in the variant's.
    ///
    /// # Errors
    /// A message naming the first bad setting.
    pub fn validate(&self, engine: &EngineConfig) -> Result<(), String> {
        self.check_rules()?;
        let horizon = match self.horizon {
            Some(h) if !engine.horizons.contains(&h) => {
                return Err(format!("challenger.horizon `{h}` is not among engine.horizons"));
            }
            Some(h) => Some(h),
            None => engine.horizons.first().copied(),
        };
        if let Some(variant) = &self.engine {
            variant.validate().map_err(|e| format!("challenger.engine: {e}"))?;
            if let Some(h) = horizon
                && !variant.horizons.contains(&h)
            {
                return Err(format!(
                    "challenger.engine.horizons must include the deciding horizon `{h}`"
                ));
            }
            // Forecasts carry the model's name and version: after a promotion, consumers must be able to
            // tell which model made them.
            if variant.model.name == engine.model.name && variant.model.version == engine.model.version {
                return Err("challenger.engine.model: give the variant a name or version of its own".into());
            }
        }
        Ok(())
    }

    fn check_rules(&self) -> Result<(), String> {
        if !(MIN_WINDOW..=1_000_000_000).contains(&self.window) {
            return Err(format!("challenger.window must be in {MIN_WINDOW}..=1000000000"));
        }
        if !(MIN_WINDOW..=1_000_000_000).contains(&self.rollback_window) {
            return Err(format!(
                "challenger.rollback_window must be in {MIN_WINDOW}..=1000000000"
            ));
        }
        if !(self.margin >= 0.0 && self.margin < 1.0) {
            return Err("challenger.margin must be in [0, 1)".into());
        }
        if !(self.rollback_threshold.is_finite() && self.rollback_threshold > 0.0) {
            return Err("challenger.rollback_threshold must be positive".into());
        }
        Ok(())
    }
}

/// Where a model in the contest came from, so alerts and status can name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelOrigin {
    /// The live model the service started with (`[engine]`, or restored from its checkpoint).
    Live,
    /// The variant configuration of `[challenger.engine]`.
    Variant,
    /// A previous version of the pair's model from the registry.
    Version(u64),
}

impl std::fmt::Display for ModelOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelOrigin::Live => f.write_str("live model"),
            ModelOrigin::Variant => f.write_str("[challenger.engine] variant"),
            ModelOrigin::Version(v) => write!(f, "registry version {v}"),
        }
    }
}

/// Why a contest could not be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContestError {
    /// A setting is out of range (see [`ChallengerConfig::validate`]).
    #[error("{0}")]
    Config(String),
    /// The live model lacks the configured deciding horizon.
    #[error("challenger: the live model has no `{0}` horizon")]
    ChampionHorizon(Horizon),
    /// The challenger lacks the deciding horizon, so the two cannot be compared.
    #[error("challenger: the challenger has no `{0}` horizon")]
    ChallengerHorizon(Horizon),
    /// The challenger serves another pair.
    #[error("challenger: the challenger serves {challenger}, the live model {champion}")]
    PairMismatch {
        /// The live model's pair.
        champion: Pair,
        /// The challenger's pair.
        challenger: Pair,
    },
}

/// The settings a contest applies, kept with its state so a restored contest decides as before.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Rules {
    horizon: Horizon,
    window: u64,
    margin: f64,
    rollback: bool,
    metric: GuardMetric,
    threshold: f64,
    rollback_window: u64,
}

/// The shadow engine and the start of its current comparison window.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Shadow {
    engine: Engine,
    origin: ModelOrigin,
    mark: ScoreSums,
}

/// An adaptation being watched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Watch {
    /// The champion's sums when it adapted.
    start: ScoreSums,
    /// The last completed guard window before the adaptation.
    baseline: ScoreSums,
    /// When it adapted (RFC 3339).
    adapted_at: String,
    /// The detector that triggered the adaptation.
    trigger: String,
}

/// The rollback guard's state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Guard {
    /// The known-good copy of the champion.
    fallback: Option<Engine>,
    /// The champion's sums at the start of the current guard window.
    mark: ScoreSums,
    /// The last completed guard window: the baseline for the next adaptation.
    last_window: Option<ScoreSums>,
    watch: Option<Watch>,
    /// Adaptations the guard watched that did not lead to a rollback.
    watches_passed: u64,
    /// Adaptations not watched: no baseline window yet, no fallback, or one already being watched.
    unwatched: u64,
}

/// The outcome of one comparison window, for the status reply.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The champion's RMSE over the window (price units).
    pub champion_rmse: f64,
    /// The challenger's RMSE over the window (price units).
    pub challenger_rmse: f64,
    /// Whether the challenger was promoted.
    pub promoted: bool,
}

/// One pair's champion/challenger state: the shadow challenger, the window scores and the rollback
/// guard. Plain data, stored in the pair's checkpoint next to the champion, so a restored service
/// continues the same windows and reaches the same verdicts. The champion itself is not inside: the
/// service owns it and passes it to each call.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Contest {
    pair: Pair,
    rules: Rules,
    champion_origin: ModelOrigin,
    /// The champion's sums at the start of the current comparison window.
    champion_mark: ScoreSums,
    /// The champion's tick count at the last call, to notice a champion replaced behind the contest.
    champion_ticks: u64,
    /// After a rollback, the champion's accepted count at which the windows restart.
    settle_until: Option<u64>,
    challenger: Option<Shadow>,
    windows_compared: u64,
    last_comparison: Option<Comparison>,
    promotions: u64,
    rollbacks: u64,
    guard: Guard,
    /// The challenger's outputs, discarded after each tick (never published); kept to reuse its memory.
    #[serde(skip)]
    discard: Vec<Output>,
}

/// What the contest decided on a tick; the service publishes it as an alert
/// (`{"type":"promotion",...}` or `{"type":"rollback",...}`) and records it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Verdict {
    /// The challenger beat the champion and is now live.
    #[serde(rename = "promotion")]
    Promote(Promotion),
    /// The live model degraded after an adaptation and was replaced by its known-good copy.
    Rollback(Rollback),
}

/// A challenger was promoted: it is now the champion, and the old champion the challenger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Promotion {
    /// The pair.
    pub pair: Pair,
    /// The time of the tick that closed the window (RFC 3339).
    pub ts: String,
    /// The deciding horizon.
    pub horizon: String,
    /// Scored forecasts per window (configured); each model scored at least this many.
    pub window: u64,
    /// The old champion's RMSE over the window (price units).
    pub champion_rmse: f64,
    /// The promoted challenger's RMSE over the window (price units).
    pub challenger_rmse: f64,
    /// The margin it had to beat.
    pub margin: f64,
    /// Where the promoted model came from.
    pub promoted: ModelOrigin,
    /// The promoted model's name and version, which its forecasts now carry.
    pub promoted_model: ModelStamp,
    /// Where the demoted model came from (it stays as the challenger).
    pub demoted: ModelOrigin,
    /// The demoted model's name and version.
    pub demoted_model: ModelStamp,
}

/// The live model was rolled back to its known-good copy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rollback {
    /// The pair.
    pub pair: Pair,
    /// The time of the tick that closed the window after the adaptation (RFC 3339).
    pub ts: String,
    /// The deciding horizon.
    pub horizon: String,
    /// What was compared.
    pub metric: GuardMetric,
    /// The metric over the window before the adaptation.
    pub baseline: f64,
    /// The metric over the window after it.
    pub after: f64,
    /// The factor `after` exceeded.
    pub threshold: f64,
    /// The RMSE over the window before the adaptation (price units).
    pub baseline_rmse: f64,
    /// The RMSE over the window after it (price units).
    pub rmse_after: f64,
    /// Scored forecasts per window.
    pub window: u64,
    /// When the model adapted (RFC 3339).
    pub adapted_at: String,
    /// The detector whose alarm made it adapt.
    pub trigger: String,
    /// Ticks the restored copy had seen when it was taken.
    pub fallback_ticks: u64,
    /// Ticks the live model had seen that the restored copy never learned from: the price of rolling
    /// back.
    pub ticks_lost: u64,
    /// The restored model's name and version.
    pub model: ModelStamp,
}

/// The shadow challenger, for the status reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChallengerStatus {
    /// Where it came from.
    pub origin: ModelOrigin,
    /// Its name and version.
    pub model: ModelStamp,
    /// Ticks it has seen.
    pub ticks: u64,
    /// Forecasts it scored in the current window.
    pub window_scored: u64,
    /// Its RMSE so far in the current window (price units); `None` before the first scored forecast.
    pub window_rmse: Option<f64>,
}

/// The rollback guard, for the status reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuardStatus {
    /// Whether the guard runs.
    pub enabled: bool,
    /// What it compares.
    pub metric: GuardMetric,
    /// The factor that triggers a rollback.
    pub threshold: f64,
    /// Scored forecasts per guard window.
    pub window: u64,
    /// Ticks the known-good copy had seen when it was taken; `None` when there is none yet.
    pub fallback_ticks: Option<u64>,
    /// The metric over the last completed window: the baseline if the model adapted now.
    pub baseline: Option<f64>,
    /// Whether an adaptation is being watched (the known-good copy is then frozen).
    pub watching: bool,
    /// Forecasts scored since the watched adaptation.
    pub watch_scored: u64,
    /// Watched adaptations that did not lead to a rollback.
    pub watches_passed: u64,
    /// Adaptations not watched (no baseline yet, no known-good copy, or one already watched).
    pub unwatched: u64,
}

/// A pair's champion/challenger state for the service's status reply.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContestStatus {
    /// The pair.
    pub pair: Pair,
    /// Whether a challenger runs in shadow.
    pub enabled: bool,
    /// The deciding horizon.
    pub horizon: String,
    /// Where the live model came from.
    pub champion: ModelOrigin,
    /// Scored forecasts per comparison window.
    pub window: u64,
    /// Forecasts the champion scored in the current window.
    pub window_scored: u64,
    /// The champion's RMSE so far in the current window (price units); `None` before the first.
    pub champion_window_rmse: Option<f64>,
    /// The challenger, when one runs.
    pub challenger: Option<ChallengerStatus>,
    /// The margin a challenger must beat.
    pub margin: f64,
    /// Windows compared so far.
    pub windows_compared: u64,
    /// The last window's outcome.
    pub last_comparison: Option<Comparison>,
    /// Promotions so far.
    pub promotions: u64,
    /// Rollbacks so far.
    pub rollbacks: u64,
    /// Whether the windows wait, after a rollback, for the restored model's forecasts from before the
    /// ticks it missed to be realised.
    pub settling: bool,
    /// The rollback guard.
    pub guard: GuardStatus,
}

/// The sums of `h` in `engine`, or `None` when it does not have that horizon.
fn sums_of(engine: &Engine, h: Horizon) -> Option<ScoreSums> {
    engine.horizon_index(h).and_then(|i| engine.scored(i))
}

/// A window's RMSE so far, `None` before any forecast was scored in it.
fn rmse_so_far(now: Option<ScoreSums>, mark: &ScoreSums) -> (u64, Option<f64>) {
    match now.and_then(|s| s.since(mark)) {
        Some(w) if w.n > 0 => (w.n, Some(w.rmse())),
        _ => (0, None),
    }
}

impl Contest {
    /// A contest for `champion`'s pair. The challenger, if given, runs only when `cfg.enabled` (it is
    /// dropped otherwise); the rollback guard runs when `cfg.rollback`, with or without a challenger.
    /// A variant challenger is usually a fresh `Engine::new` with the `[challenger.engine]` configuration:
    /// it must first warm up, and loses the first windows while it does; a challenger from the registry
    /// comes with its history.
    ///
    /// # Errors
    /// [`ContestError`] when a setting is out of range, the deciding horizon is missing from either
    /// model, or the challenger serves another pair.
    pub fn new(
        cfg: &ChallengerConfig,
        champion: &Engine,
        challenger: Option<(Engine, ModelOrigin)>,
    ) -> Result<Contest, ContestError> {
        let rules = Self::rules(cfg, champion)?;
        let challenger = match challenger {
            Some((engine, origin)) if cfg.enabled => {
                Self::check_challenger(&rules, champion, &engine)?;
                Some(Shadow {
                    mark: sums_of(&engine, rules.horizon).unwrap_or_default(),
                    engine,
                    origin,
                })
            }
            _ => None,
        };
        let now = sums_of(champion, rules.horizon).unwrap_or_default();
        Ok(Contest {
            pair: champion.pair(),
            rules,
            champion_origin: ModelOrigin::Live,
            champion_mark: now,
            champion_ticks: champion.ticks(),
            settle_until: None,
            challenger,
            windows_compared: 0,
            last_comparison: None,
            promotions: 0,
            rollbacks: 0,
            guard: Guard {
                fallback: None,
                mark: now,
                last_window: None,
                watch: None,
                watches_passed: 0,
                unwatched: 0,
            },
            discard: Vec::new(),
        })
    }

    fn rules(cfg: &ChallengerConfig, champion: &Engine) -> Result<Rules, ContestError> {
        cfg.check_rules().map_err(ContestError::Config)?;
        let horizon = match cfg.horizon {
            Some(h) => h,
            None => champion
                .config()
                .horizons
                .first()
                .copied()
                // Unreachable: an engine is built with at least one horizon.
                .ok_or_else(|| ContestError::Config("challenger: the live model has no horizon".into()))?,
        };
        if champion.horizon_index(horizon).is_none() {
            return Err(ContestError::ChampionHorizon(horizon));
        }
        Ok(Rules {
            horizon,
            window: cfg.window,
            margin: cfg.margin,
            rollback: cfg.rollback,
            metric: cfg.rollback_metric,
            threshold: cfg.rollback_threshold,
            rollback_window: cfg.rollback_window,
        })
    }

    fn check_challenger(rules: &Rules, champion: &Engine, challenger: &Engine) -> Result<(), ContestError> {
        if challenger.pair() != champion.pair() {
            return Err(ContestError::PairMismatch {
                champion: champion.pair(),
                challenger: challenger.pair(),
            });
        }
        if challenger.horizon_index(rules.horizon).is_none() {
            return Err(ContestError::ChallengerHorizon(rules.horizon));
        }
        Ok(())
    }

    /// Applies a changed configuration to a restored contest (the rules are stored with its state). The
    /// windows restart; the challenger is dropped when `cfg.enabled` is now false, and the known-good copy
    /// when `cfg.rollback` is. A different variant configuration needs a new contest.
    ///
    /// # Errors
    /// [`ContestError`] as for [`Contest::new`]; the contest is then unchanged.
    pub fn reconfigure(&mut self, cfg: &ChallengerConfig, champion: &Engine) -> Result<(), ContestError> {
        let rules = Self::rules(cfg, champion)?;
        if cfg.enabled
            && let Some(shadow) = &self.challenger
        {
            Self::check_challenger(&rules, champion, &shadow.engine)?;
        }
        self.rules = rules;
        if !cfg.enabled {
            self.challenger = None;
        }
        if !cfg.rollback {
            self.guard.fallback = None;
        }
        self.resync(champion);
        Ok(())
    }

    /// Replaces the challenger with `engine` (an operator's `challenge` of a registry version) and restarts
    /// the comparison window. The caller checks that challengers are enabled: the contest runs whatever challenger it
    /// holds.
    ///
    /// # Errors
    /// [`ContestError`] when `engine` serves another pair or lacks the deciding horizon; the contest is
    /// then unchanged.
    pub fn set_challenger(
        &mut self,
        champion: &Engine,
        engine: Engine,
        origin: ModelOrigin,
    ) -> Result<(), ContestError> {
        Self::check_challenger(&self.rules, champion, &engine)?;
        self.challenger = Some(Shadow {
            mark: sums_of(&engine, self.rules.horizon).unwrap_or_default(),
            engine,
            origin,
        });
        // Only the comparison window restarts: the guard's windows and any watched adaptation are the
        // champion's and go on.
        self.champion_mark = sums_of(champion, self.rules.horizon).unwrap_or_default();
        Ok(())
    }

    /// Forwards a factor observation to the challenger, so it sees the same inputs as the champion.
    pub fn on_factor(&mut self, factor: &Factor) {
        if let Some(shadow) = &mut self.challenger {
            shadow.engine.on_factor(factor);
        }
    }

    /// Forwards a payload that could not be parsed (see [`Engine::on_rejected`]) to the challenger, so its
    /// tick counts and quality scores match the champion's. Copies `raw`: rejections are rare.
    pub fn on_rejected(&mut self, reason: QuarantineReason, ts_us: Option<i64>, raw: &str) {
        if let Some(shadow) = &mut self.challenger {
            shadow
                .engine
                .on_rejected(reason, String::new(), ts_us, raw.to_owned(), &mut self.discard);
            self.discard.clear();
        }
    }

    /// Whether the known-good copy is due after a tick that took the champion's accepted count from
    /// `before` to `after`: when an accepted tick brings it to a multiple of `4 × rollback_window`. A
    /// position in the stream, not a time, and no state of its own, so the copy (and any rollback to it)
    /// is the same live, replayed, or after a crash.
    pub fn fallback_due(&self, before: u64, after: u64) -> bool {
        after == before + 1 && after.is_multiple_of(4 * self.rules.rollback_window.max(1))
    }

    /// Stores a known-good copy of the champion for the rollback guard; the service calls it when
    /// [`Contest::fallback_due`] says so. Returns whether the copy was taken: it is not while the guard watches an adaptation
    /// (the copy from before the adaptation must stay), when the guard is off, or when `champion` lacks
    /// the deciding horizon or serves another pair.
    pub fn set_fallback(&mut self, champion: &Engine) -> bool {
        if !self.rules.rollback
            || self.guard.watch.is_some()
            || champion.pair() != self.pair
            || champion.horizon_index(self.rules.horizon).is_none()
        {
            return false;
        }
        match &mut self.guard.fallback {
            // Reuse the old copy's allocations.
            Some(f) => f.clone_from(champion),
            None => self.guard.fallback = Some(champion.clone()),
        }
        true
    }

    /// Restarts the comparison and guard windows from the engines' current scores, and stops watching an
    /// adaptation. Called automatically when the champion's counts go back (it was replaced behind the
    /// contest by an older engine); the service should call it when it replaces the champion itself,
    /// e.g. after an operator's rollback or a restore.
    pub fn resync(&mut self, champion: &Engine) {
        let now = sums_of(champion, self.rules.horizon).unwrap_or_default();
        self.champion_mark = now;
        self.champion_ticks = champion.ticks();
        if let Some(shadow) = &mut self.challenger {
            shadow.mark = sums_of(&shadow.engine, self.rules.horizon).unwrap_or_default();
        }
        self.guard.mark = now;
        self.guard.last_window = None;
        self.guard.watch = None;
        self.settle_until = None;
    }

    /// Applies `tick` to the shadow challenger (its outputs are discarded), updates the windows, and runs
    /// the rollback guard. Call it after the champion processed the same tick, with what it output (the
    /// guard looks for [`Output::Adapted`]).
    ///
    /// On a promotion, the challenger becomes `*champion` and the old champion the challenger, so it can
    /// win back later; on a rollback, the known-good copy becomes `*champion`. Either way the new
    /// champion takes over the stream position ([`Engine::adopt_position`]) and the windows restart;
    /// after a rollback, only once the forecasts the copy made before the ticks it missed are realised
    /// (realised across the gap, they measure the gap, not the model). A promotion also ends the watch of
    /// an adaptation: the model that adapted is no longer live. Nothing is decided while `champion` lacks
    /// the deciding horizon (the service replaced it with an engine configured otherwise).
    pub fn on_tick(&mut self, champion: &mut Engine, champion_outputs: &[Output], tick: &Tick) -> Option<Verdict> {
        if let Some(shadow) = &mut self.challenger {
            shadow.engine.on_tick(tick, &mut self.discard);
            self.discard.clear();
        }
        let now = sums_of(champion, self.rules.horizon)?;
        let behind = |mark: &ScoreSums| now.since(mark).is_none();
        if champion.ticks() < self.champion_ticks
            || behind(&self.champion_mark)
            || behind(&self.guard.mark)
            || self.guard.watch.as_ref().is_some_and(|w| behind(&w.start))
        {
            self.resync(champion);
            return None;
        }
        self.champion_ticks = champion.ticks();
        if let Some(until) = self.settle_until {
            // A rolled-back copy still holds forecasts made before the ticks it missed; realised across that
            // gap they are not errors of its forecasting, so no window counts them.
            if champion.accepted() >= until {
                self.resync(champion);
            }
            return None;
        }
        if let Some(r) = self.guard_step(champion, champion_outputs, now, tick.ts_us) {
            return Some(Verdict::Rollback(r));
        }
        self.compare(champion, now, tick.ts_us).map(Verdict::Promote)
    }

    /// The rollback guard on one tick: roll the guard window, start watching an adaptation, or judge the
    /// watched one.
    fn guard_step(
        &mut self,
        champion: &mut Engine,
        outputs: &[Output],
        now: ScoreSums,
        ts_us: i64,
    ) -> Option<Rollback> {
        let rules = self.rules;
        if !rules.rollback {
            return None;
        }
        let guard = &mut self.guard;
        // Forecasts scored on this tick were made before any adaptation on it (scoring comes first in
        // the engine), so a window completed now is still a pre-adaptation baseline.
        if let Some(w) = now.since(&guard.mark)
            && w.n >= rules.rollback_window
        {
            guard.last_window = Some(w);
            guard.mark = now;
        }
        let adapted = outputs.iter().find_map(|o| match o {
            Output::Adapted(a) => Some(a),
            _ => None,
        });
        if let Some(a) = adapted {
            match (&guard.watch, guard.last_window, &guard.fallback) {
                (None, Some(baseline), Some(_)) => {
                    guard.watch = Some(Watch {
                        start: now,
                        baseline,
                        adapted_at: a.ts.clone(),
                        trigger: a.trigger.clone(),
                    });
                    return None;
                }
                _ => guard.unwatched += 1,
            }
        }
        let watch = guard.watch.as_ref()?;
        let after = now.since(&watch.start)?;
        if after.n < rules.rollback_window {
            return None;
        }
        let (base, worse) = (rules.metric.of(&watch.baseline), rules.metric.of(&after));
        if worse <= rules.threshold * base {
            guard.watch = None;
            guard.watches_passed += 1;
            return None;
        }
        let watch = guard.watch.take()?;
        let Some(mut fallback) = guard.fallback.take() else {
            // Unreachable: a watch starts only with a fallback, and none is taken while watching.
            return None;
        };
        let fallback_ticks = fallback.ticks();
        let position = champion.ticks();
        fallback.adopt_position(position);
        *champion = fallback;
        self.rollbacks += 1;
        // The restored model's windows start once the forecasts it made before the gap are realised (a
        // step horizon's within as many accepted ticks; a time horizon's at the first after the gap, or in
        // their own time); the next known-good copy comes with the next checkpoint.
        self.resync(champion);
        let settle = match rules.horizon {
            Horizon::Steps(n) => u64::from(n),
            Horizon::Time { .. } => 1,
        };
        self.settle_until = Some(champion.accepted() + settle);
        Some(Rollback {
            pair: self.pair,
            ts: format_ts(ts_us),
            horizon: rules.horizon.to_string(),
            metric: rules.metric,
            baseline: base,
            after: worse,
            threshold: rules.threshold,
            baseline_rmse: watch.baseline.rmse(),
            rmse_after: after.rmse(),
            window: rules.rollback_window,
            adapted_at: watch.adapted_at,
            trigger: watch.trigger,
            fallback_ticks,
            ticks_lost: position.saturating_sub(fallback_ticks),
            model: champion.model_stamp(),
        })
    }

    /// Closes the comparison window once both models scored `window` forecasts in it, and promotes the
    /// challenger when it won by the margin.
    fn compare(&mut self, champion: &mut Engine, now: ScoreSums, ts_us: i64) -> Option<Promotion> {
        let rules = self.rules;
        let shadow = self.challenger.as_mut()?;
        let theirs = sums_of(&shadow.engine, rules.horizon)?;
        let Some(their_window) = theirs.since(&shadow.mark) else {
            shadow.mark = theirs;
            return None;
        };
        let our_window = now.since(&self.champion_mark)?;
        if our_window.n < rules.window || their_window.n < rules.window {
            return None;
        }
        let (ours, theirs_rmse) = (our_window.rmse(), their_window.rmse());
        // Strictly better, so identical models never swap, even with a zero margin or zero errors.
        let promote = theirs_rmse < ours && theirs_rmse <= (1.0 - rules.margin) * ours;
        self.windows_compared += 1;
        self.last_comparison = Some(Comparison {
            champion_rmse: ours,
            challenger_rmse: theirs_rmse,
            promoted: promote,
        });
        if !promote {
            self.champion_mark = now;
            shadow.mark = theirs;
            return None;
        }
        let position = champion.ticks();
        shadow.engine.adopt_position(position);
        std::mem::swap(champion, &mut shadow.engine);
        std::mem::swap(&mut self.champion_origin, &mut shadow.origin);
        self.promotions += 1;
        let promotion = Promotion {
            pair: self.pair,
            ts: format_ts(ts_us),
            horizon: rules.horizon.to_string(),
            window: rules.window,
            champion_rmse: ours,
            challenger_rmse: theirs_rmse,
            margin: rules.margin,
            promoted: self.champion_origin,
            promoted_model: champion.model_stamp(),
            demoted: shadow.origin,
            demoted_model: shadow.engine.model_stamp(),
        };
        // The known-good copy was of the demoted model: the new champion's comes with the next checkpoint.
        self.guard.fallback = None;
        self.resync(champion);
        Some(promotion)
    }

    /// The shadow challenger, when one runs (for its summary in status replies and checkpoints).
    pub fn challenger(&self) -> Option<&Engine> {
        self.challenger.as_ref().map(|s| &s.engine)
    }

    /// The rollback guard's known-good copy of the champion, when there is one.
    pub fn fallback(&self) -> Option<&Engine> {
        self.guard.fallback.as_ref()
    }

    /// The pair this contest serves.
    pub fn pair(&self) -> Pair {
        self.pair
    }

    /// Names a restored challenger that came from the registry by its version, so its forecasts (after a
    /// promotion) say which version they come from; stamps are not part of the checkpointed state.
    pub fn stamp_registry_versions(&mut self) {
        if let Some(shadow) = &mut self.challenger
            && let ModelOrigin::Version(v) = shadow.origin
        {
            shadow.engine.set_registry_version(v);
        }
    }

    /// Where the shadow challenger came from, when one runs.
    pub fn challenger_origin(&self) -> Option<ModelOrigin> {
        self.challenger.as_ref().map(|s| s.origin)
    }

    /// Where the live model came from.
    pub fn champion_origin(&self) -> ModelOrigin {
        self.champion_origin
    }

    /// The contest's state for the service's status reply. `champion` is the live engine.
    pub fn status(&self, champion: &Engine) -> ContestStatus {
        let h = self.rules.horizon;
        let (window_scored, champion_window_rmse) = rmse_so_far(sums_of(champion, h), &self.champion_mark);
        let guard = &self.guard;
        ContestStatus {
            pair: self.pair,
            enabled: self.challenger.is_some(),
            horizon: h.to_string(),
            champion: self.champion_origin,
            window: self.rules.window,
            window_scored,
            champion_window_rmse,
            challenger: self.challenger.as_ref().map(|s| {
                let (window_scored, window_rmse) = rmse_so_far(sums_of(&s.engine, h), &s.mark);
                ChallengerStatus {
                    origin: s.origin,
                    model: s.engine.model_stamp(),
                    ticks: s.engine.ticks(),
                    window_scored,
                    window_rmse,
                }
            }),
            margin: self.rules.margin,
            windows_compared: self.windows_compared,
            last_comparison: self.last_comparison,
            promotions: self.promotions,
            rollbacks: self.rollbacks,
            settling: self.settle_until.is_some(),
            guard: GuardStatus {
                enabled: self.rules.rollback,
                metric: self.rules.metric,
                threshold: self.rules.threshold,
                window: self.rules.rollback_window,
                fallback_ticks: guard.fallback.as_ref().map(Engine::ticks),
                baseline: guard.last_window.map(|w| self.rules.metric.of(&w)),
                watching: guard.watch.is_some(),
                watch_scored: guard
                    .watch
                    .as_ref()
                    .and_then(|w| sums_of(champion, h).and_then(|s| s.since(&w.start)))
                    .map_or(0, |w| w.n),
                watches_passed: guard.watches_passed,
                unwatched: guard.unwatched,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> Pair {
        Pair::parse("USDMXN").expect("pair")
    }

    fn engine_cfg(horizons: &[&str]) -> EngineConfig {
        EngineConfig {
            horizons: horizons.iter().map(|h| h.parse().expect("horizon")).collect(),
            ..EngineConfig::default()
        }
    }

    /// Ticks one second apart (mid only, like a fixing) of
    /// [`structured_mids`](crate::replay::synth::structured_mids).
    fn walk(seed: u64, n: u64, phi: f64, drifts: &[(u64, f64)]) -> Vec<Tick> {
        let source = crate::tick::Source::new("synthetic").unwrap_or_default();
        let t0 = crate::time::parse_ts_us("2024-01-01T00:00:00Z").expect("ts");
        crate::replay::synth::structured_mids(seed, n, phi, drifts)
            .into_iter()
            .zip(0..)
            .map(|(mid, i)| Tick {
                pair: pair(),
                ts_us: t0 + i as i64 * 1_000_000,
                bid: None,
                ask: None,
                mid: Some(mid),
                source,
                seq: Some(i + 1),
                arrival_us: None,
            })
            .collect()
    }

    /// The engine configuration of a model that cannot learn: the signal weight's prior is so strong that
    /// it forecasts the random walk whatever it sees.
    fn random_walk_cfg() -> EngineConfig {
        let mut c = engine_cfg(&["1step", "10step"]);
        c.model.weight_prior = 1e12;
        c.model.version = "rw".into();
        c
    }

    /// The defaults with the rollback guard on (it is off by default).
    fn guarded() -> ChallengerConfig {
        ChallengerConfig {
            rollback: true,
            ..ChallengerConfig::default()
        }
    }

    fn contest_cfg() -> ChallengerConfig {
        ChallengerConfig {
            enabled: true,
            ..guarded()
        }
    }

    /// The trend stream: a Gaussian walk with trends of ±0.5 one-tick sigmas per tick, switching every
    /// 4,000 ticks from tick 2,000; each switch shifts the residuals' mean, so the model adapts.
    fn trends(n: u64) -> Vec<Tick> {
        let switches: Vec<(u64, f64)> = (0..n / 4_000 + 1)
            .map(|k| (2_000 + 4_000 * k, if k % 2 == 0 { 0.5 } else { -0.5 }))
            .collect();
        walk(3, n, 0.0, &switches)
    }

    /// What the service does per tick: the champion first, then the contest with its outputs; a known-good
    /// copy at each checkpoint (every `checkpoint_every` ticks of position). The verdicts, as published.
    fn drive(champion: &mut Engine, contest: &mut Contest, ticks: &[Tick], checkpoint_every: u64) -> Vec<String> {
        let mut out = Vec::new();
        let mut verdicts = Vec::new();
        for t in ticks {
            out.clear();
            champion.on_tick(t, &mut out);
            if let Some(v) = contest.on_tick(champion, &out, t) {
                verdicts.push(serde_json::to_string(&v).expect("json"));
            }
            if champion.ticks().is_multiple_of(checkpoint_every) {
                contest.set_fallback(champion);
            }
        }
        verdicts
    }

    #[test]
    fn an_identical_challenger_is_never_promoted() {
        let ticks = walk(3, 20_000, -0.4, &[]);
        let c = engine_cfg(&["1step", "10step"]);
        let mut champion = Engine::new(pair(), &c).expect("engine");
        let challenger = Engine::new(pair(), &c).expect("engine");
        let mut contest =
            Contest::new(&contest_cfg(), &champion, Some((challenger, ModelOrigin::Variant))).expect("contest");
        let verdicts = drive(&mut champion, &mut contest, &ticks, 1_000);
        assert!(verdicts.is_empty(), "{verdicts:?}");
        let s = contest.status(&champion);
        assert_eq!((s.windows_compared, s.promotions), (9, 0));
        let last = s.last_comparison.expect("compared");
        assert_eq!(last.champion_rmse, last.challenger_rmse);
        // Even with no margin: the challenger must be strictly better.
        let cfg = ChallengerConfig {
            margin: 0.0,
            ..contest_cfg()
        };
        let mut champion = Engine::new(pair(), &c).expect("engine");
        let challenger = Engine::new(pair(), &c).expect("engine");
        let mut contest = Contest::new(&cfg, &champion, Some((challenger, ModelOrigin::Version(3)))).expect("contest");
        assert!(drive(&mut champion, &mut contest, &ticks, 1_000).is_empty());
    }

    #[test]
    fn a_clearly_better_variant_is_promoted_and_the_engines_swap() {
        // Returns with autocorrelation -0.4 (a bid-ask bounce): the default model learns it from the last
        // return and beats the random walk by about 7.5% RMSE per window at 1step (measured 0.915–0.933
        // over 14 windows); a model stuck on the random walk cannot.
        let ticks = walk(3, 20_000, -0.4, &[]);
        let (bad, good) = (random_walk_cfg(), engine_cfg(&["1step", "10step"]));
        let mut champion = Engine::new(pair(), &bad).expect("engine");
        let mut out = Vec::new();
        for t in &ticks[..3_000] {
            champion.on_tick(t, &mut out);
        }
        // The variant starts fresh, 3,000 ticks after the champion.
        let challenger = Engine::new(pair(), &good).expect("engine");
        let mut contest =
            Contest::new(&contest_cfg(), &champion, Some((challenger, ModelOrigin::Variant))).expect("contest");
        let verdicts = drive(&mut champion, &mut contest, &ticks[3_000..], 1_000);
        assert_eq!(verdicts.len(), 1, "{verdicts:?}");
        let v: serde_json::Value = serde_json::from_str(&verdicts[0]).expect("json");
        assert_eq!(v["type"], "promotion");
        assert_eq!(
            (v["promoted"].as_str(), v["demoted"].as_str()),
            (Some("variant"), Some("live"))
        );
        assert_eq!(
            (v["horizon"].as_str(), v["window"].as_u64()),
            (Some("1step"), Some(2_000))
        );
        let configs = (
            v["promoted_model"]["config"].as_str(),
            v["demoted_model"]["config"].as_str(),
        );
        assert!(
            configs.0.is_some() && configs.0 != configs.1,
            "the two models' configurations differ: {v}"
        );
        let (champ, chal) = (v["champion_rmse"].as_f64(), v["challenger_rmse"].as_f64());
        let (champ, chal) = (champ.expect("rmse"), chal.expect("rmse"));
        assert!(chal < 0.95 * champ, "{chal} vs {champ}");
        // Swapped: the live engine has the variant's configuration, the old champion runs in shadow, and the
        // position the service names forecasts by went on from the old champion's.
        assert_eq!(champion.config(), &good);
        assert_eq!(contest.challenger().map(Engine::config), Some(&bad));
        assert_eq!(champion.ticks(), 20_000);
        assert_eq!(champion.summary().accepted, 17_000);
        let s = contest.status(&champion);
        assert_eq!((s.champion, s.promotions, s.rollbacks), (ModelOrigin::Variant, 1, 0));
        assert_eq!(s.challenger.map(|c| c.origin), Some(ModelOrigin::Live));
        assert!(s.windows_compared >= 6);
    }

    #[test]
    fn the_guard_rolls_back_when_errors_degrade_after_an_adaptation() {
        let ticks = trends(12_000);
        let c = engine_cfg(&["1step"]);
        let cfg = ChallengerConfig {
            // Any ratio above half the baseline counts as degraded: the rollback is certain.
            rollback_threshold: 0.5,
            ..guarded()
        };
        let mut champion = Engine::new(pair(), &c).expect("engine");
        let mut contest = Contest::new(&cfg, &champion, None).expect("contest");
        let mut out = Vec::new();
        let mut rollback = None;
        let mut refused_while_watching = 0;
        for (i, t) in ticks.iter().enumerate() {
            out.clear();
            champion.on_tick(t, &mut out);
            if let Some(v) = contest.on_tick(&mut champion, &out, t) {
                rollback = Some((i, v));
                break;
            }
            if champion.ticks().is_multiple_of(1_000) && !contest.set_fallback(&champion) {
                assert!(contest.status(&champion).guard.watching);
                refused_while_watching += 1;
            }
        }
        let (i, v) = rollback.expect("a rollback");
        let Verdict::Rollback(r) = &v else { panic!("{v:?}") };
        assert_eq!(serde_json::to_value(&v).expect("json")["type"], "rollback");
        assert!(r.after > 0.5 * r.baseline && r.baseline > 0.0, "{r:?}");
        assert!(!r.trigger.is_empty());
        // The copy was taken at a checkpoint before the adaptation, and kept while watching.
        let adapted_at = crate::time::parse_ts_us(&r.adapted_at).expect("ts");
        assert!(ticks[r.fallback_ticks as usize].ts_us <= adapted_at);
        assert_eq!(r.fallback_ticks % 1_000, 0);
        assert!(refused_while_watching >= 1 || r.ticks_lost < 1_000);
        // The live engine is the copy: it learned only the ticks before it was taken, yet the position went
        // on, and there is no known-good copy until the next checkpoint.
        assert_eq!(champion.ticks(), i as u64 + 1);
        assert_eq!(r.ticks_lost, champion.ticks() - r.fallback_ticks);
        assert_eq!(champion.summary().accepted, r.fallback_ticks);
        assert!(contest.fallback().is_none());
        let s = contest.status(&champion);
        assert_eq!((s.rollbacks, s.guard.watching, s.guard.baseline), (1, false, None));
        // The 1step forecast the copy made before its gap is realised on the next accepted tick, outside
        // every window; the windows start after it.
        assert!(s.settling);
        for t in &ticks[i + 1..i + 3] {
            out.clear();
            champion.on_tick(t, &mut out);
            assert!(contest.on_tick(&mut champion, &out, t).is_none());
        }
        let s = contest.status(&champion);
        assert_eq!((s.settling, s.window_scored), (false, 1));
    }

    #[test]
    fn a_restored_contest_takes_the_new_configuration() {
        let ticks = walk(3, 3_000, -0.4, &[]);
        let c = engine_cfg(&["1step", "10step"]);
        let mut champion = Engine::new(pair(), &c).expect("engine");
        let challenger = Engine::new(pair(), &c).expect("engine");
        let mut contest =
            Contest::new(&contest_cfg(), &champion, Some((challenger, ModelOrigin::Version(2)))).expect("contest");
        drive(&mut champion, &mut contest, &ticks, 1_000);
        assert!(contest.fallback().is_some());
        let on_10step = ChallengerConfig {
            horizon: Some("10step".parse().expect("horizon")),
            window: 100,
            ..contest_cfg()
        };
        contest.reconfigure(&on_10step, &champion).expect("reconfigure");
        let s = contest.status(&champion);
        assert_eq!((s.horizon.as_str(), s.window, s.window_scored), ("10step", 100, 0));
        let on_1d = ChallengerConfig {
            horizon: Some("1d".parse().expect("horizon")),
            ..contest_cfg()
        };
        assert!(contest.reconfigure(&on_1d, &champion).is_err());
        assert_eq!(contest.status(&champion).horizon, "10step");
        let off = ChallengerConfig {
            rollback: false,
            ..guarded()
        };
        contest.reconfigure(&off, &champion).expect("reconfigure");
        assert!(contest.challenger().is_none() && contest.fallback().is_none());
        assert!(!contest.set_fallback(&champion));
    }

    #[test]
    fn the_guard_does_not_roll_back_under_a_generous_threshold() {
        let ticks = trends(12_000);
        for threshold in [100.0, ChallengerConfig::default().rollback_threshold] {
            let cfg = ChallengerConfig {
                rollback_threshold: threshold,
                ..guarded()
            };
            let mut champion = Engine::new(pair(), &engine_cfg(&["1step"])).expect("engine");
            let mut contest = Contest::new(&cfg, &champion, None).expect("contest");
            let verdicts = drive(&mut champion, &mut contest, &ticks, 1_000);
            assert!(verdicts.is_empty(), "{threshold}: {verdicts:?}");
            let s = contest.status(&champion);
            assert!(s.guard.watches_passed >= 2, "{threshold}: {s:?}");
            assert_eq!(champion.summary().accepted, 12_000);
        }
    }

    #[test]
    fn a_restored_contest_continues_identically() {
        // Promotions (the variant learns the trends), adaptations watched and rollbacks (threshold 0.9),
        // and a split while the guard watches.
        let ticks = trends(16_000);
        let cfg = ChallengerConfig {
            rollback_threshold: 0.9,
            ..contest_cfg()
        };
        let new = || {
            let champion = Engine::new(pair(), &random_walk_cfg()).expect("engine");
            let challenger = Engine::new(pair(), &engine_cfg(&["1step", "10step"])).expect("engine");
            let contest = Contest::new(&cfg, &champion, Some((challenger, ModelOrigin::Variant))).expect("contest");
            (champion, contest)
        };
        let (mut champion, mut contest) = new();
        let expected = drive(&mut champion, &mut contest, &ticks, 1_000);
        let kinds: Vec<&str> = expected
            .iter()
            .map(|v| {
                if v.contains("\"type\":\"promotion\"") {
                    "promotion"
                } else {
                    "rollback"
                }
            })
            .collect();
        assert_eq!(kinds, ["rollback", "promotion", "rollback", "promotion", "promotion"]);

        let (mut first_champion, mut first) = new();
        let split = 2_550;
        let mut got = drive(&mut first_champion, &mut first, &ticks[..split], 1_000);
        assert!(first.status(&first_champion).guard.watching);
        let bytes = (
            postcard::to_allocvec(&first_champion).expect("encode"),
            postcard::to_allocvec(&first).expect("encode"),
        );
        drop((first_champion, first));
        let mut restored_champion: Engine = postcard::from_bytes(&bytes.0).expect("decode");
        let mut restored: Contest = postcard::from_bytes(&bytes.1).expect("decode");
        got.extend(drive(&mut restored_champion, &mut restored, &ticks[split..], 1_000));
        assert_eq!(got, expected);
        assert_eq!(
            json(&restored.status(&restored_champion)),
            json(&contest.status(&champion))
        );
        assert_eq!(json(&restored_champion.summary()), json(&champion.summary()));
        let summaries = |c: &Contest| c.challenger().map(|e| json(&e.summary()));
        assert_eq!(summaries(&restored), summaries(&contest));
        assert_eq!(
            postcard::to_allocvec(&restored).expect("encode"),
            postcard::to_allocvec(&contest).expect("encode")
        );
    }

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).expect("json")
    }

    fn encoded_len<T: Serialize>(v: &T) -> usize {
        postcard::to_allocvec(v).expect("encode").len()
    }

    #[test]
    fn memory_is_bounded() {
        // Beyond the engines (each bounded on its own), a contest holds a fixed set of numbers: its encoded
        // size apart from them does not grow with the stream, and the discard buffer holds one tick's outputs.
        let ticks = trends(24_000);
        let cfg = ChallengerConfig {
            rollback_threshold: 0.9,
            ..contest_cfg()
        };
        let mut champion = Engine::new(pair(), &random_walk_cfg()).expect("engine");
        let challenger = Engine::new(pair(), &engine_cfg(&["1step", "10step"])).expect("engine");
        let mut contest = Contest::new(&cfg, &champion, Some((challenger, ModelOrigin::Variant))).expect("contest");
        let mut overheads = Vec::new();
        for chunk in ticks.chunks(3_000) {
            drive(&mut champion, &mut contest, chunk, 1_000);
            let engines = contest.challenger().map_or(0, encoded_len) + contest.fallback().map_or(0, encoded_len);
            overheads.push(encoded_len(&contest) - engines);
            assert!(contest.discard.capacity() <= 16, "{}", contest.discard.capacity());
        }
        // Measured 121 to 143 bytes: counters, marks, and the watched adaptation's time and trigger.
        assert!(overheads.iter().all(|&o| o < 256), "{overheads:?}");
    }

    #[test]
    fn the_challenger_sees_what_the_champion_sees() {
        let ticks = walk(5, 300, 0.0, &[]);
        let c = engine_cfg(&["1step"]);
        let mut champion = Engine::new(pair(), &c).expect("engine");
        let challenger = Engine::new(pair(), &c).expect("engine");
        let mut contest =
            Contest::new(&contest_cfg(), &champion, Some((challenger, ModelOrigin::Variant))).expect("contest");
        let mut out = Vec::new();
        for (i, t) in ticks.iter().enumerate() {
            if i % 50 == 0 {
                champion.on_rejected(QuarantineReason::Malformed, String::new(), None, "{".into(), &mut out);
                contest.on_rejected(QuarantineReason::Malformed, None, "{");
                let f = Factor {
                    name: "FED_FUNDS".into(),
                    ts_us: t.ts_us,
                    value: 5.25,
                    source: "fed".into(),
                };
                champion.on_factor(&f);
                contest.on_factor(&f);
            }
            out.clear();
            champion.on_tick(t, &mut out);
            assert!(contest.on_tick(&mut champion, &out, t).is_none());
        }
        let summary = |e: &Engine| json(&e.summary());
        assert_eq!(contest.challenger().map(summary), Some(summary(&champion)));
    }

    #[test]
    fn a_champion_replaced_behind_the_contest_restarts_the_windows() {
        let ticks = walk(3, 6_000, -0.4, &[]);
        let c = engine_cfg(&["1step"]);
        let mut champion = Engine::new(pair(), &c).expect("engine");
        let mut contest = Contest::new(&contest_cfg(), &champion, None).expect("contest");
        drive(&mut champion, &mut contest, &ticks[..3_000], 1_000);
        assert_eq!(contest.status(&champion).window_scored, 2_999);
        // An operator's rollback to an older engine: its counts are behind the contest's marks.
        champion = Engine::new(pair(), &c).expect("engine");
        drive(&mut champion, &mut contest, &ticks[3_000..3_100], 1_000);
        assert_eq!(contest.status(&champion).window_scored, 99);
    }

    #[test]
    fn construction_checks_horizons_and_pairs() {
        let champion = Engine::new(pair(), &engine_cfg(&["1step", "1h"])).expect("engine");
        let other = |h: &[&str], p: &str| {
            let p = Pair::parse(p).expect("pair");
            Some((Engine::new(p, &engine_cfg(h)).expect("engine"), ModelOrigin::Version(1)))
        };
        let cfg = contest_cfg();
        assert!(Contest::new(&cfg, &champion, other(&["1step"], "USDMXN")).is_ok());
        assert_eq!(
            Contest::new(&cfg, &champion, other(&["5step"], "USDMXN")).err(),
            Some(ContestError::ChallengerHorizon("1step".parse().expect("horizon")))
        );
        assert!(matches!(
            Contest::new(&cfg, &champion, other(&["1step"], "EURUSD")),
            Err(ContestError::PairMismatch { .. })
        ));
        let on_1d = ChallengerConfig {
            horizon: Some("1d".parse().expect("horizon")),
            ..contest_cfg()
        };
        assert!(matches!(
            Contest::new(&on_1d, &champion, None),
            Err(ContestError::ChampionHorizon(_))
        ));
        // Disabled: the challenger is dropped, the guard stays.
        let off = guarded();
        let contest = Contest::new(&off, &champion, other(&["5step"], "EURUSD")).expect("contest");
        assert!(contest.challenger().is_none() && contest.status(&champion).guard.enabled);
    }

    #[test]
    fn configuration_reads_and_validates() {
        let engine = EngineConfig::default();
        let c: crate::config::Config = toml::from_str(
            "[challenger]\nenabled = true\nhorizon = \"5step\"\nwindow = 500\nmargin = 0.01\n\
             rollback_metric = \"rmse\"\nrollback_threshold = 1.3\n\
             [challenger.engine]\nhorizons = [\"5step\"]\nmodel.version = \"2\"\nmodel.forgetting = 0.99\n",
        )
        .expect("toml");
        let ch = &c.challenger;
        assert_eq!(
            (ch.enabled, ch.window, ch.rollback_metric),
            (true, 500, GuardMetric::Rmse)
        );
        assert_eq!(ch.engine.as_ref().map(|e| e.model.forgetting), Some(0.99));
        assert_eq!(ch.validate(&c.engine), Ok(()));
        assert_eq!(ChallengerConfig::default().validate(&engine), Ok(()));
        assert!(toml::from_str::<crate::config::Config>("[challenger]\nwindw = 5").is_err());
        let bad = |c: ChallengerConfig| c.validate(&engine).is_err();
        assert!(bad(ChallengerConfig {
            margin: 1.0,
            ..guarded()
        }));
        assert!(bad(ChallengerConfig { window: 1, ..guarded() }));
        assert!(bad(ChallengerConfig {
            rollback_threshold: f64::NAN,
            ..guarded()
        }));
        assert!(bad(ChallengerConfig {
            horizon: Some("2h".parse().expect("horizon")),
            ..guarded()
        }));
        // The variant must have the deciding horizon (here `[engine]`'s first, 1step) and its own model id.
        assert!(bad(ChallengerConfig {
            engine: Some(EngineConfig {
                horizons: vec!["5step".parse().expect("horizon")],
                ..EngineConfig::default()
            }),
            ..guarded()
        }));
        assert!(bad(ChallengerConfig {
            engine: Some(EngineConfig::default()),
            ..guarded()
        }));
    }
}
