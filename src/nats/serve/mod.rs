//! `cambio serve`: the long-running service. Ticks in from NATS (core subscriptions or a JetStream durable
//! consumer), one engine shard per pair, forecasts, quarantines, quality, drift and alerts out, and a
//! micro service for request-reply.
//!
//! Shape (after mini-redis): [`run`] takes the configuration and a shutdown future; on shutdown it stops
//! consuming, lets every shard drain its queue (finishing in-flight ticks and acknowledging them), stops
//! the micro service and flushes the client before returning. The engines are the same [`Engine`] that
//! replay uses, so live and replayed outputs agree bit for bit.
//!
//! [`Engine`]: crate::engine::Engine

pub mod applied;
pub mod config;
pub mod router;
pub mod service;
pub mod shard;
pub mod stats;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::StreamExt;

pub use config::{IngestMode, JetStreamConfig, ServeConfig};

use self::applied::AppliedSeqs;
use self::router::{Delivery, Router};
use self::service::ServiceState;
use self::shard::ShardContext;
use self::stats::Counters;
use crate::config::Config;
use crate::engine::{Engine, EngineSummary};
use crate::nats::{LocalServer, NatsError, Subjects};

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Connecting (or starting the local server) failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// A subscription could not be made.
    #[error("subscribe: {0}")]
    Subscribe(String),
    /// The JetStream stream or consumer could not be set up.
    #[error("jetstream: {0}")]
    JetStream(String),
    /// The micro service could not start.
    #[error(transparent)]
    Service(#[from] service::ServiceError),
}

/// What the service did, returned after a graceful shutdown.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServeSummary {
    /// The NATS URL served.
    pub url: String,
    /// Service counters at the end.
    pub counters: serde_json::Value,
    /// Each pair's final summary.
    pub pairs: Vec<EngineSummary>,
}

/// Runs the service until `shutdown` resolves, then drains and returns.
///
/// # Errors
/// [`ServeError`] when the configuration is invalid, the server cannot be reached at start, or the
/// subscriptions, the JetStream consumer or the micro service cannot be set up.
pub async fn run(cfg: Config, shutdown: impl Future<Output = ()>) -> Result<ServeSummary, ServeError> {
    cfg.engine.validate().map_err(ServeError::Config)?;
    cfg.serve.validate().map_err(ServeError::Config)?;
    let subjects = Subjects::new(&cfg.serve.prefix).map_err(ServeError::Config)?;
    // Fail fast on settings that only the engine's constructor checks.
    if let Some(probe) = crate::tick::Pair::parse("USDMXN") {
        Engine::new(probe, &cfg.engine).map_err(|e| ServeError::Config(e.to_string()))?;
    }

    let mut nats_cfg = cfg.nats.clone();
    let _local = match &nats_cfg.url {
        Some(_) => None,
        None => {
            let server = LocalServer::start(true, None)?;
            tracing::info!(
                url = %server.url(),
                "no NATS server configured: started a local nats-server (JetStream on) on a free loopback port"
            );
            nats_cfg.url = Some(server.url());
            Some(server)
        }
    };
    let url = nats_cfg.url.clone().unwrap_or_default();
    let (client, events) = crate::nats::connect(&nats_cfg, "cambio").await?;

    let counters = Arc::new(Counters::default());
    let ctx = Arc::new(ShardContext {
        client: client.clone(),
        subjects: subjects.clone(),
        counters: counters.clone(),
        report_interval: Duration::from_secs_f64(cfg.serve.report_interval_secs),
        max_raw_bytes: cfg.serve.max_raw_bytes,
    });
    let registry = Arc::new(RwLock::new(HashMap::new()));
    let mut router = Router::new(
        cfg.engine.clone(),
        ctx,
        registry.clone(),
        cfg.serve.shard_queue,
        cfg.serve.max_pairs,
        cfg.serve.stamp_arrival,
    );
    let state = Arc::new(ServiceState {
        registry,
        subjects: subjects.clone(),
        counters: counters.clone(),
        events,
        query_latency: Default::default(),
        status_latency: Default::default(),
    });

    match cfg.serve.mode {
        IngestMode::Core => {
            let mut ticks = client
                .subscribe(subjects.all_ticks())
                .await
                .map_err(|e| ServeError::Subscribe(e.to_string()))?;
            let mut factors = client
                .subscribe(subjects.all_factors())
                .await
                .map_err(|e| ServeError::Subscribe(e.to_string()))?;
            let (service, tasks) = service::start(&client, state.clone()).await?;
            tracing::info!(url = %url, mode = "core", ticks = %subjects.all_ticks(), "serving");
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    Some(m) = factors.next() => router.on_factor(&m.subject, &m.payload).await,
                    Some(m) = ticks.next() => {
                        let d = Delivery::core_now();
                        router.on_tick(&m.subject, m.headers.as_ref(), m.payload, d).await;
                    }
                    else => break,
                }
            }
            tracing::info!("shutting down: draining subscriptions");
            // Unsubscribe, but finish what the client already received: those ticks reached us, so they are
            // processed and published before exit.
            let _ = ticks.drain().await;
            let _ = factors.drain().await;
            let drain = async {
                while let Some(m) = ticks.next().await {
                    router
                        .on_tick(&m.subject, m.headers.as_ref(), m.payload, Delivery::core_now())
                        .await;
                }
            };
            if tokio::time::timeout(Duration::from_secs(10), drain).await.is_err() {
                tracing::warn!("subscription drain did not finish within 10 s");
            }
            finish(router, service, tasks, &client, &url, &counters).await
        }
        IngestMode::Jetstream => {
            let consumer = jetstream_consumer(&client, &subjects, &cfg.serve.jetstream).await?;
            let floor = consumer.cached_info().ack_floor.stream_sequence;
            let (service, tasks) = service::start(&client, state.clone()).await?;
            tracing::info!(url = %url, mode = "jetstream", stream = %cfg.serve.jetstream.stream,
                durable = %cfg.serve.jetstream.durable, ack_floor = floor, "serving");
            consume_jetstream(
                &client,
                &subjects,
                &cfg.serve.jetstream,
                consumer,
                floor,
                &mut router,
                &counters,
                shutdown,
            )
            .await;
            finish(router, service, tasks, &client, &url, &counters).await
        }
    }
}

async fn finish(
    router: Router,
    service: async_nats::service::Service,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    client: &async_nats::Client,
    url: &str,
    counters: &Counters,
) -> Result<ServeSummary, ServeError> {
    let engines = router.close().await;
    let _ = service.stop().await;
    for t in tasks {
        t.abort();
    }
    match tokio::time::timeout(Duration::from_secs(10), client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "final flush failed"),
        Err(_) => tracing::warn!("final flush did not finish within 10 s (server unreachable?)"),
    }
    let summary = ServeSummary {
        url: url.to_string(),
        counters: counters.report(),
        pairs: engines.iter().map(Engine::summary).collect(),
    };
    tracing::info!(pairs = summary.pairs.len(), counters = %summary.counters, "stopped");
    Ok(summary)
}

type PullConsumer = jetstream::consumer::Consumer<jetstream::consumer::pull::Config>;

async fn jetstream_consumer(
    client: &async_nats::Client,
    subjects: &Subjects,
    js_cfg: &JetStreamConfig,
) -> Result<PullConsumer, ServeError> {
    let js = jetstream::new(client.clone());
    let stream = if js_cfg.create_stream {
        js.get_or_create_stream(jetstream::stream::Config {
            name: js_cfg.stream.clone(),
            subjects: vec![subjects.all_ticks(), subjects.all_factors()],
            storage: jetstream::stream::StorageType::File,
            // De-duplicates re-published ticks (publishers that retry with Nats-Msg-Id).
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())
    } else {
        js.get_stream(&js_cfg.stream).await.map_err(|e| e.to_string())
    }
    .map_err(|e| ServeError::JetStream(format!("stream {}: {e}", js_cfg.stream)))?;
    stream
        .get_or_create_consumer(
            &js_cfg.durable,
            jetstream::consumer::pull::Config {
                durable_name: Some(js_cfg.durable.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(js_cfg.ack_wait_secs),
                max_ack_pending: js_cfg.max_ack_pending,
                filter_subjects: vec![subjects.all_ticks(), subjects.all_factors()],
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ServeError::JetStream(format!("consumer {}: {e}", js_cfg.durable)))
}

/// Pulls from the durable consumer until shutdown. A broken pull (server restart, missed heartbeats) is
/// re-established with back-off; a tick is acknowledged by its shard only after the engine processed it,
/// and a redelivered sequence already applied is acknowledged and skipped.
#[allow(clippy::too_many_arguments)]
async fn consume_jetstream(
    client: &async_nats::Client,
    subjects: &Subjects,
    js_cfg: &JetStreamConfig,
    mut consumer: PullConsumer,
    floor: u64,
    router: &mut Router,
    counters: &Counters,
    shutdown: impl Future<Output = ()>,
) {
    let mut applied = AppliedSeqs::with_floor(floor);
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    'outer: loop {
        let messages = consumer.stream().max_messages_per_batch(1024).messages().await;
        let mut messages = match messages {
            Ok(m) => {
                backoff = Duration::from_millis(100);
                m
            }
            Err(e) => {
                tracing::warn!(error = %e, "jetstream pull failed; retrying");
                tokio::select! {
                    () = &mut shutdown => break 'outer,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
                if let Ok(c) = jetstream_consumer(client, subjects, js_cfg).await {
                    consumer = c;
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break 'outer,
                m = messages.next() => match m {
                    Some(Ok(m)) => {
                        let received = Instant::now();
                        let (seq, published_us) = match m.info() {
                            Ok(i) => (Some(i.stream_sequence), Some(i64::try_from(i.published.unix_timestamp_nanos() / 1000).unwrap_or(0))),
                            Err(_) => (None, None),
                        };
                        if let Some(seq) = seq && !applied.insert(seq) {
                            Counters::inc(&counters.redeliveries_skipped);
                            let _ = m.ack().await;
                            continue;
                        }
                        let (msg, acker) = m.split();
                        if subjects.token("factors", &msg.subject).is_some() {
                            router.on_factor(&msg.subject, &msg.payload).await;
                            let _ = acker.ack().await;
                        } else {
                            // The server's receive time is the arrival: deterministic across redeliveries, and
                            // not inflated by an outage of cambio.
                            let d = Delivery { arrival_us: published_us, received, stream_seq: seq, acker: Some(Box::new(acker)) };
                            router.on_tick(&msg.subject, msg.headers.as_ref(), msg.payload, d).await;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "jetstream consumer error; re-establishing the pull");
                        break;
                    }
                    None => break,
                },
            }
        }
        tokio::select! {
            () = &mut shutdown => break 'outer,
            () = tokio::time::sleep(backoff) => {}
        }
    }
    tracing::info!(
        applied_floor = applied.floor(),
        last = applied.last(),
        "jetstream consumer stopped"
    );
}
