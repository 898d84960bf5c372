//! The bodies of cambio's fuzz targets: one function per decoder, fed raw bytes.
//!
//! Each function calls the same public decoder the service or replay calls, must never panic, hang or
//! grow memory without bound on any input, and checks what can be checked cheaply on every accepted
//! input (a tick or factor written back by the contract's writer reads back identically; a decoded
//! checkpoint re-encodes to the same bytes). The libFuzzer targets in
//! `fuzz_targets/` call these functions, and so does `tests/fuzz_regressions.rs`, which replays the
//! committed corpus (`corpus-regressions/<target>/`) on stable in the ordinary test suite: the crashers
//! found once stay fixed.

use std::io::Cursor;
use std::path::Path;

use cambio::business::event::parse_event;
use cambio::business::mask::MaskKey;
use cambio::checkpoint::format;
use cambio::config::Config;
use cambio::nats::publish::{factor_json, tick_json};
use cambio::nats::serve::service::decode_body;
use cambio::pipeline::PairPipeline;
use cambio::replay::Item;
use cambio::replay::source::{CsvTicks, JsonlTicks, parse_factor_csv, parse_message};
use cambio::tick::{Factor, Pair, Tick, parse_factor, parse_tick};

/// A target's body: it gets one input and panics on a bug.
pub type Target = fn(&[u8]);

/// Every target: its name (the directory of its corpus) and its body.
pub const TARGETS: &[(&str, Target)] = &[
    ("tick_json", tick_json_target),
    ("csv_ticks", csv_ticks),
    ("factor_json", factor_json_target),
    ("factor_csv", factor_csv),
    ("request_body", request_body),
    ("checkpoint", checkpoint),
    ("config", config),
    ("business_event", business_event),
];

fn usdmxn() -> Pair {
    Pair::parse("USDMXN").expect("USDMXN is a pair")
}

/// Equal as values: NaN equals NaN (a sign or payload of NaN is not kept by any wire format), everything
/// else bit for bit (so `-0.0` must stay `-0.0`).
fn same_price(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => (x.is_nan() && y.is_nan()) || x.to_bits() == y.to_bits(),
        (None, None) => true,
        _ => false,
    }
}

/// Equal ticks in the sense of [`same_price`].
pub fn same_tick(a: &Tick, b: &Tick) -> bool {
    a.pair == b.pair
        && a.ts_us == b.ts_us
        && same_price(a.bid, b.bid)
        && same_price(a.ask, b.ask)
        && same_price(a.mid, b.mid)
        && a.source == b.source
        && a.seq == b.seq
        && a.arrival_us == b.arrival_us
}

/// A tick payload as serve and replay read it (with and without a subject pair), as a wire message
/// (tick or factor) and as a JSON-lines file. A tick that reads is written back with the contract's
/// writer and must read back identically.
pub fn tick_json_target(data: &[u8]) {
    for expected in [None, Some(usdmxn())] {
        if let Ok(t) = parse_tick(data, expected) {
            let written = tick_json(&t);
            match parse_tick(&written, expected) {
                Ok(back) => assert!(
                    same_tick(&t, &back),
                    "tick changed through its JSON: {t:?} -> {} -> {back:?}",
                    String::from_utf8_lossy(&written)
                ),
                Err(reason) => panic!(
                    "written tick does not read back ({}): {t:?} -> {}",
                    reason.name(),
                    String::from_utf8_lossy(&written)
                ),
            }
        }
        let _ = parse_message(data, expected);
    }
    let lines = JsonlTicks::from_reader(Box::new(Cursor::new(data.to_vec())), None);
    for item in lines {
        if let Item::Rejected { raw, .. } = item {
            assert!(
                raw.len() <= 4 * data.len() + 16,
                "a rejected line's raw text outgrew the input"
            );
        }
    }
}

/// A CSV tick file as replay reads it: header, then rows. The first byte chooses `--pair` and a file
/// name from which a pair can be guessed; the rest is the file. Every tick read is also published as
/// `replay --to-nats` does (the contract's JSON), and the service must read it back identically.
pub fn csv_ticks(data: &[u8]) {
    let Some((&choice, text)) = data.split_first() else {
        return;
    };
    let pair = (choice & 1 == 1).then(usdmxn);
    let name = if choice & 2 == 2 { "usdmxn.csv" } else { "ticks.csv" };
    let Ok(rows) = CsvTicks::from_reader(Box::new(Cursor::new(text.to_vec())), Path::new(name), pair) else {
        return;
    };
    for item in rows {
        let Item::Tick(t) = item else {
            continue;
        };
        if let Some(p) = pair {
            assert_eq!(t.pair, p, "a row of another pair passed the --pair filter");
        }
        let written = tick_json(&t);
        let back = parse_tick(&written, Some(t.pair));
        assert!(
            matches!(&back, Ok(b) if same_tick(&t, b)),
            "a CSV tick changed through its JSON: {t:?} -> {} -> {back:?}",
            String::from_utf8_lossy(&written)
        );
    }
}

/// A factor payload (`<prefix>.factors.<NAME>`, or a JSON line of a replayed file). A factor that reads
/// is written back with the contract's writer and must read back identically.
pub fn factor_json_target(data: &[u8]) {
    if let Ok(f) = parse_factor(data) {
        assert!(f.value.is_finite(), "a non-finite factor value was accepted");
        let written = factor_json(&f);
        match parse_factor(&written) {
            Ok(back) => assert!(
                same_factor(&f, &back),
                "factor changed through its JSON: {f:?} -> {back:?}"
            ),
            Err(e) => panic!(
                "written factor does not read back ({e}): {f:?} -> {}",
                String::from_utf8_lossy(&written)
            ),
        }
    }
}

fn same_factor(a: &Factor, b: &Factor) -> bool {
    a.name == b.name && a.ts_us == b.ts_us && a.value.to_bits() == b.value.to_bits() && a.source == b.source
}

/// A factor CSV (`replay --factor NAME=FILE`). The first byte chooses the publication lag.
pub fn factor_csv(data: &[u8]) {
    let Some((&choice, text)) = data.split_first() else {
        return;
    };
    const DAY_US: i64 = 86_400_000_000;
    let lag_us = [0, DAY_US, 45 * DAY_US, -DAY_US][usize::from(choice & 3)];
    let text = String::from_utf8_lossy(text);
    if let Ok(factors) = parse_factor_csv(&text, Path::new("factor.csv"), "TIIE28", lag_us) {
        assert!(
            factors.iter().all(|f| f.value.is_finite()),
            "a non-finite factor value was read"
        );
        assert!(
            factors.windows(2).all(|w| w[0].ts_us <= w[1].ts_us),
            "factors out of time order"
        );
    }
}

/// The body of a request to an endpoint of the micro service. The first byte chooses the endpoint;
/// the rest is the body. The error reply (its text and JSON) is built too, as the service sends it.
pub fn request_body(data: &[u8]) {
    let Some((&choice, body)) = data.split_first() else {
        return;
    };
    let endpoint = ["query", "status", "models"][usize::from(choice % 3)];
    match decode_body(endpoint, body) {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            let code = e.code();
            assert!(code == 400, "a body alone gave code {code}: {e}");
            let reply = e.reply();
            let _ = serde_json::to_vec(&reply);
        }
        None => panic!("{endpoint} is an endpoint"),
    }
}

/// A checkpoint record as the store reads it, both as it comes (magic, version, length, checksum) and as
/// the payload of a well-formed envelope of every format version, so the fuzzer reaches the state decoder
/// past the checksum. A record is refused or decoded faithfully: a decoded state re-encodes to the same
/// bytes.
pub fn checkpoint(data: &[u8]) {
    let _ = format::decode(data);
    for version in 1..=format::FORMAT_VERSION {
        let mut record = format::seal(data);
        record[8..10].copy_from_slice(&version.to_le_bytes());
        // The checksum covers the version: recompute it, as a writer of that version would have.
        let crc = checksum(&record[8..18], &record[format::HEADER_LEN..]);
        record[18..22].copy_from_slice(&crc.to_le_bytes());
        let Ok(state) = format::decode(&record) else {
            continue;
        };
        let Ok(encoded) = format::encode(&state) else {
            continue;
        };
        let again = format::decode(&encoded).expect("an encoded state decodes");
        assert_eq!(
            format::encode(&again).ok(),
            Some(encoded),
            "a decoded state re-encodes differently"
        );
    }
}

/// CRC-32 (IEEE) of a header and a payload, the checkpoint envelope's checksum.
fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}

/// A configuration file as `--config` reads it (TOML, then every table's validation). A configuration
/// that is accepted must build a working pipeline: a pair is built from it and a few ticks go through.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = Config::parse(text, Path::new("cambio.toml")) else {
        return;
    };
    let Ok(mut pipeline) = PairPipeline::fresh(usdmxn(), &cfg.engine, &cfg.challenger) else {
        return;
    };
    let mut out = Vec::new();
    for i in 0..40i64 {
        let mid = 18.5 + 0.01 * ((i * 7) % 11) as f64;
        let tick = Tick {
            pair: usdmxn(),
            ts_us: 1_600_000_000_000_000 + i * 60_000_000,
            bid: Some(mid - 0.001),
            ask: Some(mid + 0.001),
            mid: None,
            source: Default::default(),
            seq: Some(i as u64),
            arrival_us: None,
        };
        pipeline.on_tick(&tick, &mut out);
        out.clear();
    }
}

/// A business deal event (`<prefix>.business.<PAIR>`) read and masked with a fixed key. An event that
/// reads has a finite positive rate (and amount, when given), and its pseudonym is the key's pseudonym of
/// the client the payload names: the masking never sees another string than the one sent.
pub fn business_event(data: &[u8]) {
    let key = MaskKey::new(&[7; 32]).expect("a 32-byte key is a key");
    let Ok(event) = parse_event(data, &key) else {
        return;
    };
    assert!(
        event.rate.is_finite() && event.rate > 0.0,
        "an event with rate {} was accepted",
        event.rate
    );
    if let Some(a) = event.amount {
        assert!(a.is_finite() && a > 0.0, "an event with amount {a} was accepted");
    }
    let value: serde_json::Value = serde_json::from_slice(data).expect("an accepted event is JSON");
    let client = value["client"].as_str().expect("an accepted event names its client");
    assert!(
        event.client == key.pseudonym(client),
        "the pseudonym is not the key's pseudonym of the client sent"
    );
}
