//! Input files turned into a stream of ticks and factors: CSV (auto-detected columns) and JSON lines.
//!
//! Files are read line by line with one reused buffer, so replaying ten million ticks uses the same
//! memory as replaying one million. A line that cannot be read is not an error: it becomes a
//! [`Item::Rejected`] with its reason and the raw text, which the engine quarantines and counts.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::quality::QuarantineReason;
use crate::tick::{Factor, Pair, Source, Tick, parse_factor, parse_tick};
use crate::time::parse_ts_us;

/// Why an input file could not be opened or understood (per-line problems are quarantined instead).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The CSV header has no recognised time column.
    #[error("{path}: no time column (one of ts, time_utc, timestamp, date, observation_date) in header `{header}`")]
    NoTimeColumn {
        /// The file.
        path: PathBuf,
        /// The header line.
        header: String,
    },
    /// The CSV header has neither bid+ask nor a single rate column.
    #[error("{path}: no price columns (bid+ask, or one rate column) in header `{header}`")]
    NoPriceColumn {
        /// The file.
        path: PathBuf,
        /// The header line.
        header: String,
    },
    /// The pair could not be determined (no `pair` column, no `--pair`, nothing in the file name).
    #[error("{path}: cannot tell the currency pair; pass --pair (e.g. --pair USDMXN)")]
    UnknownPair {
        /// The file.
        path: PathBuf,
    },
    /// The file is empty.
    #[error("{path}: empty file")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// One record of an input stream.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    /// A tick read from the file (not yet validated).
    Tick(Tick),
    /// A factor observation.
    Factor(Factor),
    /// A line that could not be read as a tick, with its reason and text.
    Rejected {
        /// Why it was rejected.
        reason: QuarantineReason,
        /// The pair it was meant for, when known.
        pair: Option<Pair>,
        /// Its timestamp, when readable.
        ts_us: Option<i64>,
        /// The raw line.
        raw: String,
    },
}

/// Where the columns of a CSV file are.
#[derive(Debug, Clone)]
struct CsvLayout {
    time: usize,
    bid: Option<usize>,
    ask: Option<usize>,
    rate: Option<usize>,
    pair: Option<usize>,
    source: Option<usize>,
    seq: Option<usize>,
    width: usize,
}

const TIME_COLUMNS: [&str; 6] = ["ts", "time_utc", "timestamp", "date", "observation_date", "time"];
const RATE_COLUMNS: [&str; 8] = ["mid", "rate", "close", "value", "valor", "price", "fix", "last"];
const IGNORED_COLUMNS: [&str; 6] = ["year", "month", "day", "open", "high", "low"];

impl CsvLayout {
    fn detect(header: &str) -> (Option<usize>, Self) {
        let cols: Vec<String> = header
            .split(',')
            .map(|c| c.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        let find = |names: &[&str]| cols.iter().position(|c| names.contains(&c.as_str()));
        let time = find(&TIME_COLUMNS);
        let bid = find(&["bid"]);
        let ask = find(&["ask", "offer"]);
        let pair = find(&["pair", "symbol"]);
        let source = find(&["source", "feed"]);
        let seq = find(&["seq", "sequence"]);
        let rate = find(&RATE_COLUMNS).or_else(|| {
            // One remaining column that is not a known non-price column: that is the rate.
            let others: Vec<usize> = (0..cols.len())
                .filter(|&i| {
                    Some(i) != time
                        && Some(i) != pair
                        && Some(i) != source
                        && Some(i) != seq
                        && !IGNORED_COLUMNS.contains(&cols[i].as_str())
                })
                .collect();
            (others.len() == 1).then(|| others[0])
        });
        (
            time,
            CsvLayout {
                time: time.unwrap_or(0),
                bid,
                ask,
                rate,
                pair,
                source,
                seq,
                width: cols.len(),
            },
        )
    }
}

/// Pair named in a file or column name (`usdmxn`, `eurusd_ticks`, `fix_mxn_per_usd` → USDMXN).
pub fn guess_pair(name: &str) -> Option<Pair> {
    let lower = name.to_ascii_lowercase();
    const KNOWN: [&str; 8] = [
        "usdmxn", "eurusd", "eurmxn", "gbpusd", "usdjpy", "usdcad", "usdbrl", "usdchf",
    ];
    if let Some(k) = KNOWN.iter().find(|k| lower.contains(*k)) {
        return Pair::parse(&k.to_ascii_uppercase());
    }
    if lower.contains("mxn_per_usd") || lower.contains("usd_mxn") {
        return Pair::parse("USDMXN");
    }
    None
}

/// Reads ticks from a CSV file whose layout is detected from its header.
pub struct CsvTicks {
    lines: Box<dyn BufRead>,
    layout: CsvLayout,
    pair: Option<Pair>,
    source: Source,
    buf: String,
    line_no: u64,
}

/// A cell that stands for "no value": empty, or the usual placeholders (`N/A`, FRED's `.`).
fn is_missing(cell: &str) -> bool {
    matches!(cell, "" | "." | "N/A" | "NA" | "NaN" | "nan" | "null" | "-")
}

impl CsvTicks {
    /// Opens `path`; `pair` overrides the pair (else a `pair` column, else the file or column name).
    ///
    /// # Errors
    /// [`SourceError`] when the file cannot be read or its header is not understood.
    pub fn open(path: &Path, pair: Option<Pair>) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        Self::from_reader(Box::new(BufReader::with_capacity(1 << 16, file)), path, pair)
    }

    /// Reads CSV from any buffered reader (the embedded demo data, tests).
    ///
    /// # Errors
    /// [`SourceError`] when the header is not understood.
    pub fn from_reader(mut lines: Box<dyn BufRead>, path: &Path, pair: Option<Pair>) -> Result<Self, SourceError> {
        let mut header = String::new();
        lines.read_line(&mut header).map_err(|source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let header = header.trim_start_matches('\u{feff}').trim_end().to_string();
        if header.is_empty() {
            return Err(SourceError::Empty {
                path: path.to_path_buf(),
            });
        }
        let (time, layout) = CsvLayout::detect(&header);
        if time.is_none() {
            return Err(SourceError::NoTimeColumn {
                path: path.to_path_buf(),
                header,
            });
        }
        if !(layout.bid.is_some() && layout.ask.is_some()) && layout.rate.is_none() {
            return Err(SourceError::NoPriceColumn {
                path: path.to_path_buf(),
                header,
            });
        }
        let from_name = || {
            let rate_name = layout.rate.and_then(|i| header.split(',').nth(i)).unwrap_or("");
            guess_pair(&path.to_string_lossy()).or_else(|| guess_pair(rate_name))
        };
        let pair = pair.or_else(from_name);
        if pair.is_none() && layout.pair.is_none() {
            return Err(SourceError::UnknownPair {
                path: path.to_path_buf(),
            });
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("file");
        let source =
            Source::new(&stem.chars().take(crate::tick::MAX_SOURCE_LEN).collect::<String>()).unwrap_or_default();
        Ok(CsvTicks {
            lines,
            layout,
            pair,
            source,
            buf: String::new(),
            line_no: 1,
        })
    }

    fn parse_line(&self, line: &str) -> Item {
        let l = &self.layout;
        let mut cells: [&str; 16] = [""; 16];
        let mut n = 0;
        for c in line.split(',') {
            if n < cells.len() {
                cells[n] = c.trim().trim_matches('"');
            }
            n += 1;
        }
        let reject = |reason, ts_us| Item::Rejected {
            reason,
            pair: self.pair,
            ts_us,
            raw: line.to_string(),
        };
        if n != l.width || n > cells.len() {
            return reject(QuarantineReason::Malformed, None);
        }
        let pair = match l.pair {
            Some(i) => match Pair::parse(cells[i]) {
                Some(p) => p,
                None => return reject(QuarantineReason::Malformed, None),
            },
            None => match self.pair {
                Some(p) => p,
                None => return reject(QuarantineReason::Malformed, None),
            },
        };
        if let (Some(i), Some(want)) = (l.pair, self.pair)
            && cells[i] != want.as_str()
        {
            return reject(QuarantineReason::PairMismatch, None);
        }
        let ts_us = match parse_ts_us(cells[l.time]) {
            Ok(t) => t,
            Err(_) => return reject(QuarantineReason::Malformed, None),
        };
        let num = |i: Option<usize>| -> Result<Option<f64>, ()> {
            match i {
                None => Ok(None),
                Some(i) if is_missing(cells[i]) => Ok(None),
                Some(i) => cells[i].parse::<f64>().map(Some).map_err(|_| ()),
            }
        };
        let (bid, ask, mid) = match (num(l.bid), num(l.ask), num(l.rate)) {
            (Ok(b), Ok(a), Ok(m)) if l.bid.is_some() && l.ask.is_some() => (b, a, m),
            (_, _, Ok(m)) if !(l.bid.is_some() && l.ask.is_some()) => (None, None, m),
            _ => return reject(QuarantineReason::Malformed, Some(ts_us)),
        };
        let source = match l.source {
            Some(i) => Source::new(cells[i]).unwrap_or(self.source),
            None => self.source,
        };
        let seq = l.seq.and_then(|i| cells[i].parse::<u64>().ok());
        Item::Tick(Tick {
            pair,
            ts_us,
            bid,
            ask,
            mid,
            source,
            seq,
            arrival_us: None,
        })
    }
}

impl Iterator for CsvTicks {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            self.buf.clear();
            match self.lines.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(_) => {
                    // Invalid UTF-8 or a read error on one line: report it and go on.
                    self.line_no += 1;
                    return Some(Item::Rejected {
                        reason: QuarantineReason::Malformed,
                        pair: self.pair,
                        ts_us: None,
                        raw: format!("<unreadable line {}>", self.line_no),
                    });
                }
            }
            self.line_no += 1;
            let line = self.buf.trim_end();
            if line.is_empty() {
                continue;
            }
            return Some(self.parse_line(line));
        }
    }
}

/// Reads ticks (and factors) from a JSON-lines file, one message of the wire contract per line.
pub struct JsonlTicks {
    lines: Box<dyn BufRead>,
    pair: Option<Pair>,
    buf: Vec<u8>,
}

impl JsonlTicks {
    /// Opens `path`; `pair`, when given, is the only pair accepted (others are pair mismatches).
    ///
    /// # Errors
    /// [`SourceError::Io`] when the file cannot be opened.
    pub fn open(path: &Path, pair: Option<Pair>) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::from_reader(
            Box::new(BufReader::with_capacity(1 << 16, file)),
            pair,
        ))
    }

    /// Reads JSON lines from any buffered reader.
    pub fn from_reader(lines: Box<dyn BufRead>, pair: Option<Pair>) -> Self {
        JsonlTicks {
            lines,
            pair,
            buf: Vec::with_capacity(256),
        }
    }
}

/// Reads one wire message: a tick, or a factor when it has `name` and `value` but no `pair`.
pub fn parse_message(payload: &[u8], pair: Option<Pair>) -> Item {
    match parse_tick(payload, pair) {
        Ok(t) => Item::Tick(t),
        Err(reason) => {
            if reason == QuarantineReason::Malformed
                && let Ok(f) = parse_factor(payload)
            {
                return Item::Factor(f);
            }
            Item::Rejected {
                reason,
                pair,
                ts_us: None,
                raw: String::from_utf8_lossy(payload).into_owned(),
            }
        }
    }
}

impl Iterator for JsonlTicks {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        loop {
            self.buf.clear();
            match self.lines.read_until(b'\n', &mut self.buf) {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
            let line = self.buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            return Some(parse_message(line, self.pair));
        }
    }
}

/// Reads a factor CSV (a time column and one value column), shifting each observation by `lag_us` so it is
/// joined only once it was published (monthly INPC is dated the 1st but published weeks later).
/// Missing cells are skipped: a factor keeps its last value.
///
/// # Errors
/// [`SourceError`] when the file cannot be read or has no time or value column.
pub fn read_factor_csv(path: &Path, name: &str, lag_us: i64) -> Result<Vec<Factor>, SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::new();
    File::open(path).map_err(io)?.read_to_string(&mut text).map_err(io)?;
    parse_factor_csv(&text, path, name, lag_us)
}

/// [`read_factor_csv`] on text already read: the decoder alone, public so the fuzz targets
/// (`tests/fuzz`) reach it without a file. `path` only names the file in errors.
///
/// # Errors
/// [`SourceError`] when the text has no header, or no time or value column.
pub fn parse_factor_csv(text: &str, path: &Path, name: &str, lag_us: i64) -> Result<Vec<Factor>, SourceError> {
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| SourceError::Empty {
        path: path.to_path_buf(),
    })?;
    let (time, layout) = CsvLayout::detect(header);
    let Some(time) = time else {
        return Err(SourceError::NoTimeColumn {
            path: path.to_path_buf(),
            header: header.into(),
        });
    };
    let Some(value) = layout.rate else {
        return Err(SourceError::NoPriceColumn {
            path: path.to_path_buf(),
            header: header.into(),
        });
    };
    let mut out = Vec::new();
    for line in lines {
        let cells: Vec<&str> = line.split(',').map(|c| c.trim()).collect();
        let (Some(t), Some(v)) = (cells.get(time), cells.get(value)) else {
            continue;
        };
        let (Ok(ts), Ok(v)) = (parse_ts_us(t), v.parse::<f64>()) else {
            continue;
        };
        if v.is_finite() {
            out.push(Factor {
                name: name.to_string(),
                ts_us: ts + lag_us,
                value: v,
                source: "file".into(),
            });
        }
    }
    out.sort_by_key(|f| f.ts_us);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn csv(text: &'static str, pair: Option<&str>) -> Result<Vec<Item>, SourceError> {
        let r = CsvTicks::from_reader(
            Box::new(Cursor::new(text)),
            Path::new("x.csv"),
            pair.and_then(Pair::parse),
        )?;
        Ok(r.collect())
    }

    #[test]
    fn detects_bid_ask_and_single_rate_layouts() {
        let items = csv(
            "time_utc,bid,ask\n2014-05-01T00:00:00.292Z,1.38676,1.38686\n",
            Some("EURUSD"),
        )
        .unwrap();
        let Item::Tick(t) = &items[0] else { panic!("{items:?}") };
        assert_eq!((t.bid, t.ask), (Some(1.38676), Some(1.38686)));
        let items = csv("date,fix_mxn_per_usd\n1991-11-12,3.0735\n1991-11-13,\n", None).unwrap();
        let Item::Tick(t) = &items[1] else { panic!("{items:?}") };
        assert_eq!(t.pair.as_str(), "USDMXN");
        assert_eq!(t.mid_price(), None, "empty cell is a missing value, not a crash");
        let items = csv(
            "timestamp,open,high,low,close\n2020-01-01 22:00:00+00:00,18.94,18.95,18.93,18.94\n",
            Some("USDMXN"),
        )
        .unwrap();
        let Item::Tick(t) = &items[0] else { panic!("{items:?}") };
        assert_eq!(t.mid, Some(18.94));
    }

    #[test]
    fn bad_lines_are_rejected_items() {
        let items = csv("date,usdmxn\nnot-a-date,1\n2020-01-01,abc\n2020-01-02,1,2\n", None).unwrap();
        assert_eq!(items.len(), 3);
        assert!(items.iter().all(|i| matches!(
            i,
            Item::Rejected {
                reason: QuarantineReason::Malformed,
                ..
            }
        )));
    }

    #[test]
    fn header_problems_are_errors() {
        assert!(matches!(
            csv("foo,bar\n", Some("USDMXN")),
            Err(SourceError::NoTimeColumn { .. })
        ));
        assert!(matches!(
            csv("date,a,b\n", Some("USDMXN")),
            Err(SourceError::NoPriceColumn { .. })
        ));
        assert!(matches!(
            csv("date,value\n", None),
            Err(SourceError::UnknownPair { .. })
        ));
        assert!(matches!(csv("", None), Err(SourceError::Empty { .. })));
    }

    #[test]
    fn jsonl_reads_ticks_factors_and_garbage() {
        let text = "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-19\",\"mid\":24.0}\n\n{\"name\":\"TIIE28\",\"ts\":\"2020-03-19\",\"value\":7.0}\ngarbage\n";
        let items: Vec<Item> = JsonlTicks::from_reader(Box::new(Cursor::new(text)), None).collect();
        assert!(matches!(items[0], Item::Tick(_)));
        assert!(matches!(items[1], Item::Factor(_)));
        assert!(matches!(
            items[2],
            Item::Rejected {
                reason: QuarantineReason::Malformed,
                ..
            }
        ));
    }
}
