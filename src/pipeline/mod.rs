//! The one synchronous per-pair path that `replay` and `serve` share: a pair's [`Engine`], its
//! champion/challenger [`Contest`] with the rollback guard, the factor book that feeds every pair, and the
//! limits on what the network may make us hold (pairs, factors, raw payload text).
//!
//! Everything here is pure (no clock, no I/O, no async): the serve shard only moves bytes between NATS and
//! a [`PairPipeline`], and replay drives the same type from files. So with `[challenger]` or the guard on,
//! a replay reproduces what the live service published, byte for byte.

mod factors;
mod pairs;

use crate::challenger::{ChallengerConfig, Contest, ContestError, ModelOrigin, Verdict};
use crate::engine::{Engine, EngineConfig, EngineError, Output};
use crate::quality::QuarantineReason;
use crate::tick::{Factor, Pair, Tick, parse_tick_detailed};

pub use factors::{FactorBook, MAX_FACTORS};
pub use pairs::{MAX_PAIRS, PairSet, TooManyPairs};

/// Longest raw payload kept in a quarantine record by default (`[serve] max_raw_bytes`).
pub const MAX_RAW_BYTES: usize = 16_384;

/// Why a pair's pipeline could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The engine refused its configuration.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The challenger's variant configuration was refused.
    #[error("challenger: {0}")]
    Challenger(EngineError),
    /// The contest's settings do not fit the engine (a missing horizon, an out-of-range setting).
    #[error(transparent)]
    Contest(#[from] ContestError),
}

/// One pair's engine and, when configured, its contest: what a serve shard owns and what replay keeps per
/// pair.
#[derive(Debug)]
pub struct PairPipeline {
    engine: Engine,
    contest: Option<Contest>,
}

impl PairPipeline {
    /// A pipeline around an existing engine (restored, or built by the caller) and contest.
    pub fn new(engine: Engine, contest: Option<Contest>) -> PairPipeline {
        PairPipeline { engine, contest }
    }

    /// A fresh pipeline for `pair`: a new engine, and a contest when `challenger` asks for one (a variant
    /// challenger from `[challenger.engine]`; without one, only the rollback guard runs until a previous
    /// version is supplied, which only the service's registry can do).
    ///
    /// # Errors
    /// [`PipelineError`] when the engine, the variant or the contest refuses its settings.
    pub fn fresh(pair: Pair, engine: &EngineConfig, challenger: &ChallengerConfig) -> Result<Self, PipelineError> {
        let engine = Engine::new(pair, engine)?;
        let contest = new_contest(challenger, &engine, None)?;
        Ok(PairPipeline { engine, contest })
    }

    /// The pair.
    pub fn pair(&self) -> Pair {
        self.engine.pair()
    }

    /// The live engine (the champion).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The contest, when one runs.
    pub fn contest(&self) -> Option<&Contest> {
        self.contest.as_ref()
    }

    /// The live engine, once the pipeline is done.
    pub fn into_engine(self) -> Engine {
        self.engine
    }

    /// Applies a parsed tick: the engine writes its outputs into `out`, then the contest runs (shadow
    /// challenger, windows, rollback guard) and takes its known-good copy when due. A promotion or a
    /// rollback is returned; the caller publishes it after `out`.
    pub fn on_tick(&mut self, tick: &Tick, out: &mut Vec<Output>) -> Option<Verdict> {
        let accepted_before = self.engine.accepted();
        let start = out.len();
        self.engine.on_tick(tick, out);
        let c = self.contest.as_mut()?;
        let verdict = c.on_tick(&mut self.engine, &out[start..], tick);
        if c.fallback_due(accepted_before, self.engine.accepted()) {
            c.set_fallback(&self.engine);
        }
        verdict
    }

    /// Counts and records a tick that never reached the model (its payload could not be parsed, or it
    /// belongs to another pair), in both engines so their counts agree; `detail` says what was wrong.
    pub fn on_rejected(
        &mut self,
        reason: QuarantineReason,
        detail: String,
        ts_us: Option<i64>,
        raw: String,
        out: &mut Vec<Output>,
    ) {
        if let Some(c) = &mut self.contest {
            c.on_rejected(reason, ts_us, &raw);
        }
        self.engine.on_rejected(reason, detail, ts_us, raw, out);
    }

    /// Parses a tick payload from the network for this pair and applies it, or quarantines it with its raw
    /// text cut to `max_raw_bytes`. `arrival_us` stamps the tick's arrival time (live serving only).
    pub fn on_payload(
        &mut self,
        payload: &[u8],
        arrival_us: Option<i64>,
        max_raw_bytes: usize,
        out: &mut Vec<Output>,
    ) -> Option<Verdict> {
        match parse_tick_detailed(payload, Some(self.pair())) {
            Ok(mut tick) => {
                if arrival_us.is_some() {
                    tick.arrival_us = arrival_us;
                }
                self.on_tick(&tick, out)
            }
            Err(e) => {
                self.on_rejected(e.reason, e.detail, None, raw_text(payload, max_raw_bytes), out);
                None
            }
        }
    }

    /// Applies a factor observation to the engine and the challenger.
    pub fn on_factor(&mut self, factor: &Factor) {
        self.engine.on_factor(factor);
        if let Some(c) = &mut self.contest {
            c.on_factor(factor);
        }
    }

    /// Runs `engine`, registry version `version`, as the contest's challenger (an operator's `challenge`):
    /// it replaces the current challenger and the comparison windows restart; the contest decides whether
    /// it is promoted, and the rollback guard still watches the champion.
    ///
    /// # Errors
    /// [`ContestError`] when no contest runs for the pair, or the version serves another pair or lacks the
    /// deciding horizon; nothing changes then.
    pub fn challenge(&mut self, mut engine: Engine, version: u64) -> Result<(), ContestError> {
        let Some(c) = &mut self.contest else {
            return Err(ContestError::Config(
                "no contest runs for this pair: set [challenger] enabled = true".into(),
            ));
        };
        engine.set_registry_version(version);
        c.set_challenger(&self.engine, engine, ModelOrigin::Version(version))
    }

    /// Replaces the live model with `engine` (an operator's rollback): the model comes back, the stream's
    /// time does not ([`Engine::take_stream_from`]), so ticks already seen stay seen and quality scores
    /// continue. The contest's windows restart from it.
    pub fn replace(&mut self, engine: Engine) {
        let live = std::mem::replace(&mut self.engine, engine);
        self.engine.take_stream_from(live);
        if let Some(c) = &mut self.contest {
            c.resync(&self.engine);
        }
    }
}

/// The contest a pair runs under `cfg`: `None` when neither a challenger nor the rollback guard is
/// configured. The challenger is the variant (`[challenger.engine]`) when there is one, else `previous`
/// (an older version from the registry, with its number), else none: the guard alone.
///
/// # Errors
/// [`PipelineError`] when the variant or the contest refuses its settings.
pub fn new_contest(
    cfg: &ChallengerConfig,
    champion: &Engine,
    previous: Option<(Engine, u64)>,
) -> Result<Option<Contest>, PipelineError> {
    if !(cfg.enabled || cfg.rollback) {
        return Ok(None);
    }
    let challenger = if !cfg.enabled {
        None
    } else if let Some(variant) = &cfg.engine {
        let e = Engine::new(champion.pair(), variant).map_err(PipelineError::Challenger)?;
        Some((e, ModelOrigin::Variant))
    } else {
        previous.map(|(mut e, version)| {
            e.set_registry_version(version);
            (e, ModelOrigin::Version(version))
        })
    };
    Ok(Some(Contest::new(cfg, champion, challenger)?))
}

/// The payload as text for a quarantine record: invalid UTF-8 is replaced (U+FFFD) and anything past
/// `max` bytes is cut, with a note giving the original length, so a hostile payload cannot make the
/// re-publication exceed the server's message size.
pub fn raw_text(payload: &[u8], max: usize) -> String {
    raw_text_of_prefix(payload, payload.len() as u64, max)
}

/// [`raw_text`] of a payload of `total` bytes of which only `prefix` was kept (a line too long to read
/// whole): the same cut and the same note, without ever holding the rest.
pub fn raw_text_of_prefix(prefix: &[u8], total: u64, max: usize) -> String {
    let kept = &prefix[..prefix.len().min(max)];
    if kept.len() as u64 == total {
        return String::from_utf8_lossy(kept).into_owned();
    }
    let mut s = String::from_utf8_lossy(kept).into_owned();
    s.push_str("…[truncated: ");
    s.push_str(itoa::Buffer::new().format(total));
    s.push_str(" bytes in all]");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_text_keeps_small_payloads_and_cuts_huge_ones() {
        assert_eq!(raw_text(b"abc", 10), "abc");
        assert_eq!(raw_text(&[0xff, b'a'], 10), "\u{fffd}a");
        let big = vec![b'x'; 1000];
        let r = raw_text(&big, 100);
        assert!(r.starts_with(&"x".repeat(100)));
        assert!(r.ends_with("[truncated: 1000 bytes in all]"));
        assert!(r.len() < 200);
    }

    #[test]
    fn no_contest_unless_asked() {
        let pair = Pair::parse("USDMXN").unwrap();
        let p = PairPipeline::fresh(pair, &EngineConfig::default(), &ChallengerConfig::default()).unwrap();
        assert!(p.contest().is_none());
        let guard = ChallengerConfig {
            rollback: true,
            ..Default::default()
        };
        let p = PairPipeline::fresh(pair, &EngineConfig::default(), &guard).unwrap();
        assert!(p.contest().is_some_and(|c| c.challenger().is_none()));
    }
}
