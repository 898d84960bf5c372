//! Durable state: a pair's engine to bytes and back, and the redb file that keeps versions of it.
//!
//! - [`format`](mod@format): the versioned binary envelope (magic, format version, length, CRC-32, then a postcard
//!   payload) around a [`PairState`]: the engine and the serve-side bookkeeping a restore needs.
//! - [`store`]: the model registry in one redb file: versions per pair with metadata, retention, latest
//!   good, rollback, keep marks, export and import.
//! - [`applied`]: which JetStream stream sequences a pair has applied, saved with its engine so a
//!   redelivered tick is skipped after a restart.
//! - [`config`]: the `[checkpoint]` table (file, interval, retention, fallback).
//! - [`lineage`]: where a version came from (data, window, code, configuration, parent, actor).
//! - [`audit`]: the append-only audit log of registry operations and the requests waiting for approval.
//! - [`cli`]: what `cambio models list|show|diff|audit|…` prints, so the binary stays thin.
//!
//! The core never reads a clock: creation times are given by the caller.

pub mod applied;
pub mod audit;
pub mod cli;
pub mod config;
pub mod format;
pub mod lineage;
pub mod store;

pub use applied::AppliedSeqs;
pub use audit::{Approval, AuditEntry, AuditOp, Outcome, Requested};
pub use config::{CheckpointConfig, RegistryConfig};
pub use format::{FORMAT_VERSION, FormatError, PairState};
pub use lineage::{Lineage, Segment};
pub use store::{
    CheckpointStore, Cut, NewCheckpoint, Reason, Restore, RestoredPair, Retention, StoreError, VersionMeta,
};
