//! Replay: files and scenarios fed through the same per-pair pipeline ([`crate::pipeline::PairPipeline`])
//! as live serving, in process and deterministically, producing a [`Report`] (and, on request, every
//! output as JSON lines).
//!
//! This is an edge: it reads files, the wall clock and the process's memory (for `ticks_per_sec`,
//! `peak_rss_kib` and the progress line only).
//! The engine itself never sees either.

pub mod expect;
pub mod input;
pub mod report;
pub mod scenario;
mod scenario_display;
pub mod source;
pub mod synth;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::challenger::ChallengerConfig;
use crate::contract::Unpaired;
use crate::engine::EngineConfig;
use crate::engine::Output;
use crate::pipeline::{FactorBook, MAX_PAIRS, PairPipeline, PairSet, PipelineError, TooManyPairs};
use crate::quality::QuarantineReason;
use crate::tick::{Factor, Pair, detail};
use crate::time::format_ts;

pub use input::{Input, TickData};
pub use report::{AlarmEntry, Report};
pub use scenario::Scenario;
pub use source::Item;

/// Why a replay could not run (bad lines are quarantined, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The input file could not be read or understood.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// The scenario could not be loaded.
    #[error(transparent)]
    Scenario(#[from] scenario::ScenarioError),
    /// The synthetic stream's spec is invalid.
    #[error("synthetic data: {0}")]
    Synthetic(String),
    /// The configuration is invalid.
    #[error("configuration: {0}")]
    Config(String),
    /// Writing outputs failed.
    #[error("writing outputs: {0}")]
    Output(#[from] std::io::Error),
    /// A pair's engine or contest could not be built from the configuration.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The input path does not exist.
    #[error("{}: no such file or folder", .0.display())]
    Missing(PathBuf),
    /// Too many distinct pairs in one input (each pair is an engine; the count is bounded).
    #[error("{0} in one input")]
    TooManyPairs(#[from] TooManyPairs),
}

/// A callback that sees every output as it is produced.
pub type Observer = Box<dyn FnMut(&Output)>;

/// How to replay.
pub struct ReplayOptions {
    /// Only this pair (ticks of others are pair mismatches); also the pair of files that do not name one.
    pub pair: Option<Pair>,
    /// Measure `ticks_per_sec` (off for byte-identical reports).
    pub timing: bool,
    /// Print a progress line to stderr on long runs (only when stderr is a terminal).
    pub progress: bool,
    /// Write every output as a JSON line here.
    pub outputs: Option<Box<dyn Write>>,
    /// Called with every output as it is produced (the demo prints from here).
    pub observer: Option<Observer>,
    /// The champion/challenger contest and rollback guard (`[challenger]`), run exactly as `serve` runs
    /// them, so a replay reproduces the live service's outputs. Off by default.
    pub challenger: ChallengerConfig,
    /// Longest line read from a file (`--max-line-bytes`, default 1 MiB); a longer line is skipped to its
    /// end without being held, and recorded as `oversized`.
    pub max_line_bytes: usize,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            pair: None,
            timing: false,
            progress: false,
            outputs: None,
            observer: None,
            challenger: ChallengerConfig::default(),
            max_line_bytes: source::DEFAULT_MAX_LINE_BYTES,
        }
    }
}

/// Ticks between progress updates.
const PROGRESS_EVERY: u64 = 1 << 18;

/// Runs `items` (with `factors` merged in by time) through one engine per pair.
///
/// # Errors
/// [`ReplayError`] when outputs cannot be written or the input has too many pairs.
pub fn run(
    input: &str,
    items: impl Iterator<Item = Item>,
    mut factors: Vec<Factor>,
    cfg: &EngineConfig,
    mut opts: ReplayOptions,
) -> Result<Report, ReplayError> {
    cfg.validate().map_err(ReplayError::Config)?;
    opts.challenger.validate(cfg).map_err(ReplayError::Config)?;
    factors.sort_by_key(|f| f.ts_us);
    let mut next_factor = 0;
    let mut pairs: PairSet<PairPipeline> = PairSet::new(MAX_PAIRS);
    let mut book = FactorBook::default();
    let mut out: Vec<Output> = Vec::with_capacity(16);
    let mut alarms = Vec::new();
    let mut quality_changes = 0u64;
    let mut n_factors = 0u64;
    let mut unattributed: BTreeMap<String, u64> = BTreeMap::new();
    let started = Instant::now();
    let progress = opts.progress && std::io::stderr().is_terminal();
    let mut seen = 0u64;
    let challenger = std::mem::take(&mut opts.challenger);
    let mut line = Vec::with_capacity(1024);
    let apply_factor = |f: Factor, pairs: &mut PairSet<PairPipeline>, book: &mut FactorBook, n: &mut u64| {
        *n += 1;
        for p in pairs.values_mut() {
            p.on_factor(&f);
        }
        book.record(std::sync::Arc::new(f));
    };

    for item in items {
        seen += 1;
        if progress && seen.is_multiple_of(PROGRESS_EVERY) {
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            eprint!("\rreplay: {seen:>12} ticks  {:>10.0} ticks/s", seen as f64 / secs);
        }
        let mut verdict = None;
        match item {
            Item::Factor(f) => apply_factor(f, &mut pairs, &mut book, &mut n_factors),
            Item::Tick(tick) => {
                while next_factor < factors.len() && factors[next_factor].ts_us <= tick.ts_us {
                    apply_factor(factors[next_factor].clone(), &mut pairs, &mut book, &mut n_factors);
                    next_factor += 1;
                }
                if let Some(want) = opts.pair
                    && want != tick.pair
                {
                    pipeline_for(&mut pairs, &book, want, cfg, &challenger)?.on_rejected(
                        QuarantineReason::PairMismatch,
                        detail::pair_mismatch(tick.pair, want),
                        Some(tick.ts_us),
                        tick_text(&tick),
                        &mut out,
                    );
                } else {
                    verdict = pipeline_for(&mut pairs, &book, tick.pair, cfg, &challenger)?.on_tick(&tick, &mut out);
                }
            }
            Item::Rejected {
                reason,
                detail,
                pair,
                ts_us,
                raw,
            } => match opts.pair.or(pair).or(pairs.first_pair()) {
                Some(p) => pipeline_for(&mut pairs, &book, p, cfg, &challenger)?
                    .on_rejected(reason, detail, ts_us, raw, &mut out),
                // Before any pair is known there is no pair to count it against: it is counted in the
                // report and written with no pair, never dropped.
                None => {
                    *unattributed.entry(reason.name().to_string()).or_default() += 1;
                    write_unpaired(&mut opts.outputs, &mut line, Unpaired::new(reason.name(), detail, raw))?;
                }
            },
            Item::Oversized { len, raw } => {
                *unattributed.entry(Unpaired::OVERSIZED.to_string()).or_default() += 1;
                let detail = format!(
                    "a line of {len} bytes, over max_line_bytes ({}): read to its end without being held",
                    opts.max_line_bytes
                );
                write_unpaired(
                    &mut opts.outputs,
                    &mut line,
                    Unpaired::new(Unpaired::OVERSIZED, detail, raw),
                )?;
            }
        }
        for o in out.drain(..) {
            quality_changes += u64::from(matches!(o, Output::QualityChanged(_)));
            if let Output::Alarm(a) = &o
                && alarms.len() < report::MAX_ALARMS_LISTED
            {
                alarms.push(AlarmEntry {
                    pair: a.pair.to_string(),
                    detector: a.alarm.detector.to_string(),
                    signal: a.alarm.signal,
                    ts: format_ts(a.alarm.ts_us),
                    ts_us: a.alarm.ts_us,
                    statistic: a.alarm.statistic,
                    threshold: a.alarm.threshold,
                });
            }
            if let Some(f) = opts.observer.as_mut() {
                f(&o);
            }
            if let Some(w) = opts.outputs.as_mut() {
                line.clear();
                crate::contract::write_output(&o, &mut line);
                line.push(b'\n');
                w.write_all(&line)?;
            }
        }
        // A promotion or a rollback comes after the tick's outputs, as serve publishes it.
        if let (Some(v), Some(w)) = (verdict, opts.outputs.as_mut()) {
            line.clear();
            crate::contract::write_json(&v, &mut line);
            line.push(b'\n');
            w.write_all(&line)?;
        }
    }
    if let Some(w) = opts.outputs.as_mut() {
        w.flush()?;
    }
    if progress {
        eprintln!();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let pairs: Vec<_> = pairs.values().map(|p| p.engine().summary()).collect();
    let mut quarantined = unattributed.clone();
    for p in &pairs {
        for (k, v) in &p.quarantined {
            *quarantined.entry(k.clone()).or_default() += v;
        }
    }
    let ticks = pairs.iter().map(|p| p.ticks).sum::<u64>() + unattributed.values().sum::<u64>();
    let first = pairs.first();
    Ok(Report {
        input: input.to_string(),
        ticks,
        accepted: pairs.iter().map(|p| p.accepted).sum(),
        quarantined,
        factors: n_factors,
        horizons: first.map(|p| p.horizons.clone()).unwrap_or_default(),
        alarms,
        alarms_total: pairs.iter().map(|p| p.alarms_total).sum(),
        adaptations: pairs.iter().map(|p| p.adaptations).sum(),
        quality: first.map(|p| p.quality.clone()),
        quality_worst: first.map(|p| p.quality_worst.clone()).unwrap_or_default(),
        quality_changes,
        pairs,
        expectations: Vec::new(),
        passed: true,
        ticks_per_sec: if opts.timing && elapsed > 0.0 {
            (ticks as f64 / elapsed).round()
        } else {
            0.0
        },
        peak_rss_kib: if opts.timing { report::peak_rss_kib() } else { 0 },
    })
}

/// Writes a record counted against no pair to the output file, if there is one.
fn write_unpaired(outputs: &mut Option<Box<dyn Write>>, line: &mut Vec<u8>, record: Unpaired) -> std::io::Result<()> {
    if let Some(w) = outputs.as_mut() {
        line.clear();
        crate::contract::write_json(&record, line);
        line.push(b'\n');
        w.write_all(line)?;
    }
    Ok(())
}

/// A pair's pipeline, made on its first message and given the factors seen so far (as serve does).
fn pipeline_for<'a>(
    pairs: &'a mut PairSet<PairPipeline>,
    book: &FactorBook,
    pair: Pair,
    cfg: &EngineConfig,
    challenger: &ChallengerConfig,
) -> Result<&'a mut PairPipeline, ReplayError> {
    pairs.get_or_try_insert_with(pair, || {
        let mut p = PairPipeline::fresh(pair, cfg, challenger)?;
        for f in book.latest() {
            p.on_factor(f);
        }
        Ok::<_, ReplayError>(p)
    })
}

fn tick_text(t: &crate::tick::Tick) -> String {
    serde_json::to_string(t).unwrap_or_default()
}

/// The kind of input a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A scenario folder or `scenario.toml`.
    Scenario,
    /// A CSV file.
    Csv,
    /// A JSON-lines file.
    Jsonl,
}

/// Tells a scenario, a CSV file and a JSON-lines file apart (by folder, extension, then first byte).
pub fn input_kind(path: &Path) -> InputKind {
    if path.is_dir() {
        return InputKind::Scenario;
    }
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("toml") => InputKind::Scenario,
        Some("csv") => InputKind::Csv,
        Some("jsonl" | "ndjson" | "json") => InputKind::Jsonl,
        _ => {
            // The first byte after any byte-order mark.
            let mut first = [0u8; 4];
            let n = std::fs::File::open(path)
                .and_then(|mut f| std::io::Read::read(&mut f, &mut first))
                .unwrap_or(0);
            let start = if first[..n].starts_with(b"\xef\xbb\xbf") { 3 } else { 0 };
            if n > start && first[start] == b'{' {
                InputKind::Jsonl
            } else {
                InputKind::Csv
            }
        }
    }
}

/// Replays a tick file (CSV or JSON lines) with `cfg`.
///
/// # Errors
/// [`ReplayError`] when the file cannot be read or understood.
pub fn replay_file(path: &Path, cfg: &EngineConfig, opts: ReplayOptions) -> Result<Report, ReplayError> {
    let mut input = Input::open(path, opts.pair)?;
    input.max_line_bytes = opts.max_line_bytes;
    run(&input.name, input.items()?, input.factors.clone(), cfg, opts)
}

/// A scenario's factor observations, each shifted by its publication lag and sorted by time, as the replay
/// joins them (also what `replay --nats` publishes, so both paths see the same factors).
///
/// # Errors
/// [`ReplayError`] when a factor file cannot be read or a lag is not a time span.
pub fn scenario_factors(scenario: &Scenario) -> Result<Vec<Factor>, ReplayError> {
    let mut factors = Vec::new();
    for f in &scenario.factors {
        let lag = match f.lag {
            Some(crate::horizon::Horizon::Time { us }) => us,
            Some(crate::horizon::Horizon::Steps(_)) => {
                return Err(ReplayError::Config(format!(
                    "factor {}: lag must be a time span",
                    f.name
                )));
            }
            None => 0,
        };
        factors.extend(source::read_factor_csv(&scenario.dir.join(&f.file), &f.name, lag)?);
    }
    factors.sort_by_key(|f| f.ts_us);
    Ok(factors)
}

/// Replays a scenario and checks its expectations (`report.passed`). `cfg_override`, when given, replaces
/// the scenario's own `[config]`.
///
/// # Errors
/// [`ReplayError`] when the scenario or its data cannot be loaded.
pub fn replay_scenario(
    scenario: &Scenario,
    cfg_override: Option<&EngineConfig>,
    mut opts: ReplayOptions,
) -> Result<Report, ReplayError> {
    let mut input = Input::of_scenario(scenario.clone())?;
    input.max_line_bytes = opts.max_line_bytes;
    opts.pair = input.pair;
    let cfg = cfg_override.unwrap_or(&scenario.config);
    let mut report = run(&input.name, input.items()?, input.factors.clone(), cfg, opts)?;
    report.expectations = expect::check(&scenario.expect, &report);
    report.passed = report.expectations.iter().all(|o| o.passed);
    Ok(report)
}
