//! Review labels fed back into retraining: the validator's precision on the quarantined ticks people
//! labelled, and the jump band tuned so it accepts every jump labelled `good` while still refusing every
//! one labelled `bad`.
//!
//! The labels come from `cambio review list --json` (the operator's export of the review bucket): each
//! record a quarantined tick with its reason, prices, time and latest label. A label says only whether a
//! *refusal* was right: `bad` is a true positive, `good` a false positive. Ticks the validator accepted are
//! never shown for review, so the false negatives are unknown and the recall cannot be computed from labels
//! alone; the report says so rather than give a number.
//!
//! The band is tuned by replaying the engine over the history with wider bands (`quality.jump_k`, from the
//! configured value up to [`MAX_JUMP_K`]) and keeping the smallest that accepts every `good` jump found in
//! the history while still refusing every `bad` one. Pure: [`tune_jump`] takes ticks and labels, no I/O but
//! [`load`].

use std::path::Path;

use serde::Serialize;

use super::RetrainError;
use crate::engine::{Engine, EngineConfig, Output};
use crate::review::{Label, Reviewed};
use crate::tick::{Pair, QuarantineReason, Tick};
use crate::time::parse_ts_us;

/// The widest band tuning may set, in robust sigmas (a band wider than this would accept fat fingers of a
/// few percent on any liquid pair).
pub const MAX_JUMP_K: f64 = 50.0;

/// Multiples of the configured `jump_k` tried, in order.
const STEPS: [f64; 12] = [1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0];

/// A labelled quarantined tick of the pair, as read from the export.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelledTick {
    /// The review id (stream sequence of the quarantine record).
    pub id: u64,
    /// The quarantine reason.
    pub reason: String,
    /// The decision.
    pub label: Label,
    /// The tick's time (µs), when the record had one.
    pub ts_us: Option<i64>,
    /// The tick's sequence number, when it had one.
    pub seq: Option<u64>,
    /// The refused price.
    pub price: Option<f64>,
}

/// Reads `cambio review list --json`'s output and keeps the labelled ticks of `pair`.
///
/// # Errors
/// [`RetrainError::Input`] when the file cannot be read or is not such an export.
pub fn load(path: &Path, pair: Pair) -> Result<Vec<LabelledTick>, RetrainError> {
    let text = std::fs::read(path).map_err(|e| RetrainError::Input(format!("{}: {e}", path.display())))?;
    let list: Vec<Reviewed> = serde_json::from_slice(&text).map_err(|e| {
        RetrainError::Input(format!(
            "{}: not the output of `cambio review list --json`: {e}",
            path.display()
        ))
    })?;
    Ok(list
        .into_iter()
        .filter(|r| r.tick.pair.eq_ignore_ascii_case(pair.as_str()))
        .filter_map(|r| {
            let label = r.label?;
            Some(LabelledTick {
                id: r.tick.id,
                reason: r.tick.record.reason.clone(),
                label: label.label,
                ts_us: r.tick.record.ts.as_deref().and_then(|t| parse_ts_us(t).ok()),
                seq: r.tick.record.seq,
                price: r.tick.record.price(),
            })
        })
        .collect())
}

/// Labels counted for one quarantine reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCounts {
    /// The reason.
    pub reason: String,
    /// Labelled `bad`: correctly refused (true positives).
    pub bad: usize,
    /// Labelled `good`: real prices refused (false positives).
    pub good: usize,
    /// `bad / (bad + good)`.
    pub precision: f64,
}

/// The jump band's tuning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JumpTuning {
    /// The setting (`quality.jump_k`).
    pub setting: &'static str,
    /// Its configured value.
    pub before: f64,
    /// The value written into the new version's configuration.
    pub value: f64,
    /// Labelled `implausible_jump` ticks found in the history (`good`, `bad`).
    pub found_good: usize,
    /// As `found_good`, labelled `bad`.
    pub found_bad: usize,
    /// Labelled jumps not found in the history (another period, or a lake without the refused ticks).
    pub not_found: usize,
    /// Of the `good` ones found, accepted with the new band.
    pub good_accepted: usize,
    /// Of the `bad` ones found, still refused with the new band.
    pub bad_refused: usize,
    /// Why the value is what it is.
    pub why: String,
}

/// What the labels say about the validator.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ValidatorReport {
    /// The labels file.
    pub labels: String,
    /// Labelled ticks of the pair.
    pub labelled: usize,
    /// Labelled `bad` (true positives).
    pub bad: usize,
    /// Labelled `good` (false positives).
    pub good: usize,
    /// `bad / labelled`: the share of labelled refusals that were right.
    pub precision: Option<f64>,
    /// Always `None`: accepted ticks are not reviewed, so missed bad ticks are not known.
    pub recall: Option<f64>,
    /// Why the recall is not given.
    pub recall_note: &'static str,
    /// Per quarantine reason.
    pub by_reason: Vec<ReasonCounts>,
    /// The jump band, when there were labelled jumps.
    pub jump: Option<JumpTuning>,
}

/// Precision and per-reason counts of `labels`.
pub fn measure(labels_path: &str, labels: &[LabelledTick]) -> ValidatorReport {
    let bad = labels.iter().filter(|l| l.label == Label::Bad).count();
    let good = labels.len() - bad;
    let mut reasons: Vec<String> = labels.iter().map(|l| l.reason.clone()).collect();
    reasons.sort();
    reasons.dedup();
    let by_reason = reasons
        .into_iter()
        .map(|reason| {
            let of = |x: Label| labels.iter().filter(|l| l.reason == reason && l.label == x).count();
            let (b, g) = (of(Label::Bad), of(Label::Good));
            ReasonCounts {
                reason,
                bad: b,
                good: g,
                precision: b as f64 / (b + g) as f64,
            }
        })
        .collect();
    ValidatorReport {
        labels: labels_path.to_string(),
        labelled: labels.len(),
        bad,
        good,
        precision: (!labels.is_empty()).then(|| bad as f64 / labels.len() as f64),
        recall: None,
        recall_note: "review shows only the ticks the validator refused, so the bad ticks it accepted are not \
                      labelled: recall cannot be computed from labels",
        by_reason,
        jump: None,
    }
}

/// Whether history tick `t` is the labelled tick `l`: the same time, and the same sequence number when
/// both have one, else the same price (to 1e-9 relative).
fn same(t: &Tick, l: &LabelledTick) -> bool {
    if l.ts_us != Some(t.ts_us) {
        return false;
    }
    match (t.seq, l.seq) {
        (Some(a), Some(b)) => a == b,
        _ => match (t.mid_price(), l.price) {
            (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()),
            _ => false,
        },
    }
}

/// Which of `targets` (indices into `ticks`) the engine refuses as implausible jumps under `cfg`.
fn refused(pair: Pair, cfg: &EngineConfig, ticks: &[Tick], targets: &[usize]) -> Result<Vec<bool>, RetrainError> {
    let mut engine = Engine::new(pair, cfg).map_err(|e| RetrainError::Engine(e.to_string()))?;
    let mut out = Vec::new();
    let mut result = vec![false; targets.len()];
    let last = targets.iter().copied().max().unwrap_or(0);
    for (i, t) in ticks.iter().enumerate().take(last + 1) {
        out.clear();
        engine.on_tick(t, &mut out);
        if let Some(k) = targets.iter().position(|&x| x == i) {
            result[k] = out
                .iter()
                .any(|o| matches!(o, Output::Quarantined(q) if q.reason == QuarantineReason::ImplausibleJump));
        }
    }
    Ok(result)
}

/// Tunes `cfg`'s jump band on `ticks` from the labelled `implausible_jump` ticks among `labels`; `None`
/// when none is labelled. The returned configuration is `cfg` with the tuned `quality.jump_k`.
///
/// # Errors
/// [`RetrainError::Engine`] when a configuration is refused.
pub fn tune_jump(
    pair: Pair,
    cfg: &EngineConfig,
    ticks: &[Tick],
    labels: &[LabelledTick],
) -> Result<Option<(EngineConfig, JumpTuning)>, RetrainError> {
    let jumps: Vec<&LabelledTick> = labels
        .iter()
        .filter(|l| l.reason == QuarantineReason::ImplausibleJump.name())
        .collect();
    if jumps.is_empty() {
        return Ok(None);
    }
    let mut targets = Vec::new();
    let mut kinds = Vec::new();
    for l in &jumps {
        if let Some(i) = ticks.iter().position(|t| same(t, l)) {
            targets.push(i);
            kinds.push(l.label);
        }
    }
    let before = cfg.quality.jump_k;
    let found_good = kinds.iter().filter(|k| **k == Label::Good).count();
    let found_bad = kinds.len() - found_good;
    let mut tuning = JumpTuning {
        setting: "quality.jump_k",
        before,
        value: before,
        found_good,
        found_bad,
        not_found: jumps.len() - targets.len(),
        good_accepted: 0,
        bad_refused: 0,
        why: String::new(),
    };
    let score = |r: &[bool]| {
        let good_accepted = r.iter().zip(&kinds).filter(|(x, k)| **k == Label::Good && !**x).count();
        let bad_refused = r.iter().zip(&kinds).filter(|(x, k)| **k == Label::Bad && **x).count();
        (good_accepted, bad_refused)
    };
    let at = |k: f64| -> Result<(usize, usize), RetrainError> {
        let mut c = cfg.clone();
        c.quality.jump_k = k;
        Ok(score(&refused(pair, &c, ticks, &targets)?))
    };
    let (g0, b0) = at(before)?;
    (tuning.good_accepted, tuning.bad_refused) = (g0, b0);
    if targets.is_empty() {
        tuning.why = "no labelled jump is in the data: the band is unchanged".into();
        return Ok(Some((cfg.clone(), tuning)));
    }
    if g0 == found_good {
        tuning.why = "every good jump is already accepted: the band is unchanged".into();
        return Ok(Some((cfg.clone(), tuning)));
    }
    // The widest band that still refuses every bad jump seen so far is the fallback when no band accepts
    // every good one.
    let mut fallback = (before, g0, b0);
    let mut chosen = None;
    for step in STEPS.iter().skip(1) {
        let k = before * step;
        if k > MAX_JUMP_K {
            break;
        }
        let (g, b) = at(k)?;
        if b < found_bad {
            break;
        }
        fallback = (k, g, b);
        if g == found_good {
            chosen = Some((k, g, b));
            break;
        }
    }
    let (k, g, b) = chosen.unwrap_or(fallback);
    tuning.value = k;
    (tuning.good_accepted, tuning.bad_refused) = (g, b);
    tuning.why = if chosen.is_some() {
        "the smallest band tried that accepts every good jump and still refuses every bad one".to_string()
    } else {
        format!(
            "no band up to {MAX_JUMP_K} sigmas accepts every good jump while refusing every bad one: the widest \
             that refuses every bad one ({g} of {found_good} good accepted)"
        )
    };
    let mut c = cfg.clone();
    c.quality.jump_k = k;
    Ok(Some((c, tuning)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Source;

    /// A calm walk one second apart, with `jumps` (index, factor) applied to single ticks.
    fn ticks(n: usize, jumps: &[(usize, f64)]) -> Vec<Tick> {
        let pair = Pair::parse("USDMXN").unwrap();
        (0..n)
            .map(|i| {
                let wiggle = if i % 2 == 0 { 1.00002 } else { 0.99998 };
                let k = jumps.iter().find(|(j, _)| *j == i).map_or(1.0, |(_, f)| *f);
                Tick {
                    pair,
                    ts_us: 1_700_000_000_000_000 + i as i64 * 1_000_000,
                    bid: None,
                    ask: None,
                    mid: Some(17.0 * wiggle * k),
                    source: Source::new("t").unwrap(),
                    seq: Some(i as u64 + 1),
                    arrival_us: None,
                }
            })
            .collect()
    }

    fn label(t: &Tick, label: Label) -> LabelledTick {
        LabelledTick {
            id: 0,
            reason: "implausible_jump".into(),
            label,
            ts_us: Some(t.ts_us),
            seq: t.seq,
            price: t.mid,
        }
    }

    #[test]
    fn when_a_bad_jump_is_smaller_than_a_good_one_the_band_stops_before_accepting_it() {
        let pair = Pair::parse("USDMXN").unwrap();
        // 1% (40 sigmas of the band's floor) labelled good, 0.5% (20 sigmas) labelled bad.
        let t = ticks(300, &[(100, 1.01), (200, 1.005)]);
        let labels = [label(&t[100], Label::Good), label(&t[200], Label::Bad)];
        let cfg = EngineConfig::default();
        let (tuned, j) = tune_jump(pair, &cfg, &t, &labels).unwrap().unwrap();
        assert!(j.value >= 10.0 && j.value < 40.0, "{j:?}");
        assert_eq!((j.good_accepted, j.bad_refused), (0, 1), "{j:?}");
        assert!(j.why.starts_with("no band"), "{}", j.why);
        assert_eq!(tuned.quality.jump_k, j.value);
        let m = measure("l.json", &labels);
        assert_eq!((m.bad, m.good, m.precision), (1, 1, Some(0.5)));
        assert_eq!(m.recall, None);
    }

    #[test]
    fn labels_of_ticks_not_in_the_data_change_nothing() {
        let pair = Pair::parse("USDMXN").unwrap();
        let t = ticks(300, &[(100, 1.005)]);
        let mut far = label(&t[100], Label::Good);
        far.ts_us = Some(0);
        let (tuned, j) = tune_jump(pair, &EngineConfig::default(), &t, &[far]).unwrap().unwrap();
        assert_eq!((j.not_found, j.value), (1, 10.0), "{j:?}");
        assert_eq!(tuned, EngineConfig::default());
        assert!(tune_jump(pair, &EngineConfig::default(), &t, &[]).unwrap().is_none());
    }
}
