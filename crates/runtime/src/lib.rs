//! The process scaffolding every Hookstream service shares.
//!
//! - [`shutdown`]: one cancellation token that every loop listens to, cancelled by SIGINT/SIGTERM.
//! - [`logging`]: structured `tracing` output.
//! - [`telemetry`]: OpenTelemetry traces, carried on Kafka records as W3C `traceparent`.
//! - [`ops`]: `/healthz`, `/readyz` and `/metrics`.
//! - [`http_server`]: a public API's server, bounded against slow and greedy clients.
//! - [`config`]: configuration pieces more than one service takes.
//! - [`labels`]: bounded `endpoint` and `tenant` label values for the metrics.
//! - [`lag`]: queue depth (consumer lag) read from the broker into the metrics.

pub mod config;
pub mod http_server;
pub mod labels;
pub mod lag;
pub mod logging;
pub mod ops;
pub mod shutdown;
pub mod telemetry;
