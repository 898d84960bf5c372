//! The committed fuzz corpus, replayed on stable in the ordinary suite: every file of
//! `tests/fuzz/corpus-regressions/<target>/` goes through the same function its libFuzzer target calls
//! (`tests/fuzz/src/lib.rs`), so a crash the fuzzers found once, and the seeds that reach each decoder's
//! paths, keep passing. `scripts/fuzz.sh` runs the fuzzers themselves (nightly).

#[path = "fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

/// Every target has a corpus directory, and every file in it passes its target without a panic.
#[test]
fn committed_fuzz_corpus_passes_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus-regressions");
    let mut total = 0;
    for (name, target) in harness::TARGETS {
        let dir = root.join(name);
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.expect("directory entry").path())
            .collect();
        files.sort();
        assert!(!files.is_empty(), "{}: no corpus", dir.display());
        for file in files {
            let data = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} fails its target", file.display());
            total += 1;
        }
    }
    assert!(total >= harness::TARGETS.len());
}

/// Regenerates the checkpoint target's seeds: the payloads (the target seals them itself) and one whole
/// record, of small engines (one horizon) after 0 and 12 ticks, with and without a contest.
/// `cargo test --test fuzz_regressions -- --ignored`, then commit the files.
#[test]
#[ignore = "writes tests/fuzz/corpus-regressions/checkpoint/seed-*; run by hand to regenerate them"]
fn write_checkpoint_seeds() {
    use cambio::challenger::ChallengerConfig;
    use cambio::checkpoint::{PairState, format};
    use cambio::config::EngineConfig;
    use cambio::pipeline::PairPipeline;
    use cambio::tick::{Pair, Tick};

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/corpus-regressions/checkpoint");
    let pair = Pair::parse("USDMXN").expect("a pair");
    let engine = EngineConfig {
        horizons: vec!["1step".parse().expect("a horizon")],
        ..EngineConfig::default()
    };
    let guard = ChallengerConfig {
        rollback: true,
        ..ChallengerConfig::default()
    };
    for (name, challenger, ticks) in [
        ("fresh", ChallengerConfig::default(), 0u32),
        ("12-ticks", ChallengerConfig::default(), 12),
        ("12-ticks-guard", guard, 12),
    ] {
        let mut p = PairPipeline::fresh(pair, &engine, &challenger).expect("a pipeline");
        let mut out = Vec::new();
        for i in 0..ticks {
            let tick = Tick {
                pair,
                ts_us: 1_600_000_000_000_000 + i64::from(i) * 1_000_000,
                bid: None,
                ask: None,
                mid: Some(18.5 + 0.001 * f64::from(i % 5)),
                source: Default::default(),
                seq: Some(u64::from(i)),
                arrival_us: None,
            };
            p.on_tick(&tick, &mut out);
        }
        let state = PairState {
            engine: p.engine().clone(),
            applied: None,
            contest: p.contest().cloned(),
        };
        let record = format::encode(&state).expect("encodes");
        std::fs::write(dir.join(format!("seed-payload-{name}")), &record[format::HEADER_LEN..]).expect("write");
        if ticks == 0 {
            std::fs::write(dir.join(format!("seed-record-{name}")), &record).expect("write");
        }
    }
}

/// A finding of the `checkpoint` target: a payload with a valid checksum but an inconsistent shape (an
/// engine whose drift monitors are missing) decoded, then panicked on the first tick (index out of bounds in
/// `Engine::on_tick`). The checksum catches damage, not a payload written wrong, so decoding now checks the
/// engine's shape against its configuration and refuses it.
#[test]
fn a_checkpoint_with_an_inconsistent_engine_is_refused() {
    use cambio::checkpoint::format;

    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz/findings/checkpoint-engine-without-monitors");
    let payload = std::fs::read(&file).expect("the finding's input");
    let mut refused_as_inconsistent = 0;
    for version in 1..=format::FORMAT_VERSION {
        let mut record = format::seal(&payload);
        record[8..10].copy_from_slice(&version.to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&record[8..18]);
        h.update(&record[format::HEADER_LEN..]);
        let crc = h.finalize();
        record[18..22].copy_from_slice(&crc.to_le_bytes());
        match format::decode(&record) {
            Err(format::FormatError::Inconsistent(_)) => refused_as_inconsistent += 1,
            Err(format::FormatError::Payload(_)) => {} // not this version's layout at all
            other => panic!(
                "format {version}: {}",
                other.map(|_| "decoded".to_string()).unwrap_or_else(|e| e.to_string())
            ),
        }
    }
    assert!(
        refused_as_inconsistent > 0,
        "the finding decodes as no version's layout any more"
    );
}
