//! The wire contract's promises, checked on the engine's own output (the same bytes replay writes and
//! serve publishes): every message is tagged, forecasts say when their intervals are still warming up,
//! prices carry no float noise, and flags have one spelling in code and docs.

use std::path::Path;

use cambio::contract::{Output, write_output};
use cambio::engine::{Engine, EngineConfig};
use cambio::forecast::WARMUP_SCORED;
use cambio::quality::Flags;
use cambio::tick::{Pair, parse_tick};
use serde_json::Value;

fn pair() -> Pair {
    Pair::parse("USDMXN").expect("pair")
}

/// A quote a second from 2024-03-04 whose mid, (bid + ask) / 2, is not exact in binary.
fn tick(i: u64) -> String {
    let cents = 1_852_766 + (i * 7919 % 400) as i64 - 200;
    let bid = cents as f64 / 100_000.0;
    let ask = (cents + 1) as f64 / 100_000.0;
    format!(
        r#"{{"pair":"USDMXN","ts":"2024-03-04T00:{:02}:{:02}Z","bid":{bid},"ask":{ask},"source":"t","seq":{}}}"#,
        (i / 60) % 60,
        i % 60,
        i + 1
    )
}

fn forecasts(n: u64, cfg: &EngineConfig) -> Vec<Value> {
    let mut e = Engine::new(pair(), cfg).expect("engine");
    let (mut out, mut all) = (Vec::new(), Vec::new());
    for i in 0..n {
        let t = parse_tick(tick(i).as_bytes(), Some(pair())).expect("tick");
        e.on_tick(&t, &mut out);
        for o in out.drain(..) {
            let mut line = Vec::new();
            write_output(&o, &mut line);
            let v: Value = serde_json::from_slice(&line).expect("JSON");
            assert!(v["type"].is_string(), "every output is tagged: {v}");
            if matches!(o, Output::Forecast(_)) {
                all.push(v);
            }
        }
    }
    all
}

/// Contract defect 3: early forecasts said nothing about their uncalibrated intervals.
#[test]
fn forecasts_say_when_their_intervals_are_warming_up() {
    let cfg = EngineConfig {
        horizons: ["1step", "10step"]
            .iter()
            .map(|h| h.parse().expect("horizon"))
            .collect(),
        ..Default::default()
    };
    let n = WARMUP_SCORED + 40;
    let f = forecasts(n, &cfg);
    assert_eq!(f[0]["warming_up"], true, "{}", f[0]);
    assert_eq!(f[0]["horizons"][0]["warming_up"], true);
    // One-step forecasts are scored one tick later: calibrated after WARMUP_SCORED + 1 ticks; ten-step ones
    // nine ticks after that.
    let k = WARMUP_SCORED as usize;
    assert_eq!(f[k - 1]["horizons"][0]["warming_up"], true, "{}", f[k - 1]);
    assert_eq!(f[k + 1]["horizons"][0]["warming_up"], false, "{}", f[k + 1]);
    assert_eq!(f[k + 1]["horizons"][1]["warming_up"], true);
    assert_eq!(
        f[k + 1]["warming_up"],
        true,
        "any horizon warming up flags the forecast"
    );
    let last = f.last().expect("forecasts");
    assert_eq!(last["warming_up"], false, "{last}");
}

/// Contract defect 4: mids from bid and ask were published with float noise (`18.527659999999997`).
#[test]
fn prices_carry_no_float_noise() {
    let f = forecasts(300, &EngineConfig::default());
    let digits = |v: &Value| -> usize {
        let s = v.to_string();
        s.trim_start_matches('-')
            .replace('.', "")
            .trim_start_matches('0')
            .trim_end_matches('0')
            .len()
    };
    for v in &f {
        assert!(digits(&v["mid"]) <= 10, "mid {} has float noise", v["mid"]);
        for h in v["horizons"].as_array().expect("horizons") {
            for k in ["mean", "lo80", "hi80", "lo95", "hi95"] {
                assert!(digits(&h[k]) <= 10, "{k} {} has more than 10 significant digits", h[k]);
            }
        }
    }
    // The first quote: bid 18.52566, ask 18.52567 → mid 18.525665 exactly, as a person would write it.
    assert_eq!(f[0]["mid"].to_string(), "18.525665");
}

/// Contract defect 5: flags were lower case on the wire and upper case in the README.
#[test]
fn flags_have_one_spelling_in_code_and_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|e| e.expect("entry").path())
        .collect();
    docs.push(root.join("README.md"));
    for (_, name) in Flags::NAMED {
        assert_eq!(name, name.to_ascii_lowercase(), "flag names are lower case on the wire");
        let upper = name.to_ascii_uppercase();
        for d in &docs {
            let text = std::fs::read_to_string(d).expect("doc");
            assert!(
                !text.contains(&upper),
                "{} spells the flag {name} as {upper}",
                d.display()
            );
        }
    }
}
