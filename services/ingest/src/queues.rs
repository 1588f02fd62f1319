//! How deep the delivery path's queues are, read from the broker when asked (the console's
//! overview): per topic, the records it holds and how far its consumer group is behind. The
//! groups are the ones the other services are configured with (`HOOKSTREAM_DISPATCHER_GROUP`,
//! `HOOKSTREAM_RETRY_TIER_GROUP`, `HOOKSTREAM_REPLAY_GROUP`, the same defaults), so ingest
//! must be given the same values they are.

use std::sync::Arc;
use std::time::Duration;

use hookstream_kafka::{KafkaError, KafkaSettings, LagReader, Topics};
use hookstream_model::retry::Tier;
use tokio::sync::OnceCell;

/// How long one topic's read may take before it is reported as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What one topic is in the delivery path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    Deliveries,
    Retry,
    DeadLetters,
}

impl QueueKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deliveries => "deliveries",
            Self::Retry => "retry",
            Self::DeadLetters => "dead-letters",
        }
    }
}

/// One topic's depth, or why it could not be read.
#[derive(Debug, Clone)]
pub struct QueueDepth {
    pub topic: String,
    pub kind: QueueKind,
    pub group: String,
    pub read: Result<Depth, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Depth {
    /// Records the topic holds (end minus start offset, summed over partitions).
    pub records: i64,
    /// Records after the group's committed offsets, summed over partitions.
    pub lag: i64,
    pub partitions: usize,
}

/// The topics to watch and their groups; the broker clients are made on the first read, so an
/// ingest whose overview is never asked for holds none.
pub struct QueueWatch {
    settings: KafkaSettings,
    topics: Vec<(String, QueueKind, String)>,
    readers: OnceCell<Vec<Arc<LagReader>>>,
}

/// The consumer groups of the services that read the delivery path.
#[derive(Debug, Clone)]
pub struct Groups {
    pub dispatcher: String,
    pub retry_tier: String,
    pub replay: String,
}

impl QueueWatch {
    /// The deliveries topic, each retry tier's topic (the schedule's delays and the hold tier)
    /// and the dead-letter topic.
    pub fn new(settings: &KafkaSettings, schedule: &[Duration], groups: &Groups) -> Self {
        let names = Topics::new(settings);
        let mut tiers: Vec<Tier> = schedule.iter().copied().map(Tier).collect();
        tiers.push(Tier::HOLD);
        tiers.sort();
        tiers.dedup();
        let mut topics = vec![(
            names.deliveries(),
            QueueKind::Deliveries,
            groups.dispatcher.clone(),
        )];
        topics.extend(tiers.iter().map(|tier| {
            (
                names.retry(&tier.name()),
                QueueKind::Retry,
                groups.retry_tier.clone(),
            )
        }));
        topics.push((names.dlq(), QueueKind::DeadLetters, groups.replay.clone()));
        Self {
            settings: settings.clone(),
            topics,
            readers: OnceCell::new(),
        }
    }

    async fn readers(&self) -> Result<&Vec<Arc<LagReader>>, KafkaError> {
        self.readers
            .get_or_try_init(|| async {
                self.topics
                    .iter()
                    .map(|(_, _, group)| LagReader::new(&self.settings, group).map(Arc::new))
                    .collect()
            })
            .await
    }

    /// Every watched topic's depth now; a topic that cannot be read says why, the others are
    /// still read.
    pub async fn read(&self) -> Result<Vec<QueueDepth>, KafkaError> {
        let readers = self.readers().await?;
        let mut depths = Vec::with_capacity(self.topics.len());
        for ((topic, kind, group), reader) in self.topics.iter().zip(readers) {
            let (reader, name) = (Arc::clone(reader), topic.clone());
            let read = tokio::task::spawn_blocking(move || reader.read(&name, READ_TIMEOUT))
                .await
                .map_err(|e| e.to_string())
                .and_then(|read| read.map_err(|e| e.to_string()))
                .map(|partitions| Depth {
                    records: partitions.iter().map(|p| p.records).sum(),
                    lag: partitions.iter().map(|p| p.lag).sum(),
                    partitions: partitions.len(),
                });
            depths.push(QueueDepth {
                topic: topic.clone(),
                kind: *kind,
                group: group.clone(),
                read,
            });
        }
        Ok(depths)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_of_the_delivery_path_is_watched_with_its_readers_group() {
        #[derive(clap::Parser)]
        struct Args {
            #[command(flatten)]
            kafka: KafkaSettings,
        }
        let settings =
            <Args as clap::Parser>::parse_from(["test", "--topic-prefix", "hookstream."]).kafka;
        let groups = Groups {
            dispatcher: "d".into(),
            retry_tier: "r".into(),
            replay: "p".into(),
        };
        let schedule = [
            Duration::from_secs(5),
            Duration::from_secs(30),
            Duration::from_secs(5),
        ];
        let watch = QueueWatch::new(&settings, &schedule, &groups);
        let watched: Vec<(&str, &str, &str)> = watch
            .topics
            .iter()
            .map(|(t, k, g)| (t.as_str(), k.as_str(), g.as_str()))
            .collect();
        assert_eq!(
            watched,
            [
                ("hookstream.deliveries", "deliveries", "d"),
                ("hookstream.retry.1s", "retry", "r"),
                ("hookstream.retry.5s", "retry", "r"),
                ("hookstream.retry.30s", "retry", "r"),
                ("hookstream.dlq", "dead-letters", "p"),
            ]
        );
    }
}
