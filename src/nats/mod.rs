//! The NATS edge shared by `serve` and the operators' tools: how to connect (URL and auth from the
//! configuration or the environment), the subject names of the message contract, and a local
//! `nats-server` child for when no server is configured. [`floor`] and [`load`] measure what serving costs
//! over NATS: the floor does the bare NATS work, the load tool drives it and cambio alike.
//!
//! The operators' tools: [`publish`] (`cambio replay --nats`: a file or scenario onto the tick and factor
//! subjects, paced), [`record`] (`cambio record`: a pair's ticks into a JSON-lines file that replay reads),
//! [`tail`] (`cambio tail`: a pair's outputs as readable lines) and [`review`] (`cambio review`: the
//! quarantined ticks kept in JetStream and the labels people give them).
//!
//! [`serve`] is the service; it is the only part that calls the engine, through the same `Engine::on_tick` as
//! replay, so the core stays pure.

pub mod archive;
pub mod connect;
pub mod floor;
pub mod headers;
pub mod load;
pub mod local_server;
pub mod metrics_http;
pub mod publish;
pub mod ready;
pub mod record;
pub mod review;
pub mod serve;
pub mod subjects;
pub mod tail;

pub use connect::{NatsConfig, NatsError, TlsConfig, connect, round_trip};
pub use local_server::LocalServer;
pub use subjects::Subjects;
