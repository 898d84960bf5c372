//! Request-reply for credit systems: the NATS micro service `cambio`, discoverable with `$SRV.PING`,
//! `$SRV.INFO` and `$SRV.STATS` (and so by `nats micro ls`).
//!
//! - `<prefix>.query.<PAIR>`: the latest forecast; an optional body `{"horizons":["1h","1d"]}` selects
//!   horizons.
//! - `<prefix>.status.<PAIR>`: quality, drift, the model's identity and its prequential metrics.
//! - `<prefix>.models.<PAIR>`: the model registry (with `[checkpoint]`): `{"op":"list"}` (or no body),
//!   `{"op":"show","version":3}`, `{"op":"rollback","version":3}`, `{"op":"keep","version":3,"keep":true}`,
//!   `{"op":"checkpoint"}`. Rollbacks and checkpoints go through the consumer loop so they are ordered with
//!   the pair's ticks; listing and keep marks go straight to the checkpoint writer.
//!
//! Handlers read the shards' published snapshots (an `Arc` clone under a short lock), so queries never wait
//! for, or slow, the tick path. Errors are JSON bodies `{"error":{"code":..,"message":..}}` with the micro
//! protocol's `Nats-Service-Error` and `Nats-Service-Error-Code` headers. (async-nats only sets those headers
//! with an empty body, so the service sets them itself to keep the JSON body, and counts errors in its own
//! stats, `request_errors`.)

use std::sync::Arc;
use std::time::Instant;

use async_nats::HeaderMap;
use async_nats::service::{Request, Service, ServiceExt};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};

use super::checkpointer::Job;
use super::router::{Control, Registry};
use super::stats::{self, Counters, Latency};
use crate::checkpoint::Reason;
use crate::horizon::Horizon;
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
    Register(String),
}

/// A request error: code and message.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestError {
    /// HTTP-like status code (400 bad request, 404 not found).
    pub code: u16,
    /// What was wrong.
    pub message: String,
}

impl RequestError {
    fn new(code: u16, message: impl Into<String>) -> RequestError {
        RequestError {
            code,
            message: message.into(),
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
    /// Query latency (receipt to reply handed to the client), µs.
    pub query_latency: Latency,
    /// Status request latency, µs.
    pub status_latency: Latency,
    /// Requests to the consumer loop (checkpoints, rollbacks); `None` without checkpoints.
    pub control: Option<tokio::sync::mpsc::Sender<super::router::Control>>,
    /// The checkpoint writer (model registry reads and keep marks); `None` without checkpoints.
    pub writer: Option<super::checkpointer::Checkpointer>,
}

impl ServiceState {
    /// STATS data: counters, connection events, tick-to-forecast latency over all pairs, query latencies.
    pub fn stats(&self) -> Value {
        let mut tick = stats::empty();
        if let Ok(reg) = self.registry.read() {
            for view in reg.values() {
                view.latency.merge_into(&mut tick);
            }
        }
        json!({
            "counters": self.counters.report(),
            "connection": self.events.snapshot(),
            "tick_to_forecast": stats::percentiles(&tick),
            "query": self.query_latency.report(),
            "status": self.status_latency.report(),
        })
    }

    fn view(&self, subject: &str, kind: &str) -> Result<Arc<super::router::PairView>, RequestError> {
        let token = self.subjects.token(kind, subject).ok_or_else(|| {
            RequestError::new(
                400,
                format!("subject {subject}: expected {}", self.subjects.endpoint(kind)),
            )
        })?;
        let pair = Pair::parse(token)
            .ok_or_else(|| RequestError::new(400, format!("{token:?} is not a pair (six uppercase letters)")))?;
        let reg = self
            .registry
            .read()
            .map_err(|_| RequestError::new(500, "registry unavailable"))?;
        reg.get(&pair)
            .cloned()
            .ok_or_else(|| RequestError::new(404, format!("unknown pair {pair}: no tick received for it")))
    }

    /// Answers a query: the latest forecast, optionally restricted to some horizons.
    pub fn query(&self, subject: &str, body: &[u8]) -> Result<Bytes, RequestError> {
        let wanted = parse_query(body)?;
        let view = self.view(subject, "query")?;
        let forecast = view
            .snapshot
            .forecast()
            .ok_or_else(|| RequestError::new(404, "no forecast yet: no tick of this pair was accepted"))?;
        let json = match wanted {
            None => serde_json::to_vec(&*forecast),
            Some(wanted) => {
                let configured: Vec<Horizon> = forecast.horizons.iter().map(|h| h.horizon).collect();
                if let Some(missing) = wanted.iter().find(|h| !configured.contains(h)) {
                    let names: Vec<String> = configured.iter().map(|h| h.to_string()).collect();
                    return Err(RequestError::new(
                        400,
                        format!("horizon {missing} is not configured; configured: {}", names.join(", ")),
                    ));
                }
                let mut f = (*forecast).clone();
                f.horizons.retain(|h| wanted.contains(&h.horizon));
                serde_json::to_vec(&f)
            }
        };
        json.map(Bytes::from).map_err(|e| RequestError::new(500, e.to_string()))
    }

    /// Answers a status request.
    pub fn status(&self, subject: &str, body: &[u8]) -> Result<Bytes, RequestError> {
        if !body.iter().all(u8::is_ascii_whitespace) && serde_json::from_slice::<Value>(body).is_err() {
            return Err(RequestError::new(400, "status takes no body (or a JSON object)"));
        }
        let view = self.view(subject, "status")?;
        let status = view
            .snapshot
            .status()
            .ok_or_else(|| RequestError::new(404, "no status yet"))?;
        serde_json::to_vec(&*status)
            .map(Bytes::from)
            .map_err(|e| RequestError::new(500, e.to_string()))
    }
}

/// What `<prefix>.models.<PAIR>` can be asked (an empty body lists).
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
enum ModelsOp {
    /// The pair's versions, oldest first.
    List,
    /// One version's metadata.
    Show { version: u64 },
    /// Replace the live model with a stored version (recorded as a new version, reason `rollback`).
    Rollback { version: u64 },
    /// Mark a version to keep whatever the retention (`"keep": false` unmarks).
    Keep {
        version: u64,
        #[serde(default = "yes")]
        keep: bool,
    },
    /// Write a version of this pair now (reason `manual`).
    Checkpoint,
}

fn yes() -> bool {
    true
}

fn parse_models(body: &[u8]) -> Result<ModelsOp, RequestError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(ModelsOp::List);
    }
    serde_json::from_slice(body).map_err(|e| {
        RequestError::new(
            400,
            format!(
                "malformed request: {e}; expected {{\"op\":\"list\"}}, {{\"op\":\"show\",\"version\":3}}, \
                 {{\"op\":\"rollback\",\"version\":3}}, {{\"op\":\"keep\",\"version\":3,\"keep\":true}} or {{\"op\":\"checkpoint\"}}"
            ),
        )
    })
}

impl ServiceState {
    /// Answers the model registry endpoint: list, show, rollback, keep, checkpoint.
    pub async fn models(&self, subject: &str, body: &[u8]) -> Result<Bytes, RequestError> {
        let token = self.subjects.token("models", subject).ok_or_else(|| {
            RequestError::new(
                400,
                format!("subject {subject}: expected {}", self.subjects.endpoint("models")),
            )
        })?;
        let pair = Pair::parse(token)
            .ok_or_else(|| RequestError::new(400, format!("{token:?} is not a pair (six uppercase letters)")))?;
        let op = parse_models(body)?;
        let (Some(writer), Some(control)) = (&self.writer, &self.control) else {
            return Err(RequestError::new(
                503,
                "checkpoints are not configured: set [checkpoint] path to keep model versions",
            ));
        };
        let failed = |e: String| {
            let code = if e.contains("has no version") { 404 } else { 500 };
            RequestError::new(code, e)
        };
        let value = match op {
            ModelsOp::List => {
                let versions = writer.ask(|reply| Job::List { pair, reply }).await.map_err(failed)?;
                json!({ "pair": pair, "versions": versions })
            }
            ModelsOp::Show { version } => {
                let versions = writer.ask(|reply| Job::List { pair, reply }).await.map_err(failed)?;
                let meta = versions
                    .into_iter()
                    .find(|m| m.version == version)
                    .ok_or_else(|| RequestError::new(404, format!("{pair} has no version {version}")))?;
                json!(meta)
            }
            ModelsOp::Keep { version, keep } => {
                let meta = writer
                    .ask(|reply| Job::Keep {
                        pair,
                        version,
                        keep,
                        reply,
                    })
                    .await
                    .map_err(failed)?;
                json!(meta)
            }
            ModelsOp::Rollback { version } => {
                let meta = ask_consumer(control, |reply| Control::Rollback { pair, version, reply })
                    .await?
                    .map_err(failed)?;
                json!(meta)
            }
            ModelsOp::Checkpoint => {
                let metas = ask_consumer(control, |reply| Control::Checkpoint {
                    pair: Some(pair),
                    reason: Reason::Manual,
                    note: None,
                    reply: Some(reply),
                })
                .await?
                .map_err(failed)?;
                let meta = metas
                    .into_iter()
                    .find(|m| m.pair == pair)
                    .ok_or_else(|| RequestError::new(404, format!("unknown pair {pair}: no tick received for it")))?;
                json!(meta)
            }
        };
        serde_json::to_vec(&value)
            .map(Bytes::from)
            .map_err(|e| RequestError::new(500, e.to_string()))
    }
}

/// Sends a request to the consumer loop and waits for its answer (503 when the service is stopping).
async fn ask_consumer<T>(
    control: &tokio::sync::mpsc::Sender<Control>,
    make: impl FnOnce(super::checkpointer::Reply<T>) -> Control,
) -> Result<Result<T, String>, RequestError> {
    let stopping = |_| RequestError::new(503, "the service is shutting down");
    let (tx, rx) = tokio::sync::oneshot::channel();
    control.send(make(tx)).await.map_err(|e| stopping(e.to_string()))?;
    rx.await.map_err(|e| stopping(e.to_string()))
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
    let q: QueryBody = serde_json::from_slice(body).map_err(|e| {
        RequestError::new(
            400,
            format!("malformed request: {e}; expected {{\"horizons\":[\"1h\",\"1d\"]}}"),
        )
    })?;
    if q.horizons.is_empty() {
        return Err(RequestError::new(400, "horizons is empty"));
    }
    q.horizons
        .iter()
        .map(|h| {
            h.parse::<Horizon>()
                .map_err(|e| RequestError::new(400, format!("bad horizon {h:?}: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// Registers the micro service and spawns one task per endpoint. Returns the service (stop it on shutdown)
/// and the endpoint tasks.
///
/// # Errors
/// [`ServiceError`] when registration fails.
pub async fn start(
    client: &async_nats::Client,
    state: Arc<ServiceState>,
) -> Result<(Service, Vec<tokio::task::JoinHandle<()>>), ServiceError> {
    let st = state.clone();
    let service = client
        .service_builder()
        .description("cambio: USD/MXN and other FX forecasts with intervals, data quality and drift")
        .stats_handler(move |_endpoint, _stats| st.stats())
        .start(SERVICE_NAME, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| ServiceError::Register(e.to_string()))?;
    let mut tasks = Vec::new();
    for kind in ["query", "status", "models"] {
        let endpoint = service
            .endpoint_builder()
            .name(kind)
            .add(state.subjects.endpoint(kind))
            .await
            .map_err(|e| ServiceError::Register(e.to_string()))?;
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut endpoint = endpoint;
            while let Some(req) = endpoint.next().await {
                handle(&state, kind, req).await;
            }
        }));
    }
    Ok((service, tasks))
}

async fn handle(state: &ServiceState, kind: &str, req: Request) {
    let start = Instant::now();
    let subject = req.message.subject.as_str();
    let result = match kind {
        "query" => state.query(subject, &req.message.payload),
        "status" => state.status(subject, &req.message.payload),
        _ => state.models(subject, &req.message.payload).await,
    };
    let sent = match result {
        Ok(body) => req.respond(Ok(body)).await,
        Err(e) => {
            Counters::inc(&state.counters.request_errors);
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Service-Error", e.message.as_str());
            headers.insert("Nats-Service-Error-Code", e.code.to_string().as_str());
            let body = json!({"error": {"code": e.code, "message": e.message}});
            req.respond_with_headers(Ok(Bytes::from(body.to_string())), headers)
                .await
        }
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "reply not sent");
    }
    let us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    match kind {
        "query" => state.query_latency.record_us(us),
        "status" => state.status_latency.record_us(us),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_bodies() {
        assert_eq!(parse_models(b"").unwrap(), ModelsOp::List);
        assert_eq!(
            parse_models(br#"{"op":"rollback","version":3}"#).unwrap(),
            ModelsOp::Rollback { version: 3 }
        );
        assert_eq!(
            parse_models(br#"{"op":"keep","version":2}"#).unwrap(),
            ModelsOp::Keep { version: 2, keep: true }
        );
        for bad in [
            &br#"{"op":"rollback"}"#[..],
            br#"{"op":"delete","version":1}"#,
            b"[1]",
            b"\xff",
        ] {
            assert_eq!(parse_models(bad).unwrap_err().code, 400);
        }
    }

    #[test]
    fn query_bodies() {
        assert_eq!(parse_query(b"").unwrap(), None);
        assert_eq!(parse_query(b"  \n").unwrap(), None);
        let h = parse_query(br#"{"horizons":["1h","1step"]}"#).unwrap().unwrap();
        assert_eq!(h.len(), 2);
        for (bad, needle) in [
            (&br#"{"horizons":["2x"]}"#[..], "bad horizon"),
            (br#"{"horizons":[]}"#, "empty"),
            (br#"{"horizon":["1h"]}"#, "malformed"),
            (b"\xff\x00", "malformed"),
            (br#"{"horizons":"1h"}"#, "malformed"),
        ] {
            let e = parse_query(bad).unwrap_err();
            assert_eq!(e.code, 400);
            assert!(e.message.contains(needle), "{}", e.message);
        }
    }
}
