//! Consumer lag read from the broker: for each partition of a topic, how far a group's
//! committed offset is behind the end of the log. This is the queue depth an operator watches.

use std::time::Duration;

use rdkafka::Offset;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::KafkaSettings;
use crate::clients::{KafkaError, base_config, create};

/// One partition's position, as the broker tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Records after the group's committed offset (after the log start if it committed none).
    pub lag: i64,
    /// Records the partition holds now (end minus start of the log).
    pub records: i64,
}

/// Reads one group's committed offsets without joining the group: the client never subscribes,
/// so it takes no partitions from the group's members.
pub struct LagReader {
    consumer: BaseConsumer,
    group: String,
}

impl LagReader {
    pub fn new(settings: &KafkaSettings, group: &str) -> Result<Self, KafkaError> {
        let mut config = base_config(settings);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("client.id", "hookstream-lag");
        let consumer: BaseConsumer = create(config, settings, "lag reader")?;
        Ok(Self {
            consumer,
            group: group.to_owned(),
        })
    }

    pub fn group(&self) -> &str {
        &self.group
    }

    /// Every partition of `topic` with the group's lag. Blocking: call it off the async
    /// runtime's worker threads.
    pub fn read(&self, topic: &str, timeout: Duration) -> Result<Vec<PartitionLag>, KafkaError> {
        let unreachable = |what: &str, e: rdkafka::error::KafkaError| {
            KafkaError::Unreachable(format!("{what} of {topic} for group {}: {e}", self.group))
        };
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), timeout)
            .map_err(|e| unreachable("metadata", e))?;
        let mut wanted = TopicPartitionList::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            wanted.add_partition(topic, partition.id());
        }
        if wanted.count() == 0 {
            return Ok(Vec::new());
        }
        let committed = self
            .consumer
            .committed_offsets(wanted, timeout)
            .map_err(|e| unreachable("committed offsets", e))?;
        let mut lags = Vec::with_capacity(committed.count());
        for element in committed.elements() {
            let partition = element.partition();
            let (low, high) = self
                .consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|e| unreachable("watermarks", e))?;
            let position = match element.offset() {
                Offset::Offset(at) => at.clamp(low, high),
                _ => low,
            };
            lags.push(PartitionLag {
                topic: topic.to_owned(),
                partition,
                lag: high - position,
                records: high - low,
            });
        }
        Ok(lags)
    }
}
