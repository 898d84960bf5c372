//! Checking a scenario's expectations against a replay's report: what turns a replay into a pass or a fail.

use super::report::{Outcome, Report};
use super::scenario::{Expectation, window};
use crate::horizon::Horizon;

/// Checks every expectation against a report.
pub fn check(expectations: &[Expectation], report: &Report) -> Vec<Outcome> {
    expectations
        .iter()
        .map(|e| {
            let (passed, detail) = check_one(e, report);
            Outcome {
                expect: e.clone(),
                passed,
                detail,
            }
        })
        .collect()
}

fn check_one(e: &Expectation, r: &Report) -> (bool, String) {
    let horizon = |h: &Horizon| r.horizons.iter().find(|s| s.horizon == h.to_string());
    match e {
        Expectation::AlarmBetween {
            from,
            to,
            signal,
            detector,
        } => {
            let (from, to) = match window(from, to) {
                Ok(w) => w,
                Err(m) => return (false, m),
            };
            let hits: Vec<_> = r
                .alarms
                .iter()
                .filter(|a| a.ts_us >= from && a.ts_us <= to)
                .filter(|a| signal.is_none_or(|s| a.signal == s))
                .filter(|a| detector.as_deref().is_none_or(|d| a.detector == d))
                .collect();
            let first = hits
                .first()
                .map(|a| format!(", first {} {} at {}", a.detector, a.signal.name(), a.ts));
            (
                !hits.is_empty(),
                format!("{} alarms in window{}", hits.len(), first.unwrap_or_default()),
            )
        }
        Expectation::MaxAlarms { max, signal } => {
            let n = r.alarms.iter().filter(|a| signal.is_none_or(|s| a.signal == s)).count() as u64;
            let n = if signal.is_none() { r.alarms_total.max(n) } else { n };
            (n <= *max, format!("{n} alarms"))
        }
        Expectation::NoAlarmBetween { from, to } => {
            let (from, to) = match window(from, to) {
                Ok(w) => w,
                Err(m) => return (false, m),
            };
            let n = r.alarms.iter().filter(|a| a.ts_us >= from && a.ts_us <= to).count();
            (n == 0, format!("{n} alarms in window"))
        }
        Expectation::QuarantinedAtLeast { reason, count } => {
            let n = r.quarantined.get(reason.name()).copied().unwrap_or(0);
            (n >= *count, format!("{n} quarantined as {}", reason.name()))
        }
        Expectation::QuarantinedAtMost { reason, count } => {
            let n = match reason {
                Some(reason) => r.quarantined.get(reason.name()).copied().unwrap_or(0),
                None => r.quarantined.values().sum(),
            };
            (n <= *count, format!("{n} quarantined"))
        }
        Expectation::AcceptedAtLeast { count } => (r.accepted >= *count, format!("{} accepted", r.accepted)),
        Expectation::Coverage {
            horizon: h,
            level,
            min,
            max,
        } => match (horizon(h), level) {
            (_, l) if *l != 80 && *l != 95 => (false, format!("level must be 80 or 95, not {l}")),
            (Some(s), _) => {
                let c = if *level == 80 { s.coverage80 } else { s.coverage95 };
                (
                    c >= *min && c <= *max && s.n > 0,
                    format!("coverage{level} {c:.4} over {} forecasts", s.n),
                )
            }
            (None, _) => (false, format!("horizon {h} not configured")),
        },
        Expectation::RmseRatioAtMost { horizon: h, max } => match horizon(h) {
            Some(s) => (
                s.rmse_ratio <= *max && s.n > 0,
                format!("rmse/rw_rmse {:.4} over {} forecasts", s.rmse_ratio, s.n),
            ),
            None => (false, format!("horizon {h} not configured")),
        },
        Expectation::MaxQualityChanges { max } => (
            r.quality_changes <= *max,
            format!("{} quality status changes", r.quality_changes),
        ),
        Expectation::QualityAtEnd { status } => {
            let end = r.quality.as_ref().map(|q| q.overall);
            (
                end.is_some_and(|e| e <= *status),
                match end {
                    Some(e) => format!("quality {} at the end", e.name()),
                    None => "no quality recorded".to_string(),
                },
            )
        }
        Expectation::QualityStatusSeen { dimension, status } => {
            let worst = r.quality_worst.get(dimension.name()).copied();
            (
                worst.is_some_and(|w| w >= *status),
                match worst {
                    Some(w) => format!("worst {} status {}", dimension.name(), w.name()),
                    None => format!("no {} status recorded", dimension.name()),
                },
            )
        }
    }
}
