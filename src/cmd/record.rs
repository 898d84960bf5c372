//! `cambio record`: a pair's ticks from NATS into a JSON-lines file that `replay` reads.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cambio::nats::record::{Recorder, StopAfter};

use super::{CliError, Out, ctrl_c, nats_config, parse_pair, runtime, subjects};

/// `cambio record`.
#[derive(clap::Args)]
pub struct Args {
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
    #[arg(long, value_parser = humantime::parse_duration)]
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
}

/// Records until `--duration`, `--count` or Ctrl-C, then says how many messages were written.
///
/// # Errors
/// [`CliError`] when the connection, the subscription or the file fails.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let pair = parse_pair(&args.pair)?;
    let subjects = subjects(&args.prefix)?;
    let cfg = nats_config(args.nats, args.config.as_deref())?;
    let stop = StopAfter {
        duration: args.duration,
        count: args.count,
    };
    let path = args.out;
    let n = runtime()?.block_on(async {
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-record").await?;
        let recorder = Recorder::start(&client, &subjects, pair, &path).await?;
        // On stderr, so stdout carries only the result; a closed stderr must not stop the recording.
        let _ = writeln!(
            std::io::stderr(),
            "record: listening on {}, writing {}",
            recorder.subject(),
            path.display()
        );
        Ok::<_, CliError>(recorder.run(stop, ctrl_c()).await?)
    })?;
    let mut out = Out::stdout();
    writeln!(out, "recorded {n} messages to {}", path.display())?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn duration(text: &str) -> Result<Option<Duration>, clap::Error> {
        Cli::try_parse_from(["record", "--pair", "USDMXN", "--out", "x.jsonl", "--duration", text])
            .map(|c| c.args.duration)
    }

    #[test]
    fn durations_are_humantime_spans() {
        for (text, secs) in [
            ("10s", 10),
            ("10m", 600),
            ("1h", 3600),
            ("1h30m", 5400),
            ("1h 30m", 5400),
            ("2d", 172_800),
        ] {
            assert_eq!(duration(text).unwrap(), Some(Duration::from_secs(secs)), "{text}");
        }
        assert_eq!(duration("500ms").unwrap(), Some(Duration::from_millis(500)));
        assert_eq!(duration("0s").unwrap(), Some(Duration::ZERO));
        for bad in ["", "10", "s", "10x", "-1s", "99999999999999999999s"] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
    }
}
