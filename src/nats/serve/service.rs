//! Request-reply for credit systems: the NATS micro service `cambio`, discoverable with `$SRV.PING`,
//! `$SRV.INFO` and `$SRV.STATS` (and so by `nats micro ls`).
//!
//! - `<prefix>.query.<PAIR>`: the latest forecast; an optional body `{"horizons":["1h","1d"]}` selects
//!   horizons.
//! - `<prefix>.status.<PAIR>`: quality, drift, the model's identity and its prequential metrics.
//! - `<prefix>.models.<PAIR>`: the model registry (with `[checkpoint]`): `{"op":"list"}` (or no body),
//!   `{"op":"show","version":3}`, `{"op":"rollback","version":3}`, `{"op":"keep","version":3,"keep":true}`,
//!   `{"op":"checkpoint"}`, `{"op":"challenge","version":3}`, `{"op":"audit"}`, `{"op":"approvals"}`,
//!   `{"op":"approve","id":1}`. Rollbacks, challenges and checkpoints go through the consumer loop so they
//!   are ordered with the pair's ticks; listing, keep marks, the audit log and approvals go straight to the
//!   checkpoint writer. Who asks is the body's `actor`, else the `Cambio-Actor` header: asserted by the
//!   client, and only as trustworthy as the NATS permissions on the subject.
//! - `<prefix>.business.stats.<PAIR>` (endpoint `business_stats`): the pair's business figures per period
//!   and segment (see [`super::business`]); 503 without a masking key, 404 for a pair with no event.
//!
//! Handlers read the shards' published snapshots (an `Arc` clone under a short lock), so queries never wait
//! for, or slow, the tick path. A failed request is a [`RequestError`]; its variant decides the code, and
//! the reply is a typed JSON body `{"type":"error","code":404,"error":"unknown pair EURJPY: ..."}` with
//! the micro protocol's `Nats-Service-Error` and `Nats-Service-Error-Code` headers (see [`super::micro`],
//! which also counts each endpoint's requests and errors for `$SRV.STATS`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use super::checkpointer::{Job, WriterError};
use super::micro::{ErrorReply, MicroError, MicroService};
use super::router::{Control, Registry, RollbackError};
use super::stats::{self, Counters};
use crate::checkpoint::{AuditEntry, AuditOp, Outcome, Reason, Requested, StoreError};
use crate::contract::{
    ApprovalRequestReply, ApprovalsReply, AuditReply, ModelVersionReply, ModelsReply, ServiceStats, to_json_vec,
};
use crate::horizon::{Horizon, HorizonError};
use crate::nats::Subjects;
use crate::nats::connect::ConnectionEvents;
use crate::tick::Pair;

/// The service's name, as discovery shows it.
pub const SERVICE_NAME: &str = "cambio";

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The micro service or one of its endpoints could not be registered.
    #[error("micro service: {0}")]
    Register(#[from] MicroError),
}

/// What a `models` request body should look like (said in its malformed-request error).
const MODELS_BODIES: &str = "{\"op\":\"list\"}, {\"op\":\"show\",\"version\":3}, {\"op\":\"rollback\",\"version\":3}, \
    {\"op\":\"keep\",\"version\":3,\"keep\":true}, {\"op\":\"checkpoint\"}, {\"op\":\"challenge\",\"version\":3}, \
    {\"op\":\"audit\"}, {\"op\":\"approvals\"} or {\"op\":\"approve\",\"id\":1} (each may carry \"actor\":\"name\")";

/// The header naming who sends a registry request, when the body does not.
pub const ACTOR_HEADER: &str = "Cambio-Actor";
/// What a `query` request body should look like.
const QUERY_BODY: &str = "{\"horizons\":[\"1h\",\"1d\"]}";

/// Why a request failed. [`RequestError::code`] gives its HTTP-like status code.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The subject is not `<prefix>.<endpoint>.<PAIR>`.
    #[error("subject {subject}: expected {expected}")]
    Subject {
        /// The subject received.
        subject: String,
        /// The endpoint's subject pattern.
        expected: String,
    },
    /// The subject's last token is not a pair.
    #[error("`{0}` is not a pair (six uppercase letters)")]
    NotAPair(String),
    /// No tick of the pair has been received, so there is nothing to answer.
    #[error("unknown pair {0}: no tick received for it")]
    UnknownPair(Pair),
    /// The body is not JSON of the shape the endpoint takes.
    #[error("malformed request: {source}; expected {expected}")]
    Malformed {
        /// The JSON error.
        source: serde_json::Error,
        /// The bodies the endpoint takes.
        expected: &'static str,
    },
    /// A status request's body is neither empty nor JSON.
    #[error("status takes no body (or a JSON object)")]
    StatusBody,
    /// A query asked for an empty list of horizons.
    #[error("horizons is empty")]
    NoHorizons,
    /// A query named a horizon that does not parse.
    #[error("bad horizon `{text}`: {source}")]
    BadHorizon {
        /// The horizon as asked.
        text: String,
        /// Why it does not parse.
        source: HorizonError,
    },
    /// A query asked for a horizon the engine does not forecast.
    #[error("horizon {missing} is not configured; configured: {configured}")]
    HorizonNotConfigured {
        /// The horizon asked for.
        missing: Horizon,
        /// The configured horizons, comma separated.
        configured: String,
    },
    /// The pair has ticks but none was accepted yet, so there is no forecast.
    #[error("no forecast yet: no tick of this pair was accepted")]
    NoForecast,
    /// The pair's shard has not published a status yet.
    #[error("no status yet")]
    NoStatus,
    /// The pairs' registry lock is poisoned (a handler panicked while holding it).
    #[error("registry unavailable")]
    RegistryUnavailable,
    /// The model registry endpoint needs `[checkpoint] path`.
    #[error("checkpoints are not configured: set [checkpoint] path to keep model versions")]
    NoCheckpoints,
    /// The consumer loop has stopped taking requests.
    #[error("the service is shutting down")]
    ShuttingDown,
    /// The checkpoint writer could not answer (no such version, a damaged record, stopped).
    #[error(transparent)]
    Writer(#[from] WriterError),
    /// The rollback did not happen.
    #[error(transparent)]
    Rollback(#[from] RollbackError),
    /// The answer could not be encoded as JSON.
    #[error("cannot encode the reply: {0}")]
    Encode(#[source] serde_json::Error),
    /// The business figures cannot be given (no masking key, no event of the pair).
    #[error(transparent)]
    Business(#[from] super::business::BusinessError),
    /// Under the four-eyes rule a request must say who sends it.
    #[error("the four-eyes rule is on: say who you are with \"actor\" in the body or a Cambio-Actor header")]
    NoActor,
    /// The request is for another pair than the subject's.
    #[error("request {id} is for {holds}, not {pair}")]
    ApprovalPair {
        /// The request.
        id: u64,
        /// The subject's pair.
        pair: Pair,
        /// The request's pair.
        holds: Pair,
    },
}

impl RequestError {
    /// The HTTP-like status code: 400 for a bad request, 404 for something that does not exist, 503 when
    /// the service cannot do it now, 500 for a fault of the service.
    pub fn code(&self) -> u16 {
        match self {
            RequestError::Subject { .. }
            | RequestError::NotAPair(_)
            | RequestError::Malformed { .. }
            | RequestError::StatusBody
            | RequestError::NoHorizons
            | RequestError::BadHorizon { .. }
            | RequestError::HorizonNotConfigured { .. }
            | RequestError::NoActor
            | RequestError::ApprovalPair { .. } => 400,
            RequestError::UnknownPair(_) | RequestError::NoForecast | RequestError::NoStatus => 404,
            RequestError::NoCheckpoints | RequestError::ShuttingDown => 503,
            RequestError::RegistryUnavailable | RequestError::Encode(_) => 500,
            RequestError::Business(e) => e.code(),
            RequestError::Writer(e) | RequestError::Rollback(RollbackError::Writer(e)) => writer_code(e),
            RequestError::Rollback(RollbackError::ShardStopped(_) | RollbackError::MaxPairs(_)) => 503,
            RequestError::Rollback(RollbackError::WrongPair { .. } | RollbackError::NotWritten(_)) => 500,
            RequestError::Rollback(RollbackError::NoContest { .. } | RollbackError::Contest(_)) => 409,
        }
    }

    /// The reply this error is sent as.
    pub fn reply(&self) -> ErrorReply {
        ErrorReply::new(self.code(), self.to_string())
    }
}

fn writer_code(e: &WriterError) -> u16 {
    match e {
        WriterError::Store(StoreError::NotFound { .. } | StoreError::NoApproval(_)) => 404,
        WriterError::Store(StoreError::SameActor { .. }) => 403,
        WriterError::NotConfigured | WriterError::Stopped => 503,
        WriterError::Store(_) | WriterError::Part(_) => 500,
    }
}

/// The endpoints, by what they answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `<prefix>.query.<PAIR>`.
    Query,
    /// `<prefix>.status.<PAIR>`.
    Status,
    /// `<prefix>.models.<PAIR>`.
    Models,
    /// `<prefix>.business.stats.<PAIR>`.
    BusinessStats,
}

impl Kind {
    /// Every endpoint.
    const ALL: [Kind; 4] = [Kind::Query, Kind::Status, Kind::Models, Kind::BusinessStats];

    /// The endpoint's name (discovery, STATS, metrics labels).
    fn name(self) -> &'static str {
        match self {
            Kind::Query => "query",
            Kind::Status => "status",
            Kind::Models => "models",
            Kind::BusinessStats => "business_stats",
        }
    }

    /// The subject tokens between the prefix and the pair.
    fn subject(self) -> &'static str {
        match self {
            Kind::BusinessStats => "business.stats",
            other => other.name(),
        }
    }
}

/// Everything the handlers share.
pub struct ServiceState {
    /// Pairs' snapshots.
    pub registry: Registry,
    /// Subject names.
    pub subjects: Subjects,
    /// Service counters.
    pub counters: Arc<Counters>,
    /// Connection events.
    pub events: Arc<ConnectionEvents>,
    /// Requests to the consumer loop (checkpoints, rollbacks); `None` without checkpoints.
    pub control: Option<tokio::sync::mpsc::Sender<super::router::Control>>,
    /// The checkpoint writer (model registry reads and keep marks); `None` without checkpoints.
    pub writer: Option<super::checkpointer::Checkpointer>,
    /// The business figures.
    pub business: Arc<super::business::BusinessDesk>,
    /// What the metrics read (the endpoints are registered there).
    pub telemetry: Arc<super::metrics::Telemetry>,
    /// `[registry] require_approval`: a manual rollback waits for another actor's approval.
    pub require_approval: bool,
    /// Cluster mode: the partitions this instance owns. Every instance receives every request (no queue
    /// group), and only the owner of the pair's partition answers; the others stay silent.
    pub owner: Option<super::cluster::Ownership>,
}

impl ServiceState {
    /// The service-wide STATS data: counters, connection events, tick-to-forecast latency over all pairs.
    /// (Each endpoint reports its own request latency beside its counts.)
    pub fn stats(&self) -> ServiceStats {
        let mut tick = stats::empty();
        if let Ok(reg) = self.registry.read() {
            for view in reg.values() {
                view.latency.merge_into(&mut tick);
            }
        }
        ServiceStats {
            counters: self.counters.report(),
            connection: self.events.snapshot(),
            tick_to_forecast: stats::percentiles(&tick),
        }
    }

    /// The pair a request's subject names (`<prefix>.<kind>.<PAIR>`).
    fn pair(&self, subject: &str, kind: Kind) -> Result<Pair, RequestError> {
        let token = self
            .subjects
            .token(kind.subject(), subject)
            .ok_or_else(|| RequestError::Subject {
                subject: subject.to_string(),
                expected: self.subjects.endpoint(kind.subject()),
            })?;
        Pair::parse(token).ok_or_else(|| RequestError::NotAPair(token.to_string()))
    }

    fn view(&self, subject: &str, kind: Kind) -> Result<Arc<super::router::PairView>, RequestError> {
        let pair = self.pair(subject, kind)?;
        let reg = self.registry.read().map_err(|_| RequestError::RegistryUnavailable)?;
        reg.get(&pair).cloned().ok_or(RequestError::UnknownPair(pair))
    }

    /// Answers a query: the latest forecast, optionally restricted to some horizons.
    ///
    /// # Errors
    /// [`RequestError`] for a bad subject or body, an unknown pair, or no forecast yet.
    pub fn query(&self, subject: &str, body: &[u8]) -> Result<Bytes, RequestError> {
        let wanted = parse_query(body)?;
        let view = self.view(subject, Kind::Query)?;
        let forecast = view.snapshot.forecast().ok_or(RequestError::NoForecast)?;
        let json = match wanted {
            None => serde_json::to_vec(&*forecast),
            Some(wanted) => {
                let configured: Vec<Horizon> = forecast.horizons.iter().map(|h| h.horizon).collect();
                if let Some(&missing) = wanted.iter().find(|h| !configured.contains(h)) {
                    let names: Vec<String> = configured.iter().map(|h| h.to_string()).collect();
                    return Err(RequestError::HorizonNotConfigured {
                        missing,
                        configured: names.join(", "),
                    });
                }
                let mut f = (*forecast).clone();
                f.horizons.retain(|h| wanted.contains(&h.horizon));
                serde_json::to_vec(&f)
            }
        };
        json.map(Bytes::from).map_err(RequestError::Encode)
    }

    /// Answers a status request.
    ///
    /// # Errors
    /// [`RequestError`] for a bad subject or body, an unknown pair, or no status yet.
    pub fn status(&self, subject: &str, body: &[u8]) -> Result<Bytes, RequestError> {
        parse_status(body)?;
        let view = self.view(subject, Kind::Status)?;
        let status = view.snapshot.status().ok_or(RequestError::NoStatus)?;
        // The drop count as of now, not as of the snapshot: drops happen while no tick is processed.
        let dropped = self.counters.ticks_dropped.load(std::sync::atomic::Ordering::Relaxed);
        let status = if status.ticks_dropped == dropped {
            status
        } else {
            let mut s = (*status).clone();
            s.ticks_dropped = dropped;
            Arc::new(s)
        };
        serde_json::to_vec(&*status)
            .map(Bytes::from)
            .map_err(RequestError::Encode)
    }
}

impl ServiceState {
    /// Answers a business stats request: the pair's figures per period and segment.
    ///
    /// # Errors
    /// [`RequestError`] for a bad subject or body, no masking key, or a pair with no business event.
    pub fn business_stats(&self, subject: &str, body: &[u8]) -> Result<Bytes, RequestError> {
        parse_status(body)?;
        let pair = self.pair(subject, Kind::BusinessStats)?;
        let reply = self.business.stats(pair)?;
        Ok(Bytes::from(to_json_vec(&reply)))
    }
}

/// A status request's body: empty, or any JSON (reserved for options; ignored today).
fn parse_status(body: &[u8]) -> Result<(), RequestError> {
    if !body.iter().all(u8::is_ascii_whitespace) && serde_json::from_slice::<Value>(body).is_err() {
        return Err(RequestError::StatusBody);
    }
    Ok(())
}

/// Runs the body decoder of `endpoint` (`query`, `status`, `models` or `business_stats`) on `body`, exactly as its handler
/// does before it looks at any pair or state; `None` for another endpoint name. Public so the fuzz targets
/// (`tests/fuzz`) reach the decoders without a running service.
///
/// # Errors
/// The [`RequestError`] the endpoint answers for this body.
pub fn decode_body(endpoint: &str, body: &[u8]) -> Option<Result<(), RequestError>> {
    let kind = Kind::ALL.into_iter().find(|k| k.name() == endpoint)?;
    Some(match kind {
        Kind::Query => parse_query(body).map(drop),
        Kind::Status | Kind::BusinessStats => parse_status(body),
        Kind::Models => parse_models(body).map(drop),
    })
}

/// What `<prefix>.models.<PAIR>` can be asked (an empty body lists).
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum ModelsOp {
    /// The pair's versions, oldest first.
    List {
        #[serde(default)]
        actor: Option<String>,
    },
    /// One version's metadata.
    Show {
        version: u64,
        #[serde(default)]
        actor: Option<String>,
    },
    /// Replace the live model with a stored version (recorded as a new version, reason `rollback`); under
    /// the four-eyes rule, a request waiting for approval.
    Rollback {
        version: u64,
        #[serde(default)]
        actor: Option<String>,
    },
    /// Mark a version to keep whatever the retention (`"keep": false` unmarks).
    Keep {
        version: u64,
        #[serde(default = "yes")]
        keep: bool,
        #[serde(default)]
        actor: Option<String>,
    },
    /// Write a version of this pair now (reason `manual`).
    Checkpoint {
        #[serde(default)]
        actor: Option<String>,
    },
    /// Run a stored version as the pair's challenger.
    Challenge {
        version: u64,
        #[serde(default)]
        actor: Option<String>,
    },
    /// The pair's audit log.
    Audit {
        #[serde(default)]
        actor: Option<String>,
    },
    /// The requests waiting for approval.
    Approvals {
        #[serde(default)]
        actor: Option<String>,
    },
    /// Approve a pending request (by another actor than who made it) and carry it out.
    Approve {
        id: u64,
        #[serde(default)]
        actor: Option<String>,
    },
}

impl ModelsOp {
    /// The actor named in the body.
    fn actor(&self) -> Option<&str> {
        match self {
            ModelsOp::List { actor }
            | ModelsOp::Show { actor, .. }
            | ModelsOp::Rollback { actor, .. }
            | ModelsOp::Keep { actor, .. }
            | ModelsOp::Checkpoint { actor }
            | ModelsOp::Challenge { actor, .. }
            | ModelsOp::Audit { actor }
            | ModelsOp::Approvals { actor }
            | ModelsOp::Approve { actor, .. } => actor.as_deref(),
        }
    }
}

fn yes() -> bool {
    true
}

fn parse_models(body: &[u8]) -> Result<ModelsOp, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ModelsOp::List { actor: None });
    }
    serde_json::from_slice(body).map_err(|source| RequestError::Malformed {
        source,
        expected: MODELS_BODIES,
    })
}

impl ServiceState {
    /// Answers the model registry endpoint: list, show, rollback, keep, checkpoint, challenge, audit,
    /// approvals, approve. `header_actor` is the request's `Cambio-Actor` header.
    ///
    /// # Errors
    /// [`RequestError`] for a bad subject or body, no checkpoints configured, no such version, or a
    /// failure of the writer or the rollback.
    pub async fn models(&self, subject: &str, body: &[u8], header_actor: Option<&str>) -> Result<Bytes, RequestError> {
        let pair = self.pair(subject, Kind::Models)?;
        let op = parse_models(body)?;
        let (Some(writer), Some(control)) = (&self.writer, &self.control) else {
            return Err(RequestError::NoCheckpoints);
        };
        let named = op
            .actor()
            .or(header_actor)
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string);
        let actor = named.clone().unwrap_or_else(|| "unknown".into());
        let value = match op {
            ModelsOp::List { .. } => {
                let versions = writer.ask(|reply| Job::List { pair, reply }).await?;
                to_json_vec(&ModelsReply { pair, versions })
            }
            ModelsOp::Show { version, .. } => {
                let meta = writer.run(move |store| store.meta(pair, version)).await?;
                to_json_vec(&ModelVersionReply { meta })
            }
            ModelsOp::Keep { version, keep, .. } => {
                let meta = writer
                    .ask(|reply| Job::Keep {
                        pair,
                        version,
                        keep,
                        actor,
                        reply,
                    })
                    .await?;
                to_json_vec(&ModelVersionReply { meta })
            }
            ModelsOp::Rollback { version, .. } | ModelsOp::Challenge { version, .. } if self.require_approval => {
                let actor = named.ok_or(RequestError::NoActor)?;
                let requested = match op {
                    ModelsOp::Challenge { .. } => Requested::Challenge { version },
                    _ => Requested::Rollback { version },
                };
                let request = self.file_request(pair, requested, actor).await?;
                to_json_vec(&ApprovalRequestReply { request })
            }
            ModelsOp::Rollback { version, .. } => {
                let meta = ask_consumer(control, |reply| Control::Rollback {
                    pair,
                    version,
                    actor,
                    note: None,
                    reply,
                })
                .await??;
                to_json_vec(&ModelVersionReply { meta })
            }
            ModelsOp::Approve { id, .. } => {
                let actor = named.ok_or(RequestError::NoActor)?;
                let approver = actor.clone();
                let approval = writer
                    .run(move |store| store.check_approval(id, &approver, super::router::now_us()))
                    .await?;
                if approval.pair != pair {
                    return Err(RequestError::ApprovalPair {
                        id,
                        pair,
                        holds: approval.pair,
                    });
                }
                let meta = match approval.requested {
                    Requested::Rollback { version } => {
                        let note = format!(
                            "rollback to version {version}, requested by {} and approved by {actor} (request {id})",
                            approval.requested_by
                        );
                        ask_consumer(control, |reply| Control::Rollback {
                            pair,
                            version,
                            actor: approval.requested_by.clone(),
                            note: Some(note),
                            reply,
                        })
                        .await??
                    }
                    Requested::Challenge { version } => self.challenge(pair, version, &approval.requested_by).await?,
                };
                // A challenge writes no version: the approval leads to none.
                let to = matches!(approval.requested, Requested::Rollback { .. }).then_some(meta.version);
                writer
                    .run(move |store| store.complete_approval(&approval, &actor, super::router::now_us(), to))
                    .await?;
                to_json_vec(&ModelVersionReply { meta })
            }
            ModelsOp::Challenge { version, .. } => {
                let meta = self.challenge(pair, version, &actor).await?;
                to_json_vec(&ModelVersionReply { meta })
            }
            ModelsOp::Audit { .. } => {
                let entries = writer.run(move |store| store.audit(Some(pair))).await?;
                to_json_vec(&AuditReply { pair, entries })
            }
            ModelsOp::Approvals { .. } => {
                let pending = writer.run(|store| store.approvals()).await?;
                to_json_vec(&ApprovalsReply { pending })
            }
            ModelsOp::Checkpoint { .. } => {
                let metas = ask_consumer(control, |reply| Control::Checkpoint {
                    pair: Some(pair),
                    reason: Reason::Manual,
                    note: None,
                    actor: Some(actor),
                    reply: Some(reply),
                })
                .await??;
                let meta = match metas.into_iter().find(|m| m.pair == pair) {
                    Some(m) => m,
                    // Unchanged since its last version: no copy is written, that version is the answer.
                    None => writer
                        .ask(|reply| Job::List { pair, reply })
                        .await?
                        .pop()
                        .ok_or(RequestError::UnknownPair(pair))?,
                };
                to_json_vec(&ModelVersionReply { meta })
            }
        };
        Ok(Bytes::from(value))
    }
}

/// What a challenge led to.
#[derive(Debug, Clone)]
pub enum Challenged {
    /// The version runs as the pair's live challenger.
    Running(Box<crate::checkpoint::VersionMeta>),
    /// Under `[registry] require_approval`: a request waiting for another actor's approval.
    AwaitingApproval(crate::checkpoint::Approval),
}

impl ServiceState {
    /// Challenges with `version` of `pair` as `actor`, exactly as a `{"op":"challenge"}` request does:
    /// under the four-eyes rule a request waiting for approval is filed instead. Serve's periodic
    /// retraining goes through here.
    ///
    /// # Errors
    /// As the `challenge` request: no checkpoints, no such version, challengers off, the pair not served.
    pub async fn challenge_or_request(
        &self,
        pair: Pair,
        version: u64,
        actor: &str,
    ) -> Result<Challenged, RequestError> {
        if self.require_approval {
            let request = self
                .file_request(pair, Requested::Challenge { version }, actor.to_string())
                .await?;
            return Ok(Challenged::AwaitingApproval(request));
        }
        Ok(Challenged::Running(Box::new(
            self.challenge(pair, version, actor).await?,
        )))
    }

    /// Files a request waiting for another actor's approval (recorded in the audit log as pending).
    async fn file_request(
        &self,
        pair: Pair,
        requested: Requested,
        actor: String,
    ) -> Result<crate::checkpoint::Approval, RequestError> {
        let Some(writer) = &self.writer else {
            return Err(RequestError::NoCheckpoints);
        };
        let request = writer
            .run(move |store| store.request_approval(pair, requested, &actor, super::router::now_us()))
            .await?;
        tracing::warn!(pair = %pair, id = request.id, actor = %request.requested_by,
            request = %request.requested.describe(), "waits for approval by another actor");
        Ok(request)
    }

    /// Runs `version` as the pair's live challenger and records the outcome (ok or refused, with why) in
    /// the audit log under `actor`.
    async fn challenge(
        &self,
        pair: Pair,
        version: u64,
        actor: &str,
    ) -> Result<crate::checkpoint::VersionMeta, RequestError> {
        let (Some(writer), Some(control)) = (&self.writer, &self.control) else {
            return Err(RequestError::NoCheckpoints);
        };
        let result = ask_consumer(control, |reply| Control::Challenge { pair, version, reply }).await?;
        let entry =
            AuditEntry::new(super::router::now_us(), actor, AuditOp::Challenge, pair).versions(Some(version), None);
        let entry = match &result {
            Ok(_) => entry.outcome(Outcome::Ok, Some("runs as the live challenger".into())),
            Err(e) => entry.outcome(Outcome::Refused, Some(e.to_string())),
        };
        writer.run(move |store| store.append_audit(entry)).await?;
        Ok(result?)
    }
}

/// Sends a request to the consumer loop and waits for its answer ([`RequestError::ShuttingDown`] when the
/// loop has stopped).
async fn ask_consumer<T, E>(
    control: &tokio::sync::mpsc::Sender<Control>,
    make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, E>>) -> Control,
) -> Result<Result<T, E>, RequestError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    control.send(make(tx)).await.map_err(|_| RequestError::ShuttingDown)?;
    rx.await.map_err(|_| RequestError::ShuttingDown)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    horizons: Vec<String>,
}

/// The horizons a query asks for: `None` for all (empty body).
fn parse_query(body: &[u8]) -> Result<Option<Vec<Horizon>>, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let q: QueryBody = serde_json::from_slice(body).map_err(|source| RequestError::Malformed {
        source,
        expected: QUERY_BODY,
    })?;
    if q.horizons.is_empty() {
        return Err(RequestError::NoHorizons);
    }
    q.horizons
        .iter()
        .map(|h| {
            h.parse::<Horizon>().map_err(|source| RequestError::BadHorizon {
                text: h.clone(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// The running micro service: its discovery task and one task per endpoint.
#[derive(Debug)]
pub struct Running {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops answering: the tasks end and their subscriptions are dropped (unsubscribed).
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Registers the endpoints, then starts answering discovery (so a service that answers PING has all its
/// endpoints); one task per endpoint handles its requests in order.
///
/// # Errors
/// [`ServiceError`] when a subscription is refused.
pub async fn start(client: &async_nats::Client, state: Arc<ServiceState>) -> Result<Running, ServiceError> {
    let st = state.clone();
    let mut micro = MicroService::new(
        SERVICE_NAME,
        env!("CARGO_PKG_VERSION"),
        "cambio: USD/MXN and other FX forecasts with intervals, data quality and drift",
        Box::new(move || serde_json::to_value(st.stats()).unwrap_or_default()),
    );
    if state.owner.is_some() {
        micro.without_queue_group();
    }
    let mut tasks = Vec::new();
    for kind in Kind::ALL {
        let (endpoint, mut requests) = micro
            .add_endpoint(client, kind.name(), &state.subjects.endpoint(kind.subject()))
            .await?;
        let state = state.clone();
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(m) = requests.next().await {
                if let Some(owner) = &state.owner
                    && kind != Kind::BusinessStats
                    && let Ok(pair) = state.pair(&m.subject, kind)
                    && !owner.owns(pair)
                {
                    continue;
                }
                let started = Instant::now();
                let actor = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(ACTOR_HEADER))
                    .map(|v| v.as_str().to_string());
                let result = state.answer(kind, &m.subject, &m.payload, actor.as_deref()).await;
                if result.is_err() {
                    Counters::inc(&state.counters.request_errors);
                }
                let reply = result.map_err(|e| e.reply());
                endpoint.reply(&client, &m, started, reply).await;
            }
        }));
    }
    state.telemetry.set_endpoints(micro.endpoints());
    tracing::debug!(id = micro.id(), "micro service registered");
    tasks.push(micro.start(client).await?);
    Ok(Running { tasks })
}

impl ServiceState {
    async fn answer(
        &self,
        kind: Kind,
        subject: &str,
        body: &[u8],
        header_actor: Option<&str>,
    ) -> Result<Bytes, RequestError> {
        match kind {
            Kind::Query => self.query(subject, body),
            Kind::Status => self.status(subject, body),
            Kind::Models => self.models(subject, body, header_actor).await,
            Kind::BusinessStats => self.business_stats(subject, body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_bodies() {
        assert_eq!(parse_models(b"").unwrap(), ModelsOp::List { actor: None });
        assert_eq!(
            parse_models(br#"{"op":"rollback","version":3}"#).unwrap(),
            ModelsOp::Rollback {
                version: 3,
                actor: None
            }
        );
        assert_eq!(
            parse_models(br#"{"op":"keep","version":2}"#).unwrap(),
            ModelsOp::Keep {
                version: 2,
                keep: true,
                actor: None
            }
        );
        assert_eq!(
            parse_models(br#"{"op":"approve","id":4,"actor":"bob"}"#).unwrap(),
            ModelsOp::Approve {
                id: 4,
                actor: Some("bob".into())
            }
        );
        for bad in [
            &br#"{"op":"rollback"}"#[..],
            br#"{"op":"delete","version":1}"#,
            b"[1]",
            b"\xff",
        ] {
            assert_eq!(parse_models(bad).unwrap_err().code(), 400);
        }
    }

    #[test]
    fn query_bodies() {
        assert_eq!(parse_query(b"").unwrap(), None);
        assert_eq!(parse_query(b"  \n").unwrap(), None);
        let h = parse_query(br#"{"horizons":["1h","1step"]}"#).unwrap().unwrap();
        assert_eq!(h.len(), 2);
        let bad = |body: &[u8]| parse_query(body).unwrap_err();
        assert!(matches!(
            bad(br#"{"horizons":["2x"]}"#),
            RequestError::BadHorizon { .. }
        ));
        assert!(matches!(bad(br#"{"horizons":[]}"#), RequestError::NoHorizons));
        for malformed in [&br#"{"horizon":["1h"]}"#[..], b"\xff\x00", br#"{"horizons":"1h"}"#] {
            assert!(matches!(bad(malformed), RequestError::Malformed { .. }));
        }
        for body in [
            &br#"{"horizons":["2x"]}"#[..],
            br#"{"horizons":[]}"#,
            br#"{"horizons":"1h"}"#,
        ] {
            assert_eq!(bad(body).code(), 400);
        }
    }

    #[test]
    fn codes_follow_the_variant() {
        let pair = Pair::parse("USDMXN").unwrap();
        let not_found = WriterError::Store(StoreError::NotFound { pair, version: 9 });
        assert_eq!(RequestError::from(not_found).code(), 404);
        let rollback_not_found = RollbackError::Writer(WriterError::Store(StoreError::NotFound { pair, version: 9 }));
        assert_eq!(RequestError::from(rollback_not_found).code(), 404);
        assert_eq!(RequestError::from(WriterError::Stopped).code(), 503);
        assert_eq!(
            RequestError::from(WriterError::Store(StoreError::NoGoodVersion(pair))).code(),
            500
        );
        assert_eq!(RequestError::from(RollbackError::MaxPairs(pair)).code(), 503);
        assert_eq!(RequestError::UnknownPair(pair).code(), 404);
        assert_eq!(RequestError::NoCheckpoints.code(), 503);
        assert_eq!(
            RequestError::from(super::super::business::BusinessError::NoMaskKey).code(),
            503
        );
        assert_eq!(
            RequestError::from(super::super::business::BusinessError::UnknownPair(pair)).code(),
            404
        );
        let reply = RequestError::UnknownPair(pair).reply();
        assert_eq!(
            reply,
            ErrorReply::new(404, "unknown pair USDMXN: no tick received for it")
        );
    }
}
