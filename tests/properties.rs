//! Properties over generated inputs (proptest): a tick written by the contract's JSON writer, or as a CSV
//! row, reads back identically; a checkpoint decodes to a state that re-encodes to the same bytes and
//! continues with the same outputs; the validator gives a verdict (accept, or a quarantine reason) for any
//! tick, however hostile its prices, timestamps and sequence numbers, and never panics.
//!
//! Case counts are kept moderate so each property runs in a few seconds in a debug build; the fuzz
//! targets (`tests/fuzz`) search the same decoders much longer.

use std::io::Cursor;
use std::path::Path;

use cambio::checkpoint::{PairState, format};
use cambio::config::EngineConfig;
use cambio::engine::Engine;
use cambio::nats::publish::tick_json;
use cambio::quality::{QualityConfig, Validator, Verdict};
use cambio::replay::Item;
use cambio::replay::source::CsvTicks;
use cambio::tick::{Pair, Source, Tick, parse_tick};
use cambio::time::format_ts;
use proptest::prelude::*;

/// `cases` cases from a fixed seed, so a run is reproducible and CI cannot flake; change the seed to
/// explore further.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(20_261_127),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z: the timestamps the wire format can write.
const FIRST_US: i64 = -62_167_219_200_000_000;
const LAST_US: i64 = 253_402_300_799_999_999;

fn pair() -> impl Strategy<Value = Pair> {
    "[A-Z]{6}".prop_map(|s| Pair::parse(&s).expect("six uppercase letters are a pair"))
}

/// Any price the wire can carry: missing, any f64 (NaN, infinities, negative, subnormal, huge), or a
/// realistic rate.
fn price() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![Just(None), any::<f64>().prop_map(Some), (0.5f64..200.0).prop_map(Some),]
}

/// A price a CSV cell carries as a number: missing, or finite (negative, subnormal and huge included).
fn csv_price() -> impl Strategy<Value = Option<f64>> {
    prop_oneof![
        Just(None),
        any::<f64>().prop_filter("finite", |v| v.is_finite()).prop_map(Some),
        (0.5f64..200.0).prop_map(Some),
    ]
}

fn source(chars: &'static str) -> impl Strategy<Value = Source> {
    chars.prop_map(|s| Source::new(&s).expect("a generated source id is valid"))
}

fn tick() -> impl Strategy<Value = Tick> {
    (
        pair(),
        FIRST_US..=LAST_US,
        (price(), price(), price()),
        source("[!-~]{1,32}"),
        proptest::option::of(any::<u64>()),
        proptest::option::of(FIRST_US..=LAST_US),
    )
        .prop_map(|(pair, ts_us, (bid, ask, mid), source, seq, arrival_us)| Tick {
            pair,
            ts_us,
            bid,
            ask,
            mid,
            source,
            seq,
            arrival_us,
        })
}

/// Equal as values: NaN equals NaN (no wire format keeps a NaN's sign or payload), every other price bit
/// for bit, so `-0.0` stays `-0.0`.
fn same_price(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits(),
        (None, None) => true,
        _ => false,
    }
}

fn same_tick(a: &Tick, b: &Tick) -> bool {
    a.pair == b.pair
        && a.ts_us == b.ts_us
        && same_price(a.bid, b.bid)
        && same_price(a.ask, b.ask)
        && same_price(a.mid, b.mid)
        && a.source == b.source
        && a.seq == b.seq
        && a.arrival_us == b.arrival_us
}

fn cell(v: Option<f64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

proptest! {
    #![proptest_config(config(2048))]

    /// `tick_json` (what `cambio replay --to-nats` and the load tool publish) reads back as the same tick,
    /// with the subject's pair and without one.
    #[test]
    fn json_tick_round_trips(t in tick()) {
        let written = tick_json(&t);
        for expected in [None, Some(t.pair)] {
            let back = parse_tick(&written, expected);
            prop_assert!(
                matches!(&back, Ok(b) if same_tick(&t, b)),
                "{t:?} -> {} -> {back:?}",
                String::from_utf8_lossy(&written)
            );
        }
    }

    /// Ticks written as CSV rows (`ts,pair,bid,ask,mid,source,seq`: RFC 3339 time, shortest round-trip
    /// decimals, an empty cell for a missing price) read back in order as the same ticks.
    #[test]
    fn csv_ticks_round_trip(
        rows in proptest::collection::vec(
            (pair(), FIRST_US..=LAST_US, (csv_price(), csv_price(), csv_price()),
             source("[A-Za-z0-9_.-]{1,32}"), proptest::option::of(any::<u64>())),
            1..20,
        )
    ) {
        let ticks: Vec<Tick> = rows
            .into_iter()
            .map(|(pair, ts_us, (bid, ask, mid), source, seq)| Tick {
                pair, ts_us, bid, ask, mid, source, seq, arrival_us: None,
            })
            .collect();
        let mut text = String::from("ts,pair,bid,ask,mid,source,seq\n");
        for t in &ticks {
            let seq = t.seq.map(|s| s.to_string()).unwrap_or_default();
            text.push_str(&format!(
                "{},{},{},{},{},{},{seq}\n",
                format_ts(t.ts_us), t.pair, cell(t.bid), cell(t.ask), cell(t.mid), t.source
            ));
        }
        let items: Vec<Item> = CsvTicks::from_reader(Box::new(Cursor::new(text.clone())), Path::new("ticks.csv"), None)
            .expect("the header is understood")
            .collect();
        prop_assert_eq!(items.len(), ticks.len(), "{}", text);
        for (t, item) in ticks.iter().zip(&items) {
            prop_assert!(matches!(item, Item::Tick(b) if same_tick(t, b)), "{t:?} -> {item:?}\n{text}");
        }
    }
}

/// A short stream around 18.5 with hostile ticks mixed in: steps, gaps, repeats, out-of-order times and
/// broken prices, so the validator's, models' and detectors' states all move.
fn stream(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Tick>> {
    let step = (
        -3_000i64..3_000_000_000,
        -0.02f64..0.02,
        0u8..16,
        proptest::option::of(0u64..40),
    );
    proptest::collection::vec(step, len).prop_map(|steps| {
        let usdmxn = Pair::parse("USDMXN").expect("a pair");
        let mut ts_us = 1_600_000_000_000_000i64;
        let mut mid = 18.5f64;
        steps
            .into_iter()
            .map(|(dt_us, ret, kind, seq)| {
                ts_us += dt_us;
                mid *= 1.0 + ret;
                let (bid, ask, m) = match kind {
                    0 => (None, None, Some(f64::NAN)),
                    1 => (Some(mid + 0.01), Some(mid - 0.01), None),
                    2 => (None, None, Some(-mid)),
                    3 => (None, None, Some(mid * 50.0)),
                    4 => (None, None, None),
                    5..=9 => (None, None, Some(mid)),
                    _ => (Some(mid - 0.001), Some(mid + 0.001), None),
                };
                Tick {
                    pair: usdmxn,
                    ts_us,
                    bid,
                    ask,
                    mid: m,
                    source: Source::default(),
                    seq,
                    arrival_us: None,
                }
            })
            .collect()
    })
}

fn run(engine: &mut Engine, ticks: &[Tick]) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for t in ticks {
        engine.on_tick(t, &mut out);
        lines.extend(
            out.drain(..)
                .map(|o| serde_json::to_string(&o).expect("outputs are JSON")),
        );
    }
    lines
}

proptest! {
    #![proptest_config(config(64))]

    /// An engine driven by any stream, checkpointed: the record decodes, re-encodes to the same bytes, and
    /// the restored engine gives the same outputs as the original on the ticks that follow.
    #[test]
    fn checkpoint_decode_encode_round_trips(before in stream(0..300), after in stream(1..40)) {
        let cfg = EngineConfig {
            horizons: ["1step", "10step", "1m"].iter().map(|h| h.parse().expect("a horizon")).collect(),
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(Pair::parse("USDMXN").expect("a pair"), &cfg).expect("default config");
        run(&mut engine, &before);
        let state = PairState { engine, applied: None, contest: None };
        let bytes = format::encode(&state).expect("encodes");
        let back = format::decode(&bytes).expect("decodes");
        prop_assert!(format::encode(&back).expect("re-encodes") == bytes, "re-encoding differs");
        let (mut original, mut restored) = (state.engine, back.engine);
        // The continuation starts after the checkpointed stream, as a live one would.
        let offset = before.last().map_or(0, |t| t.ts_us - 1_600_000_000_000_000);
        let after: Vec<Tick> = after.into_iter().map(|t| Tick { ts_us: t.ts_us + offset, ..t }).collect();
        prop_assert_eq!(run(&mut original, &after), run(&mut restored, &after));
    }
}

/// Any tick at all: any pair, any `i64` times (the extremes included), any prices, sequences and arrivals.
fn hostile_tick() -> impl Strategy<Value = Tick> {
    let ts = prop_oneof![
        any::<i64>(),
        Just(i64::MIN),
        Just(i64::MAX),
        1_600_000_000_000_000i64..1_600_000_100_000_000,
    ];
    (
        prop_oneof![Just(Pair::parse("USDMXN").expect("a pair")), pair()],
        ts.clone(),
        (price(), price(), price()),
        source("[a-c]{1,2}"),
        proptest::option::of(prop_oneof![any::<u64>(), 0u64..8]),
        proptest::option::of(ts),
    )
        .prop_map(|(pair, ts_us, (bid, ask, mid), source, seq, arrival_us)| Tick {
            pair,
            ts_us,
            bid,
            ask,
            mid,
            source,
            seq,
            arrival_us,
        })
}

proptest! {
    #![proptest_config(config(1024))]

    /// The validator never panics and its verdict is an accepted finite positive mid or a quarantine reason,
    /// whatever the ticks; its scores stay computable.
    #[test]
    fn validator_gives_a_verdict_for_any_tick(ticks in proptest::collection::vec(hostile_tick(), 1..40)) {
        let mut v = Validator::new(&QualityConfig::default());
        for t in &ticks {
            match v.check(t) {
                Verdict::Accept { mid, .. } => prop_assert!(mid.is_finite() && mid > 0.0, "accepted mid {mid} of {t:?}"),
                Verdict::Quarantine(reason) => prop_assert!(!reason.name().is_empty()),
            }
        }
        let _ = v.scores();
    }

    /// The same hostile ticks through a whole engine: no panic, and one forecast or one quarantine record
    /// per tick.
    #[test]
    fn engine_survives_any_tick(ticks in proptest::collection::vec(hostile_tick(), 1..40)) {
        let mut engine = Engine::new(Pair::parse("USDMXN").expect("a pair"), &EngineConfig::default()).expect("default config");
        let mut out = Vec::new();
        for t in &ticks {
            out.clear();
            engine.on_tick(t, &mut out);
            let answered = out
                .iter()
                .filter(|o| matches!(o, cambio::engine::Output::Forecast(_) | cambio::engine::Output::Quarantined(_)))
                .count();
            prop_assert_eq!(answered, 1, "{:?}", t);
        }
    }
}

/// The case `engine_survives_any_tick` found: a tick dated at the end of `i64` time made the engine
/// overflow while scheduling a time horizon's forecast (`ts + horizon`), a panic in debug builds and a
/// forecast due in the distant past in release builds.
#[test]
fn engine_survives_timestamps_at_the_ends_of_i64() {
    let usdmxn = Pair::parse("USDMXN").expect("a pair");
    let mut engine = Engine::new(usdmxn, &EngineConfig::default()).expect("default config");
    let mut out = Vec::new();
    for ts_us in [i64::MAX, i64::MIN, 0, i64::MAX, i64::MIN] {
        let tick = Tick {
            pair: usdmxn,
            ts_us,
            bid: None,
            ask: None,
            mid: Some(0.5),
            source: Source::default(),
            seq: None,
            arrival_us: None,
        };
        engine.on_tick(&tick, &mut out);
    }
    assert_eq!(out.len(), 5, "one forecast or quarantine per tick");
}
