//! The lake written offline, from a replay's outputs (`cambio replay INPUT --archive DIR`).
//!
//! Each output is turned into the message `serve` would publish for it (the same subject, the same JSON),
//! and that message into its row, so the rows equal the live archive's except for three columns: `stream`
//! is `replay`, `stream_seq` is the message's position among the replay's archived messages (from 1), and
//! `arrival` is null. Files roll by size only, so the same input gives the same files.

use std::time::{Duration, Instant};

use super::{Lake, LakeError, Message, RollPolicy};
use crate::engine::Output;

/// The stream name of rows written offline.
pub const OFFLINE_STREAM: &str = "replay";

/// A lake fed with a replay's outputs.
pub struct OfflineLake {
    lake: Lake,
    prefix: String,
    seq: u64,
    buf: Vec<u8>,
    subject: String,
    started: Instant,
}

impl OfflineLake {
    /// A lake in `dir`, with subjects under `prefix` (as the live service names them).
    ///
    /// # Errors
    /// [`LakeError::Io`] when `dir` cannot be created.
    pub fn new(dir: &std::path::Path, prefix: &str) -> Result<OfflineLake, LakeError> {
        let policy = RollPolicy {
            max_age: Duration::MAX,
            ..RollPolicy::default()
        };
        Ok(OfflineLake {
            lake: Lake::new(dir, prefix, policy)?,
            prefix: prefix.to_string(),
            seq: 0,
            buf: Vec::with_capacity(1024),
            subject: String::with_capacity(32),
            started: Instant::now(),
        })
    }

    /// Archives `o` as serve publishes it (quality changes are not archived, as live).
    ///
    /// # Errors
    /// [`LakeError`] when a rolled file cannot be written.
    pub fn push(&mut self, o: &Output) -> Result<(), LakeError> {
        let (kind, pair) = match o {
            Output::Forecast(f) => ("pred", f.pair),
            Output::Quarantined(q) => ("quarantine", q.pair),
            Output::Alarm(a) => ("alert", a.pair),
            Output::Adapted(a) => ("alert", a.pair),
            Output::QualityChanged(_) => return Ok(()),
        };
        self.buf.clear();
        crate::contract::write_output(o, &mut self.buf);
        self.subject.clear();
        self.subject.push_str(&self.prefix);
        self.subject.push('.');
        self.subject.push_str(kind);
        self.subject.push('.');
        self.subject.push_str(pair.as_str());
        self.seq += 1;
        let m = Message {
            stream: OFFLINE_STREAM,
            seq: self.seq,
            arrival_us: None,
            subject: &self.subject,
            payload: &self.buf,
        };
        self.lake.push(&m, self.started)?;
        Ok(())
    }

    /// Writes every partition still held; returns the rows archived in all.
    ///
    /// # Errors
    /// [`LakeError`] when a file cannot be written.
    pub fn finish(mut self) -> Result<u64, LakeError> {
        self.lake.roll_due(self.started, true)?;
        Ok(self.seq)
    }
}
