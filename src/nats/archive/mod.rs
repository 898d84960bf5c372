//! `cambio archive`: every input and output of the model into the Parquet lake ([`crate::lake`]), through
//! JetStream durable consumers, so the archive never slows serving and misses nothing while it is down.
//!
//! Two streams are read, each by a durable consumer named `--durable` (`cambio-archive`):
//! - the input stream (`FX`, the one `serve` reads in JetStream mode: `<prefix>.ticks.>` and
//!   `<prefix>.factors.>`), created with serve's settings when missing;
//! - the output stream (`FX_OUT`), created or updated here over `<prefix>.pred.>`, `<prefix>.quarantine.>`,
//!   `<prefix>.alert.>`, `<prefix>.business.masked.>` and `<prefix>.business.quarantine.>`. Incoming
//!   business events (`<prefix>.business.<PAIR>`) carry clear client identifiers and are not captured: the
//!   lake keeps what serve publishes about them (each accepted event in its masked form, each refused one's
//!   record), with the client's pseudonym only.
//!
//! Size and age limits (`max_age`, `max_bytes`) are set on a stream only when asked for: on the output
//! stream when it is created or updated, on the input stream when the archive creates it.
//!
//! A message is acknowledged only once the file holding it is durable; one delivered again whose sequence
//! is already in a file (the acknowledgement was lost in a crash) is skipped.
//!
//! The consumers acknowledge with `AckPolicy::All`: one acknowledgement covers every message up to it, so
//! the archive sends one per stream when the messages it holds become durable up to a new floor (every
//! message delivered up to that sequence is in a durable file), instead of one per message: a message's
//! acknowledgement costs the server and the client about as much as its delivery. A delivery missed on
//! the way (a gap in the consumer's delivery sequence) stops the floor before it: the archive writes what
//! it holds and reads again from the acknowledged floor.

pub mod metrics;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, AckKind, message::Acker};
use futures_util::StreamExt;

use crate::lake::{self, Durable, Lake, LakeError, Message, RollPolicy};
use crate::nats::Subjects;
pub use metrics::ArchiveMetrics;
use metrics::{KindLabel, StreamLabel};

/// Why the archive stopped.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A stream could not be created, updated or read.
    #[error("jetstream: stream {stream}: {source}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// The server's or client's error.
        source: async_nats::Error,
    },
    /// The durable consumer could not be created or read.
    #[error("jetstream: consumer {durable} on {stream}: {source}")]
    Consumer {
        /// The stream's name.
        stream: String,
        /// The consumer's name.
        durable: String,
        /// The server's or client's error.
        source: async_nats::Error,
    },
    /// The lake could not be written.
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// How to archive.
#[derive(Debug, Clone)]
pub struct ArchiveOptions {
    /// The lake's folder.
    pub dir: PathBuf,
    /// The subjects' prefix.
    pub subjects: Subjects,
    /// The input stream (ticks and factors), serve's `[serve.jetstream] stream`.
    pub input_stream: String,
    /// The output stream (forecasts, quarantines, alerts, business quarantines).
    pub output_stream: String,
    /// The durable consumers' name.
    pub durable: String,
    /// When files roll.
    pub policy: RollPolicy,
    /// The streams' age limit, when one is asked for (none by default).
    pub stream_max_age: Option<Duration>,
    /// The streams' size limit in bytes, when one is asked for (none by default).
    pub stream_max_bytes: Option<i64>,
    /// Updated as the archive runs.
    pub metrics: ArchiveMetrics,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            dir: PathBuf::from("lake"),
            subjects: Subjects::default(),
            input_stream: "FX".into(),
            output_stream: "FX_OUT".into(),
            durable: "cambio-archive".into(),
            policy: RollPolicy::default(),
            stream_max_age: None,
            stream_max_bytes: None,
            metrics: ArchiveMetrics::default(),
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Rows written to files.
    pub rows: u64,
    /// Files written.
    pub files: u64,
    /// Messages delivered again whose rows were already in a file.
    pub skipped: u64,
    /// Messages of subjects the lake does not keep.
    pub ignored: u64,
}

/// Unacknowledged messages a consumer may hold.
const MAX_ACK_PENDING: i64 = 1_000_000;
/// Messages held above a stream's acknowledged floor at which every partition is written: a partition
/// that rolls by age holds the floor back for up to `--max-age`, and the server must never stop
/// delivering for want of acknowledgements.
const FLOOR_HELD: usize = 500_000;
/// How long the server waits for an acknowledgement before delivering again: well above the roll age.
const ACK_WAIT: Duration = Duration::from_secs(120);

/// A message delivered and not acknowledged yet.
struct Held {
    /// Its acknowledgement handle (only the floor's is used: it acknowledges every message up to it).
    acker: Acker,
    /// Whether it is in a durable file (or needs none: skipped, or of a subject the lake does not keep).
    durable: bool,
}

/// One stream's consumer and what is known of its sequences.
struct Source {
    stream: String,
    consumer: jetstream::consumer::Consumer<jetstream::consumer::pull::Config>,
    /// Delivered and not acknowledged, by stream sequence: acknowledged all at once, by the highest, when
    /// every one up to it is durable.
    held: BTreeMap<u64, Held>,
    /// The `held` entries in no file yet.
    pending: usize,
    /// In a durable file of an earlier run, above the consumer's acknowledged floor: skipped when
    /// delivered again.
    durable: HashSet<u64>,
    /// The consumer sequence of the last delivery: the next one must follow it.
    last_delivery: Option<u64>,
}

/// Creates stream `name` when missing (with the limits asked for); with `update`, an existing one gets the
/// subjects and the limits asked for, its other settings (and limits not asked for) kept as they are.
async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    subjects: Vec<String>,
    update: bool,
    opts: &ArchiveOptions,
) -> Result<(), ArchiveError> {
    let cfg = jetstream::stream::Config {
        name: name.to_string(),
        subjects,
        storage: jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        max_age: opts.stream_max_age.unwrap_or_default(),
        max_bytes: opts.stream_max_bytes.unwrap_or(-1),
        ..Default::default()
    };
    let err = |source: async_nats::Error| ArchiveError::Stream {
        stream: name.to_string(),
        source,
    };
    let mut s = js.get_or_create_stream(cfg.clone()).await.map_err(|e| err(e.into()))?;
    let info = s.info().await.map_err(|e| err(e.into()))?;
    // Only the subjects and the limits asked for change: a stream created first by `cambio review` keeps
    // its age and size bounds.
    let mut want = info.config.clone();
    if update {
        want.subjects.clone_from(&cfg.subjects);
        if let Some(age) = opts.stream_max_age {
            want.max_age = age;
        }
        if let Some(bytes) = opts.stream_max_bytes {
            want.max_bytes = bytes;
        }
    }
    let changed = want.subjects != info.config.subjects
        || want.max_age != info.config.max_age
        || want.max_bytes != info.config.max_bytes;
    if changed {
        js.update_stream(want.clone()).await.map_err(|e| err(e.into()))?;
        tracing::info!(
            stream = name,
            max_age_secs = want.max_age.as_secs(),
            max_bytes = want.max_bytes,
            "stream's subjects or limits updated"
        );
    } else if !update
        && (opts.stream_max_age.is_some() || opts.stream_max_bytes.is_some())
        && (info.config.max_age != cfg.max_age || info.config.max_bytes != cfg.max_bytes)
    {
        tracing::info!(
            stream = name,
            "the stream existed before the archive: its limits are left as they are (nats stream edit changes them)"
        );
    }
    Ok(())
}

async fn source(js: &jetstream::Context, stream: &str, opts: &ArchiveOptions) -> Result<Source, ArchiveError> {
    let cerr = |source: async_nats::Error| ArchiveError::Consumer {
        stream: stream.to_string(),
        durable: opts.durable.clone(),
        source,
    };
    let s = js.get_stream(stream).await.map_err(|e| ArchiveError::Stream {
        stream: stream.to_string(),
        source: e.into(),
    })?;
    let config = |deliver_policy| jetstream::consumer::pull::Config {
        durable_name: Some(opts.durable.clone()),
        ack_policy: jetstream::consumer::AckPolicy::All,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        deliver_policy,
        ..Default::default()
    };
    let mut consumer = s
        .get_or_create_consumer(&opts.durable, config(jetstream::consumer::DeliverPolicy::All))
        .await
        .map_err(|e| cerr(e.into()))?;
    let info = consumer.info().await.map_err(|e| cerr(e.into()))?;
    let floor = info.ack_floor.stream_sequence;
    if info.num_ack_pending > 0 || info.config.ack_policy != jetstream::consumer::AckPolicy::All {
        // Messages delivered to a run that stopped before acknowledging them would come again only after
        // ack_wait: the consumer is recreated at the acknowledged floor instead, so they come at once
        // (those already in a file are skipped). A consumer of an earlier version (one acknowledgement
        // per message) is recreated the same way: a consumer's acknowledgement policy cannot change.
        s.delete_consumer(&opts.durable).await.map_err(|e| cerr(e.into()))?;
        let from = jetstream::consumer::DeliverPolicy::ByStartSequence {
            start_sequence: floor + 1,
        };
        consumer = s.create_consumer(config(from)).await.map_err(|e| cerr(e.into()))?;
        tracing::info!(stream, durable = %opts.durable, resume_from = floor + 1,
            "messages delivered to a previous run were never acknowledged: reading again from the acknowledged floor");
    }
    let durable = lake::durable_seqs(&opts.dir, stream, floor)?;
    tracing::info!(stream, durable = %opts.durable, ack_floor = floor, already_in_files = durable.len(), "archiving");
    Ok(Source {
        stream: stream.to_string(),
        consumer,
        held: BTreeMap::new(),
        pending: 0,
        durable,
        last_delivery: None,
    })
}

/// Archives until `shutdown`, then writes what it holds and acknowledges it.
///
/// # Errors
/// [`ArchiveError`] when a stream or consumer cannot be set up, or the lake cannot be written.
pub async fn run(
    client: &async_nats::Client,
    opts: &ArchiveOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<ArchiveSummary, ArchiveError> {
    let subjects = &opts.subjects;
    let js = jetstream::new(client.clone());
    let p = subjects.prefix();
    ensure_stream(
        &js,
        &opts.input_stream,
        vec![subjects.all_ticks(), subjects.all_factors()],
        false,
        opts,
    )
    .await?;
    let out_subjects = vec![
        format!("{p}.pred.>"),
        format!("{p}.quarantine.>"),
        format!("{p}.alert.>"),
        format!("{p}.business.masked.>"),
        format!("{p}.business.quarantine.>"),
    ];
    ensure_stream(&js, &opts.output_stream, out_subjects, true, opts).await?;
    let removed = lake::remove_temp_files(&opts.dir)?;
    if removed > 0 {
        tracing::info!(files = removed, "removed temporary files left by an interrupted run");
    }
    let mut lake = Lake::new(&opts.dir, p, opts.policy)?;
    // Files are written by a thread of their own, so reading goes on while one is compressed and
    // fsynced; each file written comes back here, and only then are its messages acknowledged.
    let (durable_tx, mut durable_rx) = tokio::sync::mpsc::unbounded_channel();
    lake.write_in_background(Some(Box::new(move |r| {
        // The receiver goes only when the archive stops, after the thread is joined.
        let _ = durable_tx.send(r);
    })))?;
    let mut sources = vec![
        source(&js, &opts.input_stream, opts).await?,
        source(&js, &opts.output_stream, opts).await?,
    ];
    let mut summary = ArchiveSummary::default();
    let m = &opts.metrics;
    tokio::pin!(shutdown);
    let mut timer =
        tokio::time::interval((opts.policy.max_age / 4).clamp(Duration::from_millis(50), Duration::from_secs(1)));
    let mut pruned = Instant::now();
    let mut backoff = Duration::from_millis(100);
    'outer: loop {
        let mut streams = Vec::new();
        for (i, s) in sources.iter().enumerate() {
            match s.consumer.stream().max_messages_per_batch(1024).messages().await {
                Ok(m) => streams.push(m.map(move |r| (i, r)).boxed()),
                Err(e) => {
                    m.error("pull");
                    tracing::warn!(stream = %s.stream, error = %e, "cannot pull: retrying");
                    tokio::select! {
                        () = &mut shutdown => break 'outer,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue 'outer;
                }
            }
        }
        backoff = Duration::from_millis(100);
        let mut merged = futures_util::stream::select_all(streams);
        loop {
            tokio::select! {
                () = &mut shutdown => break 'outer,
                Some(first) = durable_rx.recv() => {
                    let mut done = vec![flushed(first, m)?];
                    while let Ok(r) = durable_rx.try_recv() {
                        done.push(flushed(r, m)?);
                    }
                    ack_durable(&mut sources, done, &mut summary, m).await;
                }
                _ = timer.tick() => {
                    let done = flushed(lake.roll_due(Instant::now(), false), m)?;
                    ack_durable(&mut sources, done, &mut summary, m).await;
                    if pruned.elapsed() >= Duration::from_secs(1) {
                        prune(&mut sources, m).await;
                        pruned = Instant::now();
                    }
                }
                next = merged.next() => match next {
                    Some((i, Ok(msg))) => {
                        if on_message(&mut lake, &mut sources, i, msg, &mut summary, m).await? == Delivery::Gap {
                            // Everything held is written and acknowledged up to the gap, and the
                            // consumers are read again from their acknowledged floors.
                            let mut done = flushed(lake.flush_and_wait(Instant::now()), m)?;
                            while let Ok(r) = durable_rx.try_recv() {
                                done.push(flushed(r, m)?);
                            }
                            ack_durable(&mut sources, done, &mut summary, m).await;
                            if let Err(e) = client.flush().await {
                                tracing::warn!(error = %e, "flushing the acknowledgements");
                            }
                            drop(merged);
                            sources = vec![
                                source(&js, &opts.input_stream, opts).await?,
                                source(&js, &opts.output_stream, opts).await?,
                            ];
                            continue 'outer;
                        }
                    }
                    Some((i, Err(e))) => {
                        m.error("pull");
                        tracing::warn!(stream = %sources[i].stream, error = %e, "pull interrupted: pulling again");
                        continue 'outer;
                    }
                    None => continue 'outer,
                },
            }
        }
    }
    let mut done = flushed(lake.finish(Instant::now()), m)?;
    while let Ok(r) = durable_rx.try_recv() {
        done.push(flushed(r, m)?);
    }
    ack_durable(&mut sources, done, &mut summary, m).await;
    summary.ignored = lake.ignored;
    if let Err(e) = client.flush().await {
        tracing::warn!(error = %e, "flushing the last acknowledgements");
    }
    Ok(summary)
}

/// A flush's result, its failure counted.
fn flushed<T>(r: Result<T, LakeError>, m: &ArchiveMetrics) -> Result<T, LakeError> {
    if r.is_err() {
        m.error("write");
    }
    r
}

/// What became of a delivery.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    /// Held, skipped or ignored.
    Taken,
    /// It does not follow the last delivery: one was missed on the way, which the floor must not pass.
    /// Not taken.
    Gap,
}

async fn on_message(
    lake: &mut Lake,
    sources: &mut [Source],
    i: usize,
    msg: jetstream::Message,
    summary: &mut ArchiveSummary,
    m: &ArchiveMetrics,
) -> Result<Delivery, ArchiveError> {
    let (seq, delivery) = match msg.info() {
        Ok(info) => (info.stream_sequence, info.consumer_sequence),
        Err(e) => {
            m.error("no_metadata");
            tracing::warn!(error = %e, "a message without JetStream metadata: not archived");
            return Ok(Delivery::Taken);
        }
    };
    let src = &mut sources[i];
    if let Some(last) = src.last_delivery
        && delivery != last + 1
    {
        m.error("delivery_gap");
        tracing::warn!(stream = %src.stream, expected = last + 1, delivered = delivery,
            "a delivery was missed: writing what is held and reading again from the acknowledged floor");
        return Ok(Delivery::Gap);
    }
    src.last_delivery = Some(delivery);
    let (msg, acker) = msg.split();
    if let Some(h) = src.held.get_mut(&seq) {
        // Delivered again before the floor passed it (a roll slower than ack_wait): one row, the newest
        // handle.
        h.acker = acker;
        return Ok(Delivery::Taken);
    }
    let kept = if src.durable.contains(&seq) {
        summary.skipped += 1;
        m.redelivered.inc();
        None
    } else {
        let arrival_us = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_micros()).ok());
        let message = Message {
            stream: &src.stream,
            seq,
            arrival_us,
            subject: msg.subject.as_str(),
            payload: &msg.payload,
        };
        let started = Instant::now();
        let (kept, rolled) = flushed(lake.push(&message, started), m)?;
        if !kept {
            m.ignored.inc();
        }
        Some((kept, rolled, started))
    };
    // A skipped or ignored message is held too, as durable: acknowledging it alone would acknowledge
    // every message before it.
    let durable = !matches!(kept, Some((true, _, _)));
    src.held.insert(seq, Held { acker, durable });
    let mut done = Vec::new();
    match kept {
        Some((true, rolled, started)) => {
            src.pending += 1;
            done.extend(rolled);
            if src.held.len() >= FLOOR_HELD && lake.in_flight() == 0 {
                // A partition rolling by age holds the floor back: every one is written now (once the
                // files being written are done, which may already move the floor).
                done.extend(flushed(lake.roll_due(started, true), m)?);
            }
        }
        // Nothing waits for a file: the floor moves at once.
        _ if src.pending == 0 => {}
        _ => return Ok(Delivery::Taken),
    }
    if !done.is_empty() || sources[i].pending == 0 {
        ack_durable(sources, done, summary, m).await;
    }
    Ok(Delivery::Taken)
}

async fn ack(acker: &Acker, m: &ArchiveMetrics) {
    if let Err(e) = acker.ack_with(AckKind::Ack).await {
        // Not fatal: the messages come again and are skipped as already durable.
        m.error("ack");
        tracing::warn!(error = %e, "acknowledgement not sent");
    }
}

/// Marks the messages of files that became durable, and acknowledges each stream's new floor: the
/// highest sequence with every message held up to it durable (one acknowledgement covers them all).
async fn ack_durable(sources: &mut [Source], done: Vec<Durable>, summary: &mut ArchiveSummary, m: &ArchiveMetrics) {
    for d in done {
        m.flush_seconds.observe(d.seconds);
        summary.files += 1;
        summary.rows += d.seqs.len() as u64;
        let kind = KindLabel { kind: d.kind.name() };
        m.rows.get_or_create(&kind).inc_by(d.seqs.len() as u64);
        m.files.get_or_create(&kind).inc();
        m.bytes.get_or_create(&kind).inc_by(d.bytes);
        let Some(src) = sources.iter_mut().find(|s| s.stream == d.stream) else {
            continue;
        };
        for seq in d.seqs {
            if let Some(h) = src.held.get_mut(&seq)
                && !h.durable
            {
                h.durable = true;
                src.pending -= 1;
            }
        }
    }
    for src in sources.iter_mut() {
        let mut floor = None;
        while let Some(e) = src.held.first_entry() {
            if !e.get().durable {
                break;
            }
            floor = Some(e.remove());
        }
        if let Some(h) = floor {
            ack(&h.acker, m).await;
        }
    }
    set_pending(sources, m);
}

fn set_pending(sources: &[Source], m: &ArchiveMetrics) {
    for s in sources {
        let n = i64::try_from(s.pending).unwrap_or(i64::MAX);
        m.pending
            .get_or_create(&StreamLabel {
                stream: s.stream.clone(),
            })
            .set(n);
    }
}

/// Reads each consumer's state: its lag (messages not yet delivered) for the metrics, and its
/// acknowledged floor, below which durable sequences are forgotten (never delivered again).
async fn prune(sources: &mut [Source], m: &ArchiveMetrics) {
    set_pending(sources, m);
    for s in sources {
        match s.consumer.info().await {
            Ok(info) => {
                let floor = info.ack_floor.stream_sequence;
                s.durable.retain(|&q| q > floor);
                let lag = i64::try_from(info.num_pending).unwrap_or(i64::MAX);
                m.lag
                    .get_or_create(&StreamLabel {
                        stream: s.stream.clone(),
                    })
                    .set(lag);
            }
            Err(e) => {
                m.error("consumer_info");
                tracing::debug!(stream = %s.stream, error = %e, "consumer info");
            }
        }
    }
}
