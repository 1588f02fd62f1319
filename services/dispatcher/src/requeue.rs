//! Puts quarantined tasks back on the deliveries topic once their cause is fixed (a dispatcher
//! that knows their schema, a repaired store row): `--requeue-quarantine-and-exit true`.
//!
//! It takes what the quarantine holds when it starts, from where the last requeue stopped (its
//! own consumer group's committed offsets), and commits as it goes: running it twice puts
//! nothing back twice. A task that still cannot be processed comes back to the quarantine as a
//! new record, for the next requeue.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::consumer::{CommitMode, Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use hookstream_kafka::{KafkaSettings, Topics};

/// How long a Kafka request, or the wait for the next quarantined record, may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Requeues every task quarantined so far; returns how many.
pub async fn requeue_quarantine(
    settings: &KafkaSettings,
    topics: &Topics,
    group_id: &str,
) -> anyhow::Result<u64> {
    let quarantine = topics.quarantine();
    let consumer: StreamConsumer = hookstream_kafka::consumer(
        settings,
        &format!("{group_id}.quarantine-requeue"),
        DefaultConsumerContext,
    )?;
    let producer = hookstream_kafka::producer(settings)?;

    let remaining = positions_to_reach(&consumer, &quarantine)?;
    let mut remaining: HashMap<i32, i64> = remaining
        .into_iter()
        .filter(|(_, (from, end))| from < end)
        .map(|(partition, (_, end))| (partition, end))
        .collect();
    if remaining.is_empty() {
        return Ok(0);
    }
    let mut assignment = TopicPartitionList::new();
    for &partition in remaining.keys() {
        assignment.add_partition_offset(&quarantine, partition, Offset::Stored)?;
    }
    consumer.assign(&assignment)?;

    let deliveries = topics.deliveries();
    let mut requeued = 0;
    while !remaining.is_empty() {
        let message = tokio::time::timeout(TIMEOUT, consumer.recv())
            .await
            .context("the quarantine did not hand over its records in time")?
            .context("reading the quarantine")?;
        let (partition, offset) = (message.partition(), message.offset());
        let Some(&end) = remaining.get(&partition) else {
            continue;
        };
        if offset >= end {
            // Past what was there at the start (the records before it expired meanwhile):
            // left, unread, for the next run.
            remaining.remove(&partition);
            continue;
        }
        forward(&producer, &deliveries, &message).await?;
        requeued += 1;
        hookstream_kafka::store_position(&consumer, &quarantine, partition, offset + 1)?;
        if offset + 1 >= end {
            remaining.remove(&partition);
        }
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .context("committing the requeue's position")?;
    Ok(requeued)
}

/// For each partition of the quarantine: where the requeue goes on from, and its end now.
fn positions_to_reach(
    consumer: &StreamConsumer,
    topic: &str,
) -> anyhow::Result<HashMap<i32, (i64, i64)>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), TIMEOUT)
        .with_context(|| format!("reading the metadata of {topic}"))?;
    let Some(described) = metadata.topics().first().filter(|t| t.error().is_none()) else {
        bail!("topic {topic} does not exist");
    };
    let mut wanted = TopicPartitionList::new();
    for partition in described.partitions() {
        wanted.add_partition(topic, partition.id());
    }
    let committed = consumer
        .committed_offsets(wanted, TIMEOUT)
        .context("reading the requeue's committed offsets")?;
    let mut positions = HashMap::new();
    for element in committed.elements() {
        let (low, high) = consumer
            .fetch_watermarks(topic, element.partition(), TIMEOUT)
            .context("reading the quarantine's watermarks")?;
        let from = match element.offset() {
            // A commit beyond the end belongs to an earlier topic of the same name.
            Offset::Offset(committed) if committed <= high => committed.max(low),
            _ => low,
        };
        positions.insert(element.partition(), (from, high));
    }
    Ok(positions)
}

/// Writes a quarantined record back as it was read, without the quarantine's own headers.
async fn forward(
    producer: &FutureProducer,
    topic: &str,
    message: &rdkafka::message::BorrowedMessage<'_>,
) -> anyhow::Result<()> {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for header in original.iter() {
            if !header.key.starts_with("hookstream-quarantine-") {
                headers = headers.insert(Header {
                    key: header.key,
                    value: header.value,
                });
            }
        }
    }
    let mut record = FutureRecord::to(topic)
        .payload(message.payload().unwrap_or_default())
        .headers(headers);
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    producer
        .send(record, TIMEOUT)
        .await
        .map_err(|(err, _)| err)
        .with_context(|| format!("writing a quarantined task back to {topic}"))?;
    Ok(())
}
