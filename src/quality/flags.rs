//! [`Flags`]: what was noticed about an accepted tick. A flag never stops a tick; it is counted in the
//! scores and passed on so downstream code (and people) can see why a dimension degraded.

use std::fmt;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

/// A small `Copy` bitset of named observations about an accepted tick. Serializes as a list of names
/// (`["seq_gap", "late_arrival"]`) so reports stay readable and stable if bits are renumbered.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No flags.
    pub const EMPTY: Flags = Flags(0);
    /// The source's sequence number skipped ahead: ticks were lost upstream (counts against completeness).
    pub const SEQ_GAP: Flags = Flags(1 << 0);
    /// The source's sequence number jumped implausibly far (a feed restart); tracking restarted from here.
    pub const SEQ_RESET: Flags = Flags(1 << 1);
    /// The relative spread is above the warn level but below the quarantine level.
    pub const WIDE_SPREAD_WARN: Flags = Flags(1 << 2);
    /// The mid deviates from the other sources' recent mids by more than the agreement band.
    pub const SOURCE_DISAGREE: Flags = Flags(1 << 3);
    /// The tick arrived later than the warn lag (counts against timeliness).
    pub const LATE_ARRIVAL: Flags = Flags(1 << 4);
    /// A level shift (or a jump of the clock) confirmed by consecutive agreeing ticks: the anchor moved here.
    pub const REANCHORED: Flags = Flags(1 << 5);
    /// Slightly older than the watermark but inside the reorder tolerance.
    pub const REORDERED: Flags = Flags(1 << 6);
    /// Some factor's latest observation is older than the allowed age (counts against timeliness).
    pub const STALE_FACTOR: Flags = Flags(1 << 7);
    /// Ticks expected by the configured interval did not arrive before this one (counts against
    /// completeness).
    pub const MISSED_INTERVALS: Flags = Flags(1 << 8);
    /// The same source, time and prices as a recent tick, under a new sequence number: a feed re-sends
    /// the quote when only the quoted sizes change. Accepted (the sequence number is the message's
    /// identity), but it carries no new price information, so the models do not learn from it.
    pub const UNCHANGED: Flags = Flags(1 << 9);

    /// Every flag with its report name, in bit order.
    pub const NAMED: [(Flags, &'static str); 10] = [
        (Flags::SEQ_GAP, "seq_gap"),
        (Flags::SEQ_RESET, "seq_reset"),
        (Flags::WIDE_SPREAD_WARN, "wide_spread_warn"),
        (Flags::SOURCE_DISAGREE, "source_disagree"),
        (Flags::LATE_ARRIVAL, "late_arrival"),
        (Flags::REANCHORED, "reanchored"),
        (Flags::REORDERED, "reordered"),
        (Flags::STALE_FACTOR, "stale_factor"),
        (Flags::MISSED_INTERVALS, "missed_intervals"),
        (Flags::UNCHANGED, "unchanged"),
    ];

    /// The dimension a flag counts against in the scores, if any (only single flags have one).
    pub fn dimension(self) -> Option<crate::tick::reason::Dimension> {
        use crate::tick::reason::Dimension;
        match self {
            Flags::SEQ_GAP | Flags::MISSED_INTERVALS => Some(Dimension::Completeness),
            Flags::SOURCE_DISAGREE => Some(Dimension::Consistency),
            Flags::LATE_ARRIVAL | Flags::STALE_FACTOR => Some(Dimension::Timeliness),
            _ => None,
        }
    }

    /// True when every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// True when no flag is set.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }

    /// The raw bits (for counters indexed by bit).
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Names of the set flags, in bit order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::NAMED
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }

    /// The flag with this report name.
    pub fn from_name(name: &str) -> Option<Flags> {
        Flags::NAMED.iter().find(|(_, n)| *n == name).map(|(f, _)| *f)
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Flags {
    fn bitor_assign(&mut self, rhs: Flags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl Serialize for Flags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(None)?;
        for name in self.names() {
            seq.serialize_element(name)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Flags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Flags;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of flag names")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Flags, A::Error> {
                let mut flags = Flags::EMPTY;
                while let Some(name) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                    flags |= Flags::from_name(&name)
                        .ok_or_else(|| serde::de::Error::custom(format!("unknown flag `{name}`")))?;
                }
                Ok(flags)
            }
        }
        d.deserialize_seq(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_names_and_back() {
        let f = Flags::SEQ_GAP | Flags::REANCHORED;
        let json = serde_json::to_string(&f).unwrap();
        assert_eq!(json, r#"["seq_gap","reanchored"]"#);
        assert_eq!(serde_json::from_str::<Flags>(&json).unwrap(), f);
        assert_eq!(serde_json::to_string(&Flags::EMPTY).unwrap(), "[]");
        assert!(serde_json::from_str::<Flags>(r#"["nope"]"#).is_err());
        assert_eq!(format!("{f:?}"), r#"["seq_gap", "reanchored"]"#);
    }
}
