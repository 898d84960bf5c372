//! A DDSketch-style quantile sketch: log-spaced buckets give every quantile within a relative error
//! `alpha`, in bounded memory, deterministically, and two sketches of the same accuracy merge exactly.
//!
//! The bucket index uses the cheap piecewise-linear approximation of `log2` read off the float's exponent
//! and mantissa (DDSketch's "linearly interpolated" mapping) instead of `ln`, so an insert costs a few
//! nanoseconds. The approximation stretches true log-space by at most `1/ln 2`, which the multiplier
//! `1/ln(gamma)` already absorbs, so the guarantee holds unchanged.

use serde::{Deserialize, Serialize};

/// Why two sketches cannot be merged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SketchError {
    /// Merging needs identical bucket boundaries, i.e. the same relative accuracy.
    #[error("cannot merge sketches with relative accuracy {0} and {1}")]
    IncompatibleAccuracy(f64, f64),
}

/// Smallest magnitude given its own bucket; anything smaller (including subnormals and ±0) is counted as
/// zero, which is exact enough for prices, spreads and returns.
const MIN_INDEXABLE: f64 = f64::MIN_POSITIVE;

/// Buckets added beyond the needed range when a store grows, so a slowly trending value does not rebuild
/// the store on every new bucket.
const GROWTH_SLACK: i64 = 32;

/// The approximate `log2`: exact at powers of two, linear in between. Only for normal positive floats.
fn approx_log2(x: f64) -> f64 {
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mantissa = f64::from_bits((bits & ((1u64 << 52) - 1)) | 0x3ff0_0000_0000_0000);
    exponent as f64 + (mantissa - 1.0)
}

/// The inverse of [`approx_log2`].
fn approx_exp2(y: f64) -> f64 {
    let e = y.floor();
    (1.0 + (y - e)) * 2f64.powi(e as i32)
}

/// Counts per bucket index over a contiguous range, at most `max_buckets` wide; when a new index would
/// widen it further, the lowest buckets are folded together (the high quantiles stay accurate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Store {
    offset: i64,
    counts: Vec<u64>,
    max_buckets: usize,
}

impl Store {
    fn new(max_buckets: usize) -> Self {
        Store {
            offset: 0,
            counts: Vec::new(),
            max_buckets: max_buckets.max(1),
        }
    }

    #[inline]
    fn add(&mut self, idx: i64, n: u64) {
        // Hot path: inside the current range.
        if let Some(c) = usize::try_from(idx.wrapping_sub(self.offset))
            .ok()
            .and_then(|i| self.counts.get_mut(i))
        {
            *c += n;
            return;
        }
        self.add_slow(idx, n);
    }

    #[cold]
    fn add_slow(&mut self, idx: i64, n: u64) {
        if self.counts.is_empty() {
            self.offset = idx;
            self.counts.push(n);
            return;
        }
        let lo = self.offset;
        let hi = lo + self.counts.len() as i64 - 1;
        if (lo..=hi).contains(&idx) {
            self.counts[(idx - lo) as usize] += n;
            return;
        }
        if idx < lo
            && self.counts.len() >= self.max_buckets
            && let Some(lowest) = self.counts.first_mut()
        {
            // Already collapsed to the cap: fold into the lowest bucket without re-laying the store.
            *lowest += n;
            return;
        }
        self.regrow(lo.min(idx), hi.max(idx), idx > hi);
        let at = idx.max(self.offset);
        self.counts[(at - self.offset) as usize] += n;
    }

    /// Re-lays the store over at least `[need_lo, need_hi]`, collapsing the lowest buckets when that is too
    /// wide, and adding slack on the growing side otherwise.
    fn regrow(&mut self, need_lo: i64, need_hi: i64, grew_up: bool) {
        let max = self.max_buckets as i64;
        let (new_lo, new_hi) = if need_hi - need_lo + 1 > max {
            (need_hi - max + 1, need_hi)
        } else {
            let room = (max - (need_hi - need_lo + 1)).min(GROWTH_SLACK);
            if grew_up {
                (need_lo, need_hi + room)
            } else {
                (need_lo - room, need_hi)
            }
        };
        let mut counts = vec![0u64; (new_hi - new_lo + 1) as usize];
        for (i, &c) in self.counts.iter().enumerate() {
            let at = (self.offset + i as i64).clamp(new_lo, new_hi);
            counts[(at - new_lo) as usize] += c;
        }
        self.offset = new_lo;
        self.counts = counts;
    }

    #[cfg(test)]
    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// A mergeable quantile sketch with relative accuracy `alpha` for positive, negative and zero values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DdSketch {
    alpha: f64,
    multiplier: f64,
    positive: Store,
    negative: Store,
    zero: u64,
    count: u64,
}

impl DdSketch {
    /// A sketch answering quantiles within relative error `alpha` (clamped to `[1e-4, 0.5]`), keeping at most
    /// `max_buckets` buckets per sign.
    pub fn new(alpha: f64, max_buckets: usize) -> Self {
        let alpha = if alpha.is_finite() {
            alpha.clamp(1e-4, 0.5)
        } else {
            0.01
        };
        let gamma = (1.0 + alpha) / (1.0 - alpha);
        DdSketch {
            alpha,
            multiplier: 1.0 / gamma.ln(),
            positive: Store::new(max_buckets),
            negative: Store::new(max_buckets),
            zero: 0,
            count: 0,
        }
    }

    /// The relative accuracy guaranteed for quantiles (before any collapsing).
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// Values added so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    #[inline]
    fn index(&self, magnitude: f64) -> i64 {
        // floor without a libm call: truncate, then step down for negative non-integers.
        let y = approx_log2(magnitude) * self.multiplier;
        let i = y as i64;
        if (i as f64) > y { i - 1 } else { i }
    }

    /// The representative of bucket `idx`: the point with equal relative distance to both bucket edges.
    fn value(&self, idx: i64) -> f64 {
        let lo = approx_exp2(idx as f64 / self.multiplier);
        let hi = approx_exp2((idx + 1) as f64 / self.multiplier);
        // 2·lo·hi / (lo + hi), written so it cannot overflow near f64::MAX.
        2.0 * lo / (1.0 + lo / hi)
    }

    /// Adds one value. Non-finite values are ignored (the profile counts them as nulls).
    #[inline]
    pub fn add(&mut self, x: f64) {
        if !x.is_finite() {
            return;
        }
        let m = x.abs();
        if m < MIN_INDEXABLE {
            self.zero += 1;
        } else if x > 0.0 {
            let idx = self.index(m);
            self.positive.add(idx, 1);
        } else {
            let idx = self.index(m);
            self.negative.add(idx, 1);
        }
        self.count += 1;
    }

    /// The value at rank `floor(q · (n − 1))` (0-based) within relative error `alpha`; `None` when empty or
    /// `q` is outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = (q * (self.count - 1) as f64).floor() as u64;
        let mut seen = 0u64;
        // Most negative first: the negative store's highest index holds the largest magnitudes.
        for (i, &c) in self.negative.counts.iter().enumerate().rev() {
            seen += c;
            if seen > rank {
                return Some(-self.value(self.negative.offset + i as i64));
            }
        }
        seen += self.zero;
        if seen > rank {
            return Some(0.0);
        }
        for (i, &c) in self.positive.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Some(self.value(self.positive.offset + i as i64));
            }
        }
        None
    }

    /// Adds another sketch's counts, as if its values had been added here.
    ///
    /// # Errors
    /// [`SketchError::IncompatibleAccuracy`] when the accuracies (and so the bucket boundaries) differ.
    pub fn merge(&mut self, other: &DdSketch) -> Result<(), SketchError> {
        if self.alpha != other.alpha {
            return Err(SketchError::IncompatibleAccuracy(self.alpha, other.alpha));
        }
        for (mine, theirs) in [
            (&mut self.positive, &other.positive),
            (&mut self.negative, &other.negative),
        ] {
            for (i, &c) in theirs.counts.iter().enumerate() {
                if c > 0 {
                    mine.add(theirs.offset + i as i64, c);
                }
            }
        }
        self.zero += other.zero;
        self.count += other.count;
        Ok(())
    }

    /// Buckets currently held (both signs): bounded by twice the configured maximum.
    pub fn bucket_count(&self) -> usize {
        self.positive.counts.len() + self.negative.counts.len()
    }

    #[cfg(test)]
    fn store_total(&self) -> u64 {
        self.positive.total() + self.negative.total() + self.zero
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A tiny deterministic generator (SplitMix64) so tests need no `rand` crate.
    pub(crate) struct SplitMix(pub u64);

    impl SplitMix {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        /// Uniform in `[0, 1)`.
        pub(crate) fn uniform(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
        /// Standard normal (Box–Muller).
        pub(crate) fn normal(&mut self) -> f64 {
            let u = self.uniform().max(1e-300);
            let v = self.uniform();
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    fn exact(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    #[test]
    fn quantiles_within_relative_accuracy_of_exact() {
        let mut rng = SplitMix(42);
        let mut xs = Vec::new();
        for i in 0..100_000 {
            let x = match i % 10 {
                0 => 0.0,
                1..=3 => -(rng.normal() * 2.0).exp(),
                _ => (rng.normal() * 3.0).exp() * 1e-3,
            };
            xs.push(x);
        }
        let mut s = DdSketch::new(0.01, 2048);
        for &x in &xs {
            s.add(x);
        }
        xs.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0] {
            let want = exact(&xs, q);
            let got = s.quantile(q).unwrap();
            assert!(
                (got - want).abs() <= 0.01 * want.abs() + 1e-300,
                "q={q}: got {got}, exact {want}"
            );
        }
        assert_eq!(s.count(), 100_000);
        assert_eq!(s.store_total(), 100_000);
        assert!(s.quantile(1.5).is_none());
    }

    #[test]
    fn merge_equals_single_sketch_and_rejects_other_accuracy() {
        let mut rng = SplitMix(7);
        let (mut a, mut b, mut all) = (
            DdSketch::new(0.01, 512),
            DdSketch::new(0.01, 512),
            DdSketch::new(0.01, 512),
        );
        for i in 0..10_000 {
            let x = rng.normal() * 100.0;
            all.add(x);
            if i % 3 == 0 { a.add(x) } else { b.add(x) }
        }
        a.merge(&b).unwrap();
        for q in [0.01, 0.5, 0.99] {
            assert_eq!(a.quantile(q), all.quantile(q));
        }
        assert!(a.merge(&DdSketch::new(0.02, 512)).is_err());
    }

    #[test]
    fn bucket_count_is_bounded_by_collapsing_the_lowest() {
        let mut s = DdSketch::new(0.01, 100);
        for e in -300..300 {
            s.add(10f64.powi(e));
            s.add(-(10f64.powi(e)));
        }
        assert!(s.bucket_count() <= 200);
        let top = s.quantile(1.0).unwrap();
        assert!((top - 1e299).abs() <= 0.01 * 1e299);
        s.add(f64::NAN);
        s.add(f64::INFINITY);
        assert_eq!(s.count(), 1200);
    }
}
