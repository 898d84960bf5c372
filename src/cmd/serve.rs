//! `cambio serve`: the live service, with the whole configuration assembled here from the file, the
//! environment and the flags.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use cambio::config::Config;
use cambio::replay::Scenario;

use super::{CliError, with_overrides};

/// Exit status when the shutdown could not deliver everything (NATS unreachable through the drain timeout):
/// the state is checkpointed, but outputs or acknowledgements may be missing downstream.
pub const UNDELIVERED_EXIT: u8 = 1;

/// Exit status when a second SIGINT or SIGTERM ended the shutdown before it finished (128 + SIGINT, as
/// shells report an interrupted command).
pub const INTERRUPTED_EXIT: u8 = 130;

/// `cambio serve`.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file ([engine], [nats], [serve], [checkpoint], [registry], [challenger], [metrics], [business], [retrain] tables).
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
    /// Serve Prometheus metrics and health probes on this address (`/metrics`, `/healthz`, `/readyz`);
    /// overrides [metrics] listen.
    #[arg(long, value_name = "HOST:PORT")]
    metrics: Option<String>,
}

/// Serves until SIGINT or SIGTERM, then drains and exits 0; exits [`UNDELIVERED_EXIT`] when NATS did not
/// take everything within the drain timeout, and [`INTERRUPTED_EXIT`] at once on a second signal.
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
    if args.metrics.is_some() {
        cfg.metrics.listen = args.metrics;
    }
    cfg.nats = with_overrides(cfg.nats, args.nats);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cfg.serve.worker_threads(cores);
    tracing::info!(workers, cores, "runtime worker threads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)?;
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let (second_tx, second_rx) = tokio::sync::oneshot::channel();
    runtime.spawn(signals(first_tx, second_tx));
    let served = runtime.block_on(async {
        tokio::select! {
            r = cambio::nats::serve::run(cfg, async { let _ = first_rx.await; }) => Some(r),
            Ok(()) = second_rx => None,
        }
    });
    let Some(served) = served else {
        // The service is dropped here (a local nats-server child with it); its tasks are not waited for.
        runtime.shutdown_background();
        let _ = writeln!(
            std::io::stderr(),
            "cambio serve: second signal: stopped without finishing the drain (the shutdown checkpoint may be missing)"
        );
        return Ok(ExitCode::from(INTERRUPTED_EXIT));
    };
    let summary = served?;
    let _ = writeln!(
        std::io::stderr(),
        "cambio serve: stopped after {} ticks on {} pair(s)",
        summary.counters.ticks,
        summary.pairs.len()
    );
    if !summary.drained {
        return Ok(ExitCode::from(UNDELIVERED_EXIT));
    }
    Ok(ExitCode::SUCCESS)
}

/// Says when the first SIGINT or SIGTERM arrives (the drain begins), then when a second one does (exit now).
/// The listeners are installed once, before either: a signal between the two is not missed.
async fn signals(first: tokio::sync::oneshot::Sender<()>, second: tokio::sync::oneshot::Sender<()>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::info!("shutdown signal received: draining (a second signal exits at once)");
                let _ = first.send(());
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::error!("second signal: exiting now, without finishing the drain");
                let _ = second.send(());
                return;
            }
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM or SIGINT; stopping on Ctrl-C only");
            }
        }
    }
    super::shutdown_signal().await;
    let _ = first.send(());
    super::shutdown_signal().await;
    tracing::error!("second signal: exiting now, without finishing the drain");
    let _ = second.send(());
}
