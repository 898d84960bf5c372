//! The core engine's contract: predict-then-learn order, horizon realisation, no NaN ever published,
//! bounded state, and a serde round trip mid-stream that continues bit for bit.

use cambio::config::EngineConfig;
use cambio::engine::{Engine, Output};
use cambio::replay::Item;
use cambio::replay::synth::{SynthSpec, SynthTicks};
use cambio::tick::{Factor, Pair, Source, Tick};

fn pair() -> Pair {
    Pair::parse("USDMXN").unwrap()
}

fn synth(ticks: u64, extra: &str) -> Vec<Tick> {
    let spec: SynthSpec = toml::from_str(&format!("seed = 5\nticks = {ticks}\n{extra}")).unwrap();
    SynthTicks::new(spec, pair())
        .unwrap()
        .filter_map(|i| match i {
            Item::Tick(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn cfg(horizons: &[&str]) -> EngineConfig {
    EngineConfig {
        horizons: horizons.iter().map(|h| h.parse().unwrap()).collect(),
        ..EngineConfig::default()
    }
}

fn run(engine: &mut Engine, ticks: &[Tick]) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = Vec::new();
    for t in ticks {
        engine.on_tick(t, &mut out);
        lines.extend(out.drain(..).map(|o| serde_json::to_string(&o).unwrap()));
    }
    lines
}

#[test]
fn checkpoint_round_trip_mid_stream_continues_identically() {
    let ticks = synth(6_000, "events = [{ kind = \"vol_regime\", at = 3000, factor = 4.0 }]");
    let c = cfg(&["1step", "10step", "1m"]);
    let mut straight = Engine::new(pair(), &c).unwrap();
    let expected = run(&mut straight, &ticks);

    let mut first = Engine::new(pair(), &c).unwrap();
    let mut got = run(&mut first, &ticks[..2_500]);
    let bytes = serde_json::to_vec(&first).unwrap();
    drop(first);
    let mut restored: Engine = serde_json::from_slice(&bytes).unwrap();
    got.extend(run(&mut restored, &ticks[2_500..]));
    assert_eq!(got.len(), expected.len());
    assert!(
        got == expected,
        "outputs after restore differ from an uninterrupted run"
    );
    assert_eq!(
        serde_json::to_vec(&restored).unwrap(),
        serde_json::to_vec(&straight).unwrap()
    );
}

#[test]
fn step_and_time_horizons_are_realised_as_specified() {
    // Ticks every 10 s: a 1m horizon is realised by the 6th tick after (first at or after ts + 60 s);
    // a 3step horizon by the 3rd accepted tick after.
    let ticks = synth(1_000, "interval_ms = 10000");
    let mut e = Engine::new(pair(), &cfg(&["3step", "1m"])).unwrap();
    run(&mut e, &ticks);
    let s = e.summary();
    assert_eq!(s.horizons[0].n, 1_000 - 3);
    assert_eq!(s.horizons[1].n, 1_000 - 6);
}

#[test]
fn time_horizons_keep_memory_bounded_on_fast_streams() {
    // 100 ticks per second with a 1h horizon: 360,000 forecasts would be pending; at most max_pending are
    // registered for scoring, evenly spread, and all are still published.
    let ticks = synth(50_000, "interval_ms = 10");
    let mut c = cfg(&["1step", "1h"]);
    c.max_pending = 64;
    let mut e = Engine::new(pair(), &c).unwrap();
    let outputs = run(&mut e, &ticks);
    assert_eq!(
        outputs.iter().filter(|o| o.contains("\"type\":\"forecast\"")).count(),
        50_000
    );
    let state = serde_json::to_vec(&e).unwrap();
    assert!(state.len() < 400_000, "engine state is {} bytes", state.len());
    let mut more = Engine::new(pair(), &c).unwrap();
    run(&mut more, &synth(200_000, "interval_ms = 10"));
    let bigger = serde_json::to_vec(&more).unwrap();
    assert!(
        bigger.len() < state.len() * 2,
        "state grows with the stream: {} -> {}",
        state.len(),
        bigger.len()
    );
}

#[test]
fn hostile_prices_never_produce_non_finite_forecasts() {
    let mut e = Engine::new(pair(), &cfg(&["1step", "5step", "1h"])).unwrap();
    let src = Source::new("fuzz").unwrap();
    let mut out = Vec::new();
    let mut x: u64 = 0x1234_5678;
    let prices = [
        1e-300,
        1e300,
        f64::MIN_POSITIVE,
        17.0,
        17.0001,
        0.0,
        -1.0,
        f64::NAN,
        f64::INFINITY,
        1e10,
        1e-10,
    ];
    for i in 0..20_000i64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let p = if x.is_multiple_of(3) {
            prices[(x as usize / 3) % prices.len()]
        } else {
            17.0 * (1.0 + ((x % 1000) as f64 - 500.0) * 1e-5)
        };
        let spread = if x.is_multiple_of(5) { -0.01 } else { 0.001 };
        let ts = 1_700_000_000_000_000 + i * 1_000_000 + ((x % 7) as i64 - 3) * 1_000_000;
        let t = Tick {
            pair: pair(),
            ts_us: ts,
            bid: Some(p),
            ask: Some(p + spread),
            mid: None,
            source: src,
            seq: Some(i as u64),
            arrival_us: None,
        };
        e.on_tick(&t, &mut out);
    }
    let mut forecasts = 0;
    for o in &out {
        if let Output::Forecast(f) = o {
            forecasts += 1;
            assert!(f.mid.is_finite() && f.mid > 0.0);
            for h in &f.horizons {
                for v in [h.mean, h.lo80, h.hi80, h.lo95, h.hi95] {
                    assert!(v.is_finite() && v > 0.0, "{f:?}");
                }
                assert!(
                    h.lo95 <= h.lo80 && h.lo80 <= h.mean && h.mean <= h.hi80 && h.hi80 <= h.hi95,
                    "{h:?}"
                );
            }
        }
    }
    assert!(forecasts > 1_000, "{forecasts}");
    let s = e.summary();
    assert_eq!(s.ticks, 20_000);
    assert_eq!(
        s.ticks,
        s.accepted + s.quarantined.values().sum::<u64>(),
        "every tick is accounted for"
    );
}

#[test]
fn factors_join_as_of_tick_time_and_feed_the_carry_feature() {
    let ticks = synth(2_000, "");
    let mut c = cfg(&["1step"]);
    c.model.domestic_rate = Some("TIIE28".into());
    c.model.foreign_rate = Some("FED_FUNDS".into());
    let mut with = Engine::new(pair(), &c).unwrap();
    let day_before = ticks[0].ts_us - 86_400_000_000;
    let f = |name: &str, value: f64| Factor {
        name: name.into(),
        ts_us: day_before,
        value,
        source: "test".into(),
    };
    with.on_factor(&f("TIIE28", 11.0));
    with.on_factor(&f("FED_FUNDS", 5.25));
    with.on_factor(&f("UNRELATED", f64::NAN));
    let mut without = Engine::new(pair(), &c).unwrap();
    let (a, b) = (run(&mut with, &ticks), run(&mut without, &ticks));
    assert_eq!(a.len(), b.len());
    assert_ne!(a, b, "the rate differential changes the model's inputs");
}

/// A smooth oscillating price at 10,000 ticks a second for 5 seconds. With a refractory period counted in
/// updates only (500, as before it also ran in tick time) each signal's detectors fire again as soon as it
/// ends, a storm of alarms; with the default refractory (the longer of 20 updates and 60 s of tick time)
/// one regime gives at most one alarm per signal, and adaptations (which follow residual alarms) at most
/// one.
#[test]
fn an_oscillating_price_at_10000_ticks_a_second_gives_one_alarm_per_signal() {
    let src = Source::new("osc").unwrap();
    let ticks: Vec<Tick> = (0..50_000i64)
        .map(|i| {
            let phase = i as f64 * std::f64::consts::TAU / 2_000.0;
            let mid = 17.0 * (1.0 + 1e-3 * phase.sin());
            Tick {
                pair: pair(),
                ts_us: 1_700_000_000_000_000 + i * 100,
                bid: Some(mid - 0.0005),
                ask: Some(mid + 0.0005),
                mid: None,
                source: src,
                seq: None,
                arrival_us: None,
            }
        })
        .collect();
    let count = |c: &EngineConfig| {
        let mut e = Engine::new(pair(), c).unwrap();
        let mut out = Vec::new();
        let (mut by_signal, mut adapted) = (std::collections::BTreeMap::new(), 0);
        for t in &ticks {
            e.on_tick(t, &mut out);
            for o in out.drain(..) {
                match o {
                    Output::Alarm(a) => *by_signal.entry(a.alarm.signal.name()).or_insert(0) += 1,
                    Output::Adapted(_) => adapted += 1,
                    _ => {}
                }
            }
        }
        (by_signal, adapted)
    };
    let mut old = cfg(&["1step"]);
    old.drift.refractory_updates = 500;
    old.drift.refractory_secs = 0.0;
    let (storm, storm_adapted) = count(&old);
    let (now, adapted) = count(&cfg(&["1step"]));
    println!("updates only: {storm:?}, {storm_adapted} adaptations; default: {now:?}, {adapted} adaptations");
    assert!(
        storm.values().sum::<u32>() >= 50,
        "the storm this guards against: {storm:?}"
    );
    assert!(!now.is_empty(), "the oscillation is a regime: it is reported once");
    assert!(now.values().all(|&n| n == 1), "one alarm per signal: {now:?}");
    assert!(adapted <= 1, "{adapted} adaptations");
}

#[test]
fn same_price_updates_with_new_sequence_numbers_are_forecast_but_not_learned() {
    // A feed re-sends its quote 1,000 times when only the sizes change: same source, time and prices,
    // each under a new sequence number. Each is an accepted tick with its own forecast; the models do not
    // learn from the zero returns, so the forecasts after the burst are those of a stream without it.
    let ticks = synth(3_000, "");
    let (before, after) = ticks.split_at(1_500);
    let last = *before.last().unwrap();
    let mut stream = before.to_vec();
    for k in 1..=1_000 {
        stream.push(Tick {
            seq: last.seq.map(|s| s + k),
            ..last
        });
    }
    stream.extend(after.iter().map(|t| Tick {
        seq: t.seq.map(|s| s + 1_000),
        ..*t
    }));

    let c = cfg(&["1step"]);
    let mut e = Engine::new(pair(), &c).unwrap();
    let mut out = Vec::new();
    let mut forecasts = Vec::new();
    let mut quarantined = 0;
    for t in &stream {
        e.on_tick(t, &mut out);
        for o in out.drain(..) {
            match o {
                Output::Forecast(f) => forecasts.push(f),
                Output::Quarantined(_) => quarantined += 1,
                _ => {}
            }
        }
    }
    assert_eq!(quarantined, 0);
    assert_eq!(forecasts.len(), 4_000);
    let unchanged = forecasts
        .iter()
        .filter(|f| f.flags.contains(cambio::quality::Flags::UNCHANGED))
        .count();
    assert_eq!(unchanged, 1_000);
    let s = e.summary();
    assert_eq!(s.accepted, 4_000);
    assert_eq!(s.horizons[0].n, 3_999, "one scored forecast per accepted tick");
    assert_ne!(s.quality.overall, cambio::quality::Status::Fail);
    let uniqueness = &s.quality.dimensions[cambio::quality::Dimension::Uniqueness.index()];
    assert_eq!(uniqueness.defects, 0);
    assert!(
        s.quality
            .total_flagged
            .iter()
            .any(|f| f.flag == "unchanged" && f.count == 1_000)
    );

    let mut plain = Engine::new(pair(), &c).unwrap();
    let mut reference = Vec::new();
    for t in &ticks {
        plain.on_tick(t, &mut out);
        reference.extend(out.drain(..).filter_map(|o| match o {
            Output::Forecast(f) => Some(f),
            _ => None,
        }));
    }
    let tail = |fs: &[cambio::forecast::Forecast]| {
        fs[fs.len() - 1_500..]
            .iter()
            .map(|f| serde_json::to_string(&f.horizons).unwrap())
            .collect::<Vec<_>>()
    };
    assert!(
        tail(&forecasts) == tail(&reference),
        "the repeated quotes changed what the model learned"
    );
}
