//! Batch retraining (`cambio retrain`): a new model version built offline from a pair's history, next to
//! the online learning that serving does.
//!
//! 1. [`data`]: the pair's ticks from a tick file, a scenario or the data lake, up to `--until`; the last
//!    `--holdout` share of them is held out.
//! 2. [`window`]: the training window, from the last structural change before the hold-out (Bayesian
//!    online changepoint detection), at least `--min-window` ticks.
//! 3. [`calibrate`]: the drift detectors' thresholds from a simulated null of the window (at most one
//!    false alarm per 1,000,000 ticks), then the model's settings by prequential replay of the window.
//! 4. [`holdout`]: every [`holdout::Candidate`] warmed on the window and replayed over the hold-out,
//!    beside the registry's champion and the random walk; the best candidate is the result.
//! 5. [`write`]: the result stored as a registry version with reason `retrain` and its lineage (data
//!    fingerprint, window, configuration, scores, actor). Nothing is promoted: `cambio models challenge`
//!    makes it the live challenger, and the contest decides.
//!
//! Everything but [`data`] (file reads) and [`write`] (the registry) is pure and deterministic: the same
//! input gives the same state bytes. Time enters only through the caller's `out_of_time` bound on the
//! search, which is reported when it cuts the search short.

pub mod calibrate;
pub mod data;
pub mod holdout;
pub mod labels;
pub mod window;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::checkpoint::lineage::{Dataset, Window};
use crate::checkpoint::store::{NewCheckpoint, Reason};
use crate::checkpoint::{CheckpointStore, PairState, Segment, StoreError, VersionMeta};
use crate::engine::{Engine, EngineConfig, config_hash, ets_engine_config};
use crate::model::ets::{self, EtsFit};
use crate::tick::Pair;
use crate::time::format_ts;

use calibrate::{NullReport, Search};
use data::History;
use holdout::{Candidate, Feeder, HorizonScores, Scored};
use window::{WindowChoice, WindowReason};

/// Why a retraining could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RetrainError {
    /// An option is out of range or malformed (said which).
    #[error("{0}")]
    Usage(String),
    /// The input is missing or cannot be read.
    #[error("{0}")]
    Input(String),
    /// A file of the data lake cannot be read.
    #[error("data lake: {0}")]
    Lake(String),
    /// A scenario (or a file) is for another pair than `--pair`.
    #[error("{}: the data is for {found}, not {wanted}", path.display())]
    WrongPair {
        /// The input.
        path: std::path::PathBuf,
        /// Its pair.
        found: Pair,
        /// The pair asked for.
        wanted: Pair,
    },
    /// Too little data for a window and a hold-out (said how much there is).
    #[error("{0}")]
    TooLittleData(String),
    /// The engine refused a configuration.
    #[error("engine configuration: {0}")]
    Engine(String),
    /// The registry could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The state could not be encoded.
    #[error("encoding the state: {0}")]
    Format(#[from] crate::checkpoint::FormatError),
}

/// Fewest ticks in the window (below it no horizon is scored often enough to compare settings).
pub const MIN_TICKS: usize = 30;

/// Default fewest ticks in the training window (two years of daily fixings).
pub const DEFAULT_MIN_WINDOW: usize = 500;
/// Default ticks simulated under the window's null to set the detectors' thresholds.
pub const DEFAULT_NULL_TICKS: u64 = 2_000_000;
/// Default most window replays of the settings search.
pub const DEFAULT_MAX_EVALS: usize = 40;
/// Default time bound of the settings search, seconds.
pub const DEFAULT_SEARCH_SECS: f64 = 30.0;

/// How to retrain.
#[derive(Debug, Clone)]
pub struct Options {
    /// The pair.
    pub pair: Pair,
    /// Ticks after this time (µs) are not used (`--until`).
    pub until_us: Option<i64>,
    /// Share of the ticks held out, in (0, 1).
    pub holdout: f64,
    /// Fewest ticks in the training window.
    pub min_window: usize,
    /// Simulated ticks of the null calibration.
    pub null_ticks: u64,
    /// Most window replays of the search.
    pub max_evals: usize,
    /// Seed of the null bootstrap.
    pub seed: u64,
    /// Review labels (`cambio review list --json`): the validator's precision is reported and its jump
    /// band tuned from them.
    pub labels: Option<std::path::PathBuf>,
}

/// `--holdout`: `20%` or `0.2`, strictly between 0 and 1.
///
/// # Errors
/// [`RetrainError::Usage`] otherwise.
pub fn parse_share(s: &str) -> Result<f64, RetrainError> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    };
    match v {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(RetrainError::Usage(format!(
            "--holdout {s}: give a share strictly between 0% and 100% (e.g. 20%)"
        ))),
    }
}

/// A range of ticks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// Ticks.
    pub ticks: usize,
    /// Time of the first (RFC 3339).
    pub first: String,
    /// Time of the last.
    pub last: String,
}

/// The data used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceReport {
    /// `archive`, `csv`, `jsonl` or `scenario`.
    pub kind: &'static str,
    /// The path given.
    pub path: String,
    /// Which rows of a lake were read.
    pub note: Option<String>,
    /// Ticks used (window and hold-out), their times and content hash.
    pub used: Span,
    /// Content hash of the ticks used (`fnv1a64:` over each tick's JSON, in order).
    pub hash: String,
    /// Ticks of the pair read in all.
    pub read: usize,
    /// Ticks after `--until`, not used.
    pub after_until: usize,
    /// Records not kept (unreadable lines, other pairs).
    pub skipped: u64,
}

/// The training window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowReport {
    /// Its ticks.
    pub span: Span,
    /// Why it starts there.
    pub reason: WindowReason,
    /// The same, for a person.
    pub why: String,
    /// The changepoint detector.
    pub detector: &'static str,
    /// Time of the first tick after the last changepoint found.
    pub changepoint: Option<String>,
    /// Changepoints found before the hold-out.
    pub changepoints: usize,
    /// Returns per detector point.
    pub block: usize,
}

/// A candidate's hold-out result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateReport {
    /// Its name.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Its configuration's hash.
    pub config_hash: String,
    /// Hold-out scores per horizon.
    pub scores: Vec<HorizonScores>,
}

/// The registry's champion on the hold-out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChampionReport {
    /// Its registry version.
    pub version: u64,
    /// Its configuration's hash.
    pub config_hash: String,
    /// Hold-out scores per horizon (its own horizons).
    pub scores: Vec<HorizonScores>,
}

/// What a retraining found and chose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The pair.
    pub pair: Pair,
    /// The data.
    pub source: SourceReport,
    /// The training window.
    pub window: WindowReport,
    /// The hold-out.
    pub holdout: Span,
    /// The detector thresholds and the null they were set on.
    pub null: NullReport,
    /// The search of the model's settings.
    pub search: Search,
    /// Every candidate, scored on the hold-out.
    pub candidates: Vec<CandidateReport>,
    /// The candidate written.
    pub chosen: String,
    /// The champion's scores, when the registry has one.
    pub champion: Option<ChampionReport>,
    /// Why the champion was not scored, when it was not.
    pub champion_note: Option<String>,
    /// The random walk (with the RiskMetrics interval) on the chosen candidate's hold-out forecasts.
    pub random_walk: Vec<HorizonScores>,
    /// What the review labels say about the validator, and its tuned jump band (with `--labels`).
    pub validator: Option<labels::ValidatorReport>,
    /// The registry version written (set by [`write`]).
    pub version: Option<u64>,
}

/// A retraining's result: its report, and the chosen candidate's engine after the window and the
/// hold-out (ready to serve).
#[derive(Debug)]
pub struct Retrained {
    /// The report.
    pub report: Report,
    /// The chosen engine.
    pub engine: Engine,
}

/// The candidates offered: the calibrated configuration, and the configuration it started from (the
/// scenario's, the champion's or the default), so a calibration that overfits the window loses on the
/// hold-out. A new model kind is one more entry here.
pub fn candidates(configured: &EngineConfig, calibrated: &EngineConfig, ets: Option<EtsFit>) -> Vec<Candidate> {
    let mut v = vec![Candidate {
        name: "calibrated".into(),
        description: "detector thresholds from the window's null, model settings by prequential search".into(),
        config: calibrated.clone(),
    }];
    if calibrated != configured {
        v.push(Candidate {
            name: "configured".into(),
            description: "the configuration the calibration started from".into(),
            config: configured.clone(),
        });
    }
    if let Some(fit) = ets {
        // The candidates are warmed by filtering the window: the fit starts from the window's start.
        v.push(Candidate {
            name: "ets".into(),
            description: format!(
                "augurs AutoETS ({}) fitted on the window's log prices, the calibrated detectors",
                fit.form.name()
            ),
            config: ets_engine_config(calibrated, fit.at_window_start()),
        });
    }
    v
}

fn span(ticks: &[crate::tick::Tick]) -> Span {
    Span {
        ticks: ticks.len(),
        first: ticks.first().map(|t| format_ts(t.ts_us)).unwrap_or_default(),
        last: ticks.last().map(|t| format_ts(t.ts_us)).unwrap_or_default(),
    }
}

/// Reads the pair's history from `from` (a lake folder, a scenario, a CSV or JSON-lines tick file) and
/// retrains on it: the one entry point of the batch path, shared by `cambio retrain` and serve's periodic
/// retraining (`[retrain]`), so both build a version the same way. `champion` reads the registry's latest
/// version of the pair (its number and engine); it is asked only once the data has been read, so bad input
/// is refused before the registry is touched.
///
/// # Errors
/// As [`data::load`] and [`run`], and `champion`'s error.
pub fn from_path(
    from: &std::path::Path,
    opts: &Options,
    champion: impl FnOnce() -> Result<Option<(u64, Engine)>, RetrainError>,
    out_of_time: &dyn Fn() -> bool,
) -> Result<Retrained, RetrainError> {
    let history = data::load(from, opts.pair)?;
    let labelled = match &opts.labels {
        Some(p) => Some((p.display().to_string(), labels::load(p, opts.pair)?)),
        None => None,
    };
    let labelled = labelled.as_ref().map(|(p, l)| (p.as_str(), l.as_slice()));
    run(&history, labelled, champion()?, opts, out_of_time)
}

/// Retrains on `history` (see the module docs). `labelled` are review labels (the file's name and the
/// pair's labelled ticks): they measure the validator and tune its jump band, which every candidate then
/// carries. `champion` is the registry's latest version of the pair
/// (its number and engine), scored on the hold-out beside the candidates; `out_of_time` bounds the
/// search.
///
/// # Errors
/// [`RetrainError::TooLittleData`] when there are too few ticks for a window and a hold-out,
/// [`RetrainError::Engine`] when a configuration is refused.
pub fn run(
    history: &History,
    labelled: Option<(&str, &[labels::LabelledTick])>,
    champion: Option<(u64, Engine)>,
    opts: &Options,
    out_of_time: &dyn Fn() -> bool,
) -> Result<Retrained, RetrainError> {
    let pair = opts.pair;
    let read = history.ticks.len();
    let ticks: Vec<_> = match opts.until_us {
        Some(u) => history.ticks.iter().filter(|t| t.ts_us <= u).copied().collect(),
        None => history.ticks.clone(),
    };
    let after_until = read - ticks.len();
    if ticks.is_empty() {
        return Err(RetrainError::TooLittleData(format!(
            "{}: no {pair} ticks{}",
            history.path.display(),
            if opts.until_us.is_some() { " up to --until" } else { "" }
        )));
    }
    let n_hold = ((ticks.len() as f64) * opts.holdout).round() as usize;
    let n_pre = ticks.len().saturating_sub(n_hold);
    if n_hold == 0 || n_pre < MIN_TICKS {
        return Err(RetrainError::TooLittleData(format!(
            "{} {pair} ticks with a {:.0}% hold-out leave {n_pre} for the window and {n_hold} held out; the \
             window needs at least {MIN_TICKS} and the hold-out at least 1",
            ticks.len(),
            opts.holdout * 100.0
        )));
    }
    let (pre, hold) = ticks.split_at(n_pre);

    // 1. The window.
    let mids: Vec<f64> = pre.iter().map(|t| t.mid_price().unwrap_or(f64::NAN)).collect();
    let choice = window::choose(&mids, opts.min_window.max(MIN_TICKS));
    let win = &pre[choice.start..];
    let window_report = window_report(&choice, pre, win, opts.min_window.max(MIN_TICKS));

    // 2. Calibration: thresholds on the window's null, then the model's settings.
    let configured = history
        .config
        .clone()
        .or_else(|| champion.as_ref().map(|(_, e)| e.config().clone()))
        .unwrap_or_default();
    configured.validate().map_err(RetrainError::Engine)?;
    // Review labels: the validator's precision, and its jump band tuned (a threshold of every candidate).
    let mut configured = configured;
    let validator = match labelled {
        Some((path, l)) => {
            let mut rep = labels::measure(path, l);
            if let Some((tuned, jump)) = labels::tune_jump(pair, &configured, &ticks, l)? {
                configured = tuned;
                rep.jump = Some(jump);
            }
            Some(rep)
        }
        None => None,
    };
    let returns = log_returns(win);
    let spacing = median_spacing_us(win);
    let (with_thresholds, null) =
        calibrate::null_thresholds(&configured, &returns, spacing, opts.null_ticks, opts.seed)?;
    let (calibrated, search) = calibrate::search(
        pair,
        &with_thresholds,
        win,
        &history.factors,
        opts.max_evals,
        out_of_time,
    )?;

    // 3. Every candidate warmed on the window, scored on the hold-out.
    let mut scored: Vec<Scored> = Vec::new();
    let log_mids: Vec<f64> = win
        .iter()
        .filter_map(|t| t.mid_price())
        .filter(|m| m.is_finite() && *m > 0.0)
        .map(f64::ln)
        .collect();
    let ets = match ets::fit(&log_mids) {
        Ok(fit) => Some(fit),
        Err(e) => {
            tracing::warn!(error = %e, "no ETS candidate");
            None
        }
    };
    for c in candidates(&configured, &calibrated, ets) {
        let mut engine = Engine::new(pair, &c.config).map_err(|e| RetrainError::Engine(e.to_string()))?;
        Feeder::default().feed(&mut engine, win, &history.factors);
        let (scores, random_walk) = holdout::score(&mut engine, hold, &history.factors);
        scored.push(Scored {
            candidate: c,
            engine,
            scores,
            random_walk,
        });
    }
    let mut best = 0;
    for (i, s) in scored.iter().enumerate().skip(1) {
        if s.better_than(&scored[best]) {
            best = i;
        }
    }
    let (champion, champion_note) = match champion {
        // A champion that has seen the hold-out already (its last tick is at or past the hold-out's
        // first) would quarantine the hold-out as old ticks: it cannot be scored on it.
        Some((version, engine))
            if engine
                .last_ts_us()
                .zip(hold.first())
                .is_some_and(|(seen, first)| seen >= first.ts_us) =>
        {
            let seen = engine.last_ts_us().map(format_ts).unwrap_or_default();
            (
                None,
                Some(format!(
                    "{pair} version {version} has seen ticks up to {seen}, past the hold-out's start: not scored"
                )),
            )
        }
        Some((version, mut engine)) => {
            let hash = config_hash(engine.config());
            let (scores, _) = holdout::score(&mut engine, hold, &history.factors);
            (
                Some(ChampionReport {
                    version,
                    config_hash: hash,
                    scores,
                }),
                None,
            )
        }
        None => (
            None,
            Some(format!("the registry has no {pair} version: no champion to compare")),
        ),
    };
    let candidates_report = scored
        .iter()
        .map(|s| CandidateReport {
            name: s.candidate.name.clone(),
            description: s.candidate.description.clone(),
            config_hash: config_hash(&s.candidate.config),
            scores: s.scores.clone(),
        })
        .collect();
    let winner = scored.swap_remove(best);

    // 4. The data's fingerprint: every tick used (window and hold-out), in order.
    let used = &pre[choice.start..]
        .iter()
        .chain(hold.iter())
        .copied()
        .collect::<Vec<_>>();
    let mut seg = Segment::default();
    for t in used {
        let bytes = serde_json::to_vec(t).unwrap_or_default();
        seg.on_tick(None, Some(t.ts_us), &bytes);
    }
    let (ds, _) = seg.describe();
    let report = Report {
        pair,
        source: SourceReport {
            kind: history.kind.name(),
            path: history.path.display().to_string(),
            note: history.note.clone(),
            used: span(used),
            hash: ds.hash.unwrap_or_default(),
            read,
            after_until,
            skipped: history.skipped,
        },
        window: window_report,
        holdout: span(hold),
        null,
        search,
        candidates: candidates_report,
        chosen: winner.candidate.name.clone(),
        champion,
        champion_note,
        random_walk: winner.random_walk.clone(),
        validator,
        version: None,
    };
    Ok(Retrained {
        report,
        engine: winner.engine,
    })
}

fn window_report(
    choice: &WindowChoice,
    pre: &[crate::tick::Tick],
    win: &[crate::tick::Tick],
    min: usize,
) -> WindowReport {
    let cp_ts = choice.changepoint.and_then(|i| pre.get(i)).map(|t| format_ts(t.ts_us));
    let why = match (choice.reason, &cp_ts) {
        (WindowReason::Changepoint, Some(at)) => format!("after the last structural change, at {at}"),
        (WindowReason::Minimum, Some(at)) => {
            format!("the minimum window of {min} ticks (the last structural change, at {at}, leaves fewer)")
        }
        _ => "no structural change found: the whole history before the hold-out".to_string(),
    };
    WindowReport {
        span: span(win),
        reason: choice.reason,
        why,
        detector: window::DETECTOR,
        changepoint: cp_ts,
        changepoints: choice.changepoints,
        block: choice.block,
    }
}

/// Log returns between consecutive ticks with a usable price.
fn log_returns(ticks: &[crate::tick::Tick]) -> Vec<f64> {
    let mut out = Vec::with_capacity(ticks.len());
    let mut prev: Option<f64> = None;
    for m in ticks
        .iter()
        .filter_map(|t| t.mid_price())
        .filter(|m| m.is_finite() && *m > 0.0)
    {
        if let Some(p) = prev {
            out.push((m / p).ln());
        }
        prev = Some(m);
    }
    out
}

/// The median spacing between consecutive ticks (µs; 1 s when unknown).
fn median_spacing_us(ticks: &[crate::tick::Tick]) -> i64 {
    let mut d: Vec<i64> = ticks
        .windows(2)
        .map(|w| w[1].ts_us - w[0].ts_us)
        .filter(|&d| d > 0)
        .collect();
    if d.is_empty() {
        return 1_000_000;
    }
    d.sort_unstable();
    d[d.len() / 2]
}

/// The scores written into the version's lineage: the chosen candidate's hold-out figures per horizon
/// (`holdout.<h>.rmse_ratio`, …), the random walk's RMSE, the champion's ratio when there was one, the
/// window's calibrated loss and the null's figures.
pub fn lineage_scores(r: &Report) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    if let Some(c) = r.candidates.iter().find(|c| c.name == r.chosen) {
        for h in &c.scores {
            let k = |name: &str| format!("holdout.{}.{name}", h.horizon);
            m.insert(k("n"), h.n as f64);
            m.insert(k("rmse"), h.rmse);
            m.insert(k("rmse_ratio"), h.rmse_ratio);
            m.insert(k("coverage80"), h.coverage80);
            m.insert(k("coverage95"), h.coverage95);
            m.insert(k("winkler80"), h.winkler80);
            m.insert(k("winkler95"), h.winkler95);
        }
    }
    for h in &r.random_walk {
        m.insert(format!("holdout.{}.rw_rmse", h.horizon), h.rmse);
    }
    if let Some(c) = &r.champion {
        for h in &c.scores {
            m.insert(format!("champion.holdout.{}.rmse_ratio", h.horizon), h.rmse_ratio);
        }
    }
    m.insert("window.first_horizon.rmse".into(), r.search.best.rmse);
    m.insert("null.simulated_ticks".into(), r.null.simulated_ticks as f64);
    m.insert("null.alarms".into(), r.null.alarms as f64);
    if let Some(v) = &r.validator {
        m.insert("labels.bad".into(), v.bad as f64);
        m.insert("labels.good".into(), v.good as f64);
        if let Some(p) = v.precision {
            m.insert("labels.precision".into(), p);
        }
    }
    m
}

/// The retrained engine as a new version to store, with reason `retrain` and its lineage (data
/// fingerprint, window, configuration, scores, `actor`). Nothing is promoted.
///
/// # Errors
/// [`RetrainError::Format`] when the state cannot be encoded.
pub fn checkpoint(r: &Retrained, actor: &str, created_us: i64) -> Result<NewCheckpoint, RetrainError> {
    let state = PairState {
        engine: r.engine.clone(),
        applied: None,
        contest: None,
    };
    let mut ckpt = NewCheckpoint::new(&state, Reason::Retrain, created_us)?;
    let rep = &r.report;
    ckpt.meta.note = Some(format!(
        "retrain from {} ({}): {} ticks from {} to {}; candidate {}",
        rep.source.path,
        rep.source.kind,
        rep.source.used.ticks,
        rep.source.used.first,
        rep.source.used.last,
        rep.chosen
    ));
    if let Some(l) = &mut ckpt.meta.lineage {
        l.actor = Some(actor.to_string());
        l.dataset = Some(Dataset {
            kind: format!("retrain:{}", rep.source.kind),
            first_seq: None,
            last_seq: None,
            ticks: rep.source.used.ticks as u64,
            hash: Some(rep.source.hash.clone()),
            source: Some(rep.source.path.clone()),
        });
        l.window = Some(Window {
            first: rep.window.span.first.clone(),
            last: rep.window.span.last.clone(),
            reason: Some(format!(
                "{}; hold-out {} ticks from {} to {}",
                rep.window.why, rep.holdout.ticks, rep.holdout.first, rep.holdout.last
            )),
        });
        l.scores = Some(lineage_scores(rep));
    }
    Ok(ckpt)
}

/// Stores the retrained engine as a new version of its pair ([`checkpoint`]); sets `report.version`.
/// Nothing is promoted.
///
/// # Errors
/// [`RetrainError::Format`] when the state cannot be encoded, [`RetrainError::Store`] when the write fails.
pub fn write(
    store: &CheckpointStore,
    r: &mut Retrained,
    actor: &str,
    created_us: i64,
) -> Result<VersionMeta, RetrainError> {
    let meta = store.put(checkpoint(r, actor, created_us)?)?;
    r.report.version = Some(meta.version);
    tracing::info!(pair = %meta.pair, version = meta.version, actor, "retrained version stored");
    Ok(meta)
}
