//! Seeded synthetic tick streams with known ground truth, for scenarios: a calm random walk with
//! heavy tails and volatility clustering, plus injected events (level shift, volatility regime change,
//! fat-finger spike, feed outage, duplicate flood, out-of-order burst, crossed quotes, missing values).
//!
//! Generated on the fly (nothing is stored), from a small PRNG of our own so the stream is identical on
//! every machine and every version of every dependency.

use serde::{Deserialize, Serialize};

use crate::replay::source::Item;
use crate::tick::{Pair, Source, Tick};
use crate::time::parse_ts_us;

/// SplitMix64: tiny, fast, and good enough for simulation; fully determined by the seed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform on (0, 1).
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller; one value per call for simplicity).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Student-t with `df` degrees of freedom scaled to unit variance (`df > 2`); normal when `df == 0`.
    pub fn student_t_unit(&mut self, df: u32) -> f64 {
        if df == 0 {
            return self.normal();
        }
        let z = self.normal();
        let chi2: f64 = (0..df).map(|_| self.normal().powi(2)).sum();
        let t = z / (chi2 / df as f64).sqrt();
        if df > 2 {
            t * ((df as f64 - 2.0) / df as f64).sqrt()
        } else {
            t
        }
    }
}

/// One injected event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// The price jumps by `size` (log) at tick `at` and stays there.
    LevelShift {
        /// Tick index.
        at: u64,
        /// Log jump.
        size: f64,
    },
    /// A move spread over several ticks: the price rises by `size` (log) in `len` equal steps, at ticks
    /// `at .. at + len`, on top of the noise, and stays there (an event shock: a market moving through
    /// levels, not a jump).
    Ramp {
        /// Tick index of the first step.
        at: u64,
        /// Number of steps.
        len: u64,
        /// Total log move.
        size: f64,
    },
    /// From tick `at` the volatility is multiplied by `factor`.
    VolRegime {
        /// Tick index.
        at: u64,
        /// Volatility multiplier.
        factor: f64,
    },
    /// Tick `at` alone is off by `size` (log): a fat finger.
    Spike {
        /// Tick index.
        at: u64,
        /// Log size of the error.
        size: f64,
    },
    /// The feed is silent for `len` ticks' worth of time from tick `at`.
    Outage {
        /// Tick index.
        at: u64,
        /// Ticks not sent.
        len: u64,
    },
    /// From tick `at`, each of `count` ticks is sent `copies` extra times.
    Duplicates {
        /// Tick index.
        at: u64,
        /// Ticks duplicated.
        count: u64,
        /// Extra copies of each.
        copies: u32,
    },
    /// From tick `at`, `count` ticks are delivered in reverse order.
    OutOfOrder {
        /// Tick index.
        at: u64,
        /// Ticks in the reversed burst.
        count: u64,
    },
    /// From tick `at`, `count` ticks have bid and ask swapped.
    Crossed {
        /// Tick index.
        at: u64,
        /// Ticks affected.
        count: u64,
    },
    /// From tick `at`, `count` ticks arrive with no price.
    Missing {
        /// Tick index.
        at: u64,
        /// Ticks affected.
        count: u64,
    },
    /// From tick `at`, each of `count` ticks is lost with probability `rate` (decided by a hash of the
    /// seed and the index, so the prices of the other ticks do not change): its sequence number is skipped.
    SeqGaps {
        /// Tick index.
        at: u64,
        /// Ticks affected.
        count: u64,
        /// Probability that a tick is lost, in [0, 1].
        rate: f64,
    },
    /// From tick `at`, each of `count` ticks is re-sent `copies` times with the same time and prices under
    /// new sequence numbers, as a feed does when only the quoted sizes change.
    Unchanged {
        /// Tick index.
        at: u64,
        /// Ticks re-sent.
        count: u64,
        /// Re-sends of each.
        copies: u32,
    },
}

/// A 64-bit finalizer (SplitMix64) for decisions that must not consume the price generator's stream.
fn hash64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn default_start() -> String {
    "2024-01-01T00:00:00Z".into()
}
fn default_interval_ms() -> u64 {
    1000
}
fn default_mid() -> f64 {
    17.0
}
fn default_vol() -> f64 {
    1e-4
}
fn default_spread() -> f64 {
    2e-4
}
fn default_df() -> u32 {
    4
}
fn default_true() -> bool {
    true
}

/// A synthetic stream's specification (the `[synthetic]` table of a scenario).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    /// PRNG seed.
    pub seed: u64,
    /// Ticks generated (before events add or remove any).
    pub ticks: u64,
    /// Time of the first tick (RFC 3339).
    #[serde(default = "default_start")]
    pub start: String,
    /// Spacing between ticks, in milliseconds.
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Starting mid.
    #[serde(default = "default_mid")]
    pub mid: f64,
    /// Standard deviation of one tick's log-return in the calm regime.
    #[serde(default = "default_vol")]
    pub vol: f64,
    /// Relative bid/ask spread; 0 sends a single `mid` (like a fixing).
    #[serde(default = "default_spread")]
    pub spread: f64,
    /// Student-t degrees of freedom of the innovations (0: Gaussian).
    #[serde(default = "default_df")]
    pub student_t_df: u32,
    /// GARCH(1,1)-style volatility clustering around `vol`.
    #[serde(default = "default_true")]
    pub garch: bool,
    /// Injected events.
    #[serde(default)]
    pub events: Vec<Event>,
}

/// Generates the ticks of a [`SynthSpec`] lazily.
pub struct SynthTicks {
    spec: SynthSpec,
    pair: Pair,
    source: Source,
    rng: SplitMix64,
    i: u64,
    t0_us: i64,
    log_mid: f64,
    var: f64,
    vol_factor: f64,
    queue: std::collections::VecDeque<Tick>,
    hold: bool,
    /// Sequence numbers taken by re-sent `unchanged` copies so far.
    seq_offset: u64,
}

impl SynthTicks {
    /// A generator for `pair`.
    ///
    /// # Errors
    /// A message when the start time does not parse or a parameter is out of range.
    pub fn new(spec: SynthSpec, pair: Pair) -> Result<Self, String> {
        let t0_us = parse_ts_us(&spec.start).map_err(|e| e.to_string())?;
        if !(spec.mid > 0.0 && spec.vol > 0.0 && spec.spread >= 0.0 && spec.interval_ms > 0) {
            return Err("synthetic: mid and vol must be positive, spread non-negative, interval_ms > 0".into());
        }
        for e in &spec.events {
            if let Event::SeqGaps { rate, .. } = e
                && !(0.0..=1.0).contains(rate)
            {
                return Err(format!("synthetic: seq_gaps rate must be in [0, 1], not {rate}"));
            }
        }
        Ok(SynthTicks {
            rng: SplitMix64::new(spec.seed),
            log_mid: spec.mid.ln(),
            var: spec.vol * spec.vol,
            vol_factor: 1.0,
            pair,
            source: Source::new("synthetic").unwrap_or_default(),
            t0_us,
            i: 0,
            queue: Default::default(),
            hold: false,
            seq_offset: 0,
            spec,
        })
    }

    fn make_tick(&self, i: u64, log_mid: f64) -> Tick {
        let ts_us = self.t0_us + (i * self.spec.interval_ms * 1000) as i64;
        let mid = log_mid.exp();
        let (bid, ask, m) = if self.spec.spread > 0.0 {
            let h = 0.5 * self.spec.spread * mid;
            (Some(mid - h), Some(mid + h), None)
        } else {
            (None, None, Some(mid))
        };
        Tick {
            pair: self.pair,
            ts_us,
            bid,
            ask,
            mid: m,
            source: self.source,
            seq: Some(i + 1 + self.seq_offset),
            arrival_us: None,
        }
    }

    /// Generates tick `i` of the underlying process and applies the events, pushing 0..n ticks.
    fn step(&mut self) {
        let i = self.i;
        self.i += 1;
        for e in &self.spec.events {
            match *e {
                Event::LevelShift { at, size } if at == i => self.log_mid += size,
                Event::Ramp { at, len, size } if (at..at.saturating_add(len)).contains(&i) => {
                    self.log_mid += size / len as f64;
                }
                Event::VolRegime { at, factor } if at == i => self.vol_factor = factor,
                _ => {}
            }
        }
        // GARCH(1,1): var = w + a*r^2 + b*var, with unconditional variance vol^2.
        let base = self.spec.vol * self.spec.vol;
        let z = self.rng.student_t_unit(self.spec.student_t_df);
        let sigma = self.var.sqrt() * self.vol_factor;
        let r = sigma * z;
        if self.spec.garch {
            let (a, b) = (0.05, 0.94);
            self.var = base * (1.0 - a - b) + a * (r / self.vol_factor).powi(2) + b * self.var;
        }
        if i > 0 {
            self.log_mid += r;
        }
        let mut tick = self.make_tick(i, self.log_mid);
        let mut copies = 0;
        for e in &self.spec.events {
            match *e {
                Event::Spike { at, size } if at == i => {
                    let k = size.exp();
                    tick.bid = tick.bid.map(|v| v * k);
                    tick.ask = tick.ask.map(|v| v * k);
                    tick.mid = tick.mid.map(|v| v * k);
                }
                Event::Outage { at, len } if (at..at + len).contains(&i) => return,
                Event::Duplicates { at, count, copies: c } if (at..at + count).contains(&i) => copies = c,
                Event::Crossed { at, count } if (at..at + count).contains(&i) => {
                    if let (Some(b), Some(a)) = (tick.bid, tick.ask) {
                        tick.bid = Some(a + (a - b));
                        tick.ask = Some(b);
                    }
                }
                Event::Missing { at, count } if (at..at + count).contains(&i) => {
                    tick.bid = None;
                    tick.ask = None;
                    tick.mid = None;
                }
                Event::SeqGaps { at, count, rate } if (at..at + count).contains(&i) => {
                    let u = (hash64(self.spec.seed ^ hash64(i)) >> 11) as f64 / (1u64 << 53) as f64;
                    if u < rate {
                        return;
                    }
                }
                _ => {}
            }
        }
        for _ in 0..=copies {
            self.queue.push_back(tick);
        }
        for e in &self.spec.events {
            if let Event::Unchanged { at, count, copies } = *e
                && (at..at + count).contains(&i)
            {
                for k in 1..=u64::from(copies) {
                    self.queue.push_back(Tick {
                        seq: tick.seq.map(|s| s + k),
                        ..tick
                    });
                }
                self.seq_offset += u64::from(copies);
            }
        }
        for e in &self.spec.events {
            if let Event::OutOfOrder { at, count } = *e
                && i + 1 == at + count
                && count > 1
            {
                // Reverse the last `count` distinct ticks generated.
                let n = self.queue.len();
                let k = (count as usize).min(n);
                self.queue.make_contiguous()[n - k..].reverse();
            }
        }
        // While inside an out-of-order burst, keep ticks queued until the burst is complete.
        self.hold = self
            .spec
            .events
            .iter()
            .any(|e| matches!(*e, Event::OutOfOrder { at, count } if at <= i && i + 1 < at + count));
    }
}

impl Iterator for SynthTicks {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            if !self.hold
                && let Some(t) = self.queue.pop_front()
            {
                return Some(Item::Tick(t));
            }
            if self.i >= self.spec.ticks {
                return self.queue.pop_front().map(Item::Tick);
            }
            self.step();
        }
    }
}

/// Mid prices one tick apart from a Gaussian walk of log-mid (one-tick sigma 1e-4, starting at 17) whose
/// returns have autocorrelation `phi` (negative: a bid-ask bounce a learning model exploits and a random
/// walk cannot) and, from each `(tick, drift)` in `drifts` on, a trend of `drift` one-tick sigmas per tick.
///
/// The scenario streams ([`SynthTicks`]) are pure random walks: nothing for a better model to learn and
/// no change of the residuals' mean to adapt to. Champion/challenger tests need a stream with structure;
/// this is it, shared by the unit tests and the serve tests so both see the same prices.
pub fn structured_mids(seed: u64, n: u64, phi: f64, drifts: &[(u64, f64)]) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    let (sigma, mut log_mid, mut last_r, mut drift) = (1e-4, 17f64.ln(), 0.0, 0.0);
    (0..n)
        .map(|i| {
            if let Some(&(_, d)) = drifts.iter().find(|(at, _)| *at == i) {
                drift = d;
            }
            let r = phi * last_r + sigma * rng.normal();
            last_r = r;
            log_mid += r + drift * sigma;
            log_mid.exp()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(events: Vec<Event>) -> SynthSpec {
        toml::from_str::<SynthSpec>("seed = 1\nticks = 100\n")
            .map(|s| SynthSpec { events, ..s })
            .unwrap()
    }

    fn ticks(s: SynthSpec) -> Vec<Tick> {
        SynthTicks::new(s, Pair::parse("USDMXN").unwrap())
            .unwrap()
            .map(|i| match i {
                Item::Tick(t) => t,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn same_seed_same_stream() {
        assert_eq!(ticks(spec(vec![])), ticks(spec(vec![])));
        assert_eq!(ticks(spec(vec![])).len(), 100);
    }

    #[test]
    fn events_do_what_they_say() {
        let t = ticks(spec(vec![Event::Outage { at: 10, len: 5 }]));
        assert_eq!(t.len(), 95);
        let t = ticks(spec(vec![Event::Duplicates {
            at: 10,
            count: 2,
            copies: 3,
        }]));
        assert_eq!(t.len(), 106);
        assert_eq!(t[10], t[11]);
        let t = ticks(spec(vec![Event::OutOfOrder { at: 10, count: 4 }]));
        assert_eq!(t.len(), 100);
        let seqs: Vec<u64> = t[8..16].iter().map(|t| t.seq.unwrap()).collect();
        assert_eq!(seqs, vec![9, 10, 14, 13, 12, 11, 15, 16]);
        let t = ticks(spec(vec![Event::Crossed { at: 3, count: 1 }]));
        assert!(t[3].bid > t[3].ask);
        let t = ticks(spec(vec![Event::Spike { at: 50, size: 0.1 }]));
        let base = ticks(spec(vec![]));
        assert!((t[50].bid.unwrap() / base[50].bid.unwrap() - 0.1f64.exp()).abs() < 1e-12);
        assert_eq!(t[51], base[51]);
    }

    #[test]
    fn student_t_has_unit_variance() {
        let mut r = SplitMix64::new(3);
        let n = 200_000;
        let v: f64 = (0..n).map(|_| r.student_t_unit(5).powi(2)).sum::<f64>() / n as f64;
        assert!((v - 1.0).abs() < 0.05, "{v}");
    }
}
