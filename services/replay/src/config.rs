use std::net::SocketAddr;
use std::num::NonZeroU32;

use clap::Parser;

use hookstream_kafka::KafkaSettings;
use hookstream_runtime::config::{MetricsSettings, StoreSettings};

/// Reads the dead-letter topic into the store, so dead letters can be listed and filtered
/// without reading Kafka, and runs the replay batches created through the API: each dead
/// letter of a batch becomes a new delivery, at a bounded rate per endpoint. An offset is
/// committed only after its dead letter is in the store; a batch's progress is in the store,
/// so a restart goes on where it stopped.
///
/// Every setting can be given as a flag or as the environment variable shown.
#[derive(Debug, Clone, Parser)]
#[command(name = "hookstream-replay", version)]
pub struct ReplayConfig {
    /// Address of the operational endpoints (`/healthz`, `/readyz`, `/metrics`).
    #[arg(
        long,
        env = "HOOKSTREAM_REPLAY_OPS_ADDR",
        default_value = "127.0.0.1:9094"
    )]
    pub ops_addr: SocketAddr,

    /// Kafka consumer group of the replay instances (reads the dead-letter topic).
    #[arg(
        long,
        env = "HOOKSTREAM_REPLAY_GROUP",
        default_value = "hookstream-replay"
    )]
    pub group_id: String,

    /// Most replayed deliveries per second to one endpoint, so a replay cannot flood an
    /// endpoint that is just recovering.
    #[arg(long, env = "HOOKSTREAM_REPLAY_RATE", default_value = "10")]
    pub rate_per_endpoint: NonZeroU32,

    #[command(flatten)]
    pub store: StoreSettings,

    #[command(flatten)]
    pub metrics: MetricsSettings,

    #[command(flatten)]
    pub kafka: KafkaSettings,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_config_file_knows_every_setting() {
        use clap::CommandFactory;
        hookstream_config::check_registry(
            hookstream_config::Service::Replay,
            &ReplayConfig::command(),
        )
        .expect("hookstream-config lists this service's settings");
    }
}
