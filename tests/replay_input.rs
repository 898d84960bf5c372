//! Odd and hostile input files through `cambio replay` (issue 11, cases 6, 9, 10 and 11): lines with no
//! end, huge lines, wide CSV files, several pairs, byte-order marks, bad values in either format. Nothing
//! panics, nothing is lost, memory stays bounded, and each quarantine says why.

use std::cell::RefCell;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::rc::Rc;

use cambio::engine::{EngineConfig, Output as EngineOutput};
use cambio::replay::source::{CsvTicks, JsonlTicks};
use cambio::replay::{self, Item, ReplayOptions};
use cambio::tick::Pair;
use serde_json::Value;

fn cambio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(args)
        .output()
        .expect("run cambio")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cambio-input-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tick(pair: &str, second: u32, mid: f64) -> String {
    format!(
        r#"{{"pair":"{pair}","ts":"2024-01-01T00:{:02}:{:02}Z","mid":{mid}}}"#,
        second / 60,
        second % 60
    )
}

/// Writes `n` copies of `byte` in chunks (the test never holds a 50 MB buffer either).
fn write_run(f: &mut impl Write, byte: u8, n: usize) {
    let chunk = vec![byte; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        f.write_all(&chunk[..k]).unwrap();
        left -= k;
    }
}

fn quarantines(out: &[Value]) -> Vec<&Value> {
    out.iter().filter(|v| v["type"] == "quarantined").collect()
}

/// Case 6: a 5 MB line between good ticks is one `oversized` quarantine, skipped without being held; the
/// good ticks around it are replayed. Before: it was read whole and quarantined as `malformed`, its 5 MB
/// copied into the output's `raw`.
#[test]
fn a_line_over_the_cap_is_oversized_and_the_rest_is_replayed() {
    let dir = scratch("oversized");
    let file = dir.join("ticks.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..3 {
        writeln!(f, "{}", tick("USDMXN", i, 17.0)).unwrap();
    }
    write_run(&mut f, b'x', 5_000_000);
    writeln!(f).unwrap();
    for i in 3..6 {
        writeln!(f, "{}", tick("USDMXN", i, 17.0 + f64::from(i) * 0.001)).unwrap();
    }
    drop(f);
    let (out, report) = (dir.join("out.jsonl"), dir.join("report.json"));
    let run = cambio(&[
        "replay",
        file.to_str().unwrap(),
        "--no-timing",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let r = read_json(&report);
    assert_eq!((r["ticks"].as_u64(), r["accepted"].as_u64()), (Some(7), Some(6)), "{r}");
    assert_eq!(r["quarantined"], serde_json::json!({"oversized": 1}));
    let out = read_jsonl(&out);
    let q = quarantines(&out);
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["reason"], "oversized");
    assert_eq!(q[0]["pair"], Value::Null);
    let raw = q[0]["raw"].as_str().unwrap();
    assert!(raw.len() < 17_000, "raw is cut: {} bytes", raw.len());
    assert!(
        raw.ends_with("[truncated: 5000000 bytes in all]"),
        "{}",
        &raw[raw.len() - 60..]
    );
    assert!(q[0]["detail"].as_str().unwrap().contains("5000000 bytes"), "{}", q[0]);
    assert_eq!(out.iter().filter(|v| v["type"] == "forecast").count(), 6);
}

/// Case 6: a file of 50 MB with no line end is read in bounded memory (the line is counted, not held):
/// one `oversized` quarantine and a peak resident size far below the file's. Before: the line buffer,
/// its text and its copy in the quarantine each held the 50 MB.
#[test]
fn a_file_with_no_line_end_is_read_in_bounded_memory() {
    let dir = scratch("zeros");
    let file = dir.join("zeros.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    write_run(&mut f, 0, 50_000_000);
    drop(f);
    let (out, report) = (dir.join("out.jsonl"), dir.join("report.json"));
    let run = cambio(&[
        "replay",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let r = read_json(&report);
    assert_eq!(r["quarantined"], serde_json::json!({"oversized": 1}), "{r}");
    let peak = r["peak_rss_kib"].as_u64().unwrap();
    assert!(
        peak > 0 && peak < 32 * 1024,
        "peak resident memory {peak} KiB for a 50 MB line"
    );
    let out = read_jsonl(&out);
    assert_eq!(out.len(), 1);
    assert!(
        out[0]["raw"]
            .as_str()
            .unwrap()
            .ends_with("[truncated: 50000000 bytes in all]")
    );
}

/// Case 6: `cambio replay /dev/zero` (a CSV by its first byte, whose header never ends) stops at once with
/// a clear error, under a 1 GB address-space limit. Before: it grew its header buffer until the
/// allocation failed and the process aborted.
#[test]
fn replay_of_dev_zero_stops_with_an_error_in_bounded_memory() {
    if !Path::new("/dev/zero").exists() {
        return;
    }
    let run = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 1000000 && exec {} replay /dev/zero",
            env!("CARGO_BIN_EXE_cambio")
        ))
        .output()
        .unwrap();
    let stderr = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("header line is longer than 1048576 bytes"), "{stderr}");
}

/// Case 6: a 50 MB malformed line under a raised cap is quarantined with its `raw` cut as serve cuts it
/// (16 KiB and its length). Before: the whole line was copied into the output.
#[test]
fn a_huge_malformed_line_is_cut_in_the_output() {
    let dir = scratch("huge-malformed");
    let file = dir.join("ticks.jsonl");
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, "{}", tick("USDMXN", 0, 17.0)).unwrap();
    let start = br#"{"pair":"USDMXN","junk":""#;
    f.write_all(start).unwrap();
    write_run(&mut f, b'a', 50_000_000);
    writeln!(f).unwrap();
    writeln!(f, "{}", tick("USDMXN", 1, 17.0)).unwrap();
    drop(f);
    let out = dir.join("out.jsonl");
    let run = cambio(&[
        "replay",
        file.to_str().unwrap(),
        "--no-timing",
        "--max-line-bytes",
        "67108864",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = read_jsonl(&out);
    let q = quarantines(&out);
    assert_eq!(q.len(), 1);
    assert_eq!(
        (&q[0]["reason"], &q[0]["pair"]),
        (&Value::from("malformed"), &Value::from("USDMXN"))
    );
    let raw = q[0]["raw"].as_str().unwrap();
    assert!(raw.len() < 17_000, "raw is cut: {} bytes", raw.len());
    let note = format!("[truncated: {} bytes in all]", start.len() + 50_000_000);
    assert!(raw.ends_with(&note), "{}", &raw[raw.len() - 60..]);
    assert!(
        q[0]["detail"].as_str().unwrap().contains("over the 4096-byte limit"),
        "{}",
        q[0]["detail"]
    );
}

/// Case 9: a CSV file with more than 16 columns (unknown ones among them, the known ones past the 16th) is
/// read. Before: every row was quarantined as `malformed` and the exit status was 0.
#[test]
fn a_csv_with_many_columns_is_read() {
    let dir = scratch("wide");
    let file = dir.join("wide.csv");
    let extra: Vec<String> = (0..18).map(|i| format!("extra_{i}")).collect();
    let mut f = std::fs::File::create(&file).unwrap();
    writeln!(f, "{},time_utc,pair,bid,ask,source,seq", extra.join(",")).unwrap();
    for i in 0..50 {
        let cells: Vec<String> = (0..18).map(|c| format!("v{c}")).collect();
        let mid = 17.0 + f64::from(i) * 0.001;
        writeln!(
            f,
            "{},2024-01-01T00:00:{i:02}Z,USDMXN,{:.4},{:.4},feed,{}",
            cells.join(","),
            mid - 0.001,
            mid + 0.001,
            i + 1
        )
        .unwrap();
    }
    drop(f);
    let report = dir.join("report.json");
    let run = cambio(&[
        "replay",
        file.to_str().unwrap(),
        "--no-timing",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let r = read_json(&report);
    assert_eq!(
        (r["ticks"].as_u64(), r["accepted"].as_u64()),
        (Some(50), Some(50)),
        "{r}"
    );
    // A row with a cell too many or too few is still refused, saying so.
    let items: Vec<Item> = CsvTicks::from_reader(
        Box::new(Cursor::new(format!(
            "{},ts,mid\n{},2024-01-01,17,x\n",
            extra.join(","),
            extra.join(",")
        ))),
        Path::new("x.csv"),
        Pair::parse("USDMXN"),
    )
    .unwrap()
    .collect();
    assert!(
        matches!(&items[0], Item::Rejected { detail, .. } if detail == "21 cells where the header has 20"),
        "{items:?}"
    );
}

/// Case 10: unreadable lines before the first tick are written (with no pair), and a file with several
/// pairs is summarised pair by pair. Before: those lines were counted but missing from `--out`, and only
/// the alphabetically first pair was summarised.
#[test]
fn every_quarantine_is_written_and_every_pair_summarised() {
    let dir = scratch("pairs");
    let file = dir.join("ticks.jsonl");
    let mut lines = vec![
        "garbage".to_string(),
        r#"{"pair":"USDMXN","ts":"yesterday","mid":17}"#.to_string(),
    ];
    for i in 0..40 {
        lines.push(tick("USDMXN", i, 17.0 + f64::from(i) * 0.001));
        lines.push(tick("EURUSD", i, 1.08 + f64::from(i) * 0.0001));
    }
    lines.push("more garbage".to_string());
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let (out, report) = (dir.join("out.jsonl"), dir.join("report.json"));
    let run = cambio(&[
        "replay",
        file.to_str().unwrap(),
        "--no-timing",
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    let stdout = text(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", text(&run.stderr));
    let r = read_json(&report);
    let counted: u64 = r["quarantined"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    let out = read_jsonl(&out);
    let q = quarantines(&out);
    assert_eq!(counted, 3, "{r}");
    assert_eq!(q.len() as u64, counted, "every quarantine counted is written: {q:?}");
    assert_eq!((&q[0]["pair"], &q[0]["raw"]), (&Value::Null, &Value::from("garbage")));
    assert_eq!(q[1]["pair"], Value::Null);
    assert!(q[1]["detail"].as_str().unwrap().contains("yesterday"), "{}", q[1]);
    // The later one counts against the first pair, as before.
    assert_eq!(q[2]["pair"], "EURUSD");
    assert_eq!(r["pairs"].as_array().unwrap().len(), 2);
    for (pair, ticks) in [("EURUSD", 41), ("USDMXN", 40)] {
        let section = stdout
            .split(&format!("-- {pair}\n"))
            .nth(1)
            .unwrap_or_else(|| panic!("no section for {pair}:\n{stdout}"));
        assert!(
            section.starts_with(&format!("ticks {ticks}  accepted 40")),
            "{pair}:\n{stdout}"
        );
        assert!(section.contains("rw_rmse"), "{pair} has its metrics table:\n{stdout}");
    }
}

/// What the pipeline made of each item: the quarantine reason, or `accepted`.
fn outcomes(items: impl Iterator<Item = Item>) -> Vec<String> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let sink = seen.clone();
    let opts = ReplayOptions {
        pair: Pair::parse("USDMXN"),
        observer: Some(Box::new(move |o: &EngineOutput| match o {
            EngineOutput::Quarantined(q) => sink.borrow_mut().push(q.reason.name().to_string()),
            EngineOutput::Forecast(_) => sink.borrow_mut().push("accepted".to_string()),
            _ => {}
        })),
        ..Default::default()
    };
    replay::run("table", items, Vec::new(), &EngineConfig::default(), opts).unwrap();
    seen.take()
}

fn csv_outcome(ts: &str, cell: &str) -> String {
    let text = format!("ts,mid\n{ts},{cell}\n");
    let items = CsvTicks::from_reader(Box::new(Cursor::new(text)), Path::new("x.csv"), Pair::parse("USDMXN")).unwrap();
    outcomes(items).join(",")
}

fn json_outcome(ts: &str, value: &str) -> String {
    let text = format!(r#"{{"pair":"USDMXN","ts":"{ts}","mid":{value}}}"#);
    outcomes(JsonlTicks::from_reader(
        Box::new(Cursor::new(text)),
        Pair::parse("USDMXN"),
    ))
    .join(",")
}

/// Case 11: the same bad value gets the same reason in CSV and in JSON, as a string and, where JSON can
/// write it, as a bare value. Before: `1e400` was `malformed` in JSON and `non_finite_price` in CSV, `NaN`
/// a missing value in CSV and non-finite in JSON, an empty string malformed in JSON and missing in CSV.
#[test]
fn bad_values_get_the_same_reason_in_csv_and_json() {
    const TS: &str = "2024-01-01T00:00:00Z";
    let table: &[(&str, Option<&str>, &str)] = &[
        ("17.25", Some("17.25"), "accepted"),
        ("1e400", Some("1e400"), "non_finite_price"),
        ("-1e400", Some("-1e400"), "non_finite_price"),
        ("NaN", Some("NaN"), "non_finite_price"),
        ("nan", None, "non_finite_price"),
        ("Infinity", Some("Infinity"), "non_finite_price"),
        ("-Infinity", Some("-Infinity"), "non_finite_price"),
        ("inf", None, "non_finite_price"),
        ("0", Some("0"), "non_positive_price"),
        ("-1.5", Some("-1.5"), "non_positive_price"),
        ("1e-400", Some("1e-400"), "non_positive_price"),
        ("1e300", Some("1e300"), "price_out_of_range"),
        ("", Some("null"), "missing_value"),
        ("N/A", None, "missing_value"),
        (".", None, "missing_value"),
        ("abc", None, "malformed"),
        ("0x10", None, "malformed"),
        ("1.5.2", None, "malformed"),
        ("17 25", None, "malformed"),
    ];
    for &(text, bare, want) in table {
        assert_eq!(csv_outcome(TS, text), want, "CSV cell `{text}`");
        assert_eq!(json_outcome(TS, &format!("\"{text}\"")), want, "JSON string \"{text}\"");
        if let Some(bare) = bare {
            assert_eq!(json_outcome(TS, bare), want, "JSON bare {bare}");
        }
    }
    // Second 60 is refused in both, except as a leap second.
    for (ts, want) in [
        ("2024-01-01T10:05:60Z", "malformed"),
        ("2016-12-31T23:59:60Z", "accepted"),
        ("2024-01-01T10:05:59Z", "accepted"),
    ] {
        assert_eq!(csv_outcome(ts, "17.25"), want, "CSV {ts}");
        assert_eq!(json_outcome(ts, "17.25"), want, "JSON {ts}");
    }
}

/// Case 11: a UTF-8 byte-order mark at the start of a file is skipped: JSON lines, a CSV header, and a file
/// without an extension recognised as JSON lines by its first byte. Before: the first JSON line was
/// malformed, and the extension-less file was taken for a CSV.
#[test]
fn a_byte_order_mark_is_skipped() {
    let dir = scratch("bom");
    let good = format!("{}\n{}\n", tick("USDMXN", 0, 17.0), tick("USDMXN", 1, 17.001));
    let csv = "\u{feff}ts,pair,mid\n2024-01-01T00:00:00Z,USDMXN,17\n2024-01-01T00:00:01Z,USDMXN,17.001\n";
    for (name, body) in [
        ("bom.jsonl", format!("\u{feff}{good}")),
        ("bom", format!("\u{feff}{good}")),
        ("bom.csv", csv.to_string()),
    ] {
        let file = dir.join(name);
        std::fs::write(&file, body).unwrap();
        let report = dir.join(format!("{name}.report.json"));
        let run = cambio(&[
            "replay",
            file.to_str().unwrap(),
            "--no-timing",
            "--report",
            report.to_str().unwrap(),
        ]);
        assert!(run.status.success(), "{name}: {}", text(&run.stderr));
        let r = read_json(&report);
        assert_eq!(
            (r["ticks"].as_u64(), r["accepted"].as_u64()),
            (Some(2), Some(2)),
            "{name}: {r}"
        );
    }
}

/// Case 11: every tick quarantine says why, naming the field, its value and what was expected, in the
/// same words for a JSON line and a CSV row.
#[test]
fn quarantines_say_why() {
    let dir = scratch("detail");
    let file = dir.join("ticks.jsonl");
    let lines = [
        tick("USDMXN", 0, 17.0),
        r#"{"pair":"USDMXN","ts":"2024-01-01T00:00:01Z","bid":17.2,"ask":17.1}"#.to_string(),
        r#"{"pair":"USDMXN","ts":"2024-01-01T00:00:02Z","mid":"abc"}"#.to_string(),
        r#"{"pair":"EURUSD","ts":"2024-01-01T00:00:03Z","mid":1.08}"#.to_string(),
        r#"{"pair":"USDMXN","ts":"2024-01-01T10:05:60Z","mid":17}"#.to_string(),
        r#"{"pair":"USDMXN","ts":"2024-01-01T00:00:05Z","mid":-3}"#.to_string(),
        r#"{"pair":"USDMXN","ts":"2024-01-01T00:00:06Z","mid":17,"seq":-1}"#.to_string(),
    ];
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = dir.join("out.jsonl");
    let run = cambio(&[
        "replay",
        file.to_str().unwrap(),
        "--pair",
        "USDMXN",
        "--no-timing",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = read_jsonl(&out);
    let details: Vec<(String, String)> = quarantines(&out)
        .iter()
        .map(|q| {
            (
                q["reason"].as_str().unwrap().to_string(),
                q["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        ("crossed_quote", "bid 17.2 is above ask 17.1"),
        ("malformed", "mid `abc` is not a number"),
        ("pair_mismatch", "pair EURUSD where USDMXN was expected"),
        (
            "malformed",
            "ts: timestamp `2024-01-01T10:05:60Z` has second 60, which only a leap second at 23:59:60 UTC has",
        ),
        ("non_positive_price", "mid -3 is not above zero"),
        (
            "malformed",
            "not a JSON tick object with pair, ts and prices: invalid value",
        ),
    ];
    assert_eq!(details.len(), expected.len(), "{details:?}");
    for ((reason, detail), (want_reason, want_detail)) in details.iter().zip(expected) {
        assert_eq!(reason, want_reason, "{detail}");
        assert!(
            detail.starts_with(want_detail),
            "{detail:?} should start with {want_detail:?}"
        );
    }
    // The same bad price in a CSV row reads the same.
    let items: Vec<Item> = CsvTicks::from_reader(
        Box::new(Cursor::new("ts,mid\n2024-01-01,abc\n2024-01-02,17,3\n2024-13-01,17\n")),
        Path::new("x.csv"),
        Pair::parse("USDMXN"),
    )
    .unwrap()
    .collect();
    let details: Vec<&str> = items
        .iter()
        .filter_map(|i| match i {
            Item::Rejected { detail, .. } => Some(detail.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        details,
        [
            "mid `abc` is not a number",
            "3 cells where the header has 2",
            "ts: timestamp `2024-13-01` has a field out of range"
        ]
    );
}
