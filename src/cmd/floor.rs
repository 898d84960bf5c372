//! `cambio floor`: the bare-NATS forwarder and responder cambio is measured against.

use std::process::ExitCode;

use cambio::nats::NatsConfig;
use cambio::nats::floor::{self, FloorOptions, JetStreamSetup};

use super::{CliError, runtime, shutdown_signal, subjects};

/// `cambio floor`.
#[derive(clap::Args)]
pub struct Args {
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
}

/// Runs the floor until SIGTERM or Ctrl-C.
///
/// # Errors
/// [`CliError`] when the connection, the service or the consumer cannot be set up.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let subjects = subjects(&args.prefix)?;
    let jetstream = args.jetstream.then_some(JetStreamSetup {
        stream: args.stream,
        durable: args.durable,
    });
    let cfg = NatsConfig {
        url: Some(args.nats),
        ..Default::default()
    };
    runtime()?.block_on(async {
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-floor").await?;
        let opts = FloorOptions { subjects, jetstream };
        floor::run(client, &opts, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
