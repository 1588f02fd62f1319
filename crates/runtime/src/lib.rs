//! The process scaffolding every Hookstream service shares.
//!
//! - [`shutdown`]: one cancellation token that every loop listens to, cancelled by SIGINT/SIGTERM.
//! - [`logging`]: structured `tracing` output.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics`.
//! - [`config`]: configuration pieces more than one service takes.
//! - [`resolver`]: endpoint host names resolved and checked against the destination policy.
//! - [`publisher`]: delivery tasks onto the deliveries topic, acknowledged by Kafka.

pub mod config;
pub mod logging;
pub mod ops;
pub mod publisher;
pub mod resolver;
pub mod shutdown;
