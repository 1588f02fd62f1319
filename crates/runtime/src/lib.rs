//! The process scaffolding every Hookstream service shares.
//!
//! - [`shutdown`]: one cancellation token that every loop listens to, cancelled by SIGINT/SIGTERM.
//! - [`logging`]: structured `tracing` output.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics`.
//! - [`config`]: configuration pieces more than one service takes.

pub mod config;
pub mod logging;
pub mod ops;
pub mod shutdown;
