//! Durable state end to end: an engine checkpointed mid-stream through the real format and a real redb
//! file, restored in a fresh store handle, continues with byte-identical outputs; damaged files are
//! refused, never misread; and `cambio models …` as an operator runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output as ProcOutput};

use cambio::checkpoint::AppliedSeqs;
use cambio::checkpoint::format;
use cambio::checkpoint::{CheckpointStore, PairState, Reason, Retention, StoreError};
use cambio::config::EngineConfig;
use cambio::engine::{Engine, Output};
use cambio::replay::Item;
use cambio::replay::synth::{SynthSpec, SynthTicks};
use cambio::tick::{Pair, Tick};

fn pair() -> Pair {
    Pair::parse("USDMXN").unwrap()
}

/// A calm_random_walk-like stream with events, so every detector and the adaptation path have state.
fn synth(ticks: u64, seed: u64) -> Vec<Tick> {
    let spec: SynthSpec = toml::from_str(&format!(
        "seed = {seed}\nticks = {ticks}\ninterval_ms = 1000\nvol = 1e-4\nstudent_t_df = 4\ngarch = true\n\
         events = [{{ kind = \"vol_regime\", at = {}, factor = 4.0 }}, {{ kind = \"level_shift\", at = {}, size = 0.02 }}, \
         {{ kind = \"duplicates\", at = 1000, count = 50, copies = 2 }}]",
        ticks / 2,
        ticks * 3 / 4
    ))
    .unwrap();
    SynthTicks::new(spec, pair())
        .unwrap()
        .filter_map(|i| match i {
            Item::Tick(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// The same walk without events: every tick is one position (for exact counts in the CLI test).
fn plain(ticks: u64, seed: u64) -> Vec<Tick> {
    let spec: SynthSpec = toml::from_str(&format!(
        "seed = {seed}\nticks = {ticks}\nstudent_t_df = 4\ngarch = true"
    ))
    .unwrap();
    SynthTicks::new(spec, pair())
        .unwrap()
        .filter_map(|i| match i {
            Item::Tick(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn cfg() -> EngineConfig {
    EngineConfig {
        horizons: ["1step", "10step", "1m", "1h"]
            .iter()
            .map(|h| h.parse().unwrap())
            .collect(),
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

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cambio-ckpt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn checkpoint_restore_through_redb_continues_byte_identically() {
    let ticks = synth(120_000, 11);
    let mut straight = Engine::new(pair(), &cfg()).unwrap();
    let expected = run(&mut straight, &ticks);
    assert!(
        expected.iter().any(|l| l.contains("\"type\":\"alarm\"")),
        "the stream exercises the detectors"
    );

    let dir = scratch("identical");
    let db = dir.join("state.redb");
    let mut got = Vec::new();
    let mut engine = Engine::new(pair(), &cfg()).unwrap();
    // Several checkpoints and restores, each through a closed and reopened file.
    let cuts = [0, 17_321, 60_001, 90_000, ticks.len()];
    for (i, w) in cuts.windows(2).enumerate() {
        got.extend(run(&mut engine, &ticks[w[0]..w[1]]));
        let store = CheckpointStore::open(&db, Retention { keep_last: 2 }).unwrap();
        let state = PairState {
            engine,
            applied: Some(AppliedSeqs::with_floor(w[1] as u64)),
            contest: None,
        };
        let meta = store
            .put_state(&state, Reason::Periodic, 1_700_000_000_000_000 + i as i64)
            .unwrap();
        assert_eq!(meta.version, i as u64 + 1);
        assert_eq!(meta.stream_seq, Some(w[1] as u64));
        drop(state);
        drop(store);
        let store = CheckpointStore::open(&db, Retention { keep_last: 2 }).unwrap();
        let (meta, restored) = store.latest_good(pair()).unwrap().unwrap();
        assert_eq!(meta.ticks, w[1] as u64);
        engine = restored.engine;
    }
    assert_eq!(got.len(), expected.len());
    let first_diff = got.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(first_diff.is_none(), "outputs differ from output {first_diff:?} on");
    assert_eq!(
        serde_json::to_vec(&engine).unwrap(),
        serde_json::to_vec(&straight).unwrap()
    );
    let store = CheckpointStore::open(&db, Retention { keep_last: 2 }).unwrap();
    assert_eq!(store.list(None).unwrap().len(), 2, "retention kept the last two");
}

#[test]
fn damaged_redb_files_are_refused_never_misread() {
    let dir = scratch("damaged");
    let db = dir.join("state.redb");
    {
        let store = CheckpointStore::open(&db, Retention::default()).unwrap();
        let mut e = Engine::new(pair(), &cfg()).unwrap();
        run(&mut e, &synth(3_000, 3));
        store
            .put_state(
                &PairState {
                    engine: e,
                    applied: None,
                    contest: None,
                },
                Reason::Shutdown,
                1,
            )
            .unwrap();
    }
    let good = std::fs::read(&db).unwrap();

    // Truncated: cut in half.
    let cut = dir.join("cut.redb");
    std::fs::write(&cut, &good[..good.len() / 2]).unwrap();
    assert_refused_or_faithful(&cut);
    // Garbage: not a redb file at all.
    let garbage = dir.join("garbage.redb");
    std::fs::write(&garbage, vec![0x5a; 4096]).unwrap();
    let e = CheckpointStore::open_existing(&garbage, Retention::default()).unwrap_err();
    assert!(matches!(e, StoreError::Open { .. }), "{e}");
    assert!(e.to_string().contains("garbage.redb"), "the error names the file: {e}");
    // Bytes flipped all over the file (one position at a time): each copy is refused or, where the flip
    // hit unused space, reads the very same model.
    for k in 1..16 {
        let pos = good.len() * k / 16;
        let mut bad = good.clone();
        for b in &mut bad[pos..(pos + 64).min(good.len())] {
            *b ^= 0xa5;
        }
        let path = dir.join(format!("flip{k}.redb"));
        std::fs::write(&path, &bad).unwrap();
        assert_refused_or_faithful(&path);
    }
    // A missing file is an error for the CLI's open, not a new empty store.
    assert!(matches!(
        CheckpointStore::open_existing(&dir.join("missing.redb"), Retention::default()),
        Err(StoreError::Open { .. })
    ));
}

/// Either the store refuses with an error (at open, list or read) or what it returns is the original
/// engine, exactly; `Ok(None)` (no checkpoint at all) is neither.
fn assert_refused_or_faithful(path: &Path) {
    let expected = {
        let mut e = Engine::new(pair(), &cfg()).unwrap();
        run(&mut e, &synth(3_000, 3));
        serde_json::to_string(&e).unwrap()
    };
    let result = std::panic::catch_unwind(|| {
        let store = CheckpointStore::open_existing(path, Retention::default())?;
        store.latest_good(pair())
    });
    match result {
        Err(_) => panic!("{}: reading a damaged file panicked", path.display()),
        Ok(Err(_)) => {}
        // The file held a checkpoint: a damaged copy that reads as "no checkpoint" would let a service
        // start from scratch silently, so it is a misread, not a refusal.
        Ok(Ok(None)) => panic!(
            "{}: a damaged file read as holding no checkpoint instead of an error",
            path.display()
        ),
        Ok(Ok(Some((_, state)))) => assert_eq!(
            serde_json::to_string(&state.engine).unwrap(),
            expected,
            "{}: a damaged file gave a different model",
            path.display()
        ),
    }
}

/// The encoding of the engine's state is not self-describing: a change of its shape must bump
/// `FORMAT_VERSION`, and records of every older version must keep decoding (fields added since read as
/// their defaults, see `cambio::evolve`). Each older fixture, written by its format version, must decode
/// to the state it decoded to when it was current (`vN_usdmxn_2000.json`: every value there must still
/// be found; fields added later are extra) and must serve on. The current version's fixture must
/// re-encode byte for byte. `CAMBIO_BLESS=1 cargo test --test checkpoint golden` rewrites the fixture of
/// the current version only (older ones are history, never rewritten).
#[test]
fn golden_checkpoints_still_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint");
    let bless = std::env::var_os("CAMBIO_BLESS").is_some();
    for version in 1..format::FORMAT_VERSION {
        let bytes = std::fs::read(dir.join(format!("v{version}_usdmxn_2000.ckpt"))).unwrap();
        assert_eq!(format::open(&bytes).unwrap().0, version);
        let decoded = format::decode(&bytes).unwrap_or_else(|e| {
            panic!("the v{version} fixture no longer decodes ({e}): the state's shape changed; follow the rules in cambio::evolve")
        });
        let now = serde_json::to_value(&decoded.engine).unwrap();
        let snapshot = dir.join(format!("v{version}_usdmxn_2000.json"));
        if bless && !snapshot.exists() {
            // Written once, by the first build that made this version history.
            std::fs::write(&snapshot, now.to_string()).unwrap();
        }
        let was: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&snapshot).unwrap()).unwrap();
        if let Err(at) = json_contains(&now, &was, "engine") {
            panic!("the v{version} fixture decodes to a different engine at {at}: an existing field changed");
        }
        assert_eq!(decoded.applied, Some(AppliedSeqs::with_floor(2_000)));
        assert_eq!(decoded.contest.is_some(), version >= 2, "v{version}");
        // An upgraded state serves on, and is written in the current format.
        let mut engine = decoded.engine.clone();
        let mut out = Vec::new();
        for t in &synth(2_300, 9)[2_000..] {
            engine.on_tick(t, &mut out);
        }
        assert!(
            out.iter().any(|o| matches!(o, Output::Forecast(_))),
            "v{version} serves on"
        );
        let again = format::decode(&format::encode(&decoded).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&again.engine).unwrap(),
            now,
            "v{version} rewritten in the current format"
        );
    }

    let mut e = Engine::new(pair(), &cfg()).unwrap();
    run(&mut e, &synth(2_000, 9));
    // Since format 2: the champion/challenger contest.
    let challenger = cambio::challenger::ChallengerConfig {
        enabled: true,
        rollback: true,
        ..Default::default()
    };
    let mut rival = Engine::new(pair(), &cfg()).unwrap();
    run(&mut rival, &synth(500, 9));
    let contest = cambio::challenger::Contest::new(
        &challenger,
        &e,
        Some((rival, cambio::challenger::ModelOrigin::Version(1))),
    )
    .unwrap();
    let state = PairState {
        engine: e,
        applied: Some(AppliedSeqs::with_floor(2_000)),
        contest: Some(contest),
    };
    let stem = format!("v{}_usdmxn_2000", format::FORMAT_VERSION);
    if bless {
        std::fs::write(dir.join(format!("{stem}.ckpt")), format::encode(&state).unwrap()).unwrap();
    }
    let bytes = std::fs::read(dir.join(format!("{stem}.ckpt"))).unwrap();
    let decoded = format::decode(&bytes).unwrap_or_else(|e| {
        panic!("the current fixture no longer decodes ({e}): the state's shape changed without a version bump")
    });
    assert_eq!(format::encode(&decoded).unwrap(), bytes, "re-encodes byte for byte");
    assert_eq!(
        format::encode(&state).unwrap(),
        bytes,
        "this build writes the same bytes (if the engine's behaviour changed on purpose, bless the current fixture)"
    );
}

/// Every value of `was` is in `now` at the same place (objects may have gained keys, arrays of counters
/// may have grown); the first difference's path otherwise.
fn json_contains(now: &serde_json::Value, was: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value;
    match (now, was) {
        (Value::Object(n), Value::Object(w)) => w.iter().try_for_each(|(k, wv)| match n.get(k) {
            Some(nv) => json_contains(nv, wv, &format!("{at}.{k}")),
            None => Err(format!("{at}.{k} (gone)")),
        }),
        (Value::Array(n), Value::Array(w)) if n.len() >= w.len() => w
            .iter()
            .zip(n)
            .enumerate()
            .try_for_each(|(i, (wv, nv))| json_contains(nv, wv, &format!("{at}[{i}]"))),
        _ if now == was => Ok(()),
        _ => Err(format!("{at}: {was} became {now}")),
    }
}

fn cambio(args: &[&str]) -> ProcOutput {
    Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(args)
        .output()
        .expect("run cambio")
}

fn ok(out: &ProcOutput) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn models_cli_lists_shows_rolls_back_exports_and_imports() {
    let dir = scratch("cli");
    let db = dir.join("state.redb");
    let ticks = plain(4_000, 5);
    {
        let store = CheckpointStore::open(&db, Retention::default()).unwrap();
        let mut e = Engine::new(pair(), &cfg()).unwrap();
        for (i, chunk) in ticks.chunks(2_000).enumerate() {
            run(&mut e, chunk);
            let state = PairState {
                engine: e.clone(),
                applied: None,
                contest: None,
            };
            store
                .put_state(&state, Reason::Periodic, 1_795_000_000_000_000 + i as i64)
                .unwrap();
        }
    }
    let dbs = db.to_str().unwrap();

    let list = ok(&cambio(&["models", "list", "--db", dbs]));
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].contains("version") && lines[0].contains("rmse/rw") && lines[0].contains("keep"));
    assert!(
        lines[1].starts_with("USDMXN") && lines[1].contains("periodic") && lines[1].contains("2000"),
        "{list}"
    );
    assert!(lines[1].contains("1step"), "{list}");

    let show: serde_json::Value = serde_json::from_str(&ok(&cambio(&[
        "models",
        "show",
        "--db",
        dbs,
        "--pair",
        "USDMXN",
        "--version",
        "1",
        "--json",
    ])))
    .unwrap();
    assert_eq!(show["version"], 1);
    assert_eq!(show["ticks"], 2000);
    assert_eq!(show["reason"], "periodic");
    assert_eq!(show["horizons"][0]["horizon"], "1step");
    assert!(show["horizons"][0]["rmse_ratio"].as_f64().unwrap() > 0.5);

    let out = ok(&cambio(&[
        "models",
        "rollback",
        "--db",
        dbs,
        "--pair",
        "USDMXN",
        "--version",
        "1",
    ]));
    assert!(out.contains("version 3"), "{out}");
    let show: serde_json::Value = serde_json::from_str(&ok(&cambio(&[
        "models", "show", "--db", dbs, "--pair", "USDMXN", "--json",
    ])))
    .unwrap();
    assert_eq!(
        (
            show["version"].as_u64(),
            show["reason"].as_str(),
            show["ticks"].as_u64()
        ),
        (Some(3), Some("rollback"), Some(2000))
    );

    ok(&cambio(&[
        "models",
        "keep",
        "--db",
        dbs,
        "--pair",
        "USDMXN",
        "--version",
        "2",
    ]));
    assert!(
        ok(&cambio(&["models", "list", "--db", dbs, "--pair", "USDMXN"]))
            .lines()
            .nth(2)
            .unwrap()
            .trim_end()
            .ends_with("keep")
    );

    let file = dir.join("usdmxn.ckpt");
    ok(&cambio(&[
        "models",
        "export",
        "--db",
        dbs,
        "--pair",
        "USDMXN",
        "--version",
        "2",
        "--out",
        file.to_str().unwrap(),
    ]));
    let state = format::decode(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(state.engine.ticks(), 4_000);

    let other = dir.join("other.redb");
    let out = ok(&cambio(&[
        "models",
        "import",
        "--db",
        other.to_str().unwrap(),
        file.to_str().unwrap(),
    ]));
    assert!(out.contains("USDMXN version 1"), "{out}");
    let list = ok(&cambio(&["models", "list", "--db", other.to_str().unwrap()]));
    assert!(list.contains("import") && list.contains("4000"), "{list}");

    // Errors: exit 2 with a one-line message, never a panic.
    for args in [
        vec!["models", "show", "--db", dbs, "--pair", "USDMXN", "--version", "99"],
        vec!["models", "list", "--db", dir.join("nope.redb").to_str().unwrap()],
        vec!["models", "rollback", "--db", dbs, "--pair", "usd", "--version", "1"],
    ] {
        let out = cambio(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: "), "{args:?}: {err}");
    }
    std::fs::write(&file, b"CAMBIOCK\x07\x00").unwrap();
    let out = cambio(&["models", "import", "--db", dbs, file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("newer"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
