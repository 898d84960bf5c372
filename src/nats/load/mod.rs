//! `cambio load`: measures cambio over NATS against the floor (the same NATS work with nothing else to
//! do), in the same invocation and alternating which goes first, so both see the same machine.
//!
//! - [`schedule`]: open-loop pacing by schedule.
//! - [`ticks`]: the seeded stream of valid ticks and the `seq` scan of answers.
//! - [`target`]: the floor or `cambio serve` as a child process of this binary.
//! - [`measure`]: latency, query and throughput measurements and the readiness probe.
//! - [`report`]: plain-data results, the comparison against the targets, the table.
//!
//! Each measurement gets a fresh target process (and, in JetStream mode on the tool's own server, a fresh
//! stream), so neither target inherits the other's backlog or state.

pub mod measure;
pub mod report;
pub mod schedule;
pub mod target;
pub mod ticks;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use self::measure::{Bus, MeasureError, RatePlan};
use self::report::{Comparison, TargetResult};
use self::target::{Launch, Running, Target};
use self::ticks::TickGen;
use super::floor::JetStreamSetup;
use super::{LocalServer, NatsConfig, NatsError, Subjects};
use crate::tick::Pair;

/// What is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Tick-to-forecast latency at a fixed rate.
    Latency,
    /// Request-reply latency of the query endpoint at a fixed rate.
    Query,
    /// Forecasts per second with the publisher flat out.
    Throughput,
}

impl Mode {
    /// `latency`, `query` or `throughput`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Latency => "latency",
            Mode::Query => "query",
            Mode::Throughput => "throughput",
        }
    }
}

/// Everything `cambio load` needs.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Targets, in the order of the first measurement (later ones alternate).
    pub targets: Vec<Target>,
    /// Measurements, in order.
    pub modes: Vec<Mode>,
    /// NATS URL; `None` starts a local `nats-server` for the run.
    pub nats: Option<String>,
    /// Ticks a second for the latency measurement.
    pub rate: u64,
    /// Requests a second for the query measurement.
    pub query_rate: u64,
    /// Length of each fixed-rate measurement, warm-up included.
    pub duration: Duration,
    /// The part of each fixed-rate measurement that is not recorded.
    pub warmup: Duration,
    /// Ticks published in the throughput measurement.
    pub throughput_ticks: u64,
    /// Publish into a JetStream stream that the targets consume with a durable consumer.
    pub jetstream: bool,
    /// The stream (JetStream mode).
    pub stream: String,
    /// The durable consumer (JetStream mode).
    pub durable: String,
    /// cambio's configuration file for `serve --config`; without one, [`cambio_config`] is written.
    pub cambio_config: Option<PathBuf>,
    /// The binary that runs the targets (`std::env::current_exe()`).
    pub exe: PathBuf,
    /// Seed of the tick stream (the same for every target).
    pub seed: u64,
    /// Rounds: every measurement is made this many times on each target, and the comparison is the median
    /// of the rounds (see [`report::median_of_rounds`]).
    pub rounds: u32,
    /// Run cambio with its metrics endpoint on and scrape `/metrics` at this interval during each
    /// measurement (what Prometheus adds to the service's load).
    pub scrape_every: Option<Duration>,
}

/// The JSON report of a load run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    /// `local` when the tool started its own server, else the URL.
    pub nats: String,
    /// JetStream mode.
    pub jetstream: bool,
    /// Offered tick rate (latency).
    pub rate: u64,
    /// Offered request rate (query).
    pub query_rate: u64,
    /// Seconds per fixed-rate measurement.
    pub duration_secs: f64,
    /// Seconds of warm-up discarded.
    pub warmup_secs: f64,
    /// Ticks in the throughput measurement.
    pub throughput_ticks: u64,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// The runs in the order they happened: `target mode`.
    pub order: Vec<String>,
    /// The floor's figures (of the last round).
    pub floor: Option<TargetResult>,
    /// cambio's figures (of the last round).
    pub cambio: Option<TargetResult>,
    /// cambio against the floor: the median over the rounds.
    pub comparisons: Vec<Comparison>,
    /// cambio against the floor in each round, in order.
    pub rounds: Vec<Vec<Comparison>>,
    /// Every target met (and, in JetStream mode, nothing lost).
    pub passed: bool,
}

/// Why a load run failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The local server could not start, or a connection could not be made.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// A measurement or a target failed.
    #[error(transparent)]
    Measure(#[from] MeasureError),
    /// The scratch folder or a generated file could not be written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// How long a target gets to answer its first probe.
const READY_BOUND: Duration = Duration::from_secs(30);
/// How long a target gets to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Waiting for the last answers after a fixed-rate run.
const DRAIN: Duration = Duration::from_secs(3);
/// A query with no reply after this counts as lost.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Throughput ends when no forecast came for this long after the last publish.
const QUIET: Duration = Duration::from_secs(3);
/// JetStream throughput: most ticks published and not yet acknowledged by the stream.
const JS_ACK_WINDOW: u64 = 1_000;

/// The configuration `cambio serve` gets when none is given: arrival stamping off, because the load's tick
/// time runs at 100 ms per tick from 2024 (not the wall clock), so stamped arrivals would quarantine every
/// tick as stale; with `jetstream`, the JetStream mode on `setup`.
pub fn cambio_config(jetstream: Option<&JetStreamSetup>) -> String {
    let mut c = String::from("[serve]\nstamp_arrival = false\n");
    if let Some(setup) = jetstream {
        c.push_str(&format!(
            "mode = \"jetstream\"\n\n[serve.jetstream]\nstream = \"{}\"\ndurable = \"{}\"\n",
            setup.stream, setup.durable
        ));
    }
    c
}

/// Runs every measurement on every target and compares them.
///
/// # Errors
/// [`LoadError`] when the server, a target or a connection fails (a slow target is a result, not an error).
pub async fn run(opts: &LoadOptions) -> Result<LoadReport, LoadError> {
    let scratch = std::env::temp_dir().join(format!("cambio-load-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|source| LoadError::File {
        path: scratch.clone(),
        source,
    })?;
    // The server is started off the async threads: starting it blocks while it comes up.
    let server = match &opts.nats {
        Some(_) => None,
        None => {
            let js = opts.jetstream;
            let s = tokio::task::spawn_blocking(move || LocalServer::start(js, None))
                .await
                .map_err(|e| NatsError::LocalServer(e.to_string()))??;
            Some(s)
        }
    };
    let url = match (&opts.nats, &server) {
        (Some(u), _) => u.clone(),
        (None, Some(s)) => s.url(),
        (None, None) => return Err(NatsError::NoUrl.into()),
    };
    let setup = JetStreamSetup {
        stream: opts.stream.clone(),
        durable: opts.durable.clone(),
    };
    let cambio_config = match &opts.cambio_config {
        Some(c) => c.clone(),
        None => {
            let path = scratch.join("cambio.toml");
            let text = cambio_config(opts.jetstream.then_some(&setup));
            std::fs::write(&path, text).map_err(|source| LoadError::File {
                path: path.clone(),
                source,
            })?;
            path
        }
    };
    let (cambio_config, metrics_addr) = match opts.scrape_every {
        Some(_) => with_metrics_endpoint(&cambio_config, &scratch)?,
        None => (cambio_config, None),
    };
    let launch = Launch {
        exe: opts.exe.clone(),
        url: url.clone(),
        scratch: scratch.clone(),
        cambio_config: Some(cambio_config),
        floor_jetstream: opts.jetstream.then(|| setup.clone()),
    };
    let cfg = NatsConfig {
        url: Some(url.clone()),
        ..Default::default()
    };
    let (publisher, _) = super::connect(&cfg, "cambio-load-pub").await?;
    let (subscriber, _) = super::connect(&cfg, "cambio-load-sub").await?;
    let pair = Pair::parse("USDMXN").ok_or_else(|| NatsError::Config("pair USDMXN".into()))?;
    let bus = Bus {
        publisher,
        subscriber,
        subjects: Subjects::default(),
        pair,
    };

    let fresh = || -> Vec<TargetResult> {
        opts.targets
            .iter()
            .map(|t| TargetResult {
                target: t.name().into(),
                ..Default::default()
            })
            .collect()
    };
    let mut results = fresh();
    let mut rounds = Vec::new();
    let mut order = Vec::new();
    let mut run_no = 0;
    let mut lost_in_stream = false;
    let plan: Vec<Mode> = (0..opts.rounds.max(1))
        .flat_map(|_| opts.modes.iter().copied())
        .collect();
    for (m, &mode) in plan.iter().enumerate() {
        if m > 0 && m % opts.modes.len() == 0 {
            finish_round(&results, &mut rounds, &mut lost_in_stream, opts.jetstream);
            results = fresh();
        }
        // Alternate who goes first, so a drift in machine load does not always favour the same target.
        let mut idx: Vec<usize> = (0..opts.targets.len()).collect();
        if m % 2 == 1 {
            idx.reverse();
        }
        for k in idx {
            let target = opts.targets[k];
            run_no += 1;
            if opts.jetstream && server.is_some() {
                // A fresh stream per run: no backlog or consumer state carried from the previous target.
                let ctx = async_nats::jetstream::new(bus.publisher.clone());
                let _ = ctx.delete_stream(&opts.stream).await;
            }
            tracing::info!(target = target.name(), mode = mode.name(), "starting");
            let mut running = Running::start(target, &launch, run_no).map_err(MeasureError::from)?;
            let scraper = match (target, opts.scrape_every, &metrics_addr) {
                (Target::Cambio, Some(every), Some(addr)) => Some(Scraper::spawn(addr.clone(), every)),
                _ => None,
            };
            let outcome = measure_one(&bus, opts, mode, &mut running).await;
            if let Some(s) = scraper {
                let (ok, failed) = s.stop();
                tracing::info!(scrapes = ok, failed, "metrics scraped during the measurement");
            }
            let clean = running.stop(STOP_GRACE).await;
            if !clean {
                tracing::warn!(target = target.name(), "did not exit on SIGTERM; killed");
            }
            let r = &mut results[k];
            match outcome? {
                Measured::Latency(s) => r.latency = Some(s),
                Measured::Query(s) => r.query = Some(s),
                Measured::Throughput(s) => r.throughput = Some(s),
            }
            order.push(format!("{} {}", target.name(), mode.name()));
        }
    }
    let floor = results.iter().find(|r| r.target == "floor").cloned();
    let cambio = results.iter().find(|r| r.target == "cambio").cloned();
    finish_round(&results, &mut rounds, &mut lost_in_stream, opts.jetstream);
    let comparisons = report::median_of_rounds(&rounds);
    let passed = comparisons.iter().all(|c| c.pass) && !lost_in_stream;
    if passed {
        let _ = std::fs::remove_dir_all(&scratch);
    } else {
        tracing::info!(folder = %scratch.display(), "a target was missed: the targets' logs are kept");
    }
    Ok(LoadReport {
        nats: if server.is_some() { "local".into() } else { url },
        jetstream: opts.jetstream,
        rate: opts.rate,
        query_rate: opts.query_rate,
        duration_secs: opts.duration.as_secs_f64(),
        warmup_secs: opts.warmup.as_secs_f64(),
        throughput_ticks: opts.throughput_ticks,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        order,
        floor,
        cambio,
        comparisons,
        rounds,
        passed,
    })
}

/// A copy of cambio's configuration with `[metrics] listen` on a free loopback port, and that address.
fn with_metrics_endpoint(
    config: &std::path::Path,
    scratch: &std::path::Path,
) -> Result<(PathBuf, Option<String>), LoadError> {
    let file = |path: &std::path::Path, source| LoadError::File {
        path: path.to_path_buf(),
        source,
    };
    let text = std::fs::read_to_string(config).map_err(|e| file(config, e))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| file(scratch, e))?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let path = scratch.join("cambio-metrics.toml");
    std::fs::write(&path, format!("{text}\n[metrics]\nlisten = \"{addr}\"\n")).map_err(|e| file(&path, e))?;
    Ok((path, Some(addr)))
}

/// Asks a target's `/metrics` at a fixed interval, as Prometheus would, for as long as it runs.
struct Scraper {
    task: tokio::task::JoinHandle<()>,
    counts: Arc<(AtomicU64, AtomicU64)>,
}

impl Scraper {
    fn spawn(addr: String, every: Duration) -> Scraper {
        let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let c = counts.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                let done = if scrape(&addr).await { &c.0 } else { &c.1 };
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
        Scraper { task, counts }
    }

    /// Stops; the scrapes that succeeded and failed.
    fn stop(self) -> (u64, u64) {
        self.task.abort();
        (
            self.counts.0.load(Ordering::Relaxed),
            self.counts.1.load(Ordering::Relaxed),
        )
    }
}

/// One `GET /metrics` (HTTP/1.0, read to the end): whether a 200 came back. A load generator's request,
/// not a client library: the endpoint under test is the one to measure.
async fn scrape(addr: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: cambio\r\n\r\n")
            .await
            .ok()?;
        let mut body = Vec::with_capacity(64 * 1024);
        s.read_to_end(&mut body).await.ok()?;
        Some(body.starts_with(b"HTTP/1.0 200") || body.starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Ends a round: its comparison (when both targets ran) joins `rounds`, and a JetStream loss is noted.
fn finish_round(
    results: &[TargetResult],
    rounds: &mut Vec<Vec<Comparison>>,
    lost_in_stream: &mut bool,
    jetstream: bool,
) {
    let floor = results.iter().find(|r| r.target == "floor");
    let cambio = results.iter().find(|r| r.target == "cambio");
    if let (Some(f), Some(c)) = (floor, cambio) {
        rounds.push(report::compare(f, c, jetstream));
    }
    *lost_in_stream |= jetstream
        && results
            .iter()
            .any(|r| r.throughput.as_ref().is_some_and(|t| t.lost > 0));
}

enum Measured {
    Latency(report::LatencySummary),
    Query(report::LatencySummary),
    Throughput(report::ThroughputSummary),
}

async fn measure_one(
    bus: &Bus,
    opts: &LoadOptions,
    mode: Mode,
    running: &mut Running,
) -> Result<Measured, MeasureError> {
    let mut feed = TickGen::new(bus.pair, opts.seed);
    measure::wait_ready(bus, &mut feed, running, READY_BOUND).await?;
    let plan = |rate| RatePlan {
        rate,
        duration: opts.duration,
        warmup: opts.warmup,
        drain: DRAIN,
    };
    let out = match mode {
        Mode::Latency => {
            let cpu = || {
                running
                    .pid()
                    .and_then(crate::nats::serve::metrics::process::cpu_seconds_of)
            };
            let (cpu_before, seq_before) = (cpu(), feed.last_seq());
            let mut s = measure::latency(bus, &mut feed, plan(opts.rate)).await?;
            let published = feed.last_seq().saturating_sub(seq_before);
            if let (Some(a), Some(b)) = (cpu_before, cpu())
                && published > 0
            {
                s.cpu_us_per_msg = Some((b - a) * 1e6 / published as f64);
            }
            if running.target() == Target::Cambio {
                s.in_process = measure::in_process_latency(bus).await;
            }
            Measured::Latency(s)
        }
        Mode::Query => {
            measure::prime(bus, &mut feed, running, 20).await?;
            Measured::Query(measure::query(bus, plan(opts.query_rate), QUERY_TIMEOUT).await?)
        }
        Mode::Throughput => {
            let flush = opts.jetstream.then_some(JS_ACK_WINDOW);
            Measured::Throughput(
                measure::throughput(
                    bus,
                    &mut feed,
                    opts.throughput_ticks,
                    flush,
                    opts.jetstream.then_some(opts.stream.as_str()),
                    QUIET,
                )
                .await?,
            )
        }
    };
    running.check_alive()?;
    tracing::info!(target = running.target().name(), mode = mode.name(), "measured");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_cambio_config_is_a_valid_serve_config() {
        let core: crate::config::Config = toml::from_str(&cambio_config(None)).unwrap();
        assert!(!core.serve.stamp_arrival);
        assert_eq!(core.serve.mode, crate::nats::serve::IngestMode::Core);
        let setup = JetStreamSetup {
            stream: "FX2".into(),
            durable: "d".into(),
        };
        let js: crate::config::Config = toml::from_str(&cambio_config(Some(&setup))).unwrap();
        assert!(!js.serve.stamp_arrival);
        assert_eq!(js.serve.mode, crate::nats::serve::IngestMode::Jetstream);
        assert_eq!(js.serve.jetstream.stream, "FX2");
        assert_eq!(js.serve.jetstream.durable, "d");
        assert!(js.serve.validate().is_ok());
    }
}
