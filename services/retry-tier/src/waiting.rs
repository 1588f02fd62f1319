//! Which tasks are waiting, per partition, and which are due. Pure bookkeeping, no Kafka.

use std::collections::{HashMap, VecDeque};

use time::OffsetDateTime;

/// A topic partition.
pub type Partition = (String, i32);

/// A task read from a tier topic and not yet due.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub due_at: OffsetDateTime,
}

/// The tasks waiting in each paused partition, in offset order.
///
/// A partition is paused when its head is not due; at most a few prefetched tasks queue behind
/// the head, since a tier topic is FIFO by due time (the jitter lets a later task be a little
/// earlier; it then waits for the head, late by at most the jitter).
#[derive(Debug, Default)]
pub struct WaitingRoom {
    partitions: HashMap<Partition, VecDeque<Waiting>>,
}

impl WaitingRoom {
    /// Whether the partition has tasks waiting (so a newly read task must queue behind them).
    pub fn is_waiting(&self, partition: &Partition) -> bool {
        self.partitions
            .get(partition)
            .is_some_and(|q| !q.is_empty())
    }

    pub fn wait(&mut self, partition: Partition, task: Waiting) {
        self.partitions
            .entry(partition)
            .or_default()
            .push_back(task);
    }

    /// The earliest due time of any partition's head: when to look again.
    pub fn next_due(&self) -> Option<OffsetDateTime> {
        self.partitions
            .values()
            .filter_map(|q| q.front().map(|t| t.due_at))
            .min()
    }

    /// Takes every task that is due at `now`, head first per partition, with the partitions that
    /// have nothing left waiting (to resume).
    pub fn take_due(&mut self, now: OffsetDateTime) -> (Vec<(Partition, Waiting)>, Vec<Partition>) {
        let mut due = Vec::new();
        let mut emptied = Vec::new();
        for (partition, queue) in &mut self.partitions {
            while queue.front().is_some_and(|t| t.due_at <= now) {
                if let Some(task) = queue.pop_front() {
                    due.push((partition.clone(), task));
                }
            }
            if queue.is_empty() {
                emptied.push(partition.clone());
            }
        }
        for partition in &emptied {
            self.partitions.remove(partition);
        }
        (due, emptied)
    }

    /// Forgets a revoked partition's tasks: they are not committed, so the next owner reads them.
    pub fn forget(&mut self, partition: &Partition) {
        self.partitions.remove(partition);
    }

    /// Tasks waiting over every partition.
    pub fn len(&self) -> usize {
        self.partitions.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(seconds: u64) -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn task(offset: i64, due: u64) -> Waiting {
        Waiting {
            offset,
            key: None,
            payload: vec![],
            due_at: at(due),
        }
    }

    #[test]
    fn heads_come_due_in_time_and_partitions_empty_out() {
        let mut room = WaitingRoom::default();
        let p0 = ("retry.5s".to_owned(), 0);
        let p1 = ("retry.5s".to_owned(), 1);
        room.wait(p0.clone(), task(10, 105));
        room.wait(p0.clone(), task(11, 106));
        room.wait(p1.clone(), task(3, 103));
        assert_eq!(room.next_due(), Some(at(103)));
        assert!(room.is_waiting(&p0));

        let (due, emptied) = room.take_due(at(104));
        assert_eq!(due, vec![(p1.clone(), task(3, 103))]);
        assert_eq!(emptied, vec![p1.clone()]);
        assert_eq!(room.next_due(), Some(at(105)));

        let (due, emptied) = room.take_due(at(106));
        assert_eq!(
            due.iter().map(|(_, t)| t.offset).collect::<Vec<_>>(),
            vec![10, 11]
        );
        assert_eq!(emptied, vec![p0.clone()]);
        assert_eq!(room.len(), 0);
        assert_eq!(room.next_due(), None);
    }

    #[test]
    fn a_task_behind_a_later_head_waits_for_it() {
        let mut room = WaitingRoom::default();
        let p = ("retry.5s".to_owned(), 0);
        room.wait(p.clone(), task(1, 110));
        room.wait(p.clone(), task(2, 108)); // jitter made it a little earlier
        let (due, _) = room.take_due(at(109));
        assert!(
            due.is_empty(),
            "the head is not due, so nothing behind it goes"
        );
        let (due, _) = room.take_due(at(110));
        assert_eq!(due.len(), 2);
    }

    #[test]
    fn a_revoked_partition_is_forgotten() {
        let mut room = WaitingRoom::default();
        let p = ("retry.5s".to_owned(), 0);
        room.wait(p.clone(), task(1, 110));
        room.forget(&p);
        assert_eq!(room.len(), 0);
        assert!(!room.is_waiting(&p));
    }
}
