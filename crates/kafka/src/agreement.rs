//! The retry tiers the dispatchers write to must all be read back by the retry tier: a retry
//! written to a tier topic nobody reads waits out the topic's retention and is deleted, lost.
//! The retry tier reads every tier topic that exists when it starts, whatever its own schedule
//! (so a delay removed from the schedule is still drained), and records the set on the
//! settings topic (compacted, one record per key). A dispatcher checks its schedule's tiers
//! against that record before it joins its consumer group, and stops if the retry tier does not
//! read one of them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::clients::{KafkaError, base_config, create};
use crate::{KafkaSettings, Topics};

/// The key of the retry tier's record: the tiers it reads.
const READ_TIERS_KEY: &str = "retry-tiers.read";

/// Why a dispatcher must not start with its retry schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Disagreement {
    #[error(
        "this dispatcher would write retries to tier(s) {missing} (HOOKSTREAM_RETRY_SCHEDULE), \
         which the retry tier does not read: it reads {theirs} (the tier topics there were when \
         it last started). Retries there would never come back. Restart the retry tier once the \
         new tiers' topics exist (the topics Job, or this dispatcher's topic creation, makes \
         them), then this dispatcher"
    )]
    RetryTierLacks { missing: String, theirs: String },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// The tiers of `ours` (a dispatcher's) that the retry tier's recorded tiers lack.
pub fn compare_tiers(ours: &[String], read: Option<&[String]>) -> Result<(), Disagreement> {
    let Some(read) = read else {
        return Ok(());
    };
    let missing: Vec<&str> = ours
        .iter()
        .filter(|tier| !read.contains(tier))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(Disagreement::RetryTierLacks {
        missing: missing.join(","),
        theirs: read.join(","),
    })
}

/// The tiers (`<prefix>retry.<tier>` topics) that exist now, by tier name.
pub async fn existing_tiers(
    settings: &KafkaSettings,
    patience: Duration,
) -> Result<Vec<String>, KafkaError> {
    let settings = settings.clone();
    off_runtime(move || {
        let lister: BaseConsumer = create(base_config(&settings), &settings, "topic lister")?;
        let metadata = asked_until(Instant::now() + patience, || {
            lister.fetch_metadata(None, patience.min(ATTEMPT))
        })
        .map_err(|e| KafkaError::Unreachable(format!("listing topics: {e}")))?;
        let prefix = Topics::new(&settings).retry("");
        let mut tiers: Vec<String> = metadata
            .topics()
            .iter()
            .filter_map(|topic| topic.name().strip_prefix(&prefix).map(str::to_owned))
            .filter(|tier| !tier.is_empty())
            .collect();
        tiers.sort();
        Ok(tiers)
    })
    .await
}

/// The retry tier's part: records the tiers it reads.
pub async fn record_read_tiers(
    settings: &KafkaSettings,
    producer: &FutureProducer,
    tiers: &[String],
    patience: Duration,
) -> Result<(), KafkaError> {
    let topic = Topics::new(settings).settings();
    let (owned, name) = (settings.clone(), topic.clone());
    // Unlike the dispatchers' check, this fails the start when Kafka cannot be reached: the
    // record must be written, or dispatchers given a new tier would wait for the next start.
    if !off_runtime(move || topic_exists(&owned, &name, patience)).await? {
        warn_missing(&topic);
        return Ok(());
    }
    let value = tiers.join(",");
    producer
        .send(
            FutureRecord::to(&topic).key(READ_TIERS_KEY).payload(&value),
            patience,
        )
        .await
        .map_err(|(e, _)| KafkaError::Client(format!("recording the retry tiers read: {e}")))?;
    Ok(())
}

/// The dispatcher's part: stops it if it would write to a tier the retry tier does not read.
pub async fn check_written_tiers(
    settings: &KafkaSettings,
    tiers: &[String],
    patience: Duration,
) -> Result<(), Disagreement> {
    let settings = settings.clone();
    let tiers = tiers.to_vec();
    let recorded = off_runtime(move || {
        let topic = Topics::new(&settings).settings();
        if !topic_exists(&settings, &topic, patience)? {
            warn_missing(&topic);
            return Ok(None);
        }
        read_records(&settings, &topic, patience).map(Some)
    })
    .await;
    // Kafka unreachable for the while: the dispatcher starts unchecked rather than not at all
    // (its consumer waits for the brokers anyway); only a disagreement read stops it.
    let recorded = match recorded {
        Ok(recorded) => recorded,
        Err(error) => {
            tracing::warn!(%error, "could not read the settings topic: this dispatcher's retry schedule was not checked");
            None
        }
    };
    let read = recorded.as_ref().and_then(|r| r.get(READ_TIERS_KEY));
    if recorded.is_some() && read.is_none() {
        tracing::warn!(
            "no retry tier has recorded the tiers it reads under this topic prefix yet: this dispatcher's retry schedule was not checked (is the retry tier running with the same HOOKSTREAM_TOPIC_PREFIX?)"
        );
    }
    compare_tiers(&tiers, read.map(Vec::as_slice))
}

/// Runs blocking client calls on Tokio's blocking pool.
async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, KafkaError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| KafkaError::Client(format!("a blocking Kafka call: {e}")))?
}

fn warn_missing(topic: &str) {
    // Topic creation off and the topic not made (an older topics Job): nothing to compare
    // with, and a record sent now could create it with the broker's defaults.
    tracing::warn!(
        topic,
        "the settings topic does not exist: the dispatchers' retry tiers are not checked against the retry tier's; create the delivery path's topics (HOOKSTREAM_CREATE_TOPICS or the topics Job)"
    );
}

/// Whether `topic` exists. A topic created a moment ago (by this service's own start) can be
/// missing from the broker's metadata for a while, so absence is believed only after
/// `ABSENCE_PATIENCE` of asking.
fn topic_exists(
    settings: &KafkaSettings,
    topic: &str,
    patience: Duration,
) -> Result<bool, KafkaError> {
    let client: BaseConsumer = create(base_config(settings), settings, "topic lister")?;
    let deadline = Instant::now() + ABSENCE_PATIENCE;
    let gave_up = Instant::now() + patience.max(ABSENCE_PATIENCE);
    loop {
        let metadata = asked_until(gave_up, || {
            client.fetch_metadata(Some(topic), patience.min(ATTEMPT))
        })
        .map_err(|e| KafkaError::Unreachable(format!("metadata of {topic}: {e}")))?;
        // Without a leader yet it exists all the same.
        let found = metadata.topics().iter().any(|t| {
            t.name() == topic
                && t.error().is_none_or(|code| {
                    RDKafkaErrorCode::from(code) != RDKafkaErrorCode::UnknownTopicOrPartition
                })
        });
        if found {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(PAUSE);
    }
}

/// `request` until it answers or `deadline` passes (then its last error): a broker away
/// (restarting, or a partition between leaders) fails a request now and then.
fn asked_until<T>(
    deadline: Instant,
    mut request: impl FnMut() -> Result<T, rdkafka::error::KafkaError>,
) -> Result<T, rdkafka::error::KafkaError> {
    loop {
        match request() {
            Err(_) if Instant::now() < deadline => std::thread::sleep(PAUSE),
            answer => return answer,
        }
    }
}

/// The longest one request may take before it is asked again: a request sent to a broker that
/// just went away waits its whole timeout, while the partition's new leader could answer.
const ATTEMPT: Duration = Duration::from_secs(2);

/// The pause before a request is asked again.
const PAUSE: Duration = Duration::from_millis(200);

/// How long a missing settings topic is looked for before it is taken as not created.
const ABSENCE_PATIENCE: Duration = Duration::from_secs(5);

/// The last record of each key on the settings topic (absent: none).
fn read_records(
    settings: &KafkaSettings,
    topic: &str,
    patience: Duration,
) -> Result<BTreeMap<String, Vec<String>>, KafkaError> {
    let mut config = base_config(settings);
    config
        .set("group.id", "hookstream-settings-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = create(config, settings, "settings reader")?;
    let failed =
        |e: rdkafka::error::KafkaError| KafkaError::Client(format!("reading {topic}: {e}"));
    let deadline = Instant::now() + patience;
    // Right after the topic is created its partition may have no leader for a moment.
    let (low, high) = asked_until(deadline, || {
        consumer.fetch_watermarks(topic, 0, patience.min(ATTEMPT))
    })
    .map_err(failed)?;
    let mut records = BTreeMap::new();
    if high <= low {
        return Ok(records);
    }
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(low))
        .map_err(failed)?;
    consumer.assign(&assignment).map_err(failed)?;
    let mut next = low;
    while next < high {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KafkaError::Client(format!(
                "reading {topic}: not at offset {high} after {patience:?}"
            )));
        }
        match consumer.poll(left.min(Duration::from_millis(200))) {
            Some(Ok(message)) => {
                next = message.offset() + 1;
                if let (Some(key), Some(value)) = (message.key(), message.payload()) {
                    let tiers = String::from_utf8_lossy(value)
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect();
                    records.insert(String::from_utf8_lossy(key).into_owned(), tiers);
                }
            }
            // A broker down or moving (a restart, a rebalance of leaders) shows here and
            // passes; the deadline bounds it.
            Some(Err(e)) => {
                tracing::debug!(error = %e, topic, "reading the settings topic, will retry");
            }
            // Compaction leaves gaps but keeps the log's last record (the newest of its key),
            // so reading on until offset `high - 1` is seen ends. The consumer's position is
            // not asked: it can run ahead of what poll has handed over.
            None => {}
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiers(text: &str) -> Vec<String> {
        text.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn with_nothing_recorded_a_dispatcher_starts() {
        assert_eq!(compare_tiers(&tiers("5s,30s,1s"), None), Ok(()));
    }

    #[test]
    fn a_dispatcher_may_write_only_to_tiers_the_retry_tier_reads() {
        let read = tiers("1s,2m,30s,5s");
        assert_eq!(
            compare_tiers(&tiers("5s,2m,1s"), Some(&read)),
            Ok(()),
            "fewer tiers: a delay removed"
        );
        let refused = compare_tiers(&tiers("5s,1m,2m,1s"), Some(&read)).unwrap_err();
        assert_eq!(
            refused,
            Disagreement::RetryTierLacks {
                missing: "1m".into(),
                theirs: "1s,2m,30s,5s".into()
            }
        );
        assert!(refused.to_string().contains("Restart the retry tier"));
    }
}
