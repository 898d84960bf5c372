//! Measures the candidate payload encodings of a checkpoint: size, encode and decode (restore) time of a
//! realistic engine (100,000 ticks of the calm random walk's synthetic input, its horizons).
//!
//! `cargo run --release --example checkpoint_codecs`

use std::time::Instant;

use cambio::config::EngineConfig;
use cambio::engine::Engine;
use cambio::replay::Item;
use cambio::replay::synth::{SynthSpec, SynthTicks};
use cambio::tick::Pair;

fn best<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, f64) {
    let mut best = f64::INFINITY;
    let mut last = None;
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed().as_secs_f64());
        last = Some(v);
    }
    (last.expect("runs > 0"), best)
}

fn main() {
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
    let reference = serde_json::to_vec(&engine).expect("json");
    let runs = 50;

    let (json, json_enc) = best(runs, || serde_json::to_vec(&engine).expect("json"));
    let (_, json_dec) = best(runs, || serde_json::from_slice::<Engine>(&json).expect("json"));
    println!(
        "serde_json  {:>8} bytes  encode {:>8.1} µs  decode {:>8.1} µs",
        json.len(),
        json_enc * 1e6,
        json_dec * 1e6
    );

    match postcard::to_stdvec(&engine) {
        Ok(_) => {
            let (pc, pc_enc) = best(runs, || postcard::to_stdvec(&engine).expect("postcard"));
            let (e, pc_dec) = best(runs, || postcard::from_bytes::<Engine>(&pc));
            match e {
                Ok(e) => {
                    let same = serde_json::to_vec(&e).expect("json") == reference;
                    println!(
                        "postcard    {:>8} bytes  encode {:>8.1} µs  decode {:>8.1} µs  identical: {same}",
                        pc.len(),
                        pc_enc * 1e6,
                        pc_dec * 1e6
                    );
                }
                Err(e) => println!("postcard    decode fails: {e}"),
            }
        }
        Err(e) => println!("postcard    encode fails: {e}"),
    }
    match bincode::serialize(&engine) {
        Ok(_) => {
            let (bc, bc_enc) = best(runs, || bincode::serialize(&engine).expect("bincode"));
            let (e, bc_dec) = best(runs, || bincode::deserialize::<Engine>(&bc));
            match e {
                Ok(e) => {
                    let same = serde_json::to_vec(&e).expect("json") == reference;
                    println!(
                        "bincode 1   {:>8} bytes  encode {:>8.1} µs  decode {:>8.1} µs  identical: {same}",
                        bc.len(),
                        bc_enc * 1e6,
                        bc_dec * 1e6
                    );
                }
                Err(e) => println!("bincode     decode fails: {e}"),
            }
        }
        Err(e) => println!("bincode     encode fails: {e}"),
    }
}
