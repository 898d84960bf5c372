//! The `cambio` binary as a user runs it: the demo, replay of files and scenarios, exit codes, and
//! byte-identical reports for the same input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn cambio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(args)
        .output()
        .expect("run cambio")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cambio-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A copy in `dir` of a registry file written by an earlier serve (a copy: redb may write to it).
fn registry_copy(dir: &Path) -> PathBuf {
    let db = dir.join("registry.redb");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry/pre_lineage.redb"),
        &db,
    )
    .unwrap();
    db
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn demo_replays_the_embedded_history_and_summarises() {
    let out = cambio(&["demo"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}\n{}", stdout, text(&out.stderr));
    // Alarm lines start with their date: `2008-10-08  ALARM level_cusum on residual (...)`.
    let alarm_dates: Vec<&str> = stdout
        .lines()
        .filter_map(|l| {
            let (date, rest) = l.split_once("  ")?;
            rest.starts_with("ALARM").then_some(date)
        })
        .collect();
    let in_window = |from: &str, to: &str| alarm_dates.iter().any(|d| (from..=to).contains(d));
    // The 2008 crisis (Lehman, September 2008, to the peso's low in March 2009) and the 2020 one (COVID,
    // late February to May 2020) each raise an alarm inside their window.
    assert!(
        in_window("2008-09-01", "2009-03-31"),
        "an alarm in the 2008 crisis; alarms on {alarm_dates:?}:\n{stdout}"
    );
    assert!(
        in_window("2020-02-20", "2020-05-31"),
        "an alarm in the 2020 crisis; alarms on {alarm_dates:?}:\n{stdout}"
    );
    // Alarms are rare events over 19 years of daily rates (9 alarm lines when this was written), not noise.
    assert!(
        alarm_dates.len() <= 14,
        "{} alarm lines over the history: {alarm_dates:?}",
        alarm_dates.len()
    );
    assert!(stdout.contains("rw_rmse"), "a summary table is printed:\n{stdout}");
    assert!(
        stdout.starts_with("cambio demo: USD/MXN daily, ECB reference rates 2008-01-02"),
        "{stdout}"
    );
    assert!(!stdout.contains("FAIL"), "the demo's expectations hold:\n{stdout}");
}

#[test]
fn replay_reports_are_byte_identical_for_the_same_input() {
    let dir = scratch("determinism");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/vol_regime");
    let (r1, r2) = (dir.join("r1.json"), dir.join("r2.json"));
    let (o1, o2) = (dir.join("o1.jsonl"), dir.join("o2.jsonl"));
    for (r, o) in [(&r1, &o1), (&r2, &o2)] {
        let out = cambio(&[
            "replay",
            scenario.to_str().unwrap(),
            "--no-timing",
            "--report",
            r.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let (a, b) = (std::fs::read(&r1).unwrap(), std::fs::read(&r2).unwrap());
    assert!(a.len() > 1000);
    assert_eq!(a, b, "reports differ");
    let (a, b) = (std::fs::read(&o1).unwrap(), std::fs::read(&o2).unwrap());
    assert!(a.len() > 1_000_000, "every forecast was written");
    assert_eq!(a, b, "outputs differ");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&r1).unwrap()).unwrap();
    for key in [
        "ticks",
        "accepted",
        "quarantined",
        "horizons",
        "alarms",
        "quality",
        "ticks_per_sec",
    ] {
        assert!(report.get(key).is_some(), "report has {key}");
    }
    for key in [
        "horizon",
        "n",
        "mae",
        "rmse",
        "rw_rmse",
        "coverage80",
        "coverage95",
        "winkler95",
    ] {
        assert!(report["horizons"][0].get(key).is_some(), "horizon has {key}");
    }
    for key in ["detector", "signal", "ts"] {
        assert!(report["alarms"][0].get(key).is_some(), "alarm has {key}");
    }
}

#[test]
fn replay_of_a_csv_with_missing_cells_and_garbage_counts_them() {
    let dir = scratch("csv");
    let csv = dir.join("usdmxn.csv");
    let mut body = String::from("date,usdmxn\n");
    for d in 1..=28 {
        body.push_str(&format!("2020-02-{d:02},{}\n", 18.5 + d as f64 * 0.01));
    }
    body.push_str("2020-03-01,\n2020-03-02,not-a-number\n2020-03-03,18.9\n");
    std::fs::write(&csv, body).unwrap();
    let report = dir.join("r.json");
    let out = cambio(&["replay", csv.to_str().unwrap(), "--report", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(r["ticks"], 31);
    assert_eq!(r["quarantined"]["missing_value"], 1);
    assert_eq!(r["quarantined"]["malformed"], 1);
    assert_eq!(r["accepted"], 29);
}

#[test]
fn a_failed_expectation_exits_1_and_bad_input_exits_2() {
    let dir = scratch("exit");
    std::fs::write(
        dir.join("scenario.toml"),
        "name = \"impossible\"\npair = \"USDMXN\"\n[synthetic]\nseed = 1\nticks = 500\n\
         [[expect]]\nkind = \"accepted_at_least\"\ncount = 1000\n",
    )
    .unwrap();
    let out = cambio(&["replay", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("FAIL"));

    let out = cambio(&["replay", dir.join("missing.csv").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("missing.csv"));

    std::fs::write(dir.join("nopair.csv"), "date,value\n2020-01-01,1\n").unwrap();
    let out = cambio(&["replay", dir.join("nopair.csv").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--pair"), "{}", text(&out.stderr));
    let out = cambio(&["replay", dir.join("nopair.csv").to_str().unwrap(), "--pair", "USDMXN"]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    std::fs::write(
        dir.join("bad.toml"),
        "name = \"x\"\npair = \"USDMXN\"\nunknown_key = 1\n",
    )
    .unwrap();
    let out = cambio(&["replay", dir.join("bad.toml").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("unknown"), "{}", text(&out.stderr));
}

fn synthetic_scenario(dir: &Path, ticks: u64) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("scenario.toml"),
        format!(
            "name = \"memory {ticks}\"\npair = \"USDMXN\"\n[synthetic]\nseed = 3\nticks = {ticks}\ninterval_ms = 100\n\
             [config]\nhorizons = [\"1step\", \"10step\", \"1m\", \"1h\"]\n\
             [[expect]]\nkind = \"accepted_at_least\"\ncount = 1\n"
        ),
    )
    .unwrap();
}

fn peak_rss(dir: &Path) -> u64 {
    let report = dir.join("r.json");
    let out = cambio(&["replay", dir.to_str().unwrap(), "--report", report.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    r["peak_rss_kib"].as_u64().unwrap()
}

/// Memory is bounded: windows and sketches, no history that grows with the stream. Replaying ten times
/// more ticks (10,000,000 against 1,000,000, with a 1h horizon whose pending forecasts would otherwise
/// pile up) must not use more memory.
#[test]
fn replaying_ten_million_ticks_uses_no_more_memory_than_one_million() {
    if !Path::new("/proc/self/status").exists() {
        eprintln!("no /proc: peak memory cannot be read on this platform");
        return;
    }
    let dir = scratch("memory");
    let (small, large) = (dir.join("1m"), dir.join("10m"));
    synthetic_scenario(&small, 1_000_000);
    synthetic_scenario(&large, 10_000_000);
    let (a, b) = (peak_rss(&small), peak_rss(&large));
    eprintln!("peak RSS: 1,000,000 ticks {a} KiB, 10,000,000 ticks {b} KiB");
    assert!(a > 0 && b > 0);
    // Allow 512 KiB of allocator noise; growth with the stream would be tens of megabytes.
    assert!(b <= a + 512, "10M ticks peaked at {b} KiB, 1M ticks at {a} KiB");
}

/// What people read has no Rust debug text: quarantines by reason, `n/a` for a horizon with nothing
/// scored (not NaN), aligned columns, and expectations in words.
#[test]
fn the_summary_is_written_for_people() {
    let dir = scratch("summary");
    let csv = dir.join("t.csv");
    std::fs::write(
        &csv,
        "date,usdmxn\n2020-02-03,18.5\n2020-02-04,18.6\n2020-02-05,\n2020-02-06,x\n2020-02-07,18.7\n",
    )
    .unwrap();
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "[engine]\nhorizons = [\"1step\", \"1w\"]\n").unwrap();
    let out = cambio(&[
        "replay",
        csv.to_str().unwrap(),
        "--pair",
        "USDMXN",
        "--config",
        cfg.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("quarantined 2 (malformed=1, missing_value=1)"),
        "{stdout}"
    );
    let header = stdout.lines().find(|l| l.starts_with("horizon")).unwrap();
    let week = stdout.lines().find(|l| l.starts_with("1w")).unwrap();
    assert_eq!(week.matches("n/a").count(), 7, "{stdout}");
    assert_eq!(header.len(), week.len(), "the columns align:\n{stdout}");
    assert!(stdout.contains("quality ok"), "{stdout}");
    for debug in ["NaN", "{", "Some(", "quality Ok"] {
        assert!(!stdout.contains(debug), "{debug:?} in\n{stdout}");
    }

    let dir = scratch("summary-expect");
    std::fs::write(
        dir.join("scenario.toml"),
        "name = \"words\"\npair = \"USDMXN\"\n[synthetic]\nseed = 1\nticks = 500\n\
         [[expect]]\nkind = \"accepted_at_least\"\ncount = 1000\n\
         [[expect]]\nkind = \"alarm_between\"\nfrom = \"2020-01-01\"\nto = \"2020-01-02\"\nsignal = \"residual\"\n",
    )
    .unwrap();
    let out = cambio(&["replay", dir.to_str().unwrap()]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAIL at least 1000 accepted: 500 accepted"), "{stdout}");
    assert!(
        stdout.contains("an alarm on residual between 2020-01-01 and 2020-01-02"),
        "{stdout}"
    );
    assert!(!stdout.contains('{') && !stdout.contains("None"), "{stdout}");
}

/// `cambio demo | head -1`: the reader closes the pipe after one line; cambio stops quietly (no
/// `println!` panic, exit 101) with its usual status.
#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .arg("demo")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cambio demo");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("cambio demo"), "{first}");
    // The reader is dropped here: every later write of the demo meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("error"), "{stderr}");

    // Closed before the first write, and a command that fails its expectation: still its usual status.
    let dir = scratch("pipe");
    std::fs::write(
        dir.join("scenario.toml"),
        "name = \"impossible\"\npair = \"USDMXN\"\n[synthetic]\nseed = 1\nticks = 500\n\
         [[expect]]\nkind = \"accepted_at_least\"\ncount = 1000\n",
    )
    .unwrap();
    // `cambio models list | true`, on a registry file written by an earlier serve.
    let db = registry_copy(&dir);
    let db = db.to_str().unwrap();
    for (args, code) in [
        (vec!["demo"], 0),
        (vec!["replay", dir.to_str().unwrap()], 1),
        (vec!["models", "list", "--db", db], 0),
        (vec!["models", "list", "--json", "--db", db], 0),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run cambio");
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `cambio replay … --out /dev/stdout | head -1`: the outputs file is the closed pipe; the replay ends
/// quietly with its usual status, and `--out /dev/full` is a clear error.
#[test]
fn replay_outputs_into_a_closed_pipe_end_quietly() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/level_shift");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .arg("replay")
        .arg(&scenario)
        .args(["--out", "/dev/stdout"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cambio replay");
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.starts_with("{\"type\":\"forecast\""), "{first}");
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("error"), "{stderr}");

    let out = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .arg("replay")
        .arg(&scenario)
        .args(["--out", "/dev/full"])
        .output()
        .expect("run cambio replay");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: writing outputs") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// `cambio demo > /dev/full` and `cambio models list > /dev/full`: a failed write is an error (exit 2, one `error:` line), not a panic and not a
/// silent success.
#[cfg(target_os = "linux")]
#[test]
fn a_failed_write_is_an_error() {
    let dir = scratch("full");
    let db = registry_copy(&dir);
    let db = db.to_str().unwrap();
    for args in [vec!["demo"], vec!["models", "list", "--db", db]] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args(&args)
            .stdout(full)
            .output()
            .expect("run cambio");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: writing to standard output:"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// A replay that ends with quality `fail` says which dimension failed, its score and the flag behind it
/// (issue 12, point 6): on the Banxico FIX scenario the Fed funds file ends in March 2023, so the model's
/// foreign rate goes stale (`stale_factor`) and timeliness fails; the summary's quality line names all
/// three, with the score the report holds.
#[test]
fn the_summary_names_the_failing_quality_dimension() {
    let dir = scratch("banxico-quality");
    let report = dir.join("report.json");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/usdmxn_banxico_fix");
    let out = cambio(&[
        "replay",
        scenario.to_str().unwrap(),
        "--no-timing",
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(v["quality"]["overall"], "fail", "{stdout}");
    let timeliness = v["quality"]["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "timeliness")
        .expect("a timeliness dimension");
    assert_eq!(timeliness["status"], "fail");
    let score = timeliness["score"].as_f64().unwrap();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("quality "))
        .unwrap_or_else(|| panic!("no quality line in\n{stdout}"));
    let want = format!("quality fail (timeliness fail, score {score:.3}");
    assert!(line.starts_with(&want), "{line:?} does not start with {want:?}");
    assert!(
        line.contains("stale_factor"),
        "the flag behind the failure is named: {line}"
    );
    assert!(
        stdout.contains("PASS timeliness status fail or worse at some point"),
        "the scenario pins the verdict:\n{stdout}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
