//! Forecast horizons, in time (`30s`, `1m`, `1h`, `1d`, `1w`) or in observations (`1step`, `5step`).
//!
//! A time horizon `h` from a forecast at `ts` is realised by the first accepted tick at or after `ts + h`;
//! a step horizon `n` by the n-th accepted tick after the forecast.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::US_PER_SEC;

/// A forecast horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Horizon {
    /// A number of accepted observations ahead.
    Steps(u32),
    /// A span of event time ahead, in microseconds.
    Time {
        /// The span in microseconds.
        us: i64,
    },
}

/// Why a horizon string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HorizonError {
    /// Not `<n><unit>` with a unit among `step`, `s`, `m`, `h`, `d`, `w`.
    #[error("horizon `{0}` is not <n>step or <n>(s|m|h|d|w), e.g. 5step, 1h, 1d")]
    Shape(String),
    /// Zero, or longer than a year.
    #[error("horizon `{0}` must be positive and at most a year")]
    Range(String),
}

impl Horizon {
    /// The horizon in seconds for a time horizon; `None` for a step horizon.
    pub fn secs(&self) -> Option<f64> {
        match self {
            Horizon::Time { us } => Some(*us as f64 / US_PER_SEC as f64),
            Horizon::Steps(_) => None,
        }
    }
}

impl FromStr for Horizon {
    type Err = HorizonError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| HorizonError::Shape(s.into()))?;
        let (num, unit) = t.split_at(split);
        let n: i64 = num.parse().map_err(|_| HorizonError::Shape(s.into()))?;
        let unit_secs = match unit {
            "step" | "steps" => {
                if n == 0 || n > 100_000 {
                    return Err(HorizonError::Range(s.into()));
                }
                return Ok(Horizon::Steps(n as u32));
            }
            "s" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86_400,
            "w" => 7 * 86_400,
            _ => return Err(HorizonError::Shape(s.into())),
        };
        let secs = n.checked_mul(unit_secs).ok_or_else(|| HorizonError::Range(s.into()))?;
        if secs == 0 || secs > 366 * 86_400 {
            return Err(HorizonError::Range(s.into()));
        }
        Ok(Horizon::Time { us: secs * US_PER_SEC })
    }
}

impl Horizon {
    /// The label's number and unit (`1h` is `(1, "h")`): the largest unit that divides a time horizon.
    fn label_parts(&self) -> (i64, &'static str) {
        match *self {
            Horizon::Steps(n) => (i64::from(n), "step"),
            Horizon::Time { us } => {
                let s = us / US_PER_SEC;
                for (unit, len) in [("w", 7 * 86_400), ("d", 86_400), ("h", 3600), ("m", 60)] {
                    if s % len == 0 {
                        return (s / len, unit);
                    }
                }
                (s, "s")
            }
        }
    }

    /// Appends the label (as [`Display`](fmt::Display) prints it) to `out`, without `fmt`: forecasts carry
    /// one label per horizon and are written once per tick.
    pub fn write_label(&self, out: &mut Vec<u8>) {
        let (n, unit) = self.label_parts();
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        out.extend_from_slice(unit.as_bytes());
    }
}

impl fmt::Display for Horizon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = self.label_parts();
        write!(f, "{n}{unit}")
    }
}

impl Serialize for Horizon {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Horizon {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (s, h) in [
            ("1step", Horizon::Steps(1)),
            ("5step", Horizon::Steps(5)),
            ("1m", Horizon::Time { us: 60 * US_PER_SEC }),
            ("1h", Horizon::Time { us: 3600 * US_PER_SEC }),
            (
                "1d",
                Horizon::Time {
                    us: 86_400 * US_PER_SEC,
                },
            ),
            ("90s", Horizon::Time { us: 90 * US_PER_SEC }),
        ] {
            assert_eq!(s.parse::<Horizon>().unwrap(), h);
            assert_eq!(h.to_string(), s);
        }
        assert_eq!("120m".parse::<Horizon>().unwrap().to_string(), "2h");
        for bad in ["", "step", "0step", "1x", "-1d", "0s", "99999999999999d", "1.5h"] {
            assert!(bad.parse::<Horizon>().is_err(), "{bad}");
        }
    }
}
