//! Windowed DAMA dimension scores. Counts live in a ring of buckets (by tick count or by accepted-tick
//! time) with running sums, so recording a tick and re-evaluating every status is O(1) and memory is fixed.
//!
//! Each score is `1 − defects / total` over the window:
//! - completeness: missing values + skipped sequence numbers + expected-but-absent ticks, over received
//!   ticks plus those missing ones;
//! - validity: malformed, non-finite, non-positive, wrong pair;
//! - accuracy: implausible jumps;
//! - consistency: crossed quotes, too-wide spreads, ticks flagged as disagreeing with other sources;
//! - timeliness: stale, future, out-of-order, and ticks flagged late or with a stale factor;
//! - uniqueness: duplicate sequence numbers and duplicate content.

use serde::{Deserialize, Serialize};

use super::config::{QualityConfig, Threshold};
use super::reason::{Dimension, QuarantineReason};

/// Ok, Warn or Fail for one dimension; ordered so the worst is the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// At or above the warn threshold (or too few ticks in the window to judge).
    #[default]
    Ok,
    /// Between the fail and warn thresholds.
    Warn,
    /// Below the fail threshold.
    Fail,
}

impl Status {
    /// The status as it is written on the wire (`ok`, `warn`, `fail`).
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        }
    }

    /// The status of `score` under `t`.
    pub fn of(score: f64, t: Threshold) -> Status {
        if score >= t.warn {
            Status::Ok
        } else if score >= t.fail {
            Status::Warn
        } else {
            Status::Fail
        }
    }
}

const N_REASONS: usize = QuarantineReason::ALL.len();
const RECEIVED: usize = N_REASONS;
const SEQ_MISSING: usize = N_REASONS + 1;
const INTERVAL_MISSING: usize = N_REASONS + 2;
const FLAGGED_DISAGREE: usize = N_REASONS + 3;
const FLAGGED_LATE: usize = N_REASONS + 4;
/// Defects per dimension start here (one counter per dimension, in `Dimension::ALL` order).
const DEFECTS: usize = N_REASONS + 5;
const N_COUNTERS: usize = DEFECTS + Dimension::ALL.len();

type Counts = [u64; N_COUNTERS];

// The window's counters are checkpointed as fixed arrays laid out by reason: a new quarantine reason or
// dimension moves every counter after it, so it needs a migration of checkpointed windows (see
// `crate::evolve`), not only a new entry in the list. This stops the build until one is written.
const _: () = assert!(
    N_COUNTERS == 25,
    "the score window's counter layout changed: migrate checkpointed windows (see crate::evolve)"
);

/// One dimension's windowed score and the counts behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DimensionScore {
    /// The dimension (serialized as its snake_case name).
    #[serde(rename = "name")]
    pub dimension: Dimension,
    /// `1 − defects / total`, 1 when the window is empty.
    pub score: f64,
    /// Status from the configured thresholds.
    pub status: Status,
    /// Defects counted in the window.
    pub defects: u64,
    /// Denominator: ticks received in the window (plus missing ticks, for completeness).
    pub total: u64,
}

/// How many ticks a reason quarantined (window or lifetime).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonCount {
    /// The reason.
    pub reason: QuarantineReason,
    /// Ticks quarantined for it.
    pub count: u64,
}

/// How many accepted ticks carried a flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlagCount {
    /// The flag's report name (see [`crate::quality::Flags::NAMED`]).
    pub flag: String,
    /// Accepted ticks carrying it.
    pub count: u64,
}

/// The quality of one pair's stream: plain data for publishing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityReport {
    /// The worst dimension status.
    pub overall: Status,
    /// Ticks received in the score window.
    pub window_ticks: u64,
    /// One entry per dimension, in [`Dimension::ALL`] order.
    pub dimensions: Vec<DimensionScore>,
    /// Quarantines in the window, by reason (non-zero only).
    pub window_quarantined: Vec<ReasonCount>,
    /// Ticks checked or recorded as rejected since start.
    pub total_received: u64,
    /// Ticks accepted since start.
    pub total_accepted: u64,
    /// Quarantines since start, by reason (non-zero only).
    pub total_quarantined: Vec<ReasonCount>,
    /// Accepted ticks carrying each flag since start (non-zero only), by flag name.
    pub total_flagged: Vec<FlagCount>,
}

/// The ring of count buckets and the running window sums.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ScoreWindow {
    buckets: Vec<Counts>,
    current: usize,
    sums: Counts,
    bucket_ticks: u64,
    bucket_us: Option<i64>,
    /// Index (`time / bucket_us`) of the current bucket when bucketing by time.
    current_slot: Option<i64>,
    min_window_ticks: u64,
    thresholds: [Threshold; 6],
}

impl ScoreWindow {
    pub(crate) fn new(cfg: &QualityConfig) -> Self {
        let n = cfg.score_buckets.max(1);
        ScoreWindow {
            buckets: vec![[0; N_COUNTERS]; n],
            current: 0,
            sums: [0; N_COUNTERS],
            bucket_ticks: cfg.score_bucket_ticks.max(1),
            bucket_us: cfg.score_bucket_us.filter(|&b| b > 0),
            current_slot: None,
            min_window_ticks: cfg.min_window_ticks,
            thresholds: cfg.thresholds.as_array(),
        }
    }

    fn rotate(&mut self) {
        self.current = (self.current + 1) % self.buckets.len();
        if let Some(old) = self.buckets.get_mut(self.current) {
            for (s, o) in self.sums.iter_mut().zip(old.iter()) {
                *s = s.saturating_sub(*o);
            }
            *old = [0; N_COUNTERS];
        }
    }

    /// Moves the window forward before a tick is recorded. `now_us` is the pair's watermark (accepted time
    /// only, so a bad timestamp cannot flush the window).
    pub(crate) fn advance(&mut self, now_us: Option<i64>) {
        match (self.bucket_us, now_us) {
            (Some(width), Some(now)) => {
                let slot = now.div_euclid(width);
                match self.current_slot {
                    None => self.current_slot = Some(slot),
                    Some(cur) if slot > cur => {
                        let steps = (slot - cur).min(self.buckets.len() as i64);
                        for _ in 0..steps {
                            self.rotate();
                        }
                        self.current_slot = Some(slot);
                    }
                    Some(_) => {}
                }
            }
            (Some(_), None) => {}
            (None, _) => {
                if self
                    .buckets
                    .get(self.current)
                    .is_some_and(|b| b[RECEIVED] >= self.bucket_ticks)
                {
                    self.rotate();
                }
            }
        }
    }

    fn add(&mut self, idx: usize, n: u64) {
        if let (Some(b), Some(s)) = (self.buckets.get_mut(self.current), self.sums.get_mut(idx)) {
            b[idx] = b[idx].saturating_add(n);
            *s = s.saturating_add(n);
        }
    }

    /// One tick received (accepted or not).
    pub(crate) fn received(&mut self) {
        self.add(RECEIVED, 1);
    }

    /// One tick quarantined for `reason`.
    pub(crate) fn quarantined(&mut self, reason: QuarantineReason) {
        self.add(reason.index(), 1);
        self.add(DEFECTS + reason.dimension().index(), 1);
    }

    /// Sequence numbers skipped by a source.
    pub(crate) fn seq_missing(&mut self, n: u64) {
        self.add(SEQ_MISSING, n);
        self.add(DEFECTS + Dimension::Completeness.index(), n);
    }

    /// Ticks expected by the interval that never came.
    pub(crate) fn interval_missing(&mut self, n: u64) {
        self.add(INTERVAL_MISSING, n);
        self.add(DEFECTS + Dimension::Completeness.index(), n);
    }

    /// An accepted tick flagged as disagreeing with other sources.
    pub(crate) fn flagged_disagree(&mut self) {
        self.add(FLAGGED_DISAGREE, 1);
        self.add(DEFECTS + Dimension::Consistency.index(), 1);
    }

    /// An accepted tick flagged late or with a stale factor (counted once even if both).
    pub(crate) fn flagged_untimely(&mut self) {
        self.add(FLAGGED_LATE, 1);
        self.add(DEFECTS + Dimension::Timeliness.index(), 1);
    }

    fn counts(&self, d: Dimension) -> (u64, u64) {
        let received = self.sums[RECEIVED];
        let total = match d {
            Dimension::Completeness => received + self.sums[SEQ_MISSING] + self.sums[INTERVAL_MISSING],
            _ => received,
        };
        (self.sums[DEFECTS + d.index()], total)
    }

    fn score_of(defects: u64, total: u64) -> f64 {
        if total == 0 {
            1.0
        } else {
            (1.0 - defects as f64 / total as f64).clamp(0.0, 1.0)
        }
    }

    /// The status of every dimension, in [`Dimension::ALL`] order.
    #[inline]
    pub(crate) fn statuses(&self) -> [Status; 6] {
        let mut out = [Status::Ok; 6];
        if self.sums[RECEIVED] < self.min_window_ticks {
            return out;
        }
        for (i, d) in Dimension::ALL.into_iter().enumerate() {
            let (defects, total) = self.counts(d);
            // Fast path without a division: no defects is a perfect score.
            out[i] = if defects == 0 {
                Status::of(1.0, self.thresholds[i])
            } else {
                Status::of(Self::score_of(defects, total), self.thresholds[i])
            };
        }
        out
    }

    /// The status of every dimension under thresholds tightened by `margin`, a fraction of each
    /// threshold's allowed defect rate (`warn` 0.95 with margin 0.5 becomes 0.975): where a status
    /// must recover to before it improves (see [`super::hysteresis`]).
    pub(crate) fn recovered_statuses(&self, margin: f64) -> [Status; 6] {
        let mut out = [Status::Ok; 6];
        if self.sums[RECEIVED] < self.min_window_ticks {
            return out;
        }
        let keep = 1.0 - margin.clamp(0.0, 1.0);
        for (i, d) in Dimension::ALL.into_iter().enumerate() {
            let (defects, total) = self.counts(d);
            let t = self.thresholds[i];
            let tight = Threshold {
                warn: 1.0 - (1.0 - t.warn) * keep,
                fail: 1.0 - (1.0 - t.fail) * keep,
            };
            out[i] = Status::of(Self::score_of(defects, total), tight);
        }
        out
    }

    /// The windowed part of the report.
    pub(crate) fn dimension_scores(&self) -> Vec<DimensionScore> {
        let statuses = self.statuses();
        Dimension::ALL
            .into_iter()
            .zip(statuses)
            .map(|(d, status)| {
                let (defects, total) = self.counts(d);
                DimensionScore {
                    dimension: d,
                    score: Self::score_of(defects, total),
                    status,
                    defects,
                    total,
                }
            })
            .collect()
    }

    /// Quarantines in the window by reason.
    pub(crate) fn window_quarantined(&self) -> Vec<ReasonCount> {
        QuarantineReason::ALL
            .into_iter()
            .map(|reason| ReasonCount {
                reason,
                count: self.sums[reason.index()],
            })
            .filter(|r| r.count > 0)
            .collect()
    }

    /// Ticks received in the window.
    pub(crate) fn window_ticks(&self) -> u64 {
        self.sums[RECEIVED]
    }

    #[cfg(test)]
    pub(crate) fn bucket_len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completeness_fails_with_25_percent_missing_and_recovers_as_the_window_slides() {
        let cfg = QualityConfig::default();
        let mut w = ScoreWindow::new(&cfg);
        for i in 0..1000 {
            w.advance(None);
            w.received();
            if i % 4 == 0 {
                w.quarantined(QuarantineReason::MissingValue);
            }
        }
        let c = &w.dimension_scores()[0];
        assert_eq!((c.defects, c.total), (250, 1000));
        assert_eq!(c.status, Status::Fail);
        assert_eq!(w.statuses()[1], Status::Ok);
        for _ in 0..1000 {
            w.advance(None);
            w.received();
        }
        assert_eq!(w.statuses()[0], Status::Ok);
        assert_eq!(w.window_ticks(), 1000);
    }

    #[test]
    fn time_buckets_rotate_by_watermark() {
        let cfg = QualityConfig {
            score_bucket_us: Some(10),
            score_buckets: 3,
            ..Default::default()
        };
        let mut w = ScoreWindow::new(&cfg);
        for t in 0..30 {
            w.advance(Some(t));
            w.received();
        }
        assert_eq!(w.window_ticks(), 30);
        w.advance(Some(45));
        assert_eq!(w.window_ticks(), 10);
        w.advance(Some(i64::MAX));
        assert_eq!(w.window_ticks(), 0);
        assert_eq!(w.bucket_len(), 3);
    }

    #[test]
    fn thresholds_map_to_statuses() {
        let t = Threshold { warn: 0.95, fail: 0.80 };
        assert_eq!(Status::of(0.95, t), Status::Ok);
        assert_eq!(Status::of(0.80, t), Status::Warn);
        assert_eq!(Status::of(0.79, t), Status::Fail);
        assert!(Status::Fail > Status::Warn && Status::Warn > Status::Ok);
    }
}
