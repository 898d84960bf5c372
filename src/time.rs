//! Timestamps as integer microseconds since the Unix epoch (UTC), parsed and formatted without a clock.
//!
//! The core never reads the wall clock: every notion of "now" comes from tick timestamps, so replay and
//! live serving see the same times and produce the same outputs.

/// Microseconds in one second.
pub const US_PER_SEC: i64 = 1_000_000;
/// Microseconds in one day.
pub const US_PER_DAY: i64 = 86_400 * US_PER_SEC;

/// Why a timestamp could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeError {
    /// The text does not have the shape `YYYY-MM-DD[(T| )hh:mm[:ss[.fff…]]][Z|±hh:mm]`.
    #[error("timestamp `{0}` is not RFC 3339 / ISO 8601")]
    Shape(String),
    /// A field is out of its range (month 13, day 32, hour 25, …).
    #[error("timestamp `{0}` has a field out of range")]
    Range(String),
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Parses `YYYY-MM-DD`, optionally followed by `T` or a space and `hh:mm[:ss[.fraction]]`, and an optional
/// `Z` or `±hh:mm` offset (no offset means UTC), into microseconds since the epoch.
///
/// Hand-written because it sits on the hot path of every tick (no allocation, no locale).
///
/// # Errors
/// [`TimeError`] when the shape or a field's range is wrong.
pub fn parse_ts_us(s: &str) -> Result<i64, TimeError> {
    let b = s.as_bytes();
    let shape = || TimeError::Shape(s.chars().take(64).collect());
    let range = || TimeError::Range(s.chars().take(64).collect());
    let y = digits(b, 0, 4).ok_or_else(shape)? as i64;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(shape());
    }
    let mo = digits(b, 5, 2).ok_or_else(shape)?;
    let d = digits(b, 8, 2).ok_or_else(shape)?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return Err(range());
    }
    let mut us = days_from_civil(y, mo, d) * US_PER_DAY;
    let mut i = 10;
    if i == b.len() {
        return Ok(us);
    }
    if !matches!(b[i], b'T' | b't' | b' ') {
        return Err(shape());
    }
    i += 1;
    let hh = digits(b, i, 2).ok_or_else(shape)?;
    if b.get(i + 2) != Some(&b':') {
        return Err(shape());
    }
    let mm = digits(b, i + 3, 2).ok_or_else(shape)?;
    i += 5;
    let mut ss = 0;
    if b.get(i) == Some(&b':') {
        ss = digits(b, i + 1, 2).ok_or_else(shape)?;
        i += 3;
    }
    if hh > 23 || mm > 59 || ss > 60 {
        return Err(range());
    }
    us += (hh as i64 * 3600 + mm as i64 * 60 + ss.min(59) as i64) * US_PER_SEC;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        let mut frac: i64 = 0;
        let mut scale: i64 = 100_000;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            frac += (c - b'0') as i64 * scale;
            scale /= 10;
            i += 1;
        }
        if i == start {
            return Err(shape());
        }
        us += frac;
    }
    match b.get(i) {
        None => Ok(us),
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => Ok(us),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2).ok_or_else(shape)?;
            let om = match b.get(i + 3) {
                Some(b':') => digits(b, i + 4, 2).ok_or_else(shape)?,
                _ => digits(b, i + 3, 2).ok_or_else(shape)?,
            };
            let end = if b.get(i + 3) == Some(&b':') { i + 6 } else { i + 5 };
            if end != b.len() || oh > 23 || om > 59 {
                return Err(shape());
            }
            let off = (oh as i64 * 3600 + om as i64 * 60) * US_PER_SEC;
            Ok(if sign == b'+' { us - off } else { us + off })
        }
        _ => Err(shape()),
    }
}

/// Formats microseconds since the epoch as RFC 3339 UTC with millisecond precision
/// (`2020-03-09T14:30:00.123Z`); microseconds are kept when they are not whole milliseconds.
pub fn format_ts(us: i64) -> String {
    let days = us.div_euclid(US_PER_DAY);
    let rem = us.rem_euclid(US_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let secs = rem / US_PER_SEC;
    let sub = rem % US_PER_SEC;
    let (hh, mm, ss) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if sub % 1000 == 0 {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{:03}Z", sub / 1000)
    } else {
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}.{sub:06}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_example_and_round_trips() {
        let us = parse_ts_us("2020-03-09T14:30:00.123Z").unwrap();
        assert_eq!(format_ts(us), "2020-03-09T14:30:00.123Z");
        assert_eq!(parse_ts_us("1970-01-01").unwrap(), 0);
        assert_eq!(parse_ts_us("1970-01-02 00:00:01").unwrap(), US_PER_DAY + US_PER_SEC);
        assert_eq!(
            parse_ts_us("2020-03-09T15:30:00.123+01:00").unwrap(),
            parse_ts_us("2020-03-09T14:30:00.123Z").unwrap()
        );
        assert_eq!(parse_ts_us("2014-05-01 00:00:00.5").unwrap() % US_PER_SEC, 500_000);
    }

    #[test]
    fn civil_round_trip_over_centuries() {
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn rejects_bad_shapes_and_ranges() {
        for bad in [
            "",
            "2020",
            "2020-13-01",
            "2020-02-30",
            "2020-01-01T25:00",
            "2020-01-01X",
            "2020-01-01T10:00Zjunk",
            "abcd-ef-gh",
        ] {
            assert!(parse_ts_us(bad).is_err(), "{bad}");
        }
        assert!(parse_ts_us("2024-02-29").is_ok());
    }
}
