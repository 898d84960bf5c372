//! [`QualityConfig`]: every threshold the checks and scores use, with defaults chosen for intraday FX
//! ticks (USD/MXN, EUR/USD). Daily fixings need a few changes, documented on each field.

use serde::{Deserialize, Serialize};

use crate::time::{US_PER_DAY, US_PER_SEC};

/// Warn/fail limits for one dimension's score in `[0, 1]`: `score >= warn` is Ok, `fail <= score < warn`
/// is Warn, `score < fail` is Fail.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// Below this the dimension is Warn.
    pub warn: f64,
    /// Below this the dimension is Fail.
    pub fail: f64,
}

impl Threshold {
    const fn new(warn: f64, fail: f64) -> Self {
        Threshold { warn, fail }
    }
}

/// Per-dimension thresholds. Completeness follows the source document's example (20 % missing values is
/// unacceptable, so Fail below 0.80); the others are stricter because a single bad tick in a hundred
/// already means a broken feed for validity, accuracy and uniqueness.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Default warn 0.95, fail 0.80.
    pub completeness: Threshold,
    /// Default warn 0.99, fail 0.95.
    pub validity: Threshold,
    /// Default warn 0.99, fail 0.95.
    pub accuracy: Threshold,
    /// Default warn 0.95, fail 0.80 (source disagreement is common in fast markets).
    pub consistency: Threshold,
    /// Default warn 0.95, fail 0.80.
    pub timeliness: Threshold,
    /// Default warn 0.99, fail 0.95.
    pub uniqueness: Threshold,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            completeness: Threshold::new(0.95, 0.80),
            validity: Threshold::new(0.99, 0.95),
            accuracy: Threshold::new(0.99, 0.95),
            consistency: Threshold::new(0.95, 0.80),
            timeliness: Threshold::new(0.95, 0.80),
            uniqueness: Threshold::new(0.99, 0.95),
        }
    }
}

impl Thresholds {
    /// The threshold of a dimension, in [`crate::quality::Dimension::ALL`] order.
    pub fn as_array(&self) -> [Threshold; 6] {
        [
            self.completeness,
            self.validity,
            self.accuracy,
            self.consistency,
            self.timeliness,
            self.uniqueness,
        ]
    }
}

/// Hysteresis of the dimension statuses. A status enters Warn or Fail as soon as its score crosses the
/// threshold, but leaves it only once the score has recovered by a margin and stayed there for a minimum
/// dwell, counted both in ticks and in tick time: a score hovering at a threshold (5 % of ticks missing
/// against a 95 % warn level) would otherwise change status on every other tick, and an operator paged on
/// each change would stop listening. The overall status is the worst of the dimensions, so it inherits the
/// same rule.
///
/// The defaults give one change (into Warn) in 200,000 ticks with 5 % of them missing at random, where
/// the raw statuses change about 1,300 times; a stream whose defects stop is back to Ok within about
/// a score window plus the dwell.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StatusHysteresis {
    /// To leave a status, the defect rate must be below the better status's allowed rate times
    /// `1 − recovery_margin`. Default 0.5: completeness (warn 0.95) returns to Ok at a score of 0.975,
    /// uniqueness (warn 0.99) at 0.995, and leaves Fail (0.80) for Warn at 0.90. 0 disables the margin.
    pub recovery_margin: f64,
    /// Ticks the recovered score must hold before the status improves. Default 100 (one score bucket;
    /// about five months of daily fixings).
    pub dwell_ticks: u64,
    /// Tick time the recovered score must hold before the status improves. Default 60 s, so a fast feed
    /// (thousands of ticks a second) cannot flap within a minute.
    pub dwell_us: i64,
}

impl Default for StatusHysteresis {
    fn default() -> Self {
        StatusHysteresis {
            recovery_margin: 0.5,
            dwell_ticks: 100,
            dwell_us: 60 * US_PER_SEC,
        }
    }
}

impl StatusHysteresis {
    /// No hysteresis: every status follows its raw score (the behaviour before checkpoint format 3).
    pub const OFF: StatusHysteresis = StatusHysteresis {
        recovery_margin: 0.0,
        dwell_ticks: 0,
        dwell_us: 0,
    };
}

/// The stream's learned cadence, for completeness when no `expected_interval_us` is configured: how many
/// ticks each hour of the week usually brings, so a silence where ticks are expected (a feed that stops
/// during its usual session) counts its missing ticks, while one where the stream is usually quiet (a
/// weekend, a night, a holiday) does not.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CadenceConfig {
    /// Learn the cadence and count silences against completeness. Default true; ignored when
    /// `expected_interval_us` is set (the configured interval rules).
    pub learn: bool,
    /// A silence is an outage when the ticks expected in it exceed `outage_factor` times the stream's
    /// own 99.9th percentile of expected ticks per gap (how bursty it is), and at least
    /// `outage_min_expected`. Default 2.
    pub outage_factor: f64,
    /// The fewest expected ticks a silence must miss to be an outage. Default 5 (a week of daily fixings;
    /// a holiday or a long Easter weekend misses at most three).
    pub outage_min_expected: f64,
    /// Gaps observed before any silence is judged; none is judged either before four weeks of history.
    /// Default 200.
    pub min_gaps: u64,
}

impl Default for CadenceConfig {
    fn default() -> Self {
        CadenceConfig {
            learn: true,
            outage_factor: 2.0,
            outage_min_expected: 5.0,
            min_gaps: 200,
        }
    }
}

/// Configuration of one pair's [`crate::quality::Validator`]. Missing fields take the defaults below, unknown
/// fields are refused so a typo cannot silently disable a check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QualityConfig {
    /// Quarantine any price below this (`price_out_of_range`). Default 1e-6: below any real exchange rate,
    /// above the values that underflow downstream.
    pub min_price: f64,
    /// Quarantine any price above this. Default 1e6 (the largest quotes, such as USD/VND or USD/IDR, are
    /// around 25,000); a value like 1e300 would overflow every computation downstream.
    pub max_price: f64,
    /// Quarantine when `(ask - bid) / mid` exceeds this. Default 0.01 (100 bp): USD/MXN trades at 5–30 bp
    /// and widens to ~100 bp only in a crash; anything wider is not a tradable quote.
    pub max_rel_spread: f64,
    /// Flag `WIDE_SPREAD_WARN` above this relative spread. Default 0.002 (20 bp).
    pub warn_rel_spread: f64,
    /// Band half-width in robust sigmas (1.4826·MAD of recent log-returns). Default 10: tick returns are
    /// fat-tailed, and a fat-finger error is usually tens of sigmas away.
    pub jump_k: f64,
    /// Number of recent log-returns behind the band (each accepted mid against the same source's previous
    /// accepted mid, so quoting offsets between sources are not mistaken for volatility). Default 256.
    pub jump_window: usize,
    /// Returns needed before the jump check applies. Default 32.
    pub jump_min_history: usize,
    /// The median/MAD are recomputed every this many accepted returns (O(window) work amortised over them),
    /// and at each doubling of the history while the window fills. Default 256 (once per window turnover).
    pub jump_recompute_every: usize,
    /// Floor of the robust sigma (log-return units), so a quiet market whose mid rarely changes (MAD = 0)
    /// does not flag every one-pip move. Default 2.5e-4 (2.5 bp), so the smallest band is 25 bp: the real
    /// EUR/USD pass showed news moves (NFP, 15 bp in 14 ms) inside a 10 bp band; fat fingers are ≥ 1 %.
    pub jump_min_sigma: f64,
    /// Cap of the time scaling `sqrt(gap / typical gap)` of the band: returns over a long gap (a weekend)
    /// are legitimately larger. Default 30; 1 disables time scaling.
    pub jump_max_time_scale: f64,
    /// A genuine level shift: after this many consecutive implausible ticks that agree with each other, the
    /// last one is accepted with `REANCHORED` (the earlier ones stay quarantined). Same rule for a jump of the
    /// clock (consecutive future timestamps). Default 3; clamped to 1..=8. The engine's shock detector may
    /// confirm a fast move sooner, at its second tick (see `drift::shock`).
    pub reanchor_after: usize,
    /// With `arrival_us`: quarantine as stale when arrival − ts exceeds this. Default 30 s (daily fixings
    /// should raise it to ~2 days since a date is stamped at midnight).
    pub max_arrival_lag_us: i64,
    /// With `arrival_us`: flag `LATE_ARRIVAL` when arrival − ts exceeds this. Default 2 s.
    pub late_arrival_warn_us: i64,
    /// With `arrival_us`: quarantine as future when ts − arrival exceeds this (clock skew). Default 2 s.
    pub max_future_skew_us: i64,
    /// Without `arrival_us`: quarantine as future when ts is this far ahead of the pair's watermark (max
    /// accepted ts), a fat-finger date. Default 10 days (more than any market closure, less than a typo'd
    /// month or year). The upper bound of the adaptive limit of the validator (`FORWARD_GAP_FACTOR`
    /// typical spacings, at least `MIN_FORWARD_GAP_US`).
    pub max_forward_gap_us: i64,
    /// Without `arrival_us`: a tick more than this behind the watermark is stale, less is out of order.
    /// Default 60 s.
    pub max_stale_us: i64,
    /// Ticks up to this far behind the watermark are accepted with `REORDERED` instead of quarantined as
    /// out of order. Default 0 (strict: the model wants monotone time).
    pub reorder_tolerance_us: i64,
    /// Number of recent accepted ticks remembered for content duplicates. Default 1024.
    pub dup_window: usize,
    /// Sources tracked for sequence numbers and agreement; the least recently seen is forgotten beyond this.
    /// Default 16.
    pub max_sources: usize,
    /// A sequence jump larger than this (forward or backward) is a feed restart (`SEQ_RESET`), not a gap.
    /// Default 100 000.
    pub max_seq_gap: u64,
    /// Flag `SOURCE_DISAGREE` when a mid deviates from the mean of the other sources' fresh mids by more
    /// than this relative amount. Default 0.005 (50 bp).
    pub source_disagree_rel: f64,
    /// Another source's last mid counts for agreement while it is at most this old. Default 60 s.
    pub source_max_age_us: i64,
    /// A factor observed longer ago than this at a tick's time counts against timeliness (`STALE_FACTOR`).
    /// Default 40 days (INPC is monthly and published about two weeks after the month).
    pub max_factor_age_us: i64,
    /// Factors tracked for age. Default 16.
    pub max_factors: usize,
    /// Expected spacing of ticks, for "expected vs received" completeness. Default none (tick feeds are
    /// irregular); daily fixings use 1 day with `skip_weekends`.
    pub expected_interval_us: Option<i64>,
    /// Weekend time (Saturday and Sunday, UTC) does not count towards expected ticks, nor towards the
    /// adaptive forward-gap limit. Default true.
    pub skip_weekends: bool,
    /// Score window bucket size in ticks (used when `score_bucket_us` is none). Default 100.
    pub score_bucket_ticks: u64,
    /// Score window bucket size in time (accepted-tick time); overrides `score_bucket_ticks`. Default none.
    pub score_bucket_us: Option<i64>,
    /// Buckets in the score window: the window is `score_buckets` × bucket size. Default 10 (1,000 ticks).
    pub score_buckets: usize,
    /// Below this many ticks in the window every status is Ok (too little evidence). Default 10.
    pub min_window_ticks: u64,
    /// Warn/fail thresholds per dimension.
    pub thresholds: Thresholds,
    /// Relative accuracy of the profile's quantile sketches. Default 0.01.
    pub sketch_rel_accuracy: f64,
    /// Bucket cap per sign of each quantile sketch (lowest buckets collapse beyond it). Default 2048.
    pub sketch_max_buckets: usize,
    /// How a status leaves Warn or Fail (`[quality.status_hysteresis]`).
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    pub status_hysteresis: StatusHysteresis,
    /// How the stream's own cadence is learned and judged (`[quality.cadence]`).
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    pub cadence: CadenceConfig,
}

impl Default for QualityConfig {
    fn default() -> Self {
        QualityConfig {
            min_price: 1e-6,
            max_price: 1e6,
            max_rel_spread: 0.01,
            warn_rel_spread: 0.002,
            jump_k: 10.0,
            jump_window: 256,
            jump_min_history: 32,
            jump_recompute_every: 256,
            jump_min_sigma: 2.5e-4,
            jump_max_time_scale: 30.0,
            reanchor_after: 3,
            max_arrival_lag_us: 30 * US_PER_SEC,
            late_arrival_warn_us: 2 * US_PER_SEC,
            max_future_skew_us: 2 * US_PER_SEC,
            max_forward_gap_us: 10 * US_PER_DAY,
            max_stale_us: 60 * US_PER_SEC,
            reorder_tolerance_us: 0,
            dup_window: 1024,
            max_sources: 16,
            max_seq_gap: 100_000,
            source_disagree_rel: 0.005,
            source_max_age_us: 60 * US_PER_SEC,
            max_factor_age_us: 40 * US_PER_DAY,
            max_factors: 16,
            expected_interval_us: None,
            skip_weekends: true,
            score_bucket_ticks: 100,
            score_bucket_us: None,
            score_buckets: 10,
            min_window_ticks: 10,
            thresholds: Thresholds::default(),
            sketch_rel_accuracy: 0.01,
            sketch_max_buckets: 2048,
            status_hysteresis: StatusHysteresis::default(),
            cadence: CadenceConfig::default(),
        }
    }
}

/// Why a [`QualityConfig`] is refused by [`QualityConfig::validate`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QualityConfigError {
    /// A ratio, multiplier or accuracy that must be positive and finite is not.
    #[error("`{0}` must be positive and finite")]
    NotPositive(&'static str),
    /// A size or duration that must be at least one is zero or negative.
    #[error("`{0}` must be at least 1")]
    TooSmall(&'static str),
    /// A warn threshold below its fail threshold, or a threshold outside `[0, 1]`.
    #[error("thresholds of `{0}` must satisfy 0 <= fail <= warn <= 1")]
    Thresholds(&'static str),
    /// The sketch accuracy must be in `(0, 1)`.
    #[error("`sketch_rel_accuracy` must be in (0, 1)")]
    SketchAccuracy,
    /// A fraction that must be in `[0, 1]` is not.
    #[error("`{0}` must be in [0, 1]")]
    Fraction(&'static str),
    /// `min_price` must be below `max_price`.
    #[error("`min_price` must be below `max_price`")]
    PriceRange,
}

impl QualityConfig {
    /// Checks the configuration so a bad file is reported at start-up rather than behaving oddly.
    /// [`crate::quality::Validator::new`] does not require it: it clamps values into range instead.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), QualityConfigError> {
        use QualityConfigError::*;
        if self.min_price.partial_cmp(&self.max_price) != Some(std::cmp::Ordering::Less) {
            return Err(PriceRange);
        }
        let positive = [
            ("min_price", self.min_price),
            ("max_price", self.max_price),
            ("max_rel_spread", self.max_rel_spread),
            ("warn_rel_spread", self.warn_rel_spread),
            ("jump_k", self.jump_k),
            ("jump_min_sigma", self.jump_min_sigma),
            ("jump_max_time_scale", self.jump_max_time_scale),
            ("source_disagree_rel", self.source_disagree_rel),
        ];
        for (name, v) in positive {
            if !(v.is_finite() && v > 0.0) {
                return Err(NotPositive(name));
            }
        }
        let sizes = [
            ("jump_window", self.jump_window),
            ("jump_recompute_every", self.jump_recompute_every),
            ("reanchor_after", self.reanchor_after),
            ("dup_window", self.dup_window),
            ("max_sources", self.max_sources),
            ("max_factors", self.max_factors),
            ("score_buckets", self.score_buckets),
            ("sketch_max_buckets", self.sketch_max_buckets),
        ];
        for (name, v) in sizes {
            if v == 0 {
                return Err(TooSmall(name));
            }
        }
        if self.max_forward_gap_us < 1 {
            return Err(TooSmall("max_forward_gap_us"));
        }
        if self.score_bucket_ticks == 0 {
            return Err(TooSmall("score_bucket_ticks"));
        }
        for (name, v) in [
            ("expected_interval_us", self.expected_interval_us),
            ("score_bucket_us", self.score_bucket_us),
        ] {
            if matches!(v, Some(x) if x < 1) {
                return Err(TooSmall(name));
            }
        }
        for (dim, t) in crate::quality::Dimension::ALL.iter().zip(self.thresholds.as_array()) {
            if !(0.0..=1.0).contains(&t.fail) || !(0.0..=1.0).contains(&t.warn) || t.fail > t.warn {
                return Err(Thresholds(dim.name()));
            }
        }
        let h = &self.status_hysteresis;
        if !(h.recovery_margin.is_finite() && (0.0..=1.0).contains(&h.recovery_margin)) {
            return Err(Fraction("status_hysteresis.recovery_margin"));
        }
        let c = &self.cadence;
        for (name, v) in [
            ("cadence.outage_factor", c.outage_factor),
            ("cadence.outage_min_expected", c.outage_min_expected),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(NotPositive(name));
            }
        }
        if !(self.sketch_rel_accuracy > 0.0 && self.sketch_rel_accuracy < 1.0) {
            return Err(SketchAccuracy);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_partial_toml_fills_in() {
        QualityConfig::default().validate().unwrap();
        let cfg: QualityConfig =
            toml::from_str("jump_k = 8.0\n[thresholds.completeness]\nwarn = 0.9\nfail = 0.7\n").unwrap();
        assert_eq!(cfg.jump_k, 8.0);
        assert_eq!(cfg.thresholds.completeness.fail, 0.7);
        assert_eq!(cfg.thresholds.validity, Thresholds::default().validity);
        assert!(toml::from_str::<QualityConfig>("jump_kk = 8.0").is_err());
    }

    #[test]
    fn bad_values_are_named() {
        let cfg = QualityConfig {
            jump_k: f64::NAN,
            ..Default::default()
        };
        assert_eq!(cfg.validate(), Err(QualityConfigError::NotPositive("jump_k")));
        let mut cfg = QualityConfig::default();
        cfg.thresholds.accuracy = Threshold::new(0.5, 0.9);
        assert_eq!(cfg.validate(), Err(QualityConfigError::Thresholds("accuracy")));
    }
}
