//! The bound on how many pairs one process serves: each pair is an engine (and maybe a challenger), and
//! pair names come from the network, so their number must be capped.

use std::collections::BTreeMap;

use crate::tick::Pair;

/// Most pairs one replay or one service holds by default (`[serve] max_pairs`).
pub const MAX_PAIRS: usize = 256;

/// A new pair was refused: the set already holds its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("more than {max} distinct pairs (pair {pair} refused)")]
pub struct TooManyPairs {
    /// The bound.
    pub max: usize,
    /// The pair refused.
    pub pair: Pair,
}

/// Per-pair values (pipelines in replay, shard handles in serve), in pair order, at most `max` of them.
#[derive(Debug)]
pub struct PairSet<T> {
    map: BTreeMap<Pair, T>,
    max: usize,
}

impl<T> PairSet<T> {
    /// An empty set holding at most `max` pairs.
    pub fn new(max: usize) -> PairSet<T> {
        PairSet {
            map: BTreeMap::new(),
            max,
        }
    }

    /// The most pairs held.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Whether a new pair would be refused.
    pub fn is_full(&self) -> bool {
        self.map.len() >= self.max
    }

    /// The value of `pair`.
    pub fn get(&self, pair: &Pair) -> Option<&T> {
        self.map.get(pair)
    }

    /// The value of `pair`, mutably.
    pub fn get_mut(&mut self, pair: &Pair) -> Option<&mut T> {
        self.map.get_mut(pair)
    }

    /// Removes `pair`, returning its value.
    pub fn remove(&mut self, pair: &Pair) -> Option<T> {
        self.map.remove(pair)
    }

    /// Whether `pair` is held.
    pub fn contains(&self, pair: &Pair) -> bool {
        self.map.contains_key(pair)
    }

    /// Adds `pair` with `value`.
    ///
    /// # Errors
    /// [`TooManyPairs`] when the set is full and `pair` is new (an existing value is replaced).
    pub fn insert(&mut self, pair: Pair, value: T) -> Result<(), TooManyPairs> {
        if !self.map.contains_key(&pair) && self.is_full() {
            return Err(TooManyPairs { max: self.max, pair });
        }
        self.map.insert(pair, value);
        Ok(())
    }

    /// The value of `pair`, made by `make` if the pair is new.
    ///
    /// # Errors
    /// [`TooManyPairs`] when the pair is new and the set full (converted into `E`), or `make`'s error.
    pub fn get_or_try_insert_with<E: From<TooManyPairs>>(
        &mut self,
        pair: Pair,
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<&mut T, E> {
        if !self.map.contains_key(&pair) {
            if self.is_full() {
                return Err(TooManyPairs { max: self.max, pair }.into());
            }
            self.map.insert(pair, make()?);
        }
        self.map
            .get_mut(&pair)
            .ok_or(E::from(TooManyPairs { max: self.max, pair }))
    }

    /// The pairs and their values, in pair order.
    pub fn iter(&self) -> impl Iterator<Item = (&Pair, &T)> {
        self.map.iter()
    }

    /// The values, mutably, in pair order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.map.values_mut()
    }

    /// The values, in pair order.
    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.map.values()
    }

    /// The first pair held (in pair order).
    pub fn first_pair(&self) -> Option<Pair> {
        self.map.keys().next().copied()
    }

    /// Pairs held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The values, in pair order.
    pub fn into_values(self) -> impl Iterator<Item = T> {
        self.map.into_values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_new_pairs_past_the_bound_but_updates_known_ones() {
        let a = Pair::parse("USDMXN").unwrap();
        let b = Pair::parse("EURUSD").unwrap();
        let mut s = PairSet::new(1);
        s.insert(a, 1).unwrap();
        assert_eq!(s.insert(b, 2), Err(TooManyPairs { max: 1, pair: b }));
        s.insert(a, 3).unwrap();
        assert_eq!(s.get(&a), Some(&3));
        let r: Result<&mut i32, TooManyPairs> = s.get_or_try_insert_with(b, || Ok(4));
        assert!(r.is_err());
    }
}
