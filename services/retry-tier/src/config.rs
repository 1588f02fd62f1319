use std::net::SocketAddr;

use clap::Parser;

use hookstream_kafka::KafkaSettings;
use hookstream_runtime::config::RetrySettings;

/// Consumes every retry tier topic (`<prefix>retry.<delay>`) and puts each task back on the
/// deliveries topic when it is due. Each tier topic is FIFO by due time, so only the head of each
/// partition is waited for: the partition is paused until the head is due, never polled in a
/// sleep. An offset is committed only after its task is back on the deliveries topic.
///
/// Give it the same retry schedule as the dispatcher. Every setting can be given as a flag or as
/// the environment variable shown.
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

    #[command(flatten)]
    pub retry: RetrySettings,

    #[command(flatten)]
    pub kafka: KafkaSettings,
}
