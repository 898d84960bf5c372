//! Per-stage and whole-pipeline benchmarks, each beside its floor measured in the same run.
//!
//! Floors: `floor/serde_json_value` parses each JSON line into a generic `serde_json::Value` (what any
//! consumer must at least do), `floor/read_lines` only splits the buffer into lines. Stages: `parse`
//! (`parse_tick`), `validate` (quality checks), `model` (Kalman + EWMA + RLS), `drift` (one signal
//! monitor), `engine/on_tick` (parsed ticks through the whole engine) and `engine/from_json_lines`
//! (parse + engine, the figure docs/measurements.md reports as ticks/s); `contract/forecast_hand` and
//! `contract/forecast_serde` encode the same forecasts with the hand-written writer and with serde. Inputs
//! are real EUR/USD ticks when `../shared/data` is present, else a seeded synthetic stream (with a loud
//! warning on stderr naming the missing file, since those figures are not comparable); setup is outside the
//! timing.
//!
//! Run: `cargo bench --bench pipeline` (criterion prints time per batch of `BATCH` ticks; ticks/s is
//! reported as throughput).

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use cambio::config::EngineConfig;
use cambio::drift::{DriftConfig, Signal, SignalMonitor};
use cambio::engine::{Engine, Output};
use cambio::forecast::Forecast;
use cambio::model::{EwmaVol, EwmaVolConfig, LocalLevel, LocalLevelConfig, Rls, RlsConfig, RlsInit, VolDecay};
use cambio::nats::serve::metrics::PairMetrics;
use cambio::quality::{QualityConfig, Validator};
use cambio::replay::Item;
use cambio::replay::source::CsvTicks;
use cambio::replay::synth::{SplitMix64, SynthSpec, SynthTicks};
use cambio::replay::{self, ReplayOptions};
use cambio::tick::{Pair, Tick, parse_tick};

const BATCH: usize = 100_000;

fn ticks() -> Vec<Tick> {
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ticks/oanda_eurusd_ticks_201405.csv");
    let pair = Pair::parse("EURUSD").unwrap();
    let items: Vec<Item> = match CsvTicks::open(&real, Some(pair)) {
        Ok(src) => src.take(BATCH).collect(),
        Err(e) => {
            eprintln!(
                "WARNING: {}: {e}\nWARNING: benchmarking a seeded SYNTHETIC stream instead of the real EUR/USD \
                 ticks; these figures are not comparable with the ones docs/measurements.md reports",
                real.display()
            );
            let spec: SynthSpec = toml::from_str(&format!("seed = 1\nticks = {BATCH}\nmid = 1.38")).unwrap();
            SynthTicks::new(spec, pair).unwrap().collect()
        }
    };
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, it)| match it {
            Item::Tick(mut t) => {
                t.seq = Some(i as u64 + 1);
                Some(t)
            }
            _ => None,
        })
        .collect()
}

fn json_lines(ticks: &[Tick]) -> Vec<u8> {
    let mut buf = Vec::new();
    for t in ticks {
        let line = serde_json::json!({
            "pair": t.pair.as_str(),
            "ts": cambio::time::format_ts(t.ts_us),
            "bid": t.bid, "ask": t.ask, "source": "oanda", "seq": t.seq,
        });
        serde_json::to_writer(&mut buf, &line).unwrap();
        buf.push(b'\n');
    }
    buf
}

fn bench(c: &mut Criterion) {
    let ticks = ticks();
    let lines = json_lines(&ticks);
    let pair = ticks[0].pair;
    let cfg = EngineConfig::default();
    let mut g = c.benchmark_group("pipeline");
    g.throughput(Throughput::Elements(ticks.len() as u64));
    g.sample_size(10);

    g.bench_function("floor/read_lines", |b| {
        b.iter(|| lines.split(|&c| c == b'\n').map(|l| black_box(l).len()).sum::<usize>())
    });
    g.bench_function("floor/serde_json_value", |b| {
        b.iter(|| {
            for l in lines.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                black_box(serde_json::from_slice::<serde_json::Value>(l).ok());
            }
        })
    });
    g.bench_function("parse", |b| {
        b.iter(|| {
            for l in lines.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                black_box(parse_tick(l, Some(pair)).ok());
            }
        })
    });
    g.bench_function("validate", |b| {
        b.iter_batched_ref(
            || Validator::new(&QualityConfig::default()),
            |v| {
                for t in &ticks {
                    black_box(v.check(t));
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("model/kalman_vol_rls", |b| {
        // The per-tick model work: one Kalman update, one EWMA update, and two RLS updates (the step
        // horizons realised on every tick) over the engine's six features.
        let mids: Vec<(i64, f64)> = ticks
            .iter()
            .filter_map(|t| t.mid_price().map(|m| (t.ts_us, m.ln())))
            .collect();
        b.iter_batched_ref(
            || {
                let rls = Rls::<6>::new(RlsConfig {
                    forgetting: 0.999,
                    init: RlsInit::Ridge { delta: 1.0 },
                    max_trace: 1e6,
                })
                .unwrap();
                let vol = EwmaVol::new(EwmaVolConfig {
                    decay: VolDecay::PerObservation { lambda: 0.94 },
                    ..EwmaVolConfig::default()
                })
                .unwrap();
                (
                    LocalLevel::new(LocalLevelConfig::default()).unwrap(),
                    vol,
                    rls.clone(),
                    rls,
                )
            },
            |(kalman, vol, rls1, rls2)| {
                let mut prev = mids[0].1;
                for &(ts, y) in &mids {
                    black_box(kalman.update(ts, y));
                    let r = y - prev;
                    black_box(vol.update(ts, r));
                    let x = nalgebra::SVector::<f64, 6>::from([1.0, r * 1e4, 0.1, -0.2, 0.3, 0.0]);
                    black_box(rls1.update(&x, r * 1e4));
                    black_box(rls2.update(&x, r * 2e4));
                    prev = y;
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("drift/one_signal", |b| {
        let mut rng = SplitMix64::new(1);
        let xs: Vec<f64> = (0..ticks.len()).map(|_| rng.student_t_unit(4)).collect();
        b.iter_batched_ref(
            || {
                (
                    SignalMonitor::new(Signal::Input, &DriftConfig::default()).unwrap(),
                    Vec::new(),
                )
            },
            |(m, alarms)| {
                for (i, &x) in xs.iter().enumerate() {
                    m.update(i as i64, x, alarms);
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("engine/on_tick", |b| {
        b.iter_batched_ref(
            || (Engine::new(pair, &cfg).unwrap(), Vec::with_capacity(16)),
            |(e, out)| {
                for t in &ticks {
                    e.on_tick(t, out);
                    black_box(out.len());
                    out.clear();
                }
            },
            BatchSize::LargeInput,
        )
    });
    // The same ticks through an engine of kind `ets`, fitted on the first 5,000 log mids: the ETS filter
    // and closed-form intervals replace the RLS and the adaptive intervals.
    let window: Vec<f64> = ticks
        .iter()
        .take(5_000)
        .filter_map(|t| t.mid_price())
        .map(f64::ln)
        .collect();
    let ets_cfg = cambio::engine::ets_engine_config(&cfg, cambio::model::ets::fit(&window).unwrap().at_window_start());
    g.bench_function("engine/on_tick_ets", |b| {
        b.iter_batched_ref(
            || (Engine::new(pair, &ets_cfg).unwrap(), Vec::with_capacity(16)),
            |(e, out)| {
                for t in &ticks {
                    e.on_tick(t, out);
                    black_box(out.len());
                    out.clear();
                }
            },
            BatchSize::LargeInput,
        )
    });
    // What serve's shard adds per tick for its Prometheus metrics (atomics it owns, and the rolling
    // accuracy refreshed with the status snapshot, at most every 100 ms: every 2,000 ticks at 20,000 a
    // second). Compare with engine/on_tick above, in the same run.
    g.bench_function("engine/on_tick+metrics", |b| {
        let started = std::time::Instant::now();
        b.iter_batched_ref(
            || {
                (
                    Engine::new(pair, &cfg).unwrap(),
                    Vec::with_capacity(16),
                    PairMetrics::new(started, 3600.0),
                )
            },
            |(e, out, m)| {
                let received = std::time::Instant::now();
                for (i, t) in ticks.iter().enumerate() {
                    m.on_received(received);
                    e.on_tick(t, out);
                    for o in out.iter() {
                        match o {
                            Output::Forecast(_) => {
                                PairMetrics::inc(&m.accepted);
                                PairMetrics::inc(&m.forecasts);
                            }
                            Output::Quarantined(q) => m.on_quarantined(q.reason),
                            Output::Alarm(a) => m.on_alarm(a.alarm.signal.name(), a.alarm.detector),
                            _ => {}
                        }
                    }
                    if i % 2_000 == 0 {
                        m.update_accuracy(t.ts_us, e.accuracy_sums());
                    }
                    black_box(out.len());
                    out.clear();
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("engine/from_json_lines", |b| {
        b.iter_batched_ref(
            || (Engine::new(pair, &cfg).unwrap(), Vec::with_capacity(16)),
            |(e, out)| {
                for l in lines.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                    match parse_tick(l, Some(pair)) {
                        Ok(t) => e.on_tick(&t, out),
                        Err(r) => e.on_rejected(r, String::new(), None, String::new(), out),
                    }
                    black_box(out.len());
                    out.clear();
                }
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();

    // The forecast's wire encoding (one per accepted tick, on serve's shard): the hand-written writer
    // against serde's derived `Serialize`, which give the same bytes (checked here on every input, and in
    // `forecast::wire`'s tests). Inputs: the engine's last 1,000 forecasts over the ticks above, with the
    // default horizons, each encoded into a reused buffer.
    let forecasts: Vec<Forecast> = {
        let mut e = Engine::new(pair, &cfg).unwrap();
        let (mut out, mut all) = (Vec::new(), Vec::new());
        for t in &ticks {
            e.on_tick(t, &mut out);
            all.extend(out.drain(..).filter_map(|o| match o {
                Output::Forecast(f) => Some(f),
                _ => None,
            }));
        }
        all.split_off(all.len().saturating_sub(1_000))
    };
    for f in &forecasts {
        assert_eq!(f.to_json_vec(), serde_json::to_vec(f).unwrap(), "the writers disagree");
    }
    let mut g = c.benchmark_group("contract");
    g.throughput(Throughput::Elements(forecasts.len() as u64));
    g.bench_function("forecast_hand", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            for f in &forecasts {
                buf.clear();
                f.write_json(&mut buf);
                black_box(buf.len());
            }
        })
    });
    g.bench_function("forecast_serde", |b| {
        let mut buf = Vec::with_capacity(1024);
        b.iter(|| {
            for f in &forecasts {
                buf.clear();
                serde_json::to_writer(&mut buf, f).unwrap();
                black_box(buf.len());
            }
        })
    });
    g.finish();

    // Replay: a synthetic scenario's ticks generated and replayed in process (file reading excluded), the
    // path `cambio replay` takes.
    let mut g = c.benchmark_group("replay");
    let n = 200_000u64;
    g.throughput(Throughput::Elements(n));
    g.sample_size(10);
    g.bench_function("synthetic_200k", |b| {
        b.iter(|| {
            let spec: SynthSpec = toml::from_str(&format!("seed = 1\nticks = {n}")).unwrap();
            let items = SynthTicks::new(spec, pair).unwrap();
            black_box(
                replay::run("bench", items, Vec::new(), &cfg, ReplayOptions::default())
                    .unwrap()
                    .accepted,
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
