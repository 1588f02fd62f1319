//! Partitions held back behind an endpoint whose lane is full but drains fast.
//!
//! Sending such an endpoint's overflow to a retry tier costs every task a round trip through
//! Kafka and about 30 s, and when the consumer reads faster than the endpoint is served (a
//! burst to one busy endpoint) most of its tasks would take that detour, spending the CPU the
//! sends need. Instead the overflow waits here, in order, with every later task of its
//! partition, and moves into the lane as it frees. Once as many wait as a lane holds, the
//! partition stops fetching; it fetches again when half of them have gone, so the lane does
//! not run dry while a resumed partition's first fetch comes back (up to `fetch.wait.max.ms`).
//!
//! That holds up the partition's other endpoints too, so it is bounded: only an endpoint that
//! drains its whole lane within [`HOLD_BEHIND`] holds its partition, and only while the
//! partition's tasks are read within [`HOLD_LAG`] of being written; past either, overflow goes
//! to a tier again and the partition catches up.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Longest a full lane may take to drain (at its endpoint's pace, or without finishing a job)
/// for its partition to be held behind it.
pub const HOLD_BEHIND: Duration = Duration::from_millis(250);

/// Longest a partition's task may have waited since it was written for a hold to go on: the
/// most a hold delays the partition's other endpoints.
pub const HOLD_LAG: Duration = Duration::from_secs(10);

/// One held partition: the tasks read and not yet placed, oldest first.
struct Held<J> {
    jobs: VecDeque<J>,
    /// Whether this loop paused the partition's fetching for the hold.
    paused: bool,
}

/// What the consume loop must do with a held partition's fetching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    Pause,
    Resume,
    Leave,
}

/// The held partitions of this instance, owned by the consume loop alone.
pub struct HeldPartitions<J> {
    held: HashMap<i32, Held<J>>,
    /// How many tasks may wait in a partition before its fetching pauses.
    pause_at: usize,
}

impl<J> HeldPartitions<J> {
    /// Partitions pause once `pause_at` tasks wait in them (at least one).
    pub fn new(pause_at: usize) -> Self {
        Self {
            held: HashMap::new(),
            pause_at: pause_at.max(1),
        }
    }

    /// Whether tasks of `partition` wait here: a new one goes behind them.
    pub fn is_held(&self, partition: i32) -> bool {
        self.held.contains_key(&partition)
    }

    /// Whether `partition`'s fetching is paused for its hold.
    pub fn is_paused(&self, partition: i32) -> bool {
        self.held.get(&partition).is_some_and(|held| held.paused)
    }

    /// Holds `job` of `partition`, behind any task waiting there: its endpoint's lane is full,
    /// or the partition is held already. Returns [`Fetch::Pause`] when the partition's
    /// fetching must pause now.
    pub fn hold(&mut self, partition: i32, job: J) -> Fetch {
        let held = self.held.entry(partition).or_insert_with(|| Held {
            jobs: VecDeque::new(),
            paused: false,
        });
        held.jobs.push_back(job);
        if !held.paused && held.jobs.len() >= self.pause_at {
            held.paused = true;
            Fetch::Pause
        } else {
            Fetch::Leave
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

    /// After tasks left `partition`: returns [`Fetch::Resume`] once no more than half of
    /// `pause_at` wait in a paused one, and ends the hold of one where none waits.
    pub fn settle(&mut self, partition: i32) -> Fetch {
        let Some(held) = self.held.get_mut(&partition) else {
            return Fetch::Leave;
        };
        let fetch = if held.paused && held.jobs.len() <= self.pause_at / 2 {
            held.paused = false;
            Fetch::Resume
        } else {
            Fetch::Leave
        };
        if held.jobs.is_empty() && !held.paused {
            self.held.remove(&partition);
        }
        fetch
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
    fn a_held_partition_keeps_its_tasks_in_order_and_pauses_once_full() {
        let mut held = HeldPartitions::new(4);
        assert!(!held.is_held(3));
        assert_eq!(held.hold(3, 'a'), Fetch::Leave, "room to read on");
        for job in ['b', 'c'] {
            assert_eq!(held.hold(3, job), Fetch::Leave);
        }
        assert!(held.is_held(3) && !held.is_paused(3));
        assert_eq!(held.hold(3, 'd'), Fetch::Pause, "four wait: pause");
        assert_eq!(held.hold(3, 'e'), Fetch::Leave, "paused already");
        assert_eq!(held.partitions(), vec![3]);
        assert_eq!(held.front(3), Some(&'a'));

        let mut taken = Vec::new();
        for _ in 0..2 {
            taken.extend(held.pop_front(3));
            assert_eq!(held.settle(3), Fetch::Leave, "more than half still wait");
        }
        taken.extend(held.pop_front(3));
        assert_eq!(held.settle(3), Fetch::Resume, "two left: fetch again");
        assert!(held.is_held(3) && !held.is_paused(3));
        assert_eq!(held.hold(3, 'f'), Fetch::Leave);
        while let Some(job) = held.pop_front(3) {
            taken.push(job);
        }
        assert_eq!(held.settle(3), Fetch::Leave);
        assert_eq!(taken, vec!['a', 'b', 'c', 'd', 'e', 'f']);
        assert!(!held.is_held(3), "nothing waits: the hold is over");
        assert_eq!(held.len(), 0);
    }

    #[test]
    fn a_paused_partition_emptied_at_once_resumes_and_ends() {
        let mut held = HeldPartitions::new(1);
        assert_eq!(held.hold(0, 1), Fetch::Pause);
        held.pop_front(0);
        assert_eq!(held.settle(0), Fetch::Resume);
        assert!(!held.is_held(0));
        assert_eq!(held.settle(0), Fetch::Leave, "not held");
    }

    #[test]
    fn a_revoked_hold_is_forgotten_with_its_tasks() {
        let mut held = HeldPartitions::new(10);
        held.hold(1, 10);
        held.hold(1, 11);
        assert_eq!(held.forget(1), VecDeque::from([10, 11]));
        assert!(!held.is_held(1));
        assert!(held.forget(1).is_empty());
    }
}
