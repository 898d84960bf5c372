//! The `cambio` binary: thin on purpose. It parses the command line, sets up tracing and hands the
//! subcommand to its module in [`cmd`], which calls the library.

mod cmd;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Demo(cmd::demo::Args),
    /// Replay a scenario folder, a scenario.toml, a CSV or a JSON-lines tick file through the engine.
    /// Exits 1 when a scenario expectation fails, 2 on an error.
    Replay(cmd::replay::Args),
    /// Record a pair's ticks from NATS into a JSON-lines file that `replay` reads, stamping each with its
    /// arrival time. Stops after --duration, after --count messages, or on Ctrl-C.
    Record(cmd::record::Args),
    /// Print a pair's forecasts, quality, drift, alerts and quarantines from NATS, one line per message.
    /// Ctrl-C exits.
    Tail(cmd::tail::Args),
    /// Serve live: consume ticks from NATS, publish forecasts, quarantines, quality, drift and alerts, and
    /// answer queries as the micro service `cambio`. With no server configured, starts a local nats-server.
    /// SIGINT/SIGTERM drain and exit 0.
    Serve(cmd::serve::Args),
    /// The bare-NATS floor cambio is measured against: forwards every `<prefix>.ticks.<PAIR>` message
    /// unchanged to `<prefix>.pred.<PAIR>` and answers `<prefix>.query.*` with a fixed body (micro service
    /// `floor`). Runs until SIGTERM or Ctrl-C.
    Floor(cmd::floor::Args),
    /// Measure cambio over NATS against the floor: tick-to-forecast latency, query latency and throughput,
    /// each target a child process of this binary. Exits 1 when cambio misses a target the tool checks.
    Load(cmd::load::Args),
    /// The model registry: list, show, roll back, keep, export and import checkpoint versions in a redb
    /// file written by `serve --checkpoint` (offline: while serve runs, use the `fx.models.<PAIR>` endpoint).
    Models(cmd::models::Args),
    /// Build a model version offline from a pair's history (lake, scenario, CSV or JSON lines): a training
    /// window from the last structural change, calibration, a hold-out score against the champion and the
    /// random walk; written to the registry with reason `retrain`, not promoted (`models challenge` is how
    /// it enters service).
    Retrain(cmd::retrain::Args),
    /// Archive every input and output (ticks, quarantines, factors, forecasts, alerts, business
    /// quarantines) from JetStream into Parquet files under --dir, partitioned by kind, pair and date.
    /// SIGINT/SIGTERM write what is held and exit 0.
    Archive(cmd::archive::Args),
    /// Review the quarantined ticks kept in JetStream: list them by pair and reason, show one with the
    /// accepted prices around it, label it `bad` (correctly refused) or `good` (a real price refused).
    /// With no subcommand, walks the unlabelled ones asking on standard input.
    Review(cmd::review::Args),
    /// Connectors: fetch Banxico, INEGI and FRED series on schedules and publish them as ticks and factors
    /// (`sources run --config FILE [--once]`), with watermarks in a JetStream key-value bucket.
    Sources(cmd::sources::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    let result = match cli.command {
        Command::Demo(args) => cmd::demo::run(args),
        Command::Replay(args) => cmd::replay::run(args),
        Command::Record(args) => cmd::record::run(args),
        Command::Tail(args) => cmd::tail::run(args),
        Command::Serve(args) => cmd::serve::run(args),
        Command::Floor(args) => cmd::floor::run(args),
        Command::Load(args) => cmd::load::run(args),
        Command::Models(args) => cmd::models::run(args),
        Command::Retrain(args) => cmd::retrain::run(args),
        Command::Archive(args) => cmd::archive::run(args),
        Command::Sources(args) => cmd::sources::run(args),
        Command::Review(args) => cmd::review::run(args),
    };
    result.unwrap_or_else(|e| {
        // Not `eprintln!`: a closed stderr must not turn an error into a panic.
        let _ = writeln!(std::io::stderr(), "error: {e}");
        ExitCode::from(cmd::ERROR_EXIT)
    })
}

/// Logs to stderr (stdout is the commands' output), as text or, with `--log-json`, JSON lines.
fn init_tracing(json: bool) {
    // async-nats logs every client event at info, one per dropped message under a slow consumer; cambio logs
    // (and rate-limits) the events itself. RUST_LOG overrides, with one exception: below info, async-nats
    // prints the subject of every message received, and a publisher may put anything in a subject (a client
    // identifier in place of a pair), so it stays at info unless RUST_LOG names async_nats itself.
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.contains("async_nats") => {
            tracing_subscriber::EnvFilter::try_from_default_env().map(|f| match "async_nats=info".parse() {
                Ok(d) => f.add_directive(d),
                Err(_) => f,
            })
        }
        _ => tracing_subscriber::EnvFilter::try_from_default_env(),
    }
    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,async_nats=warn"));
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        // Colours only on a terminal: a log file or a pipe gets plain `key=value` text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter);
    if json {
        subscriber.json().init();
    } else {
        subscriber.init();
    }
}
