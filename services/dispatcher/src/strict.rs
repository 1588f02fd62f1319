//! Strict ordering: a strict endpoint's tasks wait in a queue in the store, in the order they
//! arrived, and one driver per endpoint (in the dispatcher that owns the endpoint's partition)
//! sends the head, retries it in place, and moves on only once it is delivered or
//! dead-lettered. The backlog lives in the store, so it costs no memory, survives a crash and
//! follows a rebalance: the partition's next owner finds the queue and goes on from its head.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::Instrument;

use hookstream_model::delivery::DeliveryStatus;
use hookstream_model::ids::EndpointId;
use hookstream_model::task::DeliveryTask;
use hookstream_store::QueuedTask;

use crate::health::Sends;
use crate::metrics;
use crate::ownership::Ownership;
use crate::progress::{Interrupted, Progress, Route};
use crate::routing::QuarantinedTask;
use crate::worker::{Worker, attempt_span};

mod dead_letters;
mod reads;

use reads::Reads;

/// How often a queue held at a dead letter looks again for its replay or a change of setting (a
/// task queued for the endpoint, such as the replay's, wakes it at once).
const HELD_RECHECK: Duration = Duration::from_secs(5);
/// How many heads a driver removes between records of its progress: a driver started later
/// reads on from there, not through every removed row (tombstones, on ScyllaDB).
const PROGRESS_EVERY: u32 = 100;
/// How often a head waits for its partition to be read past it, after an assignment.
const READ_RECHECK: Duration = Duration::from_millis(100);

/// Where a partition's reading starts for this dispatcher: its committed offset. `None` when
/// it cannot be read now (asked again shortly).
pub type ReadStart = Box<dyn Fn(i32) -> Option<i64> + Send + Sync>;

/// The strict endpoints' queues of this dispatcher's partitions, and their drivers.
pub struct StrictQueues {
    worker: Arc<Worker>,
    ownership: Arc<Ownership>,
    sends: Arc<Sends>,
    drivers: Mutex<HashMap<EndpointId, Arc<Driver>>>,
    /// Per endpoint, the offsets of its tasks read and not yet done (queued, delivered, held on
    /// a tier, given up), with how many copies of each (a partition read again after a
    /// rebalance). A strict queue sends no head placed after one of them: that task may be on
    /// its way to the queue, to a place before the head.
    pending: Mutex<HashMap<EndpointId, BTreeMap<i64, usize>>>,
    /// Each owned partition's reading in its current assignment: a head at a position not yet
    /// read past may have tasks of its endpoint before it still unread (queued by the previous
    /// owner out of order, their offsets not committed).
    reads: Mutex<HashMap<i32, Reads>>,
    read_start: ReadStart,
    /// Each owned partition's offset position as last stored for commit: every task below it
    /// is queued (and its driver told), and every one from it on is read again after a crash.
    positions: Mutex<HashMap<i32, i64>>,
}

/// The one task working an endpoint's queue, for one assignment of its partition.
struct Driver {
    partition: i32,
    generation: u64,
    /// Set when a task was queued since the driver last read the head: it reads again before
    /// it ends, so a task queued as it finds the queue empty is not left behind.
    dirty: AtomicBool,
    /// Wakes a driver waiting at a dead letter when a task is queued (the letter's replay).
    wake: Notify,
    /// The lowest position queued since the driver last looked. Tasks of one endpoint may be
    /// queued out of order (jobs that ran side by side just before the endpoint turned strict,
    /// a task read again after a crash): the driver reads again from below it.
    floor: AtomicI64,
    /// Whether the queue waits at a dead letter (for the gauge).
    held: AtomicBool,
}

impl Driver {
    fn hold(&self) {
        if !self.held.swap(true, AtomicOrdering::SeqCst) {
            metrics::STRICT_QUEUES_HELD.inc();
        }
    }

    fn release(&self) {
        if self.held.swap(false, AtomicOrdering::SeqCst) {
            metrics::STRICT_QUEUES_HELD.dec();
        }
    }
}

/// What became of a queue's head.
enum Turn {
    /// It left the queue (delivered, dead-lettered and let go, or quarantined).
    Removed,
    /// Read the head again: it was tried and its outcome recorded.
    Again,
    /// Look again after this long; `woken` if a newly queued task should end the wait early.
    Wait { wait: Duration, woken: bool },
    /// The partition moved or the process is stopping.
    Stop,
}

impl StrictQueues {
    pub fn new(
        worker: Arc<Worker>,
        ownership: Arc<Ownership>,
        sends: Arc<Sends>,
        read_start: ReadStart,
    ) -> Arc<Self> {
        Arc::new(Self {
            worker,
            ownership,
            sends,
            drivers: Mutex::default(),
            pending: Mutex::default(),
            reads: Mutex::default(),
            read_start,
            positions: Mutex::default(),
        })
    }

    fn drivers(&self) -> MutexGuard<'_, HashMap<EndpointId, Arc<Driver>>> {
        self.drivers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts a task read at `offset` of `partition` in its endpoint's queue, durably, and makes
    /// sure a driver works the queue. Its offset may be committed once this returns.
    pub async fn enqueue(
        self: &Arc<Self>,
        task: &DeliveryTask,
        partition: i32,
        offset: i64,
        generation: u64,
    ) -> Result<(), Interrupted> {
        let encoded = task.encode().map_err(|err| {
            Interrupted::Unprocessable(format!("the task does not encode for its queue: {err}"))
        })?;
        let entry = QueuedTask {
            endpoint_id: task.endpoint_id,
            partition,
            position: offset,
            task: encoded,
        };
        self.worker
            .durably(|| self.worker.store.enqueue_task(&entry))
            .await?;
        metrics::STRICT_QUEUED.inc();
        tracing::debug!(delivery_id = %task.delivery_id, endpoint_id = %task.endpoint_id, position = offset, "task queued in strict order");
        self.kick(task.endpoint_id, partition, generation, offset);
        Ok(())
    }

    /// Works the queues of the strict endpoints on a newly assigned partition, once it knows
    /// where the partition's reading starts.
    pub async fn resume(self: Arc<Self>, partition: i32) {
        let Some(generation) = self.ownership.generation(partition) else {
            return;
        };
        let mut wait = Duration::from_millis(200);
        let start = loop {
            let queues = Arc::clone(&self);
            let start = tokio::task::spawn_blocking(move || (queues.read_start)(partition))
                .await
                .ok()
                .flatten();
            if let Some(start) = start {
                break start;
            }
            if !self.ownership.is_current(partition, generation)
                || self.worker.shutdown.is_cancelled()
            {
                return;
            }
            tracing::warn!(
                partition,
                "where the partition's reading starts is not known yet; asking again"
            );
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(10));
        };
        // An assignment that ended while its start was read has no say over the next one's.
        if !self.ownership.is_current(partition, generation) {
            return;
        }
        self.with_reads(partition, generation, |reads| reads.start = Some(start));
        match self
            .worker
            .durably(|| self.worker.store.queued_endpoints(partition))
            .await
        {
            Ok(endpoints) => {
                for endpoint in endpoints {
                    self.kick(endpoint, partition, generation, i64::MAX);
                }
            }
            Err(Interrupted::Shutdown) => {}
            Err(Interrupted::Unprocessable(reason)) => {
                tracing::error!(partition, %reason, "cannot list the strict queues of a partition");
            }
        }
    }

    /// Tells the endpoint's driver that a task was queued at `position` (`i64::MAX`: none, only
    /// look), or starts one. Nothing for a partition assignment that is over: its next one
    /// has drivers of its own.
    fn kick(
        self: &Arc<Self>,
        endpoint: EndpointId,
        partition: i32,
        generation: u64,
        position: i64,
    ) {
        if !self.ownership.is_current(partition, generation) {
            return;
        }
        let mut drivers = self.drivers();
        if let Some(driver) = drivers.get(&endpoint)
            && driver.partition == partition
            && driver.generation == generation
        {
            driver.floor.fetch_min(position, AtomicOrdering::SeqCst);
            driver.dirty.store(true, AtomicOrdering::SeqCst);
            driver.wake.notify_one();
            return;
        }
        // Any driver of an earlier assignment ends at its next look at the partition.
        let driver = Arc::new(Driver {
            partition,
            generation,
            dirty: AtomicBool::new(true),
            wake: Notify::new(),
            floor: AtomicI64::new(position),
            held: AtomicBool::new(false),
        });
        drivers.insert(endpoint, Arc::clone(&driver));
        tokio::spawn(Arc::clone(self).drive(endpoint, driver));
    }

    async fn drive(self: Arc<Self>, endpoint: EndpointId, driver: Arc<Driver>) {
        metrics::STRICT_QUEUES.inc();
        let store = &self.worker.store;
        // The last head removed: the next is read from past it (see `queue_head`).
        let mut after = self
            .worker
            .durably(|| store.queue_progress(driver.partition, endpoint))
            .await
            .unwrap_or(-1);
        let mut recorded = after;
        let mut removed = 0u32;
        loop {
            if self.worker.shutdown.is_cancelled()
                || !self
                    .ownership
                    .is_current(driver.partition, driver.generation)
            {
                break;
            }
            driver.dirty.store(false, AtomicOrdering::SeqCst);
            let floor = driver.floor.swap(i64::MAX, AtomicOrdering::SeqCst);
            if floor <= after {
                after = floor - 1;
            }
            let head = match self
                .worker
                .durably(|| store.queue_head(endpoint, after))
                .await
            {
                Ok(head) => head,
                Err(Interrupted::Shutdown) => break,
                Err(Interrupted::Unprocessable(reason)) => {
                    tracing::error!(endpoint_id = %endpoint, %reason, "cannot read a strict queue; trying again");
                    self.pause(HELD_RECHECK, None).await;
                    continue;
                }
            };
            let Some(head) = head else {
                if after != recorded {
                    self.record_progress(endpoint, &driver, after).await;
                    recorded = after;
                }
                if self.ended(endpoint, &driver, after).await {
                    break;
                }
                continue;
            };
            match self.turn(endpoint, &driver, &head).await {
                Turn::Removed => {
                    after = head.position;
                    removed += 1;
                    if removed.is_multiple_of(PROGRESS_EVERY) {
                        self.record_progress(endpoint, &driver, after).await;
                        recorded = after;
                    }
                }
                Turn::Again => {}
                Turn::Wait { wait, woken } => {
                    self.pause(wait, woken.then_some(&driver.wake)).await;
                }
                Turn::Stop => break,
            }
        }
        driver.release();
        let mut drivers = self.drivers();
        if drivers
            .get(&endpoint)
            .is_some_and(|d| Arc::ptr_eq(d, &driver))
        {
            drivers.remove(&endpoint);
        }
        metrics::STRICT_QUEUES.dec();
    }

    /// Records how far the queue was removed, for a driver started later. Never past a task
    /// that such a driver would not be told of: one queued out of order below `after` whose
    /// offset is committed (so it is not read again) is in the floor until this driver reads
    /// it, and one whose offset is not is read and queued again, telling that driver. Best
    /// effort: a record missed only makes the next driver read past more removed rows.
    async fn record_progress(&self, endpoint: EndpointId, driver: &Driver, after: i64) {
        // Held as a send: a revoke waits for it, so no later owner's progress is overwritten.
        let Some(_sending) = self
            .ownership
            .begin_send(driver.partition, driver.generation)
        else {
            return;
        };
        // The position first: every task below it was queued, and its driver told (the floor),
        // before it was stored.
        let Some(stored) = self.positions().get(&driver.partition).copied() else {
            return;
        };
        let floor = driver.floor.load(AtomicOrdering::SeqCst);
        let progress = after.min(stored - 1).min(floor.saturating_sub(1));
        let store = &self.worker.store;
        if let Err(err) = store
            .record_queue_progress(driver.partition, endpoint, progress)
            .await
        {
            tracing::warn!(endpoint_id = %endpoint, error = %err, "strict queue progress not recorded");
        }
    }

    /// The queue was found empty: ends the driver (true) unless a task was queued meanwhile.
    /// The endpoint stays noted on its partition (a new owner reads its empty queue once),
    /// unless the endpoint is gone: nothing is queued for a deleted endpoint.
    async fn ended(&self, endpoint: EndpointId, driver: &Driver, after: i64) -> bool {
        let store = &self.worker.store;
        if let Ok(None) = store.get_endpoint(endpoint).await
            && let Ok(None) = store.queue_head(endpoint, after).await
            && let Err(err) = store
                .forget_queued_endpoint(driver.partition, endpoint)
                .await
        {
            tracing::warn!(endpoint_id = %endpoint, error = %err, "a deleted endpoint's strict queue not forgotten");
        }
        // A task queued since the last read set the flag under this lock; one queued after it
        // is released finds no driver and starts one.
        let mut drivers = self.drivers();
        let ours = drivers
            .get(&endpoint)
            .is_some_and(|d| std::ptr::eq(&**d, driver));
        if ours && driver.dirty.load(AtomicOrdering::SeqCst) {
            return false;
        }
        if ours {
            drivers.remove(&endpoint);
        }
        true
    }

    /// Waits `wait`, or until a task is queued when `wake` is given, or until shutdown.
    async fn pause(&self, wait: Duration, wake: Option<&Notify>) {
        let woken = async {
            match wake {
                Some(wake) => wake.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.worker.shutdown.cancelled() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = woken => {}
        }
    }

    /// Works on the queue's head once.
    async fn turn(&self, endpoint: EndpointId, driver: &Driver, head: &QueuedTask) -> Turn {
        let mut task = match DeliveryTask::decode(&head.task) {
            Ok(task) => task,
            Err(err) => {
                return self
                    .set_aside(
                        driver,
                        head,
                        format!("the queued task does not decode: {err}"),
                    )
                    .await;
            }
        };
        let store = &self.worker.store;
        let id = task.delivery_id;
        let delivery = match self.worker.durably(|| store.get_delivery(id)).await {
            Ok(Some(delivery)) => delivery,
            Ok(None) => {
                return self
                    .set_aside(driver, head, "the store has no such delivery".into())
                    .await;
            }
            Err(Interrupted::Shutdown) => return Turn::Stop,
            Err(Interrupted::Unprocessable(reason)) => {
                return self.set_aside(driver, head, reason).await;
            }
        };
        if delivery.status.is_final() {
            if delivery.status == DeliveryStatus::DeadLettered {
                match self.holds_at_dead_letter(endpoint).await {
                    Some(true) => return self.held_at(driver, head, &task, &delivery).await,
                    Some(false) => {}
                    None => return Turn::Stop,
                }
            }
            driver.release();
            return self.remove(endpoint, driver, head.position).await;
        }
        driver.release();
        let now = OffsetDateTime::now_utc();
        if delivery.status == DeliveryStatus::Retrying
            && let Some(due) = delivery.next_attempt_at.filter(|due| *due > now)
        {
            return Turn::Wait {
                wait: (due - now).try_into().unwrap_or_default(),
                woken: false,
            };
        }
        // The store's count, not the queued copy's: the head is retried in place, and its
        // queued task still says how many attempts were made before it was queued.
        task.attempts_made = delivery.attempts;
        task.due_at = None;
        if let Some(turn) = self.released(endpoint, driver, head, &task).await {
            return turn;
        }
        // A task before this head may still be on its way to the queue: not read yet in this
        // assignment (the previous owner queued out of order), or read and not done.
        if !self.read_past(driver.partition, driver.generation, head.position) {
            return Turn::Wait {
                wait: READ_RECHECK,
                woken: true,
            };
        }
        if self.earlier_pending(endpoint, head.position) {
            return Turn::Wait {
                wait: HELD_RECHECK,
                woken: true,
            };
        }
        if self.worker.wait_while_sending_paused().await.is_err() {
            return Turn::Stop;
        }
        let Some(sending) = self
            .ownership
            .begin_send(driver.partition, driver.generation)
        else {
            return Turn::Stop;
        };
        let send = self.sends.start();
        let span = attempt_span(&task);
        let progress = self
            .worker
            .deliver(&task, Route::QueueHead, None)
            .instrument(span.clone())
            .await;
        let turn = match progress {
            Ok(Progress::Delivered(settlement)) => {
                match self
                    .worker
                    .record_delivered(*settlement)
                    .instrument(span)
                    .await
                {
                    // Recorded: the head leaves without being read again.
                    Ok(()) => self.remove(endpoint, driver, head.position).await,
                    Err(_) => Turn::Stop,
                }
            }
            Ok(Progress::Finished | Progress::Queue) => Turn::Again,
            Ok(Progress::RateLimited(wait) | Progress::Wait(wait)) => {
                Turn::Wait { wait, woken: false }
            }
            // Not given for a queue head (it waits with `Wait`); were it, the head waits too.
            Ok(Progress::ClaimedElsewhere) => Turn::Wait {
                wait: crate::worker::CLAIM_RECHECK,
                woken: false,
            },
            Err(Interrupted::Shutdown) => Turn::Stop,
            Err(Interrupted::Unprocessable(reason)) => self.set_aside(driver, head, reason).await,
        };
        drop(send);
        drop(sending);
        turn
    }

    async fn remove(&self, endpoint: EndpointId, driver: &Driver, position: i64) -> Turn {
        // Held as a send: a driver of an earlier assignment removes nothing once the partition
        // has moved on (its next owner may have put a replay in that place).
        let Some(_sending) = self
            .ownership
            .begin_send(driver.partition, driver.generation)
        else {
            return Turn::Stop;
        };
        let store = &self.worker.store;
        match self
            .worker
            .durably(|| store.dequeue_task(endpoint, position))
            .await
        {
            Ok(()) => Turn::Removed,
            Err(Interrupted::Shutdown) => Turn::Stop,
            Err(Interrupted::Unprocessable(reason)) => {
                tracing::error!(endpoint_id = %endpoint, position, %reason, "cannot remove a strict queue's head");
                Turn::Wait {
                    wait: HELD_RECHECK,
                    woken: false,
                }
            }
        }
    }

    /// A head that cannot be processed goes to the quarantine topic with the reason, and leaves
    /// the queue: kept, it would stop the endpoint for good.
    async fn set_aside(&self, driver: &Driver, head: &QueuedTask, reason: String) -> Turn {
        tracing::error!(endpoint_id = %head.endpoint_id, position = head.position, %reason, "strict queue head quarantined");
        let quarantined = QuarantinedTask {
            key: Some(head.endpoint_id.to_string().into_bytes()),
            payload: head.task.clone(),
            headers: None,
            reason,
            source: format!("strict queue {}/{}", head.endpoint_id, head.position),
        };
        if self
            .worker
            .routing
            .to_quarantine(quarantined)
            .await
            .is_err()
        {
            return Turn::Stop;
        }
        metrics::TASKS_QUARANTINED
            .with_label_values(&["unprocessable"])
            .inc();
        self.remove(head.endpoint_id, driver, head.position).await
    }
}
