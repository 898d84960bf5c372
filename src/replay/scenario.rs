//! Scenarios: a folder under `scenarios/` holding `scenario.toml` (what data, which pair, config overrides)
//! and expectations that `replay` checks, exiting non-zero when one fails.
//!
//! ```toml
//! name = "calm random walk"
//! pair = "USDMXN"
//! data = "ticks.csv"              # relative to the scenario folder; or a [synthetic] table
//! [[factors]]                     # optional slow covariates joined as of each tick
//! file = "../../../shared/data/covariates/tiie_28_daily.csv"
//! name = "TIIE28"
//! lag = "1d"                      # published one day after its date: no look-ahead
//! [config]                        # EngineConfig overrides
//! horizons = ["1step", "5step"]
//! [[expect]]
//! kind = "alarm_between"
//! from = "2008-09-01"
//! to = "2009-03-31"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::drift::Signal;
use crate::engine::EngineConfig;
use crate::horizon::Horizon;
use crate::quality::{Dimension, QuarantineReason};
use crate::replay::report::Report;
use crate::replay::synth::SynthSpec;
use crate::time::parse_ts_us;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The spec could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The spec file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The spec is not valid TOML for a scenario.
    #[error("{path}: {message}")]
    Spec {
        /// The spec file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A factor file joined into a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactorSpec {
    /// CSV with a time column and one value column, relative to the scenario folder.
    pub file: PathBuf,
    /// The factor's name as the model knows it (e.g. `BANXICO_RATE`, `FED_FUNDS`, `TIIE28`).
    pub name: String,
    /// Publication lag added to each observation's date (e.g. `1d`, `40d`), so the model never sees a value
    /// before it was published.
    #[serde(default)]
    pub lag: Option<Horizon>,
}

/// What a scenario expects of the replay. Times are RFC 3339 or dates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expectation {
    /// At least one alarm between `from` and `to` (optionally on one signal or from one detector).
    AlarmBetween {
        /// Start of the window.
        from: String,
        /// End of the window.
        to: String,
        /// Only alarms on this signal count.
        #[serde(default)]
        signal: Option<Signal>,
        /// Only alarms from this detector count.
        #[serde(default)]
        detector: Option<String>,
    },
    /// At most `max` alarms in all (optionally on one signal); `max = 0` means no alarm at all.
    MaxAlarms {
        /// The most alarms allowed.
        max: u64,
        /// Only alarms on this signal count.
        #[serde(default)]
        signal: Option<Signal>,
    },
    /// No alarm between `from` and `to`.
    NoAlarmBetween {
        /// Start of the window.
        from: String,
        /// End of the window.
        to: String,
    },
    /// At least `count` ticks quarantined for `reason`.
    QuarantinedAtLeast {
        /// The reason.
        reason: QuarantineReason,
        /// The least count.
        count: u64,
    },
    /// At most `count` ticks quarantined (for `reason`, or in all).
    QuarantinedAtMost {
        /// The reason; all reasons when absent.
        #[serde(default)]
        reason: Option<QuarantineReason>,
        /// The most allowed.
        count: u64,
    },
    /// At least `count` ticks accepted.
    AcceptedAtLeast {
        /// The least count.
        count: u64,
    },
    /// The coverage of the `level`% interval of `horizon` lies in `[min, max]`.
    Coverage {
        /// The horizon.
        horizon: Horizon,
        /// 80 or 95.
        level: u8,
        /// Lower bound.
        min: f64,
        /// Upper bound.
        max: f64,
    },
    /// RMSE relative to the random walk's, for `horizon`, is at most `max`.
    RmseRatioAtMost {
        /// The horizon.
        horizon: Horizon,
        /// The largest ratio allowed.
        max: f64,
    },
    /// A quality dimension reached at least this status at some point (`warn` or `fail`).
    QualityStatusSeen {
        /// The dimension.
        dimension: Dimension,
        /// `warn` or `fail`.
        status: crate::quality::Status,
    },
}

/// A scenario as loaded from its folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name.
    pub name: String,
    /// What it rehearses and why the expectations hold.
    #[serde(default)]
    pub description: String,
    /// The pair replayed.
    pub pair: String,
    /// A tick file (CSV or JSON lines), relative to the scenario folder.
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// A synthetic stream instead of a file.
    #[serde(default)]
    pub synthetic: Option<SynthSpec>,
    /// Factor files.
    #[serde(default)]
    pub factors: Vec<FactorSpec>,
    /// Engine configuration (defaults for what is not given).
    #[serde(default)]
    pub config: EngineConfig,
    /// What the replay must show.
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// The folder the spec was read from (paths are relative to it).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Scenario {
    /// Loads `path`, which is a scenario folder or its `scenario.toml`.
    ///
    /// # Errors
    /// [`ScenarioError`] when the file is missing or invalid.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let file = if path.is_dir() {
            path.join("scenario.toml")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|source| ScenarioError::Io {
            path: file.clone(),
            source,
        })?;
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        Scenario::parse(&text, dir).map_err(|message| ScenarioError::Spec { path: file, message })
    }

    /// Parses a spec's text; relative paths in it are relative to `dir`.
    ///
    /// # Errors
    /// A message saying what is invalid.
    pub fn parse(text: &str, dir: PathBuf) -> Result<Scenario, String> {
        let mut s: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        if s.data.is_some() == s.synthetic.is_some() {
            return Err("give exactly one of `data` or `[synthetic]`".into());
        }
        s.config.validate()?;
        s.dir = dir;
        Ok(s)
    }
}

/// One expectation's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// The expectation, as written.
    pub expect: Expectation,
    /// Whether it held.
    pub passed: bool,
    /// What was measured.
    pub detail: String,
}

fn ts(s: &str) -> i64 {
    parse_ts_us(s).unwrap_or(i64::MIN)
}

/// Checks every expectation against a report.
pub fn check(expectations: &[Expectation], report: &Report) -> Vec<Outcome> {
    expectations
        .iter()
        .map(|e| {
            let (passed, detail) = check_one(e, report);
            Outcome {
                expect: e.clone(),
                passed,
                detail,
            }
        })
        .collect()
}

fn check_one(e: &Expectation, r: &Report) -> (bool, String) {
    let horizon = |h: &Horizon| r.horizons.iter().find(|s| s.horizon == h.to_string());
    match e {
        Expectation::AlarmBetween {
            from,
            to,
            signal,
            detector,
        } => {
            let (from, to) = (ts(from), ts(to));
            let hits: Vec<_> = r
                .alarms
                .iter()
                .filter(|a| a.ts_us >= from && a.ts_us <= to)
                .filter(|a| signal.is_none_or(|s| a.signal == s))
                .filter(|a| detector.as_deref().is_none_or(|d| a.detector == d))
                .collect();
            let first = hits
                .first()
                .map(|a| format!(", first {} {} at {}", a.detector, a.signal.name(), a.ts));
            (
                !hits.is_empty(),
                format!("{} alarms in window{}", hits.len(), first.unwrap_or_default()),
            )
        }
        Expectation::MaxAlarms { max, signal } => {
            let n = r.alarms.iter().filter(|a| signal.is_none_or(|s| a.signal == s)).count() as u64;
            let n = if signal.is_none() { r.alarms_total.max(n) } else { n };
            (n <= *max, format!("{n} alarms"))
        }
        Expectation::NoAlarmBetween { from, to } => {
            let (from, to) = (ts(from), ts(to));
            let n = r.alarms.iter().filter(|a| a.ts_us >= from && a.ts_us <= to).count();
            (n == 0, format!("{n} alarms in window"))
        }
        Expectation::QuarantinedAtLeast { reason, count } => {
            let n = r.quarantined.get(reason.name()).copied().unwrap_or(0);
            (n >= *count, format!("{n} quarantined as {}", reason.name()))
        }
        Expectation::QuarantinedAtMost { reason, count } => {
            let n = match reason {
                Some(reason) => r.quarantined.get(reason.name()).copied().unwrap_or(0),
                None => r.quarantined.values().sum(),
            };
            (n <= *count, format!("{n} quarantined"))
        }
        Expectation::AcceptedAtLeast { count } => (r.accepted >= *count, format!("{} accepted", r.accepted)),
        Expectation::Coverage {
            horizon: h,
            level,
            min,
            max,
        } => match horizon(h) {
            Some(s) => {
                let c = if *level == 80 { s.coverage80 } else { s.coverage95 };
                (
                    c >= *min && c <= *max && s.n > 0,
                    format!("coverage{level} {c:.4} over {} forecasts", s.n),
                )
            }
            None => (false, format!("horizon {h} not configured")),
        },
        Expectation::RmseRatioAtMost { horizon: h, max } => match horizon(h) {
            Some(s) => (
                s.rmse_ratio <= *max && s.n > 0,
                format!("rmse/rw_rmse {:.4} over {} forecasts", s.rmse_ratio, s.n),
            ),
            None => (false, format!("horizon {h} not configured")),
        },
        Expectation::QualityStatusSeen { dimension, status } => {
            let worst = r.quality_worst.get(dimension.name()).copied();
            (
                worst.is_some_and(|w| w >= *status),
                format!("worst {} status {:?}", dimension.name(), worst),
            )
        }
    }
}

/// Counts per reason name, ordered (so reports are byte-identical between runs).
pub type ReasonCounts = BTreeMap<String, u64>;
