//! `cambio archive`: every input and output of the model into a Parquet data lake (see `docs/lake.md`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cambio::lake::RollPolicy;
use cambio::nats::archive::ArchiveOptions;

use super::{CliError, Out, nats_config, runtime, shutdown_signal, subjects};

/// `cambio archive`.
#[derive(clap::Args)]
pub struct Args {
    /// The lake's folder.
    #[arg(long)]
    dir: PathBuf,
    /// NATS server URL (overrides the config's [nats] url and CAMBIO_NATS_URL).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
    /// Configuration file (its [nats] table).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The subject prefix.
    #[arg(long, default_value = "fx")]
    prefix: String,
    /// The input stream (ticks and factors), as `[serve.jetstream] stream`.
    #[arg(long, default_value = "FX")]
    input_stream: String,
    /// The output stream (forecasts, quarantines, alerts, business quarantines), created or updated here.
    #[arg(long, default_value = "FX_OUT")]
    output_stream: String,
    /// The durable consumers' name (one on each stream).
    #[arg(long, default_value = "cambio-archive")]
    durable: String,
    /// A file rolls when it holds this many rows…
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_rows: u64,
    /// …or about this many MiB of payload…
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    max_mib: u64,
    /// …or its first row is this old (`10s`, `1m`).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    max_age: Duration,
}

/// Archives until SIGINT or SIGTERM, then writes what it holds and says what it wrote.
///
/// # Errors
/// [`CliError`] when the connection, a stream, a consumer or the lake fails.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let subjects = subjects(&args.prefix)?;
    let cfg = nats_config(args.nats, args.config.as_deref())?;
    for name in [&args.input_stream, &args.output_stream, &args.durable] {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(CliError::Prefix(format!(
                "stream or consumer name `{name}`: letters, digits, '_' or '-'"
            )));
        }
    }
    let opts = ArchiveOptions {
        dir: args.dir,
        subjects,
        input_stream: args.input_stream,
        output_stream: args.output_stream,
        durable: args.durable,
        policy: RollPolicy {
            max_rows: usize::try_from(args.max_rows).unwrap_or(usize::MAX),
            max_bytes: usize::try_from(args.max_mib.saturating_mul(1 << 20)).unwrap_or(usize::MAX),
            max_age: args.max_age.max(Duration::from_millis(10)),
        },
    };
    let summary = runtime()?.block_on(async {
        // Listening for SIGTERM before connecting: a stop during start-up is a clean stop.
        let stop = shutdown_signal();
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-archive").await?;
        Ok::<_, CliError>(cambio::nats::archive::run(&client, &opts, stop).await?)
    })?;
    let mut out = Out::stdout();
    writeln!(
        out,
        "archived {} rows in {} files to {} ({} delivered again and already archived, {} not kept)",
        summary.rows,
        summary.files,
        opts.dir.display(),
        summary.skipped,
        summary.ignored
    )?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
