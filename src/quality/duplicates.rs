//! Content duplicates: the same (source, time, prices) seen again among the recent accepted ticks.
//!
//! A bounded, set-associative table of 64-bit fingerprints stamped with the tick counter: a lookup touches
//! one bucket of [`WAYS`] slots (O(1)), an entry older than the window simply stops matching, and memory is
//! fixed at construction. Under heavy bucket collisions an entry can be evicted early, which can only miss a
//! duplicate, never invent one. The hash is a fixed mixer, not `RandomState`, so runs are deterministic.

use serde::{Deserialize, Serialize};

use crate::tick::Tick;

/// Slots per bucket.
const WAYS: usize = 4;

/// A 64-bit finalizer (SplitMix64): cheap and well mixed.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[inline]
fn combine(h: u64, v: u64) -> u64 {
    mix(h ^ v
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(h << 6)
        .wrapping_add(h >> 2))
}

/// Bits of an optional price, with `None` distinct from every float.
#[inline]
fn price_bits(p: Option<f64>) -> u64 {
    p.map_or(0x7FF8_DEAD_BEEF_0001, |x| if x == 0.0 { 0 } else { x.to_bits() })
}

/// A fixed-seed streaming hasher, so `#[derive(Hash)]` types (the inline source id) hash the same in every
/// run and process.
struct Fixed(u64);

impl std::hash::Hasher for Fixed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0 = combine(self.0, u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.0 = combine(self.0, i as u64);
    }
}

/// The fingerprint of a source id, computed once per source (the source table caches it).
pub(crate) fn source_hash(source: &crate::tick::Source) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = Fixed(0x5EED);
    source.hash(&mut hasher);
    hasher.finish()
}

/// The fingerprint of a tick's content: source (by its cached fingerprint), timestamp and prices (not
/// `seq`, not `arrival_us`).
#[inline]
pub(crate) fn content_hash(t: &Tick, source_hash: u64) -> u64 {
    let mut h = combine(mix(t.ts_us as u64), source_hash);
    h = combine(h, price_bits(t.bid));
    h = combine(h, price_bits(t.ask));
    combine(h, price_bits(t.mid))
}

/// The recent-content set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecentSet {
    /// `(fingerprint, stamp)`; stamp 0 marks an empty slot.
    slots: Vec<(u64, u64)>,
    bucket_mask: usize,
    window: u64,
    stamp: u64,
}

impl RecentSet {
    /// A set remembering about the last `window` inserts.
    pub(crate) fn new(window: usize) -> Self {
        let window = window.max(1);
        // One bucket of WAYS slots per remembered tick keeps early evictions rare.
        let buckets = window.next_power_of_two();
        RecentSet {
            slots: vec![(0, 0); buckets * WAYS],
            bucket_mask: buckets - 1,
            window: window as u64,
            stamp: 0,
        }
    }

    fn bucket(&self, h: u64) -> usize {
        (h as usize & self.bucket_mask) * WAYS
    }

    /// True when `h` was inserted within the last `window` inserts.
    #[inline]
    pub(crate) fn contains(&self, h: u64) -> bool {
        let b = self.bucket(h);
        self.slots.get(b..b + WAYS).is_some_and(|s| {
            s.iter()
                .any(|&(k, st)| st != 0 && k == h && self.stamp - st < self.window)
        })
    }

    /// Remembers `h`, replacing the oldest slot of its bucket.
    #[inline]
    pub(crate) fn insert(&mut self, h: u64) {
        self.stamp += 1;
        let b = self.bucket(h);
        let stamp = self.stamp;
        if let Some(bucket) = self.slots.get_mut(b..b + WAYS)
            && let Some(slot) = bucket.iter_mut().min_by_key(|(_, st)| *st)
        {
            *slot = (h, stamp);
        }
    }

    /// Slots allocated (constant after construction).
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Pair, Source};

    #[test]
    fn content_hash_covers_source_time_and_prices() {
        let t = Tick {
            pair: Pair::parse("USDMXN").unwrap(),
            ts_us: 1,
            bid: Some(20.0),
            ask: Some(20.1),
            mid: None,
            source: Source::new("a").unwrap(),
            seq: Some(1),
            arrival_us: None,
        };
        let hash = |t: &Tick| content_hash(t, source_hash(&t.source));
        let h = hash(&t);
        assert_eq!(
            h,
            hash(&Tick {
                seq: Some(2),
                arrival_us: Some(5),
                ..t
            })
        );
        for other in [
            Tick { ts_us: 2, ..t },
            Tick { bid: Some(20.01), ..t },
            Tick { ask: None, ..t },
            Tick { mid: Some(20.05), ..t },
            Tick {
                source: Source::new("b").unwrap(),
                ..t
            },
        ] {
            assert_ne!(hash(&other), h);
        }
    }

    #[test]
    fn remembers_the_window_and_forgets_older() {
        let mut s = RecentSet::new(100);
        let cap = s.capacity();
        for i in 0..100u64 {
            s.insert(mix(i));
        }
        assert!((0..100u64).filter(|&i| s.contains(mix(i))).count() >= 98);
        for i in 100..1_000_000u64 {
            s.insert(mix(i));
        }
        assert!(!s.contains(mix(0)));
        assert!(s.contains(mix(999_999)));
        assert_eq!(s.capacity(), cap);
    }
}
