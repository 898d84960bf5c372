//! `cambio serve`: the live service, with the whole configuration assembled here from the file, the
//! environment and the flags.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use cambio::config::Config;
use cambio::replay::Scenario;

use super::{CliError, shutdown_signal, with_overrides};

/// `cambio serve`.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Serves until SIGINT or SIGTERM, then drains and exits 0.
///
/// # Errors
/// [`CliError`] when the configuration is invalid or the service cannot start.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let mut cfg = args.config.map(|c| Config::load(&c)).transpose()?.unwrap_or_default();
    if let Some(path) = args.scenario {
        cfg.engine = Scenario::load(&path)?.config;
    }
    if args.checkpoint.is_some() {
        cfg.checkpoint.path = args.checkpoint;
    }
    cfg.checkpoint.fresh_if_unreadable |= args.fresh;
    cfg.nats = with_overrides(cfg.nats, args.nats);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cfg.serve.worker_threads(cores);
    tracing::info!(workers, cores, "runtime worker threads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let summary = runtime.block_on(cambio::nats::serve::run(cfg, shutdown_signal()))?;
    let _ = writeln!(
        std::io::stderr(),
        "cambio serve: stopped after {} ticks on {} pair(s)",
        summary.counters.ticks,
        summary.pairs.len()
    );
    Ok(ExitCode::SUCCESS)
}
