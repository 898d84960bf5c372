//! Messages into rows: which kind a subject is, where its row goes (pair and date), and the columns of each
//! kind, built column by column so a batch turns into an Arrow record batch without copying rows.
//!
//! A row depends only on the message's subject and payload (plus its stream position and arrival time), so
//! the live archive and `replay --archive`, which see the same payloads, write the same rows.
//!
//! The archive reads hundreds of thousands of messages a second, so a payload is decoded once, into
//! [`Fields`] that borrow from it (no tree of JSON values, no string copied unless it holds an escape);
//! the rare payload whose fields have unexpected types takes a slower path that gives the same values.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::TimestampMicrosecondBuilder;
use arrow_array::builder::{
    ArrayBuilder, BinaryBuilder, BooleanBuilder, Float64Builder, ListBuilder, NullBufferBuilder, StringBuilder,
    UInt64Builder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::OffsetBuffer;
use arrow_schema::Fields as ArrowFields;
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;
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
    /// Business events, with the client's pseudonym only: the accepted ones in their masked form
    /// (`<prefix>.business.masked.<PAIR>`) and the refused ones' records (`<prefix>.business.quarantine.<PAIR>`).
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
pub struct Route<'a> {
    /// The kind.
    pub kind: Kind,
    /// The partition key: the pair (a factor's name for factors; `_unrouted` for unrouted quarantines).
    /// Borrowed from the subject when it is already safe as a folder name (the usual case).
    pub key: Cow<'a, str>,
    /// For ticks: whether this is the quarantine record (else the tick as received).
    pub quarantined: bool,
}

/// The kind and partition key of `subject` under `prefix`; `None` for subjects the lake does not keep.
pub fn route<'a>(prefix: &str, subject: &'a str) -> Option<Route<'a>> {
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
    } else if let Some(k) = rest.strip_prefix("business.masked.") {
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

/// Whether a character is kept as it is in a partition value.
fn safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// A partition value safe as a folder name: letters, digits, `_` and `-` kept, anything else `_`, at most
/// 64 characters (a publisher chooses subjects; a subject must not name a path outside the lake).
fn partition_value(raw: &str) -> Cow<'_, str> {
    if !raw.is_empty() && raw.len() <= 64 && raw.chars().all(safe) {
        return Cow::Borrowed(raw);
    }
    let v: String = raw.chars().take(64).map(|c| if safe(c) { c } else { '_' }).collect();
    if v.is_empty() { "_".into() } else { v.into() }
}

/// The date partition of a payload: the `YYYY-MM-DD` of its `ts` (event time, so a replay of the same
/// ticks lands in the same folders), or `unknown` when it has none that reads as a date.
pub fn date_of(ts: Option<&str>) -> &str {
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
            d
        }
        _ => "unknown",
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

/// A JSON string borrowed from the payload when it holds no escape (serde copies an `Option<Cow<str>>`
/// always; through this newtype it borrows).
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

fn text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<Text<'de>>::deserialize(d)?.map(|t| t.0))
}

/// A JSON array of strings, each borrowed when it can be.
fn text_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<Cow<'de, str>>>, D::Error> {
    Ok(Option::<Vec<Text<'de>>>::deserialize(d)?.map(|v| v.into_iter().map(|t| t.0).collect()))
}

/// The model stamp of a forecast. A key it does not know refuses the fast decode (the slow path reads
/// the same values), so a forecast that decodes through [`ForecastFields`] has no field the columns miss.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelFields<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    config: Option<Cow<'a, str>>,
    #[serde(default)]
    version: Option<u64>,
    #[serde(borrow, default, deserialize_with = "text")]
    kind: Option<Cow<'a, str>>,
}

/// A forecast as cambio publishes it, and nothing else: every key is one the forecast columns hold (an
/// unknown key, here or in a horizon or the model stamp, refuses it). A payload that reads this way is
/// restated by its row's columns, which is why its row leaves `payload` null.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ForecastFields<'a> {
    #[serde(borrow, rename = "type")]
    kind: Text<'a>,
    #[serde(borrow, default, deserialize_with = "text")]
    pair: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text")]
    ts: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    mid: Option<f64>,
    #[serde(borrow, default)]
    horizons: Option<Vec<HorizonFields<'a>>>,
    #[serde(borrow, default)]
    model: Option<ModelFields<'a>>,
    #[serde(borrow, default, deserialize_with = "text")]
    quality: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "text_list")]
    flags: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default, deserialize_with = "text")]
    drift: Option<Cow<'a, str>>,
    #[serde(default)]
    warming_up: Option<bool>,
}

/// One horizon of a forecast (an element of its `horizons` array), as the row's `horizons` list keeps it.
/// An unknown key refuses the fast decode, as in [`ModelFields`].
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HorizonFields<'a> {
    /// `horizon`, its label (`1step`, `1m`, …).
    #[serde(borrow, default, deserialize_with = "text")]
    pub horizon: Option<Cow<'a, str>>,
    /// `mean`.
    #[serde(default)]
    pub mean: Option<f64>,
    /// `lo80`.
    #[serde(default)]
    pub lo80: Option<f64>,
    /// `hi80`.
    #[serde(default)]
    pub hi80: Option<f64>,
    /// `lo95`.
    #[serde(default)]
    pub lo95: Option<f64>,
    /// `hi95`.
    #[serde(default)]
    pub hi95: Option<f64>,
    /// `warming_up`.
    #[serde(default)]
    pub warming_up: Option<bool>,
}

impl HorizonFields<'static> {
    /// An element read by itself: its fields when it is an object, all absent otherwise.
    fn from_value(v: &Value) -> HorizonFields<'static> {
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        HorizonFields {
            horizon: v
                .get("horizon")
                .and_then(Value::as_str)
                .map(|s| Cow::Owned(s.to_string())),
            mean: f("mean"),
            lo80: f("lo80"),
            hi80: f("hi80"),
            lo95: f("lo95"),
            hi95: f("hi95"),
            warming_up: v.get("warming_up").and_then(Value::as_bool),
        }
    }
}

/// The fields a row reads from a payload, every kind's together: each absent (null in its column) when
/// the payload lacks it or is not a JSON object. Strings borrow from the payload when they can.
#[derive(Debug, Default, Deserialize)]
pub struct Fields<'a> {
    /// `type`.
    #[serde(borrow, default, deserialize_with = "text", rename = "type")]
    pub kind: Option<Cow<'a, str>>,
    /// `pair`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub pair: Option<Cow<'a, str>>,
    /// `ts`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub ts: Option<Cow<'a, str>>,
    /// `seq`.
    #[serde(default)]
    pub seq: Option<u64>,
    /// `source`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub source: Option<Cow<'a, str>>,
    /// `bid`.
    #[serde(default)]
    pub bid: Option<f64>,
    /// `ask`.
    #[serde(default)]
    pub ask: Option<f64>,
    /// `mid`.
    #[serde(default)]
    pub mid: Option<f64>,
    /// `reason`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub reason: Option<Cow<'a, str>>,
    /// `detail`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub detail: Option<Cow<'a, str>>,
    /// `raw`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub raw: Option<Cow<'a, str>>,
    /// `name`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub name: Option<Cow<'a, str>>,
    /// `value`.
    #[serde(default)]
    pub value: Option<f64>,
    /// `model.name`.
    #[serde(skip)]
    pub model_name: Option<Cow<'a, str>>,
    /// `model.config`.
    #[serde(skip)]
    pub model_config: Option<Cow<'a, str>>,
    /// `model.version`.
    #[serde(skip)]
    pub model_version: Option<u64>,
    /// `model.kind`.
    #[serde(skip)]
    pub model_kind: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(super) model: Option<ModelFields<'a>>,
    /// `quality`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub quality: Option<Cow<'a, str>>,
    /// `warming_up`.
    #[serde(default)]
    pub warming_up: Option<bool>,
    /// `horizons`, each element's fields.
    #[serde(borrow, default)]
    pub horizons: Option<Vec<HorizonFields<'a>>>,
    /// `flags`.
    #[serde(borrow, default, deserialize_with = "text_list")]
    pub flags: Option<Vec<Cow<'a, str>>>,
    /// `drift`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub drift: Option<Cow<'a, str>>,
    /// The payload is a forecast whose every field is in these fields ([`Fields::decode_forecast`]): its
    /// row leaves `payload` null.
    #[serde(skip)]
    pub restated: bool,
    /// `client`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub client: Option<Cow<'a, str>>,
    /// `event`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub event: Option<Cow<'a, str>>,
    /// `rate`.
    #[serde(default)]
    pub rate: Option<f64>,
    /// `amount`.
    #[serde(default)]
    pub amount: Option<f64>,
    /// `segment`.
    #[serde(borrow, default, deserialize_with = "text")]
    pub segment: Option<Cow<'a, str>>,
}

impl<'a> Fields<'a> {
    /// Reads the fields of a payload of `kind`.
    pub fn decode_kind(kind: Kind, payload: &'a [u8]) -> Fields<'a> {
        match kind {
            Kind::Forecasts => Fields::decode_forecast(payload),
            _ => Fields::decode(payload),
        }
    }

    /// Reads a forecast's fields: [`Fields::restated`] when the payload is a forecast with no key the
    /// columns miss (every forecast cambio publishes), else what [`Fields::decode`] reads, the payload kept.
    pub fn decode_forecast(payload: &'a [u8]) -> Fields<'a> {
        match serde_json::from_slice::<ForecastFields<'a>>(payload) {
            Ok(f) if f.kind.0 == "forecast" => {
                let m = f.model.unwrap_or_default();
                Fields {
                    kind: Some(f.kind.0),
                    pair: f.pair,
                    ts: f.ts,
                    seq: f.seq,
                    mid: f.mid,
                    model_name: m.name,
                    model_config: m.config,
                    model_version: m.version,
                    model_kind: m.kind,
                    quality: f.quality,
                    warming_up: f.warming_up,
                    horizons: f.horizons,
                    flags: f.flags,
                    drift: f.drift,
                    restated: true,
                    ..Fields::default()
                }
            }
            _ => Fields::decode(payload),
        }
    }

    /// Reads `payload`'s fields.
    pub fn decode(payload: &'a [u8]) -> Fields<'a> {
        // Only an object has fields (serde would read an array positionally into the struct).
        if payload.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Fields::default();
        }
        match serde_json::from_slice::<Fields<'a>>(payload) {
            Ok(mut f) => {
                if let Some(m) = f.model.take() {
                    f.model_name = m.name;
                    f.model_config = m.config;
                    f.model_version = m.version;
                    f.model_kind = m.kind;
                }
                f
            }
            // A field of another type than expected (or a duplicate key): each field read on its own,
            // as JSON values, so the other fields are still kept.
            Err(_) => Fields::from_value(payload),
        }
    }

    /// The slow path: the payload as a JSON value, each field read by itself.
    fn from_value(payload: &[u8]) -> Fields<'static> {
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(payload) else {
            return Fields::default();
        };
        let get = |k: &str| m.get(k);
        let s = |k: &str| get(k).and_then(Value::as_str).map(|v| Cow::Owned(v.to_string()));
        let f = |k: &str| get(k).and_then(Value::as_f64);
        let u = |k: &str| get(k).and_then(Value::as_u64);
        let model = |k: &str| get("model").and_then(|v| v.get(k));
        // An array's elements one by one (one that is not an object gives an element of nulls); anything
        // else than an array, none.
        let horizons = get("horizons")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(HorizonFields::from_value).collect());
        Fields {
            kind: s("type"),
            pair: s("pair"),
            ts: s("ts"),
            seq: u("seq"),
            source: s("source"),
            bid: f("bid"),
            ask: f("ask"),
            mid: f("mid"),
            reason: s("reason"),
            detail: s("detail"),
            raw: s("raw"),
            name: s("name"),
            value: f("value"),
            model_name: model("name").and_then(Value::as_str).map(|v| Cow::Owned(v.to_string())),
            model_config: model("config")
                .and_then(Value::as_str)
                .map(|v| Cow::Owned(v.to_string())),
            model_version: model("version").and_then(Value::as_u64),
            model_kind: model("kind").and_then(Value::as_str).map(|v| Cow::Owned(v.to_string())),
            model: None,
            quality: s("quality"),
            warming_up: get("warming_up").and_then(Value::as_bool),
            horizons,
            flags: get("flags").and_then(Value::as_array).map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|v| Cow::Owned(v.to_string()))
                    .collect()
            }),
            drift: s("drift"),
            restated: false,
            client: s("client"),
            event: s("event"),
            rate: f("rate"),
            amount: f("amount"),
            segment: s("segment"),
        }
    }
}

/// The version of the lake's schema, written as the `schema_version` key of every file's metadata.
/// Bumped when a column is renamed, removed or changes type (adding a nullable column at the end is not).
/// Version 3: `payload` may be null, and is on a forecast's row when the columns hold every field of the
/// message (new forecast columns `model_kind`, `flags`, `drift`). Version 2: a forecast's `horizons` is a
/// list of typed structs (version 1: the array's JSON text).
pub const SCHEMA_VERSION: &str = "3";

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
        Field::new("payload", DataType::Binary, true),
    ]
}

/// Columns whose values are mostly distinct (payloads, JSON, numbers, sequences): written without a
/// dictionary and without page statistics, which would cost time and save nothing. Nested ones by their
/// Parquet path.
pub const PLAIN_COLUMNS: [&str; 17] = [
    "stream_seq",
    "arrival",
    "payload",
    "tick_seq",
    "bid",
    "ask",
    "mid",
    "detail",
    "raw",
    "value",
    "horizons.list.element.mean",
    "horizons.list.element.lo80",
    "horizons.list.element.hi80",
    "horizons.list.element.lo95",
    "horizons.list.element.hi95",
    "rate",
    "amount",
];

/// The fields of a forecast's horizon.
fn horizon_fields() -> ArrowFields {
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    ArrowFields::from(vec![
        Field::new("horizon", DataType::Utf8, true),
        f("mean"),
        f("lo80"),
        f("hi80"),
        f("lo95"),
        f("hi95"),
        Field::new("warming_up", DataType::Boolean, true),
    ])
}

/// The element of the `horizons` list (named `element`, as the Parquet format's lists name it).
fn horizon_element() -> Arc<Field> {
    Arc::new(Field::new("element", DataType::Struct(horizon_fields()), true))
}

/// The element of a forecast's `flags` list.
fn flag_element() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Utf8, true))
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
            Field::new("horizons", DataType::List(horizon_element()), true),
            s("model_kind"),
            Field::new("flags", DataType::List(flag_element()), true),
            s("drift"),
        ],
        Kind::Alerts => vec![Field::new("key", DataType::Utf8, false), s("type"), s("pair"), s("ts")],
        Kind::Business => vec![
            Field::new("key", DataType::Utf8, false),
            s("type"),
            s("pair"),
            s("reason"),
            s("client"),
            s("ts"),
            s("event"),
            f("rate"),
            f("amount"),
            s("segment"),
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
    /// Forecasts' `horizons`.
    horizons: HorizonColumns,
    /// Forecasts' `flags`.
    flags: ListBuilder<StringBuilder>,
    rows: usize,
    bytes: usize,
}

/// The `horizons` list: its elements' columns, where each row's elements end, which rows have a list.
struct HorizonColumns {
    ends: Vec<i32>,
    valid: NullBufferBuilder,
    label: StringBuilder,
    /// mean lo80 hi80 lo95 hi95
    values: [Float64Builder; 5],
    warming_up: BooleanBuilder,
}

impl HorizonColumns {
    fn with_capacity(rows: usize, elements: usize) -> HorizonColumns {
        let mut ends = Vec::with_capacity(rows + 1);
        ends.push(0);
        HorizonColumns {
            ends,
            valid: NullBufferBuilder::new(rows),
            label: StringBuilder::with_capacity(elements, elements * 6),
            values: std::array::from_fn(|_| Float64Builder::with_capacity(elements)),
            warming_up: BooleanBuilder::with_capacity(elements),
        }
    }

    fn push(&mut self, hs: Option<&[HorizonFields<'_>]>) {
        for h in hs.unwrap_or_default() {
            self.label.append_option(h.horizon.as_deref());
            for (b, v) in self.values.iter_mut().zip([h.mean, h.lo80, h.hi80, h.lo95, h.hi95]) {
                b.append_option(v);
            }
            self.warming_up.append_option(h.warming_up);
        }
        // A batch holds at most a roll's rows, each a few horizons: far below i32::MAX elements.
        self.ends.push(i32::try_from(self.label.len()).unwrap_or(i32::MAX));
        self.valid.append(hs.is_some());
    }

    fn finish(&mut self) -> Result<ArrayRef, arrow_schema::ArrowError> {
        let mut children: Vec<ArrayRef> = vec![Arc::new(self.label.finish())];
        children.extend(self.values.iter_mut().map(|b| Arc::new(b.finish()) as ArrayRef));
        children.push(Arc::new(self.warming_up.finish()));
        let elements = StructArray::try_new(horizon_fields(), children, None)?;
        let ends = std::mem::replace(&mut self.ends, vec![0]);
        let offsets = OffsetBuffer::new(ends.into());
        Ok(Arc::new(ListArray::try_new(
            horizon_element(),
            offsets,
            Arc::new(elements),
            self.valid.finish(),
        )?))
    }
}

/// How many text, float, unsigned and boolean columns a kind has after `key`.
fn shape(kind: Kind) -> (usize, usize, usize, usize) {
    match kind {
        // status pair ts source reason detail raw | bid ask mid | tick_seq
        Kind::Ticks => (7, 3, 1, 0),
        // name ts | value
        Kind::Factors => (2, 1, 0, 0),
        // pair ts model config_hash quality model_kind drift | mid | tick_seq model_version | warming_up
        // (and horizons, flags)
        Kind::Forecasts => (7, 1, 2, 1),
        // type pair ts
        Kind::Alerts => (3, 0, 0, 0),
        // type pair reason client ts event segment | rate amount
        Kind::Business => (7, 2, 0, 0),
    }
}

/// How large a batch grew: the next batch of the kind starts with room for as much, so its columns are
/// not copied each time they double.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sizes {
    /// Rows.
    pub rows: usize,
    /// Bytes of the `stream`, `subject`, `payload` and `key` values.
    pub common: [usize; 4],
    /// Bytes of each text column after `key`.
    pub text: Vec<usize>,
    /// Elements of the `horizons` lists.
    pub horizons: usize,
}

impl Columns {
    /// An empty batch of `kind`.
    pub fn new(kind: Kind) -> Columns {
        Columns::with_sizes(kind, &Sizes::default())
    }

    /// An empty batch of `kind` with room for `sizes`.
    pub fn with_sizes(kind: Kind, sizes: &Sizes) -> Columns {
        let (t, f, u, b) = shape(kind);
        let n = sizes.rows;
        let c = &sizes.common;
        let text = |i: usize| StringBuilder::with_capacity(n, sizes.text.get(i).copied().unwrap_or(0));
        Columns {
            kind,
            stream: StringBuilder::with_capacity(n, c[0]),
            seq: UInt64Builder::with_capacity(n),
            arrival: TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC"),
            subject: StringBuilder::with_capacity(n, c[1]),
            payload: BinaryBuilder::with_capacity(n, c[2]),
            key: StringBuilder::with_capacity(n, c[3]),
            text: (0..t).map(text).collect(),
            floats: (0..f).map(|_| Float64Builder::with_capacity(n)).collect(),
            uints: (0..u).map(|_| UInt64Builder::with_capacity(n)).collect(),
            bools: (0..b).map(|_| BooleanBuilder::with_capacity(n)).collect(),
            horizons: HorizonColumns::with_capacity(if kind == Kind::Forecasts { n } else { 0 }, sizes.horizons),
            flags: ListBuilder::with_capacity(StringBuilder::new(), if kind == Kind::Forecasts { n } else { 0 })
                .with_field(flag_element()),
            rows: 0,
            bytes: 0,
        }
    }

    /// The sizes of the rows held (to size the next batch of the kind).
    pub fn sizes(&self) -> Sizes {
        Sizes {
            rows: self.rows,
            common: [
                self.stream.values_slice().len(),
                self.subject.values_slice().len(),
                self.payload.values_slice().len(),
                self.key.values_slice().len(),
            ],
            text: self.text.iter().map(|b| b.values_slice().len()).collect(),
            horizons: self.horizons.label.len(),
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

    /// Appends the row of `m` (routed as `route`, its payload's fields `p`).
    pub fn push(&mut self, m: &Message<'_>, route: &Route<'_>, p: &Fields<'_>) {
        self.rows += 1;
        self.stream.append_value(m.stream);
        self.seq.append_value(m.seq);
        self.arrival.append_option(m.arrival_us);
        self.subject.append_value(m.subject);
        if p.restated {
            // What the typed columns hold: a ts, a few numbers per horizon.
            self.bytes += m.subject.len() + 96 + 56 * p.horizons.as_ref().map_or(0, Vec::len);
            self.payload.append_null();
        } else {
            self.bytes += m.payload.len() + m.subject.len() + 48;
            self.payload.append_value(m.payload);
        }
        self.key.append_value(&route.key);
        let t = &mut self.text;
        match self.kind {
            Kind::Ticks => {
                let status = if route.quarantined { "quarantined" } else { "received" };
                t[0].append_value(status);
                t[1].append_option(p.pair.as_deref());
                t[2].append_option(p.ts.as_deref());
                t[3].append_option(p.source.as_deref());
                t[4].append_option(p.reason.as_deref());
                t[5].append_option(p.detail.as_deref());
                // A received tick's raw form is its payload; a quarantine record carries the raw payload
                // of a tick that could not be read.
                t[6].append_option(p.raw.as_deref());
                self.floats[0].append_option(p.bid);
                self.floats[1].append_option(p.ask);
                self.floats[2].append_option(p.mid);
                self.uints[0].append_option(p.seq);
            }
            Kind::Factors => {
                t[0].append_option(p.name.as_deref());
                t[1].append_option(p.ts.as_deref());
                self.floats[0].append_option(p.value);
            }
            Kind::Forecasts => {
                t[0].append_option(p.pair.as_deref());
                t[1].append_option(p.ts.as_deref());
                t[2].append_option(p.model_name.as_deref());
                t[3].append_option(p.model_config.as_deref());
                t[4].append_option(p.quality.as_deref());
                t[5].append_option(p.model_kind.as_deref());
                t[6].append_option(p.drift.as_deref());
                match &p.flags {
                    Some(flags) => {
                        for f in flags {
                            self.flags.values().append_value(f);
                        }
                        self.flags.append(true);
                    }
                    None => self.flags.append(false),
                }
                self.horizons.push(p.horizons.as_deref());
                self.floats[0].append_option(p.mid);
                self.uints[0].append_option(p.seq);
                self.uints[1].append_option(p.model_version);
                self.bools[0].append_option(p.warming_up);
            }
            Kind::Alerts => {
                t[0].append_option(p.kind.as_deref());
                t[1].append_option(p.pair.as_deref());
                t[2].append_option(p.ts.as_deref());
            }
            Kind::Business => {
                t[0].append_option(p.kind.as_deref());
                t[1].append_option(p.pair.as_deref());
                t[2].append_option(p.reason.as_deref());
                t[3].append_option(p.client.as_deref());
                t[4].append_option(p.ts.as_deref());
                t[5].append_option(p.event.as_deref());
                t[6].append_option(p.segment.as_deref());
                self.floats[0].append_option(p.rate);
                self.floats[1].append_option(p.amount);
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
        // Schema order, kind by kind: T = text, F = float, U = unsigned, B = boolean, H = horizons.
        let order: &[u8] = match self.kind {
            Kind::Ticks => b"TTTUTFFFTTT",
            Kind::Factors => b"TTF",
            Kind::Forecasts => b"TTUFTUTTBHTLT",
            Kind::Alerts => b"TTT",
            Kind::Business => b"TTTTTTFFT",
        };
        for c in order {
            let next = match c {
                b'T' => text.next(),
                b'F' => floats.next(),
                b'U' => uints.next(),
                b'H' => Some(self.horizons.finish()?),
                b'L' => Some(Arc::new(self.flags.finish()) as ArrayRef),
                _ => bools.next(),
            };
            cols.extend(next);
        }
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(schema(self.kind), cols)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast decode and the value-by-value one agree, whatever the payload.
    fn same(payload: &str) {
        let fast = Fields::decode(payload.as_bytes());
        let slow = Fields::from_value(payload.as_bytes());
        let norm = |f: &Fields<'_>| format!("{f:?}").replace("Owned(", "Borrowed(");
        assert_eq!(norm(&fast), norm(&slow), "{payload}");
    }

    #[test]
    fn the_fast_decode_gives_the_values_of_the_slow_one() {
        same(
            r#"{"type":"forecast","pair":"USDMXN","ts":"2024-01-02T10:00:00Z","seq":3,"mid":17.05,"horizons":[{"horizon":"1step","mean":17.1}],"model":{"name":"rls","version":2,"config":"abcd0123"},"quality":"ok","flags":[],"drift":"stable","warming_up":false}"#,
        );
        same(r#"{"pair":"USDMXN","ts":"2024-01-02T10:00:00Z","bid":17,"ask":17.1,"source":"a\"b"}"#);
        same(
            r#"{"type":"business_event","pair":"USDMXN","ts":"2024-03-04T10:00:00Z","client":"0123456789abcdef0123456789abcdef","event":"offered","rate":17.1,"amount":null,"segment":"sme"}"#,
        );
        same(r#"{"type":"quarantined","reason":"malformed","detail":"x","raw":"not json"}"#);
        same(r#"{"horizons":null,"model":null}"#);
        let f = Fields::decode(br#"{"pair":"USDMXN","source":"a\"b"}"#);
        assert!(matches!(f.pair, Some(Cow::Borrowed("USDMXN"))), "{f:?}");
        assert_eq!(f.source.as_deref(), Some("a\"b"));
    }

    #[test]
    fn a_forecast_is_restated_only_when_the_columns_hold_every_field() {
        let cambio = r#"{"type":"forecast","pair":"USDMXN","ts":"2024-01-02T10:00:00Z","seq":null,"mid":17.05,"horizons":[{"horizon":"1step","mean":17.1,"lo80":17,"hi80":17.2,"lo95":16.9,"hi95":17.3,"warming_up":false}],"model":{"name":"rls","version":2,"config":"abcd0123","kind":"ets"},"quality":"ok","flags":["seq_gap"],"drift":"stable","warming_up":false}"#;
        let f = Fields::decode_forecast(cambio.as_bytes());
        assert!(f.restated);
        assert_eq!(f.model_kind.as_deref(), Some("ets"));
        assert_eq!(f.flags, Some(vec![Cow::Borrowed("seq_gap")]));
        assert_eq!(f.drift.as_deref(), Some("stable"));
        assert_eq!(f.horizons.as_ref().map(Vec::len), Some(1));
        // The same values as the general decode, which keeps the payload.
        let g = Fields::decode(cambio.as_bytes());
        assert!(!g.restated);
        assert_eq!(format!("{:?}", Fields { restated: true, ..g }), format!("{f:?}"));
        // A key the columns do not hold, at the top, in a horizon or in the model stamp; another type;
        // not a forecast: the payload is kept.
        for other in [
            cambio.replace(r#""drift""#, r#""note":"x","drift""#),
            cambio.replace(r#""warming_up":false}]"#, r#""warming_up":false,"p50":17.1}]"#),
            cambio.replace(r#""kind":"ets""#, r#""kind":"ets","owner":"desk""#),
            cambio.replace(r#""seq":null"#, r#""seq":-1"#),
            cambio.replace(r#""type":"forecast""#, r#""type":"quote""#),
        ] {
            let f = Fields::decode_forecast(other.as_bytes());
            assert!(!f.restated, "{other}");
            assert_eq!(f.pair.as_deref(), Some("USDMXN"), "{other}");
        }
    }

    #[test]
    fn a_field_of_another_type_leaves_the_others_readable() {
        // `seq` as a float and `mid` as a string: the fast decode refuses the payload, the slow path
        // keeps every other field, as before.
        let f =
            Fields::decode(br#"{"pair":"USDMXN","seq":1.5,"mid":"17","ts":"2024-01-02T10:00:00Z","horizons":[1, 2]}"#);
        assert_eq!(f.pair.as_deref(), Some("USDMXN"));
        assert_eq!(f.ts.as_deref(), Some("2024-01-02T10:00:00Z"));
        assert_eq!((f.seq, f.mid), (None, None));
        // Elements that are not objects: one element of nulls each.
        assert_eq!(
            f.horizons,
            Some(vec![HorizonFields::default(), HorizonFields::default()])
        );
        // Not an object: nothing, not the array's elements taken as fields.
        let a = Fields::decode(br#"["forecast","USDMXN"]"#);
        assert!(a.pair.is_none() && a.kind.is_none());
        assert!(Fields::decode(b"not json").pair.is_none());
    }

    #[test]
    fn partition_values_borrow_when_safe() {
        assert!(matches!(partition_value("USDMXN"), Cow::Borrowed("USDMXN")));
        assert_eq!(partition_value("../x"), "___x");
        assert_eq!(partition_value(""), "_");
        assert_eq!(date_of(Some("2024-01-02T10:00:00Z")), "2024-01-02");
        assert_eq!(date_of(Some("2024/01/02")), "unknown");
    }
}
