//! The floor: the least a NATS service can do for each of cambio's messages, measured with the same client
//! options, so `cambio load` can say what cambio's own work costs on top of NATS.
//!
//! - Every tick on `<prefix>.ticks.<PAIR>` is forwarded unchanged to `<prefix>.pred.<PAIR>`: the bare cost
//!   of "receive a tick, publish a message", without parsing, the engine or JSON output.
//! - A NATS micro service named `floor` answers `<prefix>.query.*` with a fixed small JSON body: the bare
//!   cost of a request-reply endpoint, to compare with cambio's latest-forecast query.
//! - With JetStream, ticks come from a durable pull consumer on the same stream cambio reads and are acked
//!   after forwarding, as cambio acks after processing.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use async_nats::service::ServiceExt;
use async_nats::{Client, Subject};
use bytes::Bytes;
use futures_util::StreamExt;

use super::Subjects;

/// The fixed reply of the floor's query endpoint: small, like a short forecast's envelope.
pub const QUERY_REPLY: &[u8] = br#"{"type":"floor","pair":"USDMXN","ok":true}"#;

/// The micro service's name (what `$SRV.PING.floor` answers to).
pub const SERVICE_NAME: &str = "floor";

/// Where the floor reads ticks from in JetStream mode: the same stream and consumer setup as cambio's
/// (`serve::jetstream_consumer`: file storage, 2-minute duplicate window, explicit acks, 30 s ack wait,
/// 20,000 pending, pulls of 1,024).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamSetup {
    /// Stream name; created on `<prefix>.ticks.>` and `<prefix>.factors.>` when missing.
    pub stream: String,
    /// Durable consumer name (explicit acks, deliver all).
    pub durable: String,
}

/// What the floor forwards and how.
#[derive(Debug, Clone)]
pub struct FloorOptions {
    /// The contract's subjects.
    pub subjects: Subjects,
    /// `Some`: consume from a JetStream durable consumer instead of a core subscription.
    pub jetstream: Option<JetStreamSetup>,
}

/// Counts reported when the floor stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloorStats {
    /// Ticks forwarded to a pred subject.
    pub forwarded: u64,
    /// Messages not forwarded: a subject without a valid pair (e.g. factors from the stream).
    pub skipped: u64,
    /// Queries answered.
    pub queries: u64,
}

/// Why the floor stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum FloorError {
    /// Subscribing, publishing or flushing failed.
    #[error("nats: {0}")]
    Nats(String),
    /// The micro service could not be started or stopped.
    #[error("service: {0}")]
    Service(String),
    /// The JetStream stream or consumer could not be set up or read.
    #[error("jetstream: {0}")]
    JetStream(String),
}

fn nats(e: impl std::fmt::Display) -> FloorError {
    FloorError::Nats(e.to_string())
}

fn js(e: impl std::fmt::Display) -> FloorError {
    FloorError::JetStream(e.to_string())
}

/// Pred subjects by tick subject, built once per pair so the hot path does not format strings.
struct Routes {
    subjects: Subjects,
    by_tick_subject: HashMap<String, Option<Subject>>,
}

impl Routes {
    fn new(subjects: Subjects) -> Routes {
        Routes {
            subjects,
            by_tick_subject: HashMap::new(),
        }
    }

    /// The pred subject for a tick subject, or `None` when it names no valid pair. The cache is bounded
    /// by the pairs seen; a flood of junk subjects is capped so it cannot grow without limit.
    fn pred(&mut self, tick_subject: &Subject) -> Option<Subject> {
        if let Some(hit) = self.by_tick_subject.get(tick_subject.as_str()) {
            return hit.clone();
        }
        let pred = self
            .subjects
            .token("ticks", tick_subject.as_str())
            .and_then(crate::tick::Pair::parse)
            .map(|p| Subject::from(self.subjects.pred(p)));
        if self.by_tick_subject.len() < 4_096 {
            self.by_tick_subject.insert(tick_subject.to_string(), pred.clone());
        }
        pred
    }
}

/// What [`drain`] read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrainStats {
    /// Messages read.
    pub messages: u64,
    /// Seconds from the first message read to the last.
    pub seconds: f64,
}

/// Messages a drain pulls at a time and acknowledges with one acknowledgement: as `cambio archive` pulls.
const DRAIN_BATCH: usize = 1_024;

/// A drain stops when no message came for this long (a stream whose last messages were removed).
const DRAIN_IDLE: Duration = Duration::from_secs(10);

/// Reads `stream` from its first message to the last one it holds now, through a new durable pull consumer
/// `durable` set up as `cambio archive`'s (acknowledgement of all up to a message, pulls of 1,024), doing
/// nothing with the messages but reading their JetStream metadata and acknowledging each 1,024th: the
/// floor of the archive's live drain, on the same server and client.
///
/// # Errors
/// [`FloorError::JetStream`] when the stream or the consumer cannot be read.
pub async fn drain(client: Client, stream: &str, durable: &str) -> Result<DrainStats, FloorError> {
    let ctx = jetstream::new(client.clone());
    let mut s = ctx.get_stream(stream).await.map_err(js)?;
    let last = s.info().await.map_err(js)?.state.last_sequence;
    let consumer = s
        .get_or_create_consumer(
            durable,
            pull::Config {
                durable_name: Some(durable.to_string()),
                ack_policy: jetstream::consumer::AckPolicy::All,
                ack_wait: Duration::from_secs(120),
                max_ack_pending: 1_000_000,
                ..Default::default()
            },
        )
        .await
        .map_err(js)?;
    let mut stats = DrainStats {
        messages: 0,
        seconds: 0.0,
    };
    if last == 0 {
        return Ok(stats);
    }
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(DRAIN_BATCH)
        .messages()
        .await
        .map_err(js)?;
    let mut first = None;
    while let Ok(Some(m)) = tokio::time::timeout(DRAIN_IDLE, messages.next()).await {
        let m = m.map_err(js)?;
        let seq = m.info().map_err(js)?.stream_sequence;
        let started = *first.get_or_insert_with(std::time::Instant::now);
        stats.messages += 1;
        stats.seconds = started.elapsed().as_secs_f64();
        if stats.messages.is_multiple_of(DRAIN_BATCH as u64) || seq >= last {
            m.ack().await.map_err(js)?;
        }
        if seq >= last {
            break;
        }
    }
    // The last acknowledgement is only buffered: sent before the process exits.
    client.flush().await.map_err(nats)?;
    Ok(stats)
}

/// Runs the floor until `shutdown` resolves, then stops the service and flushes.
///
/// # Errors
/// [`FloorError`] when a subscription, the service or the JetStream consumer cannot be set up, or the
/// connection fails for good.
pub async fn run(
    client: Client,
    opts: &FloorOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<FloorStats, FloorError> {
    let mut stats = FloorStats::default();
    let service = client
        .service_builder()
        .description("bare NATS echo and forwarder: the floor cambio is measured against")
        .start(SERVICE_NAME, "0.1.0")
        .await
        .map_err(|e| FloorError::Service(e.to_string()))?;
    let mut queries = service
        .endpoint_builder()
        .name("query")
        .add(opts.subjects.endpoint("query"))
        .await
        .map_err(|e| FloorError::Service(e.to_string()))?;
    let mut routes = Routes::new(opts.subjects.clone());
    let reply = Bytes::from_static(QUERY_REPLY);
    tokio::pin!(shutdown);

    match &opts.jetstream {
        None => {
            let mut ticks = client.subscribe(opts.subjects.all_ticks()).await.map_err(nats)?;
            client.flush().await.map_err(nats)?;
            tracing::info!(subject = %opts.subjects.all_ticks(), "serving");
            loop {
                tokio::select! {
                    msg = ticks.next() => {
                        let Some(msg) = msg else { break };
                        match routes.pred(&msg.subject) {
                            Some(to) => {
                                client.publish(to, msg.payload).await.map_err(nats)?;
                                stats.forwarded += 1;
                            }
                            None => stats.skipped += 1,
                        }
                    }
                    req = queries.next() => {
                        let Some(req) = req else { break };
                        // A requester that went away is not the floor's failure.
                        if req.respond(Ok(reply.clone())).await.is_ok() {
                            stats.queries += 1;
                        }
                    }
                    () = &mut shutdown => break,
                }
            }
        }
        Some(setup) => {
            let ctx = jetstream::new(client.clone());
            let stream = ctx
                .get_or_create_stream(stream::Config {
                    name: setup.stream.clone(),
                    subjects: vec![opts.subjects.all_ticks(), opts.subjects.all_factors()],
                    storage: stream::StorageType::File,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                })
                .await
                .map_err(js)?;
            let consumer: jetstream::consumer::PullConsumer = stream
                .get_or_create_consumer(
                    &setup.durable,
                    pull::Config {
                        durable_name: Some(setup.durable.clone()),
                        ack_policy: jetstream::consumer::AckPolicy::Explicit,
                        ack_wait: Duration::from_secs(30),
                        max_ack_pending: 20_000,
                        filter_subjects: vec![opts.subjects.all_ticks(), opts.subjects.all_factors()],
                        ..Default::default()
                    },
                )
                .await
                .map_err(js)?;
            let mut messages = consumer
                .stream()
                .max_messages_per_batch(1024)
                .messages()
                .await
                .map_err(js)?;
            tracing::info!(stream = %setup.stream, durable = %setup.durable, "serving");
            loop {
                tokio::select! {
                    msg = messages.next() => {
                        let Some(msg) = msg else { break };
                        let msg = msg.map_err(js)?;
                        match routes.pred(&msg.subject) {
                            Some(to) => {
                                client.publish(to, msg.payload.clone()).await.map_err(nats)?;
                                stats.forwarded += 1;
                            }
                            None => stats.skipped += 1,
                        }
                        // Acked only after the forward was handed to the connection, as cambio acks
                        // only after processing.
                        msg.ack().await.map_err(js)?;
                    }
                    req = queries.next() => {
                        let Some(req) = req else { break };
                        if req.respond(Ok(reply.clone())).await.is_ok() {
                            stats.queries += 1;
                        }
                    }
                    () = &mut shutdown => break,
                }
            }
        }
    }
    drop(queries);
    service.stop().await.map_err(|e| FloorError::Service(e.to_string()))?;
    client.flush().await.map_err(nats)?;
    tracing::info!(
        forwarded = stats.forwarded,
        skipped = stats.skipped,
        queries = stats.queries,
        "floor stopped"
    );
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_tick_subjects_to_pred_subjects() {
        let mut r = Routes::new(Subjects::new("bank.fx").unwrap());
        let s = Subject::from("bank.fx.ticks.USDMXN");
        assert_eq!(r.pred(&s).as_ref().map(|s| s.as_str()), Some("bank.fx.pred.USDMXN"));
        assert_eq!(
            r.pred(&s).as_ref().map(|s| s.as_str()),
            Some("bank.fx.pred.USDMXN"),
            "cached"
        );
        assert_eq!(r.pred(&Subject::from("bank.fx.factors.TIIE28")), None);
        assert_eq!(r.pred(&Subject::from("bank.fx.ticks.usdmxn")), None, "not a pair");
        assert_eq!(r.pred(&Subject::from("bank.fx.ticks.USDMXN.x")), None);
    }

    #[test]
    fn the_query_reply_is_json() {
        let v: serde_json::Value = serde_json::from_slice(QUERY_REPLY).unwrap();
        assert_eq!(v["type"], "floor");
    }
}
