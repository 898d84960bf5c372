//! Which JetStream stream sequences have been applied, so a redelivered tick is acknowledged and skipped
//! instead of being applied twice.
//!
//! Redeliveries can come out of order (a message lost in flight during a server restart is redelivered
//! after its ack wait, while newer ones keep arriving), so "skip everything at or below the highest
//! sequence seen" would drop ticks. Instead: every sequence at or below `floor` is applied, and the
//! applied ones above it are kept in a set that collapses into the floor as the gaps fill. Gaps that never
//! fill (messages purged from the stream) are bounded: past [`MAX_ABOVE`] entries the floor jumps to the
//! oldest, an old gap is given up (the message is long gone from the stream anyway).

use std::collections::BTreeSet;

/// Most applied sequences kept above the floor.
pub const MAX_ABOVE: usize = 1 << 18;

/// The set of applied stream sequences.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AppliedSeqs {
    floor: u64,
    above: BTreeSet<u64>,
}

impl AppliedSeqs {
    /// Everything at or below `floor` counts as applied (e.g. the consumer's acknowledged floor).
    pub fn with_floor(floor: u64) -> AppliedSeqs {
        AppliedSeqs {
            floor,
            above: BTreeSet::new(),
        }
    }

    /// Records `seq` as applied; returns false when it already was (a redelivery to skip).
    pub fn insert(&mut self, seq: u64) -> bool {
        if seq <= self.floor || !self.above.insert(seq) {
            return false;
        }
        while self.above.first() == Some(&(self.floor + 1)) {
            self.above.pop_first();
            self.floor += 1;
        }
        if self.above.len() > MAX_ABOVE
            && let Some(first) = self.above.pop_first()
        {
            self.floor = first;
            while self.above.first() == Some(&(self.floor + 1)) {
                self.above.pop_first();
                self.floor += 1;
            }
        }
        true
    }

    /// Whether `seq` has been applied.
    pub fn contains(&self, seq: u64) -> bool {
        seq <= self.floor || self.above.contains(&seq)
    }

    /// The highest sequence below which every one has been applied.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The highest sequence applied.
    pub fn last(&self) -> u64 {
        self.above.last().copied().unwrap_or(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_redelivery_is_applied_once() {
        let mut a = AppliedSeqs::with_floor(10);
        assert!(!a.insert(10), "at the floor: already applied");
        assert!(a.insert(12), "13 may come before 11 after a restart");
        assert!(a.insert(13));
        assert_eq!(a.floor(), 10);
        assert!(a.insert(11), "the late one is new, not a duplicate");
        assert_eq!(a.floor(), 13);
        assert!(!a.insert(12), "a redelivery");
        assert_eq!(a.last(), 13);
    }

    #[test]
    fn gaps_that_never_fill_stay_bounded() {
        let mut a = AppliedSeqs::with_floor(0);
        for s in 0..(MAX_ABOVE as u64 + 10) {
            assert!(a.insert(2 + 2 * s));
        }
        assert!(a.above.len() <= MAX_ABOVE);
        assert!(a.floor() > 0);
    }
}
