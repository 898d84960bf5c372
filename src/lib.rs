//! cambio: a streaming online-learning engine for exchange rates.
//!
//! Map of the modules (the core has no I/O, no clock, no async runtime):
//!
//! - [`tick`]: the wire format (JSON ticks and factors) turned into plain [`tick::Tick`] values.
//! - [`quality`]: incremental data-quality checks, quarantine reasons, DAMA dimension scores, field profiles.
//! - [`model`]: online models (local-level Kalman filter, recursive least squares, EWMA volatility).
//! - [`drift`]: streaming drift detectors (ADWIN, Page-Hinkley, CUSUM, CUSUM of squares, window tests).
//! - [`forecast`]: features, the signal weight that falls back to the random walk, adaptive intervals,
//!   and the plain-data [`forecast::Forecast`] message with its hand-written JSON (`forecast::wire`).
//! - [`eval`]: prequential (predict, then learn) metrics per horizon.
//! - [`horizon`] and [`time`]: forecast horizons, and timestamps as microseconds without a clock.
//! - [`engine`]: the pure core, `Engine::on_tick`, which ties the above together per pair.
//! - [`challenger`]: champion/challenger: a shadow engine scored on the same ticks, promoted when it wins
//!   by a margin over a window, and the guard that rolls the live model back when an adaptation hurts.
//! - [`config`]: serde configuration with defaults, building the runtime types.
//! - [`checkpoint`]: durable state: a pair's engine in a versioned binary format, and the redb model
//!   registry (versions, retention, rollback, export and import) behind `cambio models`.
//! - [`replay`]: files and scenarios fed through the engine, with a JSON report.
//! - [`nats`]: the only async code: connection and auth options, the contract's subjects, a local
//!   `nats-server`, the service (`nats::serve`), the operators' tools (replay to NATS, record, tail) and the
//!   load tool with its bare-NATS floor.
//!
//! Live serving (NATS) and replay call the same [`engine::Engine`], so they agree bit for bit.

pub mod challenger;
pub mod checkpoint;
pub mod config;
pub mod contract;
pub mod drift;
pub mod engine;
pub mod eval;
pub mod forecast;
pub mod horizon;
pub mod model;
pub mod nats;
pub mod pipeline;
pub mod quality;
pub mod replay;
pub mod tick;
pub mod time;

#[cfg(test)]
mod testkit;
