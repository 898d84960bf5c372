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

pub mod business;
pub mod checkpointer;
pub mod cluster;
pub mod config;
pub mod confirm;
pub mod metrics;
pub mod micro;
pub mod outbox;
pub mod retrain;
pub mod router;
pub mod service;
pub mod shard;
pub mod stats;
pub mod ticks;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures_util::{FutureExt, StreamExt};

pub use config::{IngestMode, JetStreamConfig, ServeConfig};

use self::checkpointer::Checkpointer;
use self::outbox::{Flag, NotDelivered, Outbox};
use self::router::{CheckpointPlan, Control, Delivery, Router};
use self::service::ServiceState;
use self::shard::ShardContext;
use self::stats::Counters;
use crate::checkpoint::AppliedSeqs;
use crate::checkpoint::{CheckpointConfig, CheckpointStore, Restore, StoreError};
use crate::engine::{Engine, EngineError, EngineSummary};
use crate::nats::{LocalServer, NatsError, Subjects};

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is invalid (a validation message, for people).
    #[error("configuration: {0}")]
    Config(String),
    /// The engine refuses the configuration (checked with a probe pair before connecting).
    #[error("configuration: {0}")]
    Engine(#[from] EngineError),
    /// Connecting (or starting the local server) failed.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// A subscription could not be made.
    #[error("subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's error.
        source: async_nats::SubscribeError,
    },
    /// The JetStream stream could not be created or read.
    #[error("jetstream: stream {stream}: {source}")]
    Stream {
        /// The stream's name.
        stream: String,
        /// The JetStream API's error.
        source: async_nats::Error,
    },
    /// The durable consumer could not be created, read or deleted.
    #[error("jetstream: consumer {durable}: {source}")]
    Consumer {
        /// The consumer's name.
        durable: String,
        /// The JetStream API's error.
        source: jetstream::stream::ConsumerError,
    },
    /// The micro service could not start.
    #[error(transparent)]
    Service(#[from] service::ServiceError),
    /// Cluster mode could not set up its stream, lease bucket or shared checkpoint store.
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    /// The metrics endpoint could not listen on its address.
    #[error(transparent)]
    Metrics(#[from] crate::nats::metrics_http::MetricsError),
    /// The checkpoint file cannot be opened (damaged, locked, newer), and nothing was changed.
    #[error(
        "checkpoints: {0}. Nothing was changed. Repair or replace the file (cambio models import can load \
         exported versions into a new one), or start fresh with `cambio serve --fresh`, which moves it aside"
    )]
    StoreUnusable(#[source] StoreError),
    /// The checkpoint store failed (reading the restore point, or opening the new file after moving the
    /// old one aside).
    #[error("checkpoints: {0}")]
    Store(#[from] StoreError),
    /// An unreadable checkpoint file could not be moved aside.
    #[error("checkpoints: cannot move {} aside: {source}", path.display())]
    MoveAside {
        /// The file.
        path: std::path::PathBuf,
        /// The rename's error.
        source: std::io::Error,
    },
    /// The checkpoint writer's thread could not be spawned.
    #[error("checkpoints: cannot start the writer thread: {0}")]
    WriterThread(#[source] std::io::Error),
    /// The `nats-server` child that serve started itself died and could not be restarted (or died too often).
    #[error("local nats-server: {0}")]
    LocalServerLost(String),
    /// Every version of some pairs is damaged, and starting them fresh was not asked for.
    #[error(
        "checkpoints: no readable version of {} in {} (every one is damaged). Roll back or import a good \
         version with `cambio models`, or start those pairs fresh with `cambio serve --fresh`",
        pair_list(pairs), path.display()
    )]
    Unreadable {
        /// The pairs.
        pairs: Vec<crate::tick::Pair>,
        /// The file.
        path: std::path::PathBuf,
    },
}

/// `USDMXN, EURUSD`.
fn pair_list(pairs: &[crate::tick::Pair]) -> String {
    pairs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// What the service did, returned after a graceful shutdown.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServeSummary {
    /// The NATS URL served.
    pub url: String,
    /// Service counters at the end.
    pub counters: crate::contract::ServiceCounters,
    /// Each pair's final summary.
    pub pairs: Vec<EngineSummary>,
    /// Whether the server confirmed, at the end, that it read everything the service published: false when
    /// NATS was unreachable for the whole `drain_timeout`.
    pub drained: bool,
    /// Outputs and acknowledgements that may not have reached the server.
    pub not_delivered: NotDelivered,
}

/// Times the local `nats-server` child may be restarted within [`LOCAL_RESTART_WINDOW`] before serve
/// gives up and exits with an error (a server that keeps dying has a cause a restart does not fix).
pub const LOCAL_RESTARTS: usize = 5;

/// The window over which [`LOCAL_RESTARTS`] is counted.
pub const LOCAL_RESTART_WINDOW: Duration = Duration::from_secs(600);

/// How often the local child is checked, and how often the server is asked to confirm what it read.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);

/// What `cambio serve` runs with: the tables of the configuration file it uses. The binary assembles it
/// from the whole file (`crate::config::Config` converts into it), so this layer never depends on the
/// configuration of the layers above it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServeSettings {
    /// The engine of every pair (`[engine]`).
    pub engine: crate::engine::EngineConfig,
    /// Where the NATS server is and how to authenticate (`[nats]`).
    pub nats: crate::nats::NatsConfig,
    /// How the service consumes and reports (`[serve]`).
    pub serve: ServeConfig,
    /// Where and how often state is checkpointed (`[checkpoint]`).
    pub checkpoint: CheckpointConfig,
    /// Rules for operators' registry changes (`[registry]`).
    pub registry: crate::checkpoint::RegistryConfig,
    /// The shadow challenger and the rollback guard (`[challenger]`).
    pub challenger: crate::challenger::ChallengerConfig,
    /// Business metrics of deal events (`[business]`).
    pub business: crate::business::BusinessConfig,
    /// The Prometheus endpoint and what it reports (`[metrics]`).
    pub metrics: metrics::MetricsConfig,
    /// Periodic batch retraining (`[retrain]`).
    pub retrain: retrain::RetrainConfig,
    /// Sharing the pairs with other instances (`[cluster]`).
    pub cluster: cluster::ClusterConfig,
}

/// Runs the service until `shutdown` resolves, then drains and returns.
///
/// # Errors
/// [`ServeError`] when the configuration is invalid, the server cannot be reached at start, or the
/// subscriptions, the JetStream consumer or the micro service cannot be set up.
pub async fn run(
    cfg: impl Into<ServeSettings>,
    shutdown: impl Future<Output = ()>,
) -> Result<ServeSummary, ServeError> {
    let cfg: ServeSettings = cfg.into();
    cfg.engine.validate().map_err(ServeError::Config)?;
    cfg.serve.validate().map_err(ServeError::Config)?;
    cfg.checkpoint.validate().map_err(ServeError::Config)?;
    cfg.challenger.validate(&cfg.engine).map_err(ServeError::Config)?;
    cfg.business.validate().map_err(ServeError::Config)?;
    let retrain_plan = cfg.retrain.plan().map_err(ServeError::Config)?;
    if retrain_plan.is_some() && cfg.checkpoint.path.is_none() {
        return Err(ServeError::Config(
            "[retrain] writes versions to the model registry: set [checkpoint] path".into(),
        ));
    }
    // The masking key is checked before connecting: a refused key stops serve with its reason.
    let mask_key = business::load_key(&cfg.business).map_err(|e| ServeError::Config(e.to_string()))?;
    let business =
        crate::business::Business::new(&cfg.business, mask_key, cfg.serve.max_pairs).map_err(ServeError::Config)?;
    let desk = Arc::new(business::BusinessDesk::new(business));
    cfg.metrics.validate().map_err(ServeError::Config)?;
    cfg.cluster.validate().map_err(ServeError::Config)?;
    if cfg.cluster.enabled && (cfg.serve.mode != IngestMode::Jetstream || cfg.checkpoint.path.is_none()) {
        return Err(ServeError::Config(
            "[cluster] enabled needs [serve] mode = \"jetstream\" and a [checkpoint] path".into(),
        ));
    }
    let subjects = Subjects::new(&cfg.serve.prefix).map_err(ServeError::Config)?;
    // Fail fast on settings that only the engine's constructor checks.
    if let Some(probe) = crate::tick::Pair::parse("USDMXN") {
        Engine::new(probe, &cfg.engine)?;
    }

    // Before anything else starts: an address in use stops serve here, with nothing to undo.
    let metrics_listener = match &cfg.metrics.listen {
        Some(addr) => Some(crate::nats::metrics_http::bind(addr).await?),
        None => None,
    };
    let telemetry = Arc::new(metrics::Telemetry::new(cfg.metrics.accuracy_window_secs));

    let mut nats_cfg = cfg.nats.clone();
    let local = match &nats_cfg.url {
        Some(_) => None,
        None => {
            let server = LocalServer::start(true, None)?;
            tracing::info!(
                url = %server.url(),
                pid = server.pid().unwrap_or(0),
                "no NATS server configured: started a local nats-server (JetStream on) on a free loopback port"
            );
            nats_cfg.url = Some(server.url());
            Some(server)
        }
    };
    let url = nats_cfg.url.clone().unwrap_or_default();
    let (client, events) = crate::nats::connect(&nats_cfg, "cambio").await?;
    // Core mode reads ticks on a connection of their own: its message count, compared with the ticks the
    // subscription yields, gives the exact number the client dropped (see `ticks`).
    let tick_client = match cfg.serve.mode {
        IngestMode::Core => Some(
            crate::nats::connect::connect_with_capacity(&nats_cfg, "cambio-ticks", cfg.serve.subscription_capacity)
                .await?
                .0,
        ),
        IngestMode::Jetstream => None,
    };

    let stop = Flag::default();
    let outbox = Arc::new(Outbox::default());
    let lost = OnceLock::new();
    let drain_secs = cfg.serve.drain_timeout_secs;
    let drain_timeout = Duration::from_secs_f64(drain_secs);
    // Runs beside the service (in this task, so a service stuck on a dead connection cannot delay it): on
    // the signal, the drain begins; after `drain_timeout`, the outbox gives up on NATS as soon as the client
    // stops taking publications, so the shutdown ends. (A long drain that NATS keeps up with is not cut.)
    let watch = async {
        tokio::select! {
            () = shutdown => {}
            () = stop.wait() => {}
        }
        stop.set();
        telemetry.set_stopping();
        tokio::time::sleep(drain_timeout).await;
        loop {
            let handed = outbox.handed();
            tokio::time::sleep(WATCH_INTERVAL).await;
            if outbox.handed() == handed {
                break;
            }
        }
        if !outbox.has_given_up() {
            tracing::warn!(
                drain_timeout_secs = drain_secs,
                "drain timeout: NATS did not take everything in time; giving up on it (the shutdown checkpoint needs only the disk)"
            );
            outbox.give_up();
        }
        std::future::pending::<()>().await;
    };
    let supervise = async {
        match local {
            Some(server) => supervise_local(server, &stop, &lost).await,
            None => std::future::pending::<()>().await,
        }
    };
    let served = tokio::select! {
        r = serve(cfg, Connection { client, tick_client, events, url }, subjects, desk, &stop, outbox.clone(),
            Metrics { telemetry: telemetry.clone(), listener: metrics_listener }) => r,
        () = watch => unreachable!("the watch never completes"),
        () = supervise => unreachable!("the supervisor never completes"),
    };
    match lost.get() {
        Some(why) => Err(ServeError::LocalServerLost(why.clone())),
        None => served,
    }
}

/// Watches the `nats-server` child that serve started: when it exits, it is reaped and started again on
/// the same port with the same JetStream store (the client reconnects by itself), at most
/// [`LOCAL_RESTARTS`] times in [`LOCAL_RESTART_WINDOW`]; then, or when a restart fails, `lost` says why
/// and `stop` begins the shutdown. Never completes (it holds the server until the service is done).
async fn supervise_local(mut server: LocalServer, stop: &Flag, lost: &OnceLock<String>) {
    let mut restarts: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    loop {
        tokio::time::sleep(WATCH_INTERVAL).await;
        let Some(status) = server.exited() else {
            continue;
        };
        tracing::error!(status = %status, port = server.port(), "the local nats-server child exited");
        while restarts.front().is_some_and(|t| t.elapsed() > LOCAL_RESTART_WINDOW) {
            restarts.pop_front();
        }
        if restarts.len() >= LOCAL_RESTARTS {
            let _ = lost.set(format!(
                "the nats-server child exited ({status}) after {LOCAL_RESTARTS} restarts within {} s; not restarting it again",
                LOCAL_RESTART_WINDOW.as_secs()
            ));
            stop.set();
            break;
        }
        restarts.push_back(Instant::now());
        // Starting it waits (blocking) for the port: off the executor.
        let (back, result) = match tokio::task::spawn_blocking(move || {
            let r = server.restart();
            (server, r)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                let _ = lost.set(format!(
                    "the nats-server child exited ({status}); restarting it failed: {e}"
                ));
                stop.set();
                break;
            }
        };
        server = back;
        match result {
            Ok(()) => tracing::warn!(url = %server.url(), pid = server.pid().unwrap_or(0), restarts = restarts.len(),
                "the local nats-server child was restarted (same port, same store)"),
            Err(e) => {
                let _ = lost.set(format!(
                    "the nats-server child exited ({status}); restarting it failed: {e}"
                ));
                stop.set();
                break;
            }
        }
    }
    std::future::pending::<()>().await;
}

/// The connections serve runs on.
struct Connection {
    client: async_nats::Client,
    /// Core mode's connection for ticks.
    tick_client: Option<async_nats::Client>,
    events: Arc<crate::nats::connect::ConnectionEvents>,
    url: String,
}

/// The metrics' shared figures and, when configured, the endpoint's bound listener.
struct Metrics {
    telemetry: Arc<metrics::Telemetry>,
    listener: Option<tokio::net::TcpListener>,
}

/// The service proper, from a connected client to the summary after the drain.
async fn serve(
    cfg: ServeSettings,
    conn: Connection,
    subjects: Subjects,
    desk: Arc<business::BusinessDesk>,
    stop: &Flag,
    outbox: Arc<Outbox>,
    metrics: Metrics,
) -> Result<ServeSummary, ServeError> {
    let Connection {
        client,
        tick_client,
        events,
        url,
    } = conn;
    let telemetry = metrics.telemetry;
    let shutdown = stop.wait();
    let counters = Arc::new(Counters::default());
    let opened = open_checkpoints(&cfg.checkpoint)?;
    let cluster = if cfg.cluster.enabled {
        Some(open_cluster(&client, &subjects, &cfg).await?)
    } else {
        None
    };
    let (uploaded_tx, uploaded_rx) = tokio::sync::watch::channel(0u64);
    let mut uploader = None;
    let (control_tx, mut control_rx) = tokio::sync::mpsc::channel::<Control>(64);
    let ctx = Arc::new(ShardContext {
        client: client.clone(),
        subjects: subjects.clone(),
        counters: counters.clone(),
        report_interval: Duration::from_secs_f64(cfg.serve.report_interval_secs),
        max_raw_bytes: cfg.serve.max_raw_bytes,
        control: opened.is_some().then(|| control_tx.clone()),
        challenger: cfg.challenger.clone(),
        outbox: outbox.clone(),
        telemetry: telemetry.clone(),
        confirm: (cfg.serve.mode == IngestMode::Jetstream && cfg.serve.jetstream.confirm_forecasts).then(|| {
            // No client-wide wait for in-flight acknowledgements: the shards hold theirs until a checkpoint
            // settles them (each shard at most `confirm::MAX_UNACKED`), so waiting for the client's permits
            // there could never end; past the limit a publication fails and is sent again.
            async_nats::jetstream::ContextBuilder::new()
                .max_ack_inflight(1 << 20)
                .backpressure_on_inflight(false)
                .build(client.clone())
        }),
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
    let mut writer_join = None;
    let mut writer = None;
    let mut resume: Option<AppliedSeqs> = None;
    if let Some((store, restore)) = opened {
        if let Err(e) = store.set_require_approval(cfg.registry.require_approval) {
            tracing::error!(error = %e, "cannot record the four-eyes rule in the registry file");
        }
        // Cluster mode restores a pair when it takes over its partition, from the shared store (the local
        // file may hold an older state of a pair another instance has served since).
        if cfg.checkpoint.restore && cluster.is_none() {
            resume = restore_into(&mut router, &store, restore, &cfg);
        }
        let shared = cluster.as_ref().map(|c| {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            uploader = Some(AbortOnDrop(cluster::spawn_uploader(c.clone(), rx, uploaded_tx.clone())));
            tx
        });
        let (w, join) =
            Checkpointer::start_shared(store, counters.clone(), shared).map_err(ServeError::WriterThread)?;
        router.set_checkpoints(CheckpointPlan {
            writer: w.clone(),
            every_ticks: cfg.checkpoint.every_ticks,
            since: 0,
            last_id: 0,
            resume_unseen: cfg.checkpoint.restore && cluster.is_none(),
        });
        writer = Some(w.clone());
        writer_join = Some((w, join));
    }
    let state = Arc::new(ServiceState {
        registry: registry.clone(),
        subjects: subjects.clone(),
        counters: counters.clone(),
        events,
        control: writer.is_some().then(|| control_tx.clone()),
        writer: writer.clone(),
        business: desk.clone(),
        telemetry: telemetry.clone(),
        require_approval: cfg.registry.require_approval,
        owner: cluster.as_ref().map(|c| c.ownership.clone()),
    });
    let collector = Arc::new(metrics::collect::ServeCollector {
        telemetry: telemetry.clone(),
        pairs: registry.clone(),
        counters: counters.clone(),
        events: state.events.clone(),
        client: client.clone(),
        checkpoints: writer_join.is_some(),
    });
    let _metrics_http = metrics.listener.map(|listener| {
        let mut reg = prometheus_client::registry::Registry::default();
        reg.register_collector(Box::new(collector.clone()));
        business::register(&mut reg, desk.clone());
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(addr = %addr, "metrics endpoint: /metrics, /healthz, /readyz");
        }
        let ready = collector.clone();
        AbortOnDrop(crate::nats::metrics_http::spawn(
            listener,
            crate::nats::metrics_http::Endpoint::new(reg).with_ready(move || ready.ready()),
        ))
    });
    let _instances = AbortOnDrop(metrics::instances::spawn(
        client.clone(),
        telemetry.clone(),
        Duration::from_secs_f64(cfg.metrics.instances_every_secs),
    ));
    drop(writer);
    drop(control_tx);
    let mut cuts = tokio::time::interval(Duration::from_secs_f64(cfg.checkpoint.every_secs));
    cuts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    cuts.tick().await;
    let mut sweep = Sweep::new(cfg.serve.idle_evict_secs);
    sweep.timer.tick().await;
    // The server confirms what it has read, every interval: what the shutdown reports as not delivered is
    // then at most a quarter of a second of outputs, plus what it had to give up.
    let confirmer = AbortOnDrop(tokio::spawn({
        let (outbox, client) = (outbox.clone(), client.clone());
        async move {
            loop {
                tokio::time::sleep(WATCH_INTERVAL).await;
                let _ = outbox.confirm(&client, Duration::from_secs(5)).await;
            }
        }
    }));
    // Business events: a task of their own, off the tick path (see `business`).
    let business_task = business::start(business::BusinessTask {
        client: client.clone(),
        subjects: subjects.clone(),
        desk,
        registry: state.registry.clone(),
        outbox: outbox.clone(),
        counters: counters.clone(),
    })
    .await
    .map_err(|(subject, source)| ServeError::Subscribe { subject, source })?;
    // Periodic retraining: a task that waits between runs; each run's work is on a thread of its own.
    let _retrain = cfg.retrain.plan().ok().flatten().map(|plan| {
        AbortOnDrop(retrain::spawn(retrain::RetrainTask {
            plan,
            state: state.clone(),
            client: client.clone(),
            subjects: subjects.clone(),
            outbox: outbox.clone(),
            counters: counters.clone(),
        }))
    });
    let end = End {
        client: &client,
        url: &url,
        counters: &counters,
        outbox: &outbox,
        confirmer,
        business: AbortOnDrop(business_task),
    };

    let stamp = cfg.serve.stamp_arrival;
    match cfg.serve.mode {
        IngestMode::Core => {
            let tick_client = tick_client.as_ref().unwrap_or(&client);
            let sub = subscribe(tick_client, subjects.all_ticks()).await?;
            let mut ticks = ticks::CountedTicks::new(tick_client, sub, counters.clone());
            let mut factors = subscribe(&client, subjects.all_factors()).await?;
            let service = service::start(&client, state.clone()).await?;
            telemetry.set_consuming();
            tracing::info!(url = %url, mode = "core", ticks = %subjects.all_ticks(), "serving");
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    Some(c) = control_rx.recv() => router.on_control(c).await,
                    _ = cuts.tick() => router.periodic_cut().await,
                    _ = sweep.timer.tick() => sweep.run(&mut router).await,
                    Some(m) = factors.next() => router.on_factor(&m.subject, &m.payload, None).await,
                    Some(m) = ticks.next() => {
                        let d = Delivery::core_now(stamp);
                        router.on_tick(&m.subject, m.headers.as_ref(), m.payload, d).await;
                    }
                    else => break,
                }
            }
            tracing::info!("shutting down: draining subscriptions");
            // Unsubscribe, but finish what the client already received: those ticks reached us, so they are
            // processed and published before exit.
            let _ = outbox.bounded(ticks.drain()).await;
            let _ = outbox.bounded(factors.drain()).await;
            let drain = async {
                while let Some(m) = ticks.next().await {
                    router
                        .on_tick(&m.subject, m.headers.as_ref(), m.payload, Delivery::core_now(stamp))
                        .await;
                }
            };
            if outbox.bounded(drain).await.is_none() {
                tracing::warn!("subscription drain did not finish within the drain timeout");
            }
            finish(router, service, end, writer_join).await
        }
        IngestMode::Jetstream if cluster.is_some() => {
            let Some(cluster) = cluster.as_ref() else {
                unreachable!("matched on is_some")
            };
            router.set_partitions(cluster.cfg.partitions);
            let service = service::start(&client, state.clone()).await?;
            telemetry.set_consuming();
            tracing::info!(url = %url, mode = "cluster", stream = %cluster.cfg.stream, instance = %cluster.me, "serving");
            let (tx, rx) = tokio::sync::mpsc::channel(4096);
            let parts = cluster::consume::Partitions::new(cluster, &subjects, tx, uploaded_rx);
            let loops = Loops {
                control: &mut control_rx,
                cuts: &mut cuts,
                sweep: &mut sweep,
            };
            cluster::consume::consume(parts, rx, &mut router, loops, shutdown).await;
            let summary = finish(router, service, end, writer_join).await;
            drop(uploader);
            summary
        }
        IngestMode::Jetstream => {
            let mut start = resume.as_ref().map(|a| a.floor() + 1);
            if let Some(start) = start {
                reset_consumer(&client, &subjects, &cfg.serve.jetstream, start).await?;
            }
            let mut consumer = jetstream_consumer(&client, &subjects, &cfg.serve.jetstream, start).await?;
            let pending = consumer.cached_info().num_ack_pending;
            if start.is_none() && pending > 0 {
                // A previous instance stopped or died holding deliveries it never acknowledged. The server would
                // redeliver them only after the ack wait, behind newer ticks, and the engine would quarantine
                // them as stale. Restarting the consumer right after its acknowledged floor reads them again
                // in stream order. (A tick acknowledged above the floor, by another pair's shard, is then
                // applied and forecast a second time, with the same `Nats-Msg-Id`; checkpoints avoid that.)
                let from = consumer.cached_info().ack_floor.stream_sequence + 1;
                tracing::warn!(
                    pending,
                    resume_from = from,
                    "ticks delivered to a previous instance were never acknowledged: reading the stream again from the acknowledged floor, in order"
                );
                reset_consumer(&client, &subjects, &cfg.serve.jetstream, from).await?;
                consumer = jetstream_consumer(&client, &subjects, &cfg.serve.jetstream, Some(from)).await?;
                start = Some(from);
            }
            let floor = consumer.cached_info().ack_floor.stream_sequence;
            router.set_applied(resume.unwrap_or_else(|| AppliedSeqs::with_floor(floor)));
            let service = service::start(&client, state.clone()).await?;
            telemetry.set_consuming();
            tracing::info!(url = %url, mode = "jetstream", stream = %cfg.serve.jetstream.stream,
                durable = %cfg.serve.jetstream.durable, ack_floor = floor, resume_from = start, "serving");
            let loops = Loops {
                control: &mut control_rx,
                cuts: &mut cuts,
                sweep: &mut sweep,
            };
            consume_jetstream(
                &client,
                &subjects,
                &cfg.serve.jetstream,
                start,
                consumer,
                &mut router,
                &counters,
                loops,
                shutdown,
            )
            .await;
            finish(router, service, end, writer_join).await
        }
    }
}

/// How long cluster mode retries setting up its streams and buckets at start: a node that just joined (or
/// came back) answers JetStream requests before the streams' leaders are elected.
const CLUSTER_SETUP: Duration = Duration::from_secs(60);

/// Opens cluster mode's streams and buckets (the ticks stream first: the partitioned one sources it),
/// retrying for [`CLUSTER_SETUP`] while the cluster recovers.
async fn open_cluster(
    client: &async_nats::Client,
    subjects: &Subjects,
    cfg: &ServeSettings,
) -> Result<cluster::Cluster, ServeError> {
    let deadline = Instant::now() + CLUSTER_SETUP;
    let mut backoff = Duration::from_millis(250);
    loop {
        let opened = async {
            jetstream_stream(client, subjects, &cfg.serve.jetstream).await?;
            cluster::Cluster::open(client, &cfg.cluster, &cfg.serve.jetstream.stream, subjects.prefix())
                .await
                .map_err(ServeError::from)
        }
        .await;
        match opened {
            Ok(c) => return Ok(c),
            Err(e @ ServeError::Cluster(cluster::ClusterError::PartitionsDiffer { .. })) => return Err(e),
            Err(e) if Instant::now() < deadline => {
                tracing::warn!(error = %e, retry_in_ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX),
                    "cluster: JetStream not ready; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(4));
            }
            Err(e) => return Err(e),
        }
    }
}

async fn subscribe(client: &async_nats::Client, subject: String) -> Result<async_nats::Subscriber, ServeError> {
    client
        .subscribe(subject.clone())
        .await
        .map_err(|source| ServeError::Subscribe { subject, source })
}

/// Routes one JetStream message: a redelivery of a sequence already applied is acknowledged and skipped,
/// a factor goes to every shard, a tick to its pair's shard (which acknowledges it once processed).
async fn on_js_message(m: jetstream::Message, subjects: &Subjects, router: &mut Router, counters: &Counters) {
    let received = Instant::now();
    let (seq, published_us) = match m.info() {
        Ok(i) => (
            Some(i.stream_sequence),
            Some(i64::try_from(i.published.unix_timestamp_nanos() / 1000).unwrap_or(0)),
        ),
        Err(_) => (None, None),
    };
    if let Some(seq) = seq
        && !router.admit(seq)
    {
        Counters::inc(&counters.redeliveries_skipped);
        let _ = router.outbox().ack(m.ack()).await;
        return;
    }
    let (msg, acker) = m.split();
    if subjects.token("factors", &msg.subject).is_some() {
        router.on_factor(&msg.subject, &msg.payload, seq).await;
        let _ = router.outbox().ack(acker.ack()).await;
    } else {
        // The server's receive time is the arrival: deterministic across redeliveries, and not inflated by an
        // outage of cambio.
        let d = Delivery {
            arrival_us: published_us,
            received,
            stream_seq: seq,
            acker: Some(Box::new(acker)),
        };
        router.on_tick(&msg.subject, msg.headers.as_ref(), msg.payload, d).await;
    }
}

/// The consumer loop's other inputs besides messages.
struct Loops<'a> {
    control: &'a mut tokio::sync::mpsc::Receiver<Control>,
    cuts: &'a mut tokio::time::Interval,
    sweep: &'a mut Sweep,
}

/// The idle-pair sweep: every quarter of `serve.idle_evict_secs` (at most every minute), pairs idle for
/// that long are evicted. Off (a timer that fires once a day and does nothing) when the setting is 0.
struct Sweep {
    timer: tokio::time::Interval,
    idle: Option<Duration>,
}

impl Sweep {
    fn new(idle_evict_secs: f64) -> Sweep {
        let idle = (idle_evict_secs > 0.0).then(|| Duration::from_secs_f64(idle_evict_secs));
        let period = idle.map_or(Duration::from_secs(86_400), |d| {
            (d / 4).clamp(Duration::from_millis(10), Duration::from_secs(60))
        });
        let mut timer = tokio::time::interval(period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Sweep { timer, idle }
    }

    async fn run(&mut self, router: &mut Router) {
        if let Some(idle) = self.idle {
            router.evict_idle(Instant::now(), idle).await;
        }
    }
}

/// Opens the checkpoint store and reads what it holds. A file that cannot be opened or read (not a redb
/// file, truncated, damaged pages) is an error unless starting fresh was asked for (then it is moved
/// aside, never deleted, and a new file started); a file locked by another process is always an error.
fn open_checkpoints(cfg: &CheckpointConfig) -> Result<Option<(CheckpointStore, Restore)>, ServeError> {
    let Some(path) = &cfg.path else {
        return Ok(None);
    };
    let (store, restore) = match open_and_read(path, cfg) {
        Ok(opened) => opened,
        // A locked file (`StoreError::Locked`) is in use by another instance: never moved aside.
        Err(e) if e.is_damage() && cfg.fresh_if_unreadable && path.exists() => {
            let secs = router::now_us() / 1_000_000;
            let mut aside = path.clone().into_os_string();
            aside.push(format!(".damaged-{secs}"));
            std::fs::rename(path, &aside).map_err(|source| ServeError::MoveAside {
                path: path.clone(),
                source,
            })?;
            tracing::warn!(path = %path.display(), moved_to = %std::path::Path::new(&aside).display(), error = %e,
                "checkpoint file unreadable: moved aside, starting fresh (asked for)");
            (CheckpointStore::open(path, cfg.retention())?, Restore::default())
        }
        Err(e @ StoreError::Locked { .. }) => return Err(ServeError::Store(e)),
        Err(e) => return Err(ServeError::StoreUnusable(e)),
    };
    if !restore.unreadable.is_empty() {
        if !cfg.fresh_if_unreadable {
            return Err(ServeError::Unreadable {
                pairs: restore.unreadable.clone(),
                path: path.clone(),
            });
        }
        tracing::warn!(pairs = %pair_list(&restore.unreadable), "no readable checkpoint: these pairs start fresh (asked for)");
    }
    Ok(Some((store, restore)))
}

/// Opens the store and reads the restore point; on an error the store is closed (dropped) before
/// returning, so the file can be moved aside.
fn open_and_read(path: &std::path::Path, cfg: &CheckpointConfig) -> Result<(CheckpointStore, Restore), StoreError> {
    let store = CheckpointStore::open(path, cfg.retention())?;
    let restore = if cfg.restore {
        store.restore()?
    } else {
        tracing::info!(path = %path.display(), "checkpoint.restore = false: starting fresh, writing checkpoints");
        Restore::default()
    };
    Ok((store, restore))
}

/// Starts a shard for every restored pair and says which version it restored. Returns, with JetStream
/// checkpoints, the stream sequences already applied: the consumer resumes after them.
fn restore_into(
    router: &mut Router,
    store: &CheckpointStore,
    restore: Restore,
    cfg: &ServeSettings,
) -> Option<AppliedSeqs> {
    let Restore { pairs, cut, .. } = restore;
    if let Some(c) = &cut {
        router.restore_factors(c.factors.clone());
    }
    let all_current = pairs.iter().all(|p| p.current);
    let marks = store.challenges().unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot read the challengers marked offline");
        Default::default()
    });
    let mut floor: Option<u64> = None;
    let current_cfg = serde_json::to_value(&cfg.engine).ok();
    for p in pairs {
        let m = &p.meta;
        tracing::info!(pair = %m.pair, version = m.version, reason = m.reason.name(), created = %m.created,
            ticks = m.ticks, last_tick = m.last_tick_ts.as_deref(), stream_seq = p.applied.as_ref().map(AppliedSeqs::floor),
            current = p.current, "restored checkpoint");
        if !p.current {
            tracing::warn!(pair = %m.pair, version = m.version,
                "restored an older version (the current one is unreadable); its later ticks are read again from the stream when it still has them");
        }
        if serde_json::to_value(p.state.engine.config()).ok() != current_cfg {
            tracing::warn!(pair = %m.pair,
                "the restored model keeps the [engine] configuration it was built with, which differs from this file's; start with checkpoint.restore = false to apply the new one");
        }
        if let Some(a) = &p.applied {
            floor = Some(floor.map_or(a.floor(), |f| f.min(a.floor())));
        }
        let registry_challenger = cfg.challenger.enabled && cfg.challenger.engine.is_none();
        // A version marked offline (`cambio models challenge`) runs as the challenger of a new contest;
        // else the newest version older than the one restored, as part of the restored contest or a new one.
        let marked = marked_challenger(store, &marks, m.pair, registry_challenger);
        let mut contest = p.state.contest;
        let previous = if let Some(marked) = marked {
            contest = None;
            Some(marked)
        } else {
            registry_challenger
                .then(|| store.list(Some(m.pair)).ok())
                .flatten()
                .and_then(|versions| versions.into_iter().rev().find(|v| v.version < m.version))
                .and_then(|v| store.get(m.pair, v.version).ok().map(|s| (s.engine, v.version)))
        };
        let mut engine = p.state.engine;
        engine.set_registry_version(m.version);
        if !router.restore(engine, p.applied, contest, previous) {
            tracing::error!(pair = %m.pair, "restored pair not started (max_pairs)");
        }
    }
    let cut_applied = cut.and_then(|c| c.applied);
    match (cut_applied, floor) {
        (Some(a), None) => Some(a),
        (Some(a), Some(_)) if all_current => Some(a),
        (Some(a), Some(f)) => Some(AppliedSeqs::with_floor(f.min(a.floor()))),
        (None, f) => {
            if cfg.serve.mode == IngestMode::Jetstream && f.is_none() {
                // With checkpoints the store, not the consumer's acknowledgements, says what the models
                // hold: nothing yet, so the stream is read from its start (ticks acknowledged by a run that
                // died before its first checkpoint are applied again, to the state that lacks them).
                tracing::info!("no checkpoint with stream positions yet: reading the stream from its start");
            }
            Some(AppliedSeqs::with_floor(f.unwrap_or(0)))
        }
    }
}

/// The version of `pair` marked offline to run as its challenger, loaded; the mark is removed once it is
/// taken (or found unusable), with an audit entry. Kept while challengers are off, so it applies once they
/// are on.
fn marked_challenger(
    store: &CheckpointStore,
    marks: &std::collections::BTreeMap<crate::tick::Pair, u64>,
    pair: crate::tick::Pair,
    enabled: bool,
) -> Option<(crate::engine::Engine, u64)> {
    use crate::checkpoint::{AuditEntry, AuditOp, Outcome};
    let &version = marks.get(&pair)?;
    if !enabled {
        tracing::warn!(pair = %pair, version,
            "a version is marked to run as challenger, but registry challengers are off ([challenger] enabled, no [challenger.engine]): the mark waits");
        return None;
    }
    let entry = AuditEntry::new(router::now_us(), "serve", AuditOp::Challenge, pair).versions(Some(version), None);
    let (loaded, entry) = match store.get(pair, version) {
        Ok(s) if s.engine.pair() == pair => (
            Some((s.engine, version)),
            entry.outcome(Outcome::Ok, Some("marked offline: runs as the challenger".into())),
        ),
        Ok(s) => (
            None,
            entry.outcome(Outcome::Refused, Some(format!("the version holds {}", s.engine.pair()))),
        ),
        Err(e) => (None, entry.outcome(Outcome::Refused, Some(e.to_string()))),
    };
    match &loaded {
        Some(_) => tracing::warn!(pair = %pair, version, "registry version marked offline runs as the challenger"),
        None => tracing::error!(pair = %pair, version, "the version marked to run as challenger cannot be used"),
    }
    if let Err(e) = store.clear_challenge(pair, entry) {
        tracing::error!(pair = %pair, error = %e, "cannot clear the challenge mark");
    }
    loaded
}

/// What the end of the service needs besides the router and the micro service.
struct End<'a> {
    client: &'a async_nats::Client,
    url: &'a str,
    counters: &'a Counters,
    outbox: &'a Outbox,
    /// The periodic confirmation task, stopped before the last one.
    confirmer: AbortOnDrop,
    /// The business events' task, stopped with the micro service.
    business: AbortOnDrop,
}

/// A background task that ends with its handle (also when the service stops early with an error).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Drains the shards, writes the shutdown checkpoint, stops the micro service and has the server confirm
/// everything published; says what may not have been delivered when it could not.
async fn finish(
    router: Router,
    service: service::Running,
    end: End<'_>,
    writer: Option<(Checkpointer, std::thread::JoinHandle<()>)>,
) -> Result<ServeSummary, ServeError> {
    let End {
        client,
        url,
        counters,
        outbox,
        confirmer,
        business,
    } = end;
    let engines = router.close().await;
    if let Some((w, join)) = writer {
        // Stop after the jobs already queued (the shutdown checkpoint is committed by then).
        w.send(checkpointer::Job::Stop);
        let _ = tokio::task::spawn_blocking(move || join.join()).await;
    }
    service.stop();
    drop(business);
    drop(confirmer);
    // Everything published (forecasts, acknowledgements) must be read by the server before the socket closes.
    let confirmed = outbox.confirm(client, Duration::from_secs(10)).await;
    let not_delivered = outbox.not_delivered();
    let summary = ServeSummary {
        url: url.to_string(),
        counters: counters.report(),
        pairs: engines.iter().map(Engine::summary).collect(),
        drained: confirmed.is_ok(),
        not_delivered,
    };
    if let Err(e) = &confirmed {
        tracing::error!(
            outputs_not_delivered = not_delivered.outputs,
            acks_not_delivered = not_delivered.acks,
            error = %e,
            "shutdown incomplete: NATS did not confirm the end of the drain; outputs and acknowledgements not delivered (or not confirmed)"
        );
    }
    tracing::info!(
        pairs = summary.pairs.len(),
        ticks = summary.counters.ticks,
        ticks_dropped = summary.counters.ticks_dropped,
        forecasts = summary.counters.forecasts,
        quarantined = summary.counters.quarantined,
        "stopped"
    );
    Ok(summary)
}

type PullConsumer = jetstream::consumer::Consumer<jetstream::consumer::pull::Config>;

async fn jetstream_consumer(
    client: &async_nats::Client,
    subjects: &Subjects,
    js_cfg: &JetStreamConfig,
    start: Option<u64>,
) -> Result<PullConsumer, ServeError> {
    let stream = jetstream_stream(client, subjects, js_cfg).await?;
    stream
        .get_or_create_consumer(&js_cfg.durable, consumer_config(subjects, js_cfg, start))
        .await
        .map_err(|source| ServeError::Consumer {
            durable: js_cfg.durable.clone(),
            source,
        })
}

fn consumer_config(
    subjects: &Subjects,
    js_cfg: &JetStreamConfig,
    start: Option<u64>,
) -> jetstream::consumer::pull::Config {
    jetstream::consumer::pull::Config {
        durable_name: Some(js_cfg.durable.clone()),
        ack_policy: jetstream::consumer::AckPolicy::Explicit,
        ack_wait: Duration::from_secs(js_cfg.ack_wait_secs),
        max_ack_pending: js_cfg.max_ack_pending,
        filter_subjects: vec![subjects.all_ticks(), subjects.all_factors()],
        deliver_policy: match start {
            Some(start_sequence) => jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence },
            None => jetstream::consumer::DeliverPolicy::All,
        },
        ..Default::default()
    }
}

/// After a restore, the durable consumer is recreated to start right after the checkpoint's stream
/// sequences: ticks acknowledged after the last checkpoint were applied to a state that is gone, so they are
/// read again (forecasts re-published with the same `Nats-Msg-Id`, dropped by de-duplicating streams).
async fn reset_consumer(
    client: &async_nats::Client,
    subjects: &Subjects,
    js_cfg: &JetStreamConfig,
    start: u64,
) -> Result<(), ServeError> {
    let stream = jetstream_stream(client, subjects, js_cfg).await?;
    let first = stream
        .get_info()
        .await
        .map(|i| i.state.first_sequence)
        .map_err(|e| ServeError::Stream {
            stream: js_cfg.stream.clone(),
            source: e.into(),
        })?;
    if first > start {
        tracing::warn!(
            resume_from = start,
            stream_first = first,
            "the stream no longer holds every tick after the checkpoint: resuming from its first one (ticks in between are lost to the model)"
        );
    }
    match stream.delete_consumer(&js_cfg.durable).await {
        Ok(_) => {}
        Err(e) if is_consumer_not_found(&e) => {}
        Err(source) => {
            return Err(ServeError::Consumer {
                durable: js_cfg.durable.clone(),
                source,
            });
        }
    }
    stream
        .create_consumer(consumer_config(subjects, js_cfg, Some(start)))
        .await
        .map_err(|source| ServeError::Consumer {
            durable: js_cfg.durable.clone(),
            source,
        })?;
    tracing::info!(durable = %js_cfg.durable, resume_from = start, "durable consumer recreated");
    Ok(())
}

/// Whether the server answered that the consumer does not exist (JetStream error code 10014), which a
/// reset treats as already deleted.
fn is_consumer_not_found(e: &jetstream::stream::ConsumerError) -> bool {
    matches!(
        e.kind(),
        jetstream::stream::ConsumerErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND
    )
}

async fn jetstream_stream(
    client: &async_nats::Client,
    subjects: &Subjects,
    js_cfg: &JetStreamConfig,
) -> Result<jetstream::stream::Stream, ServeError> {
    let js = jetstream::new(client.clone());
    if js_cfg.create_stream {
        js.get_or_create_stream(jetstream::stream::Config {
            name: js_cfg.stream.clone(),
            subjects: vec![subjects.all_ticks(), subjects.all_factors()],
            storage: jetstream::stream::StorageType::File,
            // De-duplicates re-published ticks (publishers that retry with Nats-Msg-Id).
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(async_nats::Error::from)
    } else {
        js.get_stream(&js_cfg.stream).await.map_err(async_nats::Error::from)
    }
    .map_err(|source| ServeError::Stream {
        stream: js_cfg.stream.clone(),
        source,
    })
}

/// Pulls from the durable consumer until shutdown. A broken pull (server restart, missed heartbeats) is
/// re-established with back-off; a tick is acknowledged by its shard only after the engine processed it,
/// and a redelivered sequence already applied is acknowledged and skipped.
#[allow(clippy::too_many_arguments)]
async fn consume_jetstream(
    client: &async_nats::Client,
    subjects: &Subjects,
    js_cfg: &JetStreamConfig,
    start: Option<u64>,
    mut consumer: PullConsumer,
    router: &mut Router,
    counters: &Counters,
    loops: Loops<'_>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    'outer: loop {
        // Raced with the shutdown: with the server gone, setting up a pull waits for the reconnection.
        let messages = tokio::select! {
            () = &mut shutdown => break 'outer,
            m = consumer.stream().max_messages_per_batch(1024).messages() => m,
        };
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
                tokio::select! {
                    () = &mut shutdown => break 'outer,
                    c = jetstream_consumer(client, subjects, js_cfg, start) => if let Ok(c) = c {
                        consumer = c;
                    },
                }
                continue;
            }
        };
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    // Finish what this client already holds: a tick delivered to us and left unprocessed would
                    // be redelivered only after the ack wait, behind later ticks that the next instance has
                    // already applied, and be quarantined as stale there.
                    let mut finished = 0u64;
                    while let Some(Some(Ok(m))) = messages.next().now_or_never() {
                        on_js_message(m, subjects, router, counters).await;
                        finished += 1;
                    }
                    tracing::info!(finished, "jetstream: finished the ticks already delivered");
                    break 'outer;
                }
                Some(c) = loops.control.recv() => router.on_control(c).await,
                _ = loops.cuts.tick() => router.periodic_cut().await,
                _ = loops.sweep.timer.tick() => loops.sweep.run(router).await,
                m = messages.next() => match m {
                    Some(Ok(m)) => on_js_message(m, subjects, router, counters).await,
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
        applied_floor = router.applied().map(AppliedSeqs::floor),
        last = router.applied().map(AppliedSeqs::last),
        "jetstream consumer stopped"
    );
}
