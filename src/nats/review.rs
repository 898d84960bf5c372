//! `cambio review`'s I/O: the quarantined ticks kept in JetStream and the labels people give them.
//!
//! - The records are read from whichever stream captures `<prefix>.quarantine.>` (NATS lets one stream
//!   only capture a subject): the archive's output stream `FX_OUT` when it runs. When none does, review
//!   creates that stream itself over `<prefix>.quarantine.>` only, bounded by age and size; the archive
//!   later adds its other subjects to it and keeps those bounds.
//! - The accepted prices around a refused one are read from the input stream (`FX`, serve's in JetStream
//!   mode), by subject `<prefix>.ticks.<PAIR>`.
//! - Labels live in a key-value bucket (`cambio_review`, key `<PAIR>.<id>`, file storage, history kept so
//!   a relabel keeps the previous label), shared by every operator and surviving restarts.
//!
//! Messages are read one at a time by sequence (`STREAM.MSG.GET` with a subject filter), so an operator
//! needs no consumer on the streams; every read is bounded by [`ReviewOptions::scan_limit`].

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream::RawMessageErrorKind};
use bytes::Bytes;

use crate::nats::Subjects;
use crate::review::{
    Filter, Label, LabelRecord, LabelledTick, Neighbour, QuarantineRecord, QuarantinedTick, ReviewError as LabelError,
    Reviewed, Surroundings, label_key,
};
use crate::tick::{Pair, parse_tick};
use crate::time::{format_ts, parse_ts_us};

/// Why review could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// A stream could not be found, created or read.
    #[error("jetstream: stream {stream}: {source}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// The server's or client's error.
        source: async_nats::Error,
    },
    /// The labels' bucket could not be opened, created, read or written.
    #[error("jetstream: bucket {bucket}: {source}")]
    Bucket {
        /// The bucket's name.
        bucket: String,
        /// The server's or client's error.
        source: async_nats::Error,
    },
    /// No message has this id in the stream.
    #[error("no quarantined tick has id {id} in stream {stream}")]
    NotFound {
        /// The id asked for.
        id: u64,
        /// The stream searched.
        stream: String,
    },
    /// The message with this id is not a quarantine record (the stream also holds forecasts and alerts).
    #[error("id {id} is a message on {subject}, not a quarantined tick")]
    NotQuarantine {
        /// The id asked for.
        id: u64,
        /// The message's subject.
        subject: String,
    },
    /// A message on a quarantine subject is not a quarantine record.
    #[error("id {id}: not a quarantine record: {detail}")]
    BadRecord {
        /// The message's id.
        id: u64,
        /// What could not be read.
        detail: String,
    },
    /// A stored label could not be read.
    #[error(transparent)]
    Label(#[from] LabelError),
}

/// Where review finds and keeps things.
#[derive(Debug, Clone)]
pub struct ReviewOptions {
    /// The subjects' prefix.
    pub subjects: Subjects,
    /// The stream review creates when no stream captures `<prefix>.quarantine.>` (the archive's output
    /// stream's name, so the archive adopts it).
    pub stream: String,
    /// The input stream (ticks), serve's `[serve.jetstream] stream`.
    pub input_stream: String,
    /// The labels' bucket.
    pub bucket: String,
    /// How long a created stream keeps a record.
    pub max_age: Duration,
    /// How many bytes a created stream keeps (older records go first).
    pub max_bytes: i64,
    /// The most messages one listing or one search for surrounding prices reads.
    pub scan_limit: usize,
}

impl Default for ReviewOptions {
    fn default() -> Self {
        ReviewOptions {
            subjects: Subjects::default(),
            stream: "FX_OUT".into(),
            input_stream: "FX".into(),
            bucket: "cambio_review".into(),
            max_age: Duration::from_secs(30 * 86_400),
            max_bytes: 1 << 30,
            scan_limit: 100_000,
        }
    }
}

/// Labels kept per key: the latest and the ones it replaced.
const LABEL_HISTORY: i64 = 16;

/// An open review: the stream holding the records, the input stream and the labels' bucket.
pub struct Review {
    opts: ReviewOptions,
    stream_name: String,
    stream: jetstream::stream::Stream,
    input: Option<jetstream::stream::Stream>,
    labels: kv::Store,
}

fn stream_err(stream: &str) -> impl Fn(async_nats::Error) -> ReviewError + '_ {
    move |source| ReviewError::Stream {
        stream: stream.to_string(),
        source,
    }
}

fn bucket_err(bucket: &str) -> impl Fn(async_nats::Error) -> ReviewError + '_ {
    move |source| ReviewError::Bucket {
        bucket: bucket.to_string(),
        source,
    }
}

impl Review {
    /// Finds the stream that keeps quarantine records (creating a bounded one when none does) and opens
    /// the labels' bucket (creating it when missing).
    ///
    /// # Errors
    /// [`ReviewError::Stream`] or [`ReviewError::Bucket`] when JetStream refuses.
    pub async fn open(client: &async_nats::Client, opts: &ReviewOptions) -> Result<Review, ReviewError> {
        let js = jetstream::new(client.clone());
        let filter = format!("{}.quarantine.>", opts.subjects.prefix());
        let stream_name = match js.stream_by_subject(filter.clone()).await {
            Ok(name) => name,
            Err(e) if matches!(e.kind(), jetstream::context::GetStreamByNameErrorKind::NotFound) => {
                let cfg = jetstream::stream::Config {
                    name: opts.stream.clone(),
                    subjects: vec![filter],
                    storage: jetstream::stream::StorageType::File,
                    max_age: opts.max_age,
                    max_bytes: opts.max_bytes,
                    discard: jetstream::stream::DiscardPolicy::Old,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                };
                js.get_or_create_stream(cfg)
                    .await
                    .map_err(|e| stream_err(&opts.stream)(e.into()))?;
                tracing::info!(stream = %opts.stream, max_age_secs = opts.max_age.as_secs(), max_bytes = opts.max_bytes,
                    "created the stream that keeps quarantined ticks");
                opts.stream.clone()
            }
            Err(e) => return Err(stream_err(&opts.stream)(e.into())),
        };
        let stream = js
            .get_stream(&stream_name)
            .await
            .map_err(|e| stream_err(&stream_name)(e.into()))?;
        let input = match js.get_stream(&opts.input_stream).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(stream = %opts.input_stream, error = %e, "no input stream: no surrounding prices");
                None
            }
        };
        let labels = match js.get_key_value(&opts.bucket).await {
            Ok(s) => s,
            Err(_) => js
                .create_key_value(kv::Config {
                    bucket: opts.bucket.clone(),
                    description: "cambio review: labels of quarantined ticks".into(),
                    history: LABEL_HISTORY,
                    storage: jetstream::stream::StorageType::File,
                    ..Default::default()
                })
                .await
                .map_err(|e| bucket_err(&opts.bucket)(e.into()))?,
        };
        Ok(Review {
            opts: opts.clone(),
            stream_name,
            stream,
            input,
            labels,
        })
    }

    /// The name of the stream the records are read from.
    pub fn stream_name(&self) -> &str {
        &self.stream_name
    }

    fn quarantine_prefix(&self) -> String {
        format!("{}.quarantine.", self.opts.subjects.prefix())
    }

    fn to_tick(&self, m: &async_nats::jetstream::message::StreamMessage) -> Result<QuarantinedTick, ReviewError> {
        let subject = m.subject.to_string();
        let Some(pair) = subject.strip_prefix(&self.quarantine_prefix()) else {
            return Err(ReviewError::NotQuarantine {
                id: m.sequence,
                subject,
            });
        };
        let record = QuarantineRecord::from_json(&m.payload).map_err(|e| ReviewError::BadRecord {
            id: m.sequence,
            detail: e.to_string(),
        })?;
        let published_us = i64::try_from(m.time.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX);
        Ok(QuarantinedTick {
            id: m.sequence,
            pair: pair.to_string(),
            price: record.price(),
            published: format_ts(published_us),
            subject,
            record,
        })
    }

    /// Every quarantined tick in the stream, oldest first (at most `scan_limit`). A message on a
    /// quarantine subject that is not a record is skipped with a warning.
    ///
    /// # Errors
    /// [`ReviewError::Stream`] when the stream cannot be read.
    pub async fn quarantined(&self) -> Result<Vec<QuarantinedTick>, ReviewError> {
        let filter = format!("{}>", self.quarantine_prefix());
        let mut out = Vec::new();
        let mut seq = 1;
        for _ in 0..self.opts.scan_limit {
            let m = match self.stream.get_first_raw_message_by_subject(&filter, seq).await {
                Ok(m) => m,
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(stream_err(&self.stream_name)(e.into())),
            };
            seq = m.sequence + 1;
            match self.to_tick(&m) {
                Ok(t) => out.push(t),
                Err(e) => tracing::warn!(id = m.sequence, error = %e, "skipped"),
            }
        }
        Ok(out)
    }

    /// The quarantined tick with this id.
    ///
    /// # Errors
    /// [`ReviewError::NotFound`] when the stream has no such message, [`ReviewError::NotQuarantine`] when
    /// it is not a quarantine record.
    pub async fn get(&self, id: u64) -> Result<QuarantinedTick, ReviewError> {
        let m = match self.stream.get_raw_message(id).await {
            Ok(m) => m,
            Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound || id == 0 => {
                return Err(ReviewError::NotFound {
                    id,
                    stream: self.stream_name.clone(),
                });
            }
            Err(e) => return Err(stream_err(&self.stream_name)(e.into())),
        };
        self.to_tick(&m)
    }

    /// The latest label of a tick, if it has one.
    ///
    /// # Errors
    /// [`ReviewError::Bucket`] when the bucket cannot be read, [`ReviewError::Label`] when the entry is
    /// not a label.
    pub async fn label_of(&self, tick: &QuarantinedTick) -> Result<Option<LabelRecord>, ReviewError> {
        let key = label_key(&tick.pair, tick.id);
        match self.labels.get(&key).await {
            Ok(Some(b)) => Ok(Some(LabelRecord::from_json(&key, &b)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(bucket_err(&self.opts.bucket)(e.into())),
        }
    }

    /// The quarantined ticks `filter` keeps, each with its latest label.
    ///
    /// # Errors
    /// As [`Review::quarantined`] and [`Review::label_of`].
    pub async fn list(&self, filter: &Filter) -> Result<Vec<Reviewed>, ReviewError> {
        let mut out = Vec::new();
        for tick in self.quarantined().await? {
            if filter
                .pair
                .as_ref()
                .is_some_and(|p| !p.eq_ignore_ascii_case(&tick.pair))
                || filter.reason.as_ref().is_some_and(|r| *r != tick.record.reason)
            {
                continue;
            }
            let label = self.label_of(&tick).await?;
            let r = Reviewed { tick, label };
            if filter.keeps(&r) {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// The labelled quarantined ticks, with their reason, record, label, actor and time: what the retrain
    /// job reads.
    ///
    /// # Errors
    /// As [`Review::list`].
    pub async fn labelled(&self) -> Result<Vec<LabelledTick>, ReviewError> {
        let mut out = Vec::new();
        for tick in self.quarantined().await? {
            if let Some(label) = self.label_of(&tick).await? {
                out.push(LabelledTick { tick, label });
            }
        }
        Ok(out)
    }

    /// Stores a label for the tick with this id; a previous label stays in the bucket's history.
    ///
    /// # Errors
    /// As [`Review::get`], and [`ReviewError::Bucket`] when the label cannot be written.
    pub async fn label(
        &self,
        id: u64,
        label: Label,
        note: Option<String>,
        actor: &str,
        at_us: i64,
    ) -> Result<LabelRecord, ReviewError> {
        let tick = self.get(id).await?;
        let rec = LabelRecord {
            pair: tick.pair.clone(),
            id,
            reason: tick.record.reason.clone(),
            label,
            note,
            actor: actor.to_string(),
            labelled_at: format_ts(at_us),
        };
        let key = label_key(&tick.pair, id);
        let bytes = Bytes::from(crate::contract::to_json_vec(&rec));
        self.labels
            .put(&key, bytes)
            .await
            .map_err(|e| bucket_err(&self.opts.bucket)(e.into()))?;
        tracing::info!(pair = %rec.pair, id, label = %label, actor, "labelled");
        Ok(rec)
    }

    /// The `n` accepted prices of the tick's pair before and after its time, read from the input stream
    /// (empty when there is no input stream, or the tick has no pair or time). Ticks that were themselves
    /// quarantined are left out.
    ///
    /// # Errors
    /// [`ReviewError::Stream`] when a stream cannot be read.
    pub async fn surrounding(
        &self,
        tick: &QuarantinedTick,
        n: usize,
    ) -> Result<(Vec<Neighbour>, Vec<Neighbour>), ReviewError> {
        let (Some(input), Some(pair), Some(at_us)) = (
            self.input.as_ref(),
            Pair::parse(&tick.pair),
            tick.record.ts.as_deref().and_then(|t| parse_ts_us(t).ok()),
        ) else {
            return Ok((Vec::new(), Vec::new()));
        };
        // The pair's refused ticks, by time, sequence and price, so they are not shown as accepted.
        let refused: HashSet<(i64, Option<u64>, u64)> = self
            .quarantined()
            .await?
            .into_iter()
            .filter(|q| q.pair == tick.pair)
            .filter_map(|q| {
                let ts = parse_ts_us(q.record.ts.as_deref()?).ok()?;
                Some((ts, q.record.seq, q.price?.to_bits()))
            })
            .collect();
        let subject = self.opts.subjects.ticks(pair);
        let mut around = Surroundings::new(at_us, n);
        let mut seq = 1;
        for _ in 0..self.opts.scan_limit {
            let m = match input.get_first_raw_message_by_subject(&subject, seq).await {
                Ok(m) => m,
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => break,
                Err(e) => return Err(stream_err(&self.opts.input_stream)(e.into())),
            };
            seq = m.sequence + 1;
            let Ok(t) = parse_tick(&m.payload, Some(pair)) else {
                continue;
            };
            let Some(price) = t.mid_price() else { continue };
            if !price.is_finite() || refused.contains(&(t.ts_us, t.seq, price.to_bits())) {
                continue;
            }
            let nb = Neighbour {
                ts: format_ts(t.ts_us),
                price,
                seq: t.seq,
                source: t.source.as_str().to_string(),
            };
            if around.push(t.ts_us, nb) {
                break;
            }
        }
        Ok(around.into_parts())
    }
}

/// The labelled quarantined ticks, for a batch job: opens the review (see [`Review::open`]) and reads
/// them.
///
/// # Errors
/// As [`Review::open`] and [`Review::labelled`].
pub async fn labelled(client: &async_nats::Client, opts: &ReviewOptions) -> Result<Vec<LabelledTick>, ReviewError> {
    Review::open(client, opts).await?.labelled().await
}
