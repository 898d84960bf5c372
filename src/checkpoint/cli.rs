//! What `cambio models …` prints: the binary parses arguments and reads the clock, this renders.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::audit::{Approval, AuditEntry};
use super::lineage::{Dataset, Lineage, Window};
use super::store::{CheckpointStore, StoreError, VersionMeta};
use crate::tick::Pair;

/// The table of `cambio models list`: one line per version, oldest first per pair.
///
/// # Errors
/// [`StoreError`] when the file cannot be read.
pub fn list(store: &CheckpointStore, pair: Option<Pair>) -> Result<String, StoreError> {
    let metas = store.list(pair)?;
    let header = [
        "pair",
        "version",
        "created",
        "reason",
        "ticks",
        "last tick",
        "horizon",
        "n",
        "rmse/rw",
        "keep",
    ];
    // Numbers flush right, text flush left.
    let right = [false, true, false, false, true, false, false, true, true, false];
    let rows: Vec<[String; 10]> = metas
        .iter()
        .map(|m| {
            let h = m.horizons.first();
            [
                m.pair.as_str().to_string(),
                m.version.to_string(),
                m.created.clone(),
                m.reason.name().to_string(),
                m.ticks.to_string(),
                m.last_tick_ts.clone().unwrap_or_else(|| "-".into()),
                h.map_or_else(|| "-".into(), |h| h.horizon.clone()),
                h.map_or_else(|| "-".into(), |h| h.n.to_string()),
                // No scored forecast, no ratio.
                h.map_or_else(
                    || "-".into(),
                    |h| {
                        if h.n == 0 || !h.rmse_ratio.is_finite() {
                            "n/a".into()
                        } else {
                            format!("{:.4}", h.rmse_ratio)
                        }
                    },
                ),
                if m.keep { "keep".into() } else { String::new() },
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(header.map(String::from)).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                line.push_str("  ");
            }
            if right[i] {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    if metas.is_empty() {
        out.push_str("(no versions)\n");
    }
    Ok(out)
}

/// The version asked for, or the pair's newest when none is given.
///
/// # Errors
/// [`StoreError::NotFound`] (version 0 when the pair has no version at all).
pub fn resolve(store: &CheckpointStore, pair: Pair, version: Option<u64>) -> Result<VersionMeta, StoreError> {
    match version {
        Some(v) => store.meta(pair, v),
        None => store
            .list(Some(pair))?
            .pop()
            .ok_or(StoreError::NotFound { pair, version: 0 }),
    }
}

/// The metadata of one version as pretty JSON (`cambio models show --json`).
///
/// # Errors
/// [`StoreError`] when there is no such version or the file cannot be read.
pub fn show_json(store: &CheckpointStore, pair: Pair, version: Option<u64>) -> Result<String, StoreError> {
    let meta = resolve(store, pair, version)?;
    Ok(pretty(&meta))
}

/// Every version's metadata as a JSON array (`cambio models list --json`), oldest first per pair.
///
/// # Errors
/// [`StoreError`] when the file cannot be read.
pub fn list_json(store: &CheckpointStore, pair: Option<Pair>) -> Result<String, StoreError> {
    Ok(pretty(&store.list(pair)?))
}

/// Plain data (strings and numbers) as pretty JSON: encoding it cannot fail; should it, say so as JSON.
fn pretty<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v)
        .unwrap_or_else(|e| format!("{{\"error\":{}}}", serde_json::Value::from(e.to_string())));
    s.push('\n');
    s
}

const UNKNOWN: &str = "unknown";

fn or_unknown(v: Option<String>) -> String {
    v.unwrap_or_else(|| UNKNOWN.into())
}

fn dataset_text(d: Option<&Dataset>) -> String {
    let Some(d) = d else {
        return UNKNOWN.into();
    };
    let mut s = format!("{}, {} ticks", d.kind, d.ticks);
    if let (Some(a), Some(b)) = (d.first_seq, d.last_seq) {
        let _ = write!(s, ", stream sequences {a} to {b}");
    }
    if let Some(src) = &d.source {
        let _ = write!(s, ", from {src}");
    }
    if let Some(h) = &d.hash {
        let _ = write!(s, ", {h}");
    }
    s
}

fn window_text(w: Option<&Window>) -> String {
    w.map_or_else(
        || UNKNOWN.into(),
        |w| match &w.reason {
            Some(r) => format!("{} to {} ({r})", w.first, w.last),
            None => format!("{} to {}", w.first, w.last),
        },
    )
}

fn code_text(l: &Lineage) -> String {
    l.code.as_ref().map_or_else(
        || UNKNOWN.into(),
        |c| format!("cambio {}, commit {}", c.crate_version, c.git_commit),
    )
}

/// The scores as `name -> value` (empty when none): one line each in show, one comparison each in diff.
fn scores(l: &Lineage) -> BTreeMap<String, String> {
    l.scores
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect()
}

/// A JSON value as `dotted.path = value` lines (a configuration, for show and diff).
fn flatten(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    match v {
        serde_json::Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, out);
            }
        }
        v => {
            out.insert(prefix.to_string(), v.to_string());
        }
    }
}

fn config_lines(l: &Lineage) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(c) = &l.config {
        flatten(c, "", &mut out);
    }
    out
}

/// One version with its lineage, for people (`cambio models show`).
///
/// # Errors
/// [`StoreError`] when there is no such version or the file cannot be read.
pub fn show(store: &CheckpointStore, pair: Pair, version: Option<u64>) -> Result<String, StoreError> {
    let m = resolve(store, pair, version)?;
    let l = m.lineage.clone().unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "{} version {}", m.pair, m.version);
    let mut row = |k: &str, v: String| {
        let _ = writeln!(out, "  {k:<13} {v}");
    };
    row("created", m.created.clone());
    row("reason", m.reason.name().into());
    row("actor", or_unknown(l.actor.clone()));
    row("parent", l.parent.map_or_else(|| "none".into(), |p| p.to_string()));
    row("ticks", m.ticks.to_string());
    row("last tick", m.last_tick_ts.clone().unwrap_or_else(|| "-".into()));
    row("stream seq", m.stream_seq.map_or_else(|| "-".into(), |s| s.to_string()));
    row("dataset", dataset_text(l.dataset.as_ref()));
    row("window", window_text(l.window.as_ref()));
    row("code", code_text(&l));
    row("config hash", or_unknown(l.config_hash.clone()));
    row("keep", if m.keep { "yes".into() } else { "no".into() });
    row("bytes", m.bytes.to_string());
    row("format", m.format_version.to_string());
    if let Some(n) = &m.note {
        row("note", n.clone());
    }
    for h in &m.horizons {
        let ratio = if h.n == 0 || !h.rmse_ratio.is_finite() {
            "n/a".to_string()
        } else {
            format!("{:.4}", h.rmse_ratio)
        };
        let _ = writeln!(
            out,
            "  horizon {:<6} n {}  rmse/rw {ratio}  coverage95 {:.4}",
            h.horizon, h.n, h.coverage95
        );
    }
    let scores = scores(&l);
    if scores.is_empty() {
        let _ = writeln!(out, "  scores        none");
    } else {
        let _ = writeln!(out, "  scores");
        for (k, v) in scores {
            let _ = writeln!(out, "    {k} = {v}");
        }
    }
    let config = config_lines(&l);
    if config.is_empty() {
        let _ = writeln!(out, "  configuration unknown");
    } else {
        let _ = writeln!(out, "  configuration");
        for (k, v) in config {
            let _ = writeln!(out, "    {k} = {v}");
        }
    }
    Ok(out)
}

/// What changed between two versions of a pair (`cambio models diff`): the configuration keys whose
/// values differ (old → new), the window, the dataset, the scores, parent, reason, actor and code.
///
/// # Errors
/// [`StoreError`] when either version is missing or the file cannot be read.
pub fn diff(store: &CheckpointStore, pair: Pair, a: u64, b: u64) -> Result<String, StoreError> {
    let (ma, mb) = (store.meta(pair, a)?, store.meta(pair, b)?);
    let (la, lb) = (
        ma.lineage.clone().unwrap_or_default(),
        mb.lineage.clone().unwrap_or_default(),
    );
    let mut out = String::new();
    let _ = writeln!(out, "{pair} version {a} -> version {b}");
    let mut changes = 0;
    let mut field = |name: &str, x: String, y: String| {
        if x != y {
            changes += 1;
            let _ = writeln!(out, "  {name}: {x} -> {y}");
        }
    };
    field("reason", ma.reason.name().into(), mb.reason.name().into());
    field("actor", or_unknown(la.actor.clone()), or_unknown(lb.actor.clone()));
    let parent = |l: &Lineage| l.parent.map_or_else(|| "none".into(), |p| p.to_string());
    field("parent", parent(&la), parent(&lb));
    field("ticks", ma.ticks.to_string(), mb.ticks.to_string());
    field(
        "window",
        window_text(la.window.as_ref()),
        window_text(lb.window.as_ref()),
    );
    field(
        "dataset",
        dataset_text(la.dataset.as_ref()),
        dataset_text(lb.dataset.as_ref()),
    );
    field("code", code_text(&la), code_text(&lb));
    let (sa, sb) = (scores(&la), scores(&lb));
    let names: std::collections::BTreeSet<&String> = sa.keys().chain(sb.keys()).collect();
    for k in names {
        let none = "(absent)".to_string();
        field(
            &format!("score {k}"),
            sa.get(k).unwrap_or(&none).clone(),
            sb.get(k).unwrap_or(&none).clone(),
        );
    }
    for (ha, hb) in ma.horizons.iter().zip(&mb.horizons) {
        if ha.horizon == hb.horizon {
            let r = |x: f64| if x.is_finite() { format!("{x:.4}") } else { "n/a".into() };
            field(&format!("rmse/rw {}", ha.horizon), r(ha.rmse_ratio), r(hb.rmse_ratio));
        }
    }
    let (ca, cb) = (config_lines(&la), config_lines(&lb));
    if la.config_hash != lb.config_hash || ca != cb {
        let _ = writeln!(
            out,
            "  configuration: hash {} -> {}",
            or_unknown(la.config_hash.clone()),
            or_unknown(lb.config_hash.clone())
        );
        changes += 1;
        let keys: std::collections::BTreeSet<&String> = ca.keys().chain(cb.keys()).collect();
        for k in keys {
            let (x, y) = (ca.get(k), cb.get(k));
            if x != y {
                let none = "(absent)".to_string();
                let _ = writeln!(out, "    {k}: {} -> {}", x.unwrap_or(&none), y.unwrap_or(&none));
            }
        }
    } else {
        let _ = writeln!(
            out,
            "  configuration: same (hash {})",
            or_unknown(la.config_hash.clone())
        );
    }
    if changes == 0 {
        let _ = writeln!(out, "  no other difference");
    }
    Ok(out)
}

/// The audit log as a table (`cambio models audit`), or as a JSON array.
///
/// # Errors
/// [`StoreError`] when the file cannot be read.
pub fn audit(store: &CheckpointStore, pair: Option<Pair>, json: bool) -> Result<String, StoreError> {
    let entries = store.audit(pair)?;
    if json {
        return Ok(pretty(&entries));
    }
    Ok(audit_table(&entries))
}

/// The audit entries as one line each.
pub fn audit_table(entries: &[AuditEntry]) -> String {
    let mut out = String::new();
    let v = |x: Option<u64>| x.map_or_else(|| "-".into(), |v| v.to_string());
    let _ = writeln!(out, "seq  at  actor  op  pair  from  to  outcome  detail");
    for e in entries {
        let _ = writeln!(
            out,
            "{}  {}  {}  {}  {}  {}  {}  {}  {}",
            e.seq,
            e.at,
            e.actor,
            e.op.name(),
            e.pair,
            v(e.from_version),
            v(e.to_version),
            e.outcome.name(),
            e.detail.as_deref().unwrap_or("")
        );
    }
    if entries.is_empty() {
        out.push_str("(no entries)\n");
    }
    out
}

/// The requests waiting for approval (`cambio models approvals`), or as a JSON array.
///
/// # Errors
/// [`StoreError`] when the file cannot be read.
pub fn approvals(store: &CheckpointStore, json: bool) -> Result<String, StoreError> {
    let pending = store.approvals()?;
    if json {
        return Ok(pretty(&pending));
    }
    Ok(approvals_table(&pending))
}

/// Pending requests as one line each.
pub fn approvals_table(pending: &[Approval]) -> String {
    let mut out = String::new();
    for a in pending {
        let _ = writeln!(
            out,
            "request {}: {} {}, asked by {} at {}",
            a.id,
            a.pair,
            a.requested.describe(),
            a.requested_by,
            a.requested_at
        );
    }
    if pending.is_empty() {
        out.push_str("(no pending request)\n");
    }
    out
}
