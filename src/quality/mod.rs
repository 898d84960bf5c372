//! Incremental data quality: each tick is checked as it arrives and accepted, accepted with flags, or
//! quarantined with a reason; windowed DAMA dimension scores and streaming field profiles per pair.

pub mod reason;

pub use reason::{Dimension, QuarantineReason};
