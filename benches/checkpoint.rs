//! Checkpoint payload encodings and restore cost: serde_json, postcard (the format's choice) and bincode 1
//! on a realistic engine (100,000 ticks of a calm Student-t/GARCH random walk, three horizons), plus the
//! whole record (envelope and CRC) and restoring 100 pairs, which the durable-state issue bounds at 100 ms.
//!
//! `cargo bench --bench checkpoint`. Sizes are printed once; times come from criterion.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use cambio::checkpoint::format::{self, PairState};
use cambio::checkpoint::{CheckpointConfig, CheckpointStore, NewCheckpoint, Reason, Retention};
use cambio::config::EngineConfig;
use cambio::engine::Engine;
use cambio::replay::Item;
use cambio::replay::synth::{SynthSpec, SynthTicks};
use cambio::tick::{Pair, Tick};

fn config() -> EngineConfig {
    EngineConfig {
        horizons: ["1step", "10step", "1m"]
            .iter()
            .map(|h| h.parse().expect("h"))
            .collect(),
        ..EngineConfig::default()
    }
}

fn ticks(n: usize) -> Vec<Tick> {
    let pair = Pair::parse("USDMXN").expect("pair");
    let spec: SynthSpec = toml::from_str(&format!(
        "seed = 20261126\nticks = {n}\ninterval_ms = 1000\nvol = 1e-4\nstudent_t_df = 4\ngarch = true"
    ))
    .expect("spec");
    SynthTicks::new(spec, pair)
        .expect("synth")
        .filter_map(|item| match item {
            Item::Tick(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn engine_after_100k_ticks() -> Engine {
    let mut engine = Engine::new(Pair::parse("USDMXN").expect("pair"), &config()).expect("engine");
    let mut out = Vec::new();
    for t in ticks(100_000) {
        engine.on_tick(&t, &mut out);
        out.clear();
    }
    engine
}

/// The engine's ticks with a checkpoint encoded every `every` ticks (as a serving shard does at each
/// cut: the encoding runs on the shard; the commit runs on the writer thread, off the tick path).
fn run_with_checkpoints(engine: &mut Engine, ticks: &[Tick], every: Option<usize>) -> usize {
    let mut out = Vec::new();
    let mut bytes = 0;
    for (i, t) in ticks.iter().enumerate() {
        engine.on_tick(t, &mut out);
        out.clear();
        if every.is_some_and(|k| (i + 1) % k == 0) {
            let state = format::PairStateRef {
                engine,
                applied: None,
                contest: None,
            };
            bytes += NewCheckpoint::from_ref(state, Reason::Periodic, 0)
                .expect("encode")
                .record
                .len();
        }
    }
    bytes
}

/// Throughput with checkpoints at the default interval (`every_ticks = 100000`) and at 10x that rate,
/// against none, in the same run: the durable-state issue bounds the cost at 2%.
fn cost(c: &mut Criterion) {
    let ticks = ticks(200_000);
    let fresh = Engine::new(Pair::parse("USDMXN").expect("pair"), &config()).expect("engine");
    let default_every = CheckpointConfig::default().every_ticks as usize;
    let mut g = c.benchmark_group("checkpoint_cost");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(ticks.len() as u64));
    for (name, every) in [
        ("ticks_200k/none", None),
        ("ticks_200k/default_every_100k", Some(default_every)),
        ("ticks_200k/every_10k", Some(10_000)),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || fresh.clone(),
                |mut e| black_box(run_with_checkpoints(&mut e, &ticks, every)),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    let engine = engine_after_100k_ticks();
    let json = serde_json::to_vec(&engine).expect("json");
    let pc = postcard::to_stdvec(&engine).expect("postcard");
    let bc = bincode::serialize(&engine).expect("bincode");
    let record = format::encode(&PairState {
        engine: engine.clone(),
        applied: None,
        contest: None,
    })
    .expect("record");
    println!(
        "payload bytes: serde_json {}, postcard {}, bincode {}; record {}",
        json.len(),
        pc.len(),
        bc.len(),
        record.len()
    );

    let mut g = c.benchmark_group("checkpoint");
    g.sample_size(20);
    g.bench_function("encode/serde_json", |b| {
        b.iter(|| serde_json::to_vec(black_box(&engine)))
    });
    g.bench_function("encode/postcard", |b| {
        b.iter(|| postcard::to_stdvec(black_box(&engine)))
    });
    g.bench_function("encode/bincode", |b| b.iter(|| bincode::serialize(black_box(&engine))));
    g.bench_function("decode/serde_json", |b| {
        b.iter(|| serde_json::from_slice::<Engine>(black_box(&json)))
    });
    g.bench_function("decode/postcard", |b| {
        b.iter(|| postcard::from_bytes::<Engine>(black_box(&pc)))
    });
    g.bench_function("decode/bincode", |b| {
        b.iter(|| bincode::deserialize::<Engine>(black_box(&bc)))
    });
    g.bench_function("record/decode_100_pairs", |b| {
        b.iter(|| {
            for _ in 0..100 {
                black_box(format::decode(black_box(&record)).expect("decode"));
            }
        })
    });
    // The whole restart path: 100 pairs' newest versions read from a redb file, checked and decoded.
    let path = std::env::temp_dir().join(format!("cambio-bench-restore-{}.redb", std::process::id()));
    let _ = std::fs::remove_file(&path);
    {
        let store = CheckpointStore::open(&path, Retention::default()).expect("store");
        let mut parts = Vec::new();
        for i in 0..100u8 {
            let name: String = [b'A' + i / 26, b'A' + i % 26, b'X', b'U', b'S', b'D']
                .iter()
                .map(|&b| b as char)
                .collect();
            // The same state under another pair: through JSON with the pair replaced.
            let mut v = serde_json::to_value(&engine).expect("json");
            v["pair"] = serde_json::Value::String(name.clone());
            let e: Engine = serde_json::from_value(v).expect("engine");
            assert_eq!(e.pair().as_str(), name);
            let state = format::PairStateRef {
                engine: &e,
                applied: None,
                contest: None,
            };
            parts.push(NewCheckpoint::from_ref(state, Reason::Periodic, 0).expect("encode"));
        }
        store.put_cut(parts, None, Vec::new(), 0).expect("cut");
    }
    let store = CheckpointStore::open(&path, Retention::default()).expect("store");
    g.bench_function("store/restore_100_pairs", |b| {
        b.iter(|| {
            let r = store.restore().expect("restore");
            assert_eq!(r.pairs.len(), 100);
            black_box(r)
        })
    });
    g.finish();
    drop(store);
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, bench, cost);
criterion_main!(benches);
