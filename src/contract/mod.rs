//! The wire contract in one place: every message cambio publishes or answers, as a typed struct with a
//! `"type"` tag, and the one function that writes an engine output as JSON.
//!
//! | `type` | subject | struct |
//! |---|---|---|
//! | `forecast` | `<prefix>.pred.<PAIR>`, query replies | [`Forecast`] |
//! | `quarantined` | `<prefix>.quarantine.<PAIR>` | [`Quarantined`] |
//! | `quarantined` | `<prefix>.quarantine._unrouted` | [`Unrouted`] |
//! | `quarantined` | replay's output file, for a line counted against no pair | [`Unpaired`] |
//! | `quality_changed` | `<prefix>.quality.<PAIR>` | [`QualityChange`] |
//! | `quality` | `<prefix>.quality.<PAIR>` (every `report_interval_secs`) | [`QualityMessage`] |
//! | `drift` | `<prefix>.drift.<PAIR>` (periodic, and after each alarm) | [`DriftMessage`] |
//! | `alarm`, `adapted` | `<prefix>.alert.<PAIR>` | [`PairAlarm`], [`Adaptation`] |
//! | `promotion`, `rollback` | `<prefix>.alert.<PAIR>` | [`Verdict`] |
//! | `status` | status replies | [`StatusReply`] |
//! | `models`, `model_version` | registry replies | [`ModelsReply`], [`ModelVersionReply`] |
//! | `error` | any failed request | [`ErrorReply`] |
//! | `business_event` | `<prefix>.business.masked.<PAIR>` | [`BusinessEvent`] |
//! | `business_quarantined` | `<prefix>.business.quarantine.<PAIR>` | [`BusinessQuarantined`] |
//! | `business_disparity` | `<prefix>.alert.<PAIR>` | [`BusinessDisparity`] |
//! | `retrain` | `<prefix>.alert.<PAIR>` | [`RetrainVerdict`] |
//! | `business_stats` | `<prefix>.business.stats.<PAIR>` replies | [`BusinessStatsReply`] |
//!
//! Ticks and factors come in as [`crate::tick::Tick`] and [`crate::tick::Factor`] (`parse_tick`,
//! `parse_factor`). The same structs serialise replay's output file and the service's publications, so
//! both agree byte for byte.

mod business;

use std::collections::BTreeMap;

use serde::Serialize;

pub use business::{
    BusinessDisparity, BusinessEvent, BusinessQuarantined, BusinessStatsReply, DisparityStat, PeriodStats,
    QuoteDistance, SegmentEvents, SegmentStats,
};

pub use crate::challenger::{ContestStatus, Promotion, Rollback, Verdict};
use crate::checkpoint::{Approval, AuditEntry, VersionMeta};
use crate::drift::DriftState;
pub use crate::engine::{Adaptation, EngineSummary, Output, PairAlarm, QualityChange, Quarantined};
pub use crate::forecast::{DriftStatus, Forecast, HorizonForecast, ModelStamp};
use crate::quality::{QualityReport, Status};
use crate::tick::Pair;

/// Appends an engine output's JSON to `out`. A forecast goes through its hand-written writer (the hot
/// path: one per tick; byte-identical to serde, tested in `forecast::wire`), anything else through serde.
pub fn write_output(o: &Output, out: &mut Vec<u8>) {
    match o {
        Output::Forecast(f) => f.write_json(out),
        other => write_json(other, out),
    }
}

/// Appends any contract message's JSON to `out`. Serialising these plain structs into memory cannot fail;
/// were it ever to, a typed error message is written instead, so the output stays valid JSON.
pub fn write_json<T: Serialize>(v: &T, out: &mut Vec<u8>) {
    let start = out.len();
    if let Err(e) = serde_json::to_writer(&mut *out, v) {
        out.truncate(start);
        let reply = ErrorReply {
            code: 500,
            error: format!("cannot encode the message: {e}"),
        };
        let _ = serde_json::to_writer(&mut *out, &reply);
    }
}

/// A contract message's JSON in a new buffer.
pub fn to_json_vec<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_json(v, &mut out);
    out
}

/// A message that reached no pair's engine (its subject names no pair, the pair limit was reached, or a
/// factor could not be read), published on `<prefix>.quarantine._unrouted`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "quarantined")]
pub struct Unrouted {
    /// The subject it came on.
    pub subject: String,
    /// Why it was not routed: `bad_subject`, `too_many_pairs` or `bad_factor`.
    pub reason: UnroutedReason,
    /// What was wrong, for a factor that could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The payload (cut to `max_raw_bytes`).
    pub raw: String,
}

/// A replayed line counted against no pair, in replay's output file: a line too long to read
/// (`oversized`), or one that could not be read before any pair was known (no `--pair`, no tick read yet).
/// The same shape as [`Quarantined`], with `pair` (and `ts`, `seq`, `source`) `null`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "quarantined")]
pub struct Unpaired {
    /// Always `None`: no pair's counts include this line.
    pub pair: Option<Pair>,
    /// Always `None` (the line's time was not read).
    pub ts: Option<String>,
    /// Always `None`.
    pub seq: Option<u64>,
    /// Always `None`.
    pub source: Option<String>,
    /// A tick quarantine reason (`malformed`, …) or `oversized`.
    pub reason: &'static str,
    /// What was wrong.
    pub detail: String,
    /// The line, cut to 16 KiB like serve's `max_raw_bytes`.
    pub raw: String,
}

impl Unpaired {
    /// The reason replay gives a line longer than its `max_line_bytes`, which it never reads whole.
    pub const OVERSIZED: &'static str = "oversized";

    /// A record of a line counted against no pair.
    pub fn new(reason: &'static str, detail: String, raw: String) -> Unpaired {
        Unpaired {
            pair: None,
            ts: None,
            seq: None,
            source: None,
            reason,
            detail,
            raw,
        }
    }
}

/// Why a message reached no engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UnroutedReason {
    /// The subject's last token is not a pair.
    BadSubject,
    /// The service already serves `max_pairs` pairs.
    TooManyPairs,
    /// A factor message that could not be read.
    BadFactor,
    /// A message for a pair that has no shard yet and is not a valid tick: a shard starts only with a
    /// valid tick, so junk on many subjects cannot take the places of real pairs. `detail` says why.
    InvalidTick,
}

/// The periodic quality publication of a pair: its current scores, flattened as in `quality_changed`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "quality")]
pub struct QualityMessage {
    /// The pair.
    pub pair: Pair,
    /// The last tick's time (RFC 3339), when one was seen.
    pub ts: Option<String>,
    /// The scores now.
    #[serde(flatten)]
    pub report: QualityReport,
    /// Worst status each dimension reached.
    pub worst: BTreeMap<String, Status>,
}

/// A pair's drift statistics: periodic, and right after an alarm or an adaptation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "drift")]
pub struct DriftMessage {
    /// The pair.
    pub pair: Pair,
    /// The last forecast's time (RFC 3339).
    pub ts: Option<String>,
    /// Stable, or adapting after a residual alarm.
    pub status: DriftStatus,
    /// Alarms raised since start.
    pub alarms_total: u64,
    /// Adaptations made since start.
    pub adaptations: u64,
    /// Every detector's state, per signal.
    pub signals: Vec<DriftState>,
}

/// The answer to `<prefix>.status.<PAIR>`: the pair's summary, the model in service and its contest.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "status")]
pub struct StatusReply {
    /// Counters, scores, quality, profile and drift state.
    #[serde(flatten)]
    pub summary: EngineSummary,
    /// The model in service.
    pub model: ModelStamp,
    /// Stable, or adapting.
    pub drift_status: DriftStatus,
    /// The last forecast's time (RFC 3339).
    pub last_ts: Option<String>,
    /// The champion/challenger contest, when one runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contest: Option<ContestStatus>,
    /// Ticks of the whole service (any pair: theirs are unknown) dropped by the NATS client in core mode
    /// because its subscription buffer was full; the same count as STATS.
    pub ticks_dropped: u64,
}

/// A failed request's answer (with the NATS micro service headers `Nats-Service-Error` and
/// `Nats-Service-Error-Code` carrying the same message and code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "error")]
pub struct ErrorReply {
    /// An HTTP-like status: 400 bad request, 404 unknown, 500 internal, 503 unavailable.
    pub code: u16,
    /// What went wrong, for a person.
    pub error: String,
}

impl ErrorReply {
    /// An error reply with `code` and `error`.
    pub fn new(code: u16, error: impl Into<String>) -> ErrorReply {
        ErrorReply {
            code,
            error: error.into(),
        }
    }
}

/// The registry's versions of a pair (`{"op":"list"}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "models")]
pub struct ModelsReply {
    /// The pair.
    pub pair: Pair,
    /// Its versions, oldest first.
    pub versions: Vec<VersionMeta>,
}

/// One registry version (`show`, `keep`, `rollback`, `checkpoint`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "model_version")]
pub struct ModelVersionReply {
    /// The version's metadata.
    #[serde(flatten)]
    pub meta: VersionMeta,
}

/// The registry's audit log for a pair (`{"op":"audit"}`), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "audit")]
pub struct AuditReply {
    /// The pair.
    pub pair: Pair,
    /// Its entries.
    pub entries: Vec<AuditEntry>,
}

/// The requests waiting for approval (`{"op":"approvals"}`), of every pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "approvals")]
pub struct ApprovalsReply {
    /// The pending requests, oldest first.
    pub pending: Vec<Approval>,
}

/// A request recorded under the four-eyes rule, waiting for `{"op":"approve","id":N}` from another actor.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "approval_request")]
pub struct ApprovalRequestReply {
    /// The request.
    #[serde(flatten)]
    pub request: Approval,
}

/// What one run of serve's periodic retraining (`[retrain]`) did for a pair, published on
/// `<prefix>.alert.<PAIR>`: the version it wrote, its hold-out scores, and whether it now runs as the
/// challenger, waits for approval, was refused, or the run failed. The contest's later promotion (or not)
/// is the `promotion` alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "retrain")]
pub struct RetrainVerdict {
    /// The pair.
    pub pair: Pair,
    /// When the run ended (wall clock, RFC 3339).
    pub ts: String,
    /// `challenged`, `awaiting_approval`, `refused` (a version was written, the challenge was not made) or
    /// `failed` (no version: the data or the registry could not be used).
    pub outcome: &'static str,
    /// The version written (reason `retrain`), when one was.
    pub version: Option<u64>,
    /// Who the run acts as (`[retrain] actor`).
    pub actor: String,
    /// The candidate chosen (`calibrated`, `configured`, `ets`).
    pub chosen: Option<String>,
    /// Ticks used (window and hold-out).
    pub ticks: Option<usize>,
    /// The chosen candidate's hold-out scores, per horizon.
    pub holdout: Vec<RetrainScore>,
    /// The approval request's id, under `[registry] require_approval`.
    pub approval_id: Option<u64>,
    /// Why it was refused or failed, or what it did, for people.
    pub detail: String,
    /// How long the run took, seconds.
    pub seconds: f64,
}

/// One horizon of a retrained candidate's hold-out scores.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetrainScore {
    /// The horizon.
    pub horizon: String,
    /// Forecasts scored.
    pub n: u64,
    /// RMSE relative to the random walk's (below 1 beats it).
    pub rmse_ratio: f64,
    /// Share of outcomes inside the 95% interval.
    pub coverage95: f64,
    /// Mean Winkler score of the 95% interval (price units).
    pub winkler95: f64,
}

/// Latency percentiles of a histogram, in microseconds (`$SRV.STATS` data, the load report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct Percentiles {
    /// Latencies recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest recorded.
    pub max_us: u64,
}

/// The service's counters since start (`$SRV.STATS` data, and the summary logged at shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ServiceCounters {
    /// Tick messages received.
    pub ticks: u64,
    /// Forecasts published.
    pub forecasts: u64,
    /// Ticks quarantined (any reason, including unparseable payloads).
    pub quarantined: u64,
    /// Messages on a tick subject whose last token is not a pair.
    pub bad_subjects: u64,
    /// Factor messages applied.
    pub factors: u64,
    /// Factor messages refused (malformed).
    pub bad_factors: u64,
    /// Publications that failed.
    pub publish_errors: u64,
    /// JetStream redeliveries skipped because the tick was already applied.
    pub redeliveries_skipped: u64,
    /// Requests answered with an error.
    pub request_errors: u64,
    /// Ticks refused because `max_pairs` pairs were already served (each one is also on `_unrouted`).
    pub pairs_refused: u64,
    /// Messages on a pair with no shard yet that were not a valid tick: no shard was started for them.
    pub pairs_not_started: u64,
    /// Idle pairs whose shard was stopped to free its place.
    pub pairs_evicted: u64,
    /// Checkpoint cuts committed to the store.
    pub checkpoints: u64,
    /// Checkpoint cuts that failed.
    pub checkpoint_errors: u64,
    /// Core mode: ticks received by the client but dropped because the subscription buffer was full (the
    /// service was behind a burst). Their pairs are unknown.
    pub ticks_dropped: u64,
}

/// The NATS connection's events since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ConnectionCounters {
    /// Connections made (the first one included).
    pub connected: u64,
    /// Connections lost.
    pub disconnected: u64,
    /// Slow-consumer events (messages the server dropped for cambio).
    pub slow_consumer: u64,
    /// Errors reported by the server or the client.
    pub errors: u64,
}

/// The service-wide figures of `$SRV.STATS.cambio` (its top-level `data`); each endpoint reports its own
/// request latency beside its counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ServiceStats {
    /// The service's counters.
    pub counters: ServiceCounters,
    /// The connection's events.
    pub connection: ConnectionCounters,
    /// Tick to forecast handed to the client, over every pair.
    pub tick_to_forecast: Percentiles,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_starts_with_its_type() {
        let pair = Pair::parse("USDMXN").unwrap();
        let unrouted = Unrouted {
            subject: "fx.ticks.x".into(),
            reason: UnroutedReason::BadSubject,
            detail: None,
            raw: "{}".into(),
        };
        let error = ErrorReply {
            code: 404,
            error: "unknown pair".into(),
        };
        let models = ModelsReply {
            pair,
            versions: Vec::new(),
        };
        for (json, ty) in [
            (to_json_vec(&unrouted), "quarantined"),
            (to_json_vec(&error), "error"),
            (to_json_vec(&models), "models"),
        ] {
            let text = String::from_utf8(json).unwrap();
            assert!(text.starts_with(&format!("{{\"type\":\"{ty}\"")), "{text}");
        }
    }
}
