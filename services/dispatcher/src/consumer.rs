//! The consume loop: reads delivery tasks, hands each to its endpoint's lane, and stores an
//! offset only when every earlier task of the partition is finished.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::message::{BorrowedHeaders, Message};
use rdkafka::{ClientContext, Timestamp};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::task::JoinSet;

use hookstream_kafka::OffsetTracker;
use hookstream_model::ids::EndpointId;
use hookstream_model::shaping::Batching;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::shutdown::CancellationToken;
use hookstream_runtime::telemetry::{self, TraceContext};
use hookstream_store::AttemptClaim;
use tracing::Instrument;

use crate::batch::{BatchProgress, batch_span};
use crate::blocking::blocking;
use crate::claims_ahead::{self, ClaimsAhead, Queued};
use crate::concurrency::LaneSettings;
use crate::decoding::TaskDecoder;
use crate::fetch_wakeup::FetchWakeup;
use crate::health::{self, Heartbeat, Sends};
use crate::held::{self, HeldPartitions};
use crate::lanes::{LaneId, Lanes, StoppedClock, Stopwatch};
use crate::metrics;
use crate::ownership::{Ownership, SendGuard};
use crate::routing::QuarantinedTask;
use crate::strict::StrictQueues;
use crate::unrecorded::{self, Unrecorded};
use crate::worker::{CLAIM_RECHECK, Interrupted, Progress, Route, Worker, attempt_span};

/// Follows rebalances: tells the consume loop which partitions were taken away (so it stops
/// tracking them), keeps [`Ownership`] up to date, hands a revoked partition over only once its
/// sends are recorded (up to a limit), and keeps newly assigned partitions paused while the kill
/// switch is on.
pub struct RebalanceListener {
    revoked: UnboundedSender<Vec<i32>>,
    /// Newly assigned partitions, whose strict queues the consume loop goes on with.
    assigned: UnboundedSender<Vec<i32>>,
    ownership: Arc<Ownership>,
    handover_limit: Duration,
    /// Whether the consume loop has fetching paused (kill switch, or a full instance).
    fetch_paused: Arc<AtomicBool>,
}

impl RebalanceListener {
    pub fn new(
        ownership: Arc<Ownership>,
        handover_limit: Duration,
        fetch_paused: Arc<AtomicBool>,
    ) -> (Self, Rebalances) {
        let (revoked, revoked_rx) = unbounded_channel();
        let (assigned, assigned_rx) = unbounded_channel();
        let listener = Self {
            revoked,
            assigned,
            ownership,
            handover_limit,
            fetch_paused,
        };
        let rebalances = Rebalances {
            revoked: revoked_rx,
            assigned: assigned_rx,
        };
        (listener, rebalances)
    }

    /// Waits for the revoked partitions' sends to be recorded. The callback runs inside the
    /// consume loop's poll, on a runtime worker: the wait moves the worker's other tasks away.
    fn hand_over(&self, partitions: &[i32]) {
        let out = self.ownership.sending_on(partitions);
        let wait = || {
            self.ownership
                .wait_until_idle(partitions, self.handover_limit)
        };
        let still_out = blocking(wait);
        // No send starts on a revoked partition, so those not out any more were recorded.
        metrics::HANDOVER_SENDS
            .with_label_values(&["recorded"])
            .inc_by(out.saturating_sub(still_out) as u64);
        metrics::HANDOVER_SENDS
            .with_label_values(&["released"])
            .inc_by(still_out as u64);
        if still_out > 0 {
            // Their claims keep the next owner's copies from sending them again.
            tracing::warn!(
                ?partitions,
                still_out,
                "partitions released with sends still out"
            );
        }
    }
}

impl ClientContext for RebalanceListener {}

impl ConsumerContext for RebalanceListener {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions revoked");
                // librdkafka keeps an application pause across a revoke: a partition revoked
                // while paused would come back paused, and never be read again.
                if let Err(err) = consumer.resume(list) {
                    tracing::warn!(error = %err, "cannot clear the pause of revoked partitions");
                }
                self.ownership.revoked(&partitions);
                self.hand_over(&partitions);
                let _ = self.revoked.send(partitions);
            }
            Rebalance::Assign(list) => {
                let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?partitions, "partitions assigned");
                self.ownership.assigned(&partitions);
                let _ = self.assigned.send(partitions);
            }
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // New partitions join the loop's pause (the kill switch, a full instance).
        if let Rebalance::Assign(list) = rebalance
            && self.fetch_paused.load(Ordering::SeqCst)
            && let Err(err) = consumer.pause(list)
        {
            tracing::warn!(error = %err, "cannot pause newly assigned partitions");
        }
        if let Ok(assignment) = consumer.assignment() {
            metrics::ASSIGNED_PARTITIONS.set(assignment.count() as i64);
        }
    }
}

/// What the rebalance listener tells the consume loop.
pub struct Rebalances {
    /// Partitions taken away: the loop stops tracking them.
    pub revoked: UnboundedReceiver<Vec<i32>>,
    /// Partitions given: the loop goes on with their strict queues.
    pub assigned: UnboundedReceiver<Vec<i32>>,
}

/// Why fetching is paused, and whether it is.
#[derive(Debug, Default)]
struct Fetching {
    kill_switch: bool,
    /// The instance has `max_in_flight` tasks, or `max_in_flight_bytes` of them.
    full: bool,
    paused: bool,
    /// Bytes of the tasks in flight (their records' payloads).
    bytes: usize,
}

/// How long a batch the store was too slow to claim waits before it is tried again, halved.
const AGAIN_PAUSE: Duration = Duration::from_millis(500);

/// How much of an endpoint's backlog a batching lane may hold: two batches (one out, one
/// filling) within half the instance and never less than any endpoint's, in the bytes any
/// endpoint may hold.
#[derive(Debug, Clone, Copy)]
struct BatchRoom {
    max_in_flight: usize,
    max_queued_per_endpoint: usize,
    max_queued_bytes_per_endpoint: usize,
}

impl BatchRoom {
    /// Tasks the endpoint may have in this instance when it takes `per_batch` at once.
    fn tasks(&self, per_batch: usize) -> usize {
        (2 * per_batch)
            .min(self.max_in_flight / 2)
            .max(self.max_queued_per_endpoint)
    }

    /// The most tasks one batch gathers: `per_batch`, or what half the room allows.
    fn per_batch(&self, per_batch: usize) -> usize {
        per_batch.min(self.tasks(per_batch) / 2).max(1)
    }

    /// The most bytes one batch gathers: half of what the endpoint may hold, so a batch that
    /// cannot fill by count (large payloads) goes once it fills by size.
    fn bytes(&self) -> usize {
        (self.max_queued_bytes_per_endpoint / 2).max(1)
    }
}

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

/// One consumed task on its way through a lane.
struct Job {
    partition: i32,
    offset: i64,
    /// The partition's assignment it was read in.
    generation: u64,
    /// Its record's payload size, counted against `max_in_flight_bytes`.
    bytes: usize,
    task: DeliveryTask,
    /// The trace the record carried (ingest's, or the retry hop's).
    trace: TraceContext,
    /// When its record was written (its timestamp, on this process's clock; when it was read
    /// if that is unknown or ahead): a batch waits at most `max_wait` from its first job's
    /// writing, so a task read again after a restart does not start its wait over.
    written_at: tokio::time::Instant,
    /// Whether `written_at` is its record's create time (known, and not ahead of our clock):
    /// only then can a hold tell how late the partition is.
    written_at_known: bool,
}

/// A job whose outcome is durable.
struct Done {
    /// The lane it went through; none for a task that never reached one (undecodable, parked).
    lane: Option<(EndpointId, LaneId)>,
    /// Its task's endpoint; none for a task that did not decode.
    endpoint: Option<EndpointId>,
    partition: i32,
    offset: i64,
    generation: u64,
    bytes: usize,
    /// Whether its outcome is durable, so its offset may be committed. A job given up without
    /// one (its lane stopped, its outcome could not be stored) only frees its place: its offset
    /// stays uncommitted and the task is read again after a restart or rebalance.
    durable: bool,
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

    /// Whether the instance is at its limit of tasks or bytes in flight. Once it paused for
    /// capacity it resumes a tenth under the limits, so it does not flap on every finished task.
    fn over_limit(&self, tracker: &OffsetTracker, fetching: &Fetching) -> bool {
        let below = |limit: usize| {
            if fetching.full {
                limit - limit / 10
            } else {
                limit
            }
        };
        tracker.in_flight() >= below(self.max_in_flight)
            || fetching.bytes >= below(self.max_in_flight_bytes)
    }

    /// Pauses or resumes fetching on the whole assignment when the reasons to pause (the kill
    /// switch, a full instance) change. The loop keeps polling either way, so the group keeps
    /// this member; tasks already read go on (or wait in the workers, under the kill switch).
    fn apply(&self, fetching: &mut Fetching, held: &HeldPartitions<Job>) {
        let pause = fetching.kill_switch || fetching.full;
        if pause == fetching.paused {
            return;
        }
        let assignment = match self.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the assignment");
                return;
            }
        };
        let result = if pause {
            self.consumer.pause(&assignment)
        } else {
            // A held partition stays paused until its hold ends.
            let mut resumed = rdkafka::TopicPartitionList::new();
            for element in assignment.elements() {
                if !held.is_held(element.partition()) {
                    resumed.add_partition(element.topic(), element.partition());
                }
            }
            self.consumer.resume(&resumed).inspect(|()| {
                self.fetch_wakeup
                    .resumed(resumed.elements().iter().map(|e| e.partition()));
            })
        };
        match result {
            Ok(()) => {
                fetching.paused = pause;
                self.fetch_paused.store(pause, Ordering::SeqCst);
                tracing::debug!(
                    pause,
                    kill_switch = fetching.kill_switch,
                    full = fetching.full,
                    "fetching paused or resumed"
                );
            }
            Err(err) => {
                tracing::warn!(pause, error = %err, "cannot pause or resume the assignment")
            }
        }
    }

    /// The list naming one partition of the topic, for a pause or a resume.
    fn one_partition(&self, partition: i32) -> rdkafka::TopicPartitionList {
        let mut list = rdkafka::TopicPartitionList::new();
        list.add_partition(&self.topic, partition);
        list
    }

    fn pause_partition(&self, partition: i32) {
        if let Err(err) = self.consumer.pause(&self.one_partition(partition)) {
            tracing::warn!(partition, error = %err, "cannot pause a partition");
        }
    }

    fn resume_partition(&self, partition: i32) {
        match self.consumer.resume(&self.one_partition(partition)) {
            Ok(()) => self.fetch_wakeup.resumed([partition]),
            Err(err) => tracing::warn!(partition, error = %err, "cannot resume a partition"),
        }
    }

    /// Stores the committable position; the background auto-commit sends it to Kafka.
    fn store_position(&self, partition: i32, position: i64) {
        if let Err(err) =
            hookstream_kafka::store_position(&*self.consumer, &self.topic, partition, position)
        {
            // Happens when the partition was just revoked; its next owner re-reads from the last
            // commit, and the store check keeps delivered tasks from being resent.
            tracing::debug!(partition, position, error = %err, "offset not stored");
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

/// How far ahead of ours a writer's clock may be for its create times to count: a little drift
/// between hosts shows as no wait at all.
const CLOCK_SLACK_MS: i64 = 1000;

/// How long ago a record was written, by its create time; none for a record without one, or
/// whose writer's clock is further ahead of ours than [`CLOCK_SLACK_MS`] (its times cannot be
/// trusted, and a hold must not take them for fresh).
fn record_age(written: Timestamp) -> Option<Duration> {
    let written = written.to_millis()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    let age_ms = i64::try_from(now.as_millis()).unwrap_or(i64::MAX) - written;
    if age_ms < -CLOCK_SLACK_MS {
        return None;
    }
    Some(Duration::from_millis(u64::try_from(age_ms).unwrap_or(0)))
}

/// When a record of `age` was written, as an instant of this process's clock (now, when its
/// age is unknown).
fn written_at(age: Option<Duration>) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_sub(age.unwrap_or_default()).unwrap_or(now)
}

/// Records how long a task waited in Kafka, from the record's create time.
fn observe_queue_time(age: Option<Duration>) {
    if let Some(age) = age {
        metrics::TASK_QUEUE_SECONDS.observe(age.as_secs_f64());
    }
}

/// One endpoint's lane: delivers its jobs in order until it closes, one at a time, or up to the
/// endpoint's `max_in_flight` at once when their order does not matter. A delivered job's attempt
/// is recorded beside the lane, so the next jobs are sent while that write commits; a lane waits
/// before a job while more than [`unrecorded::PER_REQUEST`] successes per request it may have
/// out (one batch, when it batches) are still being recorded (see [`Unrecorded`]). The job
/// counts as done (its offset may be committed) only once its record is written.
struct Lane {
    endpoint: EndpointId,
    id: LaneId,
    /// Stopped while a job waits for a claim held elsewhere (see [`Stopwatch`]).
    stopwatch: Arc<Stopwatch>,
    worker: Arc<Worker>,
    ownership: Arc<Ownership>,
    sends: Arc<Sends>,
    queues: Arc<StrictQueues>,
    done: UnboundedSender<Done>,
    /// How large a batch may grow, when the endpoint takes batches.
    room: BatchRoom,
    /// Its successes still being recorded, which bound how far ahead of them it sends.
    unrecorded: Arc<Unrecorded>,
}

/// What became of a job a lane took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// It reported its outcome (or was left to its partition's next owner): on to the next.
    Next,
    /// It reported itself unfinished and the lane cannot go on: the jobs queued behind it are
    /// given up too (see [`Lane::give_up_queued`]).
    GiveUp,
    /// The process is stopping (or the consume loop is gone).
    Stop,
}

impl Lane {
    async fn run(self: Arc<Self>, mut queue: UnboundedReceiver<Job>) {
        // Jobs out beside the lane, for an endpoint that takes several requests at once.
        let mut out: JoinSet<Step> = JoinSet::new();
        // The lane's first job reads the endpoint's settings afresh (see `lane_settings_of`).
        let mut opening = true;
        // Jobs taken off the queue to claim ahead: they go before the queue's next.
        let mut taken: VecDeque<Job> = VecDeque::new();
        let mut ahead = ClaimsAhead::default();
        // How long the lane's last job took, which bounds how many it claims ahead.
        let mut pace = Duration::ZERO;
        let end = loop {
            // A stopping dispatcher's idle lane ends at once, so the drain does not wait for it.
            let job = match taken.pop_front() {
                Some(job) => job,
                None => tokio::select! {
                    biased;
                    job = queue.recv() => match job {
                        Some(job) => job,
                        None => break Step::Next,
                    },
                    _ = self.worker.shutdown.cancelled() => break Step::Stop,
                },
            };
            let settings = self.worker.lane_settings_of(self.endpoint, opening).await;
            opening = false;
            if let Some(batch) = settings.batch {
                // A batch claims its own jobs.
                ahead.release_all(&self.worker).await;
                // The jobs out beside the lane (from before it batched) finish first.
                let mut step = Step::Next;
                while step == Step::Next && !out.is_empty() {
                    step = joined(out.join_next().await);
                }
                if step != Step::Next {
                    self.report(self.done_of(&job), false);
                    break step;
                }
                // No further ahead of the store than the one batch before it.
                if !self
                    .records_caught_up(self.batch_most(batch), &mut ahead)
                    .await
                {
                    self.report(self.done_of(&job), false);
                    break Step::Stop;
                }
                let Some(jobs) = self.gather(job, &mut taken, &mut queue, batch).await else {
                    break Step::Stop;
                };
                match self.work_batch(jobs).await {
                    Step::Next => continue,
                    step => break step,
                }
            }
            // Room for it under the endpoint's setting as last read: after it is lowered (or
            // the endpoint goes back to ordered delivery) the jobs out finish first.
            let mut limit = settings.limit;
            let mut step = Step::Next;
            while step == Step::Next && !out.is_empty() && out.len() >= limit {
                step = joined(out.join_next().await);
                limit = self
                    .worker
                    .lane_settings_of(self.endpoint, false)
                    .await
                    .limit;
            }
            while step == Step::Next
                && let Some(result) = out.try_join_next()
            {
                step = joined(Some(result));
            }
            if step != Step::Next {
                self.report(self.done_of(&job), false);
                break step;
            }
            // No further ahead of the store than a few successes per request it may have out:
            // a crash then sends again at most those and the requests out.
            let started = std::time::Instant::now();
            if !self
                .records_caught_up(unrecorded::PER_REQUEST * limit, &mut ahead)
                .await
            {
                self.report(self.done_of(&job), false);
                break Step::Stop;
            }
            step = if out.is_empty() && limit == 1 {
                // Under the kill switch nothing is held: the claims would only wait out the
                // pause (and a revoke meanwhile would wait for them). Nor on the way out.
                let claim = if settings.claims_ahead
                    && !self.worker.sending_is_paused()
                    && !self.worker.shutdown.is_cancelled()
                {
                    ahead.release_revoked(&self.worker, &self.ownership).await;
                    let most = claims_ahead::most(pace, self.worker.claim_lease);
                    self.claim_ahead(&job, most, &mut taken, &mut queue, &mut ahead)
                        .await
                } else {
                    ahead.release_all(&self.worker).await;
                    None
                };
                if self.worker.sending_is_paused() {
                    // It began while claiming; `work` gives back this job's claim.
                    ahead.release_all(&self.worker).await;
                }
                let step = self.work(job, claim, Some(&mut ahead)).await;
                // The wait for the store counts: claims taken ahead age through it too.
                pace = started.elapsed();
                step
            } else {
                ahead.release_all(&self.worker).await;
                out.spawn(Arc::clone(&self).work_beside(job));
                Step::Next
            };
            if step != Step::Next {
                break step;
            }
        };
        // Not sent, so not to be held from the copies read next (after a restart, by the
        // partition's next owner).
        ahead.release_all(&self.worker).await;
        if end == Step::GiveUp {
            for job in taken.drain(..) {
                self.report(self.done_of(&job), false);
            }
            self.give_up_queued(&mut queue);
        }
        // The jobs still out finish on their own and report themselves.
        out.detach_all();
    }

    /// Waits until at most `most` of the lane's successes are still being recorded; false if
    /// the process stops meanwhile. Claims taken ahead for partitions revoked meanwhile are
    /// given back while it waits: a slow store must not hold up a handover too.
    async fn records_caught_up(&self, most: usize, ahead: &mut ClaimsAhead) -> bool {
        if self.unrecorded.count() <= most {
            return true;
        }
        loop {
            tokio::select! {
                biased;
                () = self.unrecorded.at_most(most) => return true,
                _ = self.worker.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(CLAIM_RECHECK) => {
                    ahead.release_revoked(&self.worker, &self.ownership).await;
                }
            }
        }
    }

    /// Works on `job` beside the lane. Should it die (a panic) it still reports, unfinished:
    /// a job that never reports keeps its lane open and its endpoint looking stalled for good.
    async fn work_beside(self: Arc<Self>, job: Job) -> Step {
        let mut report = Report {
            done: Some(self.done_of(&job)),
            to: self.done.clone(),
        };
        let step = self.work(job, None, None).await;
        // It reported itself (or, stopping, is left unfinished on purpose).
        report.done = None;
        step
    }

    /// The claim taken ahead for `job`, claiming it and the jobs queued behind it (`most` in
    /// all) together when it has none.
    async fn claim_ahead(
        &self,
        job: &Job,
        most: usize,
        taken: &mut VecDeque<Job>,
        queue: &mut UnboundedReceiver<Job>,
        ahead: &mut ClaimsAhead,
    ) -> Option<AttemptClaim> {
        if let Some(claim) = ahead.take(&job.task) {
            return Some(claim);
        }
        while taken.len() + 1 < most
            && let Ok(next) = queue.try_recv()
        {
            taken.push_back(next);
        }
        // No more than `most`, also when jobs taken while the lane was faster are left.
        let group = std::iter::once(job)
            .chain(taken.iter())
            .take(most)
            .map(|job| Queued {
                task: &job.task,
                partition: job.partition,
                generation: job.generation,
            });
        ahead.claim(&self.worker, &self.ownership, group).await;
        ahead.take(&job.task)
    }

    /// Delivers one job and reports it, durable or not. `claim`: one taken ahead for it;
    /// `ahead`: the lane's other claims taken ahead, given back should the job wait for a
    /// claim held elsewhere (they would only age meanwhile, and hold up a revoke).
    async fn work(
        &self,
        job: Job,
        mut claim: Option<AttemptClaim>,
        mut ahead: Option<&mut ClaimsAhead>,
    ) -> Step {
        let finished = self.done_of(&job);
        // While the job waits for a claim held elsewhere, through the rechecks and any rate
        // limit waits between them, the lane's clock stands still.
        let mut claim_wait: Option<StoppedClock> = None;
        // Again after a wait for the endpoint's rate limit, as if the job were new.
        loop {
            if self.worker.sending_is_paused()
                && let Some(held) = claim.take()
            {
                // Given back rather than held through the pause.
                let _ = self.worker.release_ahead(&held).await;
            }
            // Under the kill switch the job waits here, before it counts as a send: a revoke
            // meanwhile need not wait for it, and it is not sent once its partition is gone.
            if self.worker.wait_while_sending_paused().await.is_err() {
                return Step::Stop;
            }
            // A revoked partition's tasks are its next owner's to send.
            let Some(sending) = self.ownership.begin_send(job.partition, job.generation) else {
                if let Some(held) = claim.take() {
                    let _ = self.worker.release_ahead(&held).await;
                }
                metrics::TASKS_SKIPPED
                    .with_label_values(&["partition_revoked"])
                    .inc();
                return self.report(finished, true);
            };
            // Timed from here to the durable outcome: store reads and the claim included.
            let send = self.sends.start();
            let task = &job.task;
            let span = attempt_span(task);
            telemetry::continue_trace(&span, job.trace.clone());
            let progress = self
                .worker
                .deliver(task, Route::Topic, claim.take())
                .instrument(span.clone())
                .await;
            if !waits(&progress) {
                claim_wait = None;
            }
            return match progress {
                Ok(Progress::Queue) => {
                    let queued = self
                        .queues
                        .enqueue(task, job.partition, job.offset, job.generation)
                        .instrument(span.clone())
                        .await;
                    drop(send);
                    drop(sending);
                    match queued {
                        Ok(()) => self.report(finished, true),
                        Err(Interrupted::Shutdown) => Step::Stop,
                        Err(Interrupted::Unprocessable(reason)) => {
                            if !self.quarantine(&job, &span, reason).await {
                                self.report(finished, false);
                                return Step::GiveUp;
                            }
                            self.report(finished, true)
                        }
                    }
                }
                Ok(Progress::RateLimited(wait) | Progress::Wait(wait)) => {
                    // Not a send while it waits: a revoke need not wait for it, and it is not
                    // sent once its partition is gone.
                    drop(send);
                    drop(sending);
                    tokio::select! {
                        biased;
                        _ = self.worker.shutdown.cancelled() => return Step::Stop,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
                Ok(Progress::ClaimedElsewhere) => {
                    drop(send);
                    drop(sending);
                    if let Some(ahead) = ahead.as_deref_mut() {
                        ahead.release_all(&self.worker).await;
                    }
                    // The jobs behind this one wait in order rather than being parked for a
                    // stall that is not the endpoint's.
                    if claim_wait.is_none() {
                        metrics::CLAIM_WAITS.inc();
                        claim_wait = Some(self.stopwatch.stop_until_dropped());
                    }
                    tokio::select! {
                        biased;
                        _ = self.worker.shutdown.cancelled() => return Step::Stop,
                        _ = tokio::time::sleep(CLAIM_RECHECK) => continue,
                    }
                }
                concluded => self.conclude(&job, concluded, sending, send, span).await,
            };
        }
    }

    /// Reports a job after its delivery: done once its outcome is durable (a delivered one
    /// once its attempt is recorded, beside the lane), set aside when it cannot be processed,
    /// left unfinished when the process stops. `sending` and `send` are held until then.
    async fn conclude(
        &self,
        job: &Job,
        progress: Result<Progress, Interrupted>,
        sending: SendGuard,
        send: health::SendGuard,
        span: tracing::Span,
    ) -> Step {
        let finished = self.done_of(job);
        match progress {
            // Shutting down: leave this and the queued jobs unfinished so they are re-consumed.
            Err(Interrupted::Shutdown) => Step::Stop,
            Err(Interrupted::Unprocessable(reason)) => {
                let quarantined = self.quarantine(job, &span, reason).await;
                drop(sending);
                if !quarantined {
                    // Unfinished, so read again after a restart or rebalance, not dropped.
                    self.report(finished, false);
                    return Step::GiveUp;
                }
                metrics::TASKS_QUARANTINED
                    .with_label_values(&["unprocessable"])
                    .inc();
                self.report(finished, true)
            }
            Ok(Progress::Finished) => self.report(finished, true),
            Ok(Progress::Delivered(settlement)) => {
                let worker = Arc::clone(&self.worker);
                let report = Report {
                    done: Some(finished),
                    to: self.done.clone(),
                };
                let recording = self.unrecorded.begin();
                tokio::spawn(
                    async move {
                        let recorded = worker.record_delivered(*settlement).await;
                        drop(recording);
                        drop(send);
                        drop(sending);
                        report.send(recorded.is_ok());
                    }
                    .instrument(span),
                );
                Step::Next
            }
            // Handled by the caller; were one to come here, its task is read again.
            Ok(
                Progress::Queue
                | Progress::RateLimited(_)
                | Progress::Wait(_)
                | Progress::ClaimedElsewhere,
            ) => self.report(finished, false),
        }
    }

    /// The most jobs one of the lane's batches takes.
    fn batch_most(&self, batch: Batching) -> usize {
        let asked = usize::try_from(batch.max_events).unwrap_or(1).max(1);
        self.room.per_batch(asked)
    }

    /// Takes the jobs of one batch: `first`, then the ones queued behind it, up to
    /// `max_events` (and the lane's room), waiting for more until `first` has waited
    /// `max_wait` since its record was written. `None` when the process stops meanwhile (the
    /// jobs are left unfinished, re-consumed).
    async fn gather(
        &self,
        first: Job,
        taken: &mut VecDeque<Job>,
        queue: &mut UnboundedReceiver<Job>,
        batch: Batching,
    ) -> Option<Vec<Job>> {
        let most = self.batch_most(batch);
        let most_bytes = self.room.bytes();
        // A wait too long for the clock is no deadline at all.
        let deadline = first
            .written_at
            .checked_add(batch.max_wait())
            .map(tokio::time::sleep_until);
        let deadline = async move {
            match deadline {
                Some(deadline) => deadline.await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(deadline);
        let mut bytes = first.bytes;
        let mut jobs = vec![first];
        while jobs.len() < most && bytes < most_bytes {
            // What is queued already joins at once, even past the deadline.
            if let Some(job) = taken.pop_front().or_else(|| queue.try_recv().ok()) {
                bytes += job.bytes;
                jobs.push(job);
                continue;
            }
            tokio::select! {
                biased;
                _ = self.worker.shutdown.cancelled() => return None,
                _ = &mut deadline => break,
                job = queue.recv() => match job {
                    Some(job) => {
                        bytes += job.bytes;
                        jobs.push(job);
                    }
                    None => break,
                },
            }
        }
        Some(jobs)
    }

    /// Delivers `jobs` as one batch (or several, should the endpoint's batches have shrunk)
    /// and reports each.
    async fn work_batch(&self, jobs: Vec<Job>) -> Step {
        let mut batches = std::collections::VecDeque::from([jobs]);
        let mut end = Step::Next;
        while let Some(jobs) = batches.pop_front() {
            match self.work_one_batch(jobs, &mut batches).await {
                Step::Next => {}
                Step::Stop => return Step::Stop,
                Step::GiveUp => {
                    // Every job of the batches not tried yet is reported, unfinished.
                    for job in batches.drain(..).flatten() {
                        self.report(self.done_of(&job), false);
                    }
                    end = Step::GiveUp;
                }
            }
        }
        end
    }

    /// Delivers `jobs` as one batch and reports each; when the endpoint now takes fewer at
    /// once, the rest go to the front of `later`.
    async fn work_one_batch(
        &self,
        mut jobs: Vec<Job>,
        later: &mut std::collections::VecDeque<Vec<Job>>,
    ) -> Step {
        // See `Lane::work`.
        let mut claim_wait: Option<StoppedClock> = None;
        loop {
            if self.worker.wait_while_sending_paused().await.is_err() {
                return Step::Stop;
            }
            // A revoked partition's tasks are its next owner's to send.
            let mut sending = Vec::with_capacity(jobs.len());
            let mut revoked = Vec::new();
            for job in jobs {
                match self.ownership.begin_send(job.partition, job.generation) {
                    Some(guard) => sending.push((job, guard)),
                    None => revoked.push(job),
                }
            }
            for job in &revoked {
                metrics::TASKS_SKIPPED
                    .with_label_values(&["partition_revoked"])
                    .inc();
                self.report(self.done_of(job), true);
            }
            if sending.is_empty() {
                return Step::Next;
            }
            let span = batch_span(self.endpoint, sending.len());
            telemetry::continue_trace(&span, sending[0].0.trace.clone());
            let sends: Vec<health::SendGuard> =
                sending.iter().map(|_| self.sends.start()).collect();
            let tasks: Vec<&DeliveryTask> = sending.iter().map(|(job, _)| &job.task).collect();
            let progress = self
                .worker
                .deliver_batch(&tasks)
                .instrument(span.clone())
                .await;
            if !matches!(
                progress,
                Ok(BatchProgress::ClaimedElsewhere | BatchProgress::RateLimited(_))
            ) {
                claim_wait = None;
            }
            let results: Vec<Result<Progress, Interrupted>> = match progress {
                Err(Interrupted::Shutdown) => return Step::Stop,
                // The endpoint's state could not be recorded (its breaker): each task is set
                // aside, as one sent alone would be.
                Err(Interrupted::Unprocessable(reason)) => sending
                    .iter()
                    .map(|_| Err(Interrupted::Unprocessable(reason.clone())))
                    .collect(),
                Ok(BatchProgress::Each(results)) => results,
                Ok(BatchProgress::Split(most)) => {
                    drop(sends);
                    jobs = given_back(sending);
                    let rest = jobs.split_off(most.min(jobs.len()));
                    if !rest.is_empty() {
                        later.push_front(rest);
                    }
                    continue;
                }
                Ok(BatchProgress::Again) => {
                    drop(sends);
                    jobs = given_back(sending);
                    // Smaller each time, and at last alone, so a store too slow for the batch
                    // cannot keep it going round; after a pause, as for any store trouble.
                    if jobs.len() == 1
                        && let Some(job) = jobs.pop()
                    {
                        return self.work(job, None, None).await;
                    }
                    let rest = jobs.split_off(jobs.len() / 2);
                    later.push_front(rest);
                    tokio::select! {
                        biased;
                        _ = self.worker.shutdown.cancelled() => return Step::Stop,
                        _ = tokio::time::sleep(AGAIN_PAUSE) => continue,
                    }
                }
                Ok(BatchProgress::RateLimited(wait)) => {
                    drop(sends);
                    jobs = given_back(sending);
                    tokio::select! {
                        biased;
                        _ = self.worker.shutdown.cancelled() => return Step::Stop,
                        _ = tokio::time::sleep(wait) => continue,
                    }
                }
                Ok(BatchProgress::ClaimedElsewhere) => {
                    drop(sends);
                    jobs = given_back(sending);
                    // As for one job (see `Lane::work`).
                    if claim_wait.is_none() {
                        metrics::CLAIM_WAITS.inc();
                        claim_wait = Some(self.stopwatch.stop_until_dropped());
                    }
                    tokio::select! {
                        biased;
                        _ = self.worker.shutdown.cancelled() => return Step::Stop,
                        _ = tokio::time::sleep(CLAIM_RECHECK) => continue,
                    }
                }
                Ok(BatchProgress::OneByOne) => {
                    drop(sends);
                    // Each job takes its own send guard; these are given back first.
                    let jobs = given_back(sending);
                    let mut jobs = jobs.into_iter();
                    while let Some(job) = jobs.next() {
                        match self.work(job, None, None).await {
                            Step::Next => {}
                            Step::Stop => return Step::Stop,
                            Step::GiveUp => {
                                for job in jobs {
                                    self.report(self.done_of(&job), false);
                                }
                                return Step::GiveUp;
                            }
                        }
                    }
                    return Step::Next;
                }
            };
            let mut end = Step::Next;
            for (((job, guard), send), result) in sending.into_iter().zip(sends).zip(results) {
                let step = self.conclude(&job, result, guard, send, span.clone()).await;
                // Every job is reported; the worst news decides what the lane does next.
                end = match (end, step) {
                    (Step::Stop, _) | (_, Step::Stop) => Step::Stop,
                    (Step::GiveUp, _) | (_, Step::GiveUp) => Step::GiveUp,
                    _ => Step::Next,
                };
            }
            return end;
        }
    }

    /// Puts a task that cannot be processed on the quarantine topic; false if it is not there.
    async fn quarantine(&self, job: &Job, span: &tracing::Span, reason: String) -> bool {
        let headers = telemetry::headers_of(span);
        quarantine_task(
            &self.worker,
            &job.task,
            job.partition,
            job.offset,
            headers,
            reason,
        )
        .await
    }

    /// Reports a job finished, durably or not; [`Step::Stop`] when the consume loop is gone.
    fn report(&self, done: Done, durable: bool) -> Step {
        match self.done.send(Done { durable, ..done }) {
            Ok(()) => Step::Next,
            Err(_) => Step::Stop,
        }
    }

    /// Closes the lane and reports the jobs queued in it unfinished: they free their places in
    /// the instance and the lane, but their offsets stay uncommitted, so the tasks are read
    /// again after a restart or rebalance. The endpoint's next task opens a new lane.
    fn give_up_queued(&self, queue: &mut UnboundedReceiver<Job>) {
        queue.close();
        while let Ok(job) = queue.try_recv() {
            self.report(self.done_of(&job), false);
        }
    }

    /// The news of `job` finished through this lane, its outcome durable.
    fn done_of(&self, job: &Job) -> Done {
        Done {
            lane: Some((self.endpoint, self.id)),
            endpoint: Some(self.endpoint),
            partition: job.partition,
            offset: job.offset,
            generation: job.generation,
            bytes: job.bytes,
            durable: true,
        }
    }
}

/// Whether a job's delivery came back to wait and be tried again (a claim held elsewhere, a
/// rate limit, a short claim), rather than with an outcome.
fn waits(progress: &Result<Progress, Interrupted>) -> bool {
    matches!(
        progress,
        Ok(Progress::ClaimedElsewhere | Progress::RateLimited(_) | Progress::Wait(_))
    )
}

/// The jobs of a batch not sent, their send guards given back.
fn given_back(sending: Vec<(Job, SendGuard)>) -> Vec<Job> {
    sending.into_iter().map(|(job, _)| job).collect()
}

/// What a job worked on beside its lane came to. One that died has reported itself unfinished
/// (see [`Lane::work_beside`]); the lane goes on.
fn joined(result: Option<Result<Step, tokio::task::JoinError>>) -> Step {
    match result {
        Some(Ok(step)) => step,
        Some(Err(err)) => {
            tracing::error!(error = %err, "a delivery job died; its task is read again after a restart");
            Step::Next
        }
        None => Step::Next,
    }
}

/// The news of a job finishing in a task of its own, sent even should that task die (a panic):
/// a job that never reports keeps its lane open and its endpoint looking stalled for good.
struct Report {
    done: Option<Done>,
    to: UnboundedSender<Done>,
}

impl Report {
    fn send(mut self, durable: bool) {
        if let Some(done) = self.done.take() {
            let _ = self.to.send(Done { durable, ..done });
        }
    }
}

impl Drop for Report {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = self.to.send(Done {
                durable: false,
                ..done
            });
        }
    }
}

/// Puts a decoded task that cannot be processed on the quarantine topic, with the reason and
/// where it was read; false if it is not there.
async fn quarantine_task(
    worker: &Worker,
    task: &DeliveryTask,
    partition: i32,
    offset: i64,
    headers: rdkafka::message::OwnedHeaders,
    reason: String,
) -> bool {
    tracing::error!(delivery_id = %task.delivery_id, %reason, "delivery task quarantined");
    let payload = match task.encode() {
        Ok(payload) => payload,
        // A task decoded from its record encodes again; were it not to, it stays
        // unfinished and is read again, not dropped.
        Err(err) => {
            tracing::error!(delivery_id = %task.delivery_id, error = %err, "cannot encode a task to quarantine");
            return false;
        }
    };
    let quarantined = QuarantinedTask {
        key: Some(task.key().into_bytes()),
        payload,
        headers: Some(headers),
        reason,
        source: format!(
            "{}/{partition}/{offset}",
            worker.routing.topics.deliveries()
        ),
    };
    worker.routing.to_quarantine(quarantined).await.is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_create_time_far_ahead_of_our_clock_gives_no_age() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |now| i64::try_from(now.as_millis()).unwrap_or(i64::MAX));
        let age = |ms| record_age(Timestamp::CreateTime(ms));
        assert!(age(now_ms - 5_000).is_some_and(|age| age >= Duration::from_secs(5)));
        assert_eq!(
            age(now_ms + 500),
            Some(Duration::ZERO),
            "a little drift is no wait"
        );
        assert_eq!(age(now_ms + 60_000), None, "a clock a minute fast");
        assert_eq!(record_age(Timestamp::NotAvailable), None);
    }

    #[test]
    fn a_batching_lane_holds_two_batches_within_half_the_instance_and_their_bytes() {
        let room = BatchRoom {
            max_in_flight: 5_000,
            max_queued_per_endpoint: 500,
            max_queued_bytes_per_endpoint: 1_000_000,
        };
        assert_eq!((room.tasks(1_000), room.per_batch(1_000)), (2_000, 1_000));
        assert_eq!(
            (room.tasks(5), room.per_batch(5)),
            (500, 5),
            "never less room than any endpoint"
        );
        let small = BatchRoom {
            max_in_flight: 1_000,
            max_queued_per_endpoint: 100,
            ..room
        };
        assert_eq!((small.tasks(1_000), small.per_batch(1_000)), (500, 250));
        assert_eq!(room.bytes(), 500_000);
    }
}
