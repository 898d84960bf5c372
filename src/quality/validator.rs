//! [`Validator`]: one pair's incremental data-quality state machine. Each tick goes through the checks in
//! a fixed order and comes out as a [`Verdict`]; every outcome feeds the windowed scores and, for accepted
//! ticks, the field profile.
//!
//! Order, cheapest and most certain first: missing value → non-finite → non-positive → crossed quote →
//! spread too wide → duplicate `seq` → duplicate content → future / stale timestamp → out of order →
//! implausible jump. Duplicates come before the timestamp checks so a retransmission is reported as the
//! duplicate it is, not as "stale".

use serde::{Deserialize, Serialize};

use super::cadence::Cadence;
use super::config::QualityConfig;
use super::duplicates::{RecentSet, content_hash};
use super::flags::Flags;
use super::hysteresis::StatusGate;
use super::jump::{JumpBand, JumpOutcome, MoveJudge, NoJudge};
use super::price::check_prices;
use super::profile::Profile;
use super::reason::QuarantineReason;
use super::scores::{FlagCount, QualityReport, ReasonCount, ScoreWindow, Status};
use super::sources::{SeqOutcome, SourceTable};
use super::timeliness::{FactorAges, business_us, expected_missing};
use crate::tick::Tick;

/// The outcome of checking one tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The tick may reach the model, with this mid and these observations.
    Accept {
        /// The mid price (`(bid+ask)/2`, or the fixing's single rate).
        mid: f64,
        /// What was noticed without stopping the tick.
        flags: Flags,
    },
    /// The tick must not reach the model.
    Quarantine(QuarantineReason),
}

impl Verdict {
    /// True for [`Verdict::Accept`].
    pub fn is_accept(&self) -> bool {
        matches!(self, Verdict::Accept { .. })
    }
}

/// Without arrival times, a forward gap of more than this many typical spacings (the median gap behind the
/// jump band) is `future_timestamp`: a date off by a day in an intraday stream is refused instead of
/// accepted, which would make every later good tick stale. 100 spacings of 10-minute bars are 16.7 hours;
/// of daily fixings, 100 days (so `max_forward_gap_us` rules there). A constant rather than a setting: the
/// quality configuration is part of the checkpointed state, whose layout stays fixed within a format.
pub const FORWARD_GAP_FACTOR: f64 = 100.0;

/// The least forward gap the adaptive limit refuses: quiet hours of a tick feed are not typos. 6 hours.
pub const MIN_FORWARD_GAP_US: i64 = 6 * 3600 * 1_000_000;

/// One pair's data-quality state: watermark, last accepted mid, jump band, duplicate memory, per-source
/// state, factor ages, score window and profile. All of it is bounded and plain serde data, so a
/// checkpoint restores a validator that gives the same verdicts as the original.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Validator {
    cfg: QualityConfig,
    /// The greatest accepted tick time: the pair's notion of "now" when ticks carry no arrival time.
    watermark_us: Option<i64>,
    last_mid: Option<f64>,
    jump: JumpBand,
    recent: RecentSet,
    sources: SourceTable,
    factors: FactorAges,
    /// Consecutive far-future ticks that agree with each other (a jump of the clock, not a typo).
    future_pending: usize,
    future_last_us: i64,
    window: ScoreWindow,
    profile: Profile,
    total_received: u64,
    total_accepted: u64,
    #[serde(serialize_with = "crate::evolve::counts::serialize", deserialize_with = "reasons_v2")]
    total_quarantined: [u64; QuarantineReason::ALL.len()],
    #[serde(serialize_with = "crate::evolve::counts::serialize", deserialize_with = "flags_v2")]
    total_flagged: [u64; Flags::NAMED.len()],
    #[serde(
        serialize_with = "crate::evolve::counts::serialize",
        deserialize_with = "statuses_v2"
    )]
    last_status: [Status; 6],
    status_changed: bool,
    /// When each worse-than-raw status started to recover (status hysteresis).
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    gate: StatusGate,
    /// The stream's learned hourly cadence, for completeness without a configured interval.
    #[serde(default, deserialize_with = "crate::evolve::since_v3")]
    cadence: Cadence,
}

/// The quarantine reasons format 2 knew (see [`crate::evolve`]).
fn reasons_v2<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u64; QuarantineReason::ALL.len()], D::Error> {
    crate::evolve::counts::deserialize::<D, u64, 14, { QuarantineReason::ALL.len() }>(d)
}

/// The flags format 2 knew.
fn flags_v2<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u64; Flags::NAMED.len()], D::Error> {
    crate::evolve::counts::deserialize::<D, u64, 9, { Flags::NAMED.len() }>(d)
}

/// The dimensions format 2 knew.
fn statuses_v2<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[Status; 6], D::Error> {
    crate::evolve::counts::deserialize::<D, Status, 6, 6>(d)
}

impl Validator {
    /// A validator with no history. Out-of-range settings are clamped (windows to at least one slot, and so
    /// on); call [`QualityConfig::validate`] first to report them instead.
    pub fn new(cfg: &QualityConfig) -> Self {
        Validator {
            cfg: cfg.clone(),
            watermark_us: None,
            last_mid: None,
            jump: JumpBand::new(cfg),
            recent: RecentSet::new(cfg.dup_window),
            sources: SourceTable::new(cfg.max_sources),
            factors: FactorAges::new(cfg.max_factors),
            future_pending: 0,
            future_last_us: 0,
            window: ScoreWindow::new(cfg),
            profile: Profile::new(cfg.sketch_rel_accuracy, cfg.sketch_max_buckets),
            total_received: 0,
            total_accepted: 0,
            total_quarantined: [0; QuarantineReason::ALL.len()],
            total_flagged: [0; Flags::NAMED.len()],
            last_status: [Status::Ok; 6],
            status_changed: false,
            gate: StatusGate::default(),
            cadence: Cadence::default(),
        }
    }

    /// Checks one tick, updates the scores and profile, and says whether the model may see it.
    pub fn check(&mut self, tick: &Tick) -> Verdict {
        self.check_judged(tick, &NoJudge)
    }

    /// [`Validator::check`], with `judge` deciding whether consecutive implausible ticks are a genuine
    /// move to re-anchor on at once (the engine's shock detector), instead of waiting for
    /// `reanchor_after` of them: a fast market is then not quarantined piece by piece, while a lone bad
    /// print, which the judge never confirms, still is.
    pub fn check_judged(&mut self, tick: &Tick, judge: &dyn MoveJudge) -> Verdict {
        self.window.advance(self.watermark_us);
        self.window.received();
        self.total_received += 1;
        let verdict = match self.judge(tick, judge) {
            Ok((mid, flags)) => Verdict::Accept { mid, flags },
            Err(reason) => {
                self.count_quarantine(reason);
                Verdict::Quarantine(reason)
            }
        };
        self.refresh_status();
        verdict
    }

    /// Counts a tick the engine rejected before it became a [`Tick`] (malformed payload, pair mismatch), so
    /// the scores see every message. It is binned at the watermark: a rejected message's own time
    /// (`ts_us`, when it could be read) is not trusted to move the window.
    pub fn record_rejected(&mut self, ts_us: Option<i64>, reason: QuarantineReason) {
        let _untrusted = ts_us;
        self.window.advance(self.watermark_us);
        self.window.received();
        self.total_received += 1;
        self.count_quarantine(reason);
        self.refresh_status();
    }

    /// Records a factor observation, for stale-factor timeliness.
    pub fn on_factor(&mut self, name: &str, ts_us: i64) {
        self.factors.observe(name, ts_us);
    }

    /// True once after any dimension's status changed (the engine publishes the report then).
    pub fn take_status_change(&mut self) -> bool {
        std::mem::take(&mut self.status_changed)
    }

    /// The current status of every dimension, in [`Dimension::ALL`](super::Dimension::ALL) order.
    pub fn statuses(&self) -> [Status; 6] {
        self.last_status
    }

    /// The worst current status.
    pub fn overall_status(&self) -> Status {
        self.last_status.into_iter().max().unwrap_or_default()
    }

    /// Whether `ts_us` is further past `from_us` than the stream's own spacing makes plausible: more than
    /// [`FORWARD_GAP_FACTOR`] typical gaps (at least [`MIN_FORWARD_GAP_US`]), in weekday time when weekends
    /// are skipped. Before the typical gap is known only `max_forward_gap_us` applies.
    fn implausibly_far_ahead(&self, from_us: i64, ts_us: i64) -> bool {
        let cfg = &self.cfg;
        let Some(typical) = self.jump.typical_gap_us() else {
            return false;
        };
        let ahead = if cfg.skip_weekends {
            business_us(ts_us).saturating_sub(business_us(from_us))
        } else {
            ts_us.saturating_sub(from_us)
        };
        let limit = (typical * FORWARD_GAP_FACTOR).max(MIN_FORWARD_GAP_US as f64);
        ahead as f64 > limit
    }

    /// The pair's watermark: the greatest accepted tick time.
    pub fn watermark_us(&self) -> Option<i64> {
        self.watermark_us
    }

    /// Lifetime quarantines for `reason`.
    pub fn quarantined(&self, reason: QuarantineReason) -> u64 {
        self.total_quarantined.get(reason.index()).copied().unwrap_or(0)
    }

    /// The field profile of accepted ticks.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// The configuration in force.
    pub fn config(&self) -> &QualityConfig {
        &self.cfg
    }

    /// The windowed scores and lifetime counts, as plain data to publish.
    pub fn scores(&self) -> QualityReport {
        let nonzero = |counts: &[u64]| {
            QuarantineReason::ALL
                .into_iter()
                .zip(counts.iter().copied())
                .filter(|(_, c)| *c > 0)
                .map(|(reason, count)| ReasonCount { reason, count })
                .collect()
        };
        let mut dimensions = self.window.dimension_scores();
        // The status shown is the one behind the hysteresis, which the score alone does not give.
        for (d, s) in dimensions.iter_mut().zip(self.last_status) {
            d.status = s;
        }
        QualityReport {
            overall: self.overall_status(),
            window_ticks: self.window.window_ticks(),
            dimensions,
            window_quarantined: self.window.window_quarantined(),
            total_received: self.total_received,
            total_accepted: self.total_accepted,
            total_quarantined: nonzero(&self.total_quarantined),
            total_flagged: Flags::NAMED
                .iter()
                .zip(self.total_flagged)
                .filter(|(_, c)| *c > 0)
                .map(|((_, name), count)| FlagCount {
                    flag: (*name).to_string(),
                    count,
                })
                .collect(),
        }
    }

    fn count_quarantine(&mut self, reason: QuarantineReason) {
        self.window.quarantined(reason);
        if let Some(c) = self.total_quarantined.get_mut(reason.index()) {
            *c += 1;
        }
    }

    fn refresh_status(&mut self) {
        let raw = self.window.statuses();
        if raw == self.last_status && self.gate.is_idle() {
            return;
        }
        let h = &self.cfg.status_hysteresis;
        let window = &self.window;
        if self.gate.step(
            &mut self.last_status,
            raw,
            || window.recovered_statuses(h.recovery_margin),
            h,
            self.total_received,
            self.watermark_us.unwrap_or(0),
        ) {
            self.status_changed = true;
        }
    }

    /// The checks proper. Returns the accepted mid and flags, or the quarantine reason.
    fn judge(&mut self, t: &Tick, judge: &dyn MoveJudge) -> Result<(f64, Flags), QuarantineReason> {
        let cfg = &self.cfg;
        let mut flags = Flags::EMPTY;
        // A sequence number counts as sent whatever the verdict, so a number is never counted both as a
        // quarantined tick and as a gap; a duplicate is still reported at its place in the order below.
        let slot = self.sources.slot(t.source);
        let mut duplicate_seq = false;
        if let Some(seq) = t.seq {
            match self.sources.observe_seq(slot, seq, cfg.max_seq_gap) {
                SeqOutcome::Duplicate => duplicate_seq = true,
                SeqOutcome::Fresh { gap, reset } => {
                    if gap > 0 {
                        flags |= Flags::SEQ_GAP;
                        self.window.seq_missing(gap);
                    }
                    if reset {
                        flags |= Flags::SEQ_RESET;
                    }
                }
            }
        }
        let prices = check_prices(
            t,
            (cfg.min_price, cfg.max_price),
            cfg.max_rel_spread,
            cfg.warn_rel_spread,
        )?;
        if prices.wide {
            flags |= Flags::WIDE_SPREAD_WARN;
        }

        // Uniqueness.
        if duplicate_seq {
            return Err(QuarantineReason::DuplicateSeq);
        }
        let fingerprint = content_hash(t, self.sources.hash(slot));
        // A sequence number is the message's identity: the same content under a new number is an update
        // (a feed re-sends the quote when only its sizes change), accepted; when it repeats the source's
        // last accepted quote it carries no new price and is flagged `UNCHANGED`. Without a sequence
        // number the content is the only identity, so a repeat is a duplicate.
        let mut unchanged = false;
        if self.recent.contains(fingerprint) {
            if t.seq.is_none() {
                return Err(QuarantineReason::DuplicateContent);
            }
            unchanged = self.sources.last_mid(slot) == Some((prices.mid, t.ts_us));
            if unchanged {
                flags |= Flags::UNCHANGED;
            }
        }

        // Timeliness.
        let mut clock_jumped = false;
        if let Some(arrival) = t.arrival_us {
            if t.ts_us.saturating_sub(arrival) > cfg.max_future_skew_us {
                return Err(QuarantineReason::FutureTimestamp);
            }
            let lag = arrival.saturating_sub(t.ts_us);
            if lag > cfg.max_arrival_lag_us {
                return Err(QuarantineReason::StaleTimestamp);
            }
            if lag > cfg.late_arrival_warn_us {
                flags |= Flags::LATE_ARRIVAL;
            }
        } else if let Some(wm) = self.watermark_us {
            let ahead = t.ts_us.saturating_sub(wm);
            // Weekday time never exceeds calendar time, so the adaptive limit (never below
            // MIN_FORWARD_GAP_US) is only worked out for the rare tick that far ahead.
            if ahead > cfg.max_forward_gap_us || (ahead > MIN_FORWARD_GAP_US && self.implausibly_far_ahead(wm, t.ts_us))
            {
                // A far-future date is a typo unless the next ticks confirm the clock really moved on.
                let agrees = self.future_pending > 0
                    && t.ts_us >= self.future_last_us
                    && !self.implausibly_far_ahead(self.future_last_us, t.ts_us)
                    && t.ts_us.saturating_sub(self.future_last_us) <= cfg.max_forward_gap_us;
                self.future_pending = if agrees { self.future_pending + 1 } else { 1 };
                self.future_last_us = t.ts_us;
                if self.future_pending < cfg.reanchor_after.max(1) {
                    return Err(QuarantineReason::FutureTimestamp);
                }
                clock_jumped = true;
            }
            self.future_pending = 0;
            if wm.saturating_sub(t.ts_us) > cfg.max_stale_us {
                return Err(QuarantineReason::StaleTimestamp);
            }
        }
        if let Some(wm) = self.watermark_us
            && t.ts_us < wm
        {
            if wm.saturating_sub(t.ts_us) > cfg.reorder_tolerance_us {
                return Err(QuarantineReason::OutOfOrder);
            }
            flags |= Flags::REORDERED;
        }

        // Accuracy: continuity with this source's last accepted mid, or, for a source's first tick, with the
        // pair's (allowing the cross-source agreement band, since sources may quote at an offset).
        let mid = prices.mid;
        let own = self.sources.last_mid(slot);
        let (anchor, min_half_width) = match own {
            Some((m, ts)) => (Some((m, ts)), 0.0),
            None => (self.last_mid.zip(self.watermark_us), 2.0 * cfg.source_disagree_rel),
        };
        let mut learned_return = None;
        let mut anchor_gap_us = 0;
        if let Some((prev, prev_ts)) = anchor {
            let r = (mid / prev).ln();
            if !r.is_finite() {
                // The ratio overflowed (e.g. 1e300 after 1e-300): implausible by any standard.
                return Err(QuarantineReason::ImplausibleJump);
            }
            anchor_gap_us = t.ts_us.saturating_sub(prev_ts);
            if clock_jumped {
                flags |= Flags::REANCHORED;
            } else {
                match self.jump.assess(r, mid, anchor_gap_us, min_half_width, judge) {
                    // A repeated quote's zero return is no evidence about volatility: learning a run of them
                    // would narrow the band until the next real move looked implausible.
                    JumpOutcome::Plausible => learned_return = own.filter(|_| !unchanged).map(|_| r),
                    JumpOutcome::Implausible => return Err(QuarantineReason::ImplausibleJump),
                    JumpOutcome::Reanchor => flags |= Flags::REANCHORED,
                }
            }
        }
        let gap_us = self.watermark_us.map_or(0, |wm| t.ts_us.saturating_sub(wm));

        // Accepted: commit state.
        if let Some(r) = learned_return {
            self.jump.learn(r, anchor_gap_us);
        }
        self.recent.insert(fingerprint);
        if self
            .sources
            .disagrees(slot, mid, t.ts_us, cfg.source_max_age_us, cfg.source_disagree_rel)
        {
            flags |= Flags::SOURCE_DISAGREE;
            self.window.flagged_disagree();
        }
        self.sources.record_mid(slot, mid, t.ts_us);
        if self.factors.any_stale(t.ts_us, cfg.max_factor_age_us) {
            flags |= Flags::STALE_FACTOR;
        }
        if flags.contains(Flags::LATE_ARRIVAL) || flags.contains(Flags::STALE_FACTOR) {
            self.window.flagged_untimely();
        }
        let missing = match (cfg.expected_interval_us, self.watermark_us) {
            (Some(interval), Some(wm)) => expected_missing(wm, t.ts_us, interval, cfg.skip_weekends),
            (Some(_), None) => 0,
            // No configured interval: the stream's own cadence says what was expected.
            (None, wm) if cfg.cadence.learn && !unchanged => self.cadence.observe(wm, t.ts_us, &cfg.cadence),
            (None, _) => 0,
        };
        if missing > 0 {
            flags |= Flags::MISSED_INTERVALS;
            self.window.interval_missing(missing);
        }

        let p = &mut self.profile;
        p.bid.observe(t.bid);
        p.ask.observe(t.ask);
        p.mid.observe(Some(mid));
        p.spread_rel.observe(prices.spread_rel);
        p.log_return.observe(learned_return);
        p.gap_us
            .observe((self.watermark_us.is_some() && gap_us >= 0).then_some(gap_us as f64));
        p.arrival_lag_us
            .observe(t.arrival_us.map(|a| a.saturating_sub(t.ts_us) as f64));

        self.watermark_us = Some(self.watermark_us.map_or(t.ts_us, |wm| wm.max(t.ts_us)));
        self.last_mid = Some(mid);
        self.total_accepted += 1;
        if !flags.is_empty() {
            for (count, (flag, _)) in self.total_flagged.iter_mut().zip(Flags::NAMED) {
                if flags.contains(flag) {
                    *count += 1;
                }
            }
        }
        Ok((mid, flags))
    }
}

#[cfg(test)]
mod tests;
