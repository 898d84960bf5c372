//! Seeded helpers shared by unit tests (compiled only for tests).

/// Xorshift64 byte-string mutator: random single-byte replacements, insertions and removals, so
/// differential tests (fast path against general path) see many near-valid inputs.
pub(crate) struct Mutator(pub u64);

impl Mutator {
    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `seed` with 1 to `max_edits` random edits drawn from `alphabet`.
    pub fn mutate(&mut self, seed: &[u8], alphabet: &[u8], max_edits: u64) -> Vec<u8> {
        let mut t = seed.to_vec();
        for _ in 0..=(self.next() % max_edits) {
            let at = (self.next() as usize) % (t.len() + 1);
            let c = alphabet[(self.next() as usize) % alphabet.len()];
            match self.next() % 3 {
                0 if at < t.len() => t[at] = c,
                1 if at < t.len() => {
                    t.remove(at);
                }
                _ => t.insert(at, c),
            }
        }
        t
    }
}

/// `n` seeded synthetic ticks of `pair` (a t(4) GARCH random walk, one per second), for state tests.
pub(crate) fn synth_ticks(pair: crate::tick::Pair, n: usize) -> Vec<crate::tick::Tick> {
    let spec: crate::replay::synth::SynthSpec =
        toml::from_str(&format!("seed = 7\nticks = {n}\nstudent_t_df = 4\ngarch = true")).expect("spec");
    crate::replay::synth::SynthTicks::new(spec, pair)
        .expect("synth")
        .filter_map(|i| match i {
            crate::replay::Item::Tick(t) => Some(t),
            _ => None,
        })
        .collect()
}
