//! What the consume loop fetches: the whole assignment paused or resumed (the kill switch, a
//! full instance), one partition paused or resumed (a hold), and the committable position
//! stored.

use std::sync::atomic::Ordering;

use rdkafka::consumer::Consumer;

use hookstream_kafka::OffsetTracker;

use super::ConsumeLoop;
use crate::held::HeldPartitions;
use crate::job::Job;

/// Why fetching is paused, and whether it is.
#[derive(Debug, Default)]
pub(super) struct Fetching {
    pub(super) kill_switch: bool,
    /// The instance has `max_in_flight` tasks, or `max_in_flight_bytes` of them.
    pub(super) full: bool,
    pub(super) paused: bool,
    /// Bytes of the tasks in flight (their records' payloads).
    pub(super) bytes: usize,
}

impl ConsumeLoop {
    /// Whether the instance is at its limit of tasks or bytes in flight. Once it paused for
    /// capacity it resumes a tenth under the limits, so it does not flap on every finished task.
    pub(super) fn over_limit(&self, tracker: &OffsetTracker, fetching: &Fetching) -> bool {
        let below = |limit: usize| {
            if fetching.full {
                limit - limit / 10
            } else {
                limit
            }
        };
        tracker.in_flight() >= below(self.max_in_flight)
            || fetching.bytes >= below(self.max_in_flight_bytes)
    }

    /// Pauses or resumes fetching on the whole assignment when the reasons to pause (the kill
    /// switch, a full instance) change. The loop keeps polling either way, so the group keeps
    /// this member; tasks already read go on (or wait in the workers, under the kill switch).
    pub(super) fn apply(&self, fetching: &mut Fetching, held: &HeldPartitions<Job>) {
        let pause = fetching.kill_switch || fetching.full;
        if pause == fetching.paused {
            return;
        }
        let assignment = match self.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the assignment");
                return;
            }
        };
        let result = if pause {
            self.consumer.pause(&assignment)
        } else {
            // A held partition stays paused until its hold ends.
            let mut resumed = rdkafka::TopicPartitionList::new();
            for element in assignment.elements() {
                if !held.is_held(element.partition()) {
                    resumed.add_partition(element.topic(), element.partition());
                }
            }
            self.consumer.resume(&resumed).inspect(|()| {
                self.fetch_wakeup
                    .resumed(resumed.elements().iter().map(|e| e.partition()));
            })
        };
        match result {
            Ok(()) => {
                fetching.paused = pause;
                self.fetch_paused.store(pause, Ordering::SeqCst);
                tracing::debug!(
                    pause,
                    kill_switch = fetching.kill_switch,
                    full = fetching.full,
                    "fetching paused or resumed"
                );
            }
            Err(err) => {
                tracing::warn!(pause, error = %err, "cannot pause or resume the assignment")
            }
        }
    }

    /// The list naming one partition of the topic, for a pause or a resume.
    fn one_partition(&self, partition: i32) -> rdkafka::TopicPartitionList {
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition(&self.topic, partition);
        list
    }

    pub(super) fn pause_partition(&self, partition: i32) {
        if let Err(err) = self.consumer.pause(&self.one_partition(partition)) {
            tracing::warn!(partition, error = %err, "cannot pause a partition");
        }
    }

    pub(super) fn resume_partition(&self, partition: i32) {
        match self.consumer.resume(&self.one_partition(partition)) {
            Ok(()) => self.fetch_wakeup.resumed([partition]),
            Err(err) => tracing::warn!(partition, error = %err, "cannot resume a partition"),
        }
    }

    /// Stores the committable position; the background auto-commit sends it to Kafka.
    pub(super) fn store_position(&self, partition: i32, position: i64) {
        if let Err(err) =
            hookstream_kafka::store_position(&*self.consumer, &self.topic, partition, position)
        {
            // Happens when the partition was just revoked; its next owner re-reads from the last
            // commit, and the store check keeps delivered tasks from being resent.
            tracing::debug!(partition, position, error = %err, "offset not stored");
        }
    }
}
