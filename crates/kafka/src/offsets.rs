//! Which offset of a partition may be committed when messages finish out of order.

use std::collections::{BTreeSet, HashMap};

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

/// Stores `position` (the next offset to read) of one partition, for the background
/// auto-commit. Fails when the partition was just revoked: its next owner re-reads from the last
/// commit, which every Hookstream consumer tolerates.
pub fn store_position<C: ConsumerContext, K: Consumer<C>>(
    consumer: &K,
    topic: &str,
    partition: i32,
    position: i64,
) -> KafkaResult<()> {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(position))?;
    consumer.store_offsets(&list)
}

#[derive(Debug, Default)]
struct PartitionProgress {
    /// Offsets handed out and not yet finished.
    in_flight: BTreeSet<i64>,
    /// The highest offset handed out so far.
    highest_seen: Option<i64>,
    /// The last position reported as committable.
    reported: Option<i64>,
}

impl PartitionProgress {
    /// The next offset to read after everything finished so far: the lowest unfinished offset,
    /// or one past the highest seen when nothing is unfinished.
    fn position(&self) -> Option<i64> {
        self.in_flight
            .first()
            .copied()
            .or(self.highest_seen.map(|h| h + 1))
    }
}

/// Tracks messages in flight per partition and tells which offset may be committed.
///
/// Messages of one partition finish out of order (different endpoints are sent concurrently),
/// but a committed offset says "everything before this is done". So the committable position is
/// the lowest offset still in flight: a crash re-reads from there, and nothing unfinished is
/// skipped. Positions follow Kafka's convention: the offset of the next message to read.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, PartitionProgress>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the message at `offset` was handed out for processing.
    pub fn start(&mut self, partition: i32, offset: i64) {
        let progress = self.partitions.entry(partition).or_default();
        progress.in_flight.insert(offset);
        progress.highest_seen = Some(progress.highest_seen.map_or(offset, |h| h.max(offset)));
    }

    /// Records that the message at `offset` is finished (its outcome is durable). Returns the new
    /// committable position when it moved forward.
    pub fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let progress = self.partitions.get_mut(&partition)?;
        if !progress.in_flight.remove(&offset) {
            return None;
        }
        let position = progress.position()?;
        if progress.reported.is_some_and(|r| r >= position) {
            return None;
        }
        progress.reported = Some(position);
        Some(position)
    }

    /// Messages handed out and not yet finished, over every partition.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }

    /// Forgets a partition that was revoked: its unfinished messages will be re-read by the
    /// partition's next owner, and their late completions here are ignored.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion_advances_one_by_one() {
        let mut t = OffsetTracker::new();
        t.start(0, 10);
        t.start(0, 11);
        assert_eq!(t.finish(0, 10), Some(11));
        assert_eq!(t.finish(0, 11), Some(12));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_later_message_finishing_first_does_not_move_past_an_earlier_one() {
        let mut t = OffsetTracker::new();
        for offset in 5..=8 {
            t.start(0, offset);
        }
        assert_eq!(t.finish(0, 7), Some(5), "nothing before 5 is pending");
        assert_eq!(t.finish(0, 6), None, "5 is still in flight");
        assert_eq!(t.finish(0, 5), Some(8), "5, 6, 7 done; 8 in flight");
        assert_eq!(t.finish(0, 8), Some(9));
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::new();
        t.start(0, 1);
        t.start(1, 100);
        t.start(0, 2);
        assert_eq!(t.finish(1, 100), Some(101));
        assert_eq!(t.finish(0, 2), Some(1));
        assert_eq!(t.finish(0, 1), Some(3));
    }

    #[test]
    fn unknown_and_repeated_completions_are_ignored() {
        let mut t = OffsetTracker::new();
        assert_eq!(t.finish(3, 1), None);
        t.start(0, 1);
        assert_eq!(t.finish(0, 1), Some(2));
        assert_eq!(t.finish(0, 1), None);
    }

    #[test]
    fn a_forgotten_partition_ignores_late_completions() {
        let mut t = OffsetTracker::new();
        t.start(0, 1);
        t.start(0, 2);
        t.forget(0);
        assert_eq!(t.finish(0, 1), None);
        assert_eq!(t.in_flight(), 0);
        // Reassigned later, it starts afresh.
        t.start(0, 2);
        assert_eq!(t.finish(0, 2), Some(3));
    }
}
