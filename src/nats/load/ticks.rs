//! The load's ticks: valid contract ticks for one pair as a seeded random walk, so the floor and cambio get
//! byte-identical streams and every tick is one cambio accepts (a quarantined tick gets no forecast and
//! would be counted as lost).
//!
//! Time is tick time, not the wall clock: tick `seq` is stamped `BASE + seq × 100 ms`, so the stream and
//! cambio's outputs do not depend on when or how fast the load runs.

use bytes::Bytes;

use crate::replay::synth::SplitMix64;
use crate::tick::Pair;

/// Tick time of seq 0: Tuesday 2024-01-02 00:00:00 UTC (a weekday, far from any weekend for a long run).
pub const BASE_TS_US: i64 = 1_704_153_600_000_000;

/// Tick-time spacing.
pub const TICK_INTERVAL_US: i64 = 100_000;

/// The level the walk reverts to (USD/MXN around 17).
const LEVEL: f64 = 17.0;

/// One tick's log-return standard deviation (about 1.7e-4 MXN).
const STEP_SD: f64 = 1e-5;

/// Pull towards the level per tick, so a long run stays near 17 whatever the seed.
const REVERSION: f64 = 1e-3;

/// Relative bid/ask spread (1 bp: well inside the 20 bp warning).
const REL_SPREAD: f64 = 1e-4;

/// A seeded stream of ticks with increasing `seq` (from 1) and increasing `ts`.
#[derive(Debug, Clone)]
pub struct TickGen {
    pair: Pair,
    rng: SplitMix64,
    seq: u64,
    log_mid: f64,
    source: &'static str,
}

impl TickGen {
    /// A stream for `pair` from `seed`.
    pub fn new(pair: Pair, seed: u64) -> TickGen {
        TickGen {
            pair,
            rng: SplitMix64::new(seed),
            seq: 0,
            log_mid: LEVEL.ln(),
            source: "load",
        }
    }

    /// The seq of the last tick made (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// The next tick: its seq and its JSON payload.
    pub fn next_tick(&mut self) -> (u64, Bytes) {
        self.seq += 1;
        let z = self.rng.normal();
        self.log_mid += STEP_SD * z - REVERSION * (self.log_mid - LEVEL.ln());
        let mid = self.log_mid.exp();
        let half = 0.5 * REL_SPREAD * mid;
        let ts_us = BASE_TS_US + TICK_INTERVAL_US * self.seq as i64;
        let json = format!(
            r#"{{"pair":"{}","ts":"{}","bid":{:.6},"ask":{:.6},"source":"{}","seq":{}}}"#,
            self.pair,
            crate::time::format_ts(ts_us),
            mid - half,
            mid + half,
            self.source,
            self.seq
        );
        (self.seq, Bytes::from(json))
    }
}

/// The value of the first `"seq":<digits>` in a JSON payload (a tick, or cambio's forecast that echoes it),
/// without parsing the whole message: the load's receive path must stay cheaper than what it measures.
/// `None` when there is no numeric seq (e.g. `"seq":null`).
pub fn seq_of(payload: &[u8]) -> Option<u64> {
    const KEY: &[u8] = b"\"seq\"";
    let at = memchr::memmem::find(payload, KEY)? + KEY.len();
    let rest = &payload[at..];
    let rest = &rest[rest.iter().position(|b| !b.is_ascii_whitespace())?..];
    let rest = rest.strip_prefix(b":")?;
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let digits = &rest[start..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 || len > 19 {
        return None;
    }
    digits[..len]
        .iter()
        .try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::engine::{Engine, Output};
    use crate::tick::parse_tick;

    fn usdmxn() -> Pair {
        Pair::parse("USDMXN").unwrap()
    }

    #[test]
    fn seq_is_found_in_ticks_and_forecasts() {
        assert_eq!(seq_of(br#"{"pair":"USDMXN","seq":18231}"#), Some(18231));
        assert_eq!(seq_of(br#"{"type":"forecast","seq" : 7,"mid":1}"#), Some(7));
        assert_eq!(seq_of(br#"{"seq":null}"#), None);
        assert_eq!(seq_of(br#"{"seq":-1}"#), None);
        assert_eq!(seq_of(br#"{"seq":99999999999999999999}"#), None, "overflow");
        assert_eq!(seq_of(br#"{"mid":1}"#), None);
        assert_eq!(seq_of(br#"{"seq":"#), None);
    }

    #[test]
    fn the_stream_is_seeded_increasing_and_parses() {
        let (mut a, mut b) = (TickGen::new(usdmxn(), 7), TickGen::new(usdmxn(), 7));
        let mut last_ts = i64::MIN;
        for i in 1..=1_000u64 {
            let (seq, payload) = a.next_tick();
            assert_eq!(b.next_tick(), (seq, payload.clone()), "same seed, same bytes");
            assert_eq!(seq, i);
            assert_eq!(seq_of(&payload), Some(i));
            let t = parse_tick(&payload, Some(usdmxn())).expect("a valid contract tick");
            assert_eq!(t.seq, Some(i));
            assert!(t.ts_us > last_ts);
            last_ts = t.ts_us;
            let mid = t.mid_price().unwrap();
            assert!((16.0..18.0).contains(&mid), "{mid}");
        }
    }

    #[test]
    fn cambio_accepts_every_tick_and_forecasts_each() {
        let mut engine = Engine::new(usdmxn(), &EngineConfig::default()).unwrap();
        let mut g = TickGen::new(usdmxn(), 1);
        let mut out = Vec::new();
        let (mut forecasts, mut other) = (0u64, Vec::new());
        let n = 20_000;
        for _ in 0..n {
            let (_, payload) = g.next_tick();
            let t = parse_tick(&payload, Some(usdmxn())).unwrap();
            out.clear();
            engine.on_tick(&t, &mut out);
            for o in &out {
                match o {
                    Output::Forecast(_) => forecasts += 1,
                    Output::Quarantined(q) => other.push(format!("{:?}", q.reason)),
                    _ => {}
                }
            }
        }
        assert!(other.is_empty(), "quarantined: {other:?}");
        assert_eq!(forecasts, n, "one forecast per tick");
    }
}
