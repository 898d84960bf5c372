//! Calibration of a candidate's configuration on the training window, in two steps.
//!
//! 1. **Detector thresholds under the window's own null** ([`null_thresholds`]). The null is the window
//!    without regime changes: a seeded stationary bootstrap (Politis & Romano; blocks of mean length
//!    [`BOOTSTRAP_BLOCK`]) of the window's log returns, which keeps their fat tails and short volatility
//!    clusters but has no lasting change. The returns are standardized by an EWMA volatility with the
//!    engine's `vol_lambda`, as the engine standardizes its input signal, and fed to the input monitor
//!    ([`SignalMonitor`]) with only one alarming detector on at a time, and to the shock detector. For
//!    each one the smallest threshold (bisection on a factor of its configured value, from ×0.5 to ×8)
//!    that gives at most its share of the allowed alarms on the simulated ticks is kept; the share is the
//!    target rate (1 per 1,000,000 ticks) times the simulated ticks, divided by the number of detectors,
//!    so their sum stays within the target. The monitor with every calibrated threshold is then run once
//!    more on the same ticks and its alarm count reported: that count over the simulated ticks is the
//!    figure the target is supported by.
//! 2. **Model settings by prequential replay** ([`search`]): the window replayed through a fresh engine
//!    for each candidate setting (predict, then learn: the loss is what the model would have scored
//!    live), a coordinate search over RLS forgetting, the signal weight's prior and the intervals'
//!    learning rate, each over a fixed grid, in that order, repeated while a pass improves, at most
//!    [`MAX_PASSES`] passes and a bounded number of replays. Loss: the first horizon's RMSE, ties (the
//!    interval rate leaves the point forecast unchanged) broken by its 95% Winkler score. Deterministic:
//!    the same window gives the same configuration, unless the caller's time bound cuts the search short
//!    (reported).

use serde::Serialize;

use super::RetrainError;
use super::holdout::Feeder;
use crate::drift::{Alarm, DetectorId, ShockDetector, Signal, SignalMonitor};
use crate::engine::{Engine, EngineConfig};
use crate::replay::synth::SplitMix64;
use crate::tick::{Factor, Pair, Tick};

/// Mean block length of the stationary bootstrap (observations).
pub const BOOTSTRAP_BLOCK: f64 = 20.0;
/// Target false-alarm rate under the null: alarms per this many ticks, at most one.
pub const TARGET_TICKS_PER_ALARM: f64 = 1_000_000.0;
/// Bisection steps per threshold (the factor's range, ×0.5 to ×8, is halved in log scale each step).
const BISECTION_STEPS: usize = 8;
/// Most passes of the coordinate search.
pub const MAX_PASSES: usize = 2;

/// One calibrated threshold.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Threshold {
    /// The detector.
    pub detector: &'static str,
    /// Its setting, as in `[engine.drift]`.
    pub setting: &'static str,
    /// The configured value before calibration.
    pub before: f64,
    /// The value chosen.
    pub value: f64,
    /// Alarms it gave alone on the simulated null.
    pub alarms: u64,
    /// Whether even the largest value tried gave more alarms than allowed (the largest is kept).
    pub unreached: bool,
}

/// The null calibration's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NullReport {
    /// Simulated ticks.
    pub simulated_ticks: u64,
    /// Alarms allowed on them per detector.
    pub allowed_per_detector: u64,
    /// The thresholds.
    pub thresholds: Vec<Threshold>,
    /// Alarms of every alarming input detector together, with the chosen thresholds, on the same ticks.
    pub alarms: u64,
    /// `alarms` per 1,000,000 simulated ticks.
    pub alarms_per_million: f64,
    /// The bootstrap's seed.
    pub seed: u64,
}

/// A knob of the threshold search: reads and writes one setting, scaled by a factor of its value.
struct ThresholdKnob {
    id: Option<DetectorId>,
    detector: &'static str,
    setting: &'static str,
    get: fn(&EngineConfig) -> f64,
    /// Sets the setting to `base` made `factor` times stricter.
    set: fn(&mut EngineConfig, base: f64, factor: f64),
}

fn knobs(cfg: &EngineConfig) -> Vec<ThresholdKnob> {
    let d = &cfg.drift;
    let input = &cfg.signals.input;
    let on = |id: DetectorId, enabled: bool, alarm: bool| enabled && alarm && input.contains(&id);
    let mut k = Vec::new();
    if on(DetectorId::LevelCusum, d.level_cusum.enabled, d.level_cusum.alarm) {
        k.push(ThresholdKnob {
            id: Some(DetectorId::LevelCusum),
            detector: "level_cusum",
            setting: "level_cusum.params.h",
            get: |c| c.drift.level_cusum.params.h,
            set: |c, b, f| c.drift.level_cusum.params.h = b * f,
        });
    }
    if on(DetectorId::VolShift, d.vol_shift.enabled, d.vol_shift.alarm) {
        k.push(ThresholdKnob {
            id: Some(DetectorId::VolShift),
            detector: "vol_shift",
            setting: "vol_shift.params.h",
            get: |c| c.drift.vol_shift.params.h,
            set: |c, b, f| c.drift.vol_shift.params.h = b * f,
        });
    }
    if on(DetectorId::PageHinkley, d.page_hinkley.enabled, d.page_hinkley.alarm) {
        k.push(ThresholdKnob {
            id: Some(DetectorId::PageHinkley),
            detector: "page_hinkley",
            setting: "page_hinkley.params.threshold",
            get: |c| c.drift.page_hinkley.params.threshold,
            set: |c, b, f| c.drift.page_hinkley.params.threshold = b * f,
        });
    }
    if on(DetectorId::Adwin, d.adwin.enabled, d.adwin.alarm) {
        // ADWIN's cut grows with ln(1/δ): a factor f on the threshold is δ^f.
        k.push(ThresholdKnob {
            id: Some(DetectorId::Adwin),
            detector: "adwin",
            setting: "adwin.params.delta",
            get: |c| c.drift.adwin.params.delta,
            set: |c, b, f| c.drift.adwin.params.delta = b.powf(f).max(1e-300),
        });
    }
    if d.shock.enabled {
        // Both ends of the shock threshold's range move together, so its interpolation keeps its shape.
        k.push(ThresholdKnob {
            id: None,
            detector: "shock",
            setting: "shock.k_slow",
            get: |c| c.drift.shock.k_slow,
            set: |c, b, f| {
                let ratio = c.drift.shock.k_fast / c.drift.shock.k_slow;
                c.drift.shock.k_slow = b * f;
                c.drift.shock.k_fast = b * f * ratio;
            },
        });
    }
    k
}

/// Sets the alarming detectors' thresholds of `cfg` so the expected false-alarm rate under the null of
/// `returns` (the window's log returns) is at most one per [`TARGET_TICKS_PER_ALARM`] ticks, on
/// `simulated` bootstrap ticks spaced `spacing_us` apart (see the module docs).
///
/// # Errors
/// [`RetrainError::Engine`] when a threshold tried is refused by the detectors (a defect of the range).
pub fn null_thresholds(
    cfg: &EngineConfig,
    returns: &[f64],
    spacing_us: i64,
    simulated: u64,
    seed: u64,
) -> Result<(EngineConfig, NullReport), RetrainError> {
    let mut out = cfg.clone();
    let knobs = knobs(cfg);
    let allowed_total = (simulated as f64 / TARGET_TICKS_PER_ALARM).floor() as u64;
    let allowed = allowed_total / (knobs.len().max(1) as u64);
    let mut thresholds = Vec::new();
    let usable: Vec<f64> = returns.iter().copied().filter(|r| r.is_finite()).collect();
    if usable.len() < 2 || simulated == 0 {
        return Ok((
            out,
            NullReport {
                simulated_ticks: 0,
                allowed_per_detector: 0,
                thresholds,
                alarms: 0,
                alarms_per_million: 0.0,
                seed,
            },
        ));
    }
    let null = NullSim {
        returns: &usable,
        lambda: cfg.model.vol_lambda,
        spacing_us: spacing_us.max(1),
        ticks: simulated,
        seed,
    };
    for k in &knobs {
        let base = (k.get)(cfg);
        let alarms_at = |f: f64| -> Result<u64, RetrainError> {
            let mut c = cfg.clone();
            (k.set)(&mut c, base, f);
            null.alarms(&c, k.id.into_iter().collect(), k.id.is_none())
        };
        let (mut lo, mut hi) = (0.5f64, 8.0f64);
        let at_hi = alarms_at(hi)?;
        let (factor, alarms, unreached) = if at_hi > allowed {
            (hi, at_hi, true)
        } else {
            let at_lo = alarms_at(lo)?;
            if at_lo <= allowed {
                (lo, at_lo, false)
            } else {
                let mut best = (hi, at_hi);
                for _ in 0..BISECTION_STEPS {
                    let mid = (lo * hi).sqrt();
                    let a = alarms_at(mid)?;
                    if a <= allowed {
                        hi = mid;
                        best = (mid, a);
                    } else {
                        lo = mid;
                    }
                }
                (best.0, best.1, false)
            }
        };
        (k.set)(&mut out, base, factor);
        thresholds.push(Threshold {
            detector: k.detector,
            setting: k.setting,
            before: base,
            value: (k.get)(&out),
            alarms,
            unreached,
        });
    }
    let ids: Vec<DetectorId> = knobs.iter().filter_map(|k| k.id).collect();
    let alarms = null.alarms(&out, ids, knobs.iter().any(|k| k.id.is_none()))?;
    Ok((
        out,
        NullReport {
            simulated_ticks: simulated,
            allowed_per_detector: allowed,
            thresholds,
            alarms,
            alarms_per_million: alarms as f64 * 1e6 / simulated as f64,
            seed,
        },
    ))
}

/// The simulated null: a stationary bootstrap of the window's returns.
struct NullSim<'a> {
    returns: &'a [f64],
    lambda: f64,
    spacing_us: i64,
    ticks: u64,
    seed: u64,
}

impl NullSim<'_> {
    /// Alarms on the simulated ticks of the input monitor with only `detectors` on, plus the shock
    /// detector's when `shock`.
    fn alarms(&self, cfg: &EngineConfig, detectors: Vec<DetectorId>, shock: bool) -> Result<u64, RetrainError> {
        // Only the detectors under test run: the informational ones cost time and raise nothing.
        let drift = cfg.drift.restricted_to(&detectors);
        let ids = detectors;
        let any_monitor = !ids.is_empty();
        let mut monitor = SignalMonitor::new(Signal::Input, &drift).map_err(|e| RetrainError::Engine(e.to_string()))?;
        let mut shock_det = shock.then(|| ShockDetector::new(&cfg.drift.shock));
        let mut rng = SplitMix64::new(self.seed);
        let n = self.returns.len();
        let mut pos = (rng.next_u64() % n as u64) as usize;
        let mut var = self.returns.iter().map(|r| r * r).sum::<f64>() / n as f64;
        let floor = var * 1e-6 + f64::MIN_POSITIVE;
        let mut buf: Vec<Alarm> = Vec::with_capacity(4);
        let mut alarms = 0u64;
        let mut ts = 0i64;
        for _ in 0..self.ticks {
            if rng.uniform() < 1.0 / BOOTSTRAP_BLOCK {
                pos = (rng.next_u64() % n as u64) as usize;
            } else {
                pos = (pos + 1) % n;
            }
            let r = self.returns[pos];
            ts = ts.saturating_add(self.spacing_us);
            buf.clear();
            if let Some(s) = shock_det.as_mut() {
                s.update(ts, r, &mut buf);
            }
            if any_monitor {
                let z = r / var.max(floor).sqrt();
                monitor.update(ts, z, &mut buf);
            }
            var = self.lambda * var + (1.0 - self.lambda) * r * r;
            alarms += buf.len() as u64;
        }
        Ok(alarms)
    }
}

/// One setting of the coordinate search.
struct Knob {
    name: &'static str,
    values: &'static [f64],
    get: fn(&EngineConfig) -> f64,
    set: fn(&mut EngineConfig, f64),
}

/// The grids searched (the defaults are on them, so the search can keep them).
const SEARCH: [Knob; 3] = [
    Knob {
        name: "model.forgetting",
        values: &[0.99, 0.995, 0.998, 0.999, 0.9995, 1.0],
        get: |c| c.model.forgetting,
        set: |c, v| c.model.forgetting = v,
    },
    Knob {
        name: "model.weight_prior",
        values: &[3.0, 10.0, 30.0, 100.0, 300.0],
        get: |c| c.model.weight_prior,
        set: |c, v| c.model.weight_prior = v,
    },
    Knob {
        name: "model.interval_gamma",
        values: &[0.002, 0.005, 0.01, 0.02],
        get: |c| c.model.interval_gamma,
        set: |c, v| c.model.interval_gamma = v,
    },
];

/// A prequential loss on the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Loss {
    /// Forecasts of the first horizon scored.
    pub n: u64,
    /// Their RMSE (price units).
    pub rmse: f64,
    /// Their mean 95% Winkler score.
    pub winkler95: f64,
}

impl Loss {
    /// Whether `self` is better than `other`: a lower RMSE, or the same (to 1e-9 relative) and a lower
    /// Winkler score. Nothing scored is worst.
    pub fn better_than(&self, other: &Loss) -> bool {
        if self.n == 0 {
            return false;
        }
        if other.n == 0 {
            return true;
        }
        let tol = 1e-9 * other.rmse.abs().max(f64::MIN_POSITIVE);
        if (self.rmse - other.rmse).abs() <= tol {
            self.winkler95 < other.winkler95
        } else {
            self.rmse < other.rmse
        }
    }
}

/// One setting tried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    /// The setting.
    pub setting: &'static str,
    /// Its value.
    pub value: f64,
    /// The window's loss with it (the others as chosen so far).
    pub loss: Loss,
}

/// The search's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Search {
    /// The settings chosen (name, value).
    pub chosen: Vec<(&'static str, f64)>,
    /// The loss of the starting configuration.
    pub start: Loss,
    /// The loss of the configuration chosen.
    pub best: Loss,
    /// Replays of the window made (the start included).
    pub evaluations: usize,
    /// Whether the bound on replays or the caller's time bound ended the search early.
    pub cut_short: bool,
    /// Every setting tried, in order.
    pub trials: Vec<Trial>,
}

/// The prequential loss of `cfg` on the window.
///
/// # Errors
/// [`RetrainError::Engine`] when the engine refuses the configuration.
pub fn loss(pair: Pair, cfg: &EngineConfig, ticks: &[Tick], factors: &[Factor]) -> Result<Loss, RetrainError> {
    let mut engine = Engine::new(pair, cfg).map_err(|e| RetrainError::Engine(e.to_string()))?;
    Feeder::default().feed(&mut engine, ticks, factors);
    Ok(engine.summary().horizons.first().map_or(
        Loss {
            n: 0,
            rmse: f64::INFINITY,
            winkler95: f64::INFINITY,
        },
        |h| Loss {
            n: h.n,
            rmse: h.rmse,
            winkler95: h.winkler95,
        },
    ))
}

/// The coordinate search from `start` (see the module docs), with at most `max_evals` replays and
/// stopping early when `out_of_time()` says so.
///
/// # Errors
/// [`RetrainError::Engine`] when the starting configuration is refused.
pub fn search(
    pair: Pair,
    start: &EngineConfig,
    ticks: &[Tick],
    factors: &[Factor],
    max_evals: usize,
    out_of_time: &dyn Fn() -> bool,
) -> Result<(EngineConfig, Search), RetrainError> {
    let mut current = start.clone();
    let start_loss = loss(pair, &current, ticks, factors)?;
    let mut best = start_loss;
    let mut evaluations = 1usize;
    let mut trials = Vec::new();
    let mut cut_short = false;
    'passes: for _ in 0..MAX_PASSES {
        let mut changed = false;
        for knob in &SEARCH {
            let now = (knob.get)(&current);
            let mut knob_best: Option<(f64, Loss)> = None;
            for &v in knob.values {
                if v == now {
                    continue;
                }
                if evaluations >= max_evals || out_of_time() {
                    cut_short = true;
                    break 'passes;
                }
                let mut c = current.clone();
                (knob.set)(&mut c, v);
                if c.validate().is_err() {
                    continue;
                }
                let l = loss(pair, &c, ticks, factors)?;
                evaluations += 1;
                trials.push(Trial {
                    setting: knob.name,
                    value: v,
                    loss: l,
                });
                let incumbent = knob_best.map_or(best, |(_, b)| b);
                if l.better_than(&incumbent) {
                    knob_best = Some((v, l));
                }
            }
            if let Some((v, l)) = knob_best {
                (knob.set)(&mut current, v);
                best = l;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let chosen = SEARCH.iter().map(|k| (k.name, (k.get)(&current))).collect();
    Ok((
        current,
        Search {
            chosen,
            start: start_loss,
            best,
            evaluations,
            cut_short,
            trials,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Source;

    fn walk(n: usize, seed: u64) -> Vec<Tick> {
        let mut rng = SplitMix64::new(seed);
        let mut p = 17.0f64;
        (0..n)
            .map(|i| {
                p *= (0.005 * rng.student_t_unit(4)).exp();
                Tick {
                    pair: Pair::parse("USDMXN").unwrap(),
                    ts_us: 1_600_000_000_000_000 + i as i64 * 86_400_000_000,
                    bid: None,
                    ask: None,
                    mid: Some(p),
                    source: Source::UNKNOWN,
                    seq: None,
                    arrival_us: None,
                }
            })
            .collect()
    }

    fn daily() -> EngineConfig {
        EngineConfig {
            horizons: vec!["1step".parse().unwrap(), "5step".parse().unwrap()],
            ..EngineConfig::default()
        }
    }

    #[test]
    fn the_search_is_deterministic_bounded_and_never_worse_than_its_start() {
        let ticks = walk(600, 3);
        let pair = ticks[0].pair;
        let (c1, s1) = search(pair, &daily(), &ticks, &[], 12, &|| false).unwrap();
        let (c2, s2) = search(pair, &daily(), &ticks, &[], 12, &|| false).unwrap();
        assert_eq!(c1, c2);
        assert_eq!(s1, s2);
        assert!(s1.evaluations <= 12 && s1.cut_short, "{s1:?}");
        assert!(!s1.start.better_than(&s1.best), "{s1:?}");
        let (_, s3) = search(pair, &daily(), &ticks, &[], 100, &|| true).unwrap();
        assert_eq!((s3.evaluations, s3.cut_short), (1, true));
    }

    #[test]
    fn null_thresholds_meet_their_allowance_and_loosen_for_wilder_nulls() {
        let calm: Vec<f64> = {
            let mut rng = SplitMix64::new(5);
            (0..1_000).map(|_| 0.004 * rng.normal()).collect()
        };
        let cfg = daily();
        let (out, rep) = null_thresholds(&cfg, &calm, 86_400_000_000, 200_000, 1).unwrap();
        assert_eq!(rep.simulated_ticks, 200_000);
        assert_eq!(rep.allowed_per_detector, 0);
        assert!(rep.thresholds.iter().all(|t| t.unreached || t.alarms == 0), "{rep:?}");
        assert!(rep.thresholds.iter().any(|t| t.detector == "level_cusum"));
        out.validate().unwrap();
        // Fat tails (a few 10-sigma days) need a higher shock threshold than Gaussian returns.
        let mut wild = calm.clone();
        for k in (0..wild.len()).step_by(97) {
            wild[k] *= 12.0;
        }
        let (_, rep2) = null_thresholds(&cfg, &wild, 86_400_000_000, 200_000, 1).unwrap();
        let shock = |r: &NullReport| r.thresholds.iter().find(|t| t.detector == "shock").map(|t| t.value);
        assert!(shock(&rep2) > shock(&rep), "{rep:?} {rep2:?}");
        // Same inputs, same thresholds.
        let (_, again) = null_thresholds(&cfg, &calm, 86_400_000_000, 200_000, 1).unwrap();
        assert_eq!(rep, again);
    }
}
