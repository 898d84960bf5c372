//! The registry's audit log and pending approvals: plain records the store keeps in their own redb tables.
//!
//! The audit log is append-only: entries are numbered from 1 in the order they were committed, written in
//! the same transaction as the operation they record when the store performs it, and never rewritten or
//! deleted (retention removes versions, not their history). Times are wall-clock (µs since the epoch)
//! given by the caller: the operation's time at the I/O edge.

use serde::{Deserialize, Serialize};

use crate::tick::Pair;
use crate::time::format_ts;

/// What a registry operation was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOp {
    /// A version written on an operator's request (reason `manual`).
    Checkpoint,
    /// An older version made the live model again (operator, or the rollback guard with actor `serve`).
    Rollback,
    /// A challenger became the champion (the contest, actor `serve`).
    Promotion,
    /// A keep mark set or removed.
    Keep,
    /// A version made the live challenger (or marked to be, offline).
    Challenge,
    /// An operation asked for under the four-eyes rule, waiting for approval.
    Request,
    /// An approval of a pending request.
    Approve,
    /// A checkpoint file stored as a new version.
    Import,
    /// A version built by `cambio retrain` (not promoted: `challenge` puts it in the contest).
    Retrain,
}

impl AuditOp {
    /// The name as stored and printed.
    pub fn name(self) -> &'static str {
        match self {
            AuditOp::Checkpoint => "checkpoint",
            AuditOp::Rollback => "rollback",
            AuditOp::Promotion => "promotion",
            AuditOp::Keep => "keep",
            AuditOp::Challenge => "challenge",
            AuditOp::Request => "request",
            AuditOp::Approve => "approve",
            AuditOp::Import => "import",
            AuditOp::Retrain => "retrain",
        }
    }
}

/// How the operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused (the reason is in the entry's detail).
    Refused,
    /// Recorded, waiting for an approval.
    Pending,
}

impl Outcome {
    /// The name as stored and printed.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Pending => "pending",
        }
    }
}

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 1 (set by the store).
    pub seq: u64,
    /// When (wall clock, µs since the epoch).
    pub at_us: i64,
    /// The same as RFC 3339.
    pub at: String,
    /// Who: an operator's name as the client asserted it, or `serve`.
    pub actor: String,
    /// What.
    pub op: AuditOp,
    /// The pair.
    pub pair: Pair,
    /// The version the pair was at (or the version operated on, for keep and challenge).
    pub from_version: Option<u64>,
    /// The version it went to (a new version's number), when there is one.
    pub to_version: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
    /// More, for people (a refusal's reason, the approval's id, a note).
    pub detail: Option<String>,
}

impl AuditEntry {
    /// An entry to append (`seq` is set by the store).
    pub fn new(at_us: i64, actor: &str, op: AuditOp, pair: Pair) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at_us,
            at: format_ts(at_us),
            actor: actor.to_string(),
            op,
            pair,
            from_version: None,
            to_version: None,
            outcome: Outcome::Ok,
            detail: None,
        }
    }

    /// With the versions.
    pub fn versions(mut self, from: Option<u64>, to: Option<u64>) -> AuditEntry {
        self.from_version = from;
        self.to_version = to;
        self
    }

    /// With an outcome and detail.
    pub fn outcome(mut self, outcome: Outcome, detail: Option<String>) -> AuditEntry {
        self.outcome = outcome;
        self.detail = detail;
        self
    }
}

/// What a pending request asks for (under `[registry] require_approval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Requested {
    /// Make this version the live model again.
    Rollback {
        /// The version.
        version: u64,
    },
    /// Run this version as the pair's challenger (the way a stored version reaches promotion).
    Challenge {
        /// The version.
        version: u64,
    },
}

impl Requested {
    /// The version the request names.
    pub fn version(self) -> u64 {
        match self {
            Requested::Rollback { version } | Requested::Challenge { version } => version,
        }
    }

    /// For people: "rollback to version 3", "challenge with version 3".
    pub fn describe(self) -> String {
        match self {
            Requested::Rollback { version } => format!("rollback to version {version}"),
            Requested::Challenge { version } => format!("challenge with version {version}"),
        }
    }
}

/// A request waiting for a second person's approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    /// Its number, from 1 (set by the store).
    pub id: u64,
    /// The pair.
    pub pair: Pair,
    /// What is asked for.
    pub requested: Requested,
    /// Who asked.
    pub requested_by: String,
    /// When (RFC 3339).
    pub requested_at: String,
}
