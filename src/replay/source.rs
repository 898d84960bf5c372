//! Input files turned into a stream of ticks and factors: CSV (auto-detected columns) and JSON lines.
//!
//! Files are read line by line with one reused buffer of at most `max_line_bytes`, so replaying ten million
//! ticks uses the same memory as replaying one million, and a file with no line end at all (`/dev/zero`)
//! cannot make it grow. A line that cannot be read is not an error: it becomes an [`Item::Rejected`] with
//! its reason, what was wrong and the raw text, which the engine quarantines and counts; a line longer
//! than the cap becomes an [`Item::Oversized`], skipped to its end without being held.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::pipeline::{MAX_RAW_BYTES, raw_text, raw_text_of_prefix};
use crate::quality::QuarantineReason;
use crate::tick::{Factor, Pair, PriceText, Source, Tick, detail, parse_factor, parse_tick_detailed, read_price_text};
use crate::time::parse_ts_us;

/// Longest line read by default (`replay --max-line-bytes`): a tick is a few hundred bytes, so a line of a
/// mebibyte is not one, and holding it whole is all a hostile file could make replay do.
pub const DEFAULT_MAX_LINE_BYTES: usize = 1 << 20;

/// The UTF-8 byte-order mark some editors and spreadsheet exports put at the start of a file.
const BOM: &[u8] = b"\xef\xbb\xbf";

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
    /// The CSV header is longer than the longest line read (`--max-line-bytes`): not a header.
    #[error("{path}: the header line is longer than {max} bytes (--max-line-bytes)")]
    HeaderTooLong {
        /// The file.
        path: PathBuf,
        /// The cap.
        max: usize,
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
        /// What was wrong, for a person (the field, its value, what was expected).
        detail: String,
        /// The pair it was meant for, when known.
        pair: Option<Pair>,
        /// Its timestamp, when readable.
        ts_us: Option<i64>,
        /// The raw line, cut to [`MAX_RAW_BYTES`] as serve cuts payloads.
        raw: String,
    },
    /// A line longer than the reader's `max_line_bytes`, skipped to its end without being held.
    Oversized {
        /// Its length in bytes (without the line end).
        len: u64,
        /// Its first bytes, cut as [`Item::Rejected`]'s `raw`, with its length.
        raw: String,
    },
}

/// One line as a [`LineReader`] read it.
#[derive(Debug)]
pub enum Line {
    /// The end of the input.
    Eof,
    /// A line, in the reader's buffer (without its line end).
    Text,
    /// A line over the cap: its length; the buffer holds its first bytes.
    Oversized(u64),
    /// The input could not be read.
    Failed(std::io::Error),
}

/// Reads lines of at most `max` bytes into one reused buffer. A longer line is read on in chunks to its
/// end and counted, never held: only its first [`MAX_RAW_BYTES`] stay, for the quarantine record. A
/// byte-order mark at the start of the input is skipped.
pub struct LineReader {
    inner: Box<dyn BufRead>,
    buf: Vec<u8>,
    max: usize,
    at_start: bool,
}

impl LineReader {
    /// Reads `inner` by lines of at most `max` bytes.
    pub fn new(inner: Box<dyn BufRead>, max: usize) -> LineReader {
        LineReader {
            inner,
            buf: Vec::with_capacity(256),
            max: max.max(1),
            at_start: true,
        }
    }

    /// The line just read ([`Line::Text`]), or the first bytes of an oversized one.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// Reads the next line; an oversized one is read on to its end (and counted).
    pub fn next_line(&mut self) -> Line {
        self.read(true)
    }

    /// Reads the next line, but stops at the cap: an oversized line is left unread past it (its length is
    /// then what was read). For a line whose end does not matter, such as a CSV header, which may never
    /// come (`/dev/zero`).
    pub fn next_line_or_stop(&mut self) -> Line {
        self.read(false)
    }

    fn read(&mut self, to_end: bool) -> Line {
        self.buf.clear();
        let mut len: u64 = 0;
        let mut any = false;
        let mut over = false;
        loop {
            let chunk = match self.inner.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Line::Failed(e),
            };
            if chunk.is_empty() {
                if !any {
                    return Line::Eof;
                }
                break;
            }
            any = true;
            let (n, end) = match memchr::memchr(b'\n', chunk) {
                Some(i) => (i, true),
                None => (chunk.len(), false),
            };
            let part = &chunk[..n];
            if !over && self.buf.len() + n > self.max {
                over = true;
                if !to_end {
                    break;
                }
                // Keep what the quarantine record shows, no more.
                self.buf.truncate(MAX_RAW_BYTES);
            }
            if over {
                let room = MAX_RAW_BYTES.saturating_sub(self.buf.len());
                self.buf.extend_from_slice(&part[..n.min(room)]);
            } else {
                self.buf.extend_from_slice(part);
            }
            len += n as u64;
            self.inner.consume(n + usize::from(end));
            if end {
                break;
            }
        }
        if std::mem::take(&mut self.at_start) && self.buf.starts_with(BOM) {
            self.buf.drain(..BOM.len());
            len -= BOM.len() as u64;
        }
        if over { Line::Oversized(len) } else { Line::Text }
    }
}

/// The item of an oversized line: its length and first bytes.
fn oversized(len: u64, prefix: &[u8]) -> Item {
    Item::Oversized {
        len,
        raw: raw_text_of_prefix(prefix, len, MAX_RAW_BYTES),
    }
}

/// The item of an input that failed mid-way: a quarantine saying so, after which the input ends.
fn failed(e: &std::io::Error, pair: Option<Pair>) -> Item {
    Item::Rejected {
        reason: QuarantineReason::Malformed,
        detail: format!("the input could not be read further: {e}"),
        pair,
        ts_us: None,
        raw: String::new(),
    }
}

/// Where the columns of a CSV file are.
#[derive(Debug, Clone)]
struct CsvLayout {
    /// The header's column names, lower case (details name the column at fault).
    names: Vec<String>,
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
                names: cols.clone(),
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

/// Reads ticks from a CSV file whose layout is detected from its header. Any number of columns; columns it
/// does not know are ignored.
pub struct CsvTicks {
    lines: LineReader,
    layout: CsvLayout,
    pair: Option<Pair>,
    source: Source,
    done: bool,
}

impl CsvTicks {
    /// Opens `path`; `pair` overrides the pair (else a `pair` column, else the file or column name).
    ///
    /// # Errors
    /// [`SourceError`] when the file cannot be read or its header is not understood.
    pub fn open(path: &Path, pair: Option<Pair>) -> Result<Self, SourceError> {
        Self::open_capped(path, pair, DEFAULT_MAX_LINE_BYTES)
    }

    /// [`CsvTicks::open`], reading lines of at most `max_line_bytes` (longer ones are [`Item::Oversized`]).
    ///
    /// # Errors
    /// [`SourceError`] when the file cannot be read or its header is not understood.
    pub fn open_capped(path: &Path, pair: Option<Pair>, max_line_bytes: usize) -> Result<Self, SourceError> {
        let io = |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        Self::from_reader_capped(
            Box::new(BufReader::with_capacity(1 << 16, file)),
            path,
            pair,
            max_line_bytes,
        )
    }

    /// Reads CSV from any buffered reader (the embedded demo data, tests).
    ///
    /// # Errors
    /// [`SourceError`] when the header is not understood.
    pub fn from_reader(lines: Box<dyn BufRead>, path: &Path, pair: Option<Pair>) -> Result<Self, SourceError> {
        Self::from_reader_capped(lines, path, pair, DEFAULT_MAX_LINE_BYTES)
    }

    /// [`CsvTicks::from_reader`], reading lines of at most `max_line_bytes`.
    ///
    /// # Errors
    /// [`SourceError`] when the header cannot be read, is too long or is not understood.
    pub fn from_reader_capped(
        lines: Box<dyn BufRead>,
        path: &Path,
        pair: Option<Pair>,
        max_line_bytes: usize,
    ) -> Result<Self, SourceError> {
        let mut lines = LineReader::new(lines, max_line_bytes);
        match lines.next_line_or_stop() {
            Line::Text | Line::Eof => {}
            Line::Oversized(_) => {
                return Err(SourceError::HeaderTooLong {
                    path: path.to_path_buf(),
                    max: lines.max,
                });
            }
            Line::Failed(source) => {
                return Err(SourceError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        }
        let header = String::from_utf8_lossy(&lines.buf).trim_end().to_string();
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
            done: false,
        })
    }

    /// Reads one data line. Cells are found by position in one pass over the line, so a file may have any
    /// number of columns; the layout's columns are the only ones looked at.
    fn parse_line(&self, line: &str) -> Item {
        let l = &self.layout;
        // The cells the layout reads, in this order: time, bid, ask, rate, pair, source, seq.
        let wanted = [Some(l.time), l.bid, l.ask, l.rate, l.pair, l.source, l.seq];
        let mut cells: [&str; 7] = [""; 7];
        let mut n = 0;
        for c in line.split(',') {
            for (cell, w) in cells.iter_mut().zip(wanted) {
                if w == Some(n) {
                    *cell = c.trim().trim_matches('"');
                }
            }
            n += 1;
        }
        let [time, bid, ask, rate, pair_cell, source, seq] = cells;
        let reject = |reason, detail, ts_us| Item::Rejected {
            reason,
            detail,
            pair: self.pair,
            ts_us,
            raw: raw_text(line.as_bytes(), MAX_RAW_BYTES),
        };
        let malformed = |detail, ts_us| reject(QuarantineReason::Malformed, detail, ts_us);
        if n != l.width {
            return malformed(format!("{n} cells where the header has {}", l.width), None);
        }
        let pair = match l.pair {
            Some(_) => match Pair::parse(pair_cell) {
                Some(p) => p,
                None => return malformed(detail::bad_pair(pair_cell), None),
            },
            None => match self.pair {
                Some(p) => p,
                None => return malformed("no pair: no pair column and no --pair".into(), None),
            },
        };
        if let (Some(_), Some(want)) = (l.pair, self.pair)
            && pair != want
        {
            return reject(QuarantineReason::PairMismatch, detail::pair_mismatch(pair, want), None);
        }
        let ts_us = match parse_ts_us(time) {
            Ok(t) => t,
            Err(e) => return malformed(detail::bad_time(&l.names[l.time], &e), None),
        };
        let num = |i: Option<usize>, text: &str| -> Result<Option<f64>, String> {
            match i {
                None => Ok(None),
                Some(i) => match read_price_text(text) {
                    PriceText::Missing => Ok(None),
                    PriceText::Value(v) => Ok(Some(v)),
                    PriceText::Unreadable => Err(detail::bad_price(&l.names[i], text)),
                },
            }
        };
        // With bid and ask columns every price column is read; with one rate column, only that one.
        let read = if l.bid.is_some() && l.ask.is_some() {
            num(l.bid, bid).and_then(|b| Ok((b, num(l.ask, ask)?, num(l.rate, rate)?)))
        } else {
            num(l.rate, rate).map(|m| (None, None, m))
        };
        let (bid, ask, mid) = match read {
            Ok(prices) => prices,
            Err(why) => return malformed(why, Some(ts_us)),
        };
        let source = match l.source {
            Some(_) if !source.is_empty() => match Source::new(source) {
                Some(s) => s,
                None => return malformed(detail::bad_source(source), Some(ts_us)),
            },
            _ => self.source,
        };
        let seq = match l.seq {
            Some(_) if !seq.is_empty() => match seq.parse::<u64>() {
                Ok(s) => Some(s),
                Err(_) => return malformed(detail::bad_seq(seq), Some(ts_us)),
            },
            _ => None,
        };
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
        while !self.done {
            match self.lines.next_line() {
                Line::Eof => self.done = true,
                Line::Oversized(len) => return Some(oversized(len, &self.lines.buf)),
                Line::Failed(e) => {
                    self.done = true;
                    return Some(failed(&e, self.pair));
                }
                Line::Text => {
                    let Ok(text) = std::str::from_utf8(&self.lines.buf) else {
                        return Some(Item::Rejected {
                            reason: QuarantineReason::Malformed,
                            detail: "the line is not valid UTF-8".into(),
                            pair: self.pair,
                            ts_us: None,
                            raw: raw_text(&self.lines.buf, MAX_RAW_BYTES),
                        });
                    };
                    let line = text.trim_end();
                    if !line.is_empty() {
                        return Some(self.parse_line(line));
                    }
                }
            }
        }
        None
    }
}

/// Reads ticks (and factors) from a JSON-lines file, one message of the wire contract per line.
pub struct JsonlTicks {
    lines: LineReader,
    pair: Option<Pair>,
    done: bool,
}

impl JsonlTicks {
    /// Opens `path`; `pair`, when given, is the only pair accepted (others are pair mismatches).
    ///
    /// # Errors
    /// [`SourceError::Io`] when the file cannot be opened.
    pub fn open(path: &Path, pair: Option<Pair>) -> Result<Self, SourceError> {
        Self::open_capped(path, pair, DEFAULT_MAX_LINE_BYTES)
    }

    /// [`JsonlTicks::open`], reading lines of at most `max_line_bytes` (longer ones are
    /// [`Item::Oversized`]).
    ///
    /// # Errors
    /// [`SourceError::Io`] when the file cannot be opened.
    pub fn open_capped(path: &Path, pair: Option<Pair>, max_line_bytes: usize) -> Result<Self, SourceError> {
        let file = File::open(path).map_err(|source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self::from_reader_capped(
            Box::new(BufReader::with_capacity(1 << 16, file)),
            pair,
            max_line_bytes,
        ))
    }

    /// Reads JSON lines from any buffered reader.
    pub fn from_reader(lines: Box<dyn BufRead>, pair: Option<Pair>) -> Self {
        Self::from_reader_capped(lines, pair, DEFAULT_MAX_LINE_BYTES)
    }

    /// [`JsonlTicks::from_reader`], reading lines of at most `max_line_bytes`.
    pub fn from_reader_capped(lines: Box<dyn BufRead>, pair: Option<Pair>, max_line_bytes: usize) -> Self {
        JsonlTicks {
            lines: LineReader::new(lines, max_line_bytes),
            pair,
            done: false,
        }
    }
}

/// Reads one wire message: a tick, or a factor when it has `name` and `value` but no `pair`.
pub fn parse_message(payload: &[u8], pair: Option<Pair>) -> Item {
    match parse_tick_detailed(payload, pair) {
        Ok(t) => Item::Tick(t),
        Err(e) => {
            if e.reason == QuarantineReason::Malformed
                && let Ok(f) = parse_factor(payload)
            {
                return Item::Factor(f);
            }
            Item::Rejected {
                reason: e.reason,
                detail: e.detail,
                pair,
                ts_us: None,
                raw: raw_text(payload, MAX_RAW_BYTES),
            }
        }
    }
}

impl Iterator for JsonlTicks {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        while !self.done {
            match self.lines.next_line() {
                Line::Eof => self.done = true,
                Line::Oversized(len) => return Some(oversized(len, &self.lines.buf)),
                Line::Failed(e) => {
                    self.done = true;
                    return Some(failed(&e, self.pair));
                }
                Line::Text => {
                    let line = self.lines.buf.trim_ascii();
                    if !line.is_empty() {
                        return Some(parse_message(line, self.pair));
                    }
                }
            }
        }
        None
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

    /// Lines over the cap are counted, not held; the lines around them are read as usual, and a
    /// byte-order mark starts only the first line.
    #[test]
    fn the_line_reader_caps_lines_and_skips_a_bom() {
        let mut text = b"\xef\xbb\xbfabc\n".to_vec();
        text.extend(std::iter::repeat_n(b'x', 100_000));
        text.extend_from_slice(b"\nexactly10\n\xef\xbb\xbf\n\nlast");
        let mut r = LineReader::new(Box::new(std::io::BufReader::with_capacity(64, Cursor::new(text))), 10);
        let mut seen = Vec::new();
        loop {
            match r.next_line() {
                Line::Eof => break,
                Line::Text => seen.push(String::from_utf8_lossy(r.line()).into_owned()),
                Line::Oversized(len) => {
                    assert!(r.line().len() <= MAX_RAW_BYTES);
                    assert!(r.buf.capacity() <= 4 * MAX_RAW_BYTES, "the long line was not held");
                    seen.push(format!("<{len}>"));
                }
                Line::Failed(e) => panic!("{e}"),
            }
        }
        assert_eq!(seen, ["abc", "<100000>", "exactly10", "\u{feff}", "", "last"]);
    }

    #[test]
    fn oversized_csv_lines_are_items_and_the_header_is_capped() {
        let text = format!(
            "ts,mid\n2020-01-01,17\n2020-01-02,{}\n2020-01-03,17\n",
            "1".repeat(5000)
        );
        let r = CsvTicks::from_reader_capped(
            Box::new(Cursor::new(text)),
            Path::new("x.csv"),
            Pair::parse("USDMXN"),
            100,
        )
        .unwrap();
        let items: Vec<Item> = r.collect();
        assert!(matches!(items[0], Item::Tick(_)));
        assert!(matches!(&items[1], Item::Oversized { len: 5011, raw } if raw.len() == 5011));
        assert!(matches!(items[2], Item::Tick(_)));
        let long_header = format!("ts,{}\n", "m".repeat(200));
        assert!(matches!(
            CsvTicks::from_reader_capped(Box::new(Cursor::new(long_header)), Path::new("x.csv"), None, 100),
            Err(SourceError::HeaderTooLong { max: 100, .. })
        ));
    }

    /// CSV reads source and seq as JSON does: a bad one is malformed (it was replaced or dropped), an
    /// empty one is absent; `NaN` is a non-finite price, not a missing one.
    #[test]
    fn csv_cells_are_read_as_json_fields_are() {
        let items = csv(
            "ts,mid,source,seq\n2020-01-01,17,a b,1\n2020-01-02,17,oanda,x\n2020-01-03,17,,\n2020-01-04,NaN,oanda,4\n",
            Some("USDMXN"),
        )
        .unwrap();
        let details: Vec<String> = items
            .iter()
            .map(|i| match i {
                Item::Rejected { detail, .. } => detail.clone(),
                Item::Tick(t) => format!("tick {} {:?} {:?}", t.source, t.seq, t.mid),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            details,
            [
                "source `a b` is not 1 to 32 printable ASCII characters",
                "seq `x` is not an integer from 0 to 2^64-1",
                "tick x None Some(17.0)",
                "tick oanda Some(4) Some(NaN)",
            ]
        );
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
