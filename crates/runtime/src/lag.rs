//! Queue depth, read from the broker every few seconds: `hookstream_consumer_lag` per group,
//! topic and partition, and `hookstream_topic_records` per topic (what the log holds now, so
//! the dead-letter topic's size).
//!
//! Every replica of a service reports its own group's lag, so the series differ only by
//! `instance`; dashboards and alerts take the `max` over instances.

use std::sync::LazyLock;
use std::time::Duration;

use hookstream_kafka::{KafkaSettings, LagReader, PartitionLag};
use prometheus::{IntGaugeVec, register_int_gauge_vec};
use tokio_util::sync::CancellationToken;

static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "hookstream_consumer_lag",
        "Records of a topic partition after the consumer group's committed offset, read from the broker.",
        &["group", "topic", "partition"]
    )
    .expect("metric registers once")
});

static TOPIC_RECORDS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "hookstream_topic_records",
        "Records a topic holds now (end minus start offset, summed over partitions), read from the broker.",
        &["topic"]
    )
    .expect("metric registers once")
});

/// Reads `group`'s lag on `topics` every `interval` until `shutdown`. A failed read is logged
/// and tried again at the next tick; the gauges keep their last values meanwhile.
pub fn spawn(
    settings: &KafkaSettings,
    group: &str,
    topics: Vec<String>,
    interval: Duration,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, hookstream_kafka::KafkaError> {
    let reader = std::sync::Arc::new(LagReader::new(settings, group)?);
    Ok(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            for topic in &topics {
                let shared = std::sync::Arc::clone(&reader);
                let name = topic.clone();
                let read =
                    tokio::task::spawn_blocking(move || shared.read(&name, Duration::from_secs(5)))
                        .await;
                match read {
                    Ok(Ok(partitions)) => publish(reader.group(), topic, &partitions),
                    Ok(Err(err)) => tracing::warn!(error = %err, "consumer lag not read"),
                    Err(err) => tracing::warn!(error = %err, "consumer lag reader stopped"),
                }
            }
        }
    }))
}

fn publish(group: &str, topic: &str, partitions: &[PartitionLag]) {
    for p in partitions {
        CONSUMER_LAG
            .with_label_values(&[group, topic, &p.partition.to_string()])
            .set(p.lag);
    }
    TOPIC_RECORDS
        .with_label_values(&[topic])
        .set(partitions.iter().map(|p| p.records).sum());
}
