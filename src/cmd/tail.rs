//! `cambio tail`: a pair's outputs from NATS, one readable line (or the raw JSON) per message.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use cambio::nats::tail::Tail;

use super::{CliError, ctrl_c, nats_config, parse_pair, runtime, subjects};

/// `cambio tail`.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Prints until `--count` messages, Ctrl-C, or a closed pipe (which [`Tail::run`] ends quietly).
///
/// # Errors
/// [`CliError`] when the connection or a subscription fails, or standard output cannot be written.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let pair = parse_pair(&args.pair)?;
    let subjects = subjects(&args.prefix)?;
    let cfg = nats_config(args.nats, args.config.as_deref())?;
    let prefix = args.prefix;
    runtime()?.block_on(async {
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-tail").await?;
        let tail = Tail::start(&client, &subjects, pair, args.json).await?;
        let _ = writeln!(
            std::io::stderr(),
            "tail: listening on {prefix}.{{pred,quality,drift,alert,quarantine}}.{pair}"
        );
        // Plain standard output, not `Out`: the tail must see the closed pipe to stop.
        tail.run(args.count, ctrl_c(), &mut std::io::stdout().lock()).await?;
        Ok::<_, CliError>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
