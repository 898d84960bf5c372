//! The replay report: a JSON summary of what the engine did with a file or scenario.
//!
//! Every field is derived from the input alone except `ticks_per_sec` and `peak_rss_kib`, the two
//! measurements of the run itself; with `--no-timing` they are written as 0 so two runs on the same input
//! give byte-identical reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::drift::Signal;
use crate::engine::EngineSummary;
use crate::eval::HorizonSummary;
use crate::quality::{QualityReport, Status};
use crate::replay::scenario::Expectation;

/// One alarm as logged in the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlarmEntry {
    /// The pair.
    pub pair: String,
    /// The detector.
    pub detector: String,
    /// The signal it watched.
    pub signal: Signal,
    /// When (RFC 3339).
    pub ts: String,
    /// When (µs; for checks, not written).
    #[serde(skip)]
    pub ts_us: i64,
    /// The detector's statistic at the alarm.
    pub statistic: f64,
    /// The threshold it crossed.
    pub threshold: f64,
}

/// Most alarms listed in a report (all are counted in `alarms_total`).
pub const MAX_ALARMS_LISTED: usize = 10_000;

/// Peak resident set size of this process in KiB (`VmHWM`), or 0 where `/proc` is not available.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The replay report (docs/scenarios.md describes each field).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// What was replayed (file or scenario name).
    pub input: String,
    /// Ticks read (accepted + quarantined).
    pub ticks: u64,
    /// Ticks accepted by the quality checks.
    pub accepted: u64,
    /// Quarantined ticks per reason.
    pub quarantined: BTreeMap<String, u64>,
    /// Factor observations joined.
    pub factors: u64,
    /// Prequential metrics per horizon (of the first pair, in pair order; see `pairs` for all).
    pub horizons: Vec<HorizonSummary>,
    /// Alarms: detector, signal, time and statistic (the first [`MAX_ALARMS_LISTED`]).
    pub alarms: Vec<AlarmEntry>,
    /// Alarms raised in all.
    pub alarms_total: u64,
    /// Model adaptations made after residual drift alarms.
    pub adaptations: u64,
    /// Quality scores per dimension at the end (of the first pair).
    pub quality: Option<QualityReport>,
    /// Worst status each quality dimension reached during the replay (of the first pair).
    pub quality_worst: BTreeMap<String, Status>,
    /// Quality status changes published (all pairs).
    #[serde(default)]
    pub quality_changes: u64,
    /// Per-pair detail.
    pub pairs: Vec<EngineSummary>,
    /// Scenario expectations and whether each held (empty for a plain file).
    pub expectations: Vec<Outcome>,
    /// Whether every expectation held.
    pub passed: bool,
    /// Throughput of the replay (wall clock; 0 with `--no-timing`).
    pub ticks_per_sec: f64,
    /// Peak resident memory of the process in KiB, from `/proc/self/status` (Linux; 0 elsewhere and with
    /// `--no-timing`): replaying ten times more ticks must not raise it.
    pub peak_rss_kib: u64,
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
