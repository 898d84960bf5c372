//! `cambio tail`: a pair's outputs (forecasts, quality, drift, alerts, quarantines) as one readable line per
//! message, or the raw JSON, for an operator watching the live service.
//!
//! The messages are read as loose JSON ([`serde_json::Value`]), not as the engine's types: the tool must keep
//! working when the service adds fields or a message is damaged, and it never panics on what it receives.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write;

use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use serde_json::{Map, Value};

use super::ready::{ReadyError, subscriptions_ready};
use crate::nats::Subjects;
use crate::tick::Pair;

/// The output subjects a tail follows, by their kind token.
pub const KINDS: [&str; 5] = ["pred", "quality", "drift", "alert", "quarantine"];

/// Longest raw text printed for an unreadable message (a terminal is not a hex dump).
const MAX_RAW_CHARS: usize = 1000;

/// Why tailing stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    /// A subscription could not be made.
    #[error("nats subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The server did not confirm the subscriptions.
    #[error(transparent)]
    Ready(#[from] ReadyError),
    /// The output could not be written.
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// A tail in progress: subscribed to every output subject of one pair (confirmed by the server).
///
/// One subscription per subject, so no tick traffic is pulled in; each subject's messages print in order,
/// but two subjects' messages may interleave differently from how the service sent them.
pub struct Tail {
    messages: SelectAll<async_nats::Subscriber>,
    subjects: Subjects,
    json: bool,
}

impl Tail {
    /// Subscribes to `pair`'s output subjects; returns once the server routes them here. With `json`, the
    /// raw payloads are printed instead of readable lines.
    ///
    /// # Errors
    /// [`TailError`] when a subscription is refused or not confirmed.
    pub async fn start(
        client: &async_nats::Client,
        subjects: &Subjects,
        pair: Pair,
        json: bool,
    ) -> Result<Tail, TailError> {
        let mut messages = SelectAll::new();
        for subject in [
            subjects.pred(pair),
            subjects.quality(pair),
            subjects.drift(pair),
            subjects.alert(pair),
            subjects.quarantine(pair),
        ] {
            messages.push(client.subscribe(subject).await?);
        }
        subscriptions_ready(client).await?;
        tracing::info!(pair = %pair, prefix = subjects.prefix(), "tailing");
        Ok(Tail {
            messages,
            subjects: subjects.clone(),
            json,
        })
    }

    /// Writes one line per message to `out` until `count` messages were written, `shutdown` completes or
    /// the subscriptions end; returns the number written. A closed pipe (`cambio tail | head`) ends it
    /// quietly.
    ///
    /// # Errors
    /// [`TailError::Io`] when `out` cannot be written for another reason.
    pub async fn run(
        mut self,
        count: Option<u64>,
        shutdown: impl Future<Output = ()>,
        out: &mut impl Write,
    ) -> Result<u64, TailError> {
        tokio::pin!(shutdown);
        let mut n = 0u64;
        while count.is_none_or(|max| n < max) {
            let msg = tokio::select! {
                m = self.messages.next() => m,
                () = &mut shutdown => break,
            };
            let Some(msg) = msg else { break };
            let line = render(&self.subjects, msg.subject.as_str(), &msg.payload, self.json);
            match writeln!(out, "{line}").and_then(|()| out.flush()) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(n)
    }
}

/// Text made safe for one terminal line: control characters (line breaks included) escaped, cut to
/// [`MAX_RAW_CHARS`].
fn one_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len().min(MAX_RAW_CHARS));
    for (i, c) in text.chars().enumerate() {
        if i == MAX_RAW_CHARS {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn str_field<'a>(m: &'a Map<String, Value>, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or("?")
}

/// A number with `decimals` places, `n/a` for null (how JSON carries a figure that is not a number), the
/// JSON text when it is something else, `?` when absent.
fn num(v: Option<&Value>, decimals: usize) -> String {
    match v {
        Some(Value::Null) => "n/a".into(),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(f) => format!("{f:.decimals$}"),
            None => n.to_string(),
        },
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "?".into(),
    }
}

fn forecast_line(m: &Map<String, Value>) -> String {
    let mut line = format!(
        "{} {} forecast mid {}",
        str_field(m, "ts"),
        str_field(m, "pair"),
        num(m.get("mid"), 5)
    );
    for h in m.get("horizons").and_then(Value::as_array).into_iter().flatten() {
        let Some(h) = h.as_object() else { continue };
        let _ = write!(
            line,
            " | {} {} [{}, {}]",
            str_field(h, "horizon"),
            num(h.get("mean"), 5),
            num(h.get("lo95"), 5),
            num(h.get("hi95"), 5)
        );
    }
    let _ = write!(
        line,
        " | quality {} drift {}",
        str_field(m, "quality"),
        str_field(m, "drift")
    );
    if let Some(flags) = m.get("flags").and_then(Value::as_array).filter(|f| !f.is_empty()) {
        let names: Vec<&str> = flags.iter().filter_map(Value::as_str).collect();
        let _ = write!(line, " flags {}", names.join(","));
    }
    line
}

fn alarm_line(m: &Map<String, Value>) -> String {
    format!(
        "{} {} ALARM {} on {}: statistic {} threshold {}",
        str_field(m, "ts"),
        str_field(m, "pair"),
        str_field(m, "detector"),
        str_field(m, "signal"),
        num(m.get("statistic"), 3),
        num(m.get("threshold"), 3)
    )
}

fn adapted_line(m: &Map<String, Value>) -> String {
    format!(
        "{} {} ADAPTED forgetting {} for {} ticks after {}",
        str_field(m, "ts"),
        str_field(m, "pair"),
        num(m.get("forgetting"), 4),
        num(m.get("ticks"), 0),
        str_field(m, "trigger")
    )
}

fn quarantine_line(m: &Map<String, Value>) -> String {
    let mut line = format!(
        "{} {} QUARANTINE {}",
        m.get("ts").and_then(Value::as_str).unwrap_or("-"),
        str_field(m, "pair"),
        str_field(m, "reason")
    );
    if let Some(detail) = m.get("detail").and_then(Value::as_str) {
        let _ = write!(line, " ({})", one_line(detail.as_bytes()));
    }
    if let Some(seq) = m.get("seq").filter(|v| !v.is_null()) {
        let _ = write!(line, " seq {seq}");
    }
    if let Some(source) = m.get("source").and_then(Value::as_str) {
        let _ = write!(line, " source {source}");
    }
    if let Some(raw) = m.get("raw").and_then(Value::as_str) {
        let _ = write!(line, " raw {}", one_line(raw.as_bytes()));
    }
    line
}

fn quality_line(m: &Map<String, Value>) -> String {
    let mut line = format!(
        "{} {} QUALITY {}",
        m.get("ts").and_then(Value::as_str).unwrap_or("-"),
        str_field(m, "pair"),
        str_field(m, "overall")
    );
    let not_ok: Vec<String> = m
        .get("dimensions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter(|d| d.get("status").and_then(Value::as_str).is_some_and(|s| s != "ok"))
        .map(|d| format!("{} {}", str_field(d, "name"), str_field(d, "status")))
        .collect();
    if !not_ok.is_empty() {
        let _ = write!(line, " ({})", not_ok.join(", "));
    }
    line
}

fn drift_line(m: &Map<String, Value>) -> String {
    let status = ["status", "overall", "drift", "state"]
        .iter()
        .find_map(|k| m.get(*k).and_then(Value::as_str))
        .unwrap_or("?");
    format!(
        "{} {} DRIFT {status}",
        m.get("ts").and_then(Value::as_str).unwrap_or("-"),
        str_field(m, "pair")
    )
}

/// The line printed for one message on `subject`: readable, or the raw JSON with `json`. Never fails: a
/// message that is not a JSON object is printed as its subject and escaped text.
pub fn render(subjects: &Subjects, subject: &str, payload: &[u8], json: bool) -> String {
    let kind = KINDS
        .iter()
        .copied()
        .find(|k| subjects.token(k, subject).is_some())
        .unwrap_or("?");
    let parsed: Option<Map<String, Value>> = serde_json::from_slice(payload).ok();
    if json {
        return match parsed {
            // Valid JSON: its line breaks are whitespace, so it can be printed on one line unchanged.
            Some(_) => String::from_utf8_lossy(payload).trim().replace(['\n', '\r'], " "),
            None => one_line(payload),
        };
    }
    let Some(m) = parsed else {
        return format!("{subject} {}", one_line(payload));
    };
    match (m.get("type").and_then(Value::as_str), kind) {
        (Some("forecast"), _) | (None, "pred") => forecast_line(&m),
        (Some("alarm"), _) | (None, "alert") => alarm_line(&m),
        (Some("adapted"), _) => adapted_line(&m),
        (Some("quarantined"), _) | (None, "quarantine") => quarantine_line(&m),
        (Some("quality_changed" | "quality"), _) | (None, "quality") => quality_line(&m),
        (_, "drift") => drift_line(&m),
        _ => format!("{subject} {}", one_line(payload)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> Subjects {
        Subjects::default()
    }

    const FORECAST: &str = r#"{"type":"forecast","pair":"USDMXN","ts":"2020-03-09T00:00:00.000Z","seq":null,"mid":21.1117,
 "horizons":[{"horizon":"1step","mean":21.1117,"lo80":20.6,"hi80":21.6,"lo95":20.3,"hi95":21.9},
 {"horizon":"1w","mean":21.2,"lo80":20,"hi80":22,"lo95":19.5,"hi95":22.5}],
 "model":{"name":"cambio-kalman-rls","version":"1"},"quality":"ok","flags":["SEQ_GAP"],"drift":"adapting"}"#;

    #[test]
    fn forecasts_show_every_horizon_quality_and_drift() {
        let line = render(&s(), "fx.pred.USDMXN", FORECAST.as_bytes(), false);
        assert_eq!(
            line,
            "2020-03-09T00:00:00.000Z USDMXN forecast mid 21.11170 | 1step 21.11170 [20.30000, 21.90000] \
             | 1w 21.20000 [19.50000, 22.50000] | quality ok drift adapting flags SEQ_GAP"
        );
        let untagged = FORECAST.replace(r#""type":"forecast","#, "");
        assert_eq!(render(&s(), "fx.pred.USDMXN", untagged.as_bytes(), false), line);
        let raw = render(&s(), "fx.pred.USDMXN", FORECAST.as_bytes(), true);
        assert!(!raw.contains('\n'));
        assert_eq!(
            serde_json::from_str::<Value>(&raw).unwrap(),
            serde_json::from_str::<Value>(FORECAST).unwrap()
        );
    }

    #[test]
    fn alerts_quarantines_quality_and_drift() {
        let alarm = r#"{"type":"alarm","pair":"USDMXN","detector":"adwin","signal":"residual","ts_us":1,"statistic":3.21,"threshold":3.0,"ts":"2020-03-09T00:00:00.000Z"}"#;
        assert_eq!(
            render(&s(), "fx.alert.USDMXN", alarm.as_bytes(), false),
            "2020-03-09T00:00:00.000Z USDMXN ALARM adwin on residual: statistic 3.210 threshold 3.000"
        );
        let q = r#"{"type":"quarantined","pair":"USDMXN","ts":null,"seq":null,"source":null,"reason":"malformed","raw":"ga\nrbage"}"#;
        assert_eq!(
            render(&s(), "fx.quarantine.USDMXN", q.as_bytes(), false),
            "- USDMXN QUARANTINE malformed raw ga\\nrbage"
        );
        let q = r#"{"type":"quarantined","pair":"USDMXN","ts":"2020-03-09T00:00:01.000Z","seq":7,"source":"oanda","reason":"crossed_quote","detail":"bid 17.2 is above ask 17.1","raw":null}"#;
        assert_eq!(
            render(&s(), "fx.quarantine.USDMXN", q.as_bytes(), false),
            "2020-03-09T00:00:01.000Z USDMXN QUARANTINE crossed_quote (bid 17.2 is above ask 17.1) seq 7 source oanda"
        );
        let quality = r#"{"type":"quality_changed","pair":"USDMXN","ts":"2020-01-01T00:00:00.000Z","overall":"warn",
            "dimensions":[{"name":"completeness","score":0.9,"status":"warn"},{"name":"validity","status":"ok"}]}"#;
        assert_eq!(
            render(&s(), "fx.quality.USDMXN", quality.as_bytes(), false),
            "2020-01-01T00:00:00.000Z USDMXN QUALITY warn (completeness warn)"
        );
        assert_eq!(
            render(
                &s(),
                "fx.drift.USDMXN",
                br#"{"pair":"USDMXN","status":"stable"}"#,
                false
            ),
            "- USDMXN DRIFT stable"
        );
    }

    #[test]
    fn anything_unreadable_prints_as_escaped_text() {
        for (payload, want) in [
            (&b"\x00garbage\nline"[..], "fx.pred.USDMXN \\u{0}garbage\\nline"),
            (b"[1,2]", "fx.pred.USDMXN [1,2]"),
            (b"\xff", "fx.pred.USDMXN \u{fffd}"),
            (
                br#"{"type":"forecast","horizons":7,"mid":"x"}"#,
                "? ? forecast mid x | quality ? drift ?",
            ),
        ] {
            assert_eq!(render(&s(), "fx.pred.USDMXN", payload, false), want);
        }
        assert_eq!(render(&s(), "fx.pred.USDMXN", b"a\nb", true), "a\\nb");
        let long = vec![b'x'; 5000];
        assert!(render(&s(), "fx.pred.USDMXN", &long, false).chars().count() < 1100);
        assert_eq!(
            render(
                &s(),
                "fx.alert.USDMXN",
                br#"{"type":"alarm","pair":"USDMXN","ts":"t","detector":"d","signal":"input","statistic":null}"#,
                false
            ),
            "t USDMXN ALARM d on input: statistic n/a threshold ?"
        );
    }
}
