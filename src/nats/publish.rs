//! `cambio replay --nats`: publishes a replay's input to NATS instead of running the engine in process, so a
//! recorded incident or a scenario can be rehearsed against the live service.
//!
//! The service must see what the in-process replay would have fed its engine:
//! - JSON-lines input is published line by line with the original bytes, so a malformed line reaches the
//!   service as it is and is quarantined there exactly as the file replay quarantines it.
//! - CSV and synthetic ticks are written as the contract's JSON ([`tick_json`]): exact f64 round trip, and a
//!   missing value is a missing field, so the service quarantines it as `missing_value` as the in-process
//!   replay does; non-finite prices are written as the strings `"NaN"`/`"Infinity"` the tick parser reads.
//! - A scenario's factors are merged by time exactly like [`crate::replay::run`] merges them: every factor
//!   dated at or before a tick goes out before it; factors dated after the last tick are never applied in
//!   process, so they are not published either.
//!
//! Reading the input is blocking file I/O, so it runs on its own thread and hands messages to the async
//! publisher through a bounded channel: memory stays bounded however long the input is.

use std::future::Future;
use std::io::{BufReader, Cursor};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use serde::{Serialize, Serializer};

use crate::nats::Subjects;
use crate::quality::QuarantineReason;
use crate::replay::source::{CsvTicks, DEFAULT_MAX_LINE_BYTES, JsonlTicks, Line, LineReader, parse_message};
use crate::replay::{self, Item, TickData};
use crate::tick::{Factor, Pair, Tick};
use crate::time::format_ts;

pub use crate::nats::headers::REPLAY as REPLAY_HEADER;

/// Longest payload published. Longer JSON lines are cut to this length: they are far over the contract's
/// 4 KiB, so the service quarantines them as malformed either way, and the server's own limit (1 MiB by
/// default) would refuse them outright.
pub const MAX_PUBLISHED_BYTES: usize = 64 * 1024;

/// Longest wait for the final flush after Ctrl-C.
const FLUSH_AFTER_INTERRUPT: Duration = Duration::from_secs(5);

/// Messages read ahead of the publisher (bounds memory; the reader waits when the publisher is pacing).
const CHANNEL_DEPTH: usize = 1024;

/// Why a replay to NATS could not run (bad lines are published, not errors).
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The input (file, scenario, factor files) could not be read or understood.
    #[error(transparent)]
    Replay(#[from] replay::ReplayError),
    /// A rejected line names no pair and none is known to publish it under.
    #[error("{path}: cannot tell which pair's subject a bad line goes to (no readable tick); pass --pair")]
    NoPair {
        /// The input.
        path: PathBuf,
    },
    /// The reader thread could not be started.
    #[error("starting the input reader: {0}")]
    Thread(std::io::Error),
    /// A message could not be handed to the client.
    #[error("publishing to {subject}: {source}")]
    Publish {
        /// The subject.
        subject: String,
        /// The client's error.
        source: async_nats::PublishError,
    },
    /// The final flush failed: some messages may not have reached the server.
    #[error("flushing to NATS: {0}")]
    Flush(#[from] async_nats::client::FlushError),
}

impl From<replay::source::SourceError> for PublishError {
    fn from(e: replay::source::SourceError) -> Self {
        PublishError::Replay(e.into())
    }
}

impl From<replay::scenario::ScenarioError> for PublishError {
    fn from(e: replay::scenario::ScenarioError) -> Self {
        PublishError::Replay(e.into())
    }
}

/// How fast to publish.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as the client and server take them.
    Max,
    /// The recorded spacing of tick timestamps divided by this factor (`1.0` is real time).
    Times(f64),
}

impl FromStr for Speed {
    type Err = String;

    /// `max`, or a factor with an optional `x`: `60x`, `1x`, `0.5x`, `10`.
    fn from_str(s: &str) -> Result<Speed, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        let n = t.strip_suffix(['x', 'X']).unwrap_or(t);
        match n.parse::<f64>() {
            // Bounded so a pause always fits a Duration and an Instant.
            Ok(v) if (1e-3..=1e9).contains(&v) => Ok(Speed::Times(v)),
            _ => Err(format!(
                "speed `{s}`: a factor between 0.001x and 1e9x such as `60x` (60 times faster), or `max`"
            )),
        }
    }
}

/// When each tick is due, from the recorded spacing of tick timestamps divided by the speed.
///
/// Deadlines are measured from the first tick, not from the previous one, so sleeping late never adds up
/// over a long replay. A tick stamped before the latest one seen (out of order, a duplicate) is due at once.
#[derive(Debug, Clone)]
pub struct Pacer {
    speed: f64,
    first_ts_us: Option<i64>,
    latest_ts_us: i64,
}

impl Pacer {
    /// A pacer for `speed` times real time (`speed > 0`).
    pub fn new(speed: f64) -> Pacer {
        Pacer {
            speed,
            first_ts_us: None,
            latest_ts_us: i64::MIN,
        }
    }

    /// Time after the first tick at which a tick stamped `ts_us` is due.
    pub fn due(&mut self, ts_us: i64) -> Duration {
        let first = *self.first_ts_us.get_or_insert(ts_us);
        self.latest_ts_us = self.latest_ts_us.max(ts_us);
        let secs = (self.latest_ts_us as i128 - first as i128) as f64 / 1e6 / self.speed;
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    }
}

/// A price on the wire: a JSON number when finite, else the string the tick parser reads as non-finite
/// (serde_json would write `null`, which the service would take for a missing value instead).
struct WirePrice(f64);

impl Serialize for WirePrice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_finite() {
            s.serialize_f64(v)
        } else if v.is_nan() {
            s.serialize_str("NaN")
        } else if v > 0.0 {
            s.serialize_str("Infinity")
        } else {
            s.serialize_str("-Infinity")
        }
    }
}

/// A tick as the contract writes it, fields in the contract's order.
#[derive(Serialize)]
struct WireTick<'a> {
    pair: &'a str,
    ts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    bid: Option<WirePrice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ask: Option<WirePrice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mid: Option<WirePrice>,
    source: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    arrival: Option<String>,
}

/// A factor as the contract writes it.
#[derive(Serialize)]
struct WireFactor<'a> {
    name: &'a str,
    ts: String,
    value: f64,
    source: &'a str,
}

/// The contract's JSON of a tick, which [`crate::tick::parse_tick`] reads back to an identical tick:
/// prices round-trip exactly, a missing price is an absent field, a non-finite one a string.
pub fn tick_json(t: &Tick) -> Vec<u8> {
    let wire = WireTick {
        pair: t.pair.as_str(),
        ts: format_ts(t.ts_us),
        bid: t.bid.map(WirePrice),
        ask: t.ask.map(WirePrice),
        mid: t.mid.map(WirePrice),
        source: t.source.as_str(),
        seq: t.seq,
        arrival: t.arrival_us.map(format_ts),
    };
    // Cannot fail: string keys, and numbers serde_json can write.
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// The contract's JSON of a factor.
pub fn factor_json(f: &Factor) -> Vec<u8> {
    let wire = WireFactor {
        name: &f.name,
        ts: format_ts(f.ts_us),
        value: f.value,
        source: &f.source,
    };
    // Cannot fail, as above (factor values are finite: non-finite ones are never read).
    serde_json::to_vec(&wire).unwrap_or_default()
}

/// Whether `name` can be one token of a subject (a factor name with a dot or a wildcard cannot).
fn is_subject_token(name: &str) -> bool {
    !name.is_empty() && !name.contains(['.', '*', '>']) && !name.chars().any(char::is_whitespace)
}

/// What a message is, for the counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tick (or a line that should have been one).
    Tick,
    /// A factor observation.
    Factor,
}

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// Tick or factor.
    pub kind: Kind,
    /// The subject.
    pub subject: String,
    /// The payload.
    pub payload: Bytes,
    /// The tick's time, for pacing (factors and unreadable lines go out at once).
    pub pace_ts_us: Option<i64>,
}

/// Merges factors into the tick stream by time and names subjects; counts factors it cannot publish.
struct Merger<'a, E: FnMut(Outgoing) -> bool> {
    subjects: &'a Subjects,
    factors: Vec<Factor>,
    next_factor: usize,
    skipped_factors: u64,
    emit: E,
}

/// The reader stopped because the publisher went away (interrupted or failed).
struct Stopped;

impl<E: FnMut(Outgoing) -> bool> Merger<'_, E> {
    fn send(&mut self, msg: Outgoing) -> Result<(), Stopped> {
        if (self.emit)(msg) { Ok(()) } else { Err(Stopped) }
    }

    fn factor(&mut self, name: &str, payload: Vec<u8>) -> Result<(), Stopped> {
        if !is_subject_token(name) {
            self.skipped_factors += 1;
            tracing::warn!(factor = name, "factor name cannot be a subject token; not published");
            return Ok(());
        }
        self.send(Outgoing {
            kind: Kind::Factor,
            subject: self.subjects.factor(name),
            payload: Bytes::from(payload),
            pace_ts_us: None,
        })
    }

    /// Publishes the factors dated at or before `ts_us` (as [`crate::replay::run`] applies them).
    fn factors_until(&mut self, ts_us: i64) -> Result<(), Stopped> {
        while let Some(f) = self.factors.get(self.next_factor) {
            if f.ts_us > ts_us {
                break;
            }
            let (name, payload) = (f.name.clone(), factor_json(f));
            self.next_factor += 1;
            self.factor(&name, payload)?;
        }
        Ok(())
    }

    fn tick(&mut self, pair: Pair, payload: Vec<u8>, pace_ts_us: Option<i64>) -> Result<(), Stopped> {
        let mut payload = payload;
        payload.truncate(MAX_PUBLISHED_BYTES);
        self.send(Outgoing {
            kind: Kind::Tick,
            subject: self.subjects.ticks(pair),
            payload: Bytes::from(payload),
            pace_ts_us,
        })
    }
}

/// The pair of the first readable tick of `items`, for lines that name none.
fn first_pair(items: impl Iterator<Item = Item>) -> Option<Pair> {
    items
        .filter_map(|i| match i {
            Item::Tick(t) => Some(t.pair),
            _ => None,
        })
        .next()
}

/// The subject pair of a line that names none: `--pair`, else the last tick's pair, else the file's first.
fn fallback_pair(
    pair: Option<Pair>,
    last: Option<Pair>,
    first_in_file: impl FnOnce() -> Option<Pair>,
    path: &Path,
) -> Result<Pair, PublishError> {
    pair.or(last)
        .or_else(first_in_file)
        .ok_or_else(|| PublishError::NoPair { path: path.into() })
}

/// A CSV row refused as a pair mismatch, read again without the pair filter, so the service gets the tick
/// with its own pair and refuses it for the same reason. `None` when it cannot be read alone.
fn reparse_csv_row(header: &str, row: &str) -> Option<Tick> {
    let text = format!("{header}\n{row}\n");
    // A neutral file name, so no pair is guessed from it.
    let mut rows = CsvTicks::from_reader(Box::new(Cursor::new(text)), Path::new("row.csv"), None).ok()?;
    match rows.next() {
        Some(Item::Tick(t)) => Some(t),
        _ => None,
    }
}

/// The first line of a file (a CSV header).
fn first_line(path: &Path) -> Result<String, PublishError> {
    let io = |source| replay::source::SourceError::Io {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // Capped as the CSV reader caps it (which has already read this header).
    let mut lines = LineReader::new(Box::new(BufReader::new(file)), DEFAULT_MAX_LINE_BYTES);
    if let Line::Failed(e) = lines.next_line_or_stop() {
        return Err(io(e).into());
    }
    Ok(String::from_utf8_lossy(lines.line()).trim_end().to_string())
}

/// Why reading stopped before the end of the input.
enum Halt {
    /// The publisher went away: not an error of the input.
    Stopped,
    /// The input could not be read.
    Failed(PublishError),
}

impl From<Stopped> for Halt {
    fn from(_: Stopped) -> Self {
        Halt::Stopped
    }
}

impl<T: Into<PublishError>> From<T> for Halt {
    fn from(e: T) -> Self {
        Halt::Failed(e.into())
    }
}

/// Publishes CSV or synthetic items (parsed ticks, serialised to the contract).
fn items_to_messages<E: FnMut(Outgoing) -> bool>(
    m: &mut Merger<'_, E>,
    items: impl Iterator<Item = Item>,
    pair: Option<Pair>,
    csv: Option<&Path>,
) -> Result<(), Halt> {
    let header = csv.map(first_line).transpose()?;
    let mut last: Option<Pair> = None;
    for item in items {
        match item {
            Item::Tick(t) => {
                m.factors_until(t.ts_us)?;
                last = Some(t.pair);
                m.tick(pair.unwrap_or(t.pair), tick_json(&t), Some(t.ts_us))?;
            }
            Item::Factor(f) => {
                let payload = factor_json(&f);
                m.factor(&f.name, payload)?;
            }
            Item::Oversized { len, .. } => {
                tracing::warn!(bytes = len, "line longer than the longest read; not published");
            }
            Item::Rejected {
                reason,
                pair: item_pair,
                ts_us,
                raw,
                ..
            } => {
                let subject_pair = match item_pair.or(pair) {
                    Some(p) => p,
                    None => fallback_pair(
                        None,
                        last,
                        || csv.and_then(|p| CsvTicks::open(p, None).ok()).and_then(first_pair),
                        csv.unwrap_or(Path::new("input")),
                    )?,
                };
                let again = match (&header, reason) {
                    (Some(h), QuarantineReason::PairMismatch) => reparse_csv_row(h, &raw),
                    _ => None,
                };
                let payload = match again {
                    Some(t) => tick_json(&t),
                    None => raw.into_bytes(),
                };
                m.tick(subject_pair, payload, ts_us)?;
            }
        }
    }
    Ok(())
}

/// Publishes a JSON-lines file with each line's original bytes.
fn jsonl_to_messages<E: FnMut(Outgoing) -> bool>(
    m: &mut Merger<'_, E>,
    path: &Path,
    pair: Option<Pair>,
) -> Result<(), Halt> {
    let file = std::fs::File::open(path).map_err(|source| replay::source::SourceError::Io {
        path: path.into(),
        source,
    })?;
    // Lines are capped as the file replay caps them, so a file with no line end cannot grow the buffer.
    let mut lines = LineReader::new(
        Box::new(BufReader::with_capacity(1 << 16, file)),
        DEFAULT_MAX_LINE_BYTES,
    );
    let mut last: Option<Pair> = None;
    loop {
        match lines.next_line() {
            Line::Eof => return Ok(()),
            Line::Failed(e) => {
                tracing::warn!(error = %e, "the input could not be read further");
                return Ok(());
            }
            Line::Oversized(len) => {
                tracing::warn!(bytes = len, "line longer than the longest read; not published");
                continue;
            }
            Line::Text => {}
        }
        let line = lines.line().trim_ascii();
        if line.is_empty() {
            continue;
        }
        match parse_message(line, pair) {
            Item::Tick(t) => {
                m.factors_until(t.ts_us)?;
                last = Some(t.pair);
                m.tick(pair.unwrap_or(t.pair), line.to_vec(), Some(t.ts_us))?;
            }
            Item::Factor(f) => m.factor(&f.name, line.to_vec())?,
            Item::Rejected { pair: item_pair, .. } => {
                let subject_pair = match item_pair.or(pair) {
                    Some(p) => p,
                    None => fallback_pair(
                        None,
                        last,
                        || JsonlTicks::open(path, None).ok().and_then(first_pair),
                        path,
                    )?,
                };
                m.tick(subject_pair, line.to_vec(), None)?;
            }
            // A message is one line already read: never oversized.
            Item::Oversized { .. } => {}
        }
    }
}

/// What was read and handed on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadCounts {
    /// Factors whose names cannot be subject tokens, not published.
    pub skipped_factors: u64,
}

/// Reads `input` (scenario, CSV or JSON lines) and hands every message to `emit`, in publishing order;
/// stops early when `emit` returns false. Synchronous and free of NATS, so it is tested without a server.
///
/// # Errors
/// [`PublishError`] when the input cannot be read or a bad line cannot be given a subject.
pub fn read_messages(
    input: &Path,
    pair: Option<Pair>,
    subjects: &Subjects,
    emit: impl FnMut(Outgoing) -> bool,
) -> Result<ReadCounts, PublishError> {
    let mut m = Merger {
        subjects,
        factors: Vec::new(),
        next_factor: 0,
        skipped_factors: 0,
        emit,
    };
    match read_into(&mut m, input, pair) {
        Ok(()) | Err(Halt::Stopped) => Ok(ReadCounts {
            skipped_factors: m.skipped_factors,
        }),
        Err(Halt::Failed(e)) => Err(e),
    }
}

fn read_into<E: FnMut(Outgoing) -> bool>(m: &mut Merger<'_, E>, input: &Path, pair: Option<Pair>) -> Result<(), Halt> {
    // As `replay`: a scenario's own pair, whatever --pair says.
    let input = replay::Input::open(input, pair)?;
    m.factors = input.factors.clone();
    match &input.data {
        // JSON lines are published as read (a line that does not parse is still published, to be
        // quarantined by the service as replay quarantines it).
        TickData::Jsonl(path) => jsonl_to_messages(m, path, input.pair)?,
        TickData::Csv(path) => items_to_messages(m, input.items()?, input.pair, Some(path))?,
        TickData::Synthetic(_) => items_to_messages(m, input.items()?, input.pair, None)?,
    }
    Ok(())
}

/// How to publish.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    /// The deployment's subjects.
    pub subjects: Subjects,
    /// Only this pair (as in the file replay: ticks of others go to this pair's subject and are refused
    /// there as pair mismatches); also the pair of files that do not name one.
    pub pair: Option<Pair>,
    /// Pacing.
    pub speed: Speed,
}

/// What a replay to NATS published.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishSummary {
    /// Tick messages (including lines the service will quarantine).
    pub ticks: u64,
    /// Factor messages.
    pub factors: u64,
    /// Factors not published because their names cannot be subject tokens.
    pub skipped_factors: u64,
    /// From the first message to the end of the final flush.
    pub elapsed: Duration,
    /// Whether it was stopped early (Ctrl-C).
    pub interrupted: bool,
}

impl PublishSummary {
    /// Messages per second achieved.
    pub fn rate(&self) -> f64 {
        (self.ticks + self.factors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Publishes `input` to NATS with `opts`, every message carrying [`REPLAY_HEADER`], then flushes.
/// Stops early (still flushing what was published) when `shutdown` completes.
///
/// # Errors
/// [`PublishError`] when the input cannot be read or the client refuses a message or the flush.
pub async fn replay_to_nats(
    client: &async_nats::Client,
    input: &Path,
    opts: PublishOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<PublishSummary, PublishError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Outgoing, PublishError>>(CHANNEL_DEPTH);
    let (path, subjects, pair) = (input.to_path_buf(), opts.subjects.clone(), opts.pair);
    let (counts_tx, counts_rx) = tokio::sync::oneshot::channel::<ReadCounts>();
    std::thread::Builder::new()
        .name("replay-reader".into())
        .spawn(
            move || match read_messages(&path, pair, &subjects, |m| tx.blocking_send(Ok(m)).is_ok()) {
                Ok(counts) => {
                    let _ = counts_tx.send(counts);
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                }
            },
        )
        .map_err(PublishError::Thread)?;

    let mut headers = async_nats::HeaderMap::new();
    headers.insert(REPLAY_HEADER, "1");
    let mut pacer = match opts.speed {
        Speed::Max => None,
        Speed::Times(s) => Some(Pacer::new(s)),
    };
    let mut summary = PublishSummary {
        ticks: 0,
        factors: 0,
        skipped_factors: 0,
        elapsed: Duration::ZERO,
        interrupted: false,
    };
    let mut start: Option<tokio::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let msg = tokio::select! {
            m = rx.recv() => m,
            () = &mut shutdown => { summary.interrupted = true; break; }
        };
        let Some(msg) = msg else { break };
        let msg = msg?;
        let t0 = *start.get_or_insert_with(tokio::time::Instant::now);
        if let (Some(p), Some(ts)) = (pacer.as_mut(), msg.pace_ts_us) {
            let due = p.due(ts);
            // Beyond any real replay (the speed is bounded); a far deadline rather than an overflow.
            let at = t0
                .checked_add(due)
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(1 << 30));
            tokio::select! {
                () = tokio::time::sleep_until(at) => {}
                () = &mut shutdown => { summary.interrupted = true; break; }
            }
        }
        // The client waits here while it reconnects; Ctrl-C must still stop it.
        let sent = tokio::select! {
            r = client.publish_with_headers(msg.subject.clone(), headers.clone(), msg.payload) => r,
            () = &mut shutdown => { summary.interrupted = true; break; }
        };
        sent.map_err(|source| PublishError::Publish {
            subject: msg.subject,
            source,
        })?;
        match msg.kind {
            Kind::Tick => summary.ticks += 1,
            Kind::Factor => summary.factors += 1,
        }
    }
    // Closing the channel stops the reader if it is still going.
    drop(rx);
    if summary.interrupted {
        // The Ctrl-C handler replaced the default one, so a second Ctrl-C would not end a flush that
        // hangs on a lost server: bound it instead.
        if tokio::time::timeout(FLUSH_AFTER_INTERRUPT, client.flush())
            .await
            .is_err()
        {
            tracing::warn!("interrupted: the last messages may not have reached the server");
        }
    } else {
        client.flush().await?;
    }
    summary.elapsed = start.map(|s| s.elapsed()).unwrap_or_default();
    if let Ok(counts) = counts_rx.await {
        summary.skipped_factors = counts.skipped_factors;
    }
    tracing::info!(
        ticks = summary.ticks,
        factors = summary.factors,
        secs = summary.elapsed.as_secs_f64(),
        "replay to nats done"
    );
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Source, parse_tick};

    fn pair() -> Pair {
        Pair::parse("USDMXN").unwrap()
    }

    #[test]
    fn speeds_parse_and_bad_ones_are_refused() {
        assert_eq!("60x".parse::<Speed>(), Ok(Speed::Times(60.0)));
        assert_eq!("1x".parse::<Speed>(), Ok(Speed::Times(1.0)));
        assert_eq!("0.5X".parse::<Speed>(), Ok(Speed::Times(0.5)));
        assert_eq!("10".parse::<Speed>(), Ok(Speed::Times(10.0)));
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        for bad in ["", "x", "0x", "-1x", "fastx", "nanx", "infx", "1e12x"] {
            assert!(bad.parse::<Speed>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pacing_divides_the_recorded_spacing_and_never_goes_back() {
        let mut p = Pacer::new(10.0);
        let s = 1_000_000;
        assert_eq!(p.due(100 * s), Duration::ZERO);
        assert_eq!(p.due(101 * s), Duration::from_millis(100));
        assert_eq!(p.due(103 * s), Duration::from_millis(300));
        // Out of order and duplicates: due at once (no earlier than the latest deadline).
        assert_eq!(p.due(102 * s), Duration::from_millis(300));
        assert_eq!(p.due(103 * s), Duration::from_millis(300));
        assert_eq!(p.due(104 * s), Duration::from_millis(400));
        let mut slow = Pacer::new(0.5);
        slow.due(0);
        assert_eq!(slow.due(s), Duration::from_secs(2));
        let mut extreme = Pacer::new(1e-3);
        extreme.due(i64::MIN);
        assert!(
            extreme.due(i64::MAX) > Duration::from_secs(1 << 40),
            "no overflow panic"
        );
    }

    #[test]
    fn tick_json_round_trips_exactly_and_keeps_missing_and_non_finite_values() {
        let base = Tick {
            pair: pair(),
            ts_us: 1_583_764_200_123_456,
            bid: Some(24.1021_f64.next_up()),
            ask: Some(0.1 + 0.2),
            mid: None,
            source: Source::new("oanda").unwrap(),
            seq: Some(18231),
            arrival_us: None,
        };
        let cases = [
            base,
            Tick { bid: None, ..base },
            Tick {
                bid: None,
                ask: None,
                mid: Some(f64::MIN_POSITIVE),
                seq: None,
                ..base
            },
            Tick {
                bid: None,
                ask: None,
                mid: None,
                ..base
            },
            Tick {
                bid: Some(-0.0),
                ask: Some(1e300),
                arrival_us: Some(1_583_764_200_200_000),
                ts_us: -86_400_000_000,
                ..base
            },
        ];
        for t in cases {
            let json = tick_json(&t);
            let back = parse_tick(&json, Some(pair())).unwrap();
            assert_eq!(back, t, "{}", String::from_utf8_lossy(&json));
            for (a, b) in [(back.bid, t.bid), (back.ask, t.ask), (back.mid, t.mid)] {
                assert_eq!(a.map(f64::to_bits), b.map(f64::to_bits));
            }
        }
        let missing = tick_json(&cases[3]);
        assert!(
            !String::from_utf8_lossy(&missing).contains("null"),
            "a missing value is an absent field"
        );
        let nan = Tick {
            mid: Some(f64::NAN),
            bid: Some(f64::INFINITY),
            ask: Some(f64::NEG_INFINITY),
            ..base
        };
        let back = parse_tick(&tick_json(&nan), None).unwrap();
        assert!(back.mid.unwrap().is_nan());
        assert_eq!((back.bid, back.ask), (Some(f64::INFINITY), Some(f64::NEG_INFINITY)));
    }

    #[test]
    fn a_tick_without_price_reaches_the_engine_as_a_missing_value() {
        let cfg = crate::engine::EngineConfig::default();
        let mut e = crate::engine::Engine::new(pair(), &cfg).unwrap();
        let t = parse_tick(br#"{"pair":"USDMXN","ts":"2020-01-01","source":"x"}"#, Some(pair())).unwrap();
        let mut out = Vec::new();
        e.on_tick(&t, &mut out);
        let json = serde_json::to_string(&out).unwrap();
        assert!(json.contains("missing_value"), "{json}");
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cambio-publish-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn collect(input: &Path, pair: Option<Pair>) -> Vec<Outgoing> {
        let mut out = Vec::new();
        read_messages(input, pair, &Subjects::default(), |m| {
            out.push(m);
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn csv_cells_become_contract_json_and_mismatches_keep_their_pair() {
        let dir = scratch("csv");
        let f = dir.join("t.csv");
        std::fs::write(
            &f,
            "ts,pair,mid\n2020-01-01,USDMXN,18.9\n2020-01-02,USDMXN,\n2020-01-03,EURUSD,1.1\nbad\n",
        )
        .unwrap();
        let msgs = collect(&f, Some(pair()));
        assert_eq!(msgs.len(), 4);
        assert!(
            msgs.iter()
                .all(|m| m.subject == "fx.ticks.USDMXN" && m.kind == Kind::Tick)
        );
        let t = parse_tick(&msgs[1].payload, Some(pair())).unwrap();
        assert_eq!(t.mid, None, "the empty cell stays a missing value");
        assert_eq!(
            parse_tick(&msgs[2].payload, Some(pair())),
            Err(QuarantineReason::PairMismatch)
        );
        assert_eq!(&msgs[3].payload[..], b"bad");
        assert_eq!(msgs[3].pace_ts_us, None);
    }

    #[test]
    fn jsonl_lines_go_out_unchanged_and_factors_merge_by_time() {
        let dir = scratch("jsonl");
        let f = dir.join("t.jsonl");
        let lines = [
            r#"{"pair":"USDMXN","ts":"2020-01-01","mid":18.9}"#,
            "not json",
            r#"{"name":"TIIE28","ts":"2020-01-01","value":7.0}"#,
            r#"{"pair":"USDMXN", "ts":"2020-01-02","mid":18.95}"#,
        ];
        std::fs::write(&f, lines.join("\n\n")).unwrap();
        let msgs = collect(&f, None);
        let payloads: Vec<&[u8]> = msgs.iter().map(|m| &m.payload[..]).collect();
        assert_eq!(payloads, lines.iter().map(|l| l.as_bytes()).collect::<Vec<_>>());
        assert_eq!(
            msgs[1].subject, "fx.ticks.USDMXN",
            "the bad line goes to the last tick's pair"
        );
        assert_eq!(msgs[2].subject, "fx.factors.TIIE28");

        // A bad first line without --pair: the file's first readable tick names the pair.
        std::fs::write(&f, "garbage\n{\"pair\":\"EURUSD\",\"ts\":\"2020-01-01\",\"mid\":1.1}\n").unwrap();
        assert_eq!(collect(&f, None)[0].subject, "fx.ticks.EURUSD");
        std::fs::write(&f, "garbage\n").unwrap();
        assert!(matches!(
            read_messages(&f, None, &Subjects::default(), |_| true),
            Err(PublishError::NoPair { .. })
        ));
        assert_eq!(collect(&f, Some(pair()))[0].subject, "fx.ticks.USDMXN");
    }

    #[test]
    fn scenario_factors_precede_the_ticks_they_are_joined_to() {
        let dir = scratch("scenario");
        std::fs::write(dir.join("ticks.csv"), "date,mid\n2020-01-02,18.9\n2020-01-04,19.0\n").unwrap();
        std::fs::write(
            dir.join("rate.csv"),
            "date,value\n2019-12-31,7.0\n2020-01-03,7.25\n2020-01-09,7.5\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("scenario.toml"),
            "name = \"t\"\npair = \"USDMXN\"\ndata = \"ticks.csv\"\n[[factors]]\nfile = \"rate.csv\"\nname = \"TIIE28\"\nlag = \"1d\"\n",
        )
        .unwrap();
        let msgs = collect(&dir, None);
        let kinds: Vec<(Kind, String)> = msgs
            .iter()
            .map(|m| (m.kind, String::from_utf8_lossy(&m.payload).into_owned()))
            .collect();
        assert_eq!(kinds.len(), 4, "{kinds:?}");
        assert_eq!(kinds[0].0, Kind::Factor);
        assert!(
            kinds[0].1.contains("\"ts\":\"2020-01-01T00:00:00.000Z\""),
            "lagged a day: {kinds:?}"
        );
        assert_eq!(kinds[1].0, Kind::Tick);
        assert_eq!(kinds[2].0, Kind::Factor);
        assert!(kinds[2].1.contains("7.25"));
        assert_eq!(kinds[3].0, Kind::Tick);
        // The factor after the last tick is never joined in process, so it is not published.
    }

    #[test]
    fn the_reader_stops_when_the_publisher_goes_away() {
        let dir = scratch("stop");
        let f = dir.join("t.csv");
        std::fs::write(&f, "date,mid\n2020-01-01,1\n2020-01-02,1\n2020-01-03,1\n").unwrap();
        let mut n = 0;
        read_messages(&f, Some(pair()), &Subjects::default(), |_| {
            n += 1;
            false
        })
        .unwrap();
        assert_eq!(n, 1);
    }
}
