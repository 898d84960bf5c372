//! The training data of `cambio retrain`: one pair's ticks (and, from a scenario, its factors) read from
//! any of the four inputs cambio knows: a CSV or JSON-lines tick file and a scenario, through the same
//! opener as `cambio replay` ([`crate::replay::Input`]), or the Parquet data lake written by `cambio
//! archive` and `cambio replay --archive` (docs/lake.md). This is the module's only file I/O besides the
//! registry.
//!
//! Only ticks that could reach the model are kept: read as ticks (unreadable lines are counted, not
//! kept) and of the pair asked for. Whether each is accepted is the engine's validator's business when
//! the ticks are replayed, exactly as live.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::{Array, BinaryArray, Float64Array, StringArray, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::RetrainError;
use crate::engine::EngineConfig;
use crate::replay::source::Item;
use crate::replay::{InputKind, input_kind};
use crate::tick::{Factor, Pair, Source, Tick, parse_tick_detailed};
use crate::time::parse_ts_us;

/// What the data was read from (written into the version's lineage as `retrain:<kind>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The Parquet data lake (`kind=ticks`, or `kind=forecasts` for a lake written offline).
    Archive,
    /// A CSV tick file.
    Csv,
    /// A JSON-lines tick file.
    Jsonl,
    /// A scenario folder or `scenario.toml`.
    Scenario,
}

impl SourceKind {
    /// The name as written in reports and lineage.
    pub fn name(self) -> &'static str {
        match self {
            SourceKind::Archive => "archive",
            SourceKind::Csv => "csv",
            SourceKind::Jsonl => "jsonl",
            SourceKind::Scenario => "scenario",
        }
    }
}

/// One pair's data, in the order the model sees it.
#[derive(Debug, Clone)]
pub struct History {
    /// What it was read from.
    pub kind: SourceKind,
    /// The path given.
    pub path: PathBuf,
    /// The ticks of the pair, in input order.
    pub ticks: Vec<Tick>,
    /// Factor observations (scenarios only), sorted by time, each shifted by its publication lag.
    pub factors: Vec<Factor>,
    /// A scenario's own engine configuration (its `[config]`), the base of the calibration.
    pub config: Option<EngineConfig>,
    /// Records that were not kept: unreadable lines, other pairs' ticks, lake rows without a price.
    pub skipped: u64,
    /// For a lake: which rows the ticks came from (`received ticks`, or `forecasts` for an offline lake).
    pub note: Option<String>,
}

/// Reads `pair`'s history from `path` (a lake folder, a scenario, a CSV or a JSON-lines file).
///
/// # Errors
/// [`RetrainError::Input`] when the path is missing or cannot be read, [`RetrainError::Lake`] when a
/// Parquet file cannot be read, [`RetrainError::WrongPair`] when a scenario is for another pair.
pub fn load(path: &Path, pair: Pair) -> Result<History, RetrainError> {
    if !path.exists() {
        return Err(RetrainError::Input(format!(
            "{}: no such file or folder",
            path.display()
        )));
    }
    if is_lake(path) {
        return load_lake(path, pair);
    }
    let input = crate::replay::Input::open(path, Some(pair)).map_err(|e| RetrainError::Input(e.to_string()))?;
    let kind = match input_kind(path) {
        InputKind::Scenario => SourceKind::Scenario,
        InputKind::Csv => SourceKind::Csv,
        InputKind::Jsonl => SourceKind::Jsonl,
    };
    if let Some(p) = input.pair
        && p != pair
    {
        return Err(RetrainError::WrongPair {
            path: path.to_path_buf(),
            found: p,
            wanted: pair,
        });
    }
    let mut ticks = Vec::new();
    let mut factors = input.factors.clone();
    let mut skipped = 0u64;
    let items = input.items().map_err(|e| RetrainError::Input(e.to_string()))?;
    for item in items {
        match item {
            Item::Tick(t) if t.pair == pair => ticks.push(t),
            Item::Factor(f) => factors.push(f),
            _ => skipped += 1,
        }
    }
    factors.sort_by_key(|f| f.ts_us);
    Ok(History {
        kind,
        path: path.to_path_buf(),
        ticks,
        factors,
        config: input.scenario.map(|s| s.config),
        skipped,
        note: None,
    })
}

/// Whether `path` is a lake folder: it holds a `kind=ticks` or `kind=forecasts` partition.
fn is_lake(path: &Path) -> bool {
    path.is_dir() && (path.join("kind=ticks").is_dir() || path.join("kind=forecasts").is_dir())
}

/// The Parquet files under `dir`, sorted by path (partitions are dates, so this is time order).
fn parquet_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RetrainError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(RetrainError::Input(format!("{}: {e}", dir.display()))),
    };
    for entry in rd {
        let p = entry
            .map_err(|e| RetrainError::Input(format!("{}: {e}", dir.display())))?
            .path();
        if p.is_dir() {
            parquet_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    Ok(())
}

fn pq(path: &Path) -> impl FnOnce(parquet::errors::ParquetError) -> RetrainError + '_ {
    move |e| RetrainError::Lake(format!("{}: {e}", path.display()))
}

/// A lake's ticks of `pair`: the ticks as received (`kind=ticks`, status `received`, their payloads parsed
/// as serve parses them), in stream order. A lake written by `replay --archive` has no received ticks
/// (docs/lake.md); its forecast rows are then the accepted ticks (one per accepted tick, with its time,
/// mid and sequence).
fn load_lake(dir: &Path, pair: Pair) -> Result<History, RetrainError> {
    let key = format!("pair={}", pair.as_str());
    let mut files = Vec::new();
    parquet_files(&dir.join("kind=ticks").join(&key), &mut files)?;
    let mut rows: Vec<(u64, Tick)> = Vec::new();
    let mut skipped = 0u64;
    for f in &files {
        for batch in batches(f)? {
            let batch = batch?;
            let (Some(status), Some(payload), Some(seq)) = (
                column::<StringArray>(&batch, "status"),
                column::<BinaryArray>(&batch, "payload"),
                column::<UInt64Array>(&batch, "stream_seq"),
            ) else {
                return Err(RetrainError::Lake(format!(
                    "{}: not a ticks file of the lake (no status, payload or stream_seq column)",
                    f.display()
                )));
            };
            for i in 0..batch.num_rows() {
                if status.is_null(i) || status.value(i) != "received" {
                    continue;
                }
                match parse_tick_detailed(payload.value(i), Some(pair)) {
                    Ok(t) => rows.push((seq.value(i), t)),
                    Err(_) => skipped += 1,
                }
            }
        }
    }
    let note;
    if rows.is_empty() {
        note = "forecast rows (the lake holds no received ticks: written offline)";
        let mut files = Vec::new();
        parquet_files(&dir.join("kind=forecasts").join(&key), &mut files)?;
        let source = Source::new("lake").unwrap_or(Source::UNKNOWN);
        for f in &files {
            for batch in batches(f)? {
                let batch = batch?;
                let (Some(ts), Some(mid), Some(tick_seq), Some(seq)) = (
                    column::<StringArray>(&batch, "ts"),
                    column::<Float64Array>(&batch, "mid"),
                    column::<UInt64Array>(&batch, "tick_seq"),
                    column::<UInt64Array>(&batch, "stream_seq"),
                ) else {
                    return Err(RetrainError::Lake(format!(
                        "{}: not a forecasts file of the lake (no ts, mid, tick_seq or stream_seq column)",
                        f.display()
                    )));
                };
                for i in 0..batch.num_rows() {
                    let t = (!ts.is_null(i)).then(|| parse_ts_us(ts.value(i)).ok()).flatten();
                    let m = (!mid.is_null(i))
                        .then(|| mid.value(i))
                        .filter(|m| m.is_finite() && *m > 0.0);
                    match (t, m) {
                        (Some(ts_us), Some(m)) => rows.push((
                            seq.value(i),
                            Tick {
                                pair,
                                ts_us,
                                bid: None,
                                ask: None,
                                mid: Some(m),
                                source,
                                seq: (!tick_seq.is_null(i)).then(|| tick_seq.value(i)),
                                arrival_us: None,
                            },
                        )),
                        _ => skipped += 1,
                    }
                }
            }
        }
    } else {
        note = "received ticks";
    }
    // Stream order: the order serve applied them in (files are per date, a stream's sequences are global).
    rows.sort_by_key(|(seq, _)| *seq);
    Ok(History {
        kind: SourceKind::Archive,
        path: dir.to_path_buf(),
        ticks: rows.into_iter().map(|(_, t)| t).collect(),
        factors: Vec::new(),
        config: None,
        skipped,
        note: Some(note.to_string()),
    })
}

/// The record batches of one Parquet file of the lake, each read error naming the file.
fn batches(
    f: &Path,
) -> Result<impl Iterator<Item = Result<arrow_array::RecordBatch, RetrainError>> + '_, RetrainError> {
    let file = File::open(f).map_err(|e| RetrainError::Input(format!("{}: {e}", f.display())))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(pq(f))?
        .build()
        .map_err(pq(f))?;
    Ok(reader.map(move |b| b.map_err(|e| RetrainError::Lake(format!("{}: {e}", f.display())))))
}

fn column<'a, T: 'static>(batch: &'a arrow_array::RecordBatch, name: &str) -> Option<&'a T> {
    batch.column_by_name(name)?.as_any().downcast_ref::<T>()
}

/// The end of `--until`: a date (`2024-12-31`, that whole day included) or an RFC 3339 time (included).
///
/// # Errors
/// [`RetrainError::Usage`] when it is neither.
pub fn until_us(s: &str) -> Result<i64, RetrainError> {
    let bad = || RetrainError::Usage(format!("--until {s}: give a date (2024-12-31) or an RFC 3339 time"));
    if s.len() == 10 {
        let start = parse_ts_us(&format!("{s}T00:00:00Z")).map_err(|_| bad())?;
        return Ok(start + 86_400_000_000 - 1);
    }
    parse_ts_us(s).map_err(|_| bad())
}
