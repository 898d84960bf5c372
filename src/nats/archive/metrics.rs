//! Prometheus metrics of `cambio archive --metrics ADDR`: rows, files and bytes written per kind, messages
//! held unacknowledged, how long each flush takes, how far behind each stream the consumer is, and errors
//! by class. Updated by the archive loop (atomics), served on `/metrics` (the classic text format, or
//! OpenMetrics to a client that asks for it) with `/healthz`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

/// A kind of the lake (`ticks`, `forecasts`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// The kind's name.
    pub kind: &'static str,
}

/// A stream (`FX`, `FX_OUT`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StreamLabel {
    /// The stream's name.
    pub stream: String,
}

/// What went wrong, by class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClassLabel {
    /// `ack` (an acknowledgement not sent), `pull` (a pull failed or was interrupted), `consumer_info`
    /// (the consumer's state could not be read), `no_metadata` (a message without JetStream metadata),
    /// `write` (a file could not be written; the archive stops).
    pub class: &'static str,
}

/// The archive's metrics. Cloning shares them.
#[derive(Debug, Clone)]
pub struct ArchiveMetrics {
    /// Rows written to durable files, per kind.
    pub rows: Family<KindLabel, Counter>,
    /// Files written, per kind.
    pub files: Family<KindLabel, Counter>,
    /// Bytes of the files written, per kind.
    pub bytes: Family<KindLabel, Counter>,
    /// Messages delivered and held in memory, not yet in a durable file nor acknowledged, per stream.
    pub pending: Family<StreamLabel, Gauge>,
    /// The consumer's `num_pending`: messages in the stream not yet delivered to the archive, per stream.
    pub lag: Family<StreamLabel, Gauge>,
    /// Seconds a flush took (one or more files written, fsynced and renamed).
    pub flush_seconds: Histogram,
    /// Messages delivered again whose rows were already in a file (skipped).
    pub redelivered: Counter,
    /// Messages of subjects the lake does not keep (acknowledged, not written).
    pub ignored: Counter,
    /// Errors, by class.
    pub errors: Family<ClassLabel, Counter>,
}

impl Default for ArchiveMetrics {
    fn default() -> Self {
        ArchiveMetrics {
            rows: Family::default(),
            files: Family::default(),
            bytes: Family::default(),
            pending: Family::default(),
            lag: Family::default(),
            // 1 ms .. about 33 s.
            flush_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            redelivered: Counter::default(),
            ignored: Counter::default(),
            errors: Family::default(),
        }
    }
}

impl ArchiveMetrics {
    /// Counts an error of `class`.
    pub fn error(&self, class: &'static str) {
        self.errors.get_or_create(&ClassLabel { class }).inc();
    }

    /// A registry holding these metrics (`cambio_archive_*`).
    pub fn registry(&self) -> Registry {
        let mut r = Registry::default();
        r.register(
            "cambio_archive_rows",
            "Rows written to durable files.",
            self.rows.clone(),
        );
        r.register("cambio_archive_files", "Parquet files written.", self.files.clone());
        r.register(
            "cambio_archive_bytes",
            "Bytes of the Parquet files written.",
            self.bytes.clone(),
        );
        r.register(
            "cambio_archive_pending_messages",
            "Messages delivered and held in memory, acknowledged once their file is durable.",
            self.pending.clone(),
        );
        r.register(
            "cambio_archive_lag_messages",
            "Messages in the stream not yet delivered to the archive (the consumer's num_pending).",
            self.lag.clone(),
        );
        r.register(
            "cambio_archive_flush_duration_seconds",
            "Time to write, fsync and rename the files of one flush.",
            self.flush_seconds.clone(),
        );
        r.register(
            "cambio_archive_redelivered",
            "Messages delivered again whose rows were already in a file, skipped.",
            self.redelivered.clone(),
        );
        r.register(
            "cambio_archive_ignored",
            "Messages of subjects the lake does not keep.",
            self.ignored.clone(),
        );
        r.register("cambio_archive_errors", "Errors, by class.", self.errors.clone());
        // Every class present from the start, so a rate() over them needs no absent-series handling.
        for class in ["ack", "pull", "consumer_info", "no_metadata", "write"] {
            let _ = self.errors.get_or_create(&ClassLabel { class });
        }
        r
    }
}

/// Serves `registry` on `listener` (`/metrics`, `/healthz`) until the returned task is aborted.
pub fn spawn(listener: TcpListener, registry: Registry) -> tokio::task::JoinHandle<()> {
    let registry = Arc::new(registry);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let r = respond(&registry, &req);
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(io, service)
                    .await;
            });
        }
    })
}

fn respond(registry: &Registry, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let plain = |status: StatusCode, body: &'static str| {
        let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
        *r.status_mut() = status;
        r
    };
    match req.uri().path() {
        "/metrics" => {
            let open = req
                .headers()
                .get_all(hyper::header::ACCEPT)
                .iter()
                .any(|v| v.to_str().is_ok_and(|s| s.contains("application/openmetrics-text")));
            let mut body = String::new();
            let (encoded, content_type) = if open {
                (
                    prometheus_client::encoding::text::encode(&mut body, registry),
                    crate::nats::serve::metrics::http::OPENMETRICS,
                )
            } else {
                (
                    prometheus_client::encoding::prometheus_text::encode(&mut body, registry),
                    prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
                )
            };
            match encoded {
                Ok(()) => Response::builder()
                    .header(hyper::header::CONTENT_TYPE, content_type)
                    .body(Full::new(Bytes::from(body)))
                    .unwrap_or_else(|_| plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n")),
                Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding failed\n"),
            }
        }
        "/healthz" => plain(StatusCode::OK, "ok\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found: /metrics or /healthz\n"),
    }
}
