//! Lineage: where a registry version came from, so an auditor can answer "which model produced this
//! number, trained on what, built by which code, created by whom".
//!
//! A version's [`Lineage`] is metadata beside its state (in the registry's `versions` table, as JSON),
//! never inside the checkpoint record: the state format does not change, and versions written before
//! lineage existed read with every field absent (shown as "unknown").
//!
//! For online versions the dataset is the stream segment applied since the parent version (first and
//! last stream sequence or tick time, tick count, and a running FNV-1a hash of the payloads in order), so
//! a version's full training data is the chain of segments back through its parents. An import records
//! the SHA-256 of the file. A batch job fills the same fields with its own window, data hash and scores.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{EngineConfig, config_hash};
use crate::time::format_ts;

/// The crate version and git commit of the build (see `build.rs`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeVersion {
    /// `CARGO_PKG_VERSION`.
    pub crate_version: String,
    /// `git rev-parse HEAD` at build time, "unknown" when built outside a git checkout.
    pub git_commit: String,
}

impl CodeVersion {
    /// This build's.
    pub fn current() -> CodeVersion {
        CodeVersion {
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("CAMBIO_GIT_COMMIT").to_string(),
        }
    }
}

/// The data a version was built from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Dataset {
    /// What the data is: `stream` (ticks applied online since the parent version), `file` (an imported
    /// checkpoint), or a batch job's own kind.
    pub kind: String,
    /// First JetStream stream sequence applied (JetStream only).
    pub first_seq: Option<u64>,
    /// Last JetStream stream sequence applied (JetStream only).
    pub last_seq: Option<u64>,
    /// Ticks applied (accepted and quarantined).
    pub ticks: u64,
    /// Content hash: `fnv1a64:<hex>` over the tick payloads in order, or `sha256:<hex>` of a file.
    pub hash: Option<String>,
    /// Where the data came from (a file name), when not the service's stream.
    pub source: Option<String>,
}

/// First and last tick time of the data (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Time of the first tick.
    pub first: String,
    /// Time of the last tick.
    pub last: String,
    /// Why the data starts where it does (a batch job's training window: the changepoint found, or its
    /// minimum length); absent for a stream segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Where a registry version came from. Every field is optional: versions written before lineage existed
/// have none, and a batch job may know more than the online path (scores).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Lineage {
    /// Who or what created it: `serve` (periodic, shutdown, drift, contest and guard verdicts), an
    /// operator's name (from the request or `--actor`), or a job's name.
    pub actor: Option<String>,
    /// The version this state descends from: the pair's previous version, the version rolled back to,
    /// or the registry version a promoted challenger came from. `None` for the first version and imports.
    pub parent: Option<u64>,
    /// The data applied since the parent (or the training data of a batch job).
    pub dataset: Option<Dataset>,
    /// The tick times of that data.
    pub window: Option<Window>,
    /// The build that wrote it.
    pub code: Option<CodeVersion>,
    /// The engine configuration of the model (the whole `[engine]` table as the model runs it).
    pub config: Option<serde_json::Value>,
    /// Its hash (the same as the forecasts' `model.config` and the metrics' info label).
    pub config_hash: Option<String>,
    /// Scores of an evaluation (a batch job's hold-out: name → value), when one was made.
    pub scores: Option<BTreeMap<String, f64>>,
}

impl Lineage {
    /// The lineage every version gets from the engine that wrote it: this build's code version and the
    /// engine's configuration with its hash.
    pub fn of_engine(cfg: &EngineConfig) -> Lineage {
        Lineage {
            code: Some(CodeVersion::current()),
            config: serde_json::to_value(cfg).ok(),
            config_hash: Some(config_hash(cfg)),
            ..Lineage::default()
        }
    }
}

/// FNV-1a 64-bit offset basis.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// The stream segment a serving shard applied since its last version: kept by the shard (not in the
/// engine's state), taken into the lineage of the next version, then started again. A few arithmetic
/// operations per payload byte.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Segment {
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    first_ts_us: Option<i64>,
    last_ts_us: Option<i64>,
    ticks: u64,
    hash: u64,
}

impl Segment {
    /// Adds one tick: its stream sequence (JetStream), its time once accepted, and its payload bytes.
    pub fn on_tick(&mut self, seq: Option<u64>, ts_us: Option<i64>, payload: &[u8]) {
        if self.ticks == 0 {
            self.hash = FNV_OFFSET;
        }
        self.ticks += 1;
        if let Some(s) = seq {
            self.first_seq.get_or_insert(s);
            self.last_seq = Some(s);
        }
        if let Some(t) = ts_us {
            self.first_ts_us.get_or_insert(t);
            self.last_ts_us = Some(t);
        }
        let mut h = self.hash;
        for &b in payload {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        // A separator, so the payload boundaries count (`ab`,`c` differs from `a`,`bc`).
        h ^= 0xff;
        self.hash = h.wrapping_mul(FNV_PRIME);
    }

    /// Whether no tick was added.
    pub fn is_empty(&self) -> bool {
        self.ticks == 0
    }

    /// The dataset and window of this segment.
    pub fn describe(&self) -> (Dataset, Option<Window>) {
        let dataset = Dataset {
            kind: "stream".into(),
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            ticks: self.ticks,
            hash: (self.ticks > 0).then(|| format!("fnv1a64:{:016x}", self.hash)),
            source: None,
        };
        let window = match (self.first_ts_us, self.last_ts_us) {
            (Some(a), Some(b)) => Some(Window {
                first: format_ts(a),
                last: format_ts(b),
                reason: None,
            }),
            _ => None,
        };
        (dataset, window)
    }
}

/// The SHA-256 of some bytes as `sha256:<hex>` (an imported file's fingerprint).
pub fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for b in digest {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Who runs a command line: `$USER`, else `$LOGNAME`, else "unknown" (the CLI's `--actor` default).
pub fn os_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_hashes_payloads_in_order_with_boundaries() {
        let mut a = Segment::default();
        a.on_tick(Some(5), Some(1_000_000), b"ab");
        a.on_tick(Some(6), None, b"c");
        let mut b = Segment::default();
        b.on_tick(Some(5), Some(1_000_000), b"a");
        b.on_tick(Some(6), None, b"bc");
        let (da, wa) = a.describe();
        let (db, _) = b.describe();
        assert_ne!(da.hash, db.hash);
        assert_eq!((da.first_seq, da.last_seq, da.ticks), (Some(5), Some(6), 2));
        let w = wa.unwrap();
        assert_eq!(w.first, w.last);
        assert!(Segment::default().describe().0.hash.is_none());
    }

    #[test]
    fn old_metadata_without_lineage_fields_reads() {
        let l: Lineage = serde_json::from_str("{}").unwrap();
        assert_eq!(l, Lineage::default());
        let l: Lineage = serde_json::from_str(r#"{"actor":"alice","future_field":1}"#).unwrap();
        assert_eq!(l.actor.as_deref(), Some("alice"));
    }
}
