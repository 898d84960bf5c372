//! What `cambio models …` prints: the binary parses arguments and reads the clock, this renders.

use std::fmt::Write as _;

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

/// The metadata of one version as pretty JSON (`cambio models show`).
///
/// # Errors
/// [`StoreError`] when there is no such version or the file cannot be read.
pub fn show(store: &CheckpointStore, pair: Pair, version: Option<u64>) -> Result<String, StoreError> {
    let meta = resolve(store, pair, version)?;
    // Metadata is plain data (strings and numbers): encoding it cannot fail; should it, say so as JSON.
    let mut s = serde_json::to_string_pretty(&meta)
        .unwrap_or_else(|e| format!("{{\"error\":{}}}", serde_json::Value::from(e.to_string())));
    s.push('\n');
    Ok(s)
}
