//! The retry tiers the dispatchers and the retry tier agree on. A dispatcher writes a retry to
//! the topic of its tier; only a retry tier whose schedule has that tier reads it back. Given
//! different `HOOKSTREAM_RETRY_SCHEDULE`s, retries written to a tier no retry tier reads wait
//! out the topic's retention and are deleted: lost. So each side records its tiers on the
//! settings topic (compacted, one record per role) when it starts, and checks the other's
//! record, and the retry tier checks the topics it would stop reading are empty.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::clients::{KafkaError, base_config, create};
use crate::{KafkaSettings, LagReader, Topics};

/// Which side of the retry tiers a service is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TierRole {
    /// Writes retries to the tier topics.
    Dispatcher,
    /// Reads them back when due.
    RetryTier,
}

impl TierRole {
    fn key(self) -> &'static str {
        match self {
            TierRole::Dispatcher => "retry-tiers.dispatcher",
            TierRole::RetryTier => "retry-tiers.retry-tier",
        }
    }

    fn other(self) -> TierRole {
        match self {
            TierRole::Dispatcher => TierRole::RetryTier,
            TierRole::RetryTier => TierRole::Dispatcher,
        }
    }
}

/// Why a service must not start with its retry schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Disagreement {
    #[error(
        "this dispatcher would write retries to tier(s) {missing} (HOOKSTREAM_RETRY_SCHEDULE), \
         which the retry tier does not read: it last started with tiers {theirs}. Retries there \
         would never come back. Give every service the same retry schedule; to add a delay, \
         restart the retry tier with the new schedule first"
    )]
    RetryTierLacks { missing: String, theirs: String },
    #[error(
        "the dispatchers write retries to tier(s) {missing}, which this retry tier would not \
         read (its HOOKSTREAM_RETRY_SCHEDULE gives tiers {ours}); they last started with tiers \
         {theirs}. Give every service the same retry schedule; to remove a delay, restart the \
         dispatchers with the new schedule first"
    )]
    DispatchersWriteTo {
        missing: String,
        ours: String,
        theirs: String,
    },
    #[error(
        "{topic} still holds {waiting} retries this retry tier has not put back, and its \
         schedule no longer has that tier: they would be lost. Keep the delay until the topic's \
         lag is 0 (hookstream_consumer_lag), then remove it"
    )]
    DroppedTierNotEmpty { topic: String, waiting: i64 },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
}

/// What `role` must not start with, given the tiers the other side last recorded.
pub fn compare_tiers(
    role: TierRole,
    ours: &[String],
    recorded: &BTreeMap<String, Vec<String>>,
) -> Result<(), Disagreement> {
    let Some(theirs) = recorded.get(role.other().key()) else {
        return Ok(());
    };
    let (written, read) = match role {
        TierRole::Dispatcher => (ours, theirs.as_slice()),
        TierRole::RetryTier => (theirs.as_slice(), ours),
    };
    let missing: Vec<&str> = written
        .iter()
        .filter(|tier| !read.contains(tier))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let missing = missing.join(",");
    Err(match role {
        TierRole::Dispatcher => Disagreement::RetryTierLacks {
            missing,
            theirs: theirs.join(","),
        },
        TierRole::RetryTier => Disagreement::DispatchersWriteTo {
            missing,
            ours: ours.join(","),
            theirs: theirs.join(","),
        },
    })
}

/// Checks `role`'s tiers against the other side's record (and, for the retry tier, that no tier
/// topic it would stop reading holds retries), then records them. Blocking: call it off the
/// async runtime's worker threads, or before it serves anything.
pub async fn agree_on_tiers(
    settings: &KafkaSettings,
    producer: &FutureProducer,
    role: TierRole,
    tiers: &[String],
    group: &str,
    patience: Duration,
) -> Result<(), Disagreement> {
    let topics = Topics::new(settings);
    if !topic_exists(settings, &topics.settings(), patience)? {
        // Topic creation off and the topic not made (an older topics Job): nothing to compare
        // with, and a record sent now could create it with the broker's defaults.
        tracing::warn!(
            topic = %topics.settings(),
            "the settings topic does not exist: the retry tiers were not checked against the other services'; create the delivery path's topics (HOOKSTREAM_CREATE_TOPICS or the topics Job)"
        );
        return Ok(());
    }
    let recorded = read_records(settings, &topics.settings(), patience)?;
    compare_tiers(role, tiers, &recorded)?;
    if role == TierRole::RetryTier {
        check_dropped_tiers_empty(settings, &topics, tiers, group, patience)?;
    }
    producer
        .send(
            FutureRecord::to(&topics.settings())
                .key(role.key())
                .payload(&tiers.join(",")),
            patience,
        )
        .await
        .map_err(|(e, _)| KafkaError::Client(format!("recording the retry tiers: {e}")))?;
    Ok(())
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
    loop {
        let metadata = client
            .fetch_metadata(Some(topic), patience)
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
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How long a missing settings topic is looked for before it is taken as not created.
const ABSENCE_PATIENCE: Duration = Duration::from_secs(5);

/// Every `<prefix>retry.<tier>` topic outside `tiers` must hold nothing the group has not read.
fn check_dropped_tiers_empty(
    settings: &KafkaSettings,
    topics: &Topics,
    tiers: &[String],
    group: &str,
    patience: Duration,
) -> Result<(), Disagreement> {
    let lister: BaseConsumer = create(base_config(settings), settings, "topic lister")?;
    let metadata = lister
        .fetch_metadata(None, patience)
        .map_err(|e| KafkaError::Unreachable(format!("listing topics: {e}")))?;
    let ours: Vec<String> = tiers.iter().map(|tier| topics.retry(tier)).collect();
    let prefix = topics.retry("");
    let lag = LagReader::new(settings, group)?;
    for topic in metadata.topics() {
        let name = topic.name();
        if !name.starts_with(&prefix) || ours.iter().any(|t| t == name) {
            continue;
        }
        let waiting: i64 = lag.read(name, patience)?.iter().map(|p| p.lag).sum();
        if waiting > 0 {
            return Err(Disagreement::DroppedTierNotEmpty {
                topic: name.to_owned(),
                waiting,
            });
        }
    }
    Ok(())
}

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
    let (low, high) = loop {
        match consumer.fetch_watermarks(topic, 0, patience) {
            Ok(marks) => break marks,
            Err(e) if Instant::now() >= deadline => return Err(failed(e)),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
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
            Some(Err(e)) => return Err(failed(e)),
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

    fn recorded(pairs: &[(TierRole, &str)]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(role, text)| (role.key().to_owned(), tiers(text)))
            .collect()
    }

    #[test]
    fn with_nothing_recorded_either_side_starts() {
        for role in [TierRole::Dispatcher, TierRole::RetryTier] {
            assert_eq!(
                compare_tiers(role, &tiers("5s,30s"), &BTreeMap::new()),
                Ok(())
            );
        }
    }

    #[test]
    fn a_dispatcher_may_write_only_to_tiers_the_retry_tier_reads() {
        let read = recorded(&[(TierRole::RetryTier, "5s,30s,2m,30s-hold")]);
        assert_eq!(
            compare_tiers(TierRole::Dispatcher, &tiers("5s,2m"), &read),
            Ok(()),
            "fewer tiers: a delay being removed, dispatchers first"
        );
        let refused = compare_tiers(TierRole::Dispatcher, &tiers("5s,1m,2m"), &read).unwrap_err();
        assert_eq!(
            refused,
            Disagreement::RetryTierLacks {
                missing: "1m".into(),
                theirs: "5s,30s,2m,30s-hold".into()
            }
        );
        assert!(
            refused
                .to_string()
                .contains("restart the retry tier with the new schedule first")
        );
    }

    #[test]
    fn a_retry_tier_must_read_every_tier_the_dispatchers_write() {
        let written = recorded(&[(TierRole::Dispatcher, "5s,30s")]);
        assert_eq!(
            compare_tiers(TierRole::RetryTier, &tiers("5s,30s,1h"), &written),
            Ok(()),
            "more tiers: a delay being added, retry tier first"
        );
        let refused = compare_tiers(TierRole::RetryTier, &tiers("5s"), &written).unwrap_err();
        assert_eq!(
            refused,
            Disagreement::DispatchersWriteTo {
                missing: "30s".into(),
                ours: "5s".into(),
                theirs: "5s,30s".into()
            }
        );
    }
}
