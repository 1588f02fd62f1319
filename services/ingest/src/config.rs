use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use hookstream_kafka::KafkaSettings;
use hookstream_runtime::config::{DestinationSettings, StoreSettings};

/// Accepts events over HTTP (`POST /v1/events`), fans each out to the tenant's subscribed
/// endpoints and writes one delivery task per endpoint to Kafka, answering only once Kafka has
/// them. Also serves the management API (endpoints, deliveries, attempts).
///
/// Every setting can be given as a flag or as the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "hookstream-ingest", version)]
pub struct IngestConfig {
    /// Address the HTTP API listens on.
    #[arg(long, env = "HOOKSTREAM_HTTP_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,

    /// Bearer token every API request must carry (`Authorization: Bearer <token>`).
    #[arg(long, env = "HOOKSTREAM_API_TOKEN", hide_env_values = true)]
    pub api_token: String,

    /// How long an idempotency key keeps answering with its original event (e.g. 72h, 30m).
    #[arg(long, env = "HOOKSTREAM_IDEMPOTENCY_WINDOW", default_value = "72h", value_parser = hookstream_kafka::parse_duration)]
    pub idempotency_window: Duration,

    /// Largest request body accepted, in bytes; larger requests are answered 413.
    #[arg(long, env = "HOOKSTREAM_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,

    /// Largest body of `POST /v1/events:batch`, in bytes (each event in it is also held to
    /// `HOOKSTREAM_MAX_BODY_BYTES`).
    #[arg(long, env = "HOOKSTREAM_MAX_BATCH_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_batch_body_bytes: usize,

    /// How long an event may stay unacknowledged by Kafka before the outbox sweep republishes its
    /// tasks (after a crash or a failed publish).
    #[arg(long, env = "HOOKSTREAM_OUTBOX_GRACE", default_value = "60s", value_parser = hookstream_kafka::parse_duration)]
    pub outbox_grace: Duration,

    #[command(flatten)]
    pub store: StoreSettings,

    #[command(flatten)]
    pub kafka: KafkaSettings,

    #[command(flatten)]
    pub destinations: DestinationSettings,
}
