//! [`SignalMonitor`]: the set of detectors the engine runs on one standardized signal.
//!
//! The engine feeds standardized values (value / current EWMA volatility, λ = 0.94): roughly unit scale,
//! but heavy-tailed and with autocorrelated scale, because the EWMA lags the true volatility. So:
//!
//! - detectors of a **level shift** (the mean of the residual) see `x` winsorized at `±clip`, so that one
//!   fat-tailed tick cannot look like a shift: the tabular CUSUM (`level_cusum`, which re-estimates its
//!   target after an alarm so a lasting shift gives one alarm), ADWIN, Page-Hinkley, the windowed
//!   recursive-residual CUSUM and CUSUM of squares, and the window tests (PSI, KS, Wasserstein);
//! - the detector of a **volatility rise** (`vol_shift`, [`VolShiftCusum`]) sees the exact `x`: it undoes
//!   the EWMA standardization to compare each squared return with a slow baseline, because `x²` alone
//!   forgets a volatility jump within a few dozen ticks.
//!
//! Each detector is `enabled` (updated and reported in [`DriftState`]) and optionally `alarm`ing. By
//! default only `level_cusum`, `vol_shift` and `adwin` raise alarms: their thresholds were calibrated on
//! calm Student-t(4) GARCH(1,1) random walks standardized as the engine does (`calibration::sweep`,
//! `tests::calm_random_walk_false_alarms`): 0 alarms in 6 × 1,000,000 calm ticks. The others detect up to
//! a few dozen times per million calm ticks at their defaults, and tens to hundreds at their textbook or
//! Evidently thresholds (heavy tails and volatility clustering break their i.i.d. assumptions), so they
//! are reported, not alarmed on (table below).
//!
//! Measured on 20 seeded runs (5,000 calm ticks, then the change): a mean shift of one volatility is
//! detected in every run, median delay 52 ticks, worst 62; a sustained ×4 volatility jump is detected in
//! 5 of 20 runs within 1,000 ticks (delays 11–43); ×8 in 14 of 20 (median 16). The calm process itself
//! has volatility bursts of that size which decay within a few hundred ticks, so at one false alarm per
//! million ticks a ×4 jump is not reliably separable from them.
//!
//! After an alarm every detector restarts (the new regime is the new reference) and alarms are suppressed
//! for the longer of `refractory_updates` updates and `refractory_secs` of tick time, so one change gives
//! one alarm per signal, not a storm, at any data rate: a count of updates alone lasts 2 ms at 10,000
//! ticks a second, and a duration alone means nothing for daily fixings, where 20 updates are a month.
//!
//! Expected alarms under the null (calm Student-t(4) GARCH(1,1) random walks, standardized as the engine
//! does; `tests::calm_random_walk_false_alarms` and `calm_random_walk_other_seeds` on 6 × 1,000,000
//! values, `tests::null_detection_rates` for the figures per detector):
//!
//! | detector | alarms by default | detections per 1,000,000 calm values |
//! |---|---|---|
//! | `level_cusum` | yes | 0 |
//! | `vol_shift` | yes | 0 |
//! | `adwin` | yes | 0 |
//! | `page_hinkley` | no | 26 |
//! | `recursive_cusum` | no | 0 |
//! | `recursive_cusum_of_squares` | no | 34 |
//! | `psi` | no | 0 (of 200 evaluations) |
//! | `ks` | no | 5 (of 200 evaluations) |
//! | `wasserstein` | no | 2 (of 200 evaluations) |
//!
//! A real stream is not a calm random walk: its volatility regimes and level shifts are what the alarms
//! are for, so its alarm rate is that of its regime changes.
//!
//! Cost: about 65 ns per update for the three alarming detectors and about 350 ns for all nine (release,
//! one core); disable the informational ones in the config when the budget is tight.

use serde::{Deserialize, Serialize};

use super::adwin::{Adwin, AdwinParams};
use super::cusum::{
    RecursiveCusum, RecursiveCusumParams, RecursiveTest, TabularCusum, TabularCusumParams, VolShiftCusum,
    VolShiftParams,
};
use super::page_hinkley::{PageHinkley, PageHinkleyParams, PhMode};
use super::window_test::{WindowMetric, WindowTest, WindowTestParams};
use super::{Alarm, DriftDetector, DriftError, Signal, check};

/// One detector's switch and parameters in a [`DriftConfig`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Slot<P> {
    /// Run the detector (and report it in [`DriftState`]).
    pub enabled: bool,
    /// Let its detections raise [`Alarm`]s (else they are only counted).
    pub alarm: bool,
    /// The detector's own parameters.
    pub params: P,
}

impl<P: Default> Default for Slot<P> {
    fn default() -> Self {
        Slot {
            enabled: true,
            alarm: true,
            params: P::default(),
        }
    }
}

impl<P> Slot<P> {
    fn new(enabled: bool, alarm: bool, params: P) -> Slot<P> {
        Slot { enabled, alarm, params }
    }
}

/// Configuration of the drift monitors (one per signal), with defaults calibrated for standardized FX
/// ticks. Built from the engine's TOML/JSON config; unknown fields are refused so typos do not pass
/// silently.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DriftConfig {
    /// Winsorizing bound on `|x|` before the detectors (standard deviations).
    pub clip: f64,
    /// Updates after an alarm during which further alarms are suppressed (with `refractory_secs`: the
    /// longer of both).
    pub refractory_updates: u64,
    /// Tick time after an alarm during which further alarms are suppressed, in seconds. A checkpoint
    /// written before this setting existed restores with 0 (updates only), as it ran.
    #[serde(deserialize_with = "crate::evolve::since_v3")]
    pub refractory_secs: f64,
    /// Tabular CUSUM on winsorized `x` (level shift).
    pub level_cusum: Slot<TabularCusumParams>,
    /// Volatility-rise CUSUM on the raw standardized `x` (see [`VolShiftCusum`]).
    pub vol_shift: Slot<VolShiftParams>,
    /// ADWIN on winsorized `x` (level shift, adaptive window).
    pub adwin: Slot<AdwinParams>,
    /// Page-Hinkley on winsorized `x` (level shift up or down).
    pub page_hinkley: Slot<PageHinkleyParams>,
    /// Windowed recursive-residual CUSUM on winsorized `x` (level shift).
    pub recursive_cusum: Slot<RecursiveCusumParams>,
    /// Windowed recursive-residual CUSUM of squares on winsorized `x` (variance change).
    pub recursive_cusum_of_squares: Slot<RecursiveCusumParams>,
    /// PSI of the current versus the reference window.
    pub psi: Slot<WindowTestParams>,
    /// Two-sample Kolmogorov–Smirnov test of the current versus the reference window.
    pub ks: Slot<WindowTestParams>,
    /// Normed Wasserstein distance of the current versus the reference window.
    pub wasserstein: Slot<WindowTestParams>,
    /// The shock detector on the input (`[engine.drift.shock]`; its own refractory in observations and
    /// tick time). Added in checkpoint format 3: an older record reads the default.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    pub shock: super::shock::ShockConfig,
}

impl Default for DriftConfig {
    /// Calibrated by `calibration::sweep` and `calm_random_walk_false_alarms` (see the module docs).
    fn default() -> Self {
        DriftConfig {
            clip: 5.0,
            refractory_updates: 20,
            refractory_secs: 60.0,
            level_cusum: Slot::new(
                true,
                true,
                TabularCusumParams {
                    target: 0.0,
                    k: 0.4,
                    h: 22.0,
                    two_sided: true,
                    rebase_updates: 500,
                },
            ),
            vol_shift: Slot::new(true, true, VolShiftParams::default()),
            adwin: Slot::new(
                true,
                true,
                AdwinParams {
                    delta: 1e-5,
                    ..AdwinParams::default()
                },
            ),
            page_hinkley: Slot::new(
                true,
                false,
                PageHinkleyParams {
                    min_instances: 30,
                    delta: 0.5,
                    threshold: 80.0,
                    alpha: 1.0 - 0.0001,
                    mode: PhMode::Both,
                },
            ),
            recursive_cusum: Slot::new(
                true,
                false,
                RecursiveCusumParams {
                    test: RecursiveTest::Cusum,
                    window: 500,
                    every: 500,
                    alpha: 1e-5,
                },
            ),
            recursive_cusum_of_squares: Slot::new(
                true,
                false,
                RecursiveCusumParams {
                    test: RecursiveTest::CusumOfSquares,
                    window: 500,
                    every: 500,
                    alpha: 0.01,
                },
            ),
            psi: Slot::new(true, false, window_defaults(WindowMetric::Psi)),
            ks: Slot::new(true, false, window_defaults(WindowMetric::Ks)),
            wasserstein: Slot::new(true, false, window_defaults(WindowMetric::Wasserstein)),
            shock: super::shock::ShockConfig::default(),
        }
    }
}

impl DriftConfig {
    /// This configuration with only the listed detectors enabled (the engine watches each signal with
    /// the detectors that make sense for it, e.g. the volatility shift on inputs only).
    pub fn restricted_to(&self, ids: &[DetectorId]) -> DriftConfig {
        let mut c = self.clone();
        let keep = |id: DetectorId| ids.contains(&id);
        c.level_cusum.enabled &= keep(DetectorId::LevelCusum);
        c.vol_shift.enabled &= keep(DetectorId::VolShift);
        c.adwin.enabled &= keep(DetectorId::Adwin);
        c.page_hinkley.enabled &= keep(DetectorId::PageHinkley);
        c.recursive_cusum.enabled &= keep(DetectorId::RecursiveCusum);
        c.recursive_cusum_of_squares.enabled &= keep(DetectorId::RecursiveCusumOfSquares);
        c.psi.enabled &= keep(DetectorId::Psi);
        c.ks.enabled &= keep(DetectorId::Ks);
        c.wasserstein.enabled &= keep(DetectorId::Wasserstein);
        c
    }
}

/// Evidently-like window tests on a 1,000-value current window, evaluated every 5,000 updates: each
/// evaluation sorts both windows, and doing that every 1,000 updates cost more than all other detectors
/// together on a tick stream. A distribution change that lasts is still seen within 5,000 updates.
fn window_defaults(metric: WindowMetric) -> WindowTestParams {
    WindowTestParams {
        every: 5000,
        ..WindowTestParams::evidently(metric)
    }
}

impl DriftConfig {
    /// Checks every enabled detector's parameters.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DriftError> {
        check(
            self.clip > 0.0 && self.clip.is_finite(),
            "clip",
            "must be finite and > 0",
        )?;
        check(
            (0.0..=MAX_REFRACTORY_SECS).contains(&self.refractory_secs),
            "refractory_secs",
            "must be between 0 and 31,536,000 (a year)",
        )?;
        if self.shock.enabled {
            self.shock.validate()?;
        }
        self.level_cusum.params.validate("level_cusum")?;
        self.vol_shift.params.validate()?;
        self.adwin.params.validate()?;
        self.page_hinkley.params.validate()?;
        self.recursive_cusum.params.validate()?;
        self.recursive_cusum_of_squares.params.validate()?;
        self.psi.params.validate()?;
        self.ks.params.validate()?;
        self.wasserstein.params.validate()
    }
}

/// The longest refractory period in tick time (a year): longer would silence a monitor for good.
const MAX_REFRACTORY_SECS: f64 = 365.0 * 86_400.0;

/// What a detector is fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    /// `x` winsorized at `±clip`.
    Level,
    /// `x` as given (finite), for the volatility reconstruction of [`VolShiftCusum`].
    Raw,
}

/// The detectors a monitor can hold (an enum rather than trait objects: serializable, statically
/// dispatched).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Detector {
    Adwin(Adwin),
    PageHinkley(PageHinkley),
    Tabular(TabularCusum),
    VolShift(VolShiftCusum),
    Recursive(RecursiveCusum),
    Window(WindowTest),
}

impl Detector {
    fn as_dyn(&self) -> &dyn DriftDetector {
        match self {
            Detector::Adwin(d) => d,
            Detector::PageHinkley(d) => d,
            Detector::Tabular(d) => d,
            Detector::VolShift(d) => d,
            Detector::Recursive(d) => d,
            Detector::Window(d) => d,
        }
    }

    fn update(&mut self, x: f64) -> bool {
        match self {
            Detector::Adwin(d) => d.update(x),
            Detector::PageHinkley(d) => d.update(x),
            Detector::Tabular(d) => d.update(x),
            Detector::VolShift(d) => d.update(x),
            Detector::Recursive(d) => d.update(x),
            Detector::Window(d) => d.update(x),
        }
    }

    fn reset(&mut self) {
        match self {
            Detector::Adwin(d) => d.reset(),
            Detector::PageHinkley(d) => d.reset(),
            Detector::Tabular(d) => d.reset(),
            Detector::VolShift(d) => d.reset(),
            Detector::Recursive(d) => d.reset(),
            Detector::Window(d) => d.reset(),
        }
    }
}

/// Which slot of the config a monitor's detector comes from; its name is used in alarms and state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorId {
    /// [`DriftConfig::level_cusum`].
    LevelCusum,
    /// [`DriftConfig::vol_shift`].
    VolShift,
    /// [`DriftConfig::adwin`].
    Adwin,
    /// [`DriftConfig::page_hinkley`].
    PageHinkley,
    /// [`DriftConfig::recursive_cusum`].
    RecursiveCusum,
    /// [`DriftConfig::recursive_cusum_of_squares`].
    RecursiveCusumOfSquares,
    /// [`DriftConfig::psi`].
    Psi,
    /// [`DriftConfig::ks`].
    Ks,
    /// [`DriftConfig::wasserstein`].
    Wasserstein,
}

impl DetectorId {
    /// The config field name, e.g. `level_cusum`.
    pub fn name(self) -> &'static str {
        match self {
            DetectorId::LevelCusum => "level_cusum",
            DetectorId::VolShift => "vol_shift",
            DetectorId::Adwin => "adwin",
            DetectorId::PageHinkley => "page_hinkley",
            DetectorId::RecursiveCusum => "recursive_cusum",
            DetectorId::RecursiveCusumOfSquares => "recursive_cusum_of_squares",
            DetectorId::Psi => "psi",
            DetectorId::Ks => "ks",
            DetectorId::Wasserstein => "wasserstein",
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    /// The config slot, whose name is used in alarms.
    id: DetectorId,
    feed: Feed,
    alarm: bool,
    detector: Detector,
    /// Detections, alarming or not.
    detections: u64,
    /// Alarms raised.
    alarms: u64,
}

/// Per-signal drift monitor; see the module docs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignalMonitor {
    signal: Signal,
    clip: f64,
    refractory_updates: u64,
    /// Updates left in the current refractory period.
    refractory_left: u64,
    /// Tick time after an alarm during which alarms are suppressed (µs; 0 before format 3).
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    refractory_us: i64,
    /// Tick time of the last alarm.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    last_alarm_us: Option<i64>,
    /// Tick time of the last finite update (for [`DriftState::refractory`]).
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    last_update_us: Option<i64>,
    /// Finite updates seen.
    updates: u64,
    /// Non-finite values skipped.
    skipped: u64,
    entries: Vec<Entry>,
}

/// One detector's line in [`DriftState`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DetectorState {
    /// The detector's config name.
    pub name: &'static str,
    /// What it is fed.
    pub feed: Feed,
    /// Its statistic now.
    pub statistic: f64,
    /// Its threshold.
    pub threshold: f64,
    /// Whether its last update was a detection.
    pub in_alarm: bool,
    /// Whether its detections raise alarms.
    pub alarming: bool,
    /// Detections so far (alarming or not).
    pub detections: u64,
    /// Alarms raised so far.
    pub alarms: u64,
}

/// A small summary of a monitor for publishing (e.g. on a status subject) and for reports.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DriftState {
    /// The signal watched.
    pub signal: Signal,
    /// Finite updates seen.
    pub updates: u64,
    /// Non-finite values skipped.
    pub skipped: u64,
    /// Whether alarms are currently suppressed after a recent alarm.
    pub refractory: bool,
    /// Per detector.
    pub detectors: Vec<DetectorState>,
}

impl SignalMonitor {
    /// Builds the monitor for one signal from the config.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] when the config is invalid.
    pub fn new(signal: Signal, cfg: &DriftConfig) -> Result<SignalMonitor, DriftError> {
        cfg.validate()?;
        let mut entries = Vec::new();
        let mut add = |id: DetectorId, enabled: bool, alarm: bool, feed: Feed, detector: Detector| {
            if enabled {
                entries.push(Entry {
                    id,
                    feed,
                    alarm,
                    detector,
                    detections: 0,
                    alarms: 0,
                });
            }
        };
        let c = cfg;
        add(
            DetectorId::LevelCusum,
            c.level_cusum.enabled,
            c.level_cusum.alarm,
            Feed::Level,
            Detector::Tabular(TabularCusum::new(c.level_cusum.params)),
        );
        add(
            DetectorId::VolShift,
            c.vol_shift.enabled,
            c.vol_shift.alarm,
            Feed::Raw,
            Detector::VolShift(VolShiftCusum::new(c.vol_shift.params)),
        );
        add(
            DetectorId::Adwin,
            c.adwin.enabled,
            c.adwin.alarm,
            Feed::Level,
            Detector::Adwin(Adwin::new(c.adwin.params)),
        );
        add(
            DetectorId::PageHinkley,
            c.page_hinkley.enabled,
            c.page_hinkley.alarm,
            Feed::Level,
            Detector::PageHinkley(PageHinkley::new(c.page_hinkley.params)),
        );
        let rc = RecursiveCusumParams {
            test: RecursiveTest::Cusum,
            ..c.recursive_cusum.params
        };
        add(
            DetectorId::RecursiveCusum,
            c.recursive_cusum.enabled,
            c.recursive_cusum.alarm,
            Feed::Level,
            Detector::Recursive(RecursiveCusum::new(rc)?),
        );
        let rs = RecursiveCusumParams {
            test: RecursiveTest::CusumOfSquares,
            ..c.recursive_cusum_of_squares.params
        };
        add(
            DetectorId::RecursiveCusumOfSquares,
            c.recursive_cusum_of_squares.enabled,
            c.recursive_cusum_of_squares.alarm,
            Feed::Level,
            Detector::Recursive(RecursiveCusum::new(rs)?),
        );
        for (id, slot, metric) in [
            (DetectorId::Psi, &c.psi, WindowMetric::Psi),
            (DetectorId::Ks, &c.ks, WindowMetric::Ks),
            (DetectorId::Wasserstein, &c.wasserstein, WindowMetric::Wasserstein),
        ] {
            let p = WindowTestParams { metric, ..slot.params };
            add(
                id,
                slot.enabled,
                slot.alarm,
                Feed::Level,
                Detector::Window(WindowTest::new(p)?),
            );
        }
        Ok(SignalMonitor {
            signal,
            clip: cfg.clip,
            refractory_updates: cfg.refractory_updates,
            refractory_left: 0,
            // Whole microseconds; the value is at most a year (validated), so the cast is exact.
            refractory_us: (cfg.refractory_secs * 1e6).round() as i64,
            last_alarm_us: None,
            last_update_us: None,
            updates: 0,
            skipped: 0,
            entries,
        })
    }

    /// Feeds one standardized value observed at `ts_us`; pushes at most one [`Alarm`] into `alarms`.
    /// Non-finite values are counted and skipped.
    pub fn update(&mut self, ts_us: i64, x: f64, alarms: &mut Vec<Alarm>) {
        if !x.is_finite() {
            self.skipped += 1;
            return;
        }
        self.updates += 1;
        self.last_update_us = Some(ts_us);
        let level = x.clamp(-self.clip, self.clip);
        let quiet = !self.in_refractory(ts_us);
        let mut fired: Option<usize> = None;
        for (i, e) in self.entries.iter_mut().enumerate() {
            let v = match e.feed {
                Feed::Level => level,
                Feed::Raw => x,
            };
            if e.detector.update(v) {
                e.detections += 1;
                if e.alarm && fired.is_none() && quiet {
                    fired = Some(i);
                }
            }
        }
        match fired {
            Some(i) => {
                let e = &mut self.entries[i];
                e.alarms += 1;
                let d = e.detector.as_dyn();
                alarms.push(Alarm {
                    detector: e.id.name(),
                    signal: self.signal,
                    ts_us,
                    statistic: d.statistic(),
                    threshold: d.threshold(),
                });
                for e in &mut self.entries {
                    e.detector.reset();
                }
                self.refractory_left = self.refractory_updates;
                self.last_alarm_us = Some(ts_us);
            }
            None => self.refractory_left = self.refractory_left.saturating_sub(1),
        }
    }

    /// Whether alarms are suppressed at `ts_us`: fewer than `refractory_updates` updates, or less than
    /// `refractory_secs` of tick time, since the last alarm. Tick time is the stream's, never a clock's.
    fn in_refractory(&self, ts_us: i64) -> bool {
        self.refractory_left > 0
            || self
                .last_alarm_us
                .is_some_and(|at| ts_us.saturating_sub(at) < self.refractory_us)
    }

    /// The signal watched.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Total alarms raised by this monitor.
    pub fn alarm_count(&self) -> u64 {
        self.entries.iter().map(|e| e.alarms).sum()
    }

    /// A summary of every detector.
    pub fn state(&self) -> DriftState {
        DriftState {
            signal: self.signal,
            updates: self.updates,
            skipped: self.skipped,
            refractory: self.last_update_us.is_some_and(|ts| self.in_refractory(ts)),
            detectors: self
                .entries
                .iter()
                .map(|e| {
                    let d = e.detector.as_dyn();
                    DetectorState {
                        name: e.id.name(),
                        feed: e.feed,
                        statistic: d.statistic(),
                        threshold: d.threshold(),
                        in_alarm: d.drift_detected(),
                        alarming: e.alarm,
                        detections: e.detections,
                        alarms: e.alarms,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::*;
    use super::*;

    fn monitor() -> SignalMonitor {
        SignalMonitor::new(Signal::Residual, &DriftConfig::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `calm` calm ticks then `after` changed ticks; returns (alarms in the calm part, first alarm
    /// index after the change with its detector).
    fn change_delay(
        seed: u64,
        calm: usize,
        after: usize,
        shift: f64,
        vol: f64,
    ) -> (usize, Option<(usize, &'static str)>) {
        let mut g = StandardizedGarch::new(seed);
        let mut m = monitor();
        let mut alarms = Vec::new();
        for i in 0..calm {
            m.update(i as i64, g.next(0.0, 1.0), &mut alarms);
        }
        let calm_alarms = alarms.len();
        if calm_alarms > 0 {
            println!("seed {seed}: calm alarms {alarms:?}");
        }
        alarms.clear();
        for i in 0..after {
            m.update((calm + i) as i64, g.next(shift, vol), &mut alarms);
            if let Some(a) = alarms.first() {
                return (calm_alarms, Some((i, a.detector)));
            }
        }
        (calm_alarms, None)
    }

    /// Delays (ticks after the change) of the first alarm over 20 seeds: 5,000 calm ticks, then 1,000
    /// changed ones. Returns (calm-period alarms in total, sorted delays of the detected runs).
    fn delays(shift: f64, vol: f64) -> (usize, Vec<usize>) {
        let mut calm_alarms = 0;
        let mut found = Vec::new();
        for seed in 100..120 {
            let (calm, hit) = change_delay(seed, 5_000, 1_000, shift, vol);
            calm_alarms += calm;
            if let Some((d, _)) = hit {
                found.push(d);
            }
        }
        found.sort_unstable();
        (calm_alarms, found)
    }

    #[test]
    fn detects_level_shift_quickly() {
        // A sustained shift of the mean by one (current) volatility; x's mean becomes about 0.7.
        let (calm, found) = delays(1.0, 1.0);
        println!("level shift: calm alarms {calm}, delays {found:?}");
        assert_eq!(calm, 0);
        assert_eq!(found.len(), 20, "every run detected");
        assert!(found[19] < 150, "worst delay {}", found[19]);
        assert!(found[10] < 80, "median delay {}", found[10]);
    }

    #[test]
    fn detects_variance_jump() {
        // A sustained ×4 volatility jump. The engine's fast EWMA standardization hides it from x after
        // a few dozen ticks, and the calm GARCH/Student-t process has volatility bursts of its own that
        // decay within a few hundred ticks, so at the calibrated false-alarm rate (at most one per million
        // calm ticks) a ×4 jump is caught quickly when caught, but only in about a quarter of runs;
        // a ×8 jump is caught in most. Measured, not wished for: see the report in the module docs.
        let (calm, found) = delays(0.0, 4.0);
        println!("variance jump x4: calm alarms {calm}, delays {found:?}");
        assert_eq!(calm, 0);
        assert!(found.len() >= 4, "x4 detected in {} of 20 runs", found.len());
        assert!(found[found.len() / 2] < 100, "median delay {}", found[found.len() / 2]);
        let (_, found) = delays(0.0, 8.0);
        println!("variance jump x8: delays {found:?}");
        assert!(found.len() >= 12, "x8 detected in {} of 20 runs", found.len());
        assert!(found[found.len() / 2] < 100, "median delay {}", found[found.len() / 2]);
    }

    #[test]
    fn one_change_gives_one_alarm() {
        let mut g = StandardizedGarch::new(9);
        let mut m = monitor();
        let mut alarms = Vec::new();
        for i in 0..5000 {
            m.update(i, g.next(0.0, 1.0), &mut alarms);
        }
        // A level shift, then a few thousand ticks in the new regime: one alarm, not a storm.
        for i in 5000..9000 {
            m.update(i, g.next(1.0, 1.0), &mut alarms);
        }
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        println!("{alarms:?}");
        let state = m.state();
        assert_eq!(state.detectors.iter().map(|d| d.alarms).sum::<u64>(), 1);
        serde_json::to_string(&state).unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let mut m = monitor();
        let mut alarms = Vec::new();
        m.update(0, f64::NAN, &mut alarms);
        m.update(1, f64::NEG_INFINITY, &mut alarms);
        m.update(2, 0.3, &mut alarms);
        let s = m.state();
        assert_eq!((s.updates, s.skipped), (1, 2));
        assert!(alarms.is_empty());
    }

    #[test]
    fn checkpoint_round_trip_gives_identical_outputs() {
        let mut g = StandardizedGarch::new(10);
        let xs: Vec<f64> = (0..12_000)
            .map(|i| if i < 6000 { g.next(0.0, 1.0) } else { g.next(0.5, 2.0) })
            .collect();
        let mut m = monitor();
        let mut sink = Vec::new();
        for (i, &x) in xs[..5555].iter().enumerate() {
            m.update(i as i64, x, &mut sink);
        }
        let json = serde_json::to_string(&m).unwrap_or_else(|e| panic!("{e}"));
        let mut restored: SignalMonitor = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for (i, &x) in xs.iter().enumerate().skip(5555) {
            m.update(i as i64, x, &mut a);
            restored.update(i as i64, x, &mut b);
            assert_eq!(a, b);
        }
        assert!(!a.is_empty(), "the change after 6000 is detected");
        assert_eq!(m.state(), restored.state());
    }

    #[test]
    fn config_is_serde_with_defaults_and_refuses_unknown_fields() {
        let cfg: DriftConfig = serde_json::from_str(r#"{"clip": 4.0, "adwin": {"params": {"delta": 0.01}}}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.clip, 4.0);
        assert_eq!(cfg.adwin.params.delta, 0.01);
        assert_eq!(cfg.adwin.params.clock, 32);
        assert!(serde_json::from_str::<DriftConfig>(r#"{"clipp": 4.0}"#).is_err());
        let toml_cfg: DriftConfig =
            toml::from_str("clip = 4.0\n[adwin]\nalarm = false\n[adwin.params]\ndelta = 0.01\n")
                .unwrap_or_else(|e| panic!("{e}"));
        assert!(!toml_cfg.adwin.alarm && toml_cfg.adwin.enabled);
        let text = toml::to_string(&DriftConfig::default()).unwrap_or_else(|e| panic!("{e}"));
        let round: DriftConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(round, DriftConfig::default());
        let bad = DriftConfig {
            clip: -1.0,
            ..DriftConfig::default()
        };
        assert!(SignalMonitor::new(Signal::Input, &bad).is_err());
    }

    /// The calm false-alarm budget the default thresholds were calibrated for (see the module docs): a
    /// calm Student-t(4) GARCH(1,1) random walk of 1,000,000 ticks raises at most one alarm. Run on every
    /// `cargo test` (about 0.6 s per million ticks with the test profile's `opt-level = 1`), not ignored,
    /// since it is the only unit-level check of that budget.
    /// `cargo test --lib calm_random_walk_false_alarms -- --nocapture` prints each detector's counts.
    #[test]
    fn calm_random_walk_false_alarms() {
        let mut g = StandardizedGarch::new(20_240_601);
        let xs: Vec<f64> = (0..1_000_000).map(|_| g.next(0.0, 1.0)).collect();
        let mut m = monitor();
        let mut alarms = Vec::new();
        let start = std::time::Instant::now();
        for (i, &x) in xs.iter().enumerate() {
            m.update(i as i64, x, &mut alarms);
        }
        let elapsed = start.elapsed();
        for d in m.state().detectors {
            println!(
                "{:28} alarming {:5} detections {:4} alarms {} statistic {:.3} threshold {:.3}",
                d.name, d.alarming, d.detections, d.alarms, d.statistic, d.threshold
            );
        }
        println!(
            "alarms: {} {alarms:?}; monitor time {elapsed:?} ({:.0} ns/tick, all 9 detectors)",
            alarms.len(),
            elapsed.as_nanos() as f64 / xs.len() as f64
        );
        assert!(alarms.len() <= 1, "{} false alarms", alarms.len());
        assert!(
            alarms.is_empty(),
            "the module docs claim no alarm on this seed: {alarms:?}"
        );
    }

    /// Each detector's detections per 1,000,000 calm values with no detector alarming (so none is reset
    /// by another's alarm): the null rates in the module docs' table. The alarming three detect nothing;
    /// the reporting-only ones are bounded so that a change of their defaults shows here.
    /// `cargo test --lib null_detection_rates -- --nocapture` prints the figures.
    #[test]
    fn null_detection_rates() {
        let mut cfg = DriftConfig::default();
        for slot in [
            &mut cfg.level_cusum.alarm,
            &mut cfg.vol_shift.alarm,
            &mut cfg.adwin.alarm,
        ] {
            *slot = false;
        }
        let mut m = SignalMonitor::new(Signal::Input, &cfg).unwrap_or_else(|e| panic!("{e}"));
        let mut g = StandardizedGarch::new(20_240_601);
        let mut alarms = Vec::new();
        for i in 0..1_000_000i64 {
            m.update(i * 1_000_000, g.next(0.0, 1.0), &mut alarms);
        }
        assert!(alarms.is_empty());
        let rates: Vec<(&str, u64)> = m.state().detectors.iter().map(|d| (d.name, d.detections)).collect();
        println!("detections per 1,000,000 calm values: {rates:?}");
        for (name, n) in rates {
            // Measured 26, 0, 34, 0, 5 and 2 for the reporting-only ones (the module docs' table).
            let most = match name {
                "level_cusum" | "vol_shift" | "adwin" => 0,
                "page_hinkley" => 50,
                "recursive_cusum" => 5,
                "recursive_cusum_of_squares" => 60,
                _ => 10, // the window tests evaluate 200 times per million values
            };
            assert!(
                n <= most,
                "{name}: {n} detections in 1,000,000 calm values (at most {most})"
            );
        }
    }

    /// A change that keeps the detectors busy (a mean shift of 3 volatilities on a stream of 10,000
    /// updates a second) gives one alarm per `refractory_secs`, not one per `refractory_updates`.
    #[test]
    fn the_refractory_period_also_runs_in_tick_time() {
        let run = |refractory_secs: f64| {
            let cfg = DriftConfig {
                refractory_secs,
                ..DriftConfig::default()
            };
            let mut m = SignalMonitor::new(Signal::Residual, &cfg).unwrap_or_else(|e| panic!("{e}"));
            let mut g = StandardizedGarch::new(7);
            let mut alarms = Vec::new();
            for i in 0..50_000i64 {
                let shift = if (i / 500) % 2 == 0 { 3.0 } else { -3.0 };
                m.update(i * 100, g.next(shift, 1.0), &mut alarms);
            }
            (alarms.len(), m.state().refractory)
        };
        let (by_updates, _) = run(0.0);
        let (by_time, still) = run(60.0);
        assert!(by_updates >= 20, "updates alone: {by_updates} alarms in 5 s");
        assert_eq!(by_time, 1, "60 s of tick time: one alarm in 5 s");
        assert!(still, "the state reports the refractory period");
    }

    /// The same on five other seeds: each stays within the budget of one alarm, and together with the
    /// seed above they raise none, as the module docs state ("0 alarms in 6 × 1,000,000 calm ticks").
    #[test]
    fn calm_random_walk_other_seeds() {
        let mut total = 0;
        for seed in 1..=5 {
            let mut g = StandardizedGarch::new(seed);
            let mut m = monitor();
            let mut alarms = Vec::new();
            for i in 0..1_000_000 {
                m.update(i, g.next(0.0, 1.0), &mut alarms);
            }
            let by: Vec<&str> = alarms.iter().map(|a| a.detector).collect();
            println!("seed {seed}: {} alarms {by:?}", alarms.len());
            assert!(alarms.len() <= 1, "seed {seed}: {} false alarms {by:?}", alarms.len());
            total += alarms.len();
        }
        assert_eq!(total, 0, "the module docs claim no alarm in these calm runs");
    }
}

#[cfg(test)]
mod calibration {
    //! Threshold sweeps used to choose the defaults (kept for re-calibration; ignored by default).
    use super::tests_support::*;
    use crate::drift::DriftDetector;
    use crate::drift::adwin::{Adwin, AdwinParams};
    use crate::drift::cusum::{RecursiveCusum, RecursiveCusumParams, VolShiftCusum, VolShiftParams};
    use crate::drift::cusum::{TabularCusum, TabularCusumParams};
    use crate::drift::page_hinkley::PageHinkley;
    use crate::drift::window_test::WindowTest;

    fn delay<D: DriftDetector + Clone>(d: &D, runs: &[(Vec<f64>, Vec<f64>)], f: &dyn Fn(f64) -> f64) -> (f64, usize) {
        let mut total = 0.0;
        let mut worst = 0;
        for (calm, after) in runs {
            let mut d = d.clone();
            for &x in calm {
                d.update(f(x));
            }
            let dl = after.iter().position(|&x| d.update(f(x))).unwrap_or(after.len());
            total += dl as f64;
            worst = worst.max(dl);
        }
        (total / runs.len() as f64, worst)
    }

    /// Per-detector cost: `cargo test --release --lib calibration::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing() {
        let mut g = StandardizedGarch::new(7);
        let xs: Vec<f64> = (0..1_000_000).map(|_| g.next(0.0, 1.0).clamp(-5.0, 5.0)).collect();
        fn time<D: DriftDetector>(name: &str, mut d: D, xs: &[f64]) {
            let start = std::time::Instant::now();
            let mut n = 0;
            for &x in xs {
                n += d.update(x) as usize;
            }
            let ns = start.elapsed().as_nanos() as f64 / xs.len() as f64;
            println!("{name:28} {ns:6.1} ns/update ({n} detections)");
        }
        let cfg = super::DriftConfig::default();
        time("level_cusum", TabularCusum::new(cfg.level_cusum.params), &xs);
        time("vol_shift", VolShiftCusum::new(cfg.vol_shift.params), &xs);
        time("adwin", Adwin::new(cfg.adwin.params), &xs);
        time("page_hinkley", PageHinkley::new(cfg.page_hinkley.params), &xs);
        let rc = |p| RecursiveCusum::new(p).unwrap_or_else(|e| panic!("{e}"));
        time("recursive_cusum", rc(cfg.recursive_cusum.params), &xs);
        let sq = RecursiveCusumParams {
            test: crate::drift::cusum::RecursiveTest::CusumOfSquares,
            ..cfg.recursive_cusum_of_squares.params
        };
        time("recursive_cusum_of_squares", rc(sq), &xs);
        let wt = |p| WindowTest::new(p).unwrap_or_else(|e| panic!("{e}"));
        time("psi", wt(cfg.psi.params), &xs);
        time("ks", wt(cfg.ks.params), &xs);
        time("wasserstein", wt(cfg.wasserstein.params), &xs);
    }

    /// Threshold sweep over five calm 1,000,000-tick paths and 20 change runs:
    /// `cargo test --release --lib calibration::sweep -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn sweep() {
        let calm: Vec<Vec<f64>> = (1..=5)
            .map(|seed| {
                let mut g = StandardizedGarch::new(seed);
                (0..1_000_000).map(|_| g.next(0.0, 1.0)).collect()
            })
            .collect();
        let runs = |shift: f64, vol: f64| -> Vec<(Vec<f64>, Vec<f64>)> {
            (0..20)
                .map(|s| {
                    let mut g = StandardizedGarch::new(1000 + s);
                    let c: Vec<f64> = (0..3000).map(|_| g.next(0.0, 1.0)).collect();
                    let a: Vec<f64> = (0..1000).map(|_| g.next(shift, vol)).collect();
                    (c, a)
                })
                .collect()
        };
        let jump = runs(0.0, 4.0);
        let shift = runs(1.0, 1.0);
        let calm_count = |d: &dyn Fn() -> Box<dyn DriftDetector>, f: &dyn Fn(f64) -> f64| -> Vec<usize> {
            calm.iter()
                .map(|xs| {
                    let mut det = d();
                    xs.iter().filter(|&&x| det.update(f(x))).count()
                })
                .collect()
        };
        for slow in [0.995, 0.998] {
            for k in [0.25, 0.5, 0.75] {
                for h in [24.0, 30.0, 40.0] {
                    let p = VolShiftParams {
                        slow_lambda: slow,
                        k,
                        h,
                        ..Default::default()
                    };
                    let fa = calm_count(&|| Box::new(VolShiftCusum::new(p)), &|x| x);
                    let (mean, worst) = delay(&VolShiftCusum::new(p), &jump, &|x| x);
                    println!("vol slow={slow} k={k} h={h}: calm {fa:?} jump delay mean {mean:.1} worst {worst}");
                }
            }
        }
        let lvl = |x: f64| x.clamp(-5.0, 5.0);
        for (k, h) in [(0.4, 22.0), (0.4, 24.0), (0.5, 20.0)] {
            let p = TabularCusumParams {
                target: 0.0,
                k,
                h,
                two_sided: true,
                rebase_updates: 0,
            };
            let fa = calm_count(&|| Box::new(TabularCusum::new(p)), &lvl);
            let (mean, worst) = delay(&TabularCusum::new(p), &shift, &lvl);
            println!("lvl k={k} h={h}: calm {fa:?} shift delay mean {mean:.1} worst {worst}");
        }
        for delta in [1e-5, 1e-6] {
            let p = AdwinParams {
                delta,
                ..Default::default()
            };
            let fa = calm_count(&|| Box::new(Adwin::new(p)), &lvl);
            let (mean, worst) = delay(&Adwin::new(p), &shift, &lvl);
            println!("adwin delta={delta}: calm {fa:?} shift delay mean {mean:.1} worst {worst}");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use crate::drift::testutil::SplitMix;

    /// A calm FX-like return process as the engine would see it: Student-t(4) innovations with
    /// GARCH(1,1) volatility clustering, standardized by an EWMA volatility (λ = 0.94) of past returns.
    pub struct StandardizedGarch {
        rng: SplitMix,
        sigma2: f64,
        ewma_var: f64,
    }

    impl StandardizedGarch {
        const OMEGA: f64 = 0.005;
        const ALPHA: f64 = 0.03;
        const BETA: f64 = 0.965;
        const LAMBDA: f64 = 0.94;

        pub fn new(seed: u64) -> Self {
            let mut g = StandardizedGarch {
                rng: SplitMix::new(seed),
                sigma2: 1.0,
                ewma_var: 1.0,
            };
            for _ in 0..1000 {
                g.next(0.0, 1.0);
            }
            g
        }

        /// Next standardized value; `mean_shift` in units of the current volatility, `vol_mult` scales it.
        pub fn next(&mut self, mean_shift: f64, vol_mult: f64) -> f64 {
            let z = self.rng.student_t_unit(4);
            let sigma = self.sigma2.sqrt();
            let e = sigma * z;
            self.sigma2 = Self::OMEGA + Self::ALPHA * e * e + Self::BETA * self.sigma2;
            let r = vol_mult * (e + mean_shift * sigma);
            let x = r / self.ewma_var.sqrt();
            self.ewma_var = Self::LAMBDA * self.ewma_var + (1.0 - Self::LAMBDA) * r * r;
            x
        }
    }
}
