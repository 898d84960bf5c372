//! Deal events from credit systems, `{"ts","client","event","rate","amount"?,"currency"?,"segment"?}`, read
//! into a typed [`Event`] whose client is already a pseudonym, or refused with a [`RefusalReason`].
//!
//! The client identifier is read, pseudonymised and dropped inside [`parse_event`]: nothing that leaves
//! this module holds it in clear. No refusal's message quotes the payload (a JSON parser's own messages
//! can quote values, which may be the identifier), only field names and positions.

use serde::Serialize;
use serde_json::Value;

use super::mask::{MaskKey, Pseudonym};
use crate::time::parse_ts_us;

/// Longest event accepted, in bytes (an event is a few hundred bytes; more is not an event).
pub const MAX_EVENT_BYTES: usize = 4096;

/// Longest client identifier accepted, in bytes.
pub const MAX_CLIENT_BYTES: usize = 256;

/// What happened to an offer of the bank's rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// The rate was quoted to the client.
    Offered,
    /// The client took it.
    Accepted,
    /// The client declined it.
    Rejected,
}

impl EventKind {
    /// Every kind, in the order figures are reported.
    pub const ALL: [EventKind; 3] = [EventKind::Offered, EventKind::Accepted, EventKind::Rejected];

    /// Its name on the wire and in metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Offered => "offered",
            EventKind::Accepted => "accepted",
            EventKind::Rejected => "rejected",
        }
    }

    fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// A deal event, read and masked.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The event's own time (µs since the epoch): the only clock of the business figures.
    pub ts_us: i64,
    /// The client's pseudonym.
    pub client: Pseudonym,
    /// Offered, accepted or rejected.
    pub kind: EventKind,
    /// The rate quoted.
    pub rate: f64,
    /// The deal's amount, when given (positive).
    pub amount: Option<f64>,
    /// The segment as sent (mapped to the configured list, or `other`, by the book; never reported).
    pub segment: Option<String>,
}

/// Why a business event was refused: a closed list, so it can label a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalReason {
    /// Longer than [`MAX_EVENT_BYTES`].
    Oversized,
    /// Not JSON, or not a JSON object.
    MalformedJson,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong type or shape.
    InvalidField,
    /// `ts` is not an RFC 3339 timestamp.
    BadTs,
    /// `ts` is later than the event's arrival by more than the configured tolerance.
    FutureTs,
    /// `rate` is zero, negative or not finite.
    BadRate,
    /// `amount` is zero, negative or not finite.
    BadAmount,
    /// `event` is not `offered`, `accepted` or `rejected`.
    UnknownEvent,
    /// No masking key is configured, so no event can be pseudonymised.
    NoMaskKey,
    /// The subject's last token is not a pair.
    BadSubject,
    /// Business figures are already kept for `max_pairs` pairs.
    TooManyPairs,
}

impl RefusalReason {
    /// Every reason (metrics report each, zero included).
    pub const ALL: [RefusalReason; 12] = [
        RefusalReason::Oversized,
        RefusalReason::MalformedJson,
        RefusalReason::MissingField,
        RefusalReason::InvalidField,
        RefusalReason::BadTs,
        RefusalReason::FutureTs,
        RefusalReason::BadRate,
        RefusalReason::BadAmount,
        RefusalReason::UnknownEvent,
        RefusalReason::NoMaskKey,
        RefusalReason::BadSubject,
        RefusalReason::TooManyPairs,
    ];

    /// Its snake_case name (records and metrics labels).
    pub fn name(self) -> &'static str {
        match self {
            RefusalReason::Oversized => "oversized",
            RefusalReason::MalformedJson => "malformed_json",
            RefusalReason::MissingField => "missing_field",
            RefusalReason::InvalidField => "invalid_field",
            RefusalReason::BadTs => "bad_ts",
            RefusalReason::FutureTs => "future_ts",
            RefusalReason::BadRate => "bad_rate",
            RefusalReason::BadAmount => "bad_amount",
            RefusalReason::UnknownEvent => "unknown_event",
            RefusalReason::NoMaskKey => "no_mask_key",
            RefusalReason::BadSubject => "bad_subject",
            RefusalReason::TooManyPairs => "too_many_pairs",
        }
    }

    /// Its position in [`RefusalReason::ALL`] (for counters kept in an array).
    pub fn index(self) -> usize {
        RefusalReason::ALL.iter().position(|&r| r == self).unwrap_or(0)
    }
}

/// Why an event was refused, for people. No variant quotes the payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// Longer than [`MAX_EVENT_BYTES`].
    #[error("{bytes} bytes; an event has at most {MAX_EVENT_BYTES}")]
    Oversized {
        /// The payload's length.
        bytes: usize,
    },
    /// The payload does not parse as JSON (where the parser stopped; no content is quoted).
    #[error("not JSON: {what} at line {line} column {column}")]
    Malformed {
        /// The kind of error (`syntax`, `eof`, `io`, `data`).
        what: &'static str,
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
    },
    /// Valid JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A required field is absent (or null).
    #[error("{0} is missing")]
    Missing(&'static str),
    /// A field has the wrong type or shape.
    #[error("{field}: expected {expected}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// `ts` does not parse.
    #[error("ts: expected an RFC 3339 timestamp such as 2024-03-04T10:00:00Z")]
    BadTs,
    /// `ts` is later than the arrival by more than the tolerance.
    #[error("ts is {ahead_secs} s after the event's arrival (tolerance {tolerance_secs} s)")]
    FutureTs {
        /// Seconds ahead of the arrival.
        ahead_secs: i64,
        /// The configured tolerance.
        tolerance_secs: i64,
    },
    /// `rate` is not a positive finite number.
    #[error("rate: must be a positive finite number")]
    BadRate,
    /// `amount` is not a positive finite number.
    #[error("amount: must be a positive finite number")]
    BadAmount,
    /// `event` is a string outside the three kinds.
    #[error("event: expected offered, accepted or rejected")]
    UnknownEvent,
    /// No masking key is configured.
    #[error(
        "no masking key configured: business events are refused until one is set (environment variable CAMBIO_MASK_KEY, or [business] mask_key_file), at least 16 bytes"
    )]
    NoMaskKey,
    /// The subject names no pair.
    #[error("the subject's last token is not a pair (six uppercase letters)")]
    BadSubject,
    /// The pair limit is reached.
    #[error("business figures are already kept for {0} pairs (serve.max_pairs)")]
    TooManyPairs(usize),
}

impl EventError {
    /// The closed reason this error is counted under.
    pub fn reason(&self) -> RefusalReason {
        match self {
            EventError::Oversized { .. } => RefusalReason::Oversized,
            EventError::Malformed { .. } | EventError::NotAnObject => RefusalReason::MalformedJson,
            EventError::Missing(_) => RefusalReason::MissingField,
            EventError::Invalid { .. } => RefusalReason::InvalidField,
            EventError::BadTs => RefusalReason::BadTs,
            EventError::FutureTs { .. } => RefusalReason::FutureTs,
            EventError::BadRate => RefusalReason::BadRate,
            EventError::BadAmount => RefusalReason::BadAmount,
            EventError::UnknownEvent => RefusalReason::UnknownEvent,
            EventError::NoMaskKey => RefusalReason::NoMaskKey,
            EventError::BadSubject => RefusalReason::BadSubject,
            EventError::TooManyPairs(_) => RefusalReason::TooManyPairs,
        }
    }
}

/// A refused event: why, its size, and its client's pseudonym when the client field could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    /// Why.
    pub error: EventError,
    /// The payload's length in bytes.
    pub bytes: usize,
    /// The client's pseudonym, when `client` was a readable string.
    pub client: Option<Pseudonym>,
}

/// Reads one event and pseudonymises its client with `key`. Never panics, whatever the bytes.
///
/// # Errors
/// A [`Refusal`] saying why the event cannot be counted.
pub fn parse_event(payload: &[u8], key: &MaskKey) -> Result<Event, Refusal> {
    let bytes = payload.len();
    let refuse = |error, client| Refusal { error, bytes, client };
    if bytes > MAX_EVENT_BYTES {
        return Err(refuse(EventError::Oversized { bytes }, None));
    }
    let value: Value = serde_json::from_slice(payload).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Io => "io",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "data error",
            serde_json::error::Category::Eof => "unexpected end",
        };
        refuse(
            EventError::Malformed {
                what,
                line: e.line(),
                column: e.column(),
            },
            None,
        )
    })?;
    let Value::Object(map) = value else {
        return Err(refuse(EventError::NotAnObject, None));
    };
    let field = |name: &'static str| map.get(name).filter(|v| !v.is_null());
    // The client first, so every later refusal can carry its pseudonym.
    let client = match field("client") {
        None => return Err(refuse(EventError::Missing("client"), None)),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_CLIENT_BYTES => key.pseudonym(s),
        Some(_) => {
            return Err(refuse(
                EventError::Invalid {
                    field: "client",
                    expected: "a non-empty string of at most 256 bytes",
                },
                None,
            ));
        }
    };
    let with = |error| refuse(error, Some(client));
    let ts_us = match field("ts") {
        None => return Err(with(EventError::Missing("ts"))),
        Some(Value::String(s)) => parse_ts_us(s).map_err(|_| with(EventError::BadTs))?,
        Some(_) => return Err(with(EventError::BadTs)),
    };
    let kind = match field("event") {
        None => return Err(with(EventError::Missing("event"))),
        Some(Value::String(s)) => EventKind::parse(s).ok_or_else(|| with(EventError::UnknownEvent))?,
        Some(_) => {
            return Err(with(EventError::Invalid {
                field: "event",
                expected: "a string: offered, accepted or rejected",
            }));
        }
    };
    let rate = match field("rate") {
        None => return Err(with(EventError::Missing("rate"))),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(r) if r.is_finite() && r > 0.0 => r,
            _ => return Err(with(EventError::BadRate)),
        },
        Some(_) => {
            return Err(with(EventError::Invalid {
                field: "rate",
                expected: "a number",
            }));
        }
    };
    let amount = match field("amount") {
        None => None,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(a) if a.is_finite() && a > 0.0 => Some(a),
            _ => return Err(with(EventError::BadAmount)),
        },
        Some(_) => {
            return Err(with(EventError::Invalid {
                field: "amount",
                expected: "a number",
            }));
        }
    };
    match field("currency") {
        None => {}
        Some(Value::String(c)) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()) => {}
        Some(_) => {
            return Err(with(EventError::Invalid {
                field: "currency",
                expected: "three uppercase letters",
            }));
        }
    }
    let segment = match field("segment") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(with(EventError::Invalid {
                field: "segment",
                expected: "a string",
            }));
        }
    };
    Ok(Event {
        ts_us,
        client,
        kind,
        rate,
        amount,
        segment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MaskKey {
        MaskKey::new(b"a test key of enough bytes").unwrap()
    }

    #[test]
    fn a_full_event_reads() {
        let e = parse_event(
            br#"{"ts":"2024-03-04T10:00:00Z","client":"CLIENT-1","event":"accepted","rate":17.05,"amount":1000,"currency":"USD","segment":"sme","extra":1}"#,
            &key(),
        )
        .unwrap();
        assert_eq!(e.kind, EventKind::Accepted);
        assert_eq!(e.rate, 17.05);
        assert_eq!(e.amount, Some(1000.0));
        assert_eq!(e.segment.as_deref(), Some("sme"));
        assert_eq!(e.client, key().pseudonym("CLIENT-1"));
        assert_eq!(e.ts_us, 1_709_546_400_000_000);
    }

    #[test]
    fn refusals_have_reasons_and_never_quote_the_payload() {
        let cases: [(&[u8], RefusalReason, bool); 14] = [
            (b"{not json CLIENT-SECRET", RefusalReason::MalformedJson, false),
            (b"[\"CLIENT-SECRET\"]", RefusalReason::MalformedJson, false),
            (br#"{"ts":"2024-03-04T10:00:00Z","event":"offered","rate":1}"#, RefusalReason::MissingField, false),
            (br#"{"client":7,"ts":"2024-03-04T10:00:00Z","event":"offered","rate":1}"#, RefusalReason::InvalidField, false),
            (br#"{"client":"CLIENT-SECRET","event":"offered","rate":1}"#, RefusalReason::MissingField, true),
            (br#"{"client":"CLIENT-SECRET","ts":"CLIENT-SECRET","event":"offered","rate":1}"#, RefusalReason::BadTs, true),
            (br#"{"client":"CLIENT-SECRET","ts":"2024-03-04T10:00:00Z","event":"CLIENT-SECRET","rate":1}"#, RefusalReason::UnknownEvent, true),
            (br#"{"client":"CLIENT-SECRET","ts":"2024-03-04T10:00:00Z","event":"offered","rate":-1}"#, RefusalReason::BadRate, true),
            (br#"{"client":"CLIENT-SECRET","ts":"2024-03-04T10:00:00Z","event":"offered","rate":0}"#, RefusalReason::BadRate, true),
            (br#"{"client":"CLIENT-SECRET","ts":"2024-03-04T10:00:00Z","event":"offered","rate":"CLIENT-SECRET"}"#, RefusalReason::InvalidField, true),
            (br#"{"client":"CLIENT-SECRET","ts":"2024-03-04T10:00:00Z","event":"offered","rate":1,"amount":0}"#, RefusalReason::BadAmount, true),
            (br#"{"client":"CLIENT-SECRET","ts":"2024-03-04T10:00:00Z","event":"offered","rate":1,"amount":1e999}"#, RefusalReason::MalformedJson, false),
            (br#"{"client":"CLIENT-SECRET","ts":"2024-03-04T10:00:00Z","event":"offered","rate":1,"currency":"CLIENT-SECRET"}"#, RefusalReason::InvalidField, true),
            (br#"{"client":"CLIENT-SECRET","ts":"2024-03-04T10:00:00Z","event":"offered","rate":1,"segment":["CLIENT-SECRET"]}"#, RefusalReason::InvalidField, true),
        ];
        for (payload, reason, pseudonym) in cases {
            let r = parse_event(payload, &key()).unwrap_err();
            let text = String::from_utf8_lossy(payload);
            assert_eq!(r.error.reason(), reason, "{text}");
            assert_eq!(r.client.is_some(), pseudonym, "{text}");
            assert_eq!(r.bytes, payload.len());
            let message = r.error.to_string();
            assert!(!message.contains("SECRET"), "{message}");
        }
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert_eq!(
            parse_event(&big, &key()).unwrap_err().error.reason(),
            RefusalReason::Oversized
        );
    }

    #[test]
    fn reasons_are_a_closed_list_of_distinct_names() {
        let names: std::collections::BTreeSet<_> = RefusalReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), RefusalReason::ALL.len());
        for (i, r) in RefusalReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(serde_json::to_value(r).unwrap(), r.name());
        }
    }
}
