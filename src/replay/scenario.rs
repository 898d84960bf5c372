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
    /// At most `max` quality status changes published (all pairs): an operator paged on each change
    /// must not be paged on noise.
    MaxQualityChanges {
        /// The most changes allowed.
        max: u64,
    },
    /// The overall quality status at the end (of the first pair) is no worse than `status`.
    QualityAtEnd {
        /// `ok`, `warn` or `fail`.
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
        for (i, e) in s.expect.iter().enumerate() {
            e.validate().map_err(|m| format!("expect[{i}] ({}): {m}", e.kind()))?;
        }
        s.dir = dir;
        Ok(s)
    }
}

impl Expectation {
    /// The `kind` as written in the spec.
    pub fn kind(&self) -> &'static str {
        match self {
            Expectation::AlarmBetween { .. } => "alarm_between",
            Expectation::MaxAlarms { .. } => "max_alarms",
            Expectation::NoAlarmBetween { .. } => "no_alarm_between",
            Expectation::QuarantinedAtLeast { .. } => "quarantined_at_least",
            Expectation::QuarantinedAtMost { .. } => "quarantined_at_most",
            Expectation::AcceptedAtLeast { .. } => "accepted_at_least",
            Expectation::Coverage { .. } => "coverage",
            Expectation::RmseRatioAtMost { .. } => "rmse_ratio_at_most",
            Expectation::QualityStatusSeen { .. } => "quality_status_seen",
            Expectation::MaxQualityChanges { .. } => "max_quality_changes",
            Expectation::QualityAtEnd { .. } => "quality_at_end",
        }
    }

    /// Checks what serde cannot: an expectation that could never fail (or never pass) because of a typo
    /// is a spec error, not a vacuous outcome. An unparsable time would make a window empty (so "no alarm
    /// between" passes whatever happens), a level other than 80 or 95 would silently read another
    /// interval's coverage, and a `quality_status_seen` of `ok` holds for any replay.
    ///
    /// # Errors
    /// A message saying what is invalid.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Expectation::AlarmBetween { from, to, .. } | Expectation::NoAlarmBetween { from, to } => {
                window(from, to).map(|_| ())
            }
            Expectation::Coverage { level, min, max, .. } => {
                if *level != 80 && *level != 95 {
                    return Err(format!("level must be 80 or 95, not {level}"));
                }
                if !(0.0..=1.0).contains(min) || !(0.0..=1.0).contains(max) || min > max {
                    return Err(format!(
                        "coverage bounds must satisfy 0 <= min <= max <= 1, not [{min}, {max}]"
                    ));
                }
                Ok(())
            }
            Expectation::RmseRatioAtMost { max, .. } if !(max.is_finite() && *max > 0.0) => {
                Err(format!("max must be a positive number, not {max}"))
            }
            Expectation::QualityStatusSeen { status, .. } if *status == crate::quality::Status::Ok => {
                Err("status must be `warn` or `fail` (every replay sees `ok`)".into())
            }
            _ => Ok(()),
        }
    }
}

/// A window's bounds in microseconds; an unparsable time or `from` after `to` is an error.
pub(crate) fn window(from: &str, to: &str) -> Result<(i64, i64), String> {
    let parse = |what: &str, s: &str| {
        parse_ts_us(s).map_err(|e| format!("{what} = {s:?} is not an RFC 3339 time or a date: {e}"))
    };
    let (f, t) = (parse("from", from)?, parse("to", to)?);
    if f > t {
        return Err(format!("from = {from:?} is after to = {to:?}"));
    }
    Ok((f, t))
}

/// Counts per reason name, ordered (so reports are byte-identical between runs).
pub type ReasonCounts = BTreeMap<String, u64>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::expect::check;
    use crate::replay::report::Report;

    /// A synthetic scenario spec with `expect` as its only expectation (a TOML table body).
    fn spec(expect: &str) -> String {
        format!("name = \"t\"\npair = \"USDMXN\"\n[synthetic]\nseed = 1\nticks = 10\n[[expect]]\n{expect}\n")
    }

    fn parse(expect: &str) -> Result<Scenario, String> {
        Scenario::parse(&spec(expect), PathBuf::new())
    }

    /// A report with the given alarm times and one horizon's coverage, for `check`.
    fn report(alarm_ts: &[&str], coverage80: f64, coverage95: f64) -> Report {
        let alarms = alarm_ts
            .iter()
            .map(|ts| crate::replay::report::AlarmEntry {
                pair: "USDMXN".into(),
                detector: "level_cusum".into(),
                signal: Signal::Residual,
                ts: (*ts).into(),
                ts_us: parse_ts_us(ts).expect("a valid test time"),
                statistic: 11.0,
                threshold: 10.0,
            })
            .collect::<Vec<_>>();
        Report {
            input: "t".into(),
            ticks: 100,
            accepted: 100,
            quarantined: BTreeMap::new(),
            factors: 0,
            horizons: vec![crate::eval::HorizonSummary {
                horizon: "1step".into(),
                n: 99,
                mae: 0.1,
                rmse: 0.1,
                rw_mae: 0.1,
                rw_rmse: 0.1,
                rmse_ratio: 1.0,
                coverage80,
                coverage95,
                winkler95: 1.0,
                width95: 1.0,
                ..Default::default()
            }],
            alarms_total: alarms.len() as u64,
            alarms,
            adaptations: 0,
            quality: None,
            quality_worst: BTreeMap::new(),
            quality_changes: 0,
            pairs: Vec::new(),
            expectations: Vec::new(),
            passed: true,
            ticks_per_sec: 0.0,
            peak_rss_kib: 0,
        }
    }

    #[test]
    fn valid_expectations_parse() {
        for e in [
            "kind = \"alarm_between\"\nfrom = \"2008-09-01\"\nto = \"2009-03-31\"",
            "kind = \"no_alarm_between\"\nfrom = \"2024-01-01T00:00:00Z\"\nto = \"2024-01-01T02:46:39Z\"",
            "kind = \"coverage\"\nhorizon = \"1step\"\nlevel = 80\nmin = 0.7\nmax = 0.9",
            "kind = \"coverage\"\nhorizon = \"1step\"\nlevel = 95\nmin = 0.9\nmax = 0.99",
            "kind = \"quality_status_seen\"\ndimension = \"validity\"\nstatus = \"warn\"",
        ] {
            parse(e).unwrap_or_else(|m| panic!("{e}: {m}"));
        }
    }

    #[test]
    fn an_unparsable_time_is_a_spec_error_not_an_empty_window() {
        for (e, field) in [
            (
                "kind = \"no_alarm_between\"\nfrom = \"2008-09-01\"\nto = \"2009-13-45\"",
                "to",
            ),
            (
                "kind = \"no_alarm_between\"\nfrom = \"last tuesday\"\nto = \"2009-03-31\"",
                "from",
            ),
            (
                "kind = \"alarm_between\"\nfrom = \"2008-09-01\"\nto = \"31/03/2009\"",
                "to",
            ),
        ] {
            let m = parse(e).expect_err(e);
            assert!(m.contains(&format!("{field} = ")), "{e}: {m}");
            assert!(m.contains("expect[0]"), "the message points at the expectation: {m}");
        }
        let m = parse("kind = \"no_alarm_between\"\nfrom = \"2009-03-31\"\nto = \"2008-09-01\"").expect_err("reversed");
        assert!(m.contains("after"), "{m}");
    }

    #[test]
    fn a_coverage_level_other_than_80_or_95_is_a_spec_error() {
        for level in [0, 50, 90, 99] {
            let e = format!("kind = \"coverage\"\nhorizon = \"1step\"\nlevel = {level}\nmin = 0.0\nmax = 1.0");
            let m = parse(&e).expect_err(&e);
            assert!(m.contains("80 or 95"), "{m}");
        }
        let m =
            parse("kind = \"coverage\"\nhorizon = \"1step\"\nlevel = 95\nmin = 0.97\nmax = 0.93").expect_err("min>max");
        assert!(m.contains("min <= max"), "{m}");
    }

    #[test]
    fn a_status_seen_of_ok_is_a_spec_error() {
        let m = parse("kind = \"quality_status_seen\"\ndimension = \"validity\"\nstatus = \"ok\"").expect_err("ok");
        assert!(m.contains("warn"), "{m}");
    }

    /// `check` is public and may be given expectations that were never validated: it fails them instead
    /// of passing on an empty window or reading the wrong interval.
    #[test]
    fn check_fails_invalid_expectations_it_is_given_directly() {
        let r = report(&["2020-03-09T00:00:00Z"], 0.8, 0.95);
        let bad = [
            Expectation::NoAlarmBetween {
                from: "2020-03-01".into(),
                to: "not a time".into(),
            },
            Expectation::AlarmBetween {
                from: "never".into(),
                to: "2020-03-31".into(),
                signal: None,
                detector: None,
            },
            Expectation::Coverage {
                horizon: Horizon::Steps(1),
                level: 90,
                min: 0.0,
                max: 1.0,
            },
        ];
        for (e, o) in bad.iter().zip(check(&bad, &r)) {
            assert!(!o.passed, "{e:?} passed: {}", o.detail);
        }
    }

    #[test]
    fn windows_and_levels_are_checked_against_the_report() {
        let r = report(&["2020-03-09T00:00:00Z"], 0.79, 0.951);
        let outcome = |e: Expectation| check(&[e], &r).remove(0).passed;
        let window = |from: &str, to: &str| (from.to_string(), to.to_string());
        let (from, to) = window("2020-03-01", "2020-03-31");
        assert!(!outcome(Expectation::NoAlarmBetween { from, to }));
        let (from, to) = window("2020-04-01", "2020-12-31");
        assert!(outcome(Expectation::NoAlarmBetween { from, to }));
        let (from, to) = window("2020-03-09", "2020-03-09T00:00:00Z");
        assert!(outcome(Expectation::AlarmBetween {
            from,
            to,
            signal: None,
            detector: None
        }));
        let coverage = |level, min, max| Expectation::Coverage {
            horizon: Horizon::Steps(1),
            level,
            min,
            max,
        };
        assert!(outcome(coverage(80, 0.78, 0.80)));
        assert!(!outcome(coverage(80, 0.80, 0.82)));
        assert!(outcome(coverage(95, 0.95, 0.96)));
        assert!(!outcome(coverage(95, 0.93, 0.95)));
        assert!(outcome(Expectation::MaxAlarms { max: 1, signal: None }));
        assert!(!outcome(Expectation::MaxAlarms { max: 0, signal: None }));
    }
}
