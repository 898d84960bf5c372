//! The `[serve]` table: how the service consumes ticks and how often it reports.

use serde::{Deserialize, Serialize};

/// Where ticks come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestMode {
    /// Core NATS subscriptions: lowest latency, at most once (ticks published while cambio is
    /// disconnected are not seen).
    #[default]
    Core,
    /// A JetStream stream read through a durable consumer: a tick is acknowledged only after the engine has
    /// processed it, so none is lost across restarts of the server or of cambio.
    Jetstream,
}

/// The JetStream settings (`[serve.jetstream]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JetStreamConfig {
    /// The stream holding ticks and factors.
    pub stream: String,
    /// The durable consumer's name.
    pub durable: String,
    /// Create the stream (file storage, subjects `<prefix>.ticks.>` and `<prefix>.factors.>`) if missing.
    pub create_stream: bool,
    /// Seconds before an unacknowledged tick is redelivered.
    pub ack_wait_secs: u64,
    /// Most ticks delivered but not yet acknowledged.
    pub max_ack_pending: i64,
    /// Publish forecasts with JetStream's acknowledgement: a checkpoint covers a tick only once the stream
    /// that keeps `<prefix>.pred.>` stored its forecast, and an unacknowledged forecast is published again
    /// (same `Nats-Msg-Id`). Needs such a stream; for a de-duplicating forecast stream that must hold every
    /// forecast through node failures.
    pub confirm_forecasts: bool,
}

impl Default for JetStreamConfig {
    fn default() -> Self {
        JetStreamConfig {
            stream: "FX".into(),
            durable: "cambio".into(),
            create_stream: true,
            ack_wait_secs: 30,
            max_ack_pending: 20_000,
            confirm_forecasts: false,
        }
    }
}

/// The `[serve]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeConfig {
    /// Subject prefix (`fx` gives `fx.ticks.<PAIR>`, `fx.pred.<PAIR>`, …).
    pub prefix: String,
    /// Core NATS or JetStream.
    pub mode: IngestMode,
    /// JetStream settings (used in `jetstream` mode).
    pub jetstream: JetStreamConfig,
    /// Seconds between publications of quality scores and drift statistics per pair (besides every status
    /// change).
    pub report_interval_secs: f64,
    /// Stamp live ticks with their wall-clock arrival time, for timeliness checks. Ticks replayed by
    /// `cambio replay --nats` (header `Cambio-Replay`) are never stamped: their timestamps are historical.
    pub stamp_arrival: bool,
    /// Most pairs served (each pair is a shard with its own state; subjects come from the network).
    pub max_pairs: usize,
    /// Ticks queued per shard before the consumer waits (back-pressure rather than unbounded memory).
    pub shard_queue: usize,
    /// A pair that received no message for this many seconds is evicted: its shard stops and frees its
    /// place under `max_pairs` (checkpointed first when checkpoints are on, and resumed from that version
    /// when its ticks come back). 0 never evicts. Default 7 days: longer than any market closure.
    pub idle_evict_secs: f64,
    /// Longest raw payload kept in a quarantine record, bytes; longer ones are cut and marked (NATS limits
    /// message size, and a hostile payload must not be re-published whole).
    pub max_raw_bytes: usize,
    /// Worker threads of the service's runtime (shards spread over them); 0 means one per core.
    pub workers: usize,
    /// Core mode: messages the NATS client buffers for the tick subscription. When a burst outruns the
    /// service the client drops ticks past it (counted exactly as `ticks_dropped`); JetStream loses none.
    pub subscription_capacity: usize,
    /// Seconds the shutdown waits for NATS (draining the subscription, publishing the last outputs,
    /// acknowledging, confirming); past them it gives up on NATS once the client stops taking publications.
    /// The shutdown checkpoint is written either way.
    pub drain_timeout_secs: f64,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            prefix: "fx".into(),
            mode: IngestMode::Core,
            jetstream: JetStreamConfig::default(),
            report_interval_secs: 5.0,
            stamp_arrival: true,
            max_pairs: crate::pipeline::MAX_PAIRS,
            shard_queue: 8_192,
            idle_evict_secs: 7.0 * 86_400.0,
            max_raw_bytes: crate::pipeline::MAX_RAW_BYTES,
            workers: 0,
            subscription_capacity: 1 << 16,
            drain_timeout_secs: 10.0,
        }
    }
}

impl ServeConfig {
    /// The runtime's worker threads: `workers` when set, else one per core.
    pub fn worker_threads(&self, cores: usize) -> usize {
        if self.workers > 0 { self.workers } else { cores.max(1) }
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// A message naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        crate::nats::Subjects::new(&self.prefix)?;
        if !(self.report_interval_secs.is_finite() && self.report_interval_secs >= 0.01) {
            return Err(format!(
                "serve.report_interval_secs {}: at least 0.01",
                self.report_interval_secs
            ));
        }
        if self.max_pairs == 0 || self.shard_queue == 0 {
            return Err("serve.max_pairs and serve.shard_queue must be positive".into());
        }
        if self.subscription_capacity == 0 {
            return Err("serve.subscription_capacity must be positive".into());
        }
        if !(self.drain_timeout_secs.is_finite() && self.drain_timeout_secs >= 0.0) {
            return Err(format!(
                "serve.drain_timeout_secs {}: zero or more seconds",
                self.drain_timeout_secs
            ));
        }
        if !(self.idle_evict_secs.is_finite() && self.idle_evict_secs >= 0.0) {
            return Err(format!(
                "serve.idle_evict_secs {}: 0 (never) or a positive number of seconds",
                self.idle_evict_secs
            ));
        }
        if self.max_raw_bytes < 64 {
            return Err("serve.max_raw_bytes: at least 64".into());
        }
        let js = &self.jetstream;
        let token_ok = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !token_ok(&js.stream) || !token_ok(&js.durable) {
            return Err("serve.jetstream.stream and durable: letters, digits, '_' or '-'".into());
        }
        if js.ack_wait_secs == 0 || js.max_ack_pending <= 0 {
            return Err("serve.jetstream.ack_wait_secs and max_ack_pending must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_default_to_one_per_core() {
        assert_eq!(ServeConfig::default().worker_threads(2), 2);
        assert_eq!(ServeConfig::default().worker_threads(0), 1);
        let set = ServeConfig {
            workers: 3,
            ..ServeConfig::default()
        };
        assert_eq!(set.worker_threads(2), 3);
    }

    #[test]
    fn drain_timeout_and_subscription_capacity_are_checked() {
        assert!(ServeConfig::default().validate().is_ok());
        for bad in [
            ServeConfig {
                subscription_capacity: 0,
                ..ServeConfig::default()
            },
            ServeConfig {
                drain_timeout_secs: -1.0,
                ..ServeConfig::default()
            },
            ServeConfig {
                drain_timeout_secs: f64::NAN,
                ..ServeConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        let set: ServeConfig = toml::from_str("subscription_capacity = 32\ndrain_timeout_secs = 2.5\n").unwrap();
        assert_eq!((set.subscription_capacity, set.drain_timeout_secs), (32, 2.5));
    }
}
