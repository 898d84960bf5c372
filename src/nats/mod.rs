//! The NATS edge shared by `serve` and the operators' tools: how to connect (URL and auth from the
//! configuration or the environment), the subject names of the message contract, and a local
//! `nats-server` child for when no server is configured. [`floor`] and [`load`] measure what serving costs
//! over NATS: the floor does the bare NATS work, the load tool drives it and cambio alike.
//!
//! Nothing here touches the engine: this module only moves bytes, so the core stays pure.

pub mod connect;
pub mod floor;
pub mod load;
pub mod local_server;
pub mod serve;
pub mod subjects;

pub use connect::{NatsConfig, NatsError, TlsConfig, connect};
pub use local_server::LocalServer;
pub use subjects::Subjects;
