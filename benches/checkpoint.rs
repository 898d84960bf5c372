//! Checkpoint payload encodings and restore cost: serde_json, postcard (the format's choice) and bincode 1
//! on a realistic engine (100,000 ticks of a calm Student-t/GARCH random walk, three horizons), plus the
//! whole record (envelope and CRC) and restoring 100 pairs, which the durable-state issue bounds at 100 ms.
//!
//! `cargo bench --bench checkpoint`. Sizes are printed once; times come from criterion.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};

use cambio::checkpoint::format::{self, PairState};
use cambio::config::EngineConfig;
use cambio::engine::Engine;
use cambio::replay::Item;
use cambio::replay::synth::{SynthSpec, SynthTicks};
use cambio::tick::Pair;

fn engine_after_100k_ticks() -> Engine {
    let pair = Pair::parse("USDMXN").expect("pair");
    let spec: SynthSpec = toml::from_str(
        "seed = 20261126\nticks = 100000\ninterval_ms = 1000\nvol = 1e-4\nstudent_t_df = 4\ngarch = true",
    )
    .expect("spec");
    let cfg = EngineConfig {
        horizons: ["1step", "10step", "1m"]
            .iter()
            .map(|h| h.parse().expect("h"))
            .collect(),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(pair, &cfg).expect("engine");
    let mut out = Vec::new();
    for item in SynthTicks::new(spec, pair).expect("synth") {
        if let Item::Tick(t) = item {
            engine.on_tick(&t, &mut out);
            out.clear();
        }
    }
    engine
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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
