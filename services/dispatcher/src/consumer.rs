//! The consume loop: reads delivery tasks, hands each to its endpoint's lane, and stores an
//! offset only when every earlier task of the partition is finished.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rdkafka::consumer::StreamConsumer;
use rdkafka::message::{BorrowedHeaders, Message};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use hookstream_kafka::OffsetTracker;
use hookstream_model::ids::EndpointId;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::shutdown::CancellationToken;
use hookstream_runtime::telemetry;

use crate::concurrency::LaneSettings;
use crate::decoding::TaskDecoder;
use crate::fetch_wakeup::FetchWakeup;
use crate::health::{Heartbeat, Sends};
use crate::held::{self, HeldPartitions};
use crate::job::{Done, Job, observe_queue_time, record_age, written_at};
use crate::lane::{BatchRoom, Lane, quarantine_task};
use crate::lanes::Lanes;
use crate::metrics;
use crate::ownership::Ownership;
use crate::progress::Interrupted;
use crate::rebalance::{RebalanceListener, Rebalances};
use crate::routing::QuarantinedTask;
use crate::strict::StrictQueues;
use crate::worker::Worker;

mod fetching;

use fetching::Fetching;

/// Where a consumed task goes next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    /// Its endpoint's lane.
    Lane,
    /// A hold of its partition, until the lane has room (see [`crate::held`]).
    Hold,
    /// A retry tier (or a strict endpoint's queue), until its endpoint's backlog goes down.
    Park,
}

/// What the loop needs besides the consumer.
pub struct ConsumeLoop {
    pub consumer: Arc<StreamConsumer<RebalanceListener>>,
    pub rebalances: Rebalances,
    pub topic: String,
    /// Reads tasks, learning newer writers' schemas from the schemas topic.
    pub decoder: TaskDecoder,
    pub worker: Arc<Worker>,
    pub ownership: Arc<Ownership>,
    /// The strict endpoints' queues of this instance's partitions.
    pub queues: Arc<StrictQueues>,
    /// Most tasks in flight in this instance; above it, fetching pauses (polling goes on).
    pub max_in_flight: usize,
    /// Most bytes of tasks in flight in this instance; above it, fetching pauses too.
    pub max_in_flight_bytes: usize,
    /// Most tasks one endpoint may have waiting in its lane; more wait on a tier instead.
    pub max_queued_per_endpoint: usize,
    /// Most bytes of tasks one endpoint may have waiting in its lane; more wait on a tier.
    pub max_queued_bytes_per_endpoint: usize,
    /// Longest a new task of an endpoint may expect to wait in its lane (see [`Lanes::behind`]);
    /// when it would wait longer, it waits on a tier instead, so an endpoint that does not keep
    /// up cannot fill the instance while one that keeps up keeps its backlog in order.
    pub max_lane_wait: Duration,
    /// Beaten every turn of the loop, for `/healthz`.
    pub heartbeat: Arc<Heartbeat>,
    /// The jobs lanes are working on, for `/readyz` and the oldest-send gauge.
    pub sends: Arc<Sends>,
    /// Shared with the rebalance listener: whether fetching is paused.
    pub fetch_paused: Arc<AtomicBool>,
    /// Gets resumed partitions fetched at once (see [`crate::fetch_wakeup`]).
    pub fetch_wakeup: FetchWakeup,
    pub drain_timeout: Duration,
    /// `true` while the kill switch has all sending paused.
    pub sending_paused: tokio::sync::watch::Receiver<bool>,
    pub shutdown: CancellationToken,
}

impl ConsumeLoop {
    /// Runs until shutdown, then lets work in flight finish (up to the drain timeout) and
    /// commits what finished.
    pub async fn run(mut self) {
        let (done_tx, mut done_rx) = unbounded_channel::<Done>();
        let mut tracker = OffsetTracker::new();
        let mut lanes: Lanes<Job> = Lanes::default();
        let mut held: HeldPartitions<Job> = HeldPartitions::new();
        let mut fetching = Fetching::default();
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        // While a partition is held: its endpoint may stop finishing jobs, and with no other
        // news the hold would last until the next tick.
        let mut hold_ticks = tokio::time::interval(held::HOLD_BEHIND);
        hold_ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        loop {
            self.heartbeat.beat();
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                // Turns the loop (and so beats) when nothing else happens.
                _ = ticks.tick() => {
                    let oldest = self.sends.oldest().unwrap_or_default();
                    metrics::OLDEST_SEND.set(oldest.as_secs_f64());
                }
                _ = hold_ticks.tick(), if held.len() > 0 => {
                    self.release_held(&mut lanes, &mut held, &fetching, &done_tx);
                }
                Some(partitions) = self.rebalances.assigned.recv() => {
                    for partition in partitions {
                        tokio::spawn(Arc::clone(&self.queues).resume(partition));
                    }
                }
                Some(partitions) = self.rebalances.revoked.recv() => {
                    for partition in partitions {
                        tracker.forget(partition);
                        self.queues.forget_position(partition);
                        self.let_go_held(partition, &mut held, &mut lanes, &done_tx);
                    }
                    // Forgotten tasks no longer count against the instance's limit. Their bytes
                    // still do until their jobs finish: they are still in memory.
                    fetching.full = self.over_limit(&tracker, &fetching);
                    self.apply(&mut fetching, &held);
                }
                Some(done) = done_rx.recv() => {
                    fetching.bytes = fetching.bytes.saturating_sub(done.bytes);
                    self.finish(done, &mut tracker, &mut lanes);
                    if held.len() > 0 {
                        self.release_held(&mut lanes, &mut held, &fetching, &done_tx);
                    }
                    fetching.full = self.over_limit(&tracker, &fetching);
                    self.apply(&mut fetching, &held);
                }
                Ok(()) = self.sending_paused.changed() => {
                    fetching.kill_switch = *self.sending_paused.borrow_and_update();
                    // The pause must not make every lane look stalled.
                    lanes.pause_clocks(fetching.kill_switch);
                    self.apply(&mut fetching, &held);
                }
                // Always polled, also while fetching is paused: a member that stops polling is
                // dropped from the group after `max.poll.interval.ms`, and its partitions move.
                received = self.consumer.recv() => {
                    match received {
                        Ok(message) => {
                            let partition = message.partition();
                            let offset = message.offset();
                            let Some(generation) = self.ownership.generation(partition) else {
                                // Read just before its partition was revoked: its owner reads it.
                                continue;
                            };
                            let age = record_age(message.timestamp());
                            observe_queue_time(age);
                            tracker.start(partition, offset);
                            metrics::IN_FLIGHT.inc();
                            let bytes = message.payload().map_or(0, <[u8]>::len);
                            fetching.bytes += bytes;
                            if tracker.in_flight() >= self.max_in_flight
                                || fetching.bytes >= self.max_in_flight_bytes
                            {
                                fetching.full = true;
                                if fetching.paused {
                                    // A partition assigned since the pause is fetching.
                                    self.pause_partition(partition);
                                }
                                self.apply(&mut fetching, &held);
                            }
                            match self.decoder.decode(message.payload()) {
                                Ok(task) => {
                                    let endpoint = task.endpoint_id;
                                    let trace = telemetry::context_of(message.headers());
                                    // Until it is done, a strict queue sends nothing it holds
                                    // behind this task (see `StrictQueues::reading`).
                                    self.queues.reading(endpoint, partition, generation, offset);
                                    let job = Job { partition, offset, generation, bytes, task, trace, written_at: written_at(age), written_at_known: age.is_some() };
                                    if held.is_held(partition) {
                                        // Read before the hold's pause took effect: it waits
                                        // behind the held tasks, in order.
                                        held.queue_behind(partition, job);
                                        continue;
                                    }
                                    match self.room(&lanes, &job) {
                                        Room::Hold => {
                                            if held.hold(partition, endpoint, job) {
                                                self.pause_partition(partition);
                                                metrics::PARTITION_HOLDS.inc();
                                            }
                                            metrics::PARTITIONS_HELD.set(held.len() as i64);
                                        }
                                        Room::Park => self.park(job, &done_tx),
                                        Room::Lane => self.to_lane(job, &mut lanes, &done_tx),
                                    }
                                }
                                Err(reason) => {
                                    tracing::error!(partition, offset, %reason, "undecodable delivery task quarantined");
                                    let quarantined = QuarantinedTask {
                                        key: message.key().map(<[u8]>::to_vec),
                                        payload: message.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                                        headers: message.headers().map(BorrowedHeaders::detach),
                                        reason,
                                        source: format!("{}/{partition}/{offset}", self.topic),
                                    };
                                    let done = Done { lane: None, endpoint: None, partition, offset, generation, bytes, durable: true };
                                    tokio::spawn(quarantine(Arc::clone(&self.worker), quarantined, "undecodable", done, done_tx.clone()));
                                }
                            }
                        }
                        Err(err) => tracing::warn!(error = %err, "kafka consumer error"),
                    }
                }
            }
        }

        // The lanes hold the only other senders: once every lane has stopped (a lane stops at
        // its next task once shutdown began) and every success is recorded, the drain is over,
        // even with tasks left unstarted for the next owner.
        drop(done_tx);
        self.drain(&mut done_rx, &mut tracker, &mut lanes).await;
        self.fetch_wakeup.stop().await;
    }

    fn finish(&self, done: Done, tracker: &mut OffsetTracker, lanes: &mut Lanes<Job>) {
        if let Some((endpoint, lane)) = done.lane {
            lanes.finished(endpoint, lane, done.bytes);
        }
        if let Some(endpoint) = done.endpoint {
            self.queues.settled(endpoint, done.offset);
        }
        if !done.durable {
            // Still in flight as far as its partition's offsets go.
            return;
        }
        metrics::IN_FLIGHT.dec();
        // A task of an earlier assignment of the partition says nothing about the current one's
        // offsets (which may include a re-read copy of that very task, still in flight).
        if !self.ownership.is_current(done.partition, done.generation) {
            return;
        }
        if let Some(position) = tracker.finish(done.partition, done.offset) {
            self.store_position(done.partition, position);
            self.queues.stored_position(done.partition, position);
        }
    }

    /// Where a new task goes: its endpoint's lane, or, when it would overflow it, a tier or
    /// (see [`crate::held`]) a hold of its partition. It overflows when the endpoint's backlog
    /// is full or the endpoint does not keep up. A batching endpoint's backlog holds two
    /// batches (one out, one filling; within half the instance, and never less than any
    /// endpoint's), and it is behind by the full batches ahead of the new task at the pace of
    /// its stall: a batch filling is no stall.
    fn room(&self, lanes: &Lanes<Job>, job: &Job) -> Room {
        let endpoint = job.task.endpoint_id;
        let slowest_pace = self.worker.rate_limits.period(endpoint);
        let full_of_bytes = lanes.bytes(endpoint) >= self.max_queued_bytes_per_endpoint;
        let settings = self.worker.concurrency.of(endpoint);
        match settings.and_then(|settings| settings.batch) {
            Some(batch) => {
                let room = self.batch_room();
                let asked = usize::try_from(batch.max_events).unwrap_or(1).max(1);
                let overflows = full_of_bytes
                    || lanes.pending(endpoint) >= room.tasks(asked)
                    || lanes.behind_in_batches(
                        endpoint,
                        slowest_pace,
                        room.per_batch(asked),
                        batch.max_wait(),
                    ) > self.max_lane_wait;
                if overflows { Room::Park } else { Room::Lane }
            }
            None => {
                let full = full_of_bytes || lanes.pending(endpoint) >= self.max_queued_per_endpoint;
                if lanes.behind(endpoint, slowest_pace) > self.max_lane_wait {
                    Room::Park
                } else if !full {
                    Room::Lane
                } else if self.may_hold(lanes, job, settings, slowest_pace) {
                    Room::Hold
                } else {
                    Room::Park
                }
            }
        }
    }

    /// Whether `job`, whose lane is full, may wait with its partition held (see [`crate::held`])
    /// rather than on a tier. A strict endpoint's overflow goes to its queue in the store for
    /// the cost of a write, and a batching one's (see [`ConsumeLoop::room`]) fills its next
    /// batch: neither is held.
    fn may_hold(
        &self,
        lanes: &Lanes<Job>,
        job: &Job,
        settings: Option<LaneSettings>,
        slowest_pace: Duration,
    ) -> bool {
        // Not read yet (the lane's first job reads them) is no reason to park: order is kept
        // either way, and a burst fills the lane before that first read.
        settings.is_none_or(|settings| !settings.strict)
            && lanes.drains_within(job.task.endpoint_id, slowest_pace, held::HOLD_BEHIND)
            // How late the partition is can only be told from a create time we can trust.
            && job.written_at_known
            // Under the kill switch nothing is fetched or sent: a hold delays no one.
            && (job.written_at.elapsed() <= held::HOLD_LAG || self.worker.sending_is_paused())
    }

    /// Whether a held partition may fetch again for `endpoint`'s lane: it is down to half its
    /// limits, or it no longer drains fast (its next tasks go to a tier).
    fn lane_has_room_again(&self, lanes: &Lanes<Job>, endpoint: EndpointId) -> bool {
        let slowest_pace = self.worker.rate_limits.period(endpoint);
        (lanes.pending(endpoint) <= self.max_queued_per_endpoint / 2
            && lanes.bytes(endpoint) <= self.max_queued_bytes_per_endpoint / 2)
            || !lanes.drains_within(endpoint, slowest_pace, held::HOLD_BEHIND)
    }

    /// Parks `job`: its endpoint's backlog is full, or it does not keep up, so the task waits on
    /// a tier rather than in memory, and the others go on. A strict endpoint's task goes to its
    /// queue in the store from here (see `hold_backlog`), not to a tier.
    fn park(&self, job: Job, done_tx: &UnboundedSender<Done>) {
        let done = done_outside_lanes(&job);
        tokio::spawn(hold_backlog(
            Arc::clone(&self.worker),
            Arc::clone(&self.ownership),
            Arc::clone(&self.queues),
            job.task,
            done,
            done_tx.clone(),
        ));
    }

    /// Sends `job` to its endpoint's lane, opening one if need be.
    fn to_lane(&self, job: Job, lanes: &mut Lanes<Job>, done_tx: &UnboundedSender<Done>) {
        let endpoint = job.task.endpoint_id;
        let bytes = job.bytes;
        if let Some((id, queue)) = lanes.push(endpoint, job, bytes) {
            let lane = Arc::new(Lane {
                endpoint,
                id,
                stopwatch: lanes.stopwatch(endpoint).unwrap_or_default(),
                worker: Arc::clone(&self.worker),
                ownership: Arc::clone(&self.ownership),
                sends: Arc::clone(&self.sends),
                queues: Arc::clone(&self.queues),
                done: done_tx.clone(),
                room: self.batch_room(),
                unrecorded: lanes.unrecorded(endpoint).unwrap_or_default(),
            });
            tokio::spawn(lane.run(queue));
        }
    }

    /// Moves the held partitions' tasks on, oldest first, while their lanes have room (or they
    /// are to wait on a tier after all), and resumes a partition none of whose tasks wait any
    /// more. A task of a partition revoked meanwhile is its next owner's: it is let go.
    fn release_held(
        &self,
        lanes: &mut Lanes<Job>,
        held: &mut HeldPartitions<Job>,
        fetching: &Fetching,
        done_tx: &UnboundedSender<Done>,
    ) {
        for partition in held.partitions() {
            while let Some(job) = held.front(partition) {
                // None: its partition was revoked meanwhile, and it is its next owner's.
                let room = self
                    .ownership
                    .is_current(partition, job.generation)
                    .then(|| self.room(lanes, job));
                if room == Some(Room::Hold) {
                    break;
                }
                let Some(job) = held.pop_front(partition) else {
                    break;
                };
                match room {
                    None => let_go(job, done_tx),
                    Some(Room::Lane) => self.to_lane(job, lanes, done_tx),
                    Some(Room::Park | Room::Hold) => self.park(job, done_tx),
                }
            }
            let ready = held
                .behind(partition)
                .is_none_or(|endpoint| self.lane_has_room_again(lanes, endpoint));
            // Under the instance's pause, the next resume of the assignment includes it.
            if held.end_if_empty(partition, ready) && !fetching.paused {
                self.resume_partition(partition);
            }
        }
        metrics::PARTITIONS_HELD.set(held.len() as i64);
    }

    /// Ends the hold of a revoked `partition`. Its held tasks are its next owner's (they free
    /// their places here). The loop handles a revoke before any later read, so none of them
    /// should be of the partition's current assignment; one that is goes to its lane, in order.
    fn let_go_held(
        &self,
        partition: i32,
        held: &mut HeldPartitions<Job>,
        lanes: &mut Lanes<Job>,
        done_tx: &UnboundedSender<Done>,
    ) {
        for job in held.forget(partition) {
            if self.ownership.is_current(partition, job.generation) {
                self.to_lane(job, lanes, done_tx);
            } else {
                let_go(job, done_tx);
            }
        }
        metrics::PARTITIONS_HELD.set(held.len() as i64);
    }

    fn batch_room(&self) -> BatchRoom {
        BatchRoom {
            max_in_flight: self.max_in_flight,
            max_queued_per_endpoint: self.max_queued_per_endpoint,
            max_queued_bytes_per_endpoint: self.max_queued_bytes_per_endpoint,
        }
    }

    /// Waits for tasks in flight to finish; their offsets are stored for the final commit.
    async fn drain(
        &self,
        done_rx: &mut UnboundedReceiver<Done>,
        tracker: &mut OffsetTracker,
        lanes: &mut Lanes<Job>,
    ) {
        let deadline = tokio::time::sleep(self.drain_timeout);
        tokio::pin!(deadline);
        // Strict queues' heads are sent by their drivers, not as consumed tasks: their sends
        // are waited for too, so one out is recorded rather than sent again after the restart.
        let mut look = tokio::time::interval(Duration::from_millis(50));
        tracing::info!(
            tasks = tracker.in_flight(),
            sending = self.sends.oldest().is_some(),
            "draining"
        );
        while tracker.in_flight() > 0 || self.sends.oldest().is_some() {
            tokio::select! {
                _ = &mut deadline => {
                    tracing::warn!(in_flight = tracker.in_flight(), "drain timeout; unfinished tasks will be re-consumed");
                    break;
                }
                _ = look.tick() => {}
                done = done_rx.recv() => match done {
                    Some(done) => self.finish(done, tracker, lanes),
                    None => break,
                },
            }
        }
    }
}

/// Lets go of a held task of a revoked partition: it is its next owner's, and here it only
/// frees its place (its offset is not the current assignment's to commit).
fn let_go(job: Job, done_tx: &UnboundedSender<Done>) {
    let _ = done_tx.send(done_outside_lanes(&job));
}

/// The news of `job` finished without going through a lane (parked, or let go), its outcome
/// durable.
fn done_outside_lanes(job: &Job) -> Done {
    Done {
        lane: None,
        endpoint: Some(job.task.endpoint_id),
        partition: job.partition,
        offset: job.offset,
        generation: job.generation,
        bytes: job.bytes,
        durable: true,
    }
}

/// Puts an undecodable task on the quarantine topic; it is done (its offset may be committed)
/// once Kafka has it.
async fn quarantine(
    worker: Arc<Worker>,
    task: QuarantinedTask,
    reason: &'static str,
    done: Done,
    finished: UnboundedSender<Done>,
) {
    let stored = worker.routing.to_quarantine(task).await.is_ok();
    if stored {
        metrics::TASKS_QUARANTINED
            .with_label_values(&[reason])
            .inc();
    }
    // Not stored (shutting down): it still frees its bytes, but its offset stays uncommitted.
    let _ = finished.send(Done {
        durable: stored,
        ..done
    });
}

/// Puts a task of an endpoint whose backlog is full on a tier; it is done (its offset may be
/// committed) once Kafka has it. The endpoint's settings are read first: a strict endpoint's
/// task goes to its queue instead, where it keeps its place (on a tier it would come back
/// behind later ones).
async fn hold_backlog(
    worker: Arc<Worker>,
    ownership: Arc<Ownership>,
    queues: Arc<StrictQueues>,
    task: DeliveryTask,
    done: Done,
    finished: UnboundedSender<Done>,
) {
    let held = match worker.keeps_strict_order(task.endpoint_id).await {
        // Queued as a send: a revoke waits for it, and a revoked partition's task is its next
        // owner's (read again there), as in a lane.
        Ok(true) => match ownership.begin_send(done.partition, done.generation) {
            Some(_sending) => match queues
                .enqueue(&task, done.partition, done.offset, done.generation)
                .await
            {
                Ok(()) => true,
                Err(Interrupted::Shutdown) => false,
                // Set aside rather than left unfinished, which would hold the partition's
                // committed offset for every endpoint on it.
                Err(Interrupted::Unprocessable(reason)) => {
                    let headers = rdkafka::message::OwnedHeaders::new();
                    let quarantined = quarantine_task(
                        &worker,
                        &task,
                        done.partition,
                        done.offset,
                        headers,
                        reason,
                    )
                    .await;
                    if quarantined {
                        metrics::TASKS_QUARANTINED
                            .with_label_values(&["unprocessable"])
                            .inc();
                    }
                    quarantined
                }
            },
            None => true,
        },
        Ok(false) => worker.hold_backlog(&task).await.is_ok(),
        Err(_) => false,
    };
    // Not held (shutting down): it still frees its bytes, but its offset stays uncommitted.
    let _ = finished.send(Done {
        durable: held,
        ..done
    });
}
