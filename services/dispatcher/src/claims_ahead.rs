//! Claims taken ahead for the jobs an endpoint's lane has queued. A lane in partition order
//! sends one request at a time, and each send used to wait for its own claim's store write
//! (about 20 ms under load with SQLite, where every process's writes queue for one lock): the
//! lane's pace was that write, not the endpoint. Claiming the next few queued jobs together
//! lets the store commit them in one group, and the sends then go one after another.
//!
//! A claim taken ahead is still checked before its send (see `Worker::deliver`: enough of its
//! lease left, else given back and claimed anew) and given back whenever its job goes another
//! way, the lane's settings change, the kill switch holds sending, or the lane ends. Each
//! counts as a send on its job's partition, so a revoke waits for it (as for a request out)
//! while the lane gives back those of revoked partitions; the partition's next owner then finds
//! them free instead of holding their deliveries behind later ones. One left behind by a crash
//! runs out with its lease, as an in-flight send's claim does (the next owner's lane waits for
//! it, in partition order), which is why only a few are taken at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;

use hookstream_model::ids::DeliveryId;
use hookstream_model::task::DeliveryTask;
use hookstream_store::{AttemptClaim, ClaimOutcome};

use crate::metrics;
use crate::ownership::{Ownership, SendGuard};
use crate::worker::Worker;

/// The most jobs a lane claims at once (the one it is about to send included). Few: each is an
/// attempt no other copy may send until it is sent, given back, or its lease runs out.
pub const MOST: usize = 8;

/// How many jobs a lane whose last job took `pace` claims at once: as many as it sends within a
/// quarter of the lease (the last of them then still has the part of its lease a send on it
/// needs, see `Worker::deliver`), at most [`MOST`]. A slow endpoint's lane claims none ahead.
pub fn most(pace: Duration, lease: Duration) -> usize {
    let window = lease / 4;
    if pace.is_zero() {
        return MOST;
    }
    let fit = window.as_nanos() / pace.as_nanos();
    usize::try_from(fit).unwrap_or(MOST).min(MOST)
}

/// A task as a lane holds it: where it was read, for its claim to count as a send there.
pub struct Queued<'a> {
    pub task: &'a DeliveryTask,
    pub partition: i32,
    pub generation: u64,
}

/// The task a claim is for: its delivery and the attempts it has seen. Not the delivery alone:
/// an older copy of the delivery, which its own claim finds stale, must not go out on the
/// claim a newer copy took.
type Key = (DeliveryId, u32);

fn key(task: &DeliveryTask) -> Key {
    (task.delivery_id, task.attempts_made)
}

struct Held {
    claim: AttemptClaim,
    partition: i32,
    generation: u64,
    /// Keeps a revoke of the partition waiting until the claim is sent on or given back.
    _sending: SendGuard,
}

/// A lane's claims taken ahead.
#[derive(Default)]
pub struct ClaimsAhead {
    claims: HashMap<Key, Held>,
    /// Tasks a group claim did not get (final, stale, busy, or the store failed): each claims
    /// for itself when it comes up, rather than in every group until then.
    passed: HashSet<Key>,
}

impl ClaimsAhead {
    /// The claim taken ahead for `task`, if any; it is the caller's from now on.
    pub fn take(&mut self, task: &DeliveryTask) -> Option<AttemptClaim> {
        self.passed.remove(&key(task));
        self.claims.remove(&key(task)).map(|held| held.claim)
    }

    /// Claims the attempts of those of `tasks` not tried yet, in one go. Only the claims taken
    /// are kept: a task found final, stale, busy or unknown, or one the store failed on, is
    /// answered by its own claim when it comes up, as it would have been anyway. A task of a
    /// partition no longer owned is not claimed.
    pub async fn claim<'a>(
        &mut self,
        worker: &Worker,
        ownership: &Arc<Ownership>,
        tasks: impl Iterator<Item = Queued<'a>>,
    ) {
        let wanted: Vec<(Queued<'a>, SendGuard)> = tasks
            .filter(|queued| {
                let key = key(queued.task);
                !self.claims.contains_key(&key) && !self.passed.contains(&key)
            })
            .filter_map(|queued| {
                let sending = ownership.begin_send(queued.partition, queued.generation)?;
                Some((queued, sending))
            })
            .collect();
        if wanted.len() < 2 {
            // One claim alone gains nothing over the task's own.
            return;
        }
        let claims = wanted.iter().map(|(queued, _)| {
            worker.store.claim_attempt(
                queued.task.delivery_id,
                queued.task.attempts_made,
                worker.claim_lease,
            )
        });
        let outcomes = join_all(claims).await;
        for ((queued, sending), outcome) in wanted.into_iter().zip(outcomes) {
            let key = key(queued.task);
            if let Ok(ClaimOutcome::Claimed { claim, .. }) = outcome {
                let held = Held {
                    claim,
                    partition: queued.partition,
                    generation: queued.generation,
                    _sending: sending,
                };
                self.claims.insert(key, held);
            } else {
                self.passed.insert(key);
                metrics::CLAIMS_AHEAD
                    .with_label_values(&["not_taken"])
                    .inc();
            }
        }
    }

    /// Gives back the claims of partitions revoked since they were taken, at once: the revoke
    /// waits for them.
    pub async fn release_revoked(&mut self, worker: &Worker, ownership: &Ownership) {
        let revoked: Vec<Key> = self
            .claims
            .iter()
            .filter(|(_, held)| !ownership.is_current(held.partition, held.generation))
            .map(|(key, _)| *key)
            .collect();
        let held: Vec<Held> = revoked
            .iter()
            .filter_map(|key| self.claims.remove(key))
            .collect();
        release(worker, held).await;
    }

    /// Gives every claim back (best effort: one not given back runs out with its lease).
    pub async fn release_all(&mut self, worker: &Worker) {
        self.passed.clear();
        let held: Vec<Held> = self.claims.drain().map(|(_, held)| held).collect();
        release(worker, held).await;
    }
}

async fn release(worker: &Worker, held: Vec<Held>) {
    // `release_ahead` only logs a failure. The send guards go once all are given back.
    join_all(held.iter().map(|held| worker.release_ahead(&held.claim))).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lane_claims_ahead_only_what_it_sends_within_a_quarter_of_the_lease() {
        let lease = Duration::from_secs(60);
        assert_eq!(
            most(Duration::ZERO, lease),
            MOST,
            "a new lane's pace is unknown"
        );
        assert_eq!(most(Duration::from_millis(2), lease), MOST);
        assert_eq!(most(Duration::from_secs(5), lease), 3);
        assert_eq!(most(Duration::from_secs(8), lease), 1, "none ahead");
        assert_eq!(most(Duration::from_secs(600), lease), 0);
    }
}
