//! How far delivering a task went, and why one was not finished: what the dispatcher's lanes
//! and queues decide their next step on.

use std::time::Duration;

use hookstream_model::task::DeliveryTask;
use hookstream_store::AttemptClaim;

use crate::metrics;
use crate::outcome::Outcome;

/// Where a task being delivered came from, which decides where it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Read from the deliveries topic. A task that may not go out yet waits on a tier (in its
    /// lane, in partition order, while another copy holds its claim: see
    /// [`Progress::ClaimedElsewhere`]) and a failed one is retried through a tier; a strict
    /// endpoint's task is queued instead (see [`Progress::Queue`]).
    Topic,
    /// The head of a strict endpoint's queue (see `crate::strict`): it waits in place and is
    /// retried in place, since a tier would let the deliveries behind it overtake it.
    QueueHead,
}

/// Why a task was not finished.
#[derive(Debug)]
pub enum Interrupted {
    /// The process is stopping: the task's offset stays uncommitted and the task is consumed
    /// again after the restart.
    Shutdown,
    /// The task cannot be processed as it stands (the store has no such delivery, or refuses
    /// for good: damaged data). Trying again would wedge its lane and hold its partition's
    /// offset, so it goes to the quarantine with the reason instead.
    Unprocessable(String),
}

/// How far [`Worker::deliver`](crate::worker::Worker::deliver) took a task.
pub enum Progress {
    /// Its outcome is durable: the offset may be committed.
    Finished,
    /// It was delivered; the attempt is still to be recorded with [`Worker::record_delivered`](crate::worker::Worker::record_delivered).
    /// The endpoint's next task need not wait for that write.
    Delivered(Box<Settlement>),
    /// Nothing was done: the endpoint's rate limit allows its next delivery after this long.
    /// The task is to be delivered again then (nothing was claimed, no attempt is spent).
    RateLimited(Duration),
    /// Nothing was done: the endpoint keeps strict order, or is disabled, so the task joins its
    /// queue in the store (a disabled endpoint's waits there, unsent, until it is enabled).
    Queue,
    /// Nothing was done: a queue head may not go out yet (its endpoint is paused, its breaker
    /// open, another copy holds its claim), or any task's claim ran short before its send. It
    /// is to be delivered again after this long.
    Wait(Duration),
    /// Nothing was done: another copy holds the claim on a task in partition order (a
    /// dispatcher killed with it out, until the claim's lease runs out; or a claim of this
    /// dispatcher's that it failed to give back). It is to be delivered again after
    /// [`CLAIM_RECHECK`](crate::worker::CLAIM_RECHECK), the tasks behind it waiting: on a tier, they would go first. The wait
    /// is not the endpoint's pace (see `crate::lanes::Stopwatch`).
    ClaimedElsewhere,
}

/// A delivered task whose attempt is not recorded yet.
pub struct Settlement {
    pub(crate) task: DeliveryTask,
    pub(crate) claim: AttemptClaim,
    pub(crate) outcome: Outcome,
}

/// A task consumed without an attempt: nothing to send, its outcome is already durable.
pub(crate) fn skipped(task: &DeliveryTask, reason: &'static str) -> Progress {
    tracing::debug!(delivery_id = %task.delivery_id, reason, "task needs no attempt; skipped");
    metrics::TASKS_SKIPPED.with_label_values(&[reason]).inc();
    Progress::Finished
}

/// A task whose delivery the store does not know: ingest stores a delivery before its task is
/// written, so the row was lost (or purged). Quarantined, not dropped.
pub(crate) fn unknown_delivery() -> Interrupted {
    Interrupted::Unprocessable("the store has no such delivery".into())
}
