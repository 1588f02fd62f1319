//! What this dispatcher has read of each partition it owns, and which of a strict endpoint's
//! tasks are read and not done yet: a head goes out only once every earlier task of its
//! endpoint reached the queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::MutexGuard;
use std::sync::atomic::Ordering as AtomicOrdering;

use hookstream_model::ids::EndpointId;

use super::StrictQueues;

/// How far this dispatcher has read an owned partition in its current assignment.
#[derive(Debug, Clone, Copy)]
pub(super) struct Reads {
    pub(super) generation: u64,
    /// Where reading started (the committed offset): every task below it was queued already.
    pub(super) start: Option<i64>,
    /// The highest offset read since.
    pub(super) highest: Option<i64>,
}

impl StrictQueues {
    pub(super) fn reads(&self) -> MutexGuard<'_, HashMap<i32, Reads>> {
        self.reads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the partition's reading in assignment `generation` (a new assignment starts
    /// afresh).
    pub(super) fn with_reads(
        &self,
        partition: i32,
        generation: u64,
        change: impl FnOnce(&mut Reads),
    ) {
        let fresh = Reads {
            generation,
            start: None,
            highest: None,
        };
        let mut reads = self.reads();
        let reads = reads.entry(partition).or_insert(fresh);
        if reads.generation < generation {
            *reads = fresh;
        }
        if reads.generation == generation {
            change(reads);
        }
    }

    /// Whether this assignment of the partition has read past `position`, or started reading
    /// after it: then every task of the partition before it was read (and is pending or done).
    pub(super) fn read_past(&self, partition: i32, generation: u64, position: i64) -> bool {
        self.reads().get(&partition).is_some_and(|r| {
            r.generation == generation
                && (r.start.is_some_and(|start| position < start)
                    || r.highest.is_some_and(|highest| highest >= position))
        })
    }

    pub(super) fn pending(&self) -> MutexGuard<'_, HashMap<EndpointId, BTreeMap<i64, usize>>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A task of the endpoint was read at `offset`: heads placed after it wait until it is done.
    /// Tasks of one endpoint may be queued out of order (a task overflowing the lane is queued
    /// beside the lane, jobs ran side by side before the endpoint turned strict), and a head
    /// sent before an earlier task reached the queue would break the order.
    pub fn reading(&self, endpoint: EndpointId, partition: i32, generation: u64, offset: i64) {
        self.with_reads(partition, generation, |reads| {
            reads.highest = Some(reads.highest.map_or(offset, |h| h.max(offset)));
        });
        *self
            .pending()
            .entry(endpoint)
            .or_default()
            .entry(offset)
            .or_default() += 1;
    }

    /// The task read at `offset` is done; the endpoint's driver, if any, looks again.
    pub fn settled(&self, endpoint: EndpointId, offset: i64) {
        {
            let mut pending = self.pending();
            if let Some(offsets) = pending.get_mut(&endpoint) {
                // Only the first pending task's end can let a waiting head go.
                let was_first = offsets.keys().next() == Some(&offset);
                if let Some(count) = offsets.get_mut(&offset) {
                    *count -= 1;
                    if *count == 0 {
                        offsets.remove(&offset);
                    }
                }
                if offsets.is_empty() {
                    pending.remove(&endpoint);
                }
                if !was_first {
                    return;
                }
            }
        }
        if let Some(driver) = self.drivers().get(&endpoint) {
            driver.dirty.store(true, AtomicOrdering::SeqCst);
            driver.wake.notify_one();
        }
    }

    /// Whether a task of the endpoint read before `position` is not done yet.
    pub(super) fn earlier_pending(&self, endpoint: EndpointId, position: i64) -> bool {
        self.pending()
            .get(&endpoint)
            .and_then(|offsets| offsets.keys().next())
            .is_some_and(|first| *first < position)
    }

    pub(super) fn positions(&self) -> MutexGuard<'_, HashMap<i32, i64>> {
        self.positions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The consume loop stored `position` of `partition` for commit.
    pub fn stored_position(&self, partition: i32, position: i64) {
        self.positions().insert(partition, position);
    }

    /// The partition was revoked: its next assignment stores positions of its own.
    pub fn forget_position(&self, partition: i32) {
        self.positions().remove(&partition);
        self.reads().remove(&partition);
    }
}
