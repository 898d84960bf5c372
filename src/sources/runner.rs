//! Runs the sources: each on its schedule in its own task, so one failing or slow source never holds up
//! another. A run of a source, for each series: read the watermark, fetch what is after it, refuse dates
//! after today (in the source's time zone), publish in date order with `Nats-Msg-Id`, and move the
//! watermark to the last observation the server acknowledged (a JetStream ack when a stream captures the
//! subject, else a flush of the connection).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream;

use super::config::{Kind, SourceConfig, SourcesConfig};
use super::postgres::{Backoff, PostgresConfig, PostgresError, PostgresSource, RunReport, Sink};
use super::watermark::{WatermarkError, Watermarks, key};
use super::wire::{Message, id_time, message};
use super::{Connector, Date, FetchError};
use crate::nats::Subjects;
use crate::nats::headers::MSG_ID;
use crate::time::US_PER_SEC;

/// How many messages are published before their acknowledgements are awaited and the watermark moves.
const BATCH: usize = 500;

/// Why the runner could not start (a source's failure is not one: it is counted and the others go on).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The subject prefix is invalid.
    #[error("prefix: {0}")]
    Prefix(String),
    /// The watermark bucket could not be opened.
    #[error(transparent)]
    Watermark(#[from] WatermarkError),
}

/// Why one run of one series failed.
#[derive(Debug, thiserror::Error)]
enum SeriesError {
    /// The fetch failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The watermark could not be read or written.
    #[error("source {source_name}: {error}")]
    Watermark {
        /// The source.
        source_name: String,
        /// The error.
        error: WatermarkError,
    },
    /// A publication was not acknowledged.
    #[error("source {source_name}: publishing on {subject}: {message}")]
    Publish {
        /// The source.
        source_name: String,
        /// The subject.
        subject: String,
        /// The error.
        message: String,
    },
}

impl SeriesError {
    fn class(&self) -> &'static str {
        match self {
            SeriesError::Fetch(e) => e.class(),
            SeriesError::Watermark { .. } => "watermark",
            SeriesError::Publish { .. } => "publish",
        }
    }
}

/// What a source has done since the runner started.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SourceCounts {
    /// The source's name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// Runs started.
    pub runs: u64,
    /// Observations fetched after the watermark.
    pub fetched: u64,
    /// Messages published and acknowledged.
    pub published: u64,
    /// Of those, how many carried a missing value.
    pub missing: u64,
    /// Observations dated after today, refused.
    pub refused_future: u64,
    /// Publications JetStream reported as duplicates (already in the stream).
    pub duplicates: u64,
    /// Retries of transient HTTP failures.
    pub retries: u64,
    /// Failures, by class (`unauthorized`, `rate_limited`, `http_status`, `transport`, `invalid_body`,
    /// `missing_token`, `watermark`, `publish`).
    pub errors: BTreeMap<String, u64>,
    /// Whether the last run failed for any series.
    pub failed: bool,
    /// The last failure, for people.
    pub last_error: Option<String>,
}

/// How [`run`] runs.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Run each source once and return (`--once`), instead of on its schedule until shutdown.
    pub once: bool,
}

/// The counts of every source, shared with whoever reports them (the summary, metrics).
pub type SharedCounts = Arc<Mutex<Vec<SourceCounts>>>;

/// Builds the connector of a source.
///
/// # Errors
/// [`FetchError`] when it cannot be built (a token that is not set).
pub fn connector_for(cfg: &SourceConfig) -> Result<Box<dyn Connector>, FetchError> {
    match cfg.kind {
        Kind::Banxico | Kind::Inegi | Kind::Fred => Ok(Box::new(super::http::HttpConnector::new(cfg)?)),
        // Its own loop ([`SourceTask::run_postgres`]): pages with its own watermark type, LISTEN/NOTIFY.
        Kind::Postgres => Err(FetchError::Other {
            source_name: cfg.name.clone(),
            message: "a postgres source has no series connector".into(),
            transient: false,
        }),
    }
}

/// Today's date `offset_min` minutes from UTC, by the wall clock (this is the I/O edge).
pub fn today(offset_min: i64) -> Date {
    let now = now_us();
    Date::of_us(now + offset_min * 60 * US_PER_SEC)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Runs every source of `cfg` until `shutdown` resolves (or, with `once`, until each ran once) and returns
/// their counts.
///
/// # Errors
/// [`RunError`] when the prefix is invalid or the watermark bucket cannot be opened.
pub async fn run(
    client: &async_nats::Client,
    cfg: &SourcesConfig,
    options: RunOptions,
    counts: SharedCounts,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<Vec<SourceCounts>, RunError> {
    let subjects = Subjects::new(&cfg.prefix).map_err(RunError::Prefix)?;
    let js = jetstream::new(client.clone());
    let watermarks = Watermarks::open(&js, &cfg.bucket).await?;
    {
        let mut c = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *c = cfg
            .sources
            .iter()
            .map(|s| SourceCounts {
                name: s.name.clone(),
                kind: s.kind.as_str().to_string(),
                ..SourceCounts::default()
            })
            .collect();
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, src) in cfg.sources.iter().enumerate() {
        let ctx = SourceTask {
            index: i,
            cfg: src.clone(),
            client: client.clone(),
            js: js.clone(),
            watermarks: watermarks.clone(),
            subjects: subjects.clone(),
            counts: counts.clone(),
            stop: stop_rx.clone(),
            once: options.once,
        };
        tasks.spawn(ctx.run());
    }
    tokio::select! {
        () = async { while tasks.join_next().await.is_some() {} } => {}
        () = shutdown => {
            let _ = stop_tx.send(true);
            // A run in progress finishes its batch; bounded by the sources' timeouts.
            while tasks.join_next().await.is_some() {}
        }
    }
    let c = counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    Ok(c.clone())
}

struct SourceTask {
    index: usize,
    cfg: SourceConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    watermarks: Watermarks,
    subjects: Subjects,
    counts: SharedCounts,
    stop: tokio::sync::watch::Receiver<bool>,
    once: bool,
}

impl SourceTask {
    fn update(&self, f: impl FnOnce(&mut SourceCounts)) {
        let mut c = self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sc) = c.get_mut(self.index) {
            f(sc);
        }
    }

    fn fail(&self, e: &dyn std::fmt::Display, class: &str) {
        tracing::error!(source = %self.cfg.name, class, error = %e, "source failed");
        let text = e.to_string();
        self.update(|c| {
            *c.errors.entry(class.to_string()).or_default() += 1;
            c.failed = true;
            c.last_error = Some(text);
        });
    }

    async fn run(mut self) {
        if let Some(pg) = self.cfg.postgres.clone() {
            return self.run_postgres(pg).await;
        }
        let connector = match connector_for(&self.cfg) {
            Ok(c) => Some(c),
            Err(e) => {
                self.update(|c| c.runs += 1);
                self.fail(&e, e.class());
                None
            }
        };
        let Some(connector) = connector else { return };
        loop {
            self.run_once(connector.as_ref()).await;
            if self.once || *self.stop.borrow() {
                return;
            }
            let now = now_us();
            let Some(next) = self.cfg.schedule.next_after(now, self.cfg.kind.utc_offset_minutes()) else {
                tracing::warn!(source = %self.cfg.name, "the schedule never matches again; the source stops");
                return;
            };
            let wait = Duration::from_micros(u64::try_from(next - now).unwrap_or(0));
            tracing::info!(source = %self.cfg.name, next = %crate::time::format_ts(next), "next run");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = self.stop.changed() => return,
            }
        }
    }

    /// A `postgres` source: each run pages through the query from its watermark
    /// ([`PostgresSource::run_into`]), on the schedule and, with `listen`, at once on a `NOTIFY`.
    async fn run_postgres(mut self, pg: PostgresConfig) {
        let mut source = match PostgresSource::new(&self.cfg.name, pg) {
            Ok(s) => s.with_timeout(self.cfg.timeout),
            Err(e) => {
                self.update(|c| c.runs += 1);
                self.fail(&e, "config");
                return;
            }
        };
        let key = key(Kind::Postgres.as_str(), &self.cfg.name);
        let backoff = Backoff {
            attempts: self.cfg.retries + 1,
            first: self.cfg.backoff,
        };
        loop {
            self.update(|c| {
                c.runs += 1;
                c.failed = false;
            });
            let sink = Sink {
                js: &self.js,
                kv: self.watermarks.store(),
                key: &key,
                prefix: self.subjects.prefix(),
            };
            let mut report = RunReport::default();
            let result = source.run_into(&sink, backoff, &mut report).await;
            self.update(|c| {
                c.fetched += (report.published + report.duplicates) as u64;
                c.published += report.published as u64;
                c.duplicates += report.duplicates as u64;
                c.missing += report.missing as u64;
                c.retries += u64::from(report.retries);
            });
            if let Err(e) = result {
                let class = match e {
                    PostgresError::Connect(_) => "connection",
                    PostgresError::Nats(_) => "publish",
                    _ => "query",
                };
                self.fail(&e, class);
            }
            if self.once || *self.stop.borrow() {
                return;
            }
            let now = now_us();
            let Some(next) = self.cfg.schedule.next_after(now, self.cfg.kind.utc_offset_minutes()) else {
                tracing::warn!(source = %self.cfg.name, "the schedule never matches again; the source stops");
                return;
            };
            let wait = Duration::from_micros(u64::try_from(next - now).unwrap_or(0));
            tracing::info!(source = %self.cfg.name, next = %crate::time::format_ts(next), "next run");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = source.notified() => {
                    tracing::info!(source = %self.cfg.name, "NOTIFY: polling now");
                }
                _ = self.stop.changed() => return,
            }
        }
    }

    async fn run_once(&self, connector: &dyn Connector) {
        self.update(|c| {
            c.runs += 1;
            c.failed = false;
        });
        let today = today(self.cfg.kind.utc_offset_minutes());
        for (series, target) in &self.cfg.series {
            if let Err(e) = self.run_series(connector, series, target, today).await {
                self.fail(&e, e.class());
            }
        }
    }

    async fn run_series(
        &self,
        connector: &dyn Connector,
        series: &str,
        target: &super::Target,
        today: Date,
    ) -> Result<(), SeriesError> {
        let name = &self.cfg.name;
        let kind = self.cfg.kind.as_str();
        let wm_key = key(kind, series);
        let wm_err = |error| SeriesError::Watermark {
            source_name: name.clone(),
            error,
        };
        let watermark = self.watermarks.get(&wm_key).await.map_err(wm_err)?;
        // The retries are counted as soon as the fetch ends (before anything is published), so a scrape
        // that sees this series' publications also sees the retries they took.
        let retries_before = connector.retries();
        let fetched = connector.fetch(series, watermark, today).await;
        let retried = connector.retries().saturating_sub(retries_before);
        self.update(|c| c.retries += retried);
        let mut obs = fetched?;
        let start_us = self.cfg.start.midnight_us();
        obs.retain(|o| o.ts_us >= start_us && watermark.is_none_or(|w| o.ts_us > w));
        obs.sort_by_key(|o| o.ts_us);
        obs.dedup_by_key(|o| o.ts_us);
        let fetched = obs.len() as u64;
        let mut refused = 0u64;
        obs.retain(|o| {
            let future = Date::of_us(o.ts_us) > today;
            if future {
                refused += 1;
                tracing::warn!(
                    source = %name, series, date = %id_time(o.ts_us), today = %today,
                    "observation dated after today refused, not published"
                );
            }
            !future
        });
        self.update(|c| {
            c.fetched += fetched;
            c.refused_future += refused;
        });
        let mut captured: HashMap<String, bool> = HashMap::new();
        for chunk in obs.chunks(BATCH) {
            let msgs: Vec<Message> = chunk.iter().map(|o| message(kind, o, target, &self.subjects)).collect();
            let (acked, duplicates) = self.publish(&msgs, &mut captured).await;
            let missing = chunk[..acked].iter().filter(|o| o.value.is_none()).count() as u64;
            self.update(|c| {
                c.published += acked as u64;
                c.missing += missing;
                c.duplicates += duplicates;
            });
            if acked > 0 {
                self.watermarks
                    .put(&wm_key, chunk[acked - 1].ts_us)
                    .await
                    .map_err(wm_err)?;
            }
            if acked < chunk.len() {
                return Err(SeriesError::Publish {
                    source_name: name.clone(),
                    subject: msgs[acked].subject.clone(),
                    message: "not acknowledged".into(),
                });
            }
        }
        if !obs.is_empty() {
            tracing::info!(source = %name, series, published = obs.len(), "published");
        }
        Ok(())
    }

    /// Publishes `msgs` and returns how many, from the first, were acknowledged, and how many of those
    /// JetStream reported as duplicates.
    async fn publish(&self, msgs: &[Message], captured: &mut HashMap<String, bool>) -> (usize, u64) {
        let Some(first) = msgs.first() else { return (0, 0) };
        // All messages of a series share one subject.
        let in_stream = match captured.get(&first.subject) {
            Some(&c) => c,
            None => {
                let c = self.js.stream_by_subject(first.subject.clone()).await.is_ok();
                captured.insert(first.subject.clone(), c);
                c
            }
        };
        let headers = |m: &Message| {
            let mut h = HeaderMap::new();
            h.insert(MSG_ID, m.msg_id.as_str());
            h
        };
        if in_stream {
            let mut acks = Vec::with_capacity(msgs.len());
            for m in msgs {
                match self
                    .js
                    .publish_with_headers(m.subject.clone(), headers(m), m.payload.clone().into())
                    .await
                {
                    Ok(f) => acks.push(f),
                    Err(e) => {
                        tracing::error!(source = %self.cfg.name, subject = %m.subject, error = %e, "publish failed");
                        break;
                    }
                }
            }
            let mut acked = 0;
            let mut duplicates = 0;
            for f in acks {
                match f.await {
                    Ok(ack) => {
                        acked += 1;
                        duplicates += u64::from(ack.duplicate);
                    }
                    Err(e) => {
                        tracing::error!(source = %self.cfg.name, error = %e, "publication not acknowledged");
                        break;
                    }
                }
            }
            (acked, duplicates)
        } else {
            for (i, m) in msgs.iter().enumerate() {
                if let Err(e) = self
                    .client
                    .publish_with_headers(m.subject.clone(), headers(m), m.payload.clone().into())
                    .await
                {
                    tracing::error!(source = %self.cfg.name, subject = %m.subject, error = %e, "publish failed");
                    return (i, 0);
                }
            }
            match self.client.flush().await {
                Ok(()) => (msgs.len(), 0),
                Err(e) => {
                    tracing::error!(source = %self.cfg.name, error = %e, "flush failed");
                    (0, 0)
                }
            }
        }
    }
}
