//! `cambio archive`: every input and output of the model into a Parquet data lake (see `docs/lake.md`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cambio::lake::RollPolicy;
use cambio::nats::archive::{ArchiveMetrics, ArchiveOptions};

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
    /// Serve Prometheus metrics (rows, files and bytes written, pending messages, flush durations, lag,
    /// errors) on /metrics at this address (HOST:PORT).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Age limit of the streams' messages (`30d`): set on the output stream, and on the input stream when
    /// the archive creates it. Without it, no limit is set and an existing one is kept.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    stream_max_age: Option<Duration>,
    /// Size limit of each stream (`500GiB`, `10GB`, or bytes), applied as --stream-max-age is.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    stream_max_bytes: Option<i64>,
}

/// A size: a number of bytes, optionally with a unit (`KB`, `MB`, `GB`, `TB` in powers of 1000; `KiB`,
/// `MiB`, `GiB`, `TiB` in powers of 1024).
fn parse_size(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}`: a whole number of bytes, optionally with a unit such as GiB or GB"))?;
    let mult: i64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        other => {
            return Err(format!(
                "`{s}`: unknown unit `{other}` (B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ));
        }
    };
    match n.checked_mul(mult) {
        Some(b) if b > 0 => Ok(b),
        _ => Err(format!("`{s}`: must be above zero and below 8 EiB")),
    }
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
            one_date_per_key: false,
        },
        stream_max_age: args.stream_max_age.filter(|d| !d.is_zero()),
        stream_max_bytes: args.stream_max_bytes,
        metrics: ArchiveMetrics::default(),
    };
    let summary = runtime()?.block_on(async {
        // Listening for SIGTERM before connecting: a stop during start-up is a clean stop.
        let stop = shutdown_signal();
        // Bound before connecting, so an address in use stops the command at start.
        let endpoint = match &args.metrics {
            Some(addr) => Some(cambio::nats::metrics_http::bind(addr).await?),
            None => None,
        };
        let endpoint = endpoint.map(|l| cambio::nats::archive::metrics::spawn(l, opts.metrics.registry()));
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-archive").await?;
        let summary = cambio::nats::archive::run(&client, &opts, stop).await;
        if let Some(e) = endpoint {
            e.abort();
        }
        Ok::<_, CliError>(summary?)
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

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_read_with_their_units() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(parse_size("500GiB"), Ok(500 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-5").is_err());
        assert!(parse_size("9999999TiB").is_err());
    }
}
