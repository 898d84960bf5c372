//! The HTTP endpoint Prometheus and an orchestrator ask, shared by `serve`, `archive` and `sources run`:
//! `/metrics` (OpenMetrics or Prometheus text), `/healthz` (the process answers) and, where the command
//! has a notion of readiness, `/readyz` (for serve: connected, state restored, consuming). The listener is
//! bound before the command connects to NATS, so an address in use stops it at start with a clear error.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// The OpenMetrics text format's content type, which Prometheus reads.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Most connections served at once (a scrape endpoint needs few; the rest wait in the backlog).
const MAX_CONNECTIONS: usize = 64;

/// Longest wait for a request's headers, so an idle or slow client cannot hold a connection slot.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address cannot be listened on (in use, not local, malformed).
    #[error("metrics endpoint: cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The system's error.
        source: std::io::Error,
    },
}

/// Listens on `addr` (`HOST:PORT`).
///
/// # Errors
/// [`MetricsError::Bind`] when the address is in use or cannot be listened on.
pub async fn bind(addr: &str) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind {
        addr: addr.to_string(),
        source,
    })
}

/// Whether the process is ready to do its work (`/readyz`).
type Ready = Box<dyn Fn() -> bool + Send + Sync>;

/// What the endpoint answers from.
pub struct Endpoint {
    /// The registry scraped.
    registry: Registry,
    /// Readiness, for commands that have it; without it `/readyz` is not served.
    ready: Option<Ready>,
}

impl Endpoint {
    /// An endpoint serving `registry` on `/metrics`, and `/healthz`.
    pub fn new(registry: Registry) -> Endpoint {
        Endpoint { registry, ready: None }
    }

    /// Also serves `/readyz`: 200 while `ready` says so, 503 otherwise.
    pub fn with_ready(mut self, ready: impl Fn() -> bool + Send + Sync + 'static) -> Endpoint {
        self.ready = Some(Box::new(ready));
        self
    }

    fn respond(&self, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        }
        match req.uri().path() {
            "/metrics" => {
                // OpenMetrics to whoever asks for it (Prometheus does), the classic text format to the rest
                // (curl, promtool check metrics), as Prometheus's own client libraries negotiate.
                let open = req
                    .headers()
                    .get_all(hyper::header::ACCEPT)
                    .iter()
                    .any(|v| v.to_str().is_ok_and(|s| s.contains("application/openmetrics-text")));
                let mut body = String::with_capacity(64 * 1024);
                let (encoded, content_type) = if open {
                    (
                        prometheus_client::encoding::text::encode(&mut body, &self.registry),
                        OPENMETRICS,
                    )
                } else {
                    (
                        prometheus_client::encoding::prometheus_text::encode(&mut body, &self.registry),
                        prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                    )
                };
                match encoded {
                    Ok(()) => Response::builder()
                        .header(hyper::header::CONTENT_TYPE, content_type)
                        .body(Full::new(Bytes::from(body)))
                        .unwrap_or_else(|_| text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")),
                    Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
                }
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => match &self.ready {
                Some(ready) if ready() => text(StatusCode::OK, "ready\n"),
                Some(_) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not ready: not connected to NATS, still restoring state, or shutting down\n",
                ),
                None => text(StatusCode::NOT_FOUND, "not found: /metrics or /healthz\n"),
            },
            _ if self.ready.is_some() => text(StatusCode::NOT_FOUND, "not found: /metrics, /healthz or /readyz\n"),
            _ => text(StatusCode::NOT_FOUND, "not found: /metrics or /healthz\n"),
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves `endpoint` on `listener` until the returned task is aborted.
pub fn spawn(listener: TcpListener, endpoint: Endpoint) -> tokio::task::JoinHandle<()> {
    let endpoint = Arc::new(endpoint);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of descriptors, for instance: wait a little rather than spin.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let endpoint = endpoint.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let service = hyper::service::service_fn(move |req| {
                    let r = endpoint.respond(&req);
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(io, service)
                    .await;
                drop(permit);
            });
        }
    })
}
