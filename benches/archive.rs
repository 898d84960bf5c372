//! The lake's write path: forecast messages (as `serve` publishes them) into Parquet rows and files,
//! against a floor that does the least any archive must do with the same messages: copy each payload into
//! a JSON-lines buffer. The issue asks for at least 200,000 messages/s into Parquet.
//!
//! `cargo bench --bench archive`. Throughput (elements/s) comes from criterion.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cambio::config::EngineConfig;
use cambio::engine::{Engine, Output};
use cambio::lake::{Lake, Message, RollPolicy};
use cambio::replay::Item;
use cambio::replay::synth::{SynthSpec, SynthTicks};
use cambio::tick::Pair;

/// Messages per iteration: one file's worth at the default roll size of 100,000 rows is too slow for
/// criterion's sampling; 20,000 rows is a realistic file for a pair rolled every 10 s at 2,000 ticks/s.
const N: usize = 20_000;

/// Forecast payloads of a synthetic USD/MXN stream, as serve publishes them.
fn forecasts() -> Vec<Vec<u8>> {
    let pair = Pair::parse("USDMXN").expect("pair");
    let spec: SynthSpec = toml::from_str(&format!(
        "seed = 20261127\nticks = {N}\ninterval_ms = 1000\nvol = 1e-4\nstudent_t_df = 4\ngarch = true"
    ))
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
    let mut payloads = Vec::with_capacity(N);
    for item in SynthTicks::new(spec, pair).expect("synth") {
        if let Item::Tick(t) = item {
            engine.on_tick(&t, &mut out);
            for o in out.drain(..) {
                if let Output::Forecast(f) = o {
                    payloads.push(f.to_json_vec());
                }
            }
        }
    }
    payloads
}

fn bench(c: &mut Criterion) {
    let payloads = forecasts();
    let dir = std::env::temp_dir().join(format!("cambio-bench-lake-{}", std::process::id()));
    let mut g = c.benchmark_group("archive");
    g.throughput(Throughput::Elements(payloads.len() as u64));
    g.sample_size(10);
    g.bench_function("parquet_forecasts", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&dir);
            let policy = RollPolicy {
                max_rows: usize::MAX,
                max_bytes: usize::MAX,
                ..RollPolicy::default()
            };
            let mut lake = Lake::new(&dir, "fx", policy).expect("lake");
            let now = Instant::now();
            for (i, p) in payloads.iter().enumerate() {
                let m = Message {
                    stream: "FX_OUT",
                    seq: i as u64 + 1,
                    arrival_us: Some(1_700_000_000_000_000 + i as i64),
                    subject: "fx.pred.USDMXN",
                    payload: p,
                };
                lake.push(&m, now).expect("push");
            }
            black_box(lake.roll_due(now, true).expect("roll"))
        });
    });
    g.bench_function("json_lines_floor", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(payloads.iter().map(|p| p.len() + 1).sum());
            for p in &payloads {
                buf.extend_from_slice(p);
                buf.push(b'\n');
            }
            black_box(buf.len())
        });
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
