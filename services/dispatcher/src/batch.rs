//! Delivering a batch: several deliveries of one endpoint in one request, whose body is a JSON
//! array of their usual bodies, signed once with the batch's own `webhook-id`.
//!
//! Each delivery keeps its own claim, attempt log and routing, as if sent alone: a delivery
//! already final or stale is left out, one another copy is sending waits on the hold tier, and
//! the one answer is recorded as an attempt of each. A retryable failure sends every delivery
//! of the batch to its retry tier with one shared jitter, so those on the same attempt come
//! back together and go out as a batch again; a permanent one dead-letters each with the
//! reason. Whatever keeps the endpoint from taking a batch now (a pause, a disabled or deleted
//! endpoint, a refused destination, strict ordering, batching switched off) sends the tasks
//! one by one instead, through the path that handles each of those cases.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use time::OffsetDateTime;

use hookstream_model::endpoint::Endpoint;
use hookstream_model::ids::{DeliveryId, EndpointId};
use hookstream_model::retry::Tier;
use hookstream_model::shaping::Ordering;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::telemetry;
use hookstream_store::{AttemptClaim, ClaimOutcome};

use crate::breaker::Admission;
use crate::metrics;
use crate::outcome::outcome_of;
use crate::progress::{Interrupted, Progress, Route, Settlement, skipped, unknown_delivery};
use crate::worker::{Worker, leaves_room_to_send, note_rate_limit_wait};

/// What became of a batch.
pub enum BatchProgress {
    /// Each task's own progress, in the order given: [`Progress::Finished`] (its outcome is
    /// durable), [`Progress::Delivered`] (its attempt is still to be recorded), or why it was not
    /// finished.
    Each(Vec<Result<Progress, Interrupted>>),
    /// Nothing was done: the endpoint's rate limit allows its next request after this long.
    RateLimited(Duration),
    /// Nothing was done: the endpoint does not take a batch now; each task is to be delivered
    /// on its own.
    OneByOne,
    /// Nothing was done: the endpoint now takes at most this many per batch (its setting was
    /// lowered while the batch gathered); the tasks are to be sent in batches that size.
    Split(usize),
    /// Nothing was sent and the claims are given back: the store was so slow to take them
    /// that the first could run out while the request is out, or the breaker's state could not
    /// be recorded. The batch is to be tried again, smaller (at last one by one).
    Again,
    /// Nothing was sent and the claims are given back: another copy holds the claim on one of
    /// the tasks of an endpoint in partition order (a dispatcher killed with it out). The
    /// batch is to be tried again after [`crate::worker::CLAIM_RECHECK`], whole: sent without
    /// that task, the task would go out after later ones.
    ClaimedElsewhere,
}

impl Worker {
    /// Delivers `tasks`, all of one endpoint, as one batch.
    pub async fn deliver_batch(
        &self,
        tasks: &[&DeliveryTask],
    ) -> Result<BatchProgress, Interrupted> {
        if self.shutdown.is_cancelled() {
            return Err(Interrupted::Shutdown);
        }
        let Some(first) = tasks.first() else {
            return Ok(BatchProgress::Each(Vec::new()));
        };
        self.wait_while_sending_paused().await?;
        let endpoint = match self
            .durably(|| self.store.get_endpoint(first.endpoint_id))
            .await
        {
            Ok(Some(endpoint)) => endpoint,
            // A deleted or unreadable endpoint: each task is settled (or set aside) on its own.
            Ok(None) | Err(Interrupted::Unprocessable(_)) => return Ok(BatchProgress::OneByOne),
            Err(shutdown) => return Err(shutdown),
        };
        self.concurrency.remember(endpoint.id, &endpoint.shaping);
        let Some(batching) = endpoint.shaping.batching() else {
            return Ok(BatchProgress::OneByOne);
        };
        if endpoint.disabled || endpoint.paused {
            return Ok(BatchProgress::OneByOne);
        }
        let most = usize::try_from(batching.max_events).unwrap_or(1).max(1);
        if tasks.len() > most {
            return Ok(BatchProgress::Split(most));
        }
        // Before the rate limit: the tasks refused here go one by one, each taking its turn.
        if self.destination_allowed(&endpoint.url).await.is_err() {
            return Ok(BatchProgress::OneByOne);
        }
        // One request, one turn: the limit counts requests to the endpoint.
        if let Err(wait) = self
            .rate_limits
            .take_turn(endpoint.id, endpoint.shaping.rate_limit)
        {
            note_rate_limit_wait(endpoint.id, wait);
            return Ok(BatchProgress::RateLimited(wait));
        }

        let mut results: Vec<Option<Result<Progress, Interrupted>>> =
            tasks.iter().map(|_| None).collect();
        let claims = join_all(tasks.iter().map(|task| {
            self.durably(|| {
                self.store
                    .claim_attempt(task.delivery_id, task.attempts_made, self.claim_lease)
            })
        }))
        .await;
        let mut claimed: Vec<(usize, AttemptClaim)> = Vec::new();
        // Copies another sender has claimed; held once the batch is out (see below).
        let mut busy: Vec<usize> = Vec::new();
        let mut stopping = false;
        for (n, claim) in claims.into_iter().enumerate() {
            let task = tasks[n];
            results[n] = Some(match claim {
                Ok(ClaimOutcome::Claimed { claim, .. }) => {
                    claimed.push((n, claim));
                    continue;
                }
                Ok(ClaimOutcome::Busy { .. }) => {
                    busy.push(n);
                    continue;
                }
                Ok(ClaimOutcome::Final(_)) => Ok(skipped(task, "already_final")),
                Ok(ClaimOutcome::Stale(_)) => Ok(skipped(task, "stale")),
                Ok(ClaimOutcome::Missing) => Err(unknown_delivery()),
                Err(Interrupted::Shutdown) => {
                    stopping = true;
                    Err(Interrupted::Shutdown)
                }
                Err(unprocessable) => Err(unprocessable),
            });
        }
        if stopping || self.shutdown.is_cancelled() {
            self.release_all(&claimed).await;
            return Err(Interrupted::Shutdown);
        }
        // A copy of a task claimed in this very batch is busy on that claim, and is held as
        // before (it finds the delivery final once back); one claimed elsewhere waits, in order.
        // (A delivery has one claim whatever the attempt: two copies in one batch may carry
        // different attempt counts, a retry's task being written before its attempt is.)
        let claimed_here: HashSet<DeliveryId> =
            claimed.iter().map(|(n, _)| tasks[*n].delivery_id).collect();
        let elsewhere = busy
            .iter()
            .any(|n| !claimed_here.contains(&tasks[*n].delivery_id));
        if elsewhere && endpoint.shaping.ordering == Ordering::Partition {
            self.release_all(&claimed).await;
            return Ok(BatchProgress::ClaimedElsewhere);
        }
        let Some(mut results) = self
            .send_claimed(tasks, &endpoint, claimed, results)
            .await?
        else {
            return Ok(BatchProgress::Again);
        };
        // Another copy is sending these; each comes back to look again, as when alone. Held
        // after the request, so the wait cannot eat into the batch's claims.
        for n in busy {
            results[n] = Some(
                self.hold(tasks[n], Tier::HOLD, "claimed_elsewhere")
                    .await
                    .map(|()| Progress::Finished),
            );
        }
        Ok(BatchProgress::Each(each_result(results)))
    }

    /// Sends the claimed tasks as one request and settles each; `results` has the others'.
    /// `None` when nothing was sent and the claims are given back (see
    /// [`BatchProgress::Again`]).
    async fn send_claimed(
        &self,
        tasks: &[&DeliveryTask],
        endpoint: &Endpoint,
        claimed: Vec<(usize, AttemptClaim)>,
        mut results: Vec<Option<Result<Progress, Interrupted>>>,
    ) -> Result<Option<Vec<Option<Result<Progress, Interrupted>>>>, Interrupted> {
        if claimed.is_empty() {
            return Ok(Some(results));
        }

        // An open circuit breaker holds the batch's deliveries without spending an attempt.
        let admission = match self.admit(endpoint).await {
            Ok(admission) => admission,
            // The breaker's state cannot be recorded: the batch is tried again (smaller, and
            // at last one by one, as a task sent alone would be) rather than set aside whole.
            Err(err) => {
                self.release_all(&claimed).await;
                return match err {
                    Interrupted::Shutdown => Err(Interrupted::Shutdown),
                    Interrupted::Unprocessable(_) => Ok(None),
                };
            }
        };
        if let Admission::WaitUntil(until) = admission {
            let wait = (until - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
            let tier = self
                .retry
                .tier_for_wait(wait.try_into().unwrap_or_default());
            for (n, claim) in &claimed {
                self.release(claim).await?;
                results[*n] = Some(
                    self.hold(tasks[*n], tier, "circuit_open")
                        .await
                        .map(|()| Progress::Finished),
                );
            }
            return Ok(Some(results));
        }
        if self.shutdown.is_cancelled() {
            self.release_all(&claimed).await;
            return Err(Interrupted::Shutdown);
        }
        // A claim keeps other copies from sending only until it runs out: the request must be
        // answered and its outcome recorded before the first of them does. The store slow to
        // take the others could have left too little.
        let now = OffsetDateTime::now_utc();
        let first_to_run_out = claimed.iter().map(|(_, claim)| claim.until).min();
        if first_to_run_out.is_some_and(|until| !leaves_room_to_send(until, self.claim_lease, now))
        {
            self.release_all(&claimed).await;
            return Ok(None);
        }

        let sending: Vec<&DeliveryTask> = claimed.iter().map(|(n, _)| tasks[*n]).collect();
        let result = self.sender.send_batch(endpoint, &sending).await;
        // One outcome, and so one jitter, for the whole batch: its deliveries retry together.
        let outcome = outcome_of(sending[0].delivery_id, result);
        self.count_in_health(endpoint.id, &outcome);
        // The request is out: whatever the breaker's record comes to, each delivery's outcome
        // is settled (set aside, they would be sent again).
        if let Err(err) = self
            .record_circuit(endpoint.id, outcome.counts_as_failure(self.failures))
            .await
        {
            tracing::warn!(endpoint_id = %endpoint.id, error = ?err, "circuit breaker state not recorded after a batch");
        }
        metrics::BATCHES_SENT
            .with_label_values(&[outcome.class().as_str()])
            .inc();
        metrics::BATCH_SIZE.observe(sending.len() as f64);

        if outcome.is_success() {
            for (n, claim) in claimed {
                let task = tasks[n];
                results[n] = Some(Ok(Progress::Delivered(Box::new(Settlement {
                    task: task.clone(),
                    outcome: outcome.for_delivery(task.delivery_id),
                    claim,
                }))));
            }
        } else {
            let settled = join_all(claimed.iter().map(|(n, claim)| {
                let task = tasks[*n];
                self.settle(
                    task,
                    claim,
                    Some(endpoint),
                    outcome.for_delivery(task.delivery_id),
                    Route::Topic,
                )
            }))
            .await;
            for ((n, _), settled) in claimed.iter().zip(settled) {
                results[*n] = Some(settled.map(|()| Progress::Finished));
            }
        }
        Ok(Some(results))
    }

    /// Gives back the claims of a batch that is not sent.
    async fn release_all(&self, claimed: &[(usize, AttemptClaim)]) {
        for (_, claim) in claimed {
            // `release` only logs a claim it cannot give back; it runs out with its lease.
            let _ = self.release(claim).await;
        }
    }
}

/// The span of one batched request to `endpoint`; the first task's trace continues in it.
pub fn batch_span(endpoint: EndpointId, size: usize) -> tracing::Span {
    tracing::info_span!(
        target: telemetry::TARGET,
        "batch",
        endpoint_id = %endpoint,
        size,
    )
}

/// Every task's result; one left without (none is) counts as unfinished, so it is read again.
fn each_result(
    results: Vec<Option<Result<Progress, Interrupted>>>,
) -> Vec<Result<Progress, Interrupted>> {
    results
        .into_iter()
        .map(|result| result.unwrap_or(Err(Interrupted::Shutdown)))
        .collect()
}
