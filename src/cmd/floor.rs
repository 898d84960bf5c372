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
    /// Instead of forwarding: read the stream once from its start to its last message through a new
    /// durable consumer (`--durable`) set up as `cambio archive`'s, doing nothing with the messages, print
    /// the rate and exit (the floor `benches/archive_drain.py` compares the archive with).
    #[arg(long)]
    drain: bool,
}

/// Runs the floor until SIGTERM or Ctrl-C.
///
/// # Errors
/// [`CliError`] when the connection, the service or the consumer cannot be set up.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let subjects = subjects(&args.prefix)?;
    let setup = JetStreamSetup {
        stream: args.stream,
        durable: args.durable,
    };
    let cfg = NatsConfig {
        url: Some(args.nats),
        ..Default::default()
    };
    if args.drain {
        return runtime()?.block_on(async {
            let (client, _events) = cambio::nats::connect(&cfg, "cambio-floor").await?;
            let d = floor::drain(client, &setup.stream, &setup.durable).await?;
            let rate = if d.seconds > 0.0 {
                d.messages as f64 / d.seconds
            } else {
                0.0
            };
            println!(
                "drained {} messages in {:.2} s: {:.0} messages/s",
                d.messages, d.seconds, rate
            );
            Ok(ExitCode::SUCCESS)
        });
    }
    let jetstream = args.jetstream.then_some(setup);
    runtime()?.block_on(async {
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-floor").await?;
        let opts = FloorOptions { subjects, jetstream };
        floor::run(client, &opts, shutdown_signal()).await?;
        Ok(ExitCode::SUCCESS)
    })
}
