//! `cambio load`: cambio against the bare-NATS floor, each a child process of this binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cambio::nats::load::report as load_report;
use cambio::nats::load::target::Target;
use cambio::nats::load::{LoadOptions, Mode};

use super::{CliError, Out, passed_or_1, runtime, write_json};

/// `cambio load`.
#[derive(clap::Args)]
pub struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value_t = LoadTarget::Both)]
    target: LoadTarget,
    /// NATS server URL; without it a local nats-server is started for the run.
    #[arg(long)]
    nats: Option<String>,
    /// Ticks a second (latency).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Requests a second (query).
    #[arg(long, default_value_t = 5_000)]
    query_rate: u64,
    /// Length of each fixed-rate measurement, warm-up included (e.g. 10s, 500ms, 1m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Discarded start of each fixed-rate measurement.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Ticks published in the throughput measurement.
    #[arg(long, default_value_t = 500_000)]
    ticks: u64,
    /// Which measurements.
    #[arg(long, value_enum, default_value_t = LoadMode::All)]
    mode: LoadMode,
    /// Publish into a JetStream stream that the targets consume with a durable consumer.
    #[arg(long)]
    jetstream: bool,
    /// The stream (JetStream mode).
    #[arg(long, default_value = "FX")]
    stream: String,
    /// The durable consumer (JetStream mode).
    #[arg(long, default_value = "cambio")]
    durable: String,
    /// cambio's configuration (`serve --config`).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Seed of the tick stream.
    #[arg(long, default_value_t = 17)]
    seed: u64,
    /// Make every measurement this many times on each target and compare the medians of the rounds
    /// (this machine's noise can move one round by 2x).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    rounds: u32,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Run cambio with its metrics endpoint on and scrape /metrics at this interval during every
    /// measurement (e.g. 1s; Prometheus's default is 15s), to measure what monitoring costs.
    #[arg(long, value_parser = humantime::parse_duration)]
    scrape_every: Option<Duration>,
    /// Run the targets with this cambio binary instead of this one (to compare two builds under the same
    /// load generator).
    #[arg(long, value_name = "PATH")]
    target_exe: Option<PathBuf>,
}

/// `cambio load --target`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LoadTarget {
    Floor,
    Cambio,
    Both,
}

/// `cambio load --mode`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LoadMode {
    Latency,
    Query,
    Throughput,
    All,
}

/// Measures, prints the comparison table (and the ratio of each round), writes the report; exit 1 when
/// cambio misses a target.
///
/// # Errors
/// [`CliError`] when a target cannot be started or measured, or the report cannot be written.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let opts = LoadOptions {
        targets: match args.target {
            LoadTarget::Floor => vec![Target::Floor],
            LoadTarget::Cambio => vec![Target::Cambio],
            LoadTarget::Both => vec![Target::Floor, Target::Cambio],
        },
        modes: match args.mode {
            LoadMode::Latency => vec![Mode::Latency],
            LoadMode::Query => vec![Mode::Query],
            LoadMode::Throughput => vec![Mode::Throughput],
            LoadMode::All => vec![Mode::Latency, Mode::Query, Mode::Throughput],
        },
        nats: args.nats,
        rate: args.rate,
        query_rate: args.query_rate,
        duration: args.duration,
        warmup: args.warmup,
        throughput_ticks: args.ticks,
        jetstream: args.jetstream,
        stream: args.stream,
        durable: args.durable,
        cambio_config: args.config,
        exe: match args.target_exe {
            Some(exe) => exe,
            None => std::env::current_exe().map_err(CliError::CurrentExe)?,
        },
        seed: args.seed,
        rounds: args.rounds,
        scrape_every: args.scrape_every,
    };
    let report = runtime()?.block_on(cambio::nats::load::run(&opts))?;
    let mut out = Out::stdout();
    writeln!(
        out,
        "cambio load: {} ticks/s (latency), {} requests/s (query), {} each with {} warm-up, {} ticks (throughput){}; {} CPUs",
        report.rate,
        report.query_rate,
        humantime::format_duration(opts.duration),
        humantime::format_duration(opts.warmup),
        report.throughput_ticks,
        if report.jetstream { "; JetStream" } else { "" },
        report.cpus
    )?;
    if report.rounds.len() > 1 {
        writeln!(
            out,
            "median of {} rounds (floor, cambio and the ratio each)",
            report.rounds.len()
        )?;
    }
    write!(
        out,
        "{}",
        load_report::table(report.floor.as_ref(), report.cambio.as_ref(), &report.comparisons)
    )?;
    if report.rounds.len() > 1 {
        // Ratios per round for the ratio targets (a no-loss row has no ratio; its pass says it all).
        for row in report
            .comparisons
            .iter()
            .filter(|c| matches!(c.rule, load_report::Rule::AtMost(_) | load_report::Rule::AtLeast(_)))
        {
            let ratios: Vec<String> = report
                .rounds
                .iter()
                .filter_map(|r| r.iter().find(|c| c.measurement == row.measurement))
                .map(|c| {
                    if c.ratio.is_finite() {
                        format!("{:.2}", c.ratio)
                    } else {
                        "-".into()
                    }
                })
                .collect();
            writeln!(out, "  {:<26} ratio per round: {}", row.measurement, ratios.join(" "))?;
        }
    }
    out.flush()?;
    if let Some(p) = args.report {
        write_json(&p, &report)?;
    }
    Ok(passed_or_1(report.passed))
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

    #[test]
    fn durations_default_and_parse_as_humantime_spans() {
        let args = Cli::try_parse_from(["load"]).unwrap().args;
        assert_eq!(
            (args.duration, args.warmup),
            (Duration::from_secs(10), Duration::from_secs(1))
        );
        let args = Cli::try_parse_from(["load", "--duration", "1m30s", "--warmup", "500ms"])
            .unwrap()
            .args;
        assert_eq!(
            (args.duration, args.warmup),
            (Duration::from_secs(90), Duration::from_millis(500))
        );
        let args = Cli::try_parse_from(["load", "--duration", "1.5s"]).unwrap().args;
        assert_eq!(args.duration, Duration::from_millis(1_500));
        assert!(Cli::try_parse_from(["load", "--duration", "10"]).is_err());
        assert_eq!(
            humantime::format_duration(Duration::from_millis(1_500)).to_string(),
            "1s 500ms"
        );
    }
}
