//! The NATS micro protocol (ADR-32, `io.nats.micro.v1`): discovery on `$SRV.PING`, `$SRV.INFO` and
//! `$SRV.STATS` (each on `$SRV.<VERB>`, `$SRV.<VERB>.<name>` and `$SRV.<VERB>.<name>.<id>`), and the
//! statistics of each endpoint.
//!
//! Why by hand rather than async-nats's `service` module: that module sends error replies with an empty
//! body, counts an error only when the reply goes through its own error path, and hands a single stats
//! callback every endpoint, so each endpoint reported a copy of the service-wide figures. cambio's error
//! replies carry the protocol's headers *and* a typed JSON body (the protocol allows both), each endpoint
//! counts its own requests, errors, last error and latency, and the service-wide figures are reported
//! once, in the STATS reply's top-level `data` (an addition the protocol's readers ignore).
//!
//! An endpoint records a request *before* publishing its reply: a client that has its reply and then asks
//! `$SRV.STATS` always sees that request counted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::select_all;
use serde::Serialize;
use serde_json::Value;

use super::stats::Latency;

/// The protocol's error description header (the error's message).
pub use crate::nats::headers::SERVICE_ERROR as ERROR_HEADER;
/// The protocol's error code header (an HTTP-like status code).
pub use crate::nats::headers::SERVICE_ERROR_CODE as ERROR_CODE_HEADER;
/// The queue group every endpoint joins, so several instances share requests (the protocol's default).
pub const QUEUE_GROUP: &str = "q";

const PING_TYPE: &str = "io.nats.micro.v1.ping_response";
const INFO_TYPE: &str = "io.nats.micro.v1.info_response";
const STATS_TYPE: &str = "io.nats.micro.v1.stats_response";

/// Why the micro service could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MicroError {
    /// A discovery or endpoint subscription was refused by the client (closed connection, bad subject).
    #[error("subscribe to {subject}: {source}")]
    Subscribe {
        /// The subject.
        subject: String,
        /// The client's error.
        source: async_nats::SubscribeError,
    },
}

pub use crate::contract::ErrorReply;

/// How an error reply goes on the wire: its JSON body, sent with the protocol's `Nats-Service-Error` (the
/// message) and `Nats-Service-Error-Code` (the code) headers.
pub trait ErrorReplyBody {
    /// The JSON body.
    fn body(&self) -> Bytes;

    /// The protocol's headers (the message on one line, and the code).
    fn headers(&self) -> HeaderMap;
}

impl ErrorReplyBody for ErrorReply {
    fn body(&self) -> Bytes {
        // A struct of a string and two scalars always serializes; the fallback is never reached.
        serde_json::to_vec(self).map(Bytes::from).unwrap_or_default()
    }

    /// The protocol's error headers. Header values cannot hold line breaks, so they become spaces.
    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let message: String = self
            .error
            .chars()
            .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
            .collect();
        h.insert(ERROR_HEADER, message.as_str());
        h.insert(ERROR_CODE_HEADER, self.code.to_string().as_str());
        h
    }
}

/// What one endpoint counted.
#[derive(Debug, Default, Clone)]
struct Counts {
    requests: u64,
    errors: u64,
    /// `<code>:<message>` of the last error reply (the form async-nats's client reads back); empty when none.
    last_error: String,
    processing_ns: u64,
}

/// One endpoint: its identity on the wire and what it counted since the service started.
#[derive(Debug)]
pub struct Endpoint {
    name: String,
    subject: String,
    counts: Mutex<Counts>,
    latency: Latency,
}

impl Endpoint {
    /// Its name (`query`, `status`, …).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its request-latency histogram.
    pub fn latency(&self) -> &Latency {
        &self.latency
    }

    /// Requests answered and requests answered with an error, so far.
    pub fn counts(&self) -> (u64, u64) {
        self.counts.lock().map(|c| (c.requests, c.errors)).unwrap_or_default()
    }

    /// Counts one request handled in `elapsed`, and its error if the reply is one.
    fn record(&self, elapsed: Duration, error: Option<&ErrorReply>) {
        self.latency
            .record_us(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
        if let Ok(mut c) = self.counts.lock() {
            c.requests += 1;
            c.processing_ns = c
                .processing_ns
                .saturating_add(u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX));
            if let Some(e) = error {
                c.errors += 1;
                c.last_error = format!("{}:{}", e.code, e.error);
            }
        }
    }

    /// Records the request, then sends its reply: the body on success; the protocol's error headers and
    /// the typed JSON error body otherwise. A request without a reply subject is counted, not answered.
    pub async fn reply(
        &self,
        client: &async_nats::Client,
        request: &Message,
        started: Instant,
        result: Result<Bytes, ErrorReply>,
    ) {
        self.record(started.elapsed(), result.as_ref().err());
        let Some(to) = request.reply.clone() else {
            tracing::debug!(endpoint = %self.name, subject = %request.subject, "request without a reply subject");
            return;
        };
        let sent = match result {
            Ok(body) => client.publish(to, body).await,
            Err(e) => {
                tracing::debug!(endpoint = %self.name, subject = %request.subject, code = e.code, error = %e.error,
                    "error reply");
                client.publish_with_headers(to, e.headers(), e.body()).await
            }
        };
        if let Err(e) = sent {
            tracing::debug!(endpoint = %self.name, error = %e, "reply not sent");
        }
    }

    fn info(&self) -> EndpointInfo<'_> {
        EndpointInfo {
            name: &self.name,
            subject: &self.subject,
            queue_group: QUEUE_GROUP,
            metadata: BTreeMap::new(),
        }
    }

    fn stats(&self) -> EndpointStats<'_> {
        let c = self.counts.lock().map(|c| c.clone()).unwrap_or_default();
        EndpointStats {
            name: &self.name,
            subject: &self.subject,
            queue_group: QUEUE_GROUP,
            num_requests: c.requests,
            num_errors: c.errors,
            average_processing_time: c.processing_ns.checked_div(c.requests).unwrap_or(0),
            processing_time: c.processing_ns,
            last_error: c.last_error,
            data: EndpointData {
                latency: self.latency.report(),
            },
        }
    }
}

/// `$SRV.PING` reply.
#[derive(Serialize)]
struct PingResponse<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    metadata: BTreeMap<String, String>,
}

/// `$SRV.INFO` reply.
#[derive(Serialize)]
struct InfoResponse<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    metadata: BTreeMap<String, String>,
    description: &'a str,
    endpoints: Vec<EndpointInfo<'a>>,
}

/// One endpoint in an INFO reply.
#[derive(Serialize)]
struct EndpointInfo<'a> {
    name: &'a str,
    subject: &'a str,
    queue_group: &'a str,
    metadata: BTreeMap<String, String>,
}

/// `$SRV.STATS` reply.
#[derive(Serialize)]
struct StatsResponse<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    metadata: BTreeMap<String, String>,
    /// RFC 3339, UTC.
    started: &'a str,
    endpoints: Vec<EndpointStats<'a>>,
    /// cambio's service-wide figures (counters, connection events, tick-to-forecast latency).
    data: Value,
}

/// One endpoint in a STATS reply; times in nanoseconds.
#[derive(Serialize)]
struct EndpointStats<'a> {
    name: &'a str,
    subject: &'a str,
    queue_group: &'a str,
    num_requests: u64,
    num_errors: u64,
    last_error: String,
    processing_time: u64,
    average_processing_time: u64,
    data: EndpointData,
}

/// cambio's figures for one endpoint.
#[derive(Serialize)]
struct EndpointData {
    /// Receipt to reply, µs: `{count, p50_us, p90_us, p99_us, p999_us, max_us}`.
    latency: crate::contract::Percentiles,
}

/// The service-wide figures reported in STATS, computed when asked.
pub type ServiceData = Box<dyn Fn() -> Value + Send + Sync>;

/// A micro service being assembled: add its endpoints, then [`MicroService::start`] answers discovery.
pub struct MicroService {
    name: String,
    id: String,
    version: String,
    description: String,
    started: String,
    endpoints: Vec<Arc<Endpoint>>,
    data: ServiceData,
    /// Endpoints join the [`QUEUE_GROUP`] (false in cluster mode).
    queue: bool,
}

impl std::fmt::Debug for MicroService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MicroService")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("endpoints", &self.endpoints.len())
            .finish()
    }
}

impl MicroService {
    /// A service instance named `name` (letters, digits, `-`, `_`), with a fresh instance id.
    pub fn new(name: &str, version: &str, description: &str, data: ServiceData) -> MicroService {
        MicroService {
            name: name.to_string(),
            id: instance_id(),
            version: version.to_string(),
            description: description.to_string(),
            started: crate::time::format_ts(super::router::now_us()),
            endpoints: Vec::new(),
            data,
            queue: true,
        }
    }

    /// Endpoints added from now on subscribe on their own, not in the [`QUEUE_GROUP`]: every instance
    /// receives every request (cluster mode, where only the owner of a pair answers).
    pub fn without_queue_group(&mut self) {
        self.queue = false;
    }

    /// The endpoints added so far.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints.clone()
    }

    /// This instance's id (unique per process start).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds an endpoint named `name` on `subject` (in the [`QUEUE_GROUP`]): returns it, to reply
    /// through, and its requests.
    ///
    /// # Errors
    /// [`MicroError::Subscribe`] when the client refuses the subscription.
    pub async fn add_endpoint(
        &mut self,
        client: &async_nats::Client,
        name: &str,
        subject: &str,
    ) -> Result<(Arc<Endpoint>, Subscriber), MicroError> {
        let requests = if self.queue {
            client
                .queue_subscribe(subject.to_string(), QUEUE_GROUP.to_string())
                .await
        } else {
            client.subscribe(subject.to_string()).await
        }
        .map_err(|source| MicroError::Subscribe {
            subject: subject.to_string(),
            source,
        })?;
        let endpoint = Arc::new(Endpoint {
            name: name.to_string(),
            subject: subject.to_string(),
            counts: Mutex::default(),
            latency: Latency::default(),
        });
        self.endpoints.push(endpoint.clone());
        Ok((endpoint, requests))
    }

    /// Subscribes to the discovery subjects and answers them until the returned task is aborted. Add the
    /// endpoints first: a service that answers PING has all its endpoints.
    ///
    /// # Errors
    /// [`MicroError::Subscribe`] when the client refuses a subscription.
    pub async fn start(self, client: &async_nats::Client) -> Result<tokio::task::JoinHandle<()>, MicroError> {
        let mut subs = Vec::new();
        for verb in [Verb::Ping, Verb::Info, Verb::Stats] {
            let v = verb.name();
            for subject in [
                format!("$SRV.{v}"),
                format!("$SRV.{v}.{}", self.name),
                format!("$SRV.{v}.{}.{}", self.name, self.id),
            ] {
                let sub = client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|source| MicroError::Subscribe { subject, source })?;
                subs.push(sub.map(move |m| (verb, m)));
            }
        }
        let client = client.clone();
        Ok(tokio::spawn(async move {
            let mut requests = select_all(subs);
            while let Some((verb, m)) = requests.next().await {
                let Some(to) = m.reply else { continue };
                let body = match self.answer(verb) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!(error = %e, "discovery reply not encoded");
                        continue;
                    }
                };
                if let Err(e) = client.publish(to, body).await {
                    tracing::debug!(error = %e, "discovery reply not sent");
                }
            }
        }))
    }

    /// The reply to a discovery request.
    fn answer(&self, verb: Verb) -> serde_json::Result<Bytes> {
        let json = match verb {
            Verb::Ping => serde_json::to_vec(&PingResponse {
                kind: PING_TYPE,
                name: &self.name,
                id: &self.id,
                version: &self.version,
                metadata: BTreeMap::new(),
            }),
            Verb::Info => serde_json::to_vec(&InfoResponse {
                kind: INFO_TYPE,
                name: &self.name,
                id: &self.id,
                version: &self.version,
                metadata: BTreeMap::new(),
                description: &self.description,
                endpoints: self.endpoints.iter().map(|e| e.info()).collect(),
            }),
            Verb::Stats => serde_json::to_vec(&StatsResponse {
                kind: STATS_TYPE,
                name: &self.name,
                id: &self.id,
                version: &self.version,
                metadata: BTreeMap::new(),
                started: &self.started,
                endpoints: self.endpoints.iter().map(|e| e.stats()).collect(),
                data: (self.data)(),
            }),
        };
        json.map(Bytes::from)
    }
}

/// The discovery requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verb {
    Ping,
    Info,
    Stats,
}

impl Verb {
    fn name(self) -> &'static str {
        match self {
            Verb::Ping => "PING",
            Verb::Info => "INFO",
            Verb::Stats => "STATS",
        }
    }
}

/// A 22-character base-62 instance id from 128 random bits (std's randomly keyed hasher, mixed with the
/// process id and the clock), so two instances of the service are told apart.
fn instance_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let random = |salt: u64| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(salt);
        h.write_u32(std::process::id());
        h.write_i64(super::router::now_us());
        h.finish()
    };
    let mut n = (u128::from(random(1)) << 64) | u128::from(random(2));
    (0..22)
        .map(|_| {
            let c = ALPHABET[(n % 62) as usize];
            n /= 62;
            char::from(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint() -> Endpoint {
        Endpoint {
            name: "query".into(),
            subject: "fx.query.*".into(),
            counts: Mutex::default(),
            latency: Latency::default(),
        }
    }

    #[test]
    fn an_endpoint_counts_its_requests_errors_and_last_error() {
        let e = endpoint();
        e.record(Duration::from_micros(10), None);
        e.record(
            Duration::from_micros(30),
            Some(&ErrorReply::new(404, "unknown pair EURJPY")),
        );
        e.record(
            Duration::from_micros(20),
            Some(&ErrorReply::new(400, "horizons is empty")),
        );
        e.record(Duration::from_micros(40), None);
        let v = serde_json::to_value(e.stats()).unwrap();
        assert_eq!(v["num_requests"], 4);
        assert_eq!(v["num_errors"], 2);
        assert_eq!(v["last_error"], "400:horizons is empty");
        assert_eq!(v["processing_time"], 100_000);
        assert_eq!(v["average_processing_time"], 25_000);
        assert_eq!(v["queue_group"], "q");
        assert_eq!(v["data"]["latency"]["count"], 4);
    }

    #[test]
    fn a_fresh_endpoint_reports_zeros_and_no_error() {
        let v = serde_json::to_value(endpoint().stats()).unwrap();
        assert_eq!(
            (
                &v["num_requests"],
                &v["num_errors"],
                &v["last_error"],
                &v["average_processing_time"]
            ),
            (
                &serde_json::json!(0),
                &serde_json::json!(0),
                &serde_json::json!(""),
                &serde_json::json!(0)
            )
        );
    }

    #[test]
    fn error_replies_are_typed_json_with_single_line_headers() {
        let e = ErrorReply::new(400, "malformed request:\r\nline two");
        let v: Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "error", "code": 400, "error": "malformed request:\r\nline two"})
        );
        let h = e.headers();
        assert_eq!(h.get(ERROR_HEADER).unwrap().as_str(), "malformed request:  line two");
        assert_eq!(h.get(ERROR_CODE_HEADER).unwrap().as_str(), "400");
    }

    #[test]
    fn instance_ids_are_distinct_base62() {
        let (a, b) = (instance_id(), instance_id());
        assert_eq!(a.len(), 22);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn discovery_replies_carry_their_type_tags() {
        let mut s = MicroService::new("cambio", "0.1.0", "test", Box::new(|| serde_json::json!({"k": 1})));
        s.endpoints.push(Arc::new(endpoint()));
        let get = |verb| serde_json::from_slice::<Value>(&s.answer(verb).unwrap()).unwrap();
        assert_eq!(get(Verb::Ping)["type"], PING_TYPE);
        let info = get(Verb::Info);
        assert_eq!(info["type"], INFO_TYPE);
        assert_eq!(info["endpoints"][0]["subject"], "fx.query.*");
        let stats = get(Verb::Stats);
        assert_eq!(stats["type"], STATS_TYPE);
        assert_eq!(stats["id"], s.id());
        assert_eq!(stats["data"]["k"], 1);
        assert_eq!(stats["endpoints"][0]["name"], "query");
    }
}
