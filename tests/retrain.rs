//! `cambio retrain` end to end, running the binary on real files: a scenario, a CSV, a lake written by
//! `cambio replay --archive`, the Banxico FIX history; the window after a structural break, `--until`,
//! determinism of the state written, and bad inputs refused with exit status 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::*;

/// Small enough for a debug build: the null is simulated on 100,000 ticks, not 2,000,000.
const FAST: [&str; 2] = ["--null-ticks", "100000"];

fn cambio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run cambio")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs a retrain that must succeed and returns its JSON report.
fn retrain_ok(args: &[&str]) -> Value {
    let mut all = vec!["retrain", "--json"];
    all.extend_from_slice(args);
    all.extend_from_slice(&FAST);
    let o = cambio(&all);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("cambio models challenge"), "{stderr}");
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)))
}

/// Runs a retrain that must fail with exit 2 and returns its stderr.
fn retrain_err(args: &[&str]) -> String {
    let mut all = vec!["retrain"];
    all.extend_from_slice(args);
    all.extend_from_slice(&FAST);
    let o = cambio(&all);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

fn show(db: &Path, version: u64) -> Value {
    let o = cambio(&[
        "models",
        "show",
        "--db",
        db.to_str().unwrap(),
        "USDMXN",
        &version.to_string(),
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Checks the version's reason, lineage and scores.
fn assert_lineage(meta: &Value, kind: &str, actor: &str) {
    assert_eq!(meta["reason"], "retrain", "{meta:#}");
    let l = &meta["lineage"];
    assert_eq!(l["actor"], actor, "{meta:#}");
    assert_eq!(l["dataset"]["kind"], format!("retrain:{kind}"), "{meta:#}");
    assert!(
        l["dataset"]["hash"].as_str().unwrap().starts_with("fnv1a64:"),
        "{meta:#}"
    );
    assert!(l["dataset"]["ticks"].as_u64().unwrap() > 0);
    assert!(l["dataset"]["source"].is_string());
    assert!(
        l["window"]["first"].is_string() && l["window"]["last"].is_string(),
        "{meta:#}"
    );
    assert!(l["window"]["reason"].as_str().unwrap().contains("hold-out"), "{meta:#}");
    assert!(l["config"].is_object() && l["config_hash"].is_string());
    assert!(l["code"]["crate_version"].is_string());
    let scores = &l["scores"];
    assert!(scores["holdout.1step.rmse_ratio"].as_f64().unwrap() > 0.0, "{meta:#}");
    assert!(scores["holdout.1step.coverage95"].is_f64());
    assert!(scores["holdout.1step.winkler95"].is_f64());
    assert!(scores["null.simulated_ticks"].as_f64() == Some(100_000.0), "{meta:#}");
}

fn scenario(dir: &Path, ticks: u64) -> PathBuf {
    let s = dir.join("scn");
    std::fs::create_dir_all(&s).unwrap();
    std::fs::write(
        s.join("scenario.toml"),
        format!(
            "name = \"small\"\npair = \"USDMXN\"\n[synthetic]\nseed = 5\nticks = {ticks}\ninterval_ms = 1000\nvol = 1e-4\n\
             student_t_df = 4\n[config]\nhorizons = [\"1step\", \"10step\"]\n"
        ),
    )
    .unwrap();
    s
}

/// Daily fixings from 2000-01-03: `calm` days at 0.4% volatility, then `wild` days at `mult` times it.
fn daily_csv(path: &Path, calm: usize, wild: usize, mult: f64) -> Vec<String> {
    let mut rng = cambio::replay::synth::SplitMix64::new(11);
    let mut p = 10.0f64;
    let day0 = cambio::time::parse_ts_us("2000-01-03T00:00:00Z").unwrap();
    let mut dates = Vec::new();
    let mut s = String::from("date,fix\n");
    for i in 0..calm + wild {
        let vol = if i < calm { 0.004 } else { 0.004 * mult };
        p *= (vol * rng.normal()).exp();
        let d = cambio::time::format_ts(day0 + i as i64 * 86_400_000_000);
        let d = d[..10].to_string();
        s.push_str(&format!("{d},{p:.6}\n"));
        dates.push(d);
    }
    std::fs::write(path, s).unwrap();
    dates
}

#[test]
fn from_a_scenario_a_version_with_reason_retrain_and_full_lineage() {
    let dir = temp_dir("retrain_scenario");
    let scn = scenario(&dir, 3_000);
    let db = dir.join("m.redb");
    let r = retrain_ok(&[
        "--from",
        scn.to_str().unwrap(),
        "--pair",
        "USDMXN",
        "--db",
        db.to_str().unwrap(),
        "--actor",
        "alice",
        "--min-window",
        "300",
        "--until",
        "2024-01-01T00:33:19Z",
    ]);
    assert_eq!(r["version"], 1, "{r:#}");
    assert_eq!(r["source"]["kind"], "scenario");
    // The first 2,000 ticks (one a second from midnight), 20% held out.
    assert_eq!(r["source"]["after_until"], 1_000, "{r:#}");
    assert_eq!(r["holdout"]["ticks"], 400);
    assert!(r["window"]["why"].as_str().unwrap().len() > 10, "{r:#}");
    assert!(r["window"]["span"]["ticks"].as_u64().unwrap() >= 300);
    assert!(
        r["champion_note"].as_str().unwrap().contains("no USDMXN version"),
        "{r:#}"
    );
    // The batch model competes beside the online ones: an augurs AutoETS fit of the window.
    let names: Vec<&str> = r["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"calibrated") && names.contains(&"ets"), "{names:?}");
    assert!(r["null"]["thresholds"].as_array().unwrap().len() >= 3, "{r:#}");
    assert_lineage(&show(&db, 1), "scenario", "alice");

    // A second run, on all 3,000 ticks, has the first version (which has not seen its hold-out) as its
    // champion, scored on the same hold-out, and as parent.
    let r2 = retrain_ok(&[
        "--from",
        scn.to_str().unwrap(),
        "--pair",
        "USDMXN",
        "--db",
        db.to_str().unwrap(),
        "--actor",
        "bob",
        "--min-window",
        "300",
    ]);
    assert_eq!(r2["champion"]["version"], 1, "{r2:#}");
    assert!(r2["champion"]["scores"][0]["n"].as_u64().unwrap() > 0, "{r2:#}");
    let m2 = show(&db, 2);
    assert_eq!(m2["lineage"]["parent"], 1);
    assert!(
        m2["lineage"]["scores"]["champion.holdout.1step.rmse_ratio"].is_f64(),
        "{m2:#}"
    );
    // For people: one score per line in show, one line per score that changed in diff.
    let db_s = db.to_str().unwrap();
    let o = cambio(&["models", "show", "--db", db_s, "USDMXN", "2"]);
    let shown = String::from_utf8_lossy(&o.stdout);
    let ratio = m2["lineage"]["scores"]["holdout.1step.rmse_ratio"].as_f64().unwrap();
    assert!(shown.contains("\n  scores\n"), "{shown}");
    assert!(
        shown.contains(&format!("\n    holdout.1step.rmse_ratio = {ratio}\n")),
        "{shown}"
    );
    let o = cambio(&["models", "diff", "--db", db_s, "USDMXN", "1", "2"]);
    let diff = String::from_utf8_lossy(&o.stdout);
    assert!(diff.contains("\n  score holdout.1step.n: "), "{diff}");
    assert!(
        diff.contains("\n  score champion.holdout.1step.rmse_ratio: (absent) -> "),
        "{diff}"
    );
    // A third run: version 2 has seen this hold-out (its state is warmed on it), so it is not scored,
    // and the report says why.
    let r3 = retrain_ok(&[
        "--from",
        scn.to_str().unwrap(),
        "--pair",
        "USDMXN",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(r3["champion"].is_null(), "{r3:#}");
    assert!(
        r3["champion_note"]
            .as_str()
            .unwrap()
            .contains("version 2 has seen ticks"),
        "{r3:#}"
    );
    let audit = cambio(&["models", "audit", "--db", db.to_str().unwrap(), "--json"]);
    assert!(
        String::from_utf8_lossy(&audit.stdout).contains("retrain"),
        "{}",
        text(&audit)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn from_a_csv_the_window_starts_at_a_volatility_break_and_until_is_respected() {
    let dir = temp_dir("retrain_csv");
    let csv = dir.join("usdmxn.csv");
    // 1,500 calm days, then 1,000 days five times as volatile; 10% held out leaves 750 after the break.
    let dates = daily_csv(&csv, 1_500, 1_000, 5.0);
    let db = dir.join("m.redb");
    let args = |db: &Path| {
        vec![
            "--from".to_string(),
            csv.display().to_string(),
            "--pair".into(),
            "USDMXN".into(),
            "--db".into(),
            db.display().to_string(),
            "--holdout".into(),
            "10%".into(),
            "--min-window".into(),
            "200".into(),
        ]
    };
    let a = args(&db);
    let r = retrain_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r["window"]["reason"], "changepoint", "{r:#}");
    let first = r["window"]["span"]["first"].as_str().unwrap()[..10].to_string();
    let at = dates.iter().position(|d| *d == first).unwrap();
    // The first return of the volatile regime is into day 1,500: the window starts at day 1,499 or a few
    // days either side.
    assert!((1_494..=1_506).contains(&at), "window starts at day {at}: {r:#}");
    assert_lineage(&show(&db, 1), "csv", &cambio::checkpoint::lineage::os_user());

    // --until: only the first 2,000 days.
    let db2 = dir.join("until.redb");
    let mut a = args(&db2);
    a.extend(["--until".to_string(), dates[1_999].clone()]);
    let r = retrain_ok(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r["source"]["after_until"], 500, "{r:#}");
    assert_eq!(r["source"]["used"]["last"].as_str().unwrap()[..10], dates[1_999]);
    assert_eq!(r["holdout"]["ticks"], 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn two_runs_write_identical_state_bytes() {
    let dir = temp_dir("retrain_determinism");
    let csv = dir.join("fix.csv");
    daily_csv(&csv, 800, 400, 3.0);
    let mut files = Vec::new();
    for k in 0..2 {
        let db = dir.join(format!("m{k}.redb"));
        retrain_ok(&[
            "--from",
            csv.to_str().unwrap(),
            "--pair",
            "USDMXN",
            "--db",
            db.to_str().unwrap(),
            "--min-window",
            "200",
        ]);
        let out = dir.join(format!("v{k}.ckpt"));
        let o = cambio(&[
            "models",
            "export",
            "--db",
            db.to_str().unwrap(),
            "USDMXN",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        files.push(std::fs::read(&out).unwrap());
    }
    assert!(!files[0].is_empty());
    assert!(files[0] == files[1], "the two runs wrote different states");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn from_a_lake_written_by_replay_archive() {
    let dir = temp_dir("retrain_lake");
    let scn = scenario(&dir, 2_000);
    let lake = dir.join("lake");
    let o = cambio(&[
        "replay",
        scn.to_str().unwrap(),
        "--archive",
        lake.to_str().unwrap(),
        "--report",
        dir.join("r.json").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let db = dir.join("m.redb");
    let r = retrain_ok(&[
        "--from",
        lake.to_str().unwrap(),
        "--pair",
        "USDMXN",
        "--db",
        db.to_str().unwrap(),
        "--min-window",
        "300",
    ]);
    assert_eq!(r["source"]["kind"], "archive", "{r:#}");
    assert!(r["source"]["note"].as_str().unwrap().contains("forecast rows"), "{r:#}");
    // Every accepted tick of the replay has a forecast row: nearly all 2,000.
    assert!(r["source"]["read"].as_u64().unwrap() > 1_900, "{r:#}");
    assert_lineage(&show(&db, 1), "archive", &cambio::checkpoint::lineage::os_user());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_banxico_fix_history_retrains_with_full_lineage() {
    let scn = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/usdmxn_banxico_fix");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/usdmxn/banxico_fix_SF43718_daily.csv");
    if !data.exists() {
        eprintln!("skipped: {} is not here", data.display());
        return;
    }
    let dir = temp_dir("retrain_fix");
    let db = dir.join("m.redb");
    let r = retrain_ok(&[
        "--from",
        scn.to_str().unwrap(),
        "--pair",
        "USDMXN",
        "--db",
        db.to_str().unwrap(),
        "--actor",
        "model-risk",
    ]);
    assert!(r["source"]["read"].as_u64().unwrap() > 8_500, "{r:#}");
    assert_eq!(r["version"], 1);
    assert!(r["window"]["span"]["ticks"].as_u64().unwrap() >= 500, "{r:#}");
    assert_lineage(&show(&db, 1), "scenario", "model-risk");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let dir = temp_dir("retrain_bad");
    let db = dir.join("m.redb");
    let dbs = db.to_str().unwrap();
    let csv = dir.join("t.csv");
    daily_csv(&csv, 300, 0, 1.0);
    let c = csv.to_str().unwrap();

    // No --pair: refused by the command line.
    let e = retrain_err(&["--from", c, "--db", dbs]);
    assert!(e.contains("--pair"), "{e}");
    // A pair that is not one.
    let e = retrain_err(&["--from", c, "--db", dbs, "--pair", "usd"]);
    assert!(e.contains("six uppercase letters"), "{e}");
    // A scenario of another pair.
    let scn = scenario(&dir, 500);
    let e = retrain_err(&["--from", scn.to_str().unwrap(), "--db", dbs, "--pair", "EURUSD"]);
    assert!(e.contains("not EURUSD"), "{e}");
    // Hold-outs of 0% and 100%.
    for h in ["0%", "100%", "1.5", "x"] {
        let e = retrain_err(&["--from", c, "--db", dbs, "--pair", "USDMXN", "--holdout", h]);
        assert!(e.contains("--holdout"), "{e}");
    }
    // Too few ticks for a window.
    let tiny = dir.join("tiny.csv");
    daily_csv(&tiny, 20, 0, 1.0);
    let e = retrain_err(&["--from", tiny.to_str().unwrap(), "--db", dbs, "--pair", "USDMXN"]);
    assert!(e.contains("the window needs at least 30"), "{e}");
    // --until before every tick: an empty window.
    let e = retrain_err(&["--from", c, "--db", dbs, "--pair", "USDMXN", "--until", "1999-01-01"]);
    assert!(e.contains("no USDMXN ticks up to --until"), "{e}");
    let e = retrain_err(&["--from", c, "--db", dbs, "--pair", "USDMXN", "--until", "yesterday"]);
    assert!(e.contains("--until yesterday"), "{e}");
    // Missing and unreadable inputs.
    let e = retrain_err(&["--from", "/nonexistent/ticks.csv", "--db", dbs, "--pair", "USDMXN"]);
    assert!(e.contains("no such file or folder"), "{e}");
    let empty = dir.join("not_a_scenario");
    std::fs::create_dir_all(&empty).unwrap();
    let e = retrain_err(&["--from", empty.to_str().unwrap(), "--db", dbs, "--pair", "USDMXN"]);
    assert!(e.contains("not_a_scenario"), "{e}");
    // Nothing was written by any of them.
    let o = cambio(&["models", "list", "--db", dbs, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap_or(Value::Null);
    assert!(v.as_array().is_none_or(|a| a.is_empty()), "{}", text(&o));
    let _ = std::fs::remove_dir_all(&dir);
}
