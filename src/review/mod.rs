//! Human review of quarantined ticks, as plain data: a quarantine record read back, the label a person
//! gives it (`bad`: correctly refused; `good`: a real price that was refused), who gave it and when, and the
//! pure choices review makes (which records a filter keeps, which accepted prices surround a refused one).
//!
//! The I/O (the stream that keeps the records, the key-value bucket that keeps the labels) is in
//! `nats::review`; `cambio review` is the command. Labels are for people and batch jobs only: the live
//! engines never see them, so a tick labelled `good` is never fed back into an online model out of order.

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a person decided about a quarantined tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// A real price that the validator refused (a false alarm).
    Good,
    /// Correctly refused: a bad print, a duplicate, an unreadable payload.
    Bad,
}

impl Label {
    /// The label's name on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Good => "good",
            Label::Bad => "bad",
        }
    }

    /// Reads `good` or `bad` (any case).
    ///
    /// # Errors
    /// [`ReviewError::BadLabel`] for anything else.
    pub fn parse(s: &str) -> Result<Label, ReviewError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "good" => Ok(Label::Good),
            "bad" => Ok(Label::Bad),
            _ => Err(ReviewError::BadLabel(s.chars().take(40).collect())),
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What review refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReviewError {
    /// A label that is neither `good` nor `bad`.
    #[error("label `{0}`: good or bad")]
    BadLabel(String),
    /// A key-value entry that is not a label record.
    #[error("label {key}: not a label record: {detail}")]
    BadRecord {
        /// The entry's key.
        key: String,
        /// What could not be read.
        detail: String,
    },
}

/// A quarantine record as published on `<prefix>.quarantine.<PAIR>` (a refused tick) or
/// `<prefix>.quarantine._unrouted` (a message no pair could own), read back leniently: every field a
/// reviewer may need, none required but the reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QuarantineRecord {
    /// The pair, for a refused tick.
    #[serde(default)]
    pub pair: Option<String>,
    /// The subject it came on, for an unrouted message.
    #[serde(default)]
    pub subject: Option<String>,
    /// The tick's time (RFC 3339), when it could be read.
    #[serde(default)]
    pub ts: Option<String>,
    /// The tick's sequence number, when it could be read.
    #[serde(default)]
    pub seq: Option<u64>,
    /// The tick's source, when it could be read.
    #[serde(default)]
    pub source: Option<String>,
    /// Why it was refused (docs/contract.md).
    pub reason: String,
    /// Why, for a person.
    #[serde(default)]
    pub detail: Option<String>,
    /// The bid as read.
    #[serde(default)]
    pub bid: Option<f64>,
    /// The ask as read.
    #[serde(default)]
    pub ask: Option<f64>,
    /// The single rate as read.
    #[serde(default)]
    pub mid: Option<f64>,
    /// The payload of a tick that could not be parsed.
    #[serde(default)]
    pub raw: Option<String>,
}

impl QuarantineRecord {
    /// Reads a quarantine message's payload.
    ///
    /// # Errors
    /// The JSON error when the payload is not a quarantine record.
    pub fn from_json(payload: &[u8]) -> Result<QuarantineRecord, serde_json::Error> {
        serde_json::from_slice(payload)
    }

    /// The refused price: the mid of bid and ask, or the single rate.
    pub fn price(&self) -> Option<f64> {
        match (self.bid, self.ask) {
            (Some(b), Some(a)) => Some(0.5 * (b + a)),
            _ => self.mid,
        }
    }
}

/// A quarantined tick kept in the stream: its id (the stream sequence), where and when it was published,
/// and its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantinedTick {
    /// The stream sequence of the quarantine record: the id `cambio review` shows and labels by.
    pub id: u64,
    /// The subject's last token: the pair, or `_unrouted`.
    pub pair: String,
    /// The subject of the quarantine record.
    pub subject: String,
    /// When the record was stored in the stream (RFC 3339, the server's clock).
    pub published: String,
    /// The refused price (see [`QuarantineRecord::price`]).
    pub price: Option<f64>,
    /// The record.
    pub record: QuarantineRecord,
}

/// A label as stored: what was decided about which quarantined tick, by whom and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "review_label")]
pub struct LabelRecord {
    /// The pair (the quarantine subject's last token).
    pub pair: String,
    /// The quarantined tick's id (its stream sequence).
    pub id: u64,
    /// The quarantine reason it was refused for, kept so labels can be counted by reason alone.
    pub reason: String,
    /// The decision.
    pub label: Label,
    /// A free-text note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Who decided: `--actor`, or the operating-system user.
    pub actor: String,
    /// When (RFC 3339, the wall clock of the machine that labelled).
    pub labelled_at: String,
}

impl LabelRecord {
    /// Reads a stored label.
    ///
    /// # Errors
    /// [`ReviewError::BadRecord`] when the entry is not a label record.
    pub fn from_json(key: &str, bytes: &[u8]) -> Result<LabelRecord, ReviewError> {
        serde_json::from_slice(bytes).map_err(|e| ReviewError::BadRecord {
            key: key.to_string(),
            detail: e.to_string(),
        })
    }
}

/// A quarantined tick with its label, if it has one: what `cambio review list` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reviewed {
    /// The tick.
    #[serde(flatten)]
    pub tick: QuarantinedTick,
    /// Its latest label.
    pub label: Option<LabelRecord>,
}

/// A labelled quarantined tick: what a batch job (the retrain job) reads to measure and tune the
/// validator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelledTick {
    /// The tick, with its reason and raw payload or prices.
    pub tick: QuarantinedTick,
    /// Its latest label, with actor and time.
    pub label: LabelRecord,
}

/// The key of a tick's label in the bucket: `<PAIR>.<id>`. The pair is a subject token, so only
/// characters a key allows are kept (anything else becomes `_`).
pub fn label_key(pair: &str, id: u64) -> String {
    let pair: String = pair
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{pair}.{id}")
}

/// Which quarantined ticks to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this pair.
    pub pair: Option<String>,
    /// Only this reason.
    pub reason: Option<String>,
    /// Only those with no label yet.
    pub unlabelled: bool,
}

impl Filter {
    /// Whether `r` passes.
    pub fn keeps(&self, r: &Reviewed) -> bool {
        self.pair.as_ref().is_none_or(|p| p.eq_ignore_ascii_case(&r.tick.pair))
            && self.reason.as_ref().is_none_or(|x| *x == r.tick.record.reason)
            && (!self.unlabelled || r.label.is_none())
    }
}

/// An accepted price near a quarantined one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    /// The tick's time (RFC 3339).
    pub ts: String,
    /// Its mid price.
    pub price: f64,
    /// Its sequence number, if it had one.
    pub seq: Option<u64>,
    /// Its source.
    pub source: String,
}

/// Picks the `n` accepted prices before and the `n` after a quarantined tick's time from ticks read in
/// stream order, holding at most `2n` of them.
#[derive(Debug, Clone)]
pub struct Surroundings {
    at_us: i64,
    n: usize,
    before: VecDeque<Neighbour>,
    after: Vec<Neighbour>,
}

impl Surroundings {
    /// Around the time `at_us` (µs), `n` on each side.
    pub fn new(at_us: i64, n: usize) -> Surroundings {
        Surroundings {
            at_us,
            n,
            before: VecDeque::with_capacity(n + 1),
            after: Vec::with_capacity(n),
        }
    }

    /// Takes an accepted tick at `ts_us`; true once the `n` after are found (reading can stop).
    pub fn push(&mut self, ts_us: i64, tick: Neighbour) -> bool {
        if self.full() {
            return true;
        }
        if ts_us <= self.at_us {
            self.before.push_back(tick);
            if self.before.len() > self.n {
                self.before.pop_front();
            }
        } else {
            self.after.push(tick);
        }
        self.full()
    }

    /// Whether the `n` after are found.
    pub fn full(&self) -> bool {
        self.after.len() >= self.n
    }

    /// The prices before (oldest first) and after.
    pub fn into_parts(self) -> (Vec<Neighbour>, Vec<Neighbour>) {
        (self.before.into(), self.after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nb(p: f64) -> Neighbour {
        Neighbour {
            ts: String::new(),
            price: p,
            seq: None,
            source: "s".into(),
        }
    }

    #[test]
    fn surroundings_keep_the_last_n_before_and_the_first_n_after() {
        let mut s = Surroundings::new(10, 2);
        let mut done = false;
        for t in 0..20 {
            done = s.push(t, nb(t as f64));
            if done {
                break;
            }
        }
        assert!(done);
        let (b, a) = s.into_parts();
        assert_eq!(b.iter().map(|n| n.price).collect::<Vec<_>>(), vec![9.0, 10.0]);
        assert_eq!(a.iter().map(|n| n.price).collect::<Vec<_>>(), vec![11.0, 12.0]);
    }

    #[test]
    fn labels_parse_and_keys_are_safe() {
        assert_eq!(Label::parse(" Good\n"), Ok(Label::Good));
        assert_eq!(Label::parse("bad"), Ok(Label::Bad));
        assert!(Label::parse("maybe").is_err());
        assert_eq!(label_key("USDMXN", 7), "USDMXN.7");
        assert_eq!(label_key("a*b", 1), "a_b.1");
    }

    #[test]
    fn a_record_reads_back_with_its_price() {
        let r = QuarantineRecord::from_json(
            br#"{"type":"quarantined","pair":"USDMXN","ts":"2024-01-01T00:00:00Z","seq":3,"source":"x","reason":"implausible_jump","detail":"d","bid":19.0,"ask":19.2,"raw":null}"#,
        )
        .unwrap();
        assert_eq!(r.reason, "implausible_jump");
        assert!((r.price().unwrap() - 19.1).abs() < 1e-12);
        let u = QuarantineRecord::from_json(
            br#"{"type":"quarantined","subject":"fx.ticks.x","reason":"bad_subject","raw":"{}"}"#,
        )
        .unwrap();
        assert_eq!(u.raw.as_deref(), Some("{}"));
        assert_eq!(u.price(), None);
    }
}
