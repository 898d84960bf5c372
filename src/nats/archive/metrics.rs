//! Prometheus metrics of `cambio archive --metrics ADDR`: rows, files and bytes written per kind, messages
//! held unacknowledged, how long each file takes to write, how far behind each stream the consumer is, and errors
//! by class. Updated by the archive loop (atomics), served on `/metrics` (the classic text format, or
//! OpenMetrics to a client that asks for it) with `/healthz`.

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
    /// Seconds a file took to write, fsync and rename.
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
            "Time to write, fsync and rename one file.",
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
    crate::nats::metrics_http::spawn(listener, crate::nats::metrics_http::Endpoint::new(registry))
}
