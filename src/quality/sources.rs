//! Per-source state, bounded by a maximum number of sources: sequence tracking (duplicates by `seq`, gaps
//! that count against completeness, restarts) and the last mid for cross-source agreement.
//!
//! Sequence numbers use an anti-replay bitmap (as in IPsec): the highest `seq` seen plus a 64-bit mask of
//! which of the 64 numbers below it were seen, so a late tick inside that window is told apart from a
//! duplicate in O(1).

use serde::{Deserialize, Serialize};

use crate::tick::Source;

/// Width of the anti-replay window.
const SEQ_WINDOW: u64 = 64;

/// What a tick's `seq` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqOutcome {
    /// Not seen before. `gap` numbers were skipped (lost upstream); `reset` when the sequence restarted
    /// (a jump beyond `max_seq_gap` forward, or beyond the window backward).
    Fresh { gap: u64, reset: bool },
    /// This source already sent this number.
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SourceState {
    source: Source,
    /// Fingerprint of the id for content hashing, computed once.
    hash: u64,
    last_seq: Option<u64>,
    seen_mask: u64,
    /// Last accepted (mid, ts) of this source.
    last_mid: Option<(f64, i64)>,
    last_used: u64,
}

/// Up to `max_sources` sources; the least recently seen is forgotten when a new one arrives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct SourceTable {
    entries: Vec<SourceState>,
    max_sources: usize,
    clock: u64,
}

impl SourceTable {
    pub(crate) fn new(max_sources: usize) -> Self {
        let max_sources = max_sources.max(1);
        SourceTable {
            entries: Vec::with_capacity(max_sources),
            max_sources,
            clock: 0,
        }
    }

    /// The slot of `source`, created (evicting the least recently used) if needed.
    pub(crate) fn slot(&mut self, source: Source) -> usize {
        self.clock += 1;
        let clock = self.clock;
        if let Some(i) = self.entries.iter().position(|e| e.source == source) {
            self.entries[i].last_used = clock;
            return i;
        }
        let fresh = SourceState {
            source,
            hash: super::duplicates::source_hash(&source),
            last_seq: None,
            seen_mask: 0,
            last_mid: None,
            last_used: clock,
        };
        if self.entries.len() < self.max_sources {
            self.entries.push(fresh);
            return self.entries.len() - 1;
        }
        let lru = self
            .entries
            .iter()
            .enumerate()
            .min_by_key(|(_, e)| e.last_used)
            .map_or(0, |(i, _)| i);
        if let Some(e) = self.entries.get_mut(lru) {
            *e = fresh;
        }
        lru
    }

    /// Checks and records `seq` for the source in `slot`.
    pub(crate) fn observe_seq(&mut self, slot: usize, seq: u64, max_gap: u64) -> SeqOutcome {
        let Some(e) = self.entries.get_mut(slot) else {
            return SeqOutcome::Fresh { gap: 0, reset: false };
        };
        let restart = |e: &mut SourceState| {
            e.last_seq = Some(seq);
            e.seen_mask = 1;
        };
        let Some(last) = e.last_seq else {
            restart(e);
            return SeqOutcome::Fresh { gap: 0, reset: false };
        };
        if seq > last {
            let ahead = seq - last;
            if ahead > max_gap {
                restart(e);
                return SeqOutcome::Fresh { gap: 0, reset: true };
            }
            e.seen_mask = if ahead >= SEQ_WINDOW { 0 } else { e.seen_mask << ahead } | 1;
            e.last_seq = Some(seq);
            return SeqOutcome::Fresh {
                gap: ahead - 1,
                reset: false,
            };
        }
        let back = last - seq;
        if back >= SEQ_WINDOW {
            // Too old to verify: a restarted feed. A replayed old tick is still caught by the content and
            // timestamp checks.
            restart(e);
            return SeqOutcome::Fresh { gap: 0, reset: true };
        }
        let bit = 1u64 << back;
        if e.seen_mask & bit != 0 {
            SeqOutcome::Duplicate
        } else {
            e.seen_mask |= bit;
            SeqOutcome::Fresh { gap: 0, reset: false }
        }
    }

    /// True when `mid` deviates by more than `band` (relative, in log terms) from the mean of the other
    /// sources' mids that are at most `max_age_us` away from `ts_us`. False with no fresh other source.
    pub(crate) fn disagrees(&self, slot: usize, mid: f64, ts_us: i64, max_age_us: i64, band: f64) -> bool {
        let (mut sum, mut n) = (0.0, 0u32);
        for (i, e) in self.entries.iter().enumerate() {
            if i == slot {
                continue;
            }
            if let Some((m, t)) = e.last_mid
                && ts_us.abs_diff(t) <= max_age_us.max(0) as u64
            {
                sum += m;
                n += 1;
            }
        }
        n > 0 && (mid / (sum / n as f64)).ln().abs() > band
    }

    /// The cached fingerprint of the source in `slot`.
    #[inline]
    pub(crate) fn hash(&self, slot: usize) -> u64 {
        self.entries.get(slot).map_or(0, |e| e.hash)
    }

    /// The source's last accepted `(mid, ts)`.
    pub(crate) fn last_mid(&self, slot: usize) -> Option<(f64, i64)> {
        self.entries.get(slot).and_then(|e| e.last_mid)
    }

    /// Records the source's last accepted mid.
    pub(crate) fn record_mid(&mut self, slot: usize, mid: f64, ts_us: i64) {
        if let Some(e) = self.entries.get_mut(slot) {
            e.last_mid = Some((mid, ts_us));
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(s: &str) -> Source {
        Source::new(s).unwrap()
    }

    #[test]
    fn gaps_duplicates_late_fills_and_restarts() {
        let mut t = SourceTable::new(4);
        let s = t.slot(src("a"));
        use SeqOutcome::*;
        assert_eq!(t.observe_seq(s, 10, 1000), Fresh { gap: 0, reset: false });
        assert_eq!(t.observe_seq(s, 11, 1000), Fresh { gap: 0, reset: false });
        assert_eq!(t.observe_seq(s, 11, 1000), Duplicate);
        assert_eq!(t.observe_seq(s, 14, 1000), Fresh { gap: 2, reset: false });
        assert_eq!(t.observe_seq(s, 12, 1000), Fresh { gap: 0, reset: false });
        assert_eq!(t.observe_seq(s, 12, 1000), Duplicate);
        assert_eq!(t.observe_seq(s, 10, 1000), Duplicate);
        assert_eq!(t.observe_seq(s, 5000, 1000), Fresh { gap: 0, reset: true });
        assert_eq!(t.observe_seq(s, 0, 1000), Fresh { gap: 0, reset: true });
        assert_eq!(t.observe_seq(s, 1, 1000), Fresh { gap: 0, reset: false });
    }

    #[test]
    fn bounded_by_max_sources_with_lru_eviction() {
        let mut t = SourceTable::new(3);
        for i in 0..100_000 {
            let s = t.slot(src(&format!("s{i}")));
            t.observe_seq(s, i, 10);
        }
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn agreement_uses_fresh_other_sources_only() {
        let mut t = SourceTable::new(4);
        let (a, b) = (t.slot(src("a")), t.slot(src("b")));
        t.record_mid(a, 20.0, 0);
        assert!(!t.disagrees(a, 30.0, 0, 10, 0.005), "no other source");
        assert!(t.disagrees(b, 20.2, 5, 10, 0.005));
        assert!(!t.disagrees(b, 20.05, 5, 10, 0.005));
        assert!(!t.disagrees(b, 20.2, 50, 10, 0.005), "a is too old");
    }
}
