//! Time-based helpers: business time for "expected vs received" completeness, and the ages of the slow
//! factors (a model joining a months-old policy rate is not timely even if the tick is).

use serde::{Deserialize, Serialize};

use crate::tick::Source;
use crate::time::US_PER_DAY;

/// Most missing ticks counted for one gap, so one absurd gap cannot overflow counters.
const MAX_MISSING_PER_GAP: u64 = 1_000_000;

/// Microseconds of weekday (Monday–Friday, UTC) time between a fixed Monday and `t`: differences of this
/// are elapsed time with weekends removed. O(1), no calendar tables.
pub fn business_us(t: i64) -> i64 {
    // 1970-01-01 was a Thursday, so day 0 is weekday index 3 (Monday = 0).
    let day = t.div_euclid(US_PER_DAY) + 3;
    let rem = t.rem_euclid(US_PER_DAY);
    let (weeks, dow) = (day.div_euclid(7), day.rem_euclid(7));
    let days = weeks * 5 + dow.min(5);
    days.saturating_mul(US_PER_DAY)
        .saturating_add(if dow < 5 { rem } else { 0 })
}

/// Ticks expected strictly between `prev_us` and `ts_us` at one per `interval_us` that did not arrive.
/// Daily fixings dated at midnight: Friday to Monday misses none, Friday to Tuesday misses one.
pub fn expected_missing(prev_us: i64, ts_us: i64, interval_us: i64, skip_weekends: bool) -> u64 {
    if interval_us <= 0 || ts_us <= prev_us {
        return 0;
    }
    let elapsed = if skip_weekends {
        business_us(ts_us).saturating_sub(business_us(prev_us))
    } else {
        ts_us.saturating_sub(prev_us)
    };
    let slots = (elapsed / interval_us).max(1) as u64;
    (slots - 1).min(MAX_MISSING_PER_GAP)
}

/// The latest observation time of each factor, for at most a fixed number of factors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FactorAges {
    /// (name, latest observation ts); factor names obey the same short printable-ASCII rule as source ids,
    /// so the inline [`Source`] type stores them without allocation.
    latest: Vec<(Source, i64)>,
    max_factors: usize,
    /// The oldest of the latest observations: a tick is stale-factored iff it is older than the limit.
    oldest_us: Option<i64>,
}

impl FactorAges {
    pub(crate) fn new(max_factors: usize) -> Self {
        let max_factors = max_factors.max(1);
        FactorAges {
            latest: Vec::with_capacity(max_factors),
            max_factors,
            oldest_us: None,
        }
    }

    /// Records an observation. Names that are not short printable ASCII are ignored (the parser refuses
    /// them already); a new factor beyond the cap replaces the one with the oldest observation.
    pub(crate) fn observe(&mut self, name: &str, ts_us: i64) {
        let Some(key) = Source::new(name) else { return };
        if let Some(entry) = self.latest.iter_mut().find(|(n, _)| *n == key) {
            entry.1 = entry.1.max(ts_us);
        } else if self.latest.len() < self.max_factors {
            self.latest.push((key, ts_us));
        } else if let Some(oldest) = self.latest.iter_mut().min_by_key(|(_, t)| *t) {
            *oldest = (key, ts_us);
        }
        self.oldest_us = self.latest.iter().map(|(_, t)| *t).min();
    }

    /// True when some factor's latest observation is more than `max_age_us` before `ts_us`.
    #[inline]
    pub(crate) fn any_stale(&self, ts_us: i64, max_age_us: i64) -> bool {
        matches!(self.oldest_us, Some(o) if ts_us.saturating_sub(o) > max_age_us)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.latest.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_ts_us;

    fn day(s: &str) -> i64 {
        parse_ts_us(s).unwrap()
    }

    #[test]
    fn business_days_skip_weekends() {
        // 2020-03-20 is a Friday.
        let (fri, sat, mon, tue) = (
            day("2020-03-20"),
            day("2020-03-21"),
            day("2020-03-23"),
            day("2020-03-24"),
        );
        assert_eq!(business_us(mon) - business_us(fri), US_PER_DAY);
        assert_eq!(business_us(sat), business_us(day("2020-03-22")));
        assert_eq!(expected_missing(fri, mon, US_PER_DAY, true), 0);
        assert_eq!(expected_missing(fri, tue, US_PER_DAY, true), 1);
        assert_eq!(expected_missing(fri, mon, US_PER_DAY, false), 2);
        assert_eq!(expected_missing(mon, fri, US_PER_DAY, true), 0);
        assert_eq!(expected_missing(i64::MIN, i64::MAX, 1, false), MAX_MISSING_PER_GAP);
        assert_eq!(expected_missing(i64::MIN, i64::MAX, 1, true), MAX_MISSING_PER_GAP);
    }

    #[test]
    fn factor_ages_are_bounded_and_track_the_oldest() {
        let mut f = FactorAges::new(2);
        f.observe("TIIE28", 0);
        f.observe("INPC", 10);
        assert!(f.any_stale(101, 100));
        assert!(!f.any_stale(100, 100));
        f.observe("TIIE28", 50);
        assert!(!f.any_stale(101, 100));
        for i in 0..1000 {
            f.observe(&format!("F{i}"), 100 + i);
        }
        assert_eq!(f.len(), 2);
        f.observe("", 0);
        f.observe("this name is far too long to be a factor id", 0);
        assert_eq!(f.len(), 2);
    }
}
