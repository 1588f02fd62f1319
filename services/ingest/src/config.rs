use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use hookstream_egress::DestinationSettings;
use hookstream_kafka::KafkaSettings;
use hookstream_runtime::config::{MetricsSettings, RetrySettings, StoreSettings};
use hookstream_runtime::http_server::HttpLimits;

use crate::source::SourceTopic;

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

    /// Where the management API (endpoints, secrets, API keys, deliveries, dead letters,
    /// batches, the kill switch) listens, apart from event intake: set, `HOOKSTREAM_HTTP_ADDR`
    /// serves only `POST /v1/events` and its batch form, so it can be public while this stays
    /// internal. Unset: the one listener serves both.
    #[arg(long, env = "HOOKSTREAM_MANAGEMENT_ADDR")]
    pub management_addr: Option<SocketAddr>,

    /// The web console's built files (`console/dist`, from `make console`), served at
    /// `/console` by the listener of the management API. Unset: no console is served.
    #[arg(long, env = "HOOKSTREAM_CONSOLE_DIR")]
    pub console_dir: Option<std::path::PathBuf>,

    /// The origins that may show the console in a frame (e.g. `https://app.example.com`,
    /// space-separated), for a platform embedding the tenant portal in its own pages. Unset:
    /// only the console's own origin.
    #[arg(long, env = "HOOKSTREAM_CONSOLE_FRAME_ANCESTORS", value_parser = crate::console::parse_frame_ancestors)]
    pub console_frame_ancestors: Option<crate::console::FrameAncestors>,

    /// The dispatchers' consumer group (as `HOOKSTREAM_DISPATCHER_GROUP` is set for them):
    /// the console's overview shows how far it is behind on the deliveries topic.
    #[arg(
        long,
        env = "HOOKSTREAM_DISPATCHER_GROUP",
        default_value = "hookstream-dispatcher"
    )]
    pub dispatcher_group: String,

    /// The retry tier's consumer group (as set for it), for the overview's retry topics.
    #[arg(
        long,
        env = "HOOKSTREAM_RETRY_TIER_GROUP",
        default_value = "hookstream-retry-tier"
    )]
    pub retry_tier_group: String,

    /// The replay service's consumer group (as set for it), for the overview's dead letters.
    #[arg(
        long,
        env = "HOOKSTREAM_REPLAY_GROUP",
        default_value = "hookstream-replay"
    )]
    pub replay_group: String,

    /// Where `/healthz`, `/readyz` and `/metrics` are served: apart from the API, so a public
    /// API does not show metrics to the world, and probes answer while the API is busy.
    #[arg(
        long,
        env = "HOOKSTREAM_INGEST_OPS_ADDR",
        default_value = "127.0.0.1:9096"
    )]
    pub ops_addr: SocketAddr,

    /// Bearer token every API request must carry (`Authorization: Bearer <token>`).
    #[arg(long, env = "HOOKSTREAM_API_TOKEN", hide_env_values = true)]
    pub api_token: String,

    /// How long an idempotency key keeps answering with its original event (e.g. 72h, 30m).
    #[arg(long, env = "HOOKSTREAM_IDEMPOTENCY_WINDOW", default_value = "72h", value_parser = hookstream_kafka::parse_duration)]
    pub idempotency_window: Duration,

    /// Most events per second one tenant may send over HTTP (each event of a batch counts);
    /// over it, `429` with `Retry-After`. Unset: no limit.
    #[arg(long, env = "HOOKSTREAM_TENANT_RATE")]
    pub tenant_rate: Option<std::num::NonZeroU32>,

    /// How many events a tenant may send at once above its rate (default: one second's worth).
    #[arg(long, env = "HOOKSTREAM_TENANT_BURST")]
    pub tenant_burst: Option<std::num::NonZeroU32>,

    /// After a secret rotation, how long the previous secret also signs, so receivers can
    /// switch to the new one without refusing a webhook (e.g. 24h).
    #[arg(long, env = "HOOKSTREAM_SECRET_OVERLAP", default_value = "24h", value_parser = hookstream_kafka::parse_duration)]
    pub secret_overlap: Duration,

    /// Most bytes of webhooks one request may make (payload × subscribed endpoints, summed
    /// over its events); an event past it is answered 413 (a source record is set aside).
    #[arg(long, env = "HOOKSTREAM_MAX_FANOUT_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_fanout_bytes: usize,

    /// Most live endpoints one tenant may have; creating one more is answered 409.
    #[arg(
        long,
        env = "HOOKSTREAM_MAX_ENDPOINTS_PER_TENANT",
        default_value_t = 1000
    )]
    pub max_endpoints_per_tenant: usize,

    /// Most requests of one tenant handled at once; more are answered 503 with `Retry-After`.
    #[arg(
        long,
        env = "HOOKSTREAM_TENANT_MAX_CONCURRENT_REQUESTS",
        default_value_t = 64
    )]
    pub tenant_max_concurrent_requests: usize,

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

    /// How often the signing secrets sealed under an older key of `HOOKSTREAM_SECRET_KEYS`
    /// are re-sealed under its first key (also at start); `hookstream_sealed_secrets` counts
    /// what each pass found.
    #[arg(long, env = "HOOKSTREAM_RESEAL_EVERY", default_value = "10m", value_parser = hookstream_kafka::parse_positive_duration)]
    pub reseal_every: Duration,

    /// Kafka topics whose records become events, comma-separated `TOPIC:FORMAT` with FORMAT
    /// `cloudevents` (binary or structured mode, JSON data) or `avro` (CloudEvents headers,
    /// Confluent-framed Avro value), e.g. `domain-events:cloudevents,billing:avro`.
    /// Empty: events come over HTTP only.
    #[arg(long, env = "HOOKSTREAM_SOURCE_TOPICS", default_value = "")]
    pub source_topics: String,

    /// The consumer group ingest reads the source topics in.
    #[arg(
        long,
        env = "HOOKSTREAM_SOURCE_GROUP",
        default_value = "hookstream-ingest-sources"
    )]
    pub source_group: String,

    /// The CloudEvents extension attribute naming the tenant: the `ce_<name>` header in binary
    /// mode, the `<name>` attribute in structured mode.
    #[arg(
        long,
        env = "HOOKSTREAM_SOURCE_TENANT_ATTRIBUTE",
        default_value = "tenant"
    )]
    pub source_tenant_attribute: String,

    /// The Schema Registry that `avro` source topics' schema ids are looked up in.
    #[arg(long, env = "HOOKSTREAM_SCHEMA_REGISTRY_URL")]
    pub schema_registry_url: Option<String>,

    #[command(flatten)]
    pub store: StoreSettings,

    #[command(flatten)]
    pub metrics: MetricsSettings,

    #[command(flatten)]
    pub kafka: KafkaSettings,

    #[command(flatten)]
    pub destinations: DestinationSettings,

    #[command(flatten)]
    pub http: HttpLimits,

    /// The retry schedule, read here for its longest delay: an endpoint's batch may wait at
    /// most that long to fill (see `batch.max_wait`).
    #[command(flatten)]
    pub retry: RetrySettings,
}

impl IngestConfig {
    /// The configured source topics; empty entries are skipped.
    pub fn source_topics(&self) -> Result<Vec<SourceTopic>, String> {
        self.source_topics
            .split(',')
            .filter(|entry| !entry.trim().is_empty())
            .map(SourceTopic::parse)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn the_shared_config_file_knows_every_setting() {
        use clap::CommandFactory;
        hookstream_config::check_registry(
            hookstream_config::Service::Ingest,
            &IngestConfig::command(),
        )
        .expect("hookstream-config lists this service's settings");
    }

    #[test]
    fn a_zero_interval_or_timeout_stops_the_start_naming_its_setting() {
        for (flag, name) in [
            ("--reseal-every", "reseal-every"),
            ("--http-request-timeout", "http-request-timeout"),
        ] {
            let refused = IngestConfig::try_parse_from(["hookstream-ingest", flag, "0s"])
                .expect_err("zero refused")
                .to_string();
            assert!(
                refused.contains(name) && refused.contains("zero"),
                "{flag}: {refused}"
            );
        }
        let accepted = IngestConfig::try_parse_from([
            "hookstream-ingest",
            "--api-token",
            "t",
            "--reseal-every",
            "1s",
        ])
        .expect("a positive interval is taken");
        assert_eq!(accepted.reseal_every, Duration::from_secs(1));
    }
}
