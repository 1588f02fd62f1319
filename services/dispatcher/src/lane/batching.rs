//! A lane of an endpoint that takes batched webhooks: its jobs gathered into batches of up to
//! `max_events`, waiting at most `max_wait`, each batch sent as one request.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use tracing::Instrument;

use hookstream_model::shaping::Batching;
use hookstream_runtime::telemetry;

use hookstream_model::task::DeliveryTask;

use super::{Lane, Step};
use crate::batch::{BatchProgress, batch_span};
use crate::health;
use crate::job::Job;
use crate::lanes::StoppedClock;
use crate::metrics;
use crate::ownership::SendGuard;
use crate::progress::{Interrupted, Progress};
use crate::worker::CLAIM_RECHECK;

/// How long a batch the store was too slow to claim waits before it is tried again, halved.
const AGAIN_PAUSE: Duration = Duration::from_millis(500);

impl Lane {
    /// The most jobs one of the lane's batches takes.
    pub(super) fn batch_most(&self, batch: Batching) -> usize {
        let asked = usize::try_from(batch.max_events).unwrap_or(1).max(1);
        self.room.per_batch(asked)
    }

    /// Takes the jobs of one batch: `first`, then the ones queued behind it, up to
    /// `max_events` (and the lane's room), waiting for more until `first` has waited
    /// `max_wait` since its record was written. `None` when the process stops meanwhile (the
    /// jobs are left unfinished, re-consumed).
    pub(super) async fn gather(
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
    pub(super) async fn work_batch(&self, jobs: Vec<Job>) -> Step {
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
}

/// The jobs of a batch not sent, their send guards given back.
fn given_back(sending: Vec<(Job, SendGuard)>) -> Vec<Job> {
    sending.into_iter().map(|(job, _)| job).collect()
}

/// How much of an endpoint's backlog a batching lane may hold: two batches (one out, one
/// filling) within half the instance and never less than any endpoint's, in the bytes any
/// endpoint may hold.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchRoom {
    pub(crate) max_in_flight: usize,
    pub(crate) max_queued_per_endpoint: usize,
    pub(crate) max_queued_bytes_per_endpoint: usize,
}

impl BatchRoom {
    /// Tasks the endpoint may have in this instance when it takes `per_batch` at once.
    pub(crate) fn tasks(&self, per_batch: usize) -> usize {
        (2 * per_batch)
            .min(self.max_in_flight / 2)
            .max(self.max_queued_per_endpoint)
    }

    /// The most tasks one batch gathers: `per_batch`, or what half the room allows.
    pub(crate) fn per_batch(&self, per_batch: usize) -> usize {
        per_batch.min(self.tasks(per_batch) / 2).max(1)
    }

    /// The most bytes one batch gathers: half of what the endpoint may hold, so a batch that
    /// cannot fill by count (large payloads) goes once it fills by size.
    pub(crate) fn bytes(&self) -> usize {
        (self.max_queued_bytes_per_endpoint / 2).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
