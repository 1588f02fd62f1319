//! Which partitions this dispatcher owns and how many sends its lanes have out on each, shared
//! by the consume loop, the lanes and the rebalance callback.
//!
//! A revoked partition's lanes start nothing new (its next owner reads those tasks again), and
//! the callback waits, up to a limit, for the sends already out to be recorded before the
//! partition is released. Each assignment of a partition is a new generation, so a task read
//! under an earlier one (before a revoke and a re-assignment) never moves the committed offset
//! of the current one.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Partition {
    generation: u64,
    owned: bool,
    /// Sends started and not yet recorded.
    sending: usize,
}

#[derive(Debug, Default)]
pub struct Ownership {
    partitions: Mutex<HashMap<i32, Partition>>,
    sends_ended: Condvar,
}

impl Ownership {
    fn partitions(&self) -> MutexGuard<'_, HashMap<i32, Partition>> {
        // Counters only; a panic elsewhere leaves nothing half-changed worth refusing.
        self.partitions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The partitions were assigned: each starts a new generation.
    pub fn assigned(&self, partitions: &[i32]) {
        let mut state = self.partitions();
        for &partition in partitions {
            let entry = state.entry(partition).or_default();
            entry.generation += 1;
            entry.owned = true;
        }
    }

    /// The partitions were revoked: their lanes start nothing new.
    pub fn revoked(&self, partitions: &[i32]) {
        let mut state = self.partitions();
        for partition in partitions {
            if let Some(entry) = state.get_mut(partition) {
                entry.owned = false;
            }
        }
    }

    /// The generation of an owned partition, which tasks read from it now belong to.
    pub fn generation(&self, partition: i32) -> Option<u64> {
        self.partitions()
            .get(&partition)
            .filter(|p| p.owned)
            .map(|p| p.generation)
    }

    /// Whether a task read in `generation` still belongs to the partition's current owner.
    pub fn is_current(&self, partition: i32, generation: u64) -> bool {
        self.generation(partition) == Some(generation)
    }

    /// A lane is about to work on a task read in `generation`. False when the partition was
    /// revoked since: the task is left to the partition's owner. True counts a send out until
    /// [`Ownership::end`].
    fn begin(&self, partition: i32, generation: u64) -> bool {
        let mut state = self.partitions();
        match state.get_mut(&partition) {
            Some(p) if p.owned && p.generation == generation => {
                p.sending += 1;
                true
            }
            _ => false,
        }
    }

    /// As [`Ownership::begin`], the send counted until the guard returned is dropped: however
    /// the job ends (recorded, given up, or its task dying in a panic), the count comes down,
    /// so no later revoke of the partition waits out its handover limit for it.
    pub fn begin_send(self: &Arc<Self>, partition: i32, generation: u64) -> Option<SendGuard> {
        self.begin(partition, generation).then(|| SendGuard {
            ownership: Arc::clone(self),
            partition,
        })
    }

    /// A send counted by [`Ownership::begin`] is recorded (or given up on shutdown).
    fn end(&self, partition: i32) {
        if let Some(p) = self.partitions().get_mut(&partition) {
            p.sending = p.sending.saturating_sub(1);
        }
        self.sends_ended.notify_all();
    }

    /// How many sends are out on `partitions`.
    pub fn sending_on(&self, partitions: &[i32]) -> usize {
        Self::out(&self.partitions(), partitions)
    }

    fn out(state: &HashMap<i32, Partition>, partitions: &[i32]) -> usize {
        partitions
            .iter()
            .filter_map(|p| state.get(p))
            .map(|p| p.sending)
            .sum()
    }

    /// Waits up to `limit` until no send is out on any of `partitions`; returns how many still
    /// are. Blocks the calling thread (the rebalance callback's).
    pub fn wait_until_idle(&self, partitions: &[i32], limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        let mut state = self.partitions();
        loop {
            let out = Self::out(&state, partitions);
            let left = deadline.saturating_duration_since(Instant::now());
            if out == 0 || left.is_zero() {
                return out;
            }
            state = self
                .sends_ended
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }
}

/// One send out on a partition, counted until dropped (see [`Ownership::begin_send`]).
pub struct SendGuard {
    ownership: Arc<Ownership>,
    partition: i32,
}

impl Drop for SendGuard {
    fn drop(&mut self) {
        self.ownership.end(self.partition);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revoked_partition_starts_nothing_and_an_old_generation_is_not_current() {
        let ownership = Ownership::default();
        ownership.assigned(&[0, 1]);
        let first = ownership.generation(0).expect("owned");
        assert!(ownership.begin(0, first));
        ownership.revoked(&[0]);
        assert_eq!(ownership.generation(0), None);
        assert!(!ownership.begin(0, first), "revoked: nothing new starts");
        ownership.assigned(&[0]);
        let second = ownership.generation(0).expect("owned again");
        assert_ne!(first, second);
        assert!(
            !ownership.is_current(0, first),
            "a task of the old generation"
        );
        assert!(ownership.is_current(0, second));
        assert!(!ownership.begin(0, first));
        assert!(ownership.begin(1, ownership.generation(1).expect("owned")));
    }

    #[test]
    fn waiting_for_idle_ends_when_the_sends_end_or_at_the_limit() {
        let ownership = Arc::new(Ownership::default());
        ownership.assigned(&[3]);
        let generation = ownership.generation(3).expect("owned");
        assert!(ownership.begin(3, generation));
        assert_eq!(
            ownership.wait_until_idle(&[3], Duration::ZERO),
            1,
            "one send is out"
        );
        let ender = {
            let ownership = Arc::clone(&ownership);
            std::thread::spawn(move || ownership.end(3))
        };
        assert_eq!(ownership.wait_until_idle(&[3], Duration::from_secs(30)), 0);
        ender.join().expect("the ending thread");
        assert_eq!(ownership.wait_until_idle(&[7], Duration::ZERO), 0);
    }

    #[test]
    fn a_send_whose_task_dies_is_no_longer_counted() {
        let ownership = Arc::new(Ownership::default());
        ownership.assigned(&[2]);
        let generation = ownership.generation(2).expect("owned");
        let sending = ownership.begin_send(2, generation).expect("owned");
        let dying = std::thread::spawn(move || {
            let _sending = sending;
            panic!("a job dies mid-send");
        });
        assert!(dying.join().is_err());
        assert_eq!(ownership.sending_on(&[2]), 0);
        ownership.revoked(&[2]);
        assert!(ownership.begin_send(2, generation).is_none());
    }
}
