//! Messages into rows: which kind a subject is, where its row goes (pair and date), and the columns of each
//! kind, built column by column so a batch turns into an Arrow record batch without copying rows.
//!
//! A row depends only on the message's subject and payload (plus its stream position and arrival time), so
//! the live archive and `replay --archive`, which see the same payloads, write the same rows.

use std::sync::Arc;

use arrow_array::builder::TimestampMicrosecondBuilder;
use arrow_array::builder::{BinaryBuilder, BooleanBuilder, Float64Builder, StringBuilder, UInt64Builder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde_json::Value;

/// The kinds of data in the lake, one top-level folder each (`kind=<name>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Ticks as received (`<prefix>.ticks.<PAIR>`) and as quarantined (`<prefix>.quarantine.<PAIR>`).
    Ticks,
    /// Factors (`<prefix>.factors.<NAME>`).
    Factors,
    /// Forecasts (`<prefix>.pred.<PAIR>`).
    Forecasts,
    /// Alarms, adaptations, promotions, rollbacks and disparity alarms (`<prefix>.alert.<PAIR>`).
    Alerts,
    /// Refused business events, with the client's pseudonym only (`<prefix>.business.quarantine.<PAIR>`).
    Business,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 5] = [
        Kind::Ticks,
        Kind::Factors,
        Kind::Forecasts,
        Kind::Alerts,
        Kind::Business,
    ];

    /// The folder name (`kind=<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ticks => "ticks",
            Kind::Factors => "factors",
            Kind::Forecasts => "forecasts",
            Kind::Alerts => "alerts",
            Kind::Business => "business",
        }
    }
}

/// What a subject is, for the lake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The kind.
    pub kind: Kind,
    /// The partition key: the pair (a factor's name for factors; `_unrouted` for unrouted quarantines).
    pub key: String,
    /// For ticks: whether this is the quarantine record (else the tick as received).
    pub quarantined: bool,
}

/// The kind and partition key of `subject` under `prefix`; `None` for subjects the lake does not keep.
pub fn route(prefix: &str, subject: &str) -> Option<Route> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (kind, quarantined, key) = if let Some(k) = rest.strip_prefix("ticks.") {
        (Kind::Ticks, false, k)
    } else if let Some(k) = rest.strip_prefix("quarantine.") {
        (Kind::Ticks, true, k)
    } else if let Some(k) = rest.strip_prefix("factors.") {
        (Kind::Factors, false, k)
    } else if let Some(k) = rest.strip_prefix("pred.") {
        (Kind::Forecasts, false, k)
    } else if let Some(k) = rest.strip_prefix("alert.") {
        (Kind::Alerts, false, k)
    } else if let Some(k) = rest.strip_prefix("business.quarantine.") {
        (Kind::Business, false, k)
    } else {
        return None;
    };
    Some(Route {
        kind,
        key: partition_value(key),
        quarantined,
    })
}

/// A partition value safe as a folder name: letters, digits, `_` and `-` kept, anything else `_`, at most
/// 64 characters (a publisher chooses subjects; a subject must not name a path outside the lake).
fn partition_value(raw: &str) -> String {
    let v: String = raw
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if v.is_empty() { "_".into() } else { v }
}

/// The date partition of a payload: the `YYYY-MM-DD` of its `ts` (event time, so a replay of the same
/// ticks lands in the same folders), or `unknown` when it has none that reads as a date.
pub fn date_of(ts: Option<&str>) -> String {
    match ts.and_then(|t| t.get(..10)) {
        Some(d)
            if d.bytes().enumerate().all(|(i, b)| {
                if i == 4 || i == 7 {
                    b == b'-'
                } else {
                    b.is_ascii_digit()
                }
            }) =>
        {
            d.to_string()
        }
        _ => "unknown".into(),
    }
}

/// One message, as the lake sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The stream it was read from (`replay` offline).
    pub stream: &'a str,
    /// Its sequence in that stream (offline: its position in the replay's output, from 1).
    pub seq: u64,
    /// When the archive received it, µs since the Unix epoch (`None` offline).
    pub arrival_us: Option<i64>,
    /// Its subject.
    pub subject: &'a str,
    /// Its payload, as published.
    pub payload: &'a [u8],
}

/// The fields a payload's JSON gives (all absent when it is not a JSON object).
pub struct Parsed(Option<serde_json::Map<String, Value>>);

impl Parsed {
    /// Parses `payload`.
    pub fn new(payload: &[u8]) -> Parsed {
        match serde_json::from_slice::<Value>(payload) {
            Ok(Value::Object(m)) => Parsed(Some(m)),
            _ => Parsed(None),
        }
    }
    fn get(&self, k: &str) -> Option<&Value> {
        self.0.as_ref()?.get(k)
    }
    /// A string field.
    pub fn str(&self, k: &str) -> Option<&str> {
        self.get(k)?.as_str()
    }
    fn f64(&self, k: &str) -> Option<f64> {
        self.get(k)?.as_f64()
    }
    fn u64(&self, k: &str) -> Option<u64> {
        self.get(k)?.as_u64()
    }
    fn bool(&self, k: &str) -> Option<bool> {
        self.get(k)?.as_bool()
    }
    fn json(&self, k: &str) -> Option<String> {
        self.get(k).map(Value::to_string)
    }
}

/// The version of the lake's schema, written as the `schema_version` key of every file's metadata.
/// Bumped when a column is renamed, removed or changes type (adding a nullable column at the end is not).
pub const SCHEMA_VERSION: &str = "1";

/// The columns every kind starts with.
fn common_fields() -> Vec<Field> {
    vec![
        Field::new("stream", DataType::Utf8, false),
        Field::new("stream_seq", DataType::UInt64, false),
        Field::new(
            "arrival",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("subject", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, false),
    ]
}

/// The Arrow schema of a kind's files.
pub fn schema(kind: Kind) -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    let u = |n: &str| Field::new(n, DataType::UInt64, true);
    let mut fields = common_fields();
    fields.extend(match kind {
        Kind::Ticks => vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("status", DataType::Utf8, false),
            s("pair"),
            s("ts"),
            u("tick_seq"),
            s("source"),
            f("bid"),
            f("ask"),
            f("mid"),
            s("reason"),
            s("detail"),
            s("raw"),
        ],
        Kind::Factors => vec![Field::new("key", DataType::Utf8, false), s("name"), s("ts"), f("value")],
        Kind::Forecasts => vec![
            Field::new("key", DataType::Utf8, false),
            s("pair"),
            s("ts"),
            u("tick_seq"),
            f("mid"),
            s("model"),
            u("model_version"),
            s("config_hash"),
            s("quality"),
            Field::new("warming_up", DataType::Boolean, true),
            s("horizons"),
        ],
        Kind::Alerts => vec![Field::new("key", DataType::Utf8, false), s("type"), s("pair"), s("ts")],
        Kind::Business => vec![
            Field::new("key", DataType::Utf8, false),
            s("type"),
            s("pair"),
            s("reason"),
            s("client"),
        ],
    });
    Arc::new(Schema::new(fields))
}

/// A batch of one kind's rows, column by column.
pub struct Columns {
    kind: Kind,
    stream: StringBuilder,
    seq: UInt64Builder,
    arrival: TimestampMicrosecondBuilder,
    subject: StringBuilder,
    payload: BinaryBuilder,
    key: StringBuilder,
    /// The kind's text columns, in schema order after `key`.
    text: Vec<StringBuilder>,
    floats: Vec<Float64Builder>,
    uints: Vec<UInt64Builder>,
    bools: Vec<BooleanBuilder>,
    rows: usize,
    bytes: usize,
}

/// How many text, float, unsigned and boolean columns a kind has after `key`.
fn shape(kind: Kind) -> (usize, usize, usize, usize) {
    match kind {
        // status pair ts source reason detail raw | bid ask mid | tick_seq
        Kind::Ticks => (7, 3, 1, 0),
        // name ts | value
        Kind::Factors => (2, 1, 0, 0),
        // pair ts model config_hash quality horizons | mid | tick_seq model_version | warming_up
        Kind::Forecasts => (6, 1, 2, 1),
        // type pair ts
        Kind::Alerts => (3, 0, 0, 0),
        // type pair reason client
        Kind::Business => (4, 0, 0, 0),
    }
}

impl Columns {
    /// An empty batch of `kind`.
    pub fn new(kind: Kind) -> Columns {
        let (t, f, u, b) = shape(kind);
        Columns {
            kind,
            stream: StringBuilder::new(),
            seq: UInt64Builder::new(),
            arrival: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            subject: StringBuilder::new(),
            payload: BinaryBuilder::new(),
            key: StringBuilder::new(),
            text: (0..t).map(|_| StringBuilder::new()).collect(),
            floats: (0..f).map(|_| Float64Builder::new()).collect(),
            uints: (0..u).map(|_| UInt64Builder::new()).collect(),
            bools: (0..b).map(|_| BooleanBuilder::new()).collect(),
            rows: 0,
            bytes: 0,
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Roughly the bytes held (payloads and subjects), for rolling by size.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the row of `m` (routed as `route`, its payload parsed as `p`).
    pub fn push(&mut self, m: &Message<'_>, route: &Route, p: &Parsed) {
        self.rows += 1;
        self.bytes += m.payload.len() + m.subject.len() + 48;
        self.stream.append_value(m.stream);
        self.seq.append_value(m.seq);
        self.arrival.append_option(m.arrival_us);
        self.subject.append_value(m.subject);
        self.payload.append_value(m.payload);
        self.key.append_value(&route.key);
        let t = &mut self.text;
        match self.kind {
            Kind::Ticks => {
                let status = if route.quarantined { "quarantined" } else { "received" };
                t[0].append_value(status);
                t[1].append_option(p.str("pair"));
                t[2].append_option(p.str("ts"));
                t[3].append_option(p.str("source"));
                t[4].append_option(p.str("reason"));
                t[5].append_option(p.str("detail"));
                // A received tick's raw form is its payload; a quarantine record carries the raw payload
                // of a tick that could not be read.
                t[6].append_option(p.str("raw"));
                self.floats[0].append_option(p.f64("bid"));
                self.floats[1].append_option(p.f64("ask"));
                self.floats[2].append_option(p.f64("mid"));
                self.uints[0].append_option(p.u64("seq"));
            }
            Kind::Factors => {
                t[0].append_option(p.str("name"));
                t[1].append_option(p.str("ts"));
                self.floats[0].append_option(p.f64("value"));
            }
            Kind::Forecasts => {
                let model = p.get("model");
                let field = |k: &str| model.and_then(|m| m.get(k));
                t[0].append_option(p.str("pair"));
                t[1].append_option(p.str("ts"));
                t[2].append_option(field("name").and_then(Value::as_str));
                t[3].append_option(field("config").and_then(Value::as_str));
                t[4].append_option(p.str("quality"));
                t[5].append_option(p.json("horizons"));
                self.floats[0].append_option(p.f64("mid"));
                self.uints[0].append_option(p.u64("seq"));
                self.uints[1].append_option(field("version").and_then(Value::as_u64));
                self.bools[0].append_option(p.bool("warming_up"));
            }
            Kind::Alerts => {
                t[0].append_option(p.str("type"));
                t[1].append_option(p.str("pair"));
                t[2].append_option(p.str("ts"));
            }
            Kind::Business => {
                t[0].append_option(p.str("type"));
                t[1].append_option(p.str("pair"));
                t[2].append_option(p.str("reason"));
                t[3].append_option(p.str("client"));
            }
        }
    }

    /// The rows as a record batch of [`schema`]`(kind)`; the builders are left empty.
    ///
    /// # Errors
    /// Arrow's, when the columns disagree with the schema (a defect, not an input error).
    pub fn finish(&mut self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.stream.finish()),
            Arc::new(self.seq.finish()),
            Arc::new(self.arrival.finish()),
            Arc::new(self.subject.finish()),
            Arc::new(self.payload.finish()),
            Arc::new(self.key.finish()),
        ];
        let mut text = self.text.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut floats = self.floats.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut uints = self.uints.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        let mut bools = self.bools.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef);
        // Schema order, kind by kind: T = text, F = float, U = unsigned, B = boolean.
        let order: &[u8] = match self.kind {
            Kind::Ticks => b"TTTUTFFFTTT",
            Kind::Factors => b"TTF",
            Kind::Forecasts => b"TTUFTUTTBT",
            Kind::Alerts => b"TTT",
            Kind::Business => b"TTTT",
        };
        for c in order {
            let next = match c {
                b'T' => text.next(),
                b'F' => floats.next(),
                b'U' => uints.next(),
                _ => bools.next(),
            };
            cols.extend(next);
        }
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(schema(self.kind), cols)
    }
}
