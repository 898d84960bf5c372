//! `cambio retrain`: builds a model version offline from a pair's history and writes it to the registry
//! (docs/retrain.md). The work is [`cambio::retrain`]; this module reads the options, the champion and
//! the clock, and prints.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use cambio::checkpoint::lineage::os_user;
use cambio::checkpoint::{CheckpointStore, Retention};
use cambio::nats::serve::router::now_us;
use cambio::retrain::holdout::HorizonScores;
use cambio::retrain::labels::ValidatorReport;
use cambio::retrain::{self, Options, Report, RetrainError, data};

use super::{CliError, Out, parse_pair};

/// `cambio retrain`.
#[derive(clap::Args)]
pub struct Args {
    /// The data: a lake folder (`cambio archive`, `replay --archive`), a scenario, a CSV or a JSON-lines
    /// tick file.
    #[arg(long, value_name = "PATH")]
    from: PathBuf,
    /// The pair.
    #[arg(long)]
    pair: String,
    /// The registry (a redb file; created when missing). Its latest version of the pair is the champion
    /// the result is compared with.
    #[arg(long)]
    db: PathBuf,
    /// Use only ticks up to this date (included) or RFC 3339 time.
    #[arg(long, value_name = "DATE")]
    until: Option<String>,
    /// Share of the ticks held out for scoring, e.g. `20%` or `0.2`.
    #[arg(long, default_value = "20%")]
    holdout: String,
    /// Fewest ticks in the training window (500: two years of daily fixings).
    #[arg(long, default_value_t = retrain::DEFAULT_MIN_WINDOW)]
    min_window: usize,
    /// Ticks simulated under the window's null to set the detectors' thresholds.
    #[arg(long, default_value_t = retrain::DEFAULT_NULL_TICKS)]
    null_ticks: u64,
    /// Most replays of the window in the settings search.
    #[arg(long, default_value_t = retrain::DEFAULT_MAX_EVALS)]
    max_evals: usize,
    /// Time bound of the settings search in seconds (the search stops early, and says so, when reached).
    #[arg(long, default_value_t = retrain::DEFAULT_SEARCH_SECS)]
    search_secs: f64,
    /// Seed of the null's bootstrap.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Review labels: the output of `cambio review list --json`. The validator's precision on the labelled
    /// ticks is reported, and its jump band tuned to accept the jumps labelled good.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Your name for the lineage and the audit log (default: $USER, else $LOGNAME).
    #[arg(long)]
    actor: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `cambio retrain`.
///
/// # Errors
/// [`CliError`] when the options, the data or the registry are unusable (exit 2).
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let started = Instant::now();
    let pair = parse_pair(&args.pair)?;
    let holdout = retrain::parse_share(&args.holdout).map_err(usage)?;
    let until_us = args.until.as_deref().map(data::until_us).transpose().map_err(usage)?;
    if !(args.search_secs > 0.0 && args.search_secs.is_finite()) {
        return Err(CliError::Usage(
            "--search-secs: give a positive number of seconds".into(),
        ));
    }
    let opts = Options {
        pair,
        until_us,
        holdout,
        min_window: args.min_window,
        null_ticks: args.null_ticks,
        max_evals: args.max_evals.max(1),
        seed: args.seed,
        labels: args.labels.clone(),
    };
    // The registry is opened (created when missing) only once the data has been read.
    let mut opened = None;
    let champion = || {
        let store = CheckpointStore::open(&args.db, Retention::default())?;
        let champion = store
            .latest_good(pair)?
            .map(|(meta, state)| (meta.version, state.engine));
        opened = Some(store);
        Ok(champion)
    };
    let bound = Duration::from_secs_f64(args.search_secs);
    // The bound is the search's: its clock starts at the search's first question.
    let search_started = std::cell::OnceCell::new();
    let out_of_time = || search_started.get_or_init(Instant::now).elapsed() >= bound;
    let mut retrained = retrain::from_path(&args.from, &opts, champion, &out_of_time).map_err(usage)?;
    let Some(store) = opened else {
        return Err(CliError::Usage("the registry was not opened".into()));
    };
    let actor = args.actor.clone().unwrap_or_else(os_user);
    let meta = retrain::write(&store, &mut retrained, &actor, now_us()).map_err(usage)?;
    let secs = started.elapsed().as_secs_f64();
    let mut out = Out::stdout();
    if args.json {
        let mut v = serde_json::to_value(&retrained.report)?;
        v["seconds"] = serde_json::json!(secs);
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        print_report(&mut out, &retrained.report, secs)?;
    }
    let _ = writeln!(
        std::io::stderr(),
        "retrain: wrote {} version {} (reason retrain, not promoted); to put it in the contest: cambio models \
         challenge --db {} {} {}",
        meta.pair,
        meta.version,
        args.db.display(),
        meta.pair,
        meta.version
    );
    Ok(ExitCode::SUCCESS)
}

/// Retraining errors are the input's or the options' (exit 2), except the registry's own.
fn usage(e: RetrainError) -> CliError {
    match e {
        RetrainError::Store(s) => CliError::Store(s),
        other => CliError::Usage(other.to_string()),
    }
}

fn print_report(out: &mut Out, r: &Report, secs: f64) -> std::io::Result<()> {
    let s = &r.source;
    writeln!(out, "{} retrained from {} ({})", r.pair, s.path, s.kind)?;
    if let Some(n) = &s.note {
        writeln!(out, "  read: {n}")?;
    }
    writeln!(
        out,
        "  data: {} ticks read, {} after --until left out, {} records skipped; used {} from {} to {} ({})",
        s.read, s.after_until, s.skipped, s.used.ticks, s.used.first, s.used.last, s.hash
    )?;
    let w = &r.window;
    writeln!(
        out,
        "  window: {} ticks from {} to {}: {} ({}, {} changepoints, {} returns per point)",
        w.span.ticks, w.span.first, w.span.last, w.why, w.detector, w.changepoints, w.block
    )?;
    writeln!(
        out,
        "  hold-out: {} ticks from {} to {}",
        r.holdout.ticks, r.holdout.first, r.holdout.last
    )?;
    let n = &r.null;
    writeln!(
        out,
        "  detector thresholds: {} simulated null ticks (seed {}), at most {} alarms each; together {} alarms ({:.2} per million)",
        n.simulated_ticks, n.seed, n.allowed_per_detector, n.alarms, n.alarms_per_million
    )?;
    for t in &n.thresholds {
        writeln!(
            out,
            "    {:<32} {:>12.6} -> {:>12.6}  ({} alarms{})",
            t.setting,
            t.before,
            t.value,
            t.alarms,
            if t.unreached { ", the largest tried" } else { "" }
        )?;
    }
    let se = &r.search;
    writeln!(
        out,
        "  settings: {} replays of the window{}; first horizon RMSE {:.6} -> {:.6}, Winkler95 {:.6} -> {:.6}",
        se.evaluations,
        if se.cut_short { " (bound reached)" } else { "" },
        se.start.rmse,
        se.best.rmse,
        se.start.winkler95,
        se.best.winkler95
    )?;
    for (k, v) in &se.chosen {
        writeln!(out, "    {k:<32} {v}")?;
    }
    writeln!(out, "  hold-out scores:")?;
    writeln!(
        out,
        "    {:<22} {:<8} {:>6} {:>10} {:>8} {:>8} {:>12} {:>12}",
        "model", "horizon", "n", "rmse_ratio", "cov80", "cov95", "winkler80", "winkler95"
    )?;
    let rows = |out: &mut Out, name: &str, scores: &[HorizonScores]| -> std::io::Result<()> {
        for h in scores {
            writeln!(
                out,
                "    {:<22} {:<8} {:>6} {:>10.4} {:>8.4} {:>8.4} {:>12.6} {:>12.6}",
                name, h.horizon, h.n, h.rmse_ratio, h.coverage80, h.coverage95, h.winkler80, h.winkler95
            )?;
        }
        Ok(())
    };
    for c in &r.candidates {
        let mark = if c.name == r.chosen { " *" } else { "" };
        rows(out, &format!("{}{mark}", c.name), &c.scores)?;
    }
    match &r.champion {
        Some(c) => rows(out, &format!("champion v{}", c.version), &c.scores)?,
        None => writeln!(out, "    ({})", r.champion_note.as_deref().unwrap_or("no champion"))?,
    }
    rows(out, "random walk", &r.random_walk)?;
    if let Some(v) = &r.validator {
        print_validator(out, v)?;
    }
    writeln!(
        out,
        "  chosen: {} (* above), written as version {} in {:.1} s",
        r.chosen,
        r.version.map_or_else(|| "none".to_string(), |v| v.to_string()),
        secs
    )?;
    Ok(())
}

fn print_validator(out: &mut Out, v: &ValidatorReport) -> std::io::Result<()> {
    writeln!(
        out,
        "  review labels ({}): {} labelled, {} bad (rightly refused), {} good (real prices refused); precision {}",
        v.labels,
        v.labelled,
        v.bad,
        v.good,
        v.precision.map_or_else(|| "-".to_string(), |p| format!("{p:.4}"))
    )?;
    writeln!(out, "    recall: not computed ({})", v.recall_note)?;
    writeln!(
        out,
        "    {:<24} {:>6} {:>6} {:>10}",
        "reason", "bad", "good", "precision"
    )?;
    for r in &v.by_reason {
        writeln!(
            out,
            "    {:<24} {:>6} {:>6} {:>10.4}",
            r.reason, r.bad, r.good, r.precision
        )?;
    }
    if let Some(j) = &v.jump {
        writeln!(
            out,
            "    {} {} -> {}: {} (labelled jumps in the data: {} good, {} bad, {} not found; with it {} good accepted, {} bad refused)",
            j.setting, j.before, j.value, j.why, j.found_good, j.found_bad, j.not_found, j.good_accepted, j.bad_refused
        )?;
    }
    Ok(())
}
