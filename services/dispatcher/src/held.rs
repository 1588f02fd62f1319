//! Partitions held back behind an endpoint whose lane is full but drains fast.
//!
//! Sending such an endpoint's overflow to a retry tier costs every task a round trip through
//! Kafka and about 30 s, and when the consumer reads faster than the endpoint is served (a
//! burst to one busy endpoint) most of its tasks would take that detour, spending the CPU the
//! sends need. Instead its partition stops fetching until the lane has room, and the tasks
//! already read wait here, in order. That holds up the partition's other endpoints too, so it
//! is bounded: only an endpoint that drains its whole lane within [`HOLD_BEHIND`] holds its
//! partition, and only while the partition's tasks are read within [`HOLD_LAG`] of being
//! written; past either, overflow goes to a tier again and the partition catches up. Once its
//! held tasks are placed, the partition fetches again when the endpoint's lane is down to half
//! its limit (or the endpoint slowed), not at its first free place: each pause throws away
//! what was fetched ahead, so a hold per task would cost more than it saves.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use hookstream_model::ids::EndpointId;

/// Longest a full lane may take to drain (at its endpoint's pace, or without finishing a job)
/// for its partition to be held behind it.
pub const HOLD_BEHIND: Duration = Duration::from_millis(250);

/// Longest a partition's task may have waited since it was written for a hold to go on: the
/// most a hold delays the partition's other endpoints.
pub const HOLD_LAG: Duration = Duration::from_secs(10);

/// One held partition: the tasks read and not yet placed, oldest first.
struct Held<J> {
    jobs: VecDeque<J>,
    /// The endpoint whose full lane began the hold.
    behind: EndpointId,
    /// Whether this loop paused the partition's fetching for the hold.
    paused: bool,
}

/// The held partitions of this instance, owned by the consume loop alone.
pub struct HeldPartitions<J> {
    held: HashMap<i32, Held<J>>,
}

impl<J> HeldPartitions<J> {
    pub fn new() -> Self {
        Self {
            held: HashMap::new(),
        }
    }

    /// Whether tasks of `partition` wait here: a new one goes behind them.
    pub fn is_held(&self, partition: i32) -> bool {
        self.held.contains_key(&partition)
    }

    /// Holds `job` of `partition` because its endpoint's lane is full: it waits here, with any
    /// task of the partition read after it. Returns whether the partition's fetching must be
    /// paused now (it was not yet, for this hold).
    pub fn hold(&mut self, partition: i32, endpoint: EndpointId, job: J) -> bool {
        let held = self.held.entry(partition).or_insert_with(|| Held {
            jobs: VecDeque::new(),
            behind: endpoint,
            paused: false,
        });
        held.jobs.push_back(job);
        !std::mem::replace(&mut held.paused, true)
    }

    /// Queues `job` behind the held tasks of its partition, which must be held.
    pub fn queue_behind(&mut self, partition: i32, job: J) {
        if let Some(held) = self.held.get_mut(&partition) {
            held.jobs.push_back(job);
        }
    }

    /// The held partitions.
    pub fn partitions(&self) -> Vec<i32> {
        self.held.keys().copied().collect()
    }

    /// The oldest task waiting in `partition`.
    pub fn front(&self, partition: i32) -> Option<&J> {
        self.held.get(&partition).and_then(|held| held.jobs.front())
    }

    /// Takes the oldest task waiting in `partition`.
    pub fn pop_front(&mut self, partition: i32) -> Option<J> {
        self.held.get_mut(&partition)?.jobs.pop_front()
    }

    /// The endpoint whose full lane began the hold of `partition`.
    pub fn behind(&self, partition: i32) -> Option<EndpointId> {
        self.held.get(&partition).map(|held| held.behind)
    }

    /// Ends the hold of `partition` if nothing waits there any more and `ready` (the lane it
    /// waited for has room enough). Returns whether its fetching was paused for the hold and
    /// must be resumed.
    pub fn end_if_empty(&mut self, partition: i32, ready: bool) -> bool {
        match self.held.get(&partition) {
            Some(held) if held.jobs.is_empty() && ready => {
                self.held.remove(&partition).is_some_and(|held| held.paused)
            }
            _ => false,
        }
    }

    /// Ends the hold of `partition`, revoked: the revoke cleared its pause (a partition no
    /// longer ours must not be paused again, or it would come back paused), and the tasks that
    /// waited are returned, oldest first.
    pub fn forget(&mut self, partition: i32) -> VecDeque<J> {
        self.held
            .remove(&partition)
            .map(|held| held.jobs)
            .unwrap_or_default()
    }

    /// How many partitions are held.
    pub fn len(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_partition_keeps_its_tasks_in_order_and_pauses_once() {
        let mut held = HeldPartitions::new();
        let (busy, other) = (EndpointId::generate(), EndpointId::generate());
        assert!(!held.is_held(3));
        assert!(held.hold(3, busy, "a"), "the first hold pauses");
        held.queue_behind(3, "b");
        assert!(!held.hold(3, other, "c"), "already paused");
        assert_eq!(held.behind(3), Some(busy), "held for the first");
        assert!(held.is_held(3));
        assert_eq!(held.partitions(), vec![3]);
        assert_eq!(held.front(3), Some(&"a"));
        assert_eq!(held.pop_front(3), Some("a"));
        assert!(!held.end_if_empty(3, true), "tasks still wait");
        assert_eq!(held.pop_front(3), Some("b"));
        assert_eq!(held.pop_front(3), Some("c"));
        assert!(
            !held.end_if_empty(3, false),
            "empty, but its lane has not room enough yet"
        );
        assert!(held.is_held(3));
        assert!(held.end_if_empty(3, true), "paused for the hold: resume");
        assert!(!held.is_held(3));
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn a_revoked_hold_is_forgotten_with_its_tasks() {
        let mut held = HeldPartitions::new();
        held.hold(1, EndpointId::generate(), 10);
        held.queue_behind(1, 11);
        assert_eq!(held.forget(1), VecDeque::from([10, 11]));
        assert!(!held.is_held(1));
        assert!(held.forget(1).is_empty());
    }

    #[test]
    fn tasks_queued_behind_an_unheld_partition_are_refused() {
        let mut held = HeldPartitions::new();
        held.queue_behind(2, 1);
        assert!(!held.is_held(2));
        assert_eq!(held.front(2), None);
    }
}
