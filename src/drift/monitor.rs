//! [`SignalMonitor`]: the set of detectors the engine runs on one standardized signal.
//!
//! The engine feeds standardized values (value / current EWMA volatility): roughly unit scale, but
//! heavy-tailed and with autocorrelated scale, because the EWMA lags the true volatility. So:
//!
//! - detectors of a **level shift** (mean of the residual) see `x` winsorized at `±clip`, so that a single
//!   fat-tailed tick cannot look like a shift: the tabular CUSUM (`level_cusum`), ADWIN, the windowed
//!   recursive-residual CUSUM, and the window tests;
//! - detectors of a **volatility regime change** see `min(x², clip²)`: a one-sided tabular CUSUM
//!   (`vol_cusum`, target 1 = the in-control mean of `x²`) and Page-Hinkley (both directions);
//!   the windowed CUSUM of squares sees the winsorized `x` and squares its recursive residuals itself.
//!
//! Each detector is `enabled` (updated and reported) and optionally `alarm`ing. The defaults alarm only on
//! detectors whose false-alarm rate was measured to be acceptable on a calm, heavy-tailed, volatility-
//! clustered random walk (`calm_random_walk_false_alarms`, at most one alarm in 1,000,000 ticks); the
//! others (the Evidently-style window tests at their usual thresholds, the CUSUM of squares, whose
//! assumptions heavy tails break) are computed and reported in [`DriftState`] without alarming.
//!
//! After an alarm every detector restarts (the new regime is the new reference) and alarms are suppressed
//! for `refractory_updates` updates, so one change gives one alarm, not a storm.

use serde::{Deserialize, Serialize};

use super::adwin::{Adwin, AdwinParams};
use super::cusum::{RecursiveCusum, RecursiveCusumParams, RecursiveTest, TabularCusum, TabularCusumParams};
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
    /// Updates after an alarm during which further alarms are suppressed.
    pub refractory_updates: u64,
    /// Tabular CUSUM on winsorized `x` (level shift).
    pub level_cusum: Slot<TabularCusumParams>,
    /// One-sided tabular CUSUM on `min(x², clip²)` with target 1 (volatility rise).
    pub vol_cusum: Slot<TabularCusumParams>,
    /// ADWIN on winsorized `x` (level shift, adaptive window).
    pub adwin: Slot<AdwinParams>,
    /// Page-Hinkley on `min(x², clip²)` (volatility rise or fall).
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
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            clip: 5.0,
            refractory_updates: 500,
            level_cusum: Slot::new(
                true,
                true,
                TabularCusumParams {
                    target: 0.0,
                    k: 0.5,
                    h: 15.0,
                    two_sided: true,
                },
            ),
            vol_cusum: Slot::new(
                true,
                true,
                TabularCusumParams {
                    target: 1.0,
                    k: 1.0,
                    h: 40.0,
                    two_sided: false,
                },
            ),
            adwin: Slot::new(
                true,
                true,
                AdwinParams {
                    delta: 1e-6,
                    ..AdwinParams::default()
                },
            ),
            page_hinkley: Slot::new(
                true,
                true,
                PageHinkleyParams {
                    min_instances: 30,
                    delta: 0.5,
                    threshold: 60.0,
                    alpha: 1.0 - 0.0001,
                    mode: PhMode::Both,
                },
            ),
            recursive_cusum: Slot::new(
                true,
                true,
                RecursiveCusumParams {
                    test: RecursiveTest::Cusum,
                    window: 500,
                    every: 50,
                    alpha: 1e-5,
                },
            ),
            recursive_cusum_of_squares: Slot::new(
                true,
                false,
                RecursiveCusumParams {
                    test: RecursiveTest::CusumOfSquares,
                    window: 500,
                    every: 50,
                    alpha: 0.01,
                },
            ),
            psi: Slot::new(true, false, WindowTestParams::evidently(WindowMetric::Psi)),
            ks: Slot::new(true, false, WindowTestParams::evidently(WindowMetric::Ks)),
            wasserstein: Slot::new(true, false, WindowTestParams::evidently(WindowMetric::Wasserstein)),
        }
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
        self.level_cusum.params.validate("level_cusum")?;
        self.vol_cusum.params.validate("vol_cusum")?;
        self.adwin.params.validate()?;
        self.page_hinkley.params.validate()?;
        self.recursive_cusum.params.validate()?;
        self.recursive_cusum_of_squares.params.validate()?;
        self.psi.params.validate()?;
        self.ks.params.validate()?;
        self.wasserstein.params.validate()
    }
}

/// What a detector is fed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feed {
    /// `x` winsorized at `±clip`.
    Level,
    /// `min(x², clip²)`.
    Square,
}

/// The detectors a monitor can hold (an enum rather than trait objects: serializable, statically
/// dispatched).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Detector {
    Adwin(Adwin),
    PageHinkley(PageHinkley),
    Tabular(TabularCusum),
    Recursive(RecursiveCusum),
    Window(WindowTest),
}

impl Detector {
    fn as_dyn(&self) -> &dyn DriftDetector {
        match self {
            Detector::Adwin(d) => d,
            Detector::PageHinkley(d) => d,
            Detector::Tabular(d) => d,
            Detector::Recursive(d) => d,
            Detector::Window(d) => d,
        }
    }

    fn update(&mut self, x: f64) -> bool {
        match self {
            Detector::Adwin(d) => d.update(x),
            Detector::PageHinkley(d) => d.update(x),
            Detector::Tabular(d) => d.update(x),
            Detector::Recursive(d) => d.update(x),
            Detector::Window(d) => d.update(x),
        }
    }

    fn reset(&mut self) {
        match self {
            Detector::Adwin(d) => d.reset(),
            Detector::PageHinkley(d) => d.reset(),
            Detector::Tabular(d) => d.reset(),
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
    /// [`DriftConfig::vol_cusum`].
    VolCusum,
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
            DetectorId::VolCusum => "vol_cusum",
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
            DetectorId::VolCusum,
            c.vol_cusum.enabled,
            c.vol_cusum.alarm,
            Feed::Square,
            Detector::Tabular(TabularCusum::new(c.vol_cusum.params)),
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
            Feed::Square,
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
        let level = x.clamp(-self.clip, self.clip);
        let square = level * level;
        let mut fired: Option<usize> = None;
        for (i, e) in self.entries.iter_mut().enumerate() {
            let v = match e.feed {
                Feed::Level => level,
                Feed::Square => square,
            };
            if e.detector.update(v) {
                e.detections += 1;
                if e.alarm && fired.is_none() && self.refractory_left == 0 {
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
            }
            None => self.refractory_left = self.refractory_left.saturating_sub(1),
        }
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
            refractory: self.refractory_left > 0,
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
