//! `cambio record`: a pair's ticks from NATS into a JSON-lines file that `cambio replay` reads, so an
//! incident seen live can be replayed later with the timeliness it had.
//!
//! Every message becomes exactly one line, and none is dropped ([`record_line`]):
//! - a JSON object gets an `"arrival"` field (the receive time) unless it has one, or it came from a replay
//!   (header [`REPLAY_HEADER`]): the service does not stamp historical data, so neither does the recording;
//! - anything else (garbage, binary, a JSON array) is written as one JSON string, which replay reads and
//!   quarantines as malformed with its text, as the service did.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

use super::publish::REPLAY_HEADER;
use super::ready::{ReadyError, subscriptions_ready};
use crate::nats::Subjects;
use crate::tick::{MAX_PAYLOAD_BYTES, Pair};
use crate::time::format_ts;

/// Why a recording could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The output file could not be created or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The subscription could not be made.
    #[error("nats subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The server did not confirm the subscription.
    #[error(transparent)]
    Ready(#[from] ReadyError),
}

/// A payload as one JSON string (one line: control characters, newlines included, are escaped). Bytes
/// that are not UTF-8 are kept one to a character (U+0000..U+00FF), so nothing is silently replaced.
fn json_string(payload: &[u8]) -> Vec<u8> {
    let mut text = String::with_capacity(payload.len());
    for chunk in payload.utf8_chunks() {
        text.push_str(chunk.valid());
        text.extend(chunk.invalid().iter().map(|&b| char::from(b)));
    }
    // Cannot fail for a string.
    serde_json::to_vec(&text).unwrap_or_else(|_| b"\"\"".to_vec())
}

/// The line (without its newline) that records `payload`, received at `arrival` (RFC 3339) or, for replayed
/// data, with no arrival (`None`).
///
/// A payload framed as a JSON object (`{…}`) is kept byte for byte, except that:
/// - line breaks become spaces when it is valid JSON (there they can only be whitespace between tokens);
/// - `"arrival":"…"` is inserted after the `{` when it has no `arrival` key, unless that would push a
///   payload within the 4 KiB contract limit over it (the tick would turn malformed on replay).
///
/// An invalid framed payload stays invalid with the insertion, so replay quarantines it as malformed just as
/// the service did. Everything else, and an invalid framed payload with line breaks (joining its lines
/// could make it valid), is written as a JSON string.
pub fn record_line(payload: &[u8], arrival: Option<&str>) -> Vec<u8> {
    let body = payload.trim_ascii();
    let framed = body.len() >= 2 && body[0] == b'{' && body[body.len() - 1] == b'}';
    if !framed {
        return json_string(payload);
    }
    let parsed = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body);
    let has_line_break = body.iter().any(|&b| b == b'\n' || b == b'\r');
    if parsed.is_err() && has_line_break {
        return json_string(payload);
    }
    let mut line: Vec<u8> = body
        .iter()
        .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
        .collect();
    let Some(arrival) = arrival else { return line };
    let (has_arrival, empty) = match &parsed {
        Ok(map) => (map.contains_key("arrival"), map.is_empty()),
        // Not valid JSON (e.g. Python's bare NaN): a textual look is the best there is.
        Err(_) => (
            body.windows(9).any(|w| w == b"\"arrival\""),
            body[1..body.len() - 1].trim_ascii().is_empty(),
        ),
    };
    if has_arrival {
        return line;
    }
    let mut field = b"\"arrival\":".to_vec();
    field.extend(json_string(arrival.as_bytes()));
    if !empty {
        field.push(b',');
    }
    if body.len() <= MAX_PAYLOAD_BYTES && body.len() + field.len() > MAX_PAYLOAD_BYTES {
        return line;
    }
    line.splice(1..1, field);
    line
}

/// The wall clock as microseconds since the epoch (0 if the clock is before 1970).
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// When to stop recording (besides the shutdown signal).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StopAfter {
    /// After this long.
    pub duration: Option<Duration>,
    /// After this many messages.
    pub count: Option<u64>,
}

/// A recording in progress: subscribed (and confirmed by the server), with its file open.
pub struct Recorder {
    sub: async_nats::Subscriber,
    subject: String,
    path: PathBuf,
    out: tokio::io::BufWriter<tokio::fs::File>,
}

impl Recorder {
    /// Creates `out` and subscribes to `pair`'s ticks; returns once the server routes them here.
    ///
    /// # Errors
    /// [`RecordError`] when the file cannot be created or the subscription is not confirmed.
    pub async fn start(
        client: &async_nats::Client,
        subjects: &Subjects,
        pair: Pair,
        out: &Path,
    ) -> Result<Recorder, RecordError> {
        let file = tokio::fs::File::create(out).await.map_err(|source| RecordError::Io {
            path: out.into(),
            source,
        })?;
        let subject = subjects.ticks(pair);
        let sub = client.subscribe(subject.clone()).await?;
        subscriptions_ready(client).await?;
        tracing::info!(subject = %subject, file = %out.display(), "recording");
        Ok(Recorder {
            sub,
            subject,
            path: out.into(),
            out: tokio::io::BufWriter::new(file),
        })
    }

    /// The subject recorded.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// Records until `stop` says so, `shutdown` completes or the subscription ends; flushes the file and
    /// returns the number of messages written.
    ///
    /// # Errors
    /// [`RecordError::Io`] when the file cannot be written.
    pub async fn run(mut self, stop: StopAfter, shutdown: impl Future<Output = ()>) -> Result<u64, RecordError> {
        let io = |path: &Path, source| RecordError::Io {
            path: path.into(),
            source,
        };
        let deadline = async {
            match stop.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline, shutdown);
        let mut n = 0u64;
        while stop.count.is_none_or(|max| n < max) {
            let msg = tokio::select! {
                m = self.sub.next() => m,
                () = &mut deadline => break,
                () = &mut shutdown => break,
            };
            let Some(msg) = msg else { break };
            let replayed = msg
                .headers
                .as_ref()
                .and_then(|h| h.get(REPLAY_HEADER))
                .is_some_and(|v| v.as_str() == "1");
            let arrival = (!replayed).then(|| format_ts(now_us()));
            let mut line = record_line(&msg.payload, arrival.as_deref());
            line.push(b'\n');
            self.out.write_all(&line).await.map_err(|e| io(&self.path, e))?;
            n += 1;
        }
        self.out.flush().await.map_err(|e| io(&self.path, e))?;
        self.out.get_mut().sync_data().await.map_err(|e| io(&self.path, e))?;
        let _ = self.sub.unsubscribe().await;
        tracing::info!(subject = %self.subject, messages = n, "recording done");
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::QuarantineReason;
    use crate::replay::Item;
    use crate::replay::source::parse_message;

    const AT: &str = "2026-01-02T03:04:05.123456Z";

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn arrival_is_inserted_into_objects_without_one() {
        let p = br#"{"pair":"USDMXN","ts":"2020-01-01","mid":18.9}"#;
        let line = record_line(p, Some(AT));
        assert_eq!(
            text(&line),
            format!(r#"{{"arrival":"{AT}","pair":"USDMXN","ts":"2020-01-01","mid":18.9}}"#)
        );
        let Item::Tick(t) = parse_message(&line, None) else {
            panic!()
        };
        assert_eq!(t.arrival_us, crate::time::parse_ts_us(AT).ok());
        assert_eq!(t.mid, Some(18.9));

        assert_eq!(text(&record_line(b"{}", Some(AT))), format!(r#"{{"arrival":"{AT}"}}"#));
        let has = br#"{"arrival":"2020-01-01T00:00:01Z","pair":"USDMXN"}"#;
        assert_eq!(record_line(has, Some(AT)), has.to_vec(), "an existing arrival is kept");
        assert_eq!(record_line(p, None), p.to_vec(), "replayed data gets no arrival");
    }

    #[test]
    fn multi_line_objects_become_one_line_with_the_same_meaning() {
        let p = b"{\n  \"pair\": \"USDMXN\",\r\n  \"ts\": \"2020-01-01\",\n  \"mid\": 18.9\n}\n";
        let line = record_line(p, Some(AT));
        assert!(!line.contains(&b'\n') && !line.contains(&b'\r'));
        let Item::Tick(t) = parse_message(&line, None) else {
            panic!("{}", text(&line))
        };
        assert_eq!(t.mid, Some(18.9));
        assert!(t.arrival_us.is_some());
    }

    #[test]
    fn anything_else_is_one_json_string_that_replay_quarantines() {
        for p in [
            &b"garbage"[..],
            b"\x00\xffabc\n{\"pair\":1}",
            b"",
            b"[1,2]",
            b"{\"pair\":\"USD\nMXN\"}",
            b"\"quoted\"",
        ] {
            let line = record_line(p, Some(AT));
            assert!(!line.contains(&b'\n'), "{}", text(&line));
            assert_eq!(line[0], b'"', "{}", text(&line));
            assert!(matches!(
                parse_message(&line, None),
                Item::Rejected {
                    reason: QuarantineReason::Malformed,
                    ..
                }
            ));
        }
        assert_eq!(text(&record_line(b"\x00abc", None)), r#""\u0000abc""#);
        let back: String = serde_json::from_slice(&record_line(b"a\xffb", None)).unwrap();
        assert_eq!(back, "a\u{ff}b", "invalid bytes are kept one to a character");
    }

    #[test]
    fn invalid_objects_stay_invalid_and_python_nan_keeps_its_reason() {
        let line = record_line(b"{not json}", Some(AT));
        assert!(matches!(
            parse_message(&line, None),
            Item::Rejected {
                reason: QuarantineReason::Malformed,
                ..
            }
        ));
        let nan = br#"{"pair":"USDMXN","ts":"2020-01-01","mid":NaN}"#;
        let line = record_line(nan, Some(AT));
        let Item::Tick(t) = parse_message(&line, None) else {
            panic!("{}", text(&line))
        };
        assert!(
            t.mid.is_some_and(f64::is_nan),
            "still a non-finite price for the engine"
        );
        assert!(t.arrival_us.is_some());
    }

    #[test]
    fn a_payload_within_the_limit_is_not_pushed_over_it() {
        let pad = "x".repeat(MAX_PAYLOAD_BYTES - 100);
        let p = format!(r#"{{"pair":"USDMXN","ts":"2020-01-01","mid":18.9,"source":"s","pad":"{pad}"}}"#);
        assert!(p.len() <= MAX_PAYLOAD_BYTES);
        assert_eq!(record_line(p.as_bytes(), Some(AT)), p.as_bytes());
    }
}
