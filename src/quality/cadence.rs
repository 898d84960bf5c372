//! The stream's learned cadence: how many ticks each hour of the week usually brings, so completeness can
//! tell a feed that stops during its usual session (ticks were expected and did not come) from a market
//! closure (a weekend, a night, a holiday: nothing was expected).
//!
//! Bounded and O(1) per tick: 168 decayed counts (one per hour of the week, Monday 00:00 UTC first) and a
//! fixed log-scale histogram of the ticks expected per gap. A gap's expected ticks are the integral of the
//! learned hourly rates over it; under regular arrivals they are about 1 per gap, and the histogram's
//! 99.9th percentile says how bursty the stream is. A silence expecting more than `outage_factor` times
//! that percentile (and at least `outage_min_expected`) is an outage, and the ticks it expected are
//! counted missing. Nothing is judged until the profile covers [`MIN_WEEKS`] weeks and `min_gaps` gaps:
//! a tick feed's hourly activity varies from week to week (a payrolls Friday brings twice the ticks of
//! the next), and one week of it is no profile. On the real EUR/USD fortnight in `scenarios/`, a profile
//! learned from the first week alone called 54 quiet half-minutes of the second week outages.

use serde::{Deserialize, Serialize};

use super::config::CadenceConfig;
use crate::time::US_PER_DAY;

const US_PER_HOUR: i64 = 3_600_000_000;
const HOURS_PER_WEEK: usize = 168;
const US_PER_WEEK: i64 = 7 * US_PER_DAY;
/// Weekly decay of the hourly counts: about twelve weeks of memory, so a change of sessions (daylight
/// saving, a new trading venue) is learned within a quarter.
const WEEKLY_DECAY: f64 = 1.0 - 1.0 / 12.0;
/// Histogram bins per octave of expected ticks per gap, and the octaves covered (2^-24 to 2^24).
const BINS_PER_OCTAVE: f64 = 4.0;
const HALF_OCTAVES: i64 = 24;
const N_BINS: usize = (2 * HALF_OCTAVES as usize) * BINS_PER_OCTAVE as usize;
/// The quantile of expected ticks per gap that measures the stream's burstiness.
const BURST_QUANTILE: f64 = 0.999;
/// Weeks of history before a silence is judged.
pub(crate) const MIN_WEEKS: i64 = 4;
/// Most ticks counted missing for one silence, so one absurd gap cannot overflow counters.
const MAX_MISSING_PER_GAP: f64 = 1_000_000.0;

/// Monday 00:00 UTC of the week holding `t` is `t − hour_of_week(t)·1h − minutes`; 1970-01-01 was a
/// Thursday, so Monday 00:00 is 3 days into the epoch's week.
fn week_offset_us(t: i64) -> i64 {
    t.saturating_add(3 * US_PER_DAY).rem_euclid(US_PER_WEEK)
}

fn week_index(t: i64) -> i64 {
    t.saturating_add(3 * US_PER_DAY).div_euclid(US_PER_WEEK)
}

/// One pair's learned cadence (see the module's documentation). `Default` is "nothing learned yet".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cadence {
    /// Decayed tick counts per hour of the week; empty until the first tick.
    hourly: Vec<f64>,
    /// Decayed number of weeks behind `hourly`.
    weeks: f64,
    /// The week of the latest tick.
    week: i64,
    /// The first tick's time: the profile is trusted once it spans a full week.
    first_us: Option<i64>,
    /// Counts of expected ticks per gap, by quarter-octave; empty until the profile is trusted.
    burst: Vec<u64>,
    gaps: u64,
}

impl Cadence {
    /// Learns a tick at `ts_us` that followed the pair's previous accepted tick at `prev_us`, and returns
    /// the ticks counted missing in the silence between them (0 unless it was an outage).
    pub(crate) fn observe(&mut self, prev_us: Option<i64>, ts_us: i64, cfg: &CadenceConfig) -> u64 {
        let missing = match prev_us {
            Some(prev) if ts_us > prev && self.trusted(ts_us) => self.judge(prev, ts_us, cfg),
            _ => 0,
        };
        self.learn(ts_us);
        missing
    }

    fn trusted(&self, now_us: i64) -> bool {
        self.first_us
            .is_some_and(|first| now_us.saturating_sub(first) >= MIN_WEEKS * US_PER_WEEK)
    }

    fn learn(&mut self, ts_us: i64) {
        let week = week_index(ts_us);
        if self.hourly.len() != HOURS_PER_WEEK {
            self.hourly = vec![0.0; HOURS_PER_WEEK];
            self.weeks = 1.0;
            self.week = week;
            self.first_us = Some(ts_us);
        } else if week > self.week {
            // Every week passed (including silent ones) decays the profile once; after many silent weeks
            // the profile is simply forgotten.
            let passed = (week - self.week).min(1_000) as i32;
            let d = WEEKLY_DECAY.powi(passed);
            for c in &mut self.hourly {
                *c *= d;
            }
            self.weeks = self.weeks * d + (1.0 - d) / (1.0 - WEEKLY_DECAY);
            self.week = week;
        }
        let hour = (week_offset_us(ts_us) / US_PER_HOUR) as usize;
        if let Some(c) = self.hourly.get_mut(hour) {
            *c += 1.0;
        }
    }

    /// Ticks per microsecond expected in hour `h` of the week, the latest tick being in hour `cur`: the
    /// current week has counted only the hours up to `cur`, so later hours average the past weeks only.
    fn rate(&self, h: usize, cur: usize) -> f64 {
        let weeks = if h > cur { self.weeks - 1.0 } else { self.weeks };
        if weeks <= 0.0 {
            return 0.0;
        }
        self.hourly.get(h).copied().unwrap_or(0.0) / (weeks * US_PER_HOUR as f64)
    }

    /// Ticks expected over `[from, to)` by the hourly profile, `from` being the latest tick's time.
    fn expected(&self, from: i64, to: i64) -> f64 {
        let cur = (week_offset_us(from) / US_PER_HOUR) as usize;
        let span = to.saturating_sub(from);
        // Whole weeks contribute the weekly total each; the remainder is walked hour by hour (at most 168
        // steps, and only for gaps longer than an hour).
        let whole_weeks = span / US_PER_WEEK;
        let mut e = if whole_weeks > 0 {
            whole_weeks as f64 * (0..HOURS_PER_WEEK).map(|h| self.rate(h, cur)).sum::<f64>() * US_PER_HOUR as f64
        } else {
            0.0
        };
        let mut t = from.saturating_add(whole_weeks * US_PER_WEEK);
        while t < to {
            let off = week_offset_us(t);
            let hour = (off / US_PER_HOUR) as usize;
            let hour_end = t.saturating_add(US_PER_HOUR - off % US_PER_HOUR);
            let end = hour_end.min(to);
            e += self.rate(hour, cur) * end.saturating_sub(t) as f64;
            if end <= t {
                break;
            }
            t = end;
        }
        e
    }

    fn bin(e: f64) -> usize {
        if e.is_nan() || e <= 0.0 {
            return 0;
        }
        let b = (e.log2() * BINS_PER_OCTAVE).floor() as i64 + HALF_OCTAVES * BINS_PER_OCTAVE as i64;
        b.clamp(0, N_BINS as i64 - 1) as usize
    }

    /// The upper edge of the bin holding the `BURST_QUANTILE` of expected ticks per gap.
    fn burst_quantile(&self) -> f64 {
        let total: u64 = self.burst.iter().sum();
        let above = ((1.0 - BURST_QUANTILE) * total as f64).floor() as u64;
        let mut seen = 0;
        for (i, &c) in self.burst.iter().enumerate().rev() {
            seen += c;
            if seen > above {
                let octaves = (i as f64 + 1.0) / BINS_PER_OCTAVE - HALF_OCTAVES as f64;
                return octaves.exp2();
            }
        }
        0.0
    }

    fn judge(&mut self, prev: i64, ts_us: i64, cfg: &CadenceConfig) -> u64 {
        let e = self.expected(prev, ts_us);
        if !e.is_finite() {
            return 0;
        }
        if self.burst.len() != N_BINS {
            self.burst = vec![0; N_BINS];
        }
        let judged = self.gaps >= cfg.min_gaps && e >= cfg.outage_min_expected;
        if judged && e > cfg.outage_factor * self.burst_quantile() {
            // An outage is kept out of the burstiness it is judged against.
            return e.min(MAX_MISSING_PER_GAP).round() as u64;
        }
        if let Some(c) = self.burst.get_mut(Self::bin(e)) {
            *c += 1;
        }
        self.gaps += 1;
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{US_PER_SEC, parse_ts_us};

    fn daily(from: &str, days: i64, skip: &[i64]) -> Vec<i64> {
        let start = parse_ts_us(from).unwrap();
        (0..days)
            .map(|d| start + d * US_PER_DAY)
            .filter(|t| {
                let dow = (t.div_euclid(US_PER_DAY) + 3).rem_euclid(7);
                dow < 5
            })
            .enumerate()
            .filter(|(i, _)| !skip.contains(&(*i as i64)))
            .map(|(_, t)| t)
            .collect()
    }

    fn missing_per_tick(ts: &[i64]) -> Vec<u64> {
        let cfg = CadenceConfig::default();
        let mut c = Cadence::default();
        let mut prev = None;
        ts.iter()
            .map(|&t| {
                let m = c.observe(prev, t, &cfg);
                prev = Some(t);
                m
            })
            .collect()
    }

    #[test]
    fn weekends_and_holidays_of_daily_fixings_are_closures_but_a_fortnight_out_is_an_outage() {
        // Business days of 2001 to 2004 with a holiday every 20 fixings and a long Easter (3 days) each
        // year, then a two-week stop.
        let mut skip: Vec<i64> = (0..1_000).step_by(20).collect();
        for y in 0..4 {
            skip.extend([60 + 260 * y, 61 + 260 * y, 62 + 260 * y]);
        }
        skip.extend(900..910);
        let ts = daily("2001-01-01", 4 * 365, &skip);
        let missing = missing_per_tick(&ts);
        let outages: Vec<(usize, u64)> = missing.iter().copied().enumerate().filter(|(_, m)| *m > 0).collect();
        assert_eq!(outages.len(), 1, "{outages:?}");
        let (i, m) = outages[0];
        assert_eq!(ts[i - 1], daily("2001-01-01", 4 * 365, &[])[899]);
        assert!((10..=12).contains(&m), "{m} missing");
    }

    #[test]
    fn a_silent_hour_in_session_is_an_outage_but_nights_and_weekends_are_not() {
        // One tick every 10 s from 07:00 to 20:00 UTC on weekdays, for five weeks; in the fifth week the
        // feed stops for an hour at noon on Wednesday.
        let start = parse_ts_us("2024-01-01").unwrap(); // a Monday
        let mut ts = Vec::new();
        for day in 0..35 {
            let dow = day % 7;
            if dow >= 5 {
                continue;
            }
            let d0 = start + day * US_PER_DAY;
            let mut t = d0 + 7 * 3600 * US_PER_SEC;
            while t < d0 + 20 * 3600 * US_PER_SEC {
                let outage = day == 30 && (12 * 3600..13 * 3600).contains(&((t - d0) / US_PER_SEC));
                if !outage {
                    ts.push(t);
                }
                t += 10 * US_PER_SEC;
            }
        }
        let missing = missing_per_tick(&ts);
        let outages: Vec<u64> = missing.iter().copied().filter(|m| *m > 0).collect();
        assert_eq!(outages.len(), 1, "{outages:?}");
        assert!((340..=370).contains(&outages[0]), "{} missing", outages[0]);
    }

    #[test]
    fn state_is_bounded() {
        let mut c = Cadence::default();
        let cfg = CadenceConfig::default();
        let mut prev = None;
        for i in 0..200_000i64 {
            let t = i * 997 * US_PER_SEC;
            c.observe(prev, t, &cfg);
            prev = Some(t);
        }
        assert_eq!(c.hourly.len(), HOURS_PER_WEEK);
        assert_eq!(c.burst.len(), N_BINS);
        assert!(c.weeks.is_finite() && c.weeks <= 12.0 + 1e-9);
    }
}
