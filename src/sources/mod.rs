//! Connectors that fetch data on schedules and publish it as ticks or factors.

pub mod postgres;
