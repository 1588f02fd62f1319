use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use hookstream_kafka::{KafkaSettings, parse_duration};
use hookstream_runtime::config::{MetricsSettings, RetrySettings};

/// Consumes every retry tier topic (`<prefix>retry.<delay>`) and puts each task back on the
/// deliveries topic when it is due. Each tier topic is FIFO by due time, so only the head of each
/// partition is waited for. Tasks are read a little ahead of their due time; a partition whose
/// next task is due later is paused until it comes close, never polled in a sleep. An offset is committed only after its task is back on the deliveries topic.
///
/// It reads its schedule's tier topics and every other tier topic there is when it starts, and
/// records them for the dispatchers to check theirs against. Every setting can be given as a
/// flag or as the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "hookstream-retry-tier", version)]
pub struct RetryTierConfig {
    /// Address of the operational endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[arg(
        long,
        env = "HOOKSTREAM_RETRY_TIER_OPS_ADDR",
        default_value = "127.0.0.1:9093"
    )]
    pub ops_addr: SocketAddr,

    /// Kafka consumer group of the retry tier instances.
    #[arg(
        long,
        env = "HOOKSTREAM_RETRY_TIER_GROUP",
        default_value = "hookstream-retry-tier"
    )]
    pub group_id: String,

    /// How far ahead of their due time tasks are read. Reading ahead hides the broker's fetch
    /// time, so tasks leave on time; a partition whose next task is due later is paused.
    #[arg(long, env = "HOOKSTREAM_RETRY_READ_AHEAD", default_value = "5s", value_parser = parse_duration)]
    pub read_ahead: Duration,

    /// Most bytes of read-ahead tasks held in memory; past it, reading pauses until tasks leave.
    #[arg(
        long,
        env = "HOOKSTREAM_RETRY_READ_AHEAD_BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    pub read_ahead_bytes: usize,

    #[command(flatten)]
    pub retry: RetrySettings,

    #[command(flatten)]
    pub kafka: KafkaSettings,

    #[command(flatten)]
    pub metrics: MetricsSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_config_file_knows_every_setting() {
        use clap::CommandFactory;
        hookstream_config::check_registry(
            hookstream_config::Service::RetryTier,
            &RetryTierConfig::command(),
        )
        .expect("hookstream-config lists this service's settings");
    }
}
