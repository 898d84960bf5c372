//! cambio: a streaming online-learning engine for exchange rates.
//!
//! Map of the modules, by layer; a module imports only from the layers below it (`tests/layers.rs` fails
//! on any import cycle, and on the core reaching a layer that does I/O):
//!
//! - ground: [`time`] (timestamps as microseconds, no clock), [`evolve`] (how checkpointed state grows), [`horizon`] (`1step`, `1h`, …) and
//!   [`tick`] (the wire format turned into plain [`tick::Tick`] values, and the quarantine reason).
//! - core: [`quality`] (incremental checks, DAMA dimension scores, field profiles), [`model`] (local-level
//!   Kalman filter, recursive least squares, EWMA volatility), [`drift`] (ADWIN, Page-Hinkley, CUSUMs,
//!   window tests), [`eval`] (prequential metrics per horizon) and [`forecast`] (features, the signal
//!   weight that falls back to the random walk, adaptive intervals, the [`forecast::Forecast`] message).
//! - [`engine`]: the pure core, `Engine::on_tick`, which ties the above together per pair; its
//!   configuration (`[engine]`) and its outputs.
//! - [`challenger`]: a shadow engine scored on the same ticks, promoted when it wins by a margin, and the
//!   guard that rolls the live model back when an adaptation hurts.
//! - [`contract`]: every message cambio publishes or answers, typed and tagged, and their JSON.
//! - [`business`]: deal events from credit systems (offers, acceptances) with pseudonymised clients: uptake,
//!   distinct clients, quote distance from the model and a disparity alarm, per pair, period and segment.
//! - [`checkpoint`]: a pair's state in a versioned binary format, the applied stream sequences, and the
//!   redb model registry behind `cambio models`.
//! - [`lake`]: the Parquet data lake: messages into rows, partitioned files written durably, named by
//!   the stream sequences they hold (`cambio archive` live, `replay --archive` offline).
//! - [`pipeline`]: one pair's synchronous path (engine, contest, factor book, limits), the one replay and
//!   serve share.
//! - [`replay`]: files and scenarios fed through the pipeline, with a JSON report and expectations.
//! - [`nats`]: the only async code: connection and auth, subjects and headers, a local `nats-server`, the
//!   service (`nats::serve`: router, shards that do I/O only, micro service, checkpointer, cluster mode's
//!   partitions, leases and shared checkpoints), the
//!   operators' tools (replay to NATS, record, tail) and the load tool with its bare-NATS floor.
//! - [`retrain`]: batch retraining (`cambio retrain`): a training window from the last structural change,
//!   detector thresholds and model settings calibrated on it, candidates scored on a held-out tail beside
//!   the champion and the random walk, and the best written to the registry with its lineage.
//! - [`review`]: human review of quarantined ticks as plain data: records read back, labels (`good`,
//!   `bad`) with actor and time, and the accepted prices around a refused one (`nats::review` does the I/O).
//! - [`sources`]: the connectors (`cambio sources run`): Banxico, INEGI and FRED fetched on schedules and
//!   published as ticks and factors, with their watermarks in a JetStream key-value bucket.
//! - [`config`]: the whole configuration file, one table per layer; only the binary assembles it.
//!
//! Time comes from tick timestamps only, so live serving and replay, which run the same
//! [`pipeline::PairPipeline`], agree byte for byte.

pub mod business;
pub mod challenger;
pub mod checkpoint;
pub mod config;
pub mod contract;
pub mod drift;
pub mod engine;
pub mod eval;
pub mod evolve;
pub mod forecast;
pub mod horizon;
pub mod lake;
pub mod model;
pub mod nats;
pub mod pipeline;
pub mod quality;
pub mod replay;
pub mod retrain;
pub mod review;
pub mod sources;
pub mod tick;
pub mod time;

#[cfg(test)]
mod testkit;
