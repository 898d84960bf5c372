//! `cambio sources run`: the connectors, on their schedules or once (`--once`, for cron or Airflow).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use cambio::sources::config::SourcesConfig;
use cambio::sources::runner::{RunOptions, SourceCounts, run as run_sources};

use super::{Align, CliError, Out, nats_config, runtime, shutdown_signal, write_table};

/// `cambio sources`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: SourcesCommand,
}

#[derive(clap::Subcommand)]
enum SourcesCommand {
    /// Fetch every source of the file on its schedule and publish what is new as ticks and factors;
    /// with --once, run each source once and exit (0: all succeeded, 1: a source failed, 2: bad config).
    Run(RunArgs),
}

/// `cambio sources run`.
#[derive(clap::Args)]
struct RunArgs {
    /// The sources file (`[[source]]` tables; see docs/sources.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Run each source once (backfill or incremental) and exit.
    #[arg(long)]
    once: bool,
    /// NATS server URL (overrides CAMBIO_NATS_URL). The server needs JetStream: the watermarks live in a
    /// key-value bucket.
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Serve Prometheus metrics (per source: runs, published, missing, retries, errors) on /metrics at
    /// this address (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
}

/// Runs the sources.
///
/// # Errors
/// [`CliError`] when the file is invalid, NATS cannot be reached or the watermark bucket cannot be opened.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let SourcesCommand::Run(args) = args.command;
    let cfg = SourcesConfig::load(&args.config)?;
    let nats = nats_config(args.nats, None)?;
    let counts = Arc::new(Mutex::new(Vec::new()));
    let once = args.once;
    let metrics = args.metrics;
    let result = runtime()?.block_on(async {
        // Bound before connecting, so an address in use stops the command at start.
        let endpoint = match &metrics {
            Some(addr) => Some(cambio::nats::metrics_http::bind(addr).await?),
            None => None,
        };
        let endpoint = endpoint.map(|l| cambio::sources::metrics::spawn(l, counts.clone()));
        let (client, _events) = cambio::nats::connect(&nats, "cambio-sources").await?;
        let result = run_sources(&client, &cfg, RunOptions { once }, counts, shutdown_signal()).await?;
        // Core publications are flushed per batch; this is for the watermark writes' own acks, already
        // awaited, and anything else buffered.
        let _ = client.flush().await;
        if let Some(e) = endpoint {
            e.abort();
        }
        Ok::<_, CliError>(result)
    })?;
    let mut out = Out::stdout();
    summary(&mut out, &result)?;
    let failed = result.iter().any(|c| c.failed);
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn summary(out: &mut impl Write, counts: &[SourceCounts]) -> Result<(), CliError> {
    let rows: Vec<Vec<String>> = counts
        .iter()
        .map(|c| {
            let errors = if c.errors.is_empty() {
                "-".to_string()
            } else {
                c.errors
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            };
            vec![
                c.name.clone(),
                c.kind.clone(),
                if c.failed { "failed".into() } else { "ok".into() },
                c.fetched.to_string(),
                c.published.to_string(),
                c.missing.to_string(),
                c.refused_future.to_string(),
                c.duplicates.to_string(),
                c.retries.to_string(),
                errors,
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "source",
            "kind",
            "status",
            "fetched",
            "published",
            "missing",
            "future",
            "duplicates",
            "retries",
            "errors",
        ],
        &[
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
        ],
        &rows,
    )?;
    for c in counts.iter().filter(|c| c.failed) {
        if let Some(e) = &c.last_error {
            writeln!(out, "{}: {e}", c.name)?;
        }
    }
    Ok(())
}
