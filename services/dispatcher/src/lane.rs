//! One endpoint's lane: its jobs delivered in order, or several at once when their order does
//! not matter, each reported done once its outcome is durable.

mod batching;

pub(crate) use batching::BatchRoom;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::task::JoinSet;
use tracing::Instrument;

use hookstream_model::ids::EndpointId;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::telemetry;
use hookstream_store::AttemptClaim;

use crate::claims_ahead::{self, ClaimsAhead, Queued};
use crate::health::{self, Sends};
use crate::job::{Done, Job, Report};
use crate::lanes::{LaneId, StoppedClock, Stopwatch};
use crate::metrics;
use crate::ownership::{Ownership, SendGuard};
use crate::progress::{Interrupted, Progress, Route};
use crate::routing::QuarantinedTask;
use crate::strict::StrictQueues;
use crate::unrecorded::{self, Unrecorded};
use crate::worker::{CLAIM_RECHECK, Worker, attempt_span};

/// One endpoint's lane: delivers its jobs in order until it closes, one at a time, or up to the
/// endpoint's `max_in_flight` at once when their order does not matter. A delivered job's attempt
/// is recorded beside the lane, so the next jobs are sent while that write commits; a lane waits
/// before a job while more than [`unrecorded::PER_REQUEST`] successes per request it may have
/// out (one batch, when it batches) are still being recorded (see [`Unrecorded`]). The job
/// counts as done (its offset may be committed) only once its record is written.
pub(crate) struct Lane {
    pub(crate) endpoint: EndpointId,
    pub(crate) id: LaneId,
    /// Stopped while a job waits for a claim held elsewhere (see [`Stopwatch`]).
    pub(crate) stopwatch: Arc<Stopwatch>,
    pub(crate) worker: Arc<Worker>,
    pub(crate) ownership: Arc<Ownership>,
    pub(crate) sends: Arc<Sends>,
    pub(crate) queues: Arc<StrictQueues>,
    pub(crate) done: UnboundedSender<Done>,
    /// How large a batch may grow, when the endpoint takes batches.
    pub(crate) room: BatchRoom,
    /// Its successes still being recorded, which bound how far ahead of them it sends.
    pub(crate) unrecorded: Arc<Unrecorded>,
}

/// What became of a job a lane took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// It reported its outcome (or was left to its partition's next owner): on to the next.
    Next,
    /// It reported itself unfinished and the lane cannot go on: the jobs queued behind it are
    /// given up too (see [`Lane::give_up_queued`]).
    GiveUp,
    /// The process is stopping (or the consume loop is gone).
    Stop,
}

impl Lane {
    pub(crate) async fn run(self: Arc<Self>, mut queue: UnboundedReceiver<Job>) {
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

/// Puts a decoded task that cannot be processed on the quarantine topic, with the reason and
/// where it was read; false if it is not there.
pub(crate) async fn quarantine_task(
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
