//! The `postgres` source: rows of an internal PostgreSQL database, read by a SQL query that takes the last
//! watermark as `$1`, published as ticks or factors.
//!
//! ```toml
//! [[source]]
//! kind = "postgres"
//! name = "rates_db"
//! dsn_env = "RATES_DSN"          # or dsn = "host=… user=… dbname=…" (libpq key=value or postgres:// URL)
//! query = "SELECT ts, value FROM rates WHERE ts > $1 ORDER BY ts LIMIT 10000"
//! watermark = "ts"               # a timestamp, timestamptz, date or integer column of the result
//! target = "tick:USDMXN"         # or "factor:TIIE28", or "tick:{pair}" / "factor:{name}" from a column
//! mid = "value"                  # value columns: mid, or bid and ask (ticks); value (factors)
//! listen = "rates_changed"       # optional: LISTEN on this channel, poll at once on NOTIFY
//! ```
//!
//! A run executes the query with the stored watermark (the lowest value of the column's type on the first
//! run, or `start`), again and again until it returns no row: a `LIMIT` pages through a backfill. Rows must
//! come in watermark order (`ORDER BY`), else the run stops with [`PostgresError::Unordered`] rather than
//! skip rows behind a `LIMIT`. A NULL value is published as a missing value; a row is never dropped.
//!
//! The decoding of PostgreSQL's binary values ([`SqlTime`], [`SqlNumber`], [`Watermark`]'s parameter) is
//! written here for the few types a rate table uses, so no date or decimal crate is needed.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use serde::Deserialize;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Statement};

use crate::time::{format_ts, parse_ts_us};

/// Microseconds from the Unix epoch to PostgreSQL's epoch, 2000-01-01T00:00:00Z.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// Microseconds in a day.
const US_PER_DAY: i64 = 86_400_000_000;

/// The default limit of a connection attempt and of one page's query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Most rows one run reads, over all its pages: a run is bounded even when a query has no `LIMIT`. The
/// next run goes on from the watermark.
pub const MAX_ROWS_PER_RUN: usize = 1_000_000;

type BoxError = Box<dyn StdError + Sync + Send>;

/// Why a `postgres` source cannot run, or a run failed.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    /// Neither `dsn` nor `dsn_env` is set, or both are.
    #[error("a postgres source needs exactly one of `dsn` and `dsn_env`")]
    NoDsn,
    /// `dsn_env` names a variable that is not set.
    #[error("environment variable {var} (dsn_env) is not set")]
    DsnEnv {
        /// The variable.
        var: String,
    },
    /// `target` is not `tick:PAIR`, `factor:NAME`, `tick:{column}` or `factor:{column}`.
    #[error("target `{target}`: expected tick:PAIR, factor:NAME, tick:{{column}} or factor:{{column}}")]
    BadTarget {
        /// The target as configured.
        target: String,
    },
    /// The value columns do not fit the target: a tick needs `mid`, or `bid` and `ask`; a factor `value`.
    #[error("{0}")]
    BadValues(String),
    /// `start` is not a timestamp or an integer as the watermark column needs.
    #[error("start `{start}`: {why}")]
    BadStart {
        /// The text configured (or stored as the watermark).
        start: String,
        /// What was expected.
        why: String,
    },
    /// The server could not be reached or the connection broke: retried with backoff.
    #[error("connection to PostgreSQL failed: {0}")]
    Connect(String),
    /// The server refused the query (syntax, a missing table or column, permissions): not retried.
    #[error("the query failed: {0}")]
    Query(String),
    /// The query does not take exactly one parameter, the watermark, as `$1`.
    #[error("the query takes {count} parameters; it must take exactly one, the watermark, as $1")]
    Params {
        /// How many parameters it takes.
        count: usize,
    },
    /// A column named in the configuration is not in the query's result.
    #[error("column `{name}` ({role}) is not in the query's result (it has: {have})")]
    MissingColumn {
        /// The column.
        name: String,
        /// What it was configured as (`watermark`, `mid`, …).
        role: &'static str,
        /// The result's columns.
        have: String,
    },
    /// A column has a type this source cannot read in its role.
    #[error("column `{name}` ({role}) has type {found}; expected {expected}")]
    ColumnType {
        /// The column.
        name: String,
        /// Its role.
        role: &'static str,
        /// Its SQL type.
        found: String,
        /// The types accepted.
        expected: &'static str,
    },
    /// A row's value could not be read (an infinite timestamp, a NULL watermark or target).
    #[error("row {row}: {why}")]
    BadRow {
        /// The row's position in the page (from 1).
        row: usize,
        /// What was wrong.
        why: String,
    },
    /// Publishing to JetStream, its acknowledgement, or the watermark's KV bucket failed.
    #[error("NATS: {0}")]
    Nats(String),
    /// Rows came out of watermark order: behind a `LIMIT`, rows would be skipped.
    #[error("rows are not in watermark order ({after} after {before}): add ORDER BY {column} to the query")]
    Unordered {
        /// The watermark column.
        column: String,
        /// The earlier row's watermark.
        before: String,
        /// The later row's, which is lower.
        after: String,
    },
}

impl PostgresError {
    /// Whether trying again later may succeed (the connection), as opposed to a configuration or query
    /// error that fails every time until someone fixes it.
    pub fn is_transient(&self) -> bool {
        matches!(self, PostgresError::Connect(_) | PostgresError::Nats(_))
    }

    /// Sorts a driver error: SQLSTATE classes 08 (connection), 40 (transaction rollback), 53 (resources),
    /// 57 (operator intervention: a shutdown) and 58 (system), and errors with no SQLSTATE (I/O, a closed
    /// connection, a timeout), are transient; any other SQLSTATE is the query's fault.
    fn from_driver(e: &tokio_postgres::Error) -> PostgresError {
        match e.as_db_error() {
            Some(db) => {
                let code = db.code().code();
                let text = match db.hint() {
                    Some(h) => format!("{} (SQLSTATE {code}; hint: {h})", db.message()),
                    None => format!("{} (SQLSTATE {code})", db.message()),
                };
                if ["08", "40", "53", "57", "58"].iter().any(|c| code.starts_with(c)) {
                    PostgresError::Connect(text)
                } else {
                    PostgresError::Query(text)
                }
            }
            None => PostgresError::Connect(error_chain(e)),
        }
    }
}

/// An error and its sources, joined by `: ` (the driver's top-level text alone says only "error connecting").
fn error_chain(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        cur = s.source();
    }
    text
}

/// The `[[source]]` keys of a `postgres` source (besides the common `kind`, `name`, schedule).
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection string, libpq `key=value` or a `postgres://` URL. Prefer `dsn_env` for a password.
    #[serde(default)]
    pub dsn: Option<String>,
    /// Environment variable holding the connection string (a secret kept out of the file).
    #[serde(default)]
    pub dsn_env: Option<String>,
    /// The SQL query; `$1` is the last watermark, and rows come in watermark order.
    pub query: String,
    /// The watermark column of the result: timestamp, timestamptz, date, or an integer id.
    pub watermark: String,
    /// The column with the observation's time (timestamp, timestamptz or date); the watermark column when
    /// omitted (then it must be a time).
    #[serde(default)]
    pub time: Option<String>,
    /// `tick:PAIR`, `factor:NAME`, or `tick:{column}` / `factor:{column}` to read the pair or name per row.
    pub target: String,
    /// A tick's mid column.
    #[serde(default)]
    pub mid: Option<String>,
    /// A tick's bid column (with `ask`).
    #[serde(default)]
    pub bid: Option<String>,
    /// A tick's ask column (with `bid`).
    #[serde(default)]
    pub ask: Option<String>,
    /// A factor's value column (`value` when omitted).
    #[serde(default)]
    pub value: Option<String>,
    /// The watermark of the first run (a timestamp or date, or an integer): rows after it are backfilled.
    /// Omitted: from the lowest value of the column's type, so every row.
    #[serde(default)]
    pub start: Option<String>,
    /// A channel to `LISTEN` on: a `NOTIFY` on it polls at once instead of at the next scheduled time.
    #[serde(default)]
    pub listen: Option<String>,
}

/// What a row becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A tick on `fx.ticks.<PAIR>`.
    Tick,
    /// A factor on `fx.factors.<NAME>`.
    Factor,
}

impl Kind {
    /// `tick` or `factor`, as in a target.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tick => "tick",
            Kind::Factor => "factor",
        }
    }
}

/// Where each row goes: a fixed pair or factor name, or one read from a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Tick or factor.
    pub kind: Kind,
    /// The fixed pair or name, or the column holding it.
    pub name: TargetName,
}

/// A target's pair or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetName {
    /// The same for every row.
    Fixed(String),
    /// Read from this column of each row.
    Column(String),
}

impl Target {
    /// Parses `tick:USDMXN`, `factor:TIIE28`, `tick:{pair}` or `factor:{name}`.
    ///
    /// # Errors
    /// [`PostgresError::BadTarget`] for anything else (the pair's or name's contract is checked by the
    /// engine on arrival: a bad one is quarantined, not lost).
    pub fn parse(s: &str) -> Result<Target, PostgresError> {
        let bad = || PostgresError::BadTarget { target: s.to_string() };
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let kind = match kind {
            "tick" => Kind::Tick,
            "factor" => Kind::Factor,
            _ => return Err(bad()),
        };
        let name = match rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
            Some(col) if !col.is_empty() => TargetName::Column(col.to_string()),
            Some(_) => return Err(bad()),
            None if !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'.' && b != b'*' && b != b'>') =>
            {
                TargetName::Fixed(rest.to_string())
            }
            None => return Err(bad()),
        };
        Ok(Target { kind, name })
    }
}

/// A watermark: the last row published, as the query's `$1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Watermark {
    /// A time column's value, microseconds since the Unix epoch (`i64::MIN`: before every time).
    Time(i64),
    /// An integer column's value.
    Id(i64),
}

impl Watermark {
    /// The lowest watermark of a column's kind: the first run reads every row.
    pub fn lowest(time: bool) -> Watermark {
        if time {
            Watermark::Time(i64::MIN)
        } else {
            Watermark::Id(i64::MIN)
        }
    }

    /// Reads a watermark's text (from `start`, or as stored): RFC 3339 or a date for a time column, a
    /// decimal integer for an id column.
    ///
    /// # Errors
    /// [`PostgresError::BadStart`] when the text does not fit the column.
    pub fn parse(text: &str, time: bool) -> Result<Watermark, PostgresError> {
        let bad = |why: &str| PostgresError::BadStart {
            start: text.to_string(),
            why: why.to_string(),
        };
        if time {
            parse_ts_us(text.trim())
                .map(Watermark::Time)
                .map_err(|_| bad("expected a timestamp such as 2024-01-31T00:00:00Z or a date, for a time watermark"))
        } else {
            text.trim()
                .parse::<i64>()
                .map(Watermark::Id)
                .map_err(|_| bad("expected an integer, for an integer watermark"))
        }
    }

    /// The text stored and put in message ids: RFC 3339 (microseconds kept) or the integer.
    pub fn text(&self) -> String {
        match *self {
            Watermark::Time(us) => format_ts(us),
            Watermark::Id(id) => id.to_string(),
        }
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

/// Binds a watermark as `$1`, in the parameter's own type (the server infers it from the column compared).
impl ToSql for Watermark {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match (*self, ty) {
            (Watermark::Time(us), t) if *t == Type::TIMESTAMP || *t == Type::TIMESTAMPTZ => {
                // i64::MIN is PostgreSQL's -infinity, before every timestamp.
                out.put_i64(if us == i64::MIN {
                    i64::MIN
                } else {
                    us.saturating_sub(PG_EPOCH_US)
                });
            }
            (Watermark::Time(us), t) if *t == Type::DATE => {
                let days = if us == i64::MIN {
                    i32::MIN
                } else {
                    i32::try_from((us - PG_EPOCH_US).div_euclid(US_PER_DAY)).unwrap_or(i32::MIN)
                };
                out.put_i32(days);
            }
            (Watermark::Id(id), t) if *t == Type::INT8 => out.put_i64(id),
            (Watermark::Id(id), t) if *t == Type::INT4 => {
                out.put_i32(i32::try_from(id).unwrap_or(if id < 0 { i32::MIN } else { i32::MAX }))
            }
            (Watermark::Id(id), t) if *t == Type::INT2 => {
                out.put_i16(i16::try_from(id).unwrap_or(if id < 0 { i16::MIN } else { i16::MAX }))
            }
            (w, t) => {
                let have = if matches!(w, Watermark::Time(_)) {
                    "a time"
                } else {
                    "an integer"
                };
                return Err(format!("$1 is compared as {t}, but the watermark column is {have}").into());
            }
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        [
            Type::TIMESTAMP,
            Type::TIMESTAMPTZ,
            Type::DATE,
            Type::INT8,
            Type::INT4,
            Type::INT2,
        ]
        .contains(ty)
    }

    to_sql_checked!();
}

/// A timestamp, timestamptz or date value as microseconds since the Unix epoch (a `timestamp` without
/// time zone is read as UTC). Infinite values are refused: they are no observation's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlTime(pub i64);

impl<'a> FromSql<'a> for SqlTime {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        if *ty == Type::DATE {
            let days = i32::from_be_bytes(raw.try_into().map_err(|_| "a date is 4 bytes")?);
            if days == i32::MAX || days == i32::MIN {
                return Err("an infinite date".into());
            }
            return Ok(SqlTime(PG_EPOCH_US + i64::from(days) * US_PER_DAY));
        }
        let us = i64::from_be_bytes(raw.try_into().map_err(|_| "a timestamp is 8 bytes")?);
        if us == i64::MAX || us == i64::MIN {
            return Err("an infinite timestamp".into());
        }
        us.checked_add(PG_EPOCH_US)
            .map(SqlTime)
            .ok_or_else(|| "a timestamp out of range".into())
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMP || *ty == Type::TIMESTAMPTZ || *ty == Type::DATE
    }
}

/// A number column read as f64: float4, float8, int2, int4, int8 or numeric (NUMERIC's `NaN` reads as NaN,
/// which the engine quarantines as non-finite).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SqlNumber(pub f64);

impl<'a> FromSql<'a> for SqlNumber {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let v = match *ty {
            Type::FLOAT8 => f64::from_sql(ty, raw)?,
            Type::FLOAT4 => f64::from(f32::from_sql(ty, raw)?),
            Type::INT2 => f64::from(i16::from_sql(ty, raw)?),
            Type::INT4 => f64::from(i32::from_sql(ty, raw)?),
            Type::INT8 => i64::from_sql(ty, raw)? as f64,
            Type::NUMERIC => numeric_to_f64(raw)?,
            _ => return Err(format!("cannot read {ty} as a number").into()),
        };
        Ok(SqlNumber(v))
    }

    fn accepts(ty: &Type) -> bool {
        NUMBER_TYPES.contains(ty)
    }
}

/// The SQL types [`SqlNumber`] reads.
const NUMBER_TYPES: [Type; 6] = [
    Type::FLOAT8,
    Type::FLOAT4,
    Type::INT2,
    Type::INT4,
    Type::INT8,
    Type::NUMERIC,
];

/// Decodes NUMERIC's binary form: ndigits, weight, sign, dscale (i16 each), then base-10000 digits, the
/// first worth 10000^weight. Through the decimal text, so the f64 is the one nearest the exact value.
fn numeric_to_f64(raw: &[u8]) -> Result<f64, BoxError> {
    let word = |i: usize| -> Result<i16, BoxError> {
        raw.get(2 * i..2 * i + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a truncated numeric".into())
    };
    let (ndigits, weight, sign) = (word(0)?, word(1)?, word(2)? as u16);
    match sign {
        0xC000 => return Ok(f64::NAN),
        0xD000 => return Ok(f64::INFINITY),
        0xF000 => return Ok(f64::NEG_INFINITY),
        0x0000 | 0x4000 => {}
        _ => return Err("a numeric with an unknown sign".into()),
    }
    let mut text = String::with_capacity(8 + 4 * ndigits.max(0) as usize);
    if sign == 0x4000 {
        text.push('-');
    }
    text.push_str("0.");
    for i in 0..ndigits.max(0) as usize {
        let d = word(4 + i)?;
        if !(0..10_000).contains(&d) {
            return Err("a numeric digit out of range".into());
        }
        text.push_str(&format!("{d:04}"));
    }
    // 0.d1d2… is worth 10000^-1 per first digit; the value's first digit is worth 10000^weight.
    text.push_str(&format!("e{}", 4 * (i32::from(weight) + 1)));
    text.parse::<f64>().map_err(|e| e.to_string().into())
}

/// One row, read: where it goes, its time, its values (`None` for NULL) and its watermark.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Tick or factor.
    pub kind: Kind,
    /// The pair or factor name.
    pub name: String,
    /// The observation's time, microseconds since the Unix epoch.
    pub ts_us: i64,
    /// mid, bid, ask (ticks) or value (factors), each `None` when NULL, in [`ValueColumns`]' order.
    pub values: Vec<(&'static str, Option<f64>)>,
    /// The row's watermark.
    pub watermark: Watermark,
}

impl Record {
    /// The message in the contract: a tick `{"pair","ts","mid"|"bid","ask","source"}` or a factor
    /// `{"name","ts","value","source"}`. A NULL is written as `null`, which the engine counts as a missing
    /// value; a non-finite number as the strings the tick parser reads (`"NaN"`, `"Infinity"`).
    pub fn payload(&self, source: &str) -> String {
        let mut out = serde_json::Map::new();
        let key = if self.kind == Kind::Tick { "pair" } else { "name" };
        out.insert(key.into(), self.name.clone().into());
        out.insert("ts".into(), format_ts(self.ts_us).into());
        for (k, v) in &self.values {
            let v = match v {
                None => serde_json::Value::Null,
                Some(x) if x.is_finite() => {
                    serde_json::Number::from_f64(*x).map_or(serde_json::Value::Null, Into::into)
                }
                Some(x) if x.is_nan() => "NaN".into(),
                Some(x) if *x > 0.0 => "Infinity".into(),
                Some(_) => "-Infinity".into(),
            };
            out.insert((*k).into(), v);
        }
        out.insert("source".into(), source.into());
        serde_json::Value::Object(out).to_string()
    }

    /// `Nats-Msg-Id`: `postgres-<source>-<watermark>`, with the pair or name before the watermark when it
    /// comes from a column (rows of several pairs may share a time watermark).
    pub fn msg_id(&self, source: &str, per_row_name: bool) -> String {
        if per_row_name {
            format!("postgres-{source}-{}-{}", self.name, self.watermark)
        } else {
            format!("postgres-{source}-{}", self.watermark)
        }
    }
}

/// The value columns of a target, by role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueColumns(pub Vec<(&'static str, String)>);

impl ValueColumns {
    /// Checks the configured value columns against the target's kind: a tick takes `mid`, or `bid` and
    /// `ask` (`mid` named `mid` when none is given); a factor takes `value` (named `value` by default).
    ///
    /// # Errors
    /// [`PostgresError::BadValues`] when they do not fit.
    pub fn of(cfg: &PostgresConfig, kind: Kind) -> Result<ValueColumns, PostgresError> {
        let bad = |s: &str| Err(PostgresError::BadValues(s.to_string()));
        match kind {
            Kind::Tick => {
                if cfg.value.is_some() {
                    return bad("a tick target takes `mid`, or `bid` and `ask`, not `value`");
                }
                match (&cfg.mid, &cfg.bid, &cfg.ask) {
                    (Some(m), None, None) => Ok(ValueColumns(vec![("mid", m.clone())])),
                    (None, Some(b), Some(a)) => Ok(ValueColumns(vec![("bid", b.clone()), ("ask", a.clone())])),
                    (None, None, None) => Ok(ValueColumns(vec![("mid", "mid".into())])),
                    _ => bad("a tick target takes `mid`, or both `bid` and `ask`"),
                }
            }
            Kind::Factor => {
                if cfg.mid.is_some() || cfg.bid.is_some() || cfg.ask.is_some() {
                    return bad("a factor target takes `value`, not `mid`, `bid` or `ask`");
                }
                Ok(ValueColumns(vec![(
                    "value",
                    cfg.value.clone().unwrap_or_else(|| "value".into()),
                )]))
            }
        }
    }
}

/// The query's result columns resolved once, at prepare time: where each role is, and the watermark's kind.
#[derive(Debug, Clone)]
struct Plan {
    watermark: usize,
    watermark_is_time: bool,
    time: usize,
    name: Option<usize>,
    values: Vec<(&'static str, usize)>,
}

impl Plan {
    fn new(
        cfg: &PostgresConfig,
        target: &Target,
        values: &ValueColumns,
        st: &Statement,
    ) -> Result<Plan, PostgresError> {
        let cols = st.columns();
        let have = || cols.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ");
        let find = |name: &str, role: &'static str| {
            cols.iter()
                .position(|c| c.name() == name)
                .ok_or_else(|| PostgresError::MissingColumn {
                    name: name.to_string(),
                    role,
                    have: have(),
                })
        };
        let type_err = |i: usize, role: &'static str, expected: &'static str| PostgresError::ColumnType {
            name: cols[i].name().to_string(),
            role,
            found: cols[i].type_().to_string(),
            expected,
        };
        let watermark = find(&cfg.watermark, "watermark")?;
        let wt = cols[watermark].type_();
        let watermark_is_time = if <SqlTime as FromSql>::accepts(wt) {
            true
        } else if [Type::INT2, Type::INT4, Type::INT8].contains(wt) {
            false
        } else {
            return Err(type_err(
                watermark,
                "watermark",
                "timestamp, timestamptz, date, smallint, integer or bigint",
            ));
        };
        let time = match &cfg.time {
            Some(t) => find(t, "time")?,
            None if watermark_is_time => watermark,
            None => {
                return Err(PostgresError::BadValues(
                    "an integer watermark needs `time`, the column with each row's time".into(),
                ));
            }
        };
        if !<SqlTime as FromSql>::accepts(cols[time].type_()) {
            return Err(type_err(time, "time", "timestamp, timestamptz or date"));
        }
        let name = match &target.name {
            TargetName::Fixed(_) => None,
            TargetName::Column(c) => {
                let i = find(c, "target")?;
                if !<String as FromSql>::accepts(cols[i].type_()) {
                    return Err(type_err(i, "target", "text or varchar"));
                }
                Some(i)
            }
        };
        let mut vals = Vec::new();
        for (role, col) in &values.0 {
            let i = find(col, role)?;
            if !<SqlNumber as FromSql>::accepts(cols[i].type_()) {
                return Err(type_err(i, role, "double precision, real, numeric or an integer"));
            }
            vals.push((*role, i));
        }
        Ok(Plan {
            watermark,
            watermark_is_time,
            time,
            name,
            values: vals,
        })
    }

    /// Reads one row (`n`: its position in the page, for errors).
    fn read(&self, row: &tokio_postgres::Row, n: usize, target: &Target) -> Result<Record, PostgresError> {
        let bad = |why: String| PostgresError::BadRow { row: n, why };
        let watermark = if self.watermark_is_time {
            let t: Option<SqlTime> = row.try_get(self.watermark).map_err(|e| bad(error_chain(&e)))?;
            Watermark::Time(t.ok_or_else(|| bad("the watermark is NULL".into()))?.0)
        } else {
            let id: Option<SqlNumber> = row.try_get(self.watermark).map_err(|e| bad(error_chain(&e)))?;
            // Integers up to 2^53 are exact in f64; read the integer itself to keep every bit.
            let _ = id.ok_or_else(|| bad("the watermark is NULL".into()))?;
            Watermark::Id(read_int(row, self.watermark).map_err(|e| bad(error_chain(&*e)))?)
        };
        let ts: Option<SqlTime> = row.try_get(self.time).map_err(|e| bad(error_chain(&e)))?;
        let ts_us = ts.ok_or_else(|| bad("the time is NULL".into()))?.0;
        let name = match (&target.name, self.name) {
            (TargetName::Fixed(n), _) => n.clone(),
            (TargetName::Column(c), Some(i)) => {
                let v: Option<String> = row.try_get(i).map_err(|e| bad(error_chain(&e)))?;
                let v = v.ok_or_else(|| bad(format!("the target column `{c}` is NULL")))?;
                // It becomes a subject token and part of a message id.
                if v.is_empty()
                    || v.len() > 32
                    || !v
                        .bytes()
                        .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'))
                {
                    let shown: String = v.chars().take(40).collect();
                    return Err(bad(format!(
                        "target column `{c}` holds `{shown}`: 1 to 32 printable characters with no `.`, `*` or `>`"
                    )));
                }
                v
            }
            (TargetName::Column(c), None) => return Err(bad(format!("the target column `{c}` is not resolved"))),
        };
        let mut values = Vec::with_capacity(self.values.len());
        for (role, i) in &self.values {
            let v: Option<SqlNumber> = row.try_get(*i).map_err(|e| bad(error_chain(&e)))?;
            values.push((*role, v.map(|x| x.0)));
        }
        Ok(Record {
            kind: target.kind,
            name,
            ts_us,
            values,
            watermark,
        })
    }
}

/// An integer column as i64, whatever its width.
fn read_int(row: &tokio_postgres::Row, i: usize) -> Result<i64, BoxError> {
    let ty = row.columns()[i].type_().clone();
    Ok(match ty {
        Type::INT2 => i64::from(row.try_get::<_, i16>(i)?),
        Type::INT4 => i64::from(row.try_get::<_, i32>(i)?),
        _ => row.try_get::<_, i64>(i)?,
    })
}

/// A connected `postgres` source: its client, its prepared query and how to read the result.
pub struct PostgresSource {
    /// The source's name (message ids, the `source` field).
    name: String,
    cfg: PostgresConfig,
    target: Target,
    values: ValueColumns,
    dsn: String,
    conn: Option<Connected>,
    /// The limit of a connection attempt and of one page's query.
    timeout: Duration,
}

/// A live connection with the query prepared on it.
struct Connected {
    client: Client,
    statement: Statement,
    plan: Plan,
    /// NOTIFYs on the `listen` channel, from the connection's driver task.
    notified: Option<tokio::sync::mpsc::Receiver<()>>,
}

impl fmt::Debug for PostgresSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the DSN: it may hold a password.
        f.debug_struct("PostgresSource")
            .field("name", &self.name)
            .field("target", &self.target)
            .finish()
    }
}

/// A page of rows read, in watermark order.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// The rows, read.
    pub records: Vec<Record>,
}

/// The checks that need no connection: the target, the value columns, exactly one of `dsn` and `dsn_env`
/// (the variable is read when the source starts), and `start`'s shape.
///
/// # Errors
/// The first [`PostgresError`] found.
pub fn check(cfg: &PostgresConfig) -> Result<(), PostgresError> {
    let target = Target::parse(&cfg.target)?;
    ValueColumns::of(cfg, target.kind)?;
    if cfg.dsn.is_some() == cfg.dsn_env.is_some() {
        return Err(PostgresError::NoDsn);
    }
    if let Some(start) = &cfg.start {
        // Either reading may apply: the column's type is known only once connected.
        if Watermark::parse(start, true).is_err() && Watermark::parse(start, false).is_err() {
            return Err(PostgresError::BadStart {
                start: start.clone(),
                why: "expected a timestamp, a date or an integer".into(),
            });
        }
    }
    Ok(())
}

impl PostgresSource {
    /// Checks the configuration and resolves the DSN (`dsn`, or the variable `dsn_env` names, read now).
    ///
    /// # Errors
    /// [`PostgresError`] for a bad target, value columns, or a missing DSN.
    pub fn new(name: &str, cfg: PostgresConfig) -> Result<PostgresSource, PostgresError> {
        check(&cfg)?;
        let target = Target::parse(&cfg.target)?;
        let values = ValueColumns::of(&cfg, target.kind)?;
        let dsn = match (&cfg.dsn, &cfg.dsn_env) {
            (Some(d), None) => d.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| PostgresError::DsnEnv { var: var.clone() })?,
            _ => return Err(PostgresError::NoDsn),
        };
        Ok(PostgresSource {
            name: name.to_string(),
            cfg,
            target,
            values,
            dsn,
            conn: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Sets the limit of a connection attempt and of one page's query (default 30 s); past it, the attempt
    /// fails as a connection failure (retried).
    pub fn with_timeout(mut self, timeout: Duration) -> PostgresSource {
        self.timeout = timeout;
        self
    }

    /// The source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the source `LISTEN`s for `NOTIFY`.
    pub fn listens(&self) -> bool {
        self.cfg.listen.is_some()
    }

    /// Whether the target's pair or name comes from a column (then it is part of the message id).
    pub fn per_row_name(&self) -> bool {
        matches!(self.target.name, TargetName::Column(_))
    }

    /// Connects (if not connected), prepares the query and `LISTEN`s. A broken connection is replaced.
    ///
    /// # Errors
    /// [`PostgresError::Connect`] (transient) or a query error (not).
    pub async fn connect(&mut self) -> Result<(), PostgresError> {
        if self.conn.as_ref().is_some_and(|c| !c.client.is_closed()) {
            return Ok(());
        }
        self.conn = None;
        let connecting = tokio_postgres::connect(&self.dsn, tokio_postgres::NoTls);
        let (client, mut connection) = tokio::time::timeout(self.timeout, connecting)
            .await
            .map_err(|_| self.timed_out("connecting"))?
            .map_err(|e| PostgresError::from_driver(&e))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<()>(1);
        let source = self.name.clone();
        // The connection's driver: it must be polled for the client to work; it forwards NOTIFYs.
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(m) = futures_util::StreamExt::next(&mut messages).await {
                match m {
                    Ok(tokio_postgres::AsyncMessage::Notification(_)) => {
                        // A full channel already holds a wake-up: one poll reads every new row.
                        let _ = tx.try_send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(source = %source, error = %error_chain(&e), "postgres connection ended");
                        break;
                    }
                }
            }
        });
        let statement = client
            .prepare(&self.cfg.query)
            .await
            .map_err(|e| PostgresError::from_driver(&e))?;
        if statement.params().len() != 1 {
            return Err(PostgresError::Params {
                count: statement.params().len(),
            });
        }
        let plan = Plan::new(&self.cfg, &self.target, &self.values, &statement)?;
        let notified = match &self.cfg.listen {
            Some(channel) => {
                client
                    .batch_execute(&format!("LISTEN {}", quote_ident(channel)))
                    .await
                    .map_err(|e| PostgresError::from_driver(&e))?;
                Some(rx)
            }
            None => None,
        };
        self.conn = Some(Connected {
            client,
            statement,
            plan,
            notified,
        });
        Ok(())
    }

    /// The watermark a first run starts from: `start`, else the lowest of the column's kind.
    ///
    /// # Errors
    /// [`PostgresError::BadStart`] when `start` does not fit the column; `Connect` before connecting.
    pub fn initial_watermark(&self) -> Result<Watermark, PostgresError> {
        let is_time = self.watermark_is_time()?;
        match &self.cfg.start {
            Some(s) => Watermark::parse(s, is_time),
            None => Ok(Watermark::lowest(is_time)),
        }
    }

    /// Reads a stored watermark's text for this source's column.
    ///
    /// # Errors
    /// [`PostgresError::BadStart`] when it does not fit the column (the column's type changed).
    pub fn parse_watermark(&self, text: &str) -> Result<Watermark, PostgresError> {
        Watermark::parse(text, self.watermark_is_time()?)
    }

    fn watermark_is_time(&self) -> Result<bool, PostgresError> {
        self.conn
            .as_ref()
            .map(|c| c.plan.watermark_is_time)
            .ok_or_else(|| PostgresError::Connect("not connected".into()))
    }

    /// One page: the query run with `after` as `$1`. Empty when nothing is newer.
    ///
    /// # Errors
    /// [`PostgresError`]: transient when the connection broke (it is reconnected next time).
    pub async fn page(&mut self, after: Watermark) -> Result<Page, PostgresError> {
        self.connect().await?;
        let conn = self
            .conn
            .as_ref()
            .ok_or_else(|| PostgresError::Connect("not connected".into()))?;
        let query = tokio::time::timeout(self.timeout, conn.client.query(&conn.statement, &[&after])).await;
        let rows = match query {
            Ok(Ok(rows)) => rows,
            Err(_) => {
                // The query may still run on the server; dropping the connection ends the session.
                self.conn = None;
                return Err(self.timed_out("the query"));
            }
            Ok(Err(e)) => {
                let err = PostgresError::from_driver(&e);
                if err.is_transient() {
                    self.conn = None;
                }
                return Err(err);
            }
        };
        let mut records = Vec::with_capacity(rows.len());
        let mut last = after;
        for (i, row) in rows.iter().enumerate() {
            let r = conn.plan.read(row, i + 1, &self.target)?;
            // Equal watermarks may repeat within a page (ticks of several pairs at one time); a lower one
            // means the query is not ordered.
            if r.watermark < last || (i == 0 && r.watermark <= after) {
                return Err(PostgresError::Unordered {
                    column: self.cfg.watermark.clone(),
                    before: last.text(),
                    after: r.watermark.text(),
                });
            }
            last = r.watermark;
            records.push(r);
        }
        Ok(Page { records })
    }

    fn timed_out(&self, what: &str) -> PostgresError {
        PostgresError::Connect(format!(
            "{what} took longer than the timeout, {} ms",
            self.timeout.as_millis()
        ))
    }

    /// Waits until a `NOTIFY` arrives on the `listen` channel; never returns without `listen` (or once the
    /// connection is gone, until the next run reconnects).
    pub async fn notified(&mut self) {
        match self.conn.as_mut().and_then(|c| c.notified.as_mut()) {
            Some(rx) => {
                if rx.recv().await.is_none() {
                    // The connection ended: the next run reconnects; until then, no wake-ups.
                    if let Some(c) = self.conn.as_mut() {
                        c.notified = None;
                    }
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }
}

/// How a run retries transient failures (the connection, NATS): `attempts` tries in all, waiting `first`,
/// then twice as long each time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Tries in all (at least 1).
    pub attempts: u32,
    /// The first wait.
    pub first: Duration,
}

impl Default for Backoff {
    /// 4 tries over 3.5 s: a server restarting comes back; one that is down fails the run soon.
    fn default() -> Backoff {
        Backoff {
            attempts: 4,
            first: Duration::from_millis(500),
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Messages published and acknowledged as new by the stream.
    pub published: usize,
    /// Messages the stream acknowledged as duplicates of earlier ones (same `Nats-Msg-Id`).
    pub duplicates: usize,
    /// Rows with a NULL value, published as missing values.
    pub missing: usize,
    /// The watermark stored at the end (`None`: nothing was ever published).
    pub watermark: Option<String>,
    /// Transient failures retried (connection, NATS).
    pub retries: u32,
}

/// Where a run publishes: the JetStream context, the watermark bucket and key, the subjects.
pub struct Sink<'a> {
    /// Publishes with acknowledgements.
    pub js: &'a async_nats::jetstream::Context,
    /// The bucket holding each source's watermark.
    pub kv: &'a async_nats::jetstream::kv::Store,
    /// This source's key in it.
    pub key: &'a str,
    /// `fx.ticks.<PAIR>` and `fx.factors.<NAME>` under the configured prefix.
    pub prefix: &'a str,
}

impl PostgresSource {
    /// One run: reads the watermark from the bucket (or starts from `start`), then publishes page after
    /// page until the query returns no row. Each page's messages are published, their acknowledgements
    /// awaited, and only then the page's last watermark is stored: a crash re-publishes at most a page,
    /// which the stream drops as duplicates by `Nats-Msg-Id`. Transient failures are retried with
    /// `backoff`; a query error ends the run at once.
    ///
    /// # Errors
    /// The last error, once retries are spent (transient) or at once (the query's fault).
    pub async fn run_once(&mut self, sink: &Sink<'_>, backoff: Backoff) -> Result<RunReport, PostgresError> {
        let mut report = RunReport::default();
        self.run_into(sink, backoff, &mut report).await?;
        Ok(report)
    }

    /// [`PostgresSource::run_once`], counting into `report` as it goes: what was published before a
    /// failure is counted too.
    ///
    /// # Errors
    /// As [`PostgresSource::run_once`].
    pub async fn run_into(
        &mut self,
        sink: &Sink<'_>,
        backoff: Backoff,
        report: &mut RunReport,
    ) -> Result<(), PostgresError> {
        let retries_before = report.retries;
        let mut wait = backoff.first;
        let mut rows = 0usize;
        loop {
            match self.run_pages(sink, report, &mut rows).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && report.retries - retries_before + 1 < backoff.attempts.max(1) => {
                    report.retries += 1;
                    tracing::warn!(source = %self.name, error = %e, retry = report.retries, wait_ms = wait.as_millis() as u64, "postgres source: retrying");
                    tokio::time::sleep(wait).await;
                    wait = wait.saturating_mul(2);
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn run_pages(
        &mut self,
        sink: &Sink<'_>,
        report: &mut RunReport,
        rows: &mut usize,
    ) -> Result<(), PostgresError> {
        self.connect().await?;
        let stored = sink
            .kv
            .get(sink.key)
            .await
            .map_err(|e| PostgresError::Nats(error_chain(&e)))?;
        let mut after = match stored {
            Some(b) => {
                let text = String::from_utf8_lossy(&b).into_owned();
                report.watermark = Some(text.clone());
                self.parse_watermark(&text)?
            }
            None => self.initial_watermark()?,
        };
        let per_row_name = self.per_row_name();
        // Whether a stream captures each subject: then each message's JetStream acknowledgement is awaited;
        // else (core NATS, as the other kinds do) the connection's flush is the acknowledgement.
        let mut captured: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        while *rows < MAX_ROWS_PER_RUN {
            let page = self.page(after).await?;
            let Some(last) = page.records.last().map(|r| r.watermark) else {
                return Ok(());
            };
            let mut acks = Vec::with_capacity(page.records.len());
            let mut core = 0usize;
            for r in &page.records {
                let subject = match r.kind {
                    Kind::Tick => format!("{}.ticks.{}", sink.prefix, r.name),
                    Kind::Factor => format!("{}.factors.{}", sink.prefix, r.name),
                };
                let mut headers = async_nats::HeaderMap::new();
                headers.insert(
                    crate::nats::headers::MSG_ID,
                    r.msg_id(&self.name, per_row_name).as_str(),
                );
                let in_stream = match captured.get(&subject) {
                    Some(&c) => c,
                    None => {
                        let c = sink.js.stream_by_subject(subject.clone()).await.is_ok();
                        captured.insert(subject.clone(), c);
                        c
                    }
                };
                if in_stream {
                    let ack = sink
                        .js
                        .publish_with_headers(subject, headers, r.payload(&self.name).into())
                        .await
                        .map_err(|e| PostgresError::Nats(error_chain(&e)))?;
                    acks.push(ack);
                } else {
                    sink.js
                        .client()
                        .publish_with_headers(subject, headers, r.payload(&self.name).into())
                        .await
                        .map_err(|e| PostgresError::Nats(error_chain(&e)))?;
                    core += 1;
                }
                report.missing += usize::from(r.values.iter().any(|(_, v)| v.is_none()));
            }
            if core > 0 {
                sink.js
                    .client()
                    .flush()
                    .await
                    .map_err(|e| PostgresError::Nats(error_chain(&e)))?;
                report.published += core;
            }
            for ack in acks {
                let ack = ack.await.map_err(|e| PostgresError::Nats(error_chain(&e)))?;
                if ack.duplicate {
                    report.duplicates += 1;
                } else {
                    report.published += 1;
                }
            }
            let text = last.text();
            sink.kv
                .put(sink.key, text.clone().into())
                .await
                .map_err(|e| PostgresError::Nats(error_chain(&e)))?;
            tracing::info!(source = %self.name, rows = page.records.len(), watermark = %text, "postgres source: page published");
            report.watermark = Some(text);
            *rows += page.records.len();
            after = last;
        }
        Ok(())
    }
}

/// `"name"` with inner quotes doubled: a channel name as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            Target::parse("tick:USDMXN").unwrap(),
            Target {
                kind: Kind::Tick,
                name: TargetName::Fixed("USDMXN".into())
            }
        );
        assert_eq!(
            Target::parse("factor:{name}").unwrap(),
            Target {
                kind: Kind::Factor,
                name: TargetName::Column("name".into())
            }
        );
        for bad in [
            "USDMXN",
            "quote:USDMXN",
            "tick:",
            "tick:{}",
            "factor:a.b",
            "tick:US MXN",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn value_columns_fit_the_kind() {
        let cfg = |mid: Option<&str>, bid: Option<&str>, ask: Option<&str>, value: Option<&str>| PostgresConfig {
            mid: mid.map(Into::into),
            bid: bid.map(Into::into),
            ask: ask.map(Into::into),
            value: value.map(Into::into),
            ..Default::default()
        };
        assert_eq!(
            ValueColumns::of(&cfg(None, None, None, None), Kind::Tick).unwrap().0,
            vec![("mid", "mid".to_string())]
        );
        assert_eq!(
            ValueColumns::of(&cfg(None, Some("b"), Some("a"), None), Kind::Tick)
                .unwrap()
                .0
                .len(),
            2
        );
        assert!(ValueColumns::of(&cfg(None, Some("b"), None, None), Kind::Tick).is_err());
        assert!(ValueColumns::of(&cfg(Some("m"), None, None, None), Kind::Factor).is_err());
        assert_eq!(
            ValueColumns::of(&cfg(None, None, None, None), Kind::Factor).unwrap().0,
            vec![("value", "value".to_string())]
        );
    }

    #[test]
    fn watermarks_round_trip_as_text() {
        let t = Watermark::parse("2024-03-04T10:00:00.000123Z", true).unwrap();
        assert_eq!(Watermark::parse(&t.text(), true).unwrap(), t);
        assert_eq!(
            Watermark::parse("2024-03-04", true).unwrap().text(),
            "2024-03-04T00:00:00.000Z"
        );
        assert_eq!(Watermark::parse("42", false).unwrap(), Watermark::Id(42));
        assert!(Watermark::parse("2024-03-04", false).is_err());
        assert!(Watermark::parse("42x", true).is_err());
    }

    #[test]
    fn watermark_binds_in_the_parameter_type() {
        let enc = |w: Watermark, ty: Type| {
            let mut b = BytesMut::new();
            w.to_sql(&ty, &mut b).map(|_| b.to_vec())
        };
        // 2000-01-02T00:00:00Z is one day after PostgreSQL's epoch.
        let day = Watermark::Time(PG_EPOCH_US + US_PER_DAY);
        assert_eq!(enc(day, Type::TIMESTAMPTZ).unwrap(), US_PER_DAY.to_be_bytes().to_vec());
        assert_eq!(enc(day, Type::DATE).unwrap(), 1i32.to_be_bytes().to_vec());
        assert_eq!(
            enc(Watermark::lowest(true), Type::TIMESTAMP).unwrap(),
            i64::MIN.to_be_bytes().to_vec()
        );
        assert_eq!(enc(Watermark::Id(7), Type::INT4).unwrap(), 7i32.to_be_bytes().to_vec());
        assert_eq!(
            enc(Watermark::lowest(false), Type::INT2).unwrap(),
            i16::MIN.to_be_bytes().to_vec()
        );
        assert!(enc(Watermark::Id(7), Type::TIMESTAMP).is_err());
        assert!(enc(day, Type::INT8).is_err());
    }

    #[test]
    fn times_decode() {
        let ts = SqlTime::from_sql(&Type::TIMESTAMP, &US_PER_DAY.to_be_bytes()).unwrap();
        assert_eq!(format_ts(ts.0), "2000-01-02T00:00:00.000Z");
        let d = SqlTime::from_sql(&Type::DATE, &(-1i32).to_be_bytes()).unwrap();
        assert_eq!(format_ts(d.0), "1999-12-31T00:00:00.000Z");
        assert!(SqlTime::from_sql(&Type::TIMESTAMPTZ, &i64::MAX.to_be_bytes()).is_err());
        assert!(SqlTime::from_sql(&Type::TIMESTAMPTZ, &[0, 1]).is_err());
    }

    /// NUMERIC's binary form, built as PostgreSQL sends it.
    fn numeric(weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut b = Vec::new();
        for w in [digits.len() as i16, weight, sign as i16, dscale] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b
    }

    #[test]
    fn numerics_decode() {
        // 18.5277 = 18 . 5277
        assert_eq!(numeric_to_f64(&numeric(0, 0, 4, &[18, 5277])).unwrap(), 18.5277);
        // -1234567.89 = 123 4567 . 8900
        assert_eq!(
            numeric_to_f64(&numeric(1, 0x4000, 2, &[123, 4567, 8900])).unwrap(),
            -1_234_567.89
        );
        // 0.000012 = . 0000 1200 (weight -2)
        assert_eq!(numeric_to_f64(&numeric(-2, 0, 6, &[1200])).unwrap(), 0.000012);
        assert_eq!(numeric_to_f64(&numeric(0, 0, 0, &[])).unwrap(), 0.0);
        assert!(numeric_to_f64(&numeric(0, 0xC000, 0, &[])).unwrap().is_nan());
        assert!(numeric_to_f64(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(numeric_to_f64(&numeric(0, 0x1234, 0, &[1])).is_err());
    }

    #[test]
    fn payloads_keep_nulls() {
        let r = Record {
            kind: Kind::Tick,
            name: "USDMXN".into(),
            ts_us: PG_EPOCH_US,
            values: vec![("mid", None)],
            watermark: Watermark::Time(PG_EPOCH_US),
        };
        assert_eq!(
            r.payload("db"),
            r#"{"mid":null,"pair":"USDMXN","source":"db","ts":"2000-01-01T00:00:00.000Z"}"#
        );
        assert_eq!(r.msg_id("db", false), "postgres-db-2000-01-01T00:00:00.000Z");
        assert_eq!(r.msg_id("db", true), "postgres-db-USDMXN-2000-01-01T00:00:00.000Z");
        let f = Record {
            kind: Kind::Factor,
            name: "TIIE28".into(),
            values: vec![("value", Some(7.25))],
            ..r
        };
        assert_eq!(
            f.payload("db"),
            r#"{"name":"TIIE28","source":"db","ts":"2000-01-01T00:00:00.000Z","value":7.25}"#
        );
    }
}
