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
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<7} {:>7}  {:<24} {:<16} {:>10}  {:<24} {:>9} {:>8} {:>9}  keep",
        "pair", "version", "created", "reason", "ticks", "last tick", "horizon", "n", "rmse/rw"
    );
    for m in &metas {
        let h = m.horizons.first();
        let line = format!(
            "{:<7} {:>7}  {:<24} {:<16} {:>10}  {:<24} {:>9} {:>8} {:>9}  {}",
            m.pair.as_str(),
            m.version,
            m.created,
            m.reason.name(),
            m.ticks,
            m.last_tick_ts.as_deref().unwrap_or("-"),
            h.map_or("-", |h| h.horizon.as_str()),
            h.map_or_else(|| "-".into(), |h| h.n.to_string()),
            h.map_or_else(|| "-".into(), |h| format!("{:.4}", h.rmse_ratio)),
            if m.keep { "keep" } else { "" }
        );
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
    let mut s = serde_json::to_string_pretty(&meta).unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()));
    s.push('\n');
    Ok(s)
}
