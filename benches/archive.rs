//! The lake's write path, in messages per second (the issue asks for at least 200,000 into Parquet).
//!
//! - `parquet_live_mix`: what `cambio archive` does with each message it is delivered, minus NATS: the
//!   live mix of a pair's stream (each tick as received, on `fx.ticks.*`, and what serve publishes for it:
//!   its forecast, a quarantine record or an alarm), decoded, appended to the partition's columns and
//!   written as Parquet files (Snappy, fsynced, renamed);
//! - `parquet_replay_outputs`: what `cambio replay --archive` adds per output (the JSON serve would
//!   publish, the row from the output itself, the files);
//! - `floor_parse_only`: the least an archive that reads the payloads can do with the same messages: parse
//!   each one (serde_json, validating, nothing kept). The ratio of the two is the cost of Parquet over
//!   merely reading;
//! - `floor_json_lines`: copying each payload into a JSON-lines buffer.
//!
//! `cargo bench --bench archive`. Throughput (elements = messages) comes from criterion.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use cambio::config::EngineConfig;
use cambio::engine::{Engine, Output};
use cambio::lake::offline::OfflineLake;
use cambio::lake::{Lake, Message, RollPolicy};
use cambio::replay::Item;
use cambio::replay::synth::{SynthSpec, SynthTicks};
use cambio::tick::Pair;

/// Ticks per iteration: 20,000 ticks give about 40,000 messages (each tick and its forecast), a realistic
/// file for a pair rolled every 10 s at 2,000 ticks/s.
const N: usize = 20_000;

/// A message as the archive receives it: subject, payload, stream.
type Msg = (String, Vec<u8>, &'static str);

/// The messages of a synthetic USD/MXN stream as the archive receives them, and the engine's outputs for
/// the replay's path.
fn stream() -> (Vec<Msg>, Vec<Output>) {
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
    let mut msgs = Vec::with_capacity(2 * N);
    let mut outputs = Vec::with_capacity(N);
    for item in SynthTicks::new(spec, pair).expect("synth") {
        if let Item::Tick(t) = item {
            let mut tick = format!(
                "{{\"pair\":\"USDMXN\",\"ts\":\"{}\",\"bid\":{},\"ask\":{}",
                cambio::time::format_ts(t.ts_us),
                t.bid.unwrap_or(f64::NAN),
                t.ask.unwrap_or(f64::NAN)
            );
            if let Some(seq) = t.seq {
                tick.push_str(&format!(",\"seq\":{seq}"));
            }
            tick.push_str(",\"source\":\"bench-feed\"}");
            msgs.push(("fx.ticks.USDMXN".to_string(), tick.into_bytes(), "FX"));
            engine.on_tick(&t, &mut out);
            for o in out.drain(..) {
                let kind = match &o {
                    Output::Forecast(_) => "pred",
                    Output::Quarantined(_) => "quarantine",
                    Output::Alarm(_) | Output::Adapted(_) => "alert",
                    Output::QualityChanged(_) => continue,
                };
                let mut payload = Vec::new();
                cambio::contract::write_output(&o, &mut payload);
                msgs.push((format!("fx.{kind}.USDMXN"), payload, "FX_OUT"));
                outputs.push(o);
            }
        }
    }
    (msgs, outputs)
}

fn unlimited() -> RollPolicy {
    RollPolicy {
        max_rows: usize::MAX,
        max_bytes: usize::MAX,
        ..RollPolicy::default()
    }
}

fn bench(c: &mut Criterion) {
    let (msgs, outputs) = stream();
    let dir = std::env::temp_dir().join(format!("cambio-bench-lake-{}", std::process::id()));
    let mut g = c.benchmark_group("archive");
    g.sample_size(10);
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("parquet_live_mix", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&dir);
            let mut lake = Lake::new(&dir, "fx", unlimited()).expect("lake");
            let now = Instant::now();
            for (i, (subject, payload, stream)) in msgs.iter().enumerate() {
                let m = Message {
                    stream,
                    seq: i as u64 + 1,
                    arrival_us: Some(1_700_000_000_000_000 + i as i64),
                    subject,
                    payload,
                };
                lake.push(&m, now).expect("push");
            }
            black_box(lake.roll_due(now, true).expect("roll"))
        });
    });
    g.bench_function("floor_parse_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for (_, payload, _) in &msgs {
                n += usize::from(serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_ok());
            }
            black_box(n)
        });
    });
    g.bench_function("floor_json_lines", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(msgs.iter().map(|(_, p, _)| p.len() + 1).sum());
            for (_, p, _) in &msgs {
                buf.extend_from_slice(p);
                buf.push(b'\n');
            }
            black_box(buf.len())
        });
    });
    g.throughput(Throughput::Elements(outputs.len() as u64));
    g.bench_function("parquet_replay_outputs", |b| {
        b.iter(|| {
            let _ = std::fs::remove_dir_all(&dir);
            let mut lake = OfflineLake::new(&dir, "fx").expect("lake");
            for o in &outputs {
                lake.push(o).expect("push");
            }
            black_box(lake.finish().expect("finish"))
        });
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
