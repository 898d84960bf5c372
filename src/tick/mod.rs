//! The wire format: JSON ticks and factors turned into plain values.
//!
//! Parsing never panics and never allocates for a well-formed tick: string fields are borrowed from the
//! payload and copied into fixed-size inline buffers. A payload that cannot be read becomes a
//! [`QuarantineReason`], not an error that stops the stream.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod scan;

use crate::quality::reason::QuarantineReason;
use crate::time::parse_ts_us;

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
    /// A source id of at most [`MAX_SOURCE_LEN`] bytes of printable ASCII; anything else is `None`.
    pub fn new(s: &str) -> Option<Source> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > MAX_SOURCE_LEN || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut bytes = [0u8; MAX_SOURCE_LEN];
        bytes[..b.len()].copy_from_slice(b);
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
        Source::new("unknown").unwrap_or(Source {
            len: 0,
            bytes: [0; MAX_SOURCE_LEN],
        })
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

/// A price field as it may arrive: a number, `null`, or a string (Python's `json.dumps` writes bare `NaN`
/// and `Infinity`, which the pre-pass turns into strings so they are reported as non-finite prices).
#[derive(Deserialize)]
#[serde(untagged)]
enum PriceField<'a> {
    Num(f64),
    #[serde(borrow)]
    Text(&'a str),
}

impl PriceField<'_> {
    fn value(&self) -> Result<f64, QuarantineReason> {
        match self {
            PriceField::Num(v) => Ok(*v),
            PriceField::Text(t) => match t.trim() {
                "NaN" | "nan" => Ok(f64::NAN),
                "Infinity" | "inf" | "+Infinity" => Ok(f64::INFINITY),
                "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
                other => other.parse::<f64>().map_err(|_| QuarantineReason::Malformed),
            },
        }
    }
}

#[derive(Deserialize)]
struct RawTick<'a> {
    #[serde(borrow)]
    pair: &'a str,
    #[serde(borrow)]
    ts: &'a str,
    #[serde(default, borrow)]
    bid: Option<PriceField<'a>>,
    #[serde(default, borrow)]
    ask: Option<PriceField<'a>>,
    #[serde(default, borrow)]
    mid: Option<PriceField<'a>>,
    #[serde(default, borrow)]
    source: Option<&'a str>,
    #[serde(default)]
    seq: Option<u64>,
}

/// Largest payload accepted; anything bigger is hostile or a mistake and is quarantined as malformed.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// Parses one JSON tick. `expected_pair` is the pair named by the subject (or the replayed pair): a tick for
/// another pair is [`QuarantineReason::PairMismatch`].
///
/// # Errors
/// The quarantine reason when the payload is not a readable tick.
pub fn parse_tick(payload: &[u8], expected_pair: Option<Pair>) -> Result<Tick, QuarantineReason> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(QuarantineReason::Malformed);
    }
    match scan::scan(payload) {
        Some(fields) => tick_from_fields(&fields, expected_pair),
        None => parse_tick_general(payload, expected_pair),
    }
}

/// The general path: serde_json with its exact rules (escapes, unknown keys, strings for prices, …).
fn parse_tick_general(payload: &[u8], expected_pair: Option<Pair>) -> Result<Tick, QuarantineReason> {
    let raw: RawTick<'_> = match serde_json::from_slice(payload) {
        Ok(raw) => raw,
        Err(_) => {
            // Python's json module writes NaN/Infinity as bare words; read them so the reason is precise.
            let fixed = quote_non_finite_literals(payload).ok_or(QuarantineReason::Malformed)?;
            return parse_tick_general(&fixed, expected_pair);
        }
    };
    let field = |f: &Option<PriceField<'_>>| f.as_ref().map(|p| p.value()).transpose();
    let fields = scan::Fields {
        pair: raw.pair,
        ts: raw.ts,
        bid: field(&raw.bid)?,
        ask: field(&raw.ask)?,
        mid: field(&raw.mid)?,
        source: raw.source,
        seq: raw.seq,
    };
    tick_from_fields(&fields, expected_pair)
}

fn tick_from_fields(f: &scan::Fields<'_>, expected_pair: Option<Pair>) -> Result<Tick, QuarantineReason> {
    let pair = Pair::parse(f.pair).ok_or(QuarantineReason::Malformed)?;
    if let Some(expected) = expected_pair
        && expected != pair
    {
        return Err(QuarantineReason::PairMismatch);
    }
    let ts_us = parse_ts_us(f.ts).map_err(|_| QuarantineReason::Malformed)?;
    let source = match f.source {
        Some(s) => Source::new(s).ok_or(QuarantineReason::Malformed)?,
        None => Source::default(),
    };
    Ok(Tick {
        pair,
        ts_us,
        bid: f.bid,
        ask: f.ask,
        mid: f.mid,
        source,
        seq: f.seq,
        arrival_us: None,
    })
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` tokens outside strings as JSON strings. Returns `None`
/// when there are none (the payload is malformed for another reason).
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
        if c == b'"' {
            in_string = true;
        }
        out.push(c);
        i += 1;
    }
    changed.then_some(out)
}

#[derive(Deserialize)]
struct RawFactor<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(borrow)]
    ts: &'a str,
    value: f64,
    #[serde(default, borrow)]
    source: Option<&'a str>,
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
    Ok(Factor {
        name: raw.name.to_string(),
        ts_us: parse_ts_us(raw.ts)?,
        value: raw.value,
        source: raw.source.unwrap_or("unknown").to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str =
        r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123Z","bid":24.1021,"ask":24.1150,"source":"oanda","seq":18231}"#;

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

    #[test]
    fn fast_path_agrees_with_serde_json() {
        let cases: &[&str] = &[
            EXAMPLE,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":25.08,"source":"banxico"}"#,
            r#" { "ts" : "2020-03-23T10:00:00Z" , "pair" : "USDMXN" , "bid" : 1 , "ask" : 2e0 } "#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","bid":null,"ask":null,"mid":null,"seq":null}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":-0.0,"seq":0}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1e400}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":01}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1.}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":.5}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":+1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":-1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":1.5}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"seq":18446744073709551616}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"mid":2}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,"extra":[1,2]}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1,}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1} trailing"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":"1.5"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":NaN}"#,
            r#"{"pair":"USDMXN","mid":1}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23"}"#,
            r#"{"pair":"USDMXN","ts":"2020-03-23","mid":1e-3,"bid":1E+2,"ask":3.25e-1}"#,
            r#"{}"#,
            "{\"pair\":\"USDMXN\",\"ts\":\"2020-03-23\",\"mid\":1,\"source\":\"caf\u{e9}\"}",
        ];
        for c in cases {
            let fast = parse_tick(c.as_bytes(), None);
            let general = parse_tick_general(c.as_bytes(), None);
            match (&fast, &general) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.ts_us, b.ts_us, "{c}");
                    assert_eq!(format!("{a:?}"), format!("{b:?}"), "{c}");
                }
                _ => assert_eq!(fast, general, "{c}"),
            }
        }
        assert!(
            scan::scan(EXAMPLE.as_bytes()).is_some(),
            "the contract's example takes the fast path"
        );
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
