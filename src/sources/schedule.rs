//! When a source runs: `every` (a fixed period from the end of the last run) or `cron` (five fields,
//! minute hour day-of-month month day-of-week, in the source's local time). Pure: the next run is computed
//! from a given time, so the schedule is tested without a clock.

use std::time::Duration;

use crate::time::{US_PER_DAY, civil_from_days};

/// A source's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Runs again this long after the previous run ended.
    Every(Duration),
    /// Runs at the times a cron expression matches.
    Cron(Cron),
}

impl Schedule {
    /// The time of the next run after `now_us` (UTC, microseconds), in a zone `offset_min` minutes from
    /// UTC. `None` when a cron expression never matches (e.g. `0 0 31 2 *`).
    pub fn next_after(&self, now_us: i64, offset_min: i64) -> Option<i64> {
        match self {
            Schedule::Every(d) => Some(now_us.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))),
            Schedule::Cron(c) => c.next_after(now_us, offset_min),
        }
    }
}

/// A parsed five-field cron expression: `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists `a,b`.
/// Day of week 0–7 (0 and 7 are Sunday). As in Vixie cron, when both day of month and day of week are
/// restricted, a day matching either runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

impl Cron {
    /// Parses an expression.
    ///
    /// # Errors
    /// A sentence saying which field is wrong.
    pub fn parse(s: &str) -> Result<Cron, String> {
        let f: Vec<&str> = s.split_whitespace().collect();
        if f.len() != 5 {
            return Err("expected five fields: minute hour day-of-month month day-of-week".into());
        }
        let mut weekdays = field(f[4], 0, 7, "day of week")?;
        if weekdays & (1 << 7) != 0 {
            weekdays |= 1;
        }
        Ok(Cron {
            minutes: field(f[0], 0, 59, "minute")?,
            hours: field(f[1], 0, 23, "hour")?,
            days: field(f[2], 1, 31, "day of month")?,
            months: field(f[3], 1, 12, "month")?,
            weekdays,
            days_restricted: f[2] != "*",
            weekdays_restricted: f[4] != "*",
        })
    }

    fn day_matches(&self, days_since_epoch: i64) -> bool {
        let (_, m, d) = civil_from_days(days_since_epoch);
        if self.months & (1 << m) == 0 {
            return false;
        }
        // 1970-01-01 was a Thursday (4).
        let wd = (days_since_epoch + 4).rem_euclid(7);
        let dom = self.days & (1 << d) != 0;
        let dow = self.weekdays & (1 << wd) != 0;
        match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => dom || dow,
            (true, false) => dom,
            (false, true) => dow,
            (false, false) => true,
        }
    }

    /// The first matching minute strictly after `now_us`, looking up to five years ahead.
    pub fn next_after(&self, now_us: i64, offset_min: i64) -> Option<i64> {
        const US_PER_MIN: i64 = 60_000_000;
        let offset_us = offset_min * US_PER_MIN;
        // The next whole local minute after now.
        let local = now_us + offset_us;
        let mut minute = local.div_euclid(US_PER_MIN) + 1;
        let last = minute + 5 * 366 * 24 * 60;
        while minute < last {
            let day = (minute * US_PER_MIN).div_euclid(US_PER_DAY);
            if !self.day_matches(day) {
                minute = (day + 1) * (US_PER_DAY / US_PER_MIN);
                continue;
            }
            let in_day = minute - day * (US_PER_DAY / US_PER_MIN);
            let (h, m) = (in_day / 60, in_day % 60);
            if self.hours & (1 << h) == 0 {
                minute += 60 - m;
                continue;
            }
            if self.minutes & (1 << m) == 0 {
                minute += 1;
                continue;
            }
            return Some(minute * US_PER_MIN - offset_us);
        }
        None
    }
}

/// One field as a bit set of the values it allows.
fn field(s: &str, lo: u32, hi: u32, what: &str) -> Result<u64, String> {
    let mut set = 0u64;
    for part in s.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, st)) => {
                let st: u32 = st.parse().map_err(|_| format!("{what}: step `{st}` is not a number"))?;
                if st == 0 {
                    return Err(format!("{what}: a step of 0"));
                }
                (r, st)
            }
            None => (part, 1),
        };
        let num = |t: &str| -> Result<u32, String> {
            let v: u32 = t.parse().map_err(|_| format!("{what}: `{t}` is not a number"))?;
            if v < lo || v > hi {
                return Err(format!("{what}: {v} is outside {lo}-{hi}"));
            }
            Ok(v)
        };
        let (a, b) = if range == "*" {
            (lo, hi)
        } else if let Some((a, b)) = range.split_once('-') {
            (num(a)?, num(b)?)
        } else {
            let a = num(range)?;
            (a, if part.contains('/') { hi } else { a })
        };
        if a > b {
            return Err(format!("{what}: range {a}-{b} is backwards"));
        }
        let mut v = a;
        while v <= b {
            set |= 1 << v;
            v += step;
        }
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_ts_us;

    fn at(s: &str) -> i64 {
        parse_ts_us(s).unwrap()
    }

    #[test]
    fn weekdays_at_13_in_mexico_city() {
        let c = Cron::parse("0 13 * * 1-5").unwrap();
        // Friday 2026-11-27 12:00 UTC is 06:00 in Mexico City: today 13:00 local = 19:00 UTC.
        assert_eq!(
            c.next_after(at("2026-11-27T12:00:00Z"), -360),
            Some(at("2026-11-27T19:00:00Z"))
        );
        // After it, the next is Monday.
        assert_eq!(
            c.next_after(at("2026-11-27T19:00:00Z"), -360),
            Some(at("2026-11-30T19:00:00Z"))
        );
    }

    #[test]
    fn steps_lists_and_sunday_as_7() {
        let c = Cron::parse("*/15 0,12 * * 7").unwrap();
        // 2026-11-29 is a Sunday.
        assert_eq!(
            c.next_after(at("2026-11-28T23:59:00Z"), 0),
            Some(at("2026-11-29T00:00:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-11-29T00:00:00Z"), 0),
            Some(at("2026-11-29T00:15:00Z"))
        );
        assert_eq!(
            c.next_after(at("2026-11-29T00:45:00Z"), 0),
            Some(at("2026-11-29T12:00:00Z"))
        );
        assert_eq!(Cron::parse("0 0 31 2 *").unwrap().next_after(0, 0), None);
    }

    #[test]
    fn bad_expressions_say_which_field() {
        assert!(Cron::parse("0 13 * *").unwrap_err().contains("five fields"));
        assert!(Cron::parse("0 25 * * *").unwrap_err().contains("hour: 25"));
        assert!(Cron::parse("0 1 * * 5-1").unwrap_err().contains("backwards"));
        assert!(Cron::parse("*/0 1 * * *").unwrap_err().contains("step of 0"));
    }

    #[test]
    fn every_adds_the_period() {
        assert_eq!(
            Schedule::Every(Duration::from_secs(2)).next_after(5, 0),
            Some(2_000_005)
        );
    }
}
