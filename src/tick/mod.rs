//! The wire format: JSON ticks and factors turned into plain values.
//!
//! Parsing never panics and never allocates for a well-formed tick: string fields are borrowed from the
//! payload and copied into fixed-size inline buffers. A payload that cannot be read becomes a
//! [`QuarantineReason`], not an error that stops the stream.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub mod detail;
pub mod reason;
mod scan;

use crate::time::parse_ts_us;
pub use reason::{Dimension, QuarantineReason};

/// A currency pair such as `USDMXN`: exactly six uppercase ASCII letters, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair([u8; 6]);

impl Pair {
    /// Parses six uppercase ASCII letters; anything else is `None`.
    pub fn parse(s: &str) -> Option<Pair> {
        let b = s.as_bytes();
        if b.len() != 6 || !b.iter().all(|c| c.is_ascii_uppercase()) {
            return None;
        }
        let mut a = [0u8; 6];
        a.copy_from_slice(b);
        Some(Pair(a))
    }

    /// The pair as text.
    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII uppercase letters.
        std::str::from_utf8(&self.0).unwrap_or("??????")
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pair({})", self.as_str())
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Pair::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("`{s}` is not a currency pair")))
    }
}

/// Longest source id kept; longer ids are malformed (a feed id is short, a long one is hostile).
pub const MAX_SOURCE_LEN: usize = 32;

/// A feed's identifier (`oanda`, `banxico`, …), stored inline so a tick is `Copy` and allocation-free.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    len: u8,
    bytes: [u8; MAX_SOURCE_LEN],
}

impl Source {
    /// The id of a tick that names no source. A constant, so the fast path does not rebuild it per tick.
    pub const UNKNOWN: Source = match Source::from_ascii(b"unknown") {
        Some(s) => s,
        None => panic!("`unknown` is a valid source id"),
    };

    /// A source id of at most [`MAX_SOURCE_LEN`] bytes of printable ASCII; anything else is `None`.
    pub fn new(s: &str) -> Option<Source> {
        Source::from_ascii(s.as_bytes())
    }

    /// [`Source::new`] on bytes, usable in constants.
    const fn from_ascii(b: &[u8]) -> Option<Source> {
        if b.is_empty() || b.len() > MAX_SOURCE_LEN {
            return None;
        }
        let mut bytes = [0u8; MAX_SOURCE_LEN];
        let mut i = 0;
        while i < b.len() {
            if !b[i].is_ascii_graphic() {
                return None;
            }
            bytes[i] = b[i];
            i += 1;
        }
        Some(Source {
            len: b.len() as u8,
            bytes,
        })
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl Default for Source {
    fn default() -> Self {
        Source::UNKNOWN
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Source({})", self.as_str())
    }
}

impl Serialize for Source {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Source::new(&s).ok_or_else(|| serde::de::Error::custom("bad source id"))
    }
}

/// One quote or fixing of a pair, as it arrived. Prices are as sent (possibly missing, NaN or crossed):
/// judging them is the quality module's job, so that the reason can be reported.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Tick {
    /// The currency pair.
    pub pair: Pair,
    /// Event time, microseconds since the epoch (UTC): the only clock the core knows.
    pub ts_us: i64,
    /// Bid price, if quoted.
    pub bid: Option<f64>,
    /// Ask price, if quoted.
    pub ask: Option<f64>,
    /// A single rate (fixings publish one), used when there is no bid/ask.
    pub mid: Option<f64>,
    /// The feed that sent it.
    pub source: Source,
    /// Optional per-source sequence number.
    pub seq: Option<u64>,
    /// When the edge (NATS consumer) received it, microseconds since the epoch; `None` in file replay.
    /// Used for timeliness (arrival lag, future timestamps); set by I/O code, never by the core.
    pub arrival_us: Option<i64>,
}

impl Tick {
    /// The mid price: `(bid+ask)/2` when both sides are present, else `mid`.
    pub fn mid_price(&self) -> Option<f64> {
        match (self.bid, self.ask) {
            (Some(b), Some(a)) => Some(0.5 * (b + a)),
            _ => self.mid,
        }
    }
}

/// A slow covariate observation (policy rate, TIIE, INPC, Fed funds) joined by the model as of each tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Factor {
    /// The factor's name, e.g. `TIIE28`.
    pub name: String,
    /// Observation time (dates are midnight UTC), microseconds since the epoch.
    pub ts_us: i64,
    /// The value (percent for rates, index points for INPC).
    pub value: f64,
    /// The publisher.
    pub source: String,
}

/// Why a payload is not a tick: the quarantine reason, and for a person what was wrong (the field, its
/// value, what was expected), published as the quarantine's `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickError {
    /// The quarantine reason.
    pub reason: QuarantineReason,
    /// What was wrong, in words ([`detail`] has the shared wording).
    pub detail: String,
}

impl TickError {
    /// A `malformed` payload, with what was wrong.
    pub fn malformed(detail: String) -> TickError {
        TickError {
            reason: QuarantineReason::Malformed,
            detail,
        }
    }

    /// A tick for another pair than `expected`.
    pub fn pair_mismatch(got: Pair, expected: Pair) -> TickError {
        TickError {
            reason: QuarantineReason::PairMismatch,
            detail: detail::pair_mismatch(got, expected),
        }
    }
}

impl fmt::Display for TickError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason.name(), self.detail)
    }
}

/// A price written as text: a JSON string, or a CSV cell. Both formats read it with [`read_price_text`],
/// so the same text gets the same outcome in either.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriceText {
    /// Empty, or a placeholder for "no value" (`.` as FRED writes, `N/A`, `NA`, `null`, `-`): the tick has
    /// no such price (`missing_value` if it needed it).
    Missing,
    /// A number, possibly not finite (`NaN`, `Infinity`, `inf`, `1e400`): judged by the quality checks,
    /// which quarantine a non-finite one as `non_finite_price`.
    Value(f64),
    /// Anything else: `malformed`.
    Unreadable,
}

/// Reads a price written as text (surrounding spaces ignored). Every spelling Rust's `f64` parser accepts is
/// a number, including `NaN`, `inf` and `Infinity` in any case and values that overflow to infinity.
pub fn read_price_text(text: &str) -> PriceText {
    let t = text.trim();
    if matches!(t, "" | "." | "N/A" | "NA" | "null" | "-") {
        return PriceText::Missing;
    }
    match t.parse::<f64>() {
        Ok(v) => PriceText::Value(v),
        Err(_) => PriceText::Unreadable,
    }
}

/// A price field as it may arrive: a number, `null`, or a string (Python's `json.dumps` writes bare `NaN`
/// and `Infinity`, and a number too large for `f64` such as `1e400` cannot be read as one: the pre-pass
/// turns both into strings, so they are reported as non-finite prices as in CSV).
#[derive(Deserialize)]
#[serde(untagged)]
enum PriceField<'a> {
    Num(f64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

/// The value of an optional price field named `name`.
fn price(name: &str, field: &Option<PriceField<'_>>) -> Result<Option<f64>, TickError> {
    match field {
        None => Ok(None),
        Some(PriceField::Num(v)) => Ok(Some(*v)),
        Some(PriceField::Text(t)) => match read_price_text(t.as_ref()) {
            PriceText::Missing => Ok(None),
            PriceText::Value(v) => Ok(Some(v)),
            PriceText::Unreadable => Err(TickError::malformed(detail::bad_price(name, t))),
        },
    }
}

/// A tick's fields as serde reads them. Text is borrowed from the payload unless it holds a JSON escape
/// (`\\`, `\"`, `\u004d`), which must read like any other string: a source id may contain `\` or `"`,
/// and the contract's writer escapes them.
#[derive(Deserialize)]
struct RawTick<'a> {
    #[serde(borrow)]
    pair: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    #[serde(default, borrow)]
    bid: Option<PriceField<'a>>,
    #[serde(default, borrow)]
    ask: Option<PriceField<'a>>,
    #[serde(default, borrow)]
    mid: Option<PriceField<'a>>,
    #[serde(default, borrow)]
    source: Option<Cow<'a, str>>,
    #[serde(default)]
    seq: Option<u64>,
    /// When the tick reached cambio (RFC 3339), written by `cambio record` so a recorded incident replays
    /// with the timeliness it had live.
    #[serde(default, borrow)]
    arrival: Option<Cow<'a, str>>,
}

/// Largest payload accepted; anything bigger is hostile or a mistake and is quarantined as malformed.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// Parses one JSON tick. `expected_pair` is the pair named by the subject (or the replayed pair): a tick for
/// another pair is [`QuarantineReason::PairMismatch`].
///
/// # Errors
/// The quarantine reason when the payload is not a readable tick ([`parse_tick_detailed`] also says why).
#[inline]
pub fn parse_tick(payload: &[u8], expected_pair: Option<Pair>) -> Result<Tick, QuarantineReason> {
    parse_tick_detailed(payload, expected_pair).map_err(|e| e.reason)
}

/// [`parse_tick`], with what was wrong when the payload is not a tick (the quarantine's `detail`). The
/// common tick takes the same fast path; the words are only written for a refused payload.
///
/// # Errors
/// [`TickError`]: the quarantine reason and its detail.
#[inline]
pub fn parse_tick_detailed(payload: &[u8], expected_pair: Option<Pair>) -> Result<Tick, TickError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(TickError::malformed(format!(
            "payload of {} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit",
            payload.len()
        )));
    }
    match scan::scan(payload) {
        Some(tick) => match expected_pair {
            Some(expected) if expected != tick.pair => Err(TickError::pair_mismatch(tick.pair, expected)),
            _ => Ok(tick),
        },
        None => parse_tick_general(payload, expected_pair),
    }
}

/// The fields of a tick as written on the wire, before the pair, timestamp and source are read.
struct Fields<'a> {
    pair: &'a str,
    ts: &'a str,
    bid: Option<f64>,
    ask: Option<f64>,
    mid: Option<f64>,
    source: Option<&'a str>,
    seq: Option<u64>,
    arrival: Option<&'a str>,
}

/// The general path: serde_json with its exact rules (escapes, unknown keys, strings for prices, …).
fn parse_tick_general(payload: &[u8], expected_pair: Option<Pair>) -> Result<Tick, TickError> {
    let raw: RawTick<'_> = match serde_json::from_slice(payload) {
        Ok(raw) => raw,
        Err(e) => {
            // Python's json module writes NaN/Infinity as bare words, and a number past f64's range cannot be
            // read as one: quote them so the reason is precise (and the same as in CSV).
            return match quote_non_finite_literals(payload) {
                Some(fixed) => parse_tick_general(&fixed, expected_pair),
                None => Err(TickError::malformed(not_a_tick(payload, &e))),
            };
        }
    };
    let fields = Fields {
        pair: &raw.pair,
        ts: &raw.ts,
        bid: price("bid", &raw.bid)?,
        ask: price("ask", &raw.ask)?,
        mid: price("mid", &raw.mid)?,
        source: raw.source.as_deref(),
        seq: raw.seq,
        arrival: raw.arrival.as_deref(),
    };
    tick_from_fields(&fields, expected_pair)
}

/// Why serde_json refused a payload, in words: its message names the field or the position.
fn not_a_tick(payload: &[u8], e: &serde_json::Error) -> String {
    if payload.starts_with(b"\xef\xbb\xbf") {
        return "the payload starts with a byte-order mark (U+FEFF), which JSON does not allow".into();
    }
    format!("not a JSON tick object with pair, ts and prices: {e}")
}

fn tick_from_fields(f: &Fields<'_>, expected_pair: Option<Pair>) -> Result<Tick, TickError> {
    let pair = Pair::parse(f.pair).ok_or_else(|| TickError::malformed(detail::bad_pair(f.pair)))?;
    if let Some(expected) = expected_pair
        && expected != pair
    {
        return Err(TickError::pair_mismatch(pair, expected));
    }
    let ts_us = parse_ts_us(f.ts).map_err(|e| TickError::malformed(detail::bad_time("ts", &e)))?;
    let source = match f.source {
        Some(s) => Source::new(s).ok_or_else(|| TickError::malformed(detail::bad_source(s)))?,
        None => Source::UNKNOWN,
    };
    let arrival_us = match f.arrival {
        Some(a) => Some(parse_ts_us(a).map_err(|e| TickError::malformed(detail::bad_time("arrival", &e)))?),
        None => None,
    };
    Ok(Tick {
        pair,
        ts_us,
        bid: f.bid,
        ask: f.ask,
        mid: f.mid,
        source,
        seq: f.seq,
        arrival_us,
    })
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` tokens, and numbers too large for `f64` (`1e400`), outside
/// strings as JSON strings. Returns `None` when there are none (the payload is malformed for another
/// reason).
fn quote_non_finite_literals(payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    let mut in_string = false;
    let mut escaped = false;
    let mut changed = false;
    let mut i = 0;
    while i < payload.len() {
        let c = payload[i];
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        let rest = &payload[i..];
        let token: Option<&[u8]> = [&b"-Infinity"[..], b"Infinity", b"NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t));
        if let Some(t) = token {
            out.push(b'"');
            out.extend_from_slice(t);
            out.push(b'"');
            i += t.len();
            changed = true;
            continue;
        }
        if c == b'-' || c.is_ascii_digit() {
            // The whole run of number characters, so a number is never read from its middle.
            let n = rest
                .iter()
                .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .unwrap_or(rest.len());
            let number = &rest[..n];
            let overflows = is_json_number(number)
                && std::str::from_utf8(number)
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                    .is_some_and(f64::is_infinite);
            if overflows {
                out.push(b'"');
            }
            out.extend_from_slice(number);
            if overflows {
                out.push(b'"');
                changed = true;
            }
            i += n;
            continue;
        }
        if c == b'"' {
            in_string = true;
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

/// Whether `t` is exactly a number in JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(t: &[u8]) -> bool {
    let digits = |i: usize| t[i.min(t.len())..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(t.first() == Some(&b'-'));
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return false;
        }
        i += 1 + n;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return false;
        }
        i += n;
    }
    i == t.len()
}

#[derive(Deserialize)]
struct RawFactor<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    #[serde(borrow)]
    ts: Cow<'a, str>,
    value: f64,
    #[serde(default, borrow)]
    source: Option<Cow<'a, str>>,
}

/// Why a factor message was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FactorError {
    /// Not JSON or missing fields.
    #[error("factor is not valid JSON with name, ts, value: {0}")]
    Malformed(String),
    /// The timestamp is not a date or RFC 3339 time.
    #[error("factor timestamp: {0}")]
    Time(#[from] crate::time::TimeError),
    /// The value is NaN or infinite.
    #[error("factor value is not finite")]
    NonFinite,
    /// The name is empty or too long.
    #[error("factor name must be 1..=32 printable characters")]
    BadName,
    /// The source is empty, too long or not printable ASCII (the rule of a tick's source id).
    #[error("factor source must be 1..=32 printable ASCII characters")]
    BadSource,
}

/// Parses one JSON factor observation.
///
/// # Errors
/// [`FactorError`] saying what is wrong.
pub fn parse_factor(payload: &[u8]) -> Result<Factor, FactorError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(FactorError::Malformed("payload too large".into()));
    }
    let raw: RawFactor<'_> = serde_json::from_slice(payload).map_err(|e| FactorError::Malformed(e.to_string()))?;
    if raw.name.is_empty() || raw.name.len() > 32 || !raw.name.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(FactorError::BadName);
    }
    if !raw.value.is_finite() {
        return Err(FactorError::NonFinite);
    }
    if raw.source.as_deref().is_some_and(|s| Source::new(s).is_none()) {
        return Err(FactorError::BadSource);
    }
    Ok(Factor {
        name: raw.name.to_string(),
        ts_us: parse_ts_us(&raw.ts)?,
        value: raw.value,
        source: raw.source.as_deref().unwrap_or("unknown").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str =
        r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123Z","bid":24.1021,"ask":24.1150,"source":"oanda","seq":18231}"#;

    /// Found by the property test `json_tick_round_trips`: a source id `\` written by the contract's
    /// writer as `"\\"` was refused as malformed, because serde cannot borrow an escaped string.
    #[test]
    fn escaped_strings_read_like_plain_ones() {
        let t = parse_tick(
            br#"{"pair":"USD\u004dXN","ts":"2020-03-09T14:30:00\u005a","bid":"24\u002e1","ask":24.2,"source":"a\\b\"c","arrival":"2020-03-09T14:30:01Z"}"#,
            Pair::parse("USDMXN"),
        )
        .unwrap();
        assert_eq!(
            (t.pair.as_str(), t.source.as_str(), t.bid),
            ("USDMXN", "a\\b\"c", Some(24.1))
        );
        let f = parse_factor(br#"{"name":"TIIE\u0032\u0038","ts":"2020-03-19","value":7.0,"source":"banxico\\mx"}"#)
            .unwrap();
        assert_eq!((f.name.as_str(), f.source.as_str()), ("TIIE28", "banxico\\mx"));
    }

    /// Found by the `factor_json` fuzz target: a 4 KB source of control characters was accepted, and the
    /// contract's writer, escaping it, wrote a factor too large to be read back.
    #[test]
    fn factor_sources_follow_the_source_id_rule() {
        let with_source = |s: &str| {
            let json = serde_json::json!({"name": "TIIE28", "ts": "2020-03-19", "value": 7.0, "source": s});
            parse_factor(json.to_string().as_bytes())
        };
        assert_eq!(with_source("banxico").unwrap().source, "banxico");
        let long = "x".repeat(33);
        for bad in ["", "a b", "\r", long.as_str(), "\u{7f}"] {
            assert_eq!(with_source(bad), Err(FactorError::BadSource), "{bad:?}");
        }
    }

    #[test]
    fn parses_the_contract_example() {
        let t = parse_tick(EXAMPLE.as_bytes(), Pair::parse("USDMXN")).unwrap();
        assert_eq!(t.pair.as_str(), "USDMXN");
        assert_eq!(t.bid, Some(24.1021));
        assert_eq!(t.seq, Some(18231));
        assert_eq!(t.source.as_str(), "oanda");
        assert!((t.mid_price().unwrap() - 24.10855).abs() < 1e-12);
    }

    #[test]
    fn recorded_arrival_is_read() {
        let t = parse_tick(
            br#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00Z","mid":24.1,"arrival":"2020-03-09T14:30:00.250Z"}"#,
            None,
        )
        .unwrap();
        assert_eq!(t.arrival_us, Some(t.ts_us + 250_000));
        let bad = br#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00Z","mid":24.1,"arrival":"soon"}"#;
        assert_eq!(parse_tick(bad, None).unwrap_err(), QuarantineReason::Malformed);
    }

    #[test]
    fn mid_only_fixing() {
        let t = parse_tick(
            br#"{"pair":"USDMXN","ts":"2020-03-23","mid":25.08,"source":"banxico"}"#,
            None,
        )
        .unwrap();
        assert_eq!(t.mid_price(), Some(25.08));
        assert_eq!(t.seq, None);
    }

    #[test]
    fn bad_payloads_get_reasons_not_panics() {
        use QuarantineReason::*;
        let cases: &[(&[u8], QuarantineReason)] = &[
            (b"not json", Malformed),
            (b"\xff\xfe\x00binary", Malformed),
            (b"[1,2,3]", Malformed),
            (br#"{"pair":"usdmxn","ts":"2020-03-09","mid":1}"#, Malformed),
            (br#"{"pair":"USDMXN","ts":"yesterday","mid":1}"#, Malformed),
            (br#"{"pair":"USDMXN","ts":"2020-03-09","mid":"abc"}"#, Malformed),
            (br#"{"pair":"USDMXN","ts":"2020-03-09","mid":true}"#, Malformed),
            (br#"{"pair":"EURUSD","ts":"2020-03-09","mid":1.1}"#, PairMismatch),
        ];
        for (payload, want) in cases {
            assert_eq!(parse_tick(payload, Pair::parse("USDMXN")).unwrap_err(), *want);
        }
        let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(parse_tick(&huge, None).unwrap_err(), Malformed);
    }

    #[test]
    fn python_nan_literals_are_read_as_non_finite() {
        let t = parse_tick(
            br#"{"pair":"USDMXN","ts":"2020-03-09","bid":NaN,"ask":-Infinity}"#,
            None,
        )
        .unwrap();
        assert!(t.bid.unwrap().is_nan());
        assert_eq!(t.ask, Some(f64::NEG_INFINITY));
        let t = parse_tick(
            br#"{"pair":"USDMXN","ts":"2020-03-09","source":"NaN","mid":null}"#,
            None,
        )
        .unwrap();
        assert_eq!(t.source.as_str(), "NaN");
        assert_eq!(t.mid_price(), None);
    }

    /// Both paths on one payload, for no expected pair, the right one and a wrong one: the same outcome,
    /// compared through `Debug` so that `-0.0` and `NaN` count too.
    fn assert_paths_agree(payload: &[u8]) {
        for expected in [None, Pair::parse("USDMXN"), Pair::parse("EURUSD")] {
            let fast = parse_tick_detailed(payload, expected);
            let general = parse_tick_general(payload, expected);
            assert_eq!(
                format!("{fast:?}"),
                format!("{general:?}"),
                "{:?} expecting {expected:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn fast_path_agrees_with_serde_json() {
        let cases: &[&str] = &[
            EXAMPLE,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":25.08,"source":"banxico"}"#,
            r#" { "ts" : "2020-03-23T10:00:00Z" , "pair" : "USDMXN" , "bid" : 1 , "ask" : 2e0 } "#,
            "\t{\n\"pair\"\r:\t\"USDMXN\" ,\n \"ts\":\"2020-03-23\"\r\n}\n",
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\",\"mid\":1}\u{b}",
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\",\"mid\":1}\u{a0}",
            r#"{"pair":"USDMXN","ts":"2020-03-23","bid":null,"ask":null,"mid":null,"seq":null}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":-0.0,"seq":0}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":-0,"bid":0,"ask":-0e0}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1e400}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":-1e400}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1e-400}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1.7976931348623157e308}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":4.9e-324}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":123456789012345678901234567890}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":18446744073709551615,"bid":18446744073709551616}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":-9223372036854775809}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":9007199254740993,"bid":9007199254740993.0}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":0.1234567890123456789012345}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":0.00000000000000000000001}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":01}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":00}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":-01}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":-}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1.}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":.5}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":+1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1e}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1e+}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1E-0,"bid":1e+0,"ask":25e-1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1.5e3x}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":-1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":-0}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":00}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":1.5}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":1.0}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":1e3}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":"1"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":18446744073709551615}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":18446744073709551616}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":99999999999999999999}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"mid":2}"#,
            r#"{"pair":"USDMXN","pair":"USDMXN","ts":"2020-03-23"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","ts":"2020-03-23"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","bid":1,"bid":1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","ask":1,"ask":null}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"a","source":"a"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","seq":1,"seq":1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"extra":[1,2]}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"pairs":1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"sequence":1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"Mid":1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1} trailing"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1}}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":"1.5"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":NaN}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","bid":Infinity,"ask":-Infinity}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":true}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":nul}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":nullx}"#,
            r#"{"pair":"USDMXN","mid":1}"#,
            r#"{"ts":"2020-03-23","mid":1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23"}"#,
            r#"{"pair":null,"ts":"2020-03-23"}"#,
            r#"{"pair":"USDMXN","ts":null}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":null}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1e-3,"bid":1E+2,"ask":3.25e-1}"#,
            r#"{}"#,
            r#"{ }"#,
            r#"{"#,
            r#"}"#,
            r#""#,
            r#"[]"#,
            r#"null"#,
            // Pairs and sources at and around their limits.
            r#"{"pair":"usdmxn","ts":"2020-03-23"}"#,
            r#"{"pair":"USDMX","ts":"2020-03-23"}"#,
            r#"{"pair":"USDMXNN","ts":"2020-03-23"}"#,
            r#"{"pair":"USD MX","ts":"2020-03-23"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":""}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"a b"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"abcdefghijklmnopqrstuvwxyz012345"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"abcdefghijklmnopqrstuvwxyz0123456"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"~!@#$%^&*()_+{}[]|:;'<>,.?/"}"#,
            // Escapes: some decode to valid fields, which only serde_json can see.
            r#"{"pair":"\u0055SDMXN","ts":"2020-03-23"}"#,
            r#"{"p\u0061ir":"USDMXN","ts":"2020-03-23"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23\u005410:00:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"oa\"nda"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"oa\\nda"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"oa\/nda"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"oanda\"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"oanda\n"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"\u00e9"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","source":"\x"}"#,
            // Control characters and non-ASCII inside strings (serde_json refuses raw control characters,
            // so a pair mismatch must not be reported first).
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\",\"mid\":1,\"source\":\"caf\u{e9}\"}",
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\",\"source\":\"oa\u{1}nda\"}",
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\",\"source\":\"oa\tnda\"}",
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\",\"source\":\"oa\u{7f}nda\"}",
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\t\"}",
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\u{0}\"}",
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\u{2028}\"}",
            "{\"pair\":\"USDMX\u{1}\",\"ts\":\"2020-03-23\"}",
            "{\"pair\":\"USDMXÑ\",\"ts\":\"2020-03-23\"}",
            "{\"pair\":\"USDMXN\",\"ts\":\"２020-03-23\"}",
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\",\"mid\":1,\"ünknown\":1}",
            // Timestamps: offsets, fractions of 1 to 9 digits, separators, ranges.
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.1Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.12Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.1234Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.12345Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123456Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.1234567Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.12345678Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123456789Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123456789"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00,5z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09t14:30:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09 14:30:00"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123+01:00"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123-0530"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00+24:00"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00+01:60"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00+01"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00+01:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00ZZ"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T23:59:60Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T24:00:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:60:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-02-30T14:30:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"2024-02-29T14:30:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"1900-02-29T14:30:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-13-09T14:30:00Z"}"#,
            r#"{"pair":"USDMXN","ts":"2020-3-9"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00 "}"#,
            r#"{"pair":"USDMXN","ts":" 2020-03-09"}"#,
            r#"{"pair":"USDMXN","ts":""}"#,
        ];
        for c in cases {
            assert_paths_agree(c.as_bytes());
        }
        // Invalid UTF-8 inside and outside strings.
        for c in [
            &b"{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\",\"source\":\"oa\xffnda\"}"[..],
            b"{\"pair\":\"USDMX\xc3\",\"ts\":\"2020-03-23\"}",
            b"{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\xe2\x80\"}",
            b"{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\"}\xff",
            b"\xef\xbb\xbf{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\"}",
        ] {
            assert_paths_agree(c);
        }
        // These must be answered by the fast path (so the comparisons above test it, not only serde_json).
        for c in [
            EXAMPLE,
            r#"{"pair":"EURUSD","ts":"2014-05-01T00:00:00.292Z","bid":1.38676,"ask":1.38686,"source":"oanda","seq":1}"#,
            r#" { "ts" : "2020-03-23T10:00:00Z" , "pair" : "USDMXN" , "bid" : 1 , "ask" : 2e0 } "#,
            "\t{\n\"pair\"\r:\t\"USDMXN\" ,\n \"ts\":\"2020-03-23\"\r\n}\n",
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":-0,"bid":0,"ask":-0e0}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":123456789012345678901234567890}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":18446744073709551615}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123456789+01:00","source":"~!@#$%^&*()_+{}[]|:;'<>,.?/"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09 14:30","source":"abcdefghijklmnopqrstuvwxyz012345"}"#,
        ] {
            assert!(scan::scan(c.as_bytes()).is_some(), "takes the fast path: {c}");
        }
    }

    /// Random edits of common ticks (bytes replaced, inserted, removed) never make the paths disagree.
    #[test]
    fn fast_path_agrees_with_serde_json_on_mutated_ticks() {
        let seeds = [
            EXAMPLE,
            r#"{"pair":"EURUSD","ts":"2014-05-01T00:00:00.292Z","bid":1.38676,"ask":1.38686,"source":"oanda","seq":1}"#,
            r#"{ "seq" : null , "mid" : -0.5e-3 , "pair" : "USDMXN" , "ts" : "2020-03-09 14:30:00,1234567+01:30" }"#,
        ];
        let alphabet = b"{}[]\":,. \t\n-+0123456789eEnulTZzpairtsbidaskmsoceqUSDMXN\\\x01\x7f\xc3\xa9";
        let mut rng = crate::testkit::Mutator(99);
        let mut fast = 0;
        for seed in seeds {
            for _ in 0..30_000 {
                let t = rng.mutate(seed.as_bytes(), alphabet, 2);
                fast += usize::from(scan::scan(&t).is_some());
                assert_paths_agree(&t);
            }
        }
        // Many edits keep a readable tick (a digit for a digit), so the fast path is exercised.
        assert!(fast > 5_000, "only {fast} mutated ticks took the fast path");
    }

    /// Every refused payload says why, naming the field; the fast path and serde_json word a pair
    /// mismatch the same way.
    #[test]
    fn refusals_say_why() {
        let usdmxn = Pair::parse("USDMXN");
        let why = |p: &[u8]| parse_tick_detailed(p, usdmxn).unwrap_err();
        let e = why(br#"{"pair":"EURUSD","ts":"2020-03-09","mid":1.1}"#);
        assert_eq!(e.reason, QuarantineReason::PairMismatch);
        assert_eq!(e.detail, "pair EURUSD where USDMXN was expected");
        assert_eq!(
            why(br#"{"pair":"usdmxn","ts":"2020-03-09","mid":1}"#).detail,
            "pair `usdmxn` is not six upper-case letters"
        );
        assert_eq!(
            why(br#"{"pair":"USDMXN","ts":"yesterday","mid":1}"#).detail,
            "ts: timestamp `yesterday` is not RFC 3339 / ISO 8601"
        );
        assert_eq!(
            why(br#"{"pair":"USDMXN","ts":"2020-03-09","mid":"abc"}"#).detail,
            "mid `abc` is not a number"
        );
        assert_eq!(
            why(br#"{"pair":"USDMXN","ts":"2020-03-09","mid":1,"source":"a b"}"#).detail,
            "source `a b` is not 1 to 32 printable ASCII characters"
        );
        assert!(
            why(br#"{"pair":"USDMXN","mid":1}"#)
                .detail
                .contains("missing field `ts`")
        );
        assert!(why(b"\xef\xbb\xbf{}").detail.contains("byte-order mark"));
        let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(why(&huge).detail, "payload of 4097 bytes is over the 4096-byte limit");
    }

    /// A number past f64's range is read as the infinity it overflows to (a non-finite price, as CSV reads
    /// it), not refused as malformed; only a number in JSON's grammar is, and never a string's content.
    #[test]
    fn overflowing_numbers_are_non_finite_prices() {
        for (payload, bid, mid) in [
            (
                r#"{"pair":"USDMXN","ts":"2020-03-09","mid":1e400}"#,
                None,
                f64::INFINITY,
            ),
            (
                r#"{"pair":"USDMXN","ts":"2020-03-09","mid":-1E+400}"#,
                None,
                f64::NEG_INFINITY,
            ),
            (
                r#"{"pair":"USDMXN","ts":"2020-03-09","bid":1,"mid":1.5e999,"ask":2}"#,
                Some(1.0),
                f64::INFINITY,
            ),
        ] {
            let t = parse_tick(payload.as_bytes(), None).unwrap();
            assert_eq!((t.bid, t.mid), (bid, Some(mid)), "{payload}");
        }
        for bad in [
            r#"{"pair":"USDMXN","ts":"2020-03-09","mid":1e400x}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09","mid":01e400}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-09","mid":1,"seq":1e400}"#,
        ] {
            assert_eq!(
                parse_tick(bad.as_bytes(), None).unwrap_err(),
                QuarantineReason::Malformed,
                "{bad}"
            );
        }
        let t = parse_tick(br#"{"pair":"USDMXN","ts":"2020-03-09","mid":1,"source":"1e400"}"#, None).unwrap();
        assert_eq!(t.source.as_str(), "1e400");
        for (t, ok) in [
            ("0", true),
            ("-0.5e-3", true),
            ("1E+2", true),
            ("01", false),
            ("1.", false),
            ("-", false),
        ] {
            assert_eq!(is_json_number(t.as_bytes()), ok, "{t}");
        }
    }

    #[test]
    fn price_text_is_read_the_same_everywhere() {
        assert_eq!(read_price_text(" 17.25 "), PriceText::Value(17.25));
        assert_eq!(read_price_text("1e400"), PriceText::Value(f64::INFINITY));
        assert!(matches!(read_price_text("NaN"), PriceText::Value(v) if v.is_nan()));
        assert_eq!(read_price_text("-inf"), PriceText::Value(f64::NEG_INFINITY));
        for missing in ["", " ", ".", "N/A", "NA", "null", "-"] {
            assert_eq!(read_price_text(missing), PriceText::Missing, "{missing:?}");
        }
        for bad in ["abc", "0x10", "1,5", "17 25"] {
            assert_eq!(read_price_text(bad), PriceText::Unreadable, "{bad}");
        }
    }

    #[test]
    fn factors() {
        let f = parse_factor(br#"{"name":"TIIE28","ts":"2020-03-19","value":7.0,"source":"banxico"}"#).unwrap();
        assert_eq!(f.name, "TIIE28");
        assert_eq!(f.value, 7.0);
        assert!(parse_factor(br#"{"name":"","ts":"2020-03-19","value":7.0}"#).is_err());
        assert!(parse_factor(b"{}").is_err());
    }
}
