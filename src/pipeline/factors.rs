//! The latest observation of each factor, kept for pairs that start later: a pair that appears after
//! factors were published must see the same factor values as one that was there all along.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use crate::engine::MAX_FACTORS;
use crate::tick::Factor;

/// The latest value of each factor by name, at most [`MAX_FACTORS`] names (names come from the network).
#[derive(Debug, Clone, Default)]
pub struct FactorBook {
    latest: BTreeMap<String, Arc<Factor>>,
}

impl FactorBook {
    /// Records `f` as its name's latest value; returns false when it is a new name past the bound (it is
    /// still applied to the running pairs, just not remembered for later ones).
    pub fn record(&mut self, f: Arc<Factor>) -> bool {
        if self.latest.len() < MAX_FACTORS || self.latest.contains_key(&f.name) {
            self.latest.insert(f.name.clone(), f);
            true
        } else {
            false
        }
    }

    /// The remembered factors, by name: what a new pair is given before its first tick.
    pub fn latest(&self) -> impl Iterator<Item = &Arc<Factor>> {
        self.latest.values()
    }

    /// The remembered factors as plain values (a checkpoint cut saves them).
    pub fn to_vec(&self) -> Vec<Factor> {
        self.latest.values().map(|f| (**f).clone()).collect()
    }

    /// Names remembered.
    pub fn len(&self) -> usize {
        self.latest.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.latest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, value: f64) -> Arc<Factor> {
        Arc::new(Factor {
            name: name.into(),
            ts_us: 0,
            value,
            source: "test".into(),
        })
    }

    #[test]
    fn keeps_the_latest_per_name_and_bounds_the_names() {
        let mut b = FactorBook::default();
        assert!(b.record(f("A", 1.0)));
        assert!(b.record(f("A", 2.0)));
        assert_eq!(b.len(), 1);
        assert_eq!(b.latest().next().map(|f| f.value), Some(2.0));
        for i in 1..MAX_FACTORS {
            assert!(b.record(f(&format!("F{i}"), 0.0)));
        }
        assert!(!b.record(f("ONE_TOO_MANY", 0.0)));
        assert!(b.record(f("A", 3.0)), "a known name is always updated");
        assert_eq!(b.len(), MAX_FACTORS);
    }
}
