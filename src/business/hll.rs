//! A HyperLogLog sketch (Flajolet et al. 2007, with linear counting for small counts): the number of
//! distinct clients in bounded memory, and mergeable, so a period's sketch is the union of its
//! sub-buckets' and `all` is the union of the segments'.
//!
//! Fed 64-bit hashes that are already uniform (the first eight bytes of a client's HMAC pseudonym), so it
//! hashes nothing itself. With precision `p` it keeps `2^p` one-byte registers; its standard error is
//! `1.04 / sqrt(2^p)` (1.6% at the default precision 12, 4 KiB per sketch).

/// Registers' precision used by the business metrics: 4096 registers, 4 KiB, 1.6% standard error.
pub const PRECISION: u8 = 12;

/// Why two sketches cannot be merged, or a precision is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HllError {
    /// The two sketches have different precisions, so their registers do not line up.
    #[error("cannot merge sketches of precision {ours} and {theirs}")]
    PrecisionMismatch {
        /// This sketch's precision.
        ours: u8,
        /// The other one's.
        theirs: u8,
    },
    /// Precision outside 4..=16 (too inaccurate, or too large for a bounded sketch).
    #[error("precision {0} is outside 4..=16")]
    Precision(u8),
}

/// A HyperLogLog sketch of `2^precision` registers.
#[derive(Clone, PartialEq, Eq)]
pub struct HyperLogLog {
    precision: u8,
    registers: Box<[u8]>,
}

impl std::fmt::Debug for HyperLogLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HyperLogLog")
            .field("precision", &self.precision)
            .field("estimate", &self.estimate())
            .finish()
    }
}

impl Default for HyperLogLog {
    fn default() -> Self {
        HyperLogLog {
            precision: PRECISION,
            registers: vec![0; 1 << PRECISION].into_boxed_slice(),
        }
    }
}

impl HyperLogLog {
    /// An empty sketch of `2^precision` registers.
    ///
    /// # Errors
    /// [`HllError::Precision`] outside 4..=16.
    pub fn with_precision(precision: u8) -> Result<HyperLogLog, HllError> {
        if !(4..=16).contains(&precision) {
            return Err(HllError::Precision(precision));
        }
        Ok(HyperLogLog {
            precision,
            registers: vec![0; 1 << precision].into_boxed_slice(),
        })
    }

    /// The sketch's precision.
    pub fn precision(&self) -> u8 {
        self.precision
    }

    /// Adds one item by its 64-bit hash (uniform bits: a keyed hash, not the raw identifier).
    pub fn insert_hash(&mut self, hash: u64) {
        let p = u32::from(self.precision);
        let index = (hash >> (64 - p)) as usize;
        // The rank of the remaining bits: position of the first 1, counting from 1; all zeros rank 64-p+1.
        let rest = hash << p;
        let rank = if rest == 0 {
            64 - p + 1
        } else {
            rest.leading_zeros() + 1
        };
        let rank = u8::try_from(rank).unwrap_or(u8::MAX);
        if let Some(r) = self.registers.get_mut(index)
            && rank > *r
        {
            *r = rank;
        }
    }

    /// Makes this sketch the union of itself and `other` (register-wise maximum).
    ///
    /// # Errors
    /// [`HllError::PrecisionMismatch`] when the precisions differ.
    pub fn merge(&mut self, other: &HyperLogLog) -> Result<(), HllError> {
        if other.precision != self.precision {
            return Err(HllError::PrecisionMismatch {
                ours: self.precision,
                theirs: other.precision,
            });
        }
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
        Ok(())
    }

    /// Whether nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.registers.iter().all(|&r| r == 0)
    }

    /// The estimated number of distinct items: linear counting while registers are still empty and the raw
    /// estimate is small (below 2.5 m), the bias-corrected harmonic mean otherwise.
    pub fn estimate(&self) -> f64 {
        let m = self.registers.len() as f64;
        let alpha = match self.registers.len() {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        let mut sum = 0.0;
        let mut zeros = 0usize;
        for &r in self.registers.iter() {
            sum += f64::powi(2.0, -i32::from(r));
            if r == 0 {
                zeros += 1;
            }
        }
        let raw = alpha * m * m / sum;
        if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        }
    }

    /// The relative standard error of the estimate, `1.04 / sqrt(m)`.
    pub fn standard_error(&self) -> f64 {
        1.04 / (self.registers.len() as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-mixed 64-bit hash of `i` (splitmix64), standing in for a pseudonym's first bytes.
    fn mix(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn within_three_standard_errors(n: u64, offset: u64) {
        let mut h = HyperLogLog::default();
        // Every id twice: duplicates must not count.
        for i in 0..n {
            h.insert_hash(mix(offset + i));
            h.insert_hash(mix(offset + i));
        }
        let est = h.estimate();
        let tolerance = 3.0 * h.standard_error() * n as f64;
        assert!(
            (est - n as f64).abs() <= tolerance.max(0.5),
            "n={n}: estimate {est}, tolerance {tolerance}"
        );
    }

    #[test]
    fn estimates_are_within_three_standard_errors() {
        for (n, offset) in [(10, 0), (1_000, 1 << 32), (100_000, 1 << 40)] {
            within_three_standard_errors(n, offset);
        }
    }

    #[test]
    fn merge_is_the_union() {
        let (mut a, mut b, mut both) = (HyperLogLog::default(), HyperLogLog::default(), HyperLogLog::default());
        // 0..6000 in a, 4000..10000 in b: the union has 10000 distinct items.
        for i in 0..6_000 {
            a.insert_hash(mix(i));
            both.insert_hash(mix(i));
        }
        for i in 4_000..10_000 {
            b.insert_hash(mix(i));
            both.insert_hash(mix(i));
        }
        a.merge(&b).unwrap();
        assert_eq!(a, both);
        let est = a.estimate();
        assert!((est - 10_000.0).abs() <= 3.0 * a.standard_error() * 10_000.0, "{est}");
        let small = HyperLogLog::with_precision(10).unwrap();
        assert_eq!(
            a.merge(&small),
            Err(HllError::PrecisionMismatch { ours: 12, theirs: 10 })
        );
        assert!(HyperLogLog::with_precision(3).is_err());
        assert!(HyperLogLog::default().is_empty());
        assert_eq!(HyperLogLog::default().estimate(), 0.0);
    }
}
