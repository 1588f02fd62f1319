//! The retry tier's loop: read tier topics, hold each partition's head until due, forward due
//! tasks to the deliveries topic, commit what was forwarded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, TopicPartitionList};
use time::OffsetDateTime;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;

use hookstream_kafka::OffsetTracker;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::shutdown::{CancellationToken, retry_until_ok};
use hookstream_runtime::telemetry;

use crate::metrics;
use crate::waiting::{
    Admission, Partition, ReadAhead, Waiting, WaitingRoom, held_due, unreadable_due,
};

/// Resumes newly assigned partitions (librdkafka keeps a partition paused across a rebalance)
/// and tells the loop which partitions were revoked.
pub struct AssignmentListener {
    revoked: UnboundedSender<Vec<Partition>>,
}

impl AssignmentListener {
    pub fn new() -> (Self, UnboundedReceiver<Vec<Partition>>) {
        let (revoked, receiver) = unbounded_channel();
        (Self { revoked }, receiver)
    }
}

fn partitions_of(list: &TopicPartitionList) -> Vec<Partition> {
    list.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

impl ClientContext for AssignmentListener {}

impl ConsumerContext for AssignmentListener {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let partitions = partitions_of(list);
            tracing::info!(?partitions, "partitions revoked");
            let _ = self.revoked.send(partitions);
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            tracing::info!(partitions = ?partitions_of(list), "partitions assigned");
            if let Err(err) = consumer.resume(list) {
                tracing::warn!(error = %err, "cannot resume assigned partitions");
            }
        }
    }
}

/// A task forwarded to the deliveries topic (or not, on shutdown).
struct Forwarded {
    partition: Partition,
    offset: i64,
    done: bool,
}

pub struct TierLoop {
    pub consumer: Arc<StreamConsumer<AssignmentListener>>,
    pub revoked: UnboundedReceiver<Vec<Partition>>,
    pub producer: FutureProducer,
    pub deliveries_topic: String,
    /// The tier topics read, for the per-tier gauges.
    pub tier_topics: Vec<String>,
    /// Each tier topic's delay: no task waits on it much longer.
    pub tier_delays: HashMap<String, Duration>,
    pub read_ahead: ReadAhead,
    pub shutdown: CancellationToken,
}

impl TierLoop {
    pub async fn run(mut self) {
        let mut room = WaitingRoom::new(self.read_ahead);
        let mut trackers: HashMap<String, OffsetTracker> = HashMap::new();
        let mut forwarding: JoinSet<Forwarded> = JoinSet::new();

        loop {
            let wake_in = room
                .next_wake()
                .map(|due| (due - OffsetDateTime::now_utc()).max(time::Duration::ZERO))
                .and_then(|d| Duration::try_from(d).ok())
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                Some(partitions) = self.revoked.recv() => {
                    for partition in partitions {
                        room.forget(&partition);
                        if let Some(tracker) = trackers.get_mut(&partition.0) {
                            tracker.forget(partition.1);
                        }
                    }
                }
                Some(joined) = forwarding.join_next() => {
                    if let Ok(forwarded) = joined {
                        self.finish(forwarded, &mut trackers);
                    }
                }
                _ = tokio::time::sleep(wake_in) => {
                    self.release_due(&mut room, &mut forwarding);
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        let partition = (message.topic().to_owned(), message.partition());
                        let offset = message.offset();
                        trackers.entry(partition.0.clone()).or_default().start(partition.1, offset);
                        let hop = tracing::info_span!(
                            target: telemetry::TARGET,
                            "retry_hop",
                            topic = %partition.0,
                            partition = partition.1,
                            offset,
                        );
                        telemetry::continue_trace(&hop, telemetry::context_of(message.headers()));
                        let waiting = Waiting {
                            hop,
                            offset,
                            key: message.key().map(<[u8]>::to_vec),
                            payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                            due_at: {
                                let written = message.timestamp().to_millis().and_then(|ms| {
                                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
                                });
                                let delay = self.tier_delays.get(&partition.0).copied();
                                let carried = match message.payload().map(DeliveryTask::decode) {
                                    Some(Ok(task)) => task.due_at.unwrap_or(OffsetDateTime::UNIX_EPOCH),
                                    // Written by a newer dispatcher, say: it waits its tier's delay.
                                    _ => unreadable_due(written, delay),
                                };
                                held_due(carried, written, delay)
                            },
                        };
                        let now = OffsetDateTime::now_utc();
                        match room.admit(partition.clone(), waiting, now) {
                            Admission::ForwardNow(task) => {
                                self.forward(partition, task, now, &mut forwarding);
                            }
                            Admission::Held { pause } => {
                                if pause {
                                    self.set_paused(&partition, true);
                                }
                                show_waiting(&room, std::iter::once(&partition.0));
                            }
                        }
                    }
                    Err(err) => tracing::warn!(error = %err, "kafka consumer error"),
                },
            }
        }

        // Let forwards in flight finish so their offsets are stored for the final commit.
        while let Some(joined) = forwarding.join_next().await {
            if let Ok(forwarded) = joined {
                self.finish(forwarded, &mut trackers);
            }
        }
    }

    fn release_due(&self, room: &mut WaitingRoom, forwarding: &mut JoinSet<Forwarded>) {
        let now = OffsetDateTime::now_utc();
        let release = room.take_due(now);
        for (partition, waiting) in release.due {
            self.forward(partition, waiting, now, forwarding);
        }
        for partition in release.resume {
            self.set_paused(&partition, false);
        }
        show_waiting(room, &self.tier_topics);
    }

    /// Puts a due task back on the deliveries topic, retrying until Kafka acknowledges it or the
    /// process stops.
    fn forward(
        &self,
        partition: Partition,
        task: Waiting,
        now: OffsetDateTime,
        forwarding: &mut JoinSet<Forwarded>,
    ) {
        let lateness = (now - task.due_at).as_seconds_f64().max(0.0);
        if task.due_at > OffsetDateTime::UNIX_EPOCH {
            metrics::LATENESS.observe(lateness);
        }
        metrics::RELEASED.with_label_values(&[&partition.0]).inc();
        let producer = self.producer.clone();
        let topic = self.deliveries_topic.clone();
        let shutdown = self.shutdown.clone();
        // The record carries the hop's trace context; the hop's span ends once it is forwarded.
        let headers = telemetry::headers_of(&task.hop);
        forwarding.spawn(async move {
            let sent = retry_until_ok(&shutdown, "forwarding a due task", || async {
                let mut record = FutureRecord::to(&topic)
                    .payload(&task.payload)
                    .headers(headers.clone());
                if let Some(key) = &task.key {
                    record = record.key(key);
                }
                producer
                    .send(record, Duration::from_secs(5))
                    .await
                    .map_err(|(err, _)| err)
            })
            .await;
            Forwarded {
                partition,
                offset: task.offset,
                done: sent.is_some(),
            }
        });
    }

    /// Stores the committable offset once a task is on the deliveries topic.
    fn finish(&self, forwarded: Forwarded, trackers: &mut HashMap<String, OffsetTracker>) {
        if !forwarded.done {
            return;
        }
        let (topic, partition) = forwarded.partition;
        let Some(position) = trackers
            .get_mut(&topic)
            .and_then(|t| t.finish(partition, forwarded.offset))
        else {
            return;
        };
        if let Err(err) =
            hookstream_kafka::store_position(&*self.consumer, &topic, partition, position)
        {
            tracing::debug!(%topic, partition, position, error = %err, "offset not stored");
        }
    }

    fn set_paused(&self, partition: &Partition, paused: bool) {
        let mut list = TopicPartitionList::new();
        list.add_partition(&partition.0, partition.1);
        tracing::debug!(topic = %partition.0, partition = partition.1, paused, "changing pause state");
        let result = if paused {
            self.consumer.pause(&list)
        } else {
            self.consumer.resume(&list)
        };
        if let Err(err) = result {
            tracing::warn!(topic = %partition.0, partition = partition.1, paused, error = %err, "cannot change pause state");
        }
    }
}

/// Shows how many tasks wait on each of `topics` (a release can empty any of them; a read adds
/// to one).
fn show_waiting<'a>(room: &WaitingRoom, topics: impl IntoIterator<Item = &'a String>) {
    for topic in topics {
        metrics::WAITING
            .with_label_values(&[topic])
            .set(room.len_of(topic) as i64);
    }
}
