//! `cambio replay`: a scenario or tick file through the engine in process (summary, report, outputs), or,
//! with `--nats`, published to a NATS server for a live `cambio serve`.

use std::cell::RefCell;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::rc::Rc;

use cambio::config::Config;
use cambio::lake::offline::OfflineLake;
use cambio::nats::publish::{PublishOptions, Speed};
use cambio::replay::{self, InputKind, ReplayOptions, Report, Scenario};

use super::{Align, CliError, Out, nats_config, parse_pair, passed_or_1, runtime, status_name, write_json};

/// `cambio replay`.
#[derive(clap::Args)]
pub struct Args {
    /// Scenario folder, scenario.toml, ticks.csv or ticks.jsonl.
    input: PathBuf,
    /// The pair (needed when the file does not name it).
    #[arg(long)]
    pair: Option<String>,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Write every output (forecasts, quarantines, alarms, …) as JSON lines here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the outputs into a Parquet data lake in this folder, as `cambio archive` writes them live
    /// (forecasts, quarantined ticks, alerts; see docs/lake.md).
    #[arg(long, value_name = "DIR")]
    archive: Option<PathBuf>,
    /// Configuration file: its [engine] table, when it has one, replaces the scenario's [config]; its
    /// [challenger] table runs the champion/challenger contest and the rollback guard as `serve` does.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Write ticks_per_sec as 0, so two runs give byte-identical reports.
    #[arg(long)]
    no_timing: bool,
    /// Longest line read from a file, in bytes; a longer line is skipped without being held and recorded
    /// as `oversized`.
    #[arg(long, value_name = "BYTES", default_value_t = replay::source::DEFAULT_MAX_LINE_BYTES as u64,
        value_parser = clap::value_parser!(u64).range(1..))]
    max_line_bytes: u64,
    /// Publish the input's ticks (and a scenario's factors) to the NATS server at this URL instead of
    /// running the engine; auth comes from the config's [nats] table and CAMBIO_NATS_* variables.
    #[arg(long, value_name = "URL", conflicts_with_all = ["report", "out", "no_timing", "archive"])]
    nats: Option<String>,
    /// With --nats: the recorded spacing of ticks divided by this factor (`60x`, `1x` = real time).
    #[arg(long, requires = "nats", conflicts_with = "max")]
    speed: Option<Speed>,
    /// With --nats: as fast as possible (the default).
    #[arg(long, requires = "nats")]
    max: bool,
    /// With --nats: the subject prefix [default: fx].
    #[arg(long, requires = "nats")]
    prefix: Option<String>,
}

/// Replays in process and prints the summary (exit 1 when a scenario expectation fails), or publishes to
/// NATS with `--nats`.
///
/// # Errors
/// [`CliError`] when the input, configuration or an output file cannot be used.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    if args.nats.is_some() {
        return publish(args);
    }
    let pair = args.pair.as_deref().map(parse_pair).transpose()?;
    let cfg = args.config.as_deref().map(Config::load).transpose()?;
    let outputs: Option<Box<dyn Write>> = match args.out {
        Some(path) => match std::fs::File::create(&path) {
            // The buffer sits inside: the pipe's end is seen where the bytes actually reach it.
            Ok(file) => Some(Box::new(BufWriter::new(super::QuietPipe::new(file)))),
            Err(source) => return Err(CliError::File { path, source }),
        },
        None => None,
    };
    // The lake is fed from the observer, which cannot return an error: the first one is kept and returned
    // after the replay.
    let lake = match &args.archive {
        Some(dir) => Some(Rc::new(RefCell::new(OfflineLake::new(dir, "fx")?))),
        None => None,
    };
    let lake_error: Rc<RefCell<Option<cambio::lake::LakeError>>> = Rc::default();
    let observer: Option<replay::Observer> = lake.clone().map(|lake| {
        let lake_error = lake_error.clone();
        Box::new(move |o: &cambio::engine::Output| {
            let mut err = lake_error.borrow_mut();
            if err.is_none()
                && let Err(e) = lake.borrow_mut().push(o)
            {
                *err = Some(e);
            }
        }) as replay::Observer
    });
    let opts = ReplayOptions {
        pair,
        timing: !args.no_timing,
        progress: true,
        outputs,
        observer,
        challenger: cfg.as_ref().map(|c| c.challenger.clone()).unwrap_or_default(),
        max_line_bytes: usize::try_from(args.max_line_bytes).unwrap_or(usize::MAX),
    };
    let report = match replay::input_kind(&args.input) {
        InputKind::Scenario => {
            let scenario = Scenario::load(&args.input)?;
            // A file without an [engine] table (only [challenger], say) keeps the scenario's engine.
            let engine = cfg
                .as_ref()
                .filter(|_| has_engine_table(args.config.as_deref()))
                .map(|c| &c.engine);
            replay::replay_scenario(&scenario, engine, opts)?
        }
        _ => replay::replay_file(&args.input, &cfg.map(|c| c.engine).unwrap_or_default(), opts)?,
    };
    if let Some(e) = lake_error.take() {
        return Err(e.into());
    }
    if let Some(lake) = lake {
        // The observer, and so its handle, went with the replay's options: this is the last one.
        let rows = match Rc::try_unwrap(lake) {
            Ok(l) => l.into_inner().finish()?,
            Err(_) => 0,
        };
        let dir = args.archive.as_deref().unwrap_or(std::path::Path::new("."));
        let _ = writeln!(std::io::stderr(), "replay: archived {rows} rows to {}", dir.display());
    }
    let mut out = Out::stdout();
    write_summary(&mut out, &report)?;
    out.flush()?;
    if let Some(p) = args.report {
        write_json(&p, &report)?;
    }
    Ok(passed_or_1(report.passed))
}

/// `replay --nats`: publishes the input's ticks (and a scenario's factors), then prints what was sent.
fn publish(args: Args) -> Result<ExitCode, CliError> {
    let pair = args.pair.as_deref().map(parse_pair).transpose()?;
    let subjects = super::subjects(args.prefix.as_deref().unwrap_or("fx"))?;
    let cfg = nats_config(args.nats, args.config.as_deref())?;
    if !args.input.exists() {
        return Err(CliError::NoInput(args.input));
    }
    let speed = args.speed.unwrap_or(Speed::Max);
    let summary = runtime()?.block_on(async {
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-replay").await?;
        let opts = PublishOptions { subjects, pair, speed };
        let summary = cambio::nats::publish::replay_to_nats(&client, &args.input, opts, super::ctrl_c()).await?;
        Ok::<_, CliError>(summary)
    })?;
    let mut out = Out::stdout();
    writeln!(
        out,
        "published {} ticks and {} factors in {:.3} s ({:.0} messages/s){}",
        summary.ticks,
        summary.factors,
        summary.elapsed.as_secs_f64(),
        summary.rate(),
        if summary.interrupted { " (interrupted)" } else { "" }
    )?;
    if summary.skipped_factors > 0 {
        writeln!(
            out,
            "{} factors not published: their names cannot be subject tokens",
            summary.skipped_factors
        )?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// A figure of a horizon's row: `n/a` when nothing was scored (`n` is 0) or the figure is not a number.
fn figure(n: u64, x: f64, decimals: usize) -> String {
    if n == 0 || !x.is_finite() {
        "n/a".into()
    } else {
        format!("{x:.decimals$}")
    }
}

/// The summary people read after a replay (and the demo): counts, quarantines by reason, the metrics
/// table per horizon, alarms, quality, each expectation in words, and the throughput.
///
/// # Errors
/// The writer's.
pub fn write_summary(out: &mut impl Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "\n== {}", r.input)?;
    write_counts(out, r.ticks, r.accepted, &r.quarantined)?;
    if r.pairs.len() > 1 {
        // Several pairs: the totals above, then each pair on its own (the top-level figures of the report
        // are the first pair's).
        writeln!(out, "alarms {} (adaptations {})", r.alarms_total, r.adaptations)?;
        for p in &r.pairs {
            writeln!(out, "\n-- {}", p.pair)?;
            write_counts(out, p.ticks, p.accepted, &p.quarantined)?;
            write_horizons(out, &p.horizons)?;
            writeln!(out, "alarms {} (adaptations {})", p.alarms_total, p.adaptations)?;
            write_quality(out, &p.quality)?;
        }
    } else {
        write_horizons(out, &r.horizons)?;
        writeln!(out, "alarms {} (adaptations {})", r.alarms_total, r.adaptations)?;
        if let Some(q) = &r.quality {
            write_quality(out, q)?;
        }
    }
    for o in &r.expectations {
        writeln!(
            out,
            "{} {}: {}",
            if o.passed { "PASS" } else { "FAIL" },
            o.expect,
            o.detail
        )?;
    }
    if r.ticks_per_sec > 0.0 {
        writeln!(
            out,
            "{:.0} ticks/s, peak memory {} KiB",
            r.ticks_per_sec, r.peak_rss_kib
        )?;
    }
    Ok(())
}

/// `ticks N  accepted N  quarantined N (reason=n, …)`.
fn write_counts(
    out: &mut impl Write,
    ticks: u64,
    accepted: u64,
    by_reason: &std::collections::BTreeMap<String, u64>,
) -> std::io::Result<()> {
    let quarantined: u64 = by_reason.values().sum();
    write!(out, "ticks {ticks}  accepted {accepted}  quarantined {quarantined}")?;
    if quarantined > 0 {
        let reasons: Vec<String> = by_reason
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(reason, n)| format!("{reason}={n}"))
            .collect();
        write!(out, " ({})", reasons.join(", "))?;
    }
    writeln!(out)
}

/// The metrics table, one row per horizon.
fn write_horizons(out: &mut impl Write, horizons: &[cambio::eval::HorizonSummary]) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = horizons
        .iter()
        .map(|h| {
            vec![
                h.horizon.clone(),
                h.n.to_string(),
                figure(h.n, h.rmse, 5),
                figure(h.n, h.rw_rmse, 5),
                figure(h.n, h.rmse_ratio, 4),
                figure(h.n, h.coverage80, 3),
                figure(h.n, h.coverage95, 3),
                figure(h.n, h.winkler95, 4),
                // The published 95% interval's Winkler score relative to the RiskMetrics interval's on
                // the same forecasts (below 1: sharper for its coverage).
                figure(
                    h.ewma_n,
                    if h.ewma_winkler95 > 0.0 {
                        h.winkler95 / h.ewma_winkler95
                    } else {
                        f64::NAN
                    },
                    4,
                ),
            ]
        })
        .collect();
    let mut align = [Align::Right; 9];
    align[0] = Align::Left;
    super::write_table(
        out,
        &[
            "horizon",
            "n",
            "rmse",
            "rw_rmse",
            "ratio",
            "cov80",
            "cov95",
            "winkler95",
            "vs_ewma",
        ],
        &align,
        &rows,
    )
}

/// `quality ok`, or which dimensions are not and why: `quality fail (timeliness fail, score 0.213, 709
/// defects in 901 ticks: stale_factor flagged on 2,013 ticks since start)`.
fn write_quality(out: &mut impl Write, q: &cambio::quality::QualityReport) -> std::io::Result<()> {
    use cambio::quality::Flags;
    write!(out, "quality {}", status_name(q.overall))?;
    let not_ok: Vec<String> = q
        .dimensions
        .iter()
        .filter(|d| d.status != cambio::quality::Status::Ok)
        .map(|d| {
            let mut causes: Vec<String> = q
                .window_quarantined
                .iter()
                .filter(|r| r.reason.dimension() == d.dimension)
                .map(|r| format!("{} quarantined {} in the window", r.reason.name(), r.count))
                .collect();
            causes.extend(
                q.total_flagged
                    .iter()
                    .filter(|f| Flags::from_name(&f.flag).and_then(Flags::dimension) == Some(d.dimension))
                    .map(|f| format!("{} flagged on {} ticks since start", f.flag, f.count)),
            );
            let causes = if causes.is_empty() {
                String::new()
            } else {
                format!(": {}", causes.join(", "))
            };
            format!(
                "{} {}, score {:.3}, {} defects in {} ticks{causes}",
                d.dimension.name(),
                status_name(d.status),
                d.score,
                d.defects,
                d.total
            )
        })
        .collect();
    if !not_ok.is_empty() {
        write!(out, " ({})", not_ok.join("; "))?;
    }
    writeln!(out)
}

/// Whether the configuration file at `path` writes an `[engine]` table (its other tables may be all it is
/// for). An unreadable file was already refused by `Config::load`.
fn has_engine_table(path: Option<&std::path::Path>) -> bool {
    path.and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| text.parse::<toml::Table>().ok())
        .is_some_and(|t| t.contains_key("engine"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_file_with_an_engine_table_replaces_the_scenario_engine() {
        let dir = std::env::temp_dir().join(format!("cambio-engine-table-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let with = dir.join("with.toml");
        let without = dir.join("without.toml");
        std::fs::write(&with, "[engine]\nhorizons = [\"1step\"]\n").unwrap();
        std::fs::write(&without, "[challenger]\nrollback = true\n").unwrap();
        assert!(has_engine_table(Some(&with)));
        assert!(!has_engine_table(Some(&without)));
        assert!(!has_engine_table(None));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
