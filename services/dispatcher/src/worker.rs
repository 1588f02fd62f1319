//! Delivering one task: check the store, send, classify, route the outcome, record, durably.
//!
//! Order matters for crash safety. A failed attempt's task goes to its next topic (retry tier or
//! DLQ) first and the attempt is recorded second; only then may the offset be committed. A crash
//! in between re-consumes the task and tries again (at-least-once), and never leaves a delivery
//! `retrying` with no task waiting for it. A task whose attempt count is behind the store's is a
//! stale copy (re-consumed after its successor was written) and is dropped.
//!
//! Nothing is sent without a claim on the attempt (see `hookstream_store::claim`): of several
//! copies of a task (a rebalance re-read, an outbox republish, a retry forwarded twice) one sends
//! and the others wait (in their lane or queue when the endpoint keeps order, else on the hold
//! tier), and once a final outcome is recorded none sends again.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use hookstream_egress::{DestinationResolver, ResolveError};
use hookstream_model::delivery::AttemptClass;
use hookstream_model::destination::EndpointUrl;
use hookstream_model::endpoint::Endpoint;
use hookstream_model::ids::EndpointId;
use hookstream_model::retry::{RetryPolicy, Tier};
use hookstream_model::shaping::{Ordering, Shaping};
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::labels;
use hookstream_runtime::shutdown::CancellationToken;
use hookstream_runtime::telemetry;
use hookstream_store::{AttemptClaim, ClaimOutcome, Store, StoreError};

mod circuit;
mod settling;

use crate::breaker::{Admission, Breakers};
use crate::classify::FailurePolicy;
use crate::concurrency::{Concurrency, LaneSettings};
use crate::endpoint_health::HealthKeeper;
use crate::metrics;
use crate::outcome::{Outcome, outcome_of, random_unit, refused};
use crate::progress::{Interrupted, Progress, Route, Settlement, skipped, unknown_delivery};
use crate::rate_limits::RateLimits;
use crate::routing::Routing;
use crate::sender::Sender;

/// How often a strict endpoint's queue head looks again while its endpoint is paused.
const PAUSED_RECHECK: Duration = Duration::from_secs(2);
/// How often the head of a disabled endpoint's queue looks again for it to be enabled.
const DISABLED_RECHECK: Duration = Duration::from_secs(10);
/// How often a task of an ordered endpoint (a strict queue's head, or one in partition order)
/// looks again while another copy holds its claim.
pub const CLAIM_RECHECK: Duration = Duration::from_secs(1);
/// The part of its lease a claim must have left for a request to go out on it: the lease is
/// at least twice the request timeout, so this leaves the whole timeout for the send and half
/// of it for routing and recording the outcome before another copy may claim the attempt.
const SEND_LEASE_LEFT: f64 = 0.75;

/// Whether a claim running out at `until` leaves a request room to go out on it now.
pub(crate) fn leaves_room_to_send(
    until: OffsetDateTime,
    lease: Duration,
    now: OffsetDateTime,
) -> bool {
    until - now >= lease.mul_f64(SEND_LEASE_LEFT)
}

/// Everything needed to deliver a task.
pub struct Worker {
    pub store: Arc<dyn Store>,
    pub sender: Sender,
    pub destinations: DestinationResolver,
    pub retry: RetryPolicy,
    pub failures: FailurePolicy,
    pub routing: Routing,
    /// The rate limits of the endpoints this dispatcher serves.
    pub rate_limits: RateLimits,
    /// How many requests at once the endpoints this dispatcher serves take.
    pub concurrency: Concurrency,
    /// The circuit breakers of the endpoints this dispatcher serves.
    pub breakers: std::sync::Mutex<Breakers>,
    /// The health of the endpoints this dispatcher serves.
    pub health: Arc<HealthKeeper>,
    /// How long a claim keeps other copies of a task from sending; longer than a request and
    /// its settling can take.
    pub claim_lease: Duration,
    /// `true` while the kill switch has all sending paused.
    pub sending_paused: tokio::sync::watch::Receiver<bool>,
    pub shutdown: CancellationToken,
}

impl Worker {
    /// Delivers `task`. Failures are routed and recorded before it returns; a success comes back
    /// as [`Progress::Delivered`] for the caller to record. Returns [`Interrupted`] on shutdown.
    ///
    /// `ahead` is a claim on the task's attempt taken ahead by its lane (see
    /// `crate::lane`); it is used instead of a claim of its own while enough of its lease
    /// is left, and given back if the task goes another way.
    pub async fn deliver(
        &self,
        task: &DeliveryTask,
        route: Route,
        ahead: Option<AttemptClaim>,
    ) -> Result<Progress, Interrupted> {
        let (mut ahead, stray) = match ahead {
            Some(claim) if claim.delivery_id == task.delivery_id => (Some(claim), None),
            other => (None, other),
        };
        if let Some(stray) = stray {
            self.release_ahead(&stray).await?;
        }
        let progress = self.deliver_claiming(task, route, &mut ahead).await;
        if let Some(unused) = ahead {
            self.release_ahead(&unused).await?;
        }
        progress
    }

    /// A claim taken ahead, if enough of its lease is left for the send and its settling; else
    /// it is given back (it is this dispatcher's own, so a claim of the attempt anew would find
    /// it busy).
    async fn usable(
        &self,
        ahead: Option<AttemptClaim>,
    ) -> Result<Option<AttemptClaim>, Interrupted> {
        let Some(claim) = ahead else {
            return Ok(None);
        };
        if leaves_room_to_send(claim.until, self.claim_lease, OffsetDateTime::now_utc()) {
            return Ok(Some(claim));
        }
        self.release_ahead(&claim).await?;
        Ok(None)
    }

    /// Gives back a claim not sent on: as one taken ahead (counted) or the task's own.
    async fn give_back(&self, claim: &AttemptClaim, taken_ahead: bool) -> Result<(), Interrupted> {
        if taken_ahead {
            self.release_ahead(claim).await
        } else {
            self.release(claim).await
        }
    }

    async fn deliver_claiming(
        &self,
        task: &DeliveryTask,
        route: Route,
        ahead: &mut Option<AttemptClaim>,
    ) -> Result<Progress, Interrupted> {
        // A stopping dispatcher starts nothing new: the task is re-consumed after the restart.
        if self.shutdown.is_cancelled() {
            return Err(Interrupted::Shutdown);
        }
        let id = task.delivery_id;
        // No read of the delivery first: the claim below answers final, stale and unknown
        // copies itself, and a read per task costs more than the rare copy it would spare.
        // Held, not failed, while the kill switch is on: nothing is sent, no attempt is spent.
        self.wait_while_sending_paused().await?;
        let endpoint = match self
            .durably(|| self.store.get_endpoint(task.endpoint_id))
            .await
        {
            Ok(endpoint) => endpoint,
            // A copy that needs nothing is skipped, not quarantined with the endpoint's fault.
            Err(Interrupted::Unprocessable(reason)) => {
                return match self.settled_copy(task).await? {
                    Some(skip) => Ok(skip),
                    None => Err(Interrupted::Unprocessable(reason)),
                };
            }
            Err(interrupted) => return Err(interrupted),
        };
        if let Some(endpoint) = &endpoint {
            self.concurrency.remember(endpoint.id, &endpoint.shaping);
            // Queued before anything else, a pause included: a task held on a tier would come
            // back behind the ones queued meanwhile. A disabled endpoint's deliveries are
            // kept in its queue too, unsent, and go out once it is enabled again.
            if route == Route::Topic
                && (endpoint.shaping.ordering == Ordering::Strict || endpoint.disabled)
            {
                // A copy of a delivery settled already (held on a tier before, or from before
                // the endpoint turned strict) would only take a place in the queue.
                if let Some(skip) = self.settled_copy(task).await? {
                    return Ok(skip);
                }
                return Ok(Progress::Queue);
            }
            if route == Route::QueueHead && endpoint.disabled {
                if let Some(skip) = self.settled_copy(task).await? {
                    return Ok(skip);
                }
                return Ok(Progress::Wait(DISABLED_RECHECK));
            }
        }
        if endpoint.as_ref().is_some_and(|e| e.paused && !e.disabled) {
            // Only a copy still to be sent is held: a settled one would go round the hold tier
            // for as long as the pause lasts.
            if let Some(skip) = self.settled_copy(task).await? {
                return Ok(skip);
            }
            if route == Route::QueueHead {
                return Ok(Progress::Wait(PAUSED_RECHECK));
            }
            self.hold(task, Tier::HOLD, "endpoint_paused").await?;
            return Ok(Progress::Finished);
        }
        // Before anything is claimed: waiting for the limit spends no attempt. (A copy that
        // turns out settled spends a turn; that only slows the endpoint down.)
        if let Some(endpoint) = endpoint.as_ref().filter(|e| !e.disabled)
            && let Err(wait) = self
                .rate_limits
                .take_turn(endpoint.id, endpoint.shaping.rate_limit)
        {
            // A copy that needs nothing does not wait a turn for it.
            if let Some(skip) = self.settled_copy(task).await? {
                return Ok(skip);
            }
            note_rate_limit_wait(endpoint.id, wait);
            return Ok(Progress::RateLimited(wait));
        }
        let refusal = match &endpoint {
            Some(endpoint) if !endpoint.disabled => self
                .destination_allowed(&endpoint.url)
                .await
                .err()
                .map(|reason| (AttemptClass::DestinationBlocked, reason)),
            Some(_) => Some((
                AttemptClass::EndpointUnavailable,
                "endpoint is disabled".into(),
            )),
            None => Some((
                AttemptClass::EndpointUnavailable,
                "endpoint was deleted".into(),
            )),
        };
        let usable = self.usable(ahead.take()).await?;
        let taken_ahead = usable.is_some();
        let claim = match usable {
            Some(claim) => claim,
            None => match self
                .durably(|| {
                    self.store
                        .claim_attempt(id, task.attempts_made, self.claim_lease)
                })
                .await?
            {
                ClaimOutcome::Claimed { claim, .. } => claim,
                ClaimOutcome::Final(_) => return Ok(skipped(task, "already_final")),
                ClaimOutcome::Stale(_) => return Ok(skipped(task, "stale")),
                ClaimOutcome::Missing => return Err(unknown_delivery()),
                // Another copy is sending this attempt. It may die before recording it, so this
                // copy is not dropped: it comes back to look again once that copy is done. An
                // ordered endpoint's copy waits in place (a dispatcher killed with claims out
                // leaves them until their lease runs out): on a tier, the deliveries behind it
                // would go first.
                ClaimOutcome::Busy { .. } if route == Route::QueueHead => {
                    return Ok(Progress::Wait(CLAIM_RECHECK));
                }
                ClaimOutcome::Busy { .. }
                    if endpoint
                        .as_ref()
                        .is_some_and(|e| e.shaping.ordering == Ordering::Partition) =>
                {
                    return Ok(Progress::ClaimedElsewhere);
                }
                ClaimOutcome::Busy { .. } => {
                    self.hold(task, Tier::HOLD, "claimed_elsewhere").await?;
                    return Ok(Progress::Finished);
                }
            },
        };
        // An open circuit breaker holds the task without spending an attempt.
        let mut probe = None;
        if let (Some(endpoint), None) = (&endpoint, &refusal) {
            match self.admit(endpoint).await? {
                Admission::Send => {}
                Admission::Probe => probe = Some(endpoint.id),
                Admission::WaitUntil(until) => {
                    // Not sent, so not to be held from the copy that comes back for it.
                    self.give_back(&claim, taken_ahead).await?;
                    let wait = (until - OffsetDateTime::now_utc()).max(time::Duration::ZERO);
                    if route == Route::QueueHead {
                        return Ok(Progress::Wait(wait.try_into().unwrap_or_default()));
                    }
                    let tier = self
                        .retry
                        .tier_for_wait(wait.try_into().unwrap_or_default());
                    self.hold(task, tier, "circuit_open").await?;
                    return Ok(Progress::Finished);
                }
            }
        }
        if self.shutdown.is_cancelled() {
            self.give_back(&claim, taken_ahead).await?;
            return Err(Interrupted::Shutdown);
        }
        // The breaker's record may have waited out a slow store: a claim run short by then
        // could run out while the request is still out, and another copy be sent beside it.
        // Given back, and the task starts over (a probe admitted for it is taken back).
        if !leaves_room_to_send(claim.until, self.claim_lease, OffsetDateTime::now_utc()) {
            if let Some(endpoint) = probe {
                self.breakers().probe_not_sent(endpoint);
            }
            self.give_back(&claim, taken_ahead).await?;
            return Ok(Progress::Wait(Duration::ZERO));
        }
        if taken_ahead {
            metrics::CLAIMS_AHEAD.with_label_values(&["used"]).inc();
        }
        let outcome = self.attempt(task, endpoint.as_ref(), refusal).await?;
        if outcome.attempt.class.is_success() {
            return Ok(Progress::Delivered(Box::new(Settlement {
                task: task.clone(),
                claim,
                outcome,
            })));
        }
        // A failure may disable the endpoint or open its breaker, which the endpoint's next
        // task must see, so it is settled before that task starts.
        self.settle(task, &claim, endpoint.as_ref(), outcome, route)
            .await?;
        Ok(Progress::Finished)
    }

    /// How the endpoint takes its requests (how many at once, whether in batches), as this
    /// dispatcher last read its settings (each delivery reads its endpoint). Read from the
    /// store the first time, and again with `recheck` when more than one delivery may go at
    /// once: a lane opening for an endpoint this dispatcher may not have served for a while (its
    /// partition moved away and back) must not start several requests at once, or gather a
    /// batch, on a setting that has changed since. One by one while the store cannot say,
    /// which is always safe.
    pub async fn lane_settings_of(&self, endpoint: EndpointId, recheck: bool) -> LaneSettings {
        if let Some(settings) = self.concurrency.of(endpoint)
            && (settings.is_one_by_one() || !recheck)
        {
            return settings;
        }
        match self.store.get_endpoint(endpoint).await {
            Ok(Some(read)) => {
                self.concurrency.remember(endpoint, &read.shaping);
                LaneSettings::of(&read.shaping)
            }
            Ok(None) => {
                // A deleted endpoint's tasks are settled one at a time, with no read each.
                self.concurrency.remember(endpoint, &Shaping::default());
                LaneSettings::ONE_BY_ONE
            }
            Err(_) => LaneSettings::ONE_BY_ONE,
        }
    }

    /// Whether the endpoint keeps strict order, read afresh from the store (and remembered).
    /// False for a deleted endpoint, and for one that cannot be read.
    pub async fn keeps_strict_order(&self, endpoint: EndpointId) -> Result<bool, Interrupted> {
        match self.durably(|| self.store.get_endpoint(endpoint)).await {
            Ok(Some(read)) => {
                self.concurrency.remember(endpoint, &read.shaping);
                Ok(read.shaping.ordering == Ordering::Strict)
            }
            Ok(None) | Err(Interrupted::Unprocessable(_)) => Ok(false),
            Err(Interrupted::Shutdown) => Err(Interrupted::Shutdown),
        }
    }

    /// For a copy that will not reach the claim: skipped if its delivery is final or it is
    /// stale, an error if the store has no such delivery, `None` if it is still to be sent.
    async fn settled_copy(&self, task: &DeliveryTask) -> Result<Option<Progress>, Interrupted> {
        let id = task.delivery_id;
        let Some(delivery) = self.durably(|| self.store.get_delivery(id)).await? else {
            return Err(unknown_delivery());
        };
        Ok(if delivery.status.is_final() {
            Some(skipped(task, "already_final"))
        } else if task.attempts_made < delivery.attempts {
            Some(skipped(task, "stale"))
        } else {
            None
        })
    }

    /// Gives back a claim taken ahead and not sent on (see `crate::claims_ahead`).
    pub(crate) async fn release_ahead(&self, claim: &AttemptClaim) -> Result<(), Interrupted> {
        metrics::CLAIMS_AHEAD
            .with_label_values(&["given_back"])
            .inc();
        self.release(claim).await
    }

    /// Gives back a claim whose attempt was not sent, so the next copy need not wait out its
    /// lease. Best effort: a claim not given back only runs out.
    pub(crate) async fn release(&self, claim: &AttemptClaim) -> Result<(), Interrupted> {
        if let Err(err) = self.store.release_claim(claim).await {
            tracing::warn!(delivery_id = %claim.delivery_id, error = %err, "claim not given back; it runs out with its lease");
        }
        Ok(())
    }

    /// Sends the task, or explains why it was refused, and tells the breaker how it went.
    async fn attempt(
        &self,
        task: &DeliveryTask,
        endpoint: Option<&Endpoint>,
        refusal: Option<(AttemptClass, String)>,
    ) -> Result<Outcome, Interrupted> {
        Ok(match (endpoint, refusal) {
            (_, Some((class, reason))) => {
                let outcome = refused(task, class, reason);
                // A blocked address is the endpoint's failure, though no request went out.
                if let (Some(endpoint), AttemptClass::DestinationBlocked) = (endpoint, class) {
                    self.health
                        .record(endpoint.id, outcome.attempt.started_at, None, class);
                }
                outcome
            }
            (Some(endpoint), None) => {
                let outcome = self.send(endpoint, task).await;
                self.count_in_health(endpoint.id, &outcome);
                let failed = outcome.counts_as_failure(self.failures);
                self.record_circuit(endpoint.id, failed).await?;
                outcome
            }
            (None, None) => refused(
                task,
                AttemptClass::EndpointUnavailable,
                "endpoint was deleted".into(),
            ),
        })
    }

    /// Records a delivered task's attempt; returns once it is durable.
    pub async fn record_delivered(&self, settlement: Settlement) -> Result<(), Interrupted> {
        let Settlement {
            task,
            claim,
            outcome,
        } = settlement;
        // Delivered needs no endpoint: nothing is retried, dead-lettered or disabled.
        self.settle(&task, &claim, None, outcome, Route::Topic)
            .await
    }

    /// Whether the kill switch has sending paused now.
    pub fn sending_is_paused(&self) -> bool {
        *self.sending_paused.borrow()
    }

    /// Waits while the kill switch is on.
    pub async fn wait_while_sending_paused(&self) -> Result<(), Interrupted> {
        let mut paused = self.sending_paused.clone();
        tokio::select! {
            _ = self.shutdown.cancelled() => Err(Interrupted::Shutdown),
            // The watcher only ends with the process.
            result = paused.wait_for(|paused| !*paused) => result.map(|_| ()).map_err(|_| Interrupted::Shutdown),
        }
    }

    /// Checks the URL again at every attempt: the policy may have tightened and the name may
    /// point elsewhere since the last one (a kept-alive connection would not notice). A name
    /// that does not resolve is left to the send, which classifies it as a DNS error.
    pub(crate) async fn destination_allowed(&self, url: &EndpointUrl) -> Result<(), String> {
        match self.destinations.check(url).await {
            Err(ResolveError::Blocked(blocked)) => Err(blocked.0),
            Ok(()) | Err(_) => Ok(()),
        }
    }

    async fn send(&self, endpoint: &Endpoint, task: &DeliveryTask) -> Outcome {
        outcome_of(task.delivery_id, self.sender.send(endpoint, task).await)
    }

    /// Runs a store operation until it succeeds, backing off (with jitter) between tries, or
    /// until shutdown. The outcome of a task must be durable before its offset is committed, so
    /// a store outage holds the task rather than dropping it. An error that trying again cannot
    /// mend (damaged data, a missing row) makes the task unprocessable instead of wedging its
    /// lane.
    pub(crate) async fn durably<T, F, Fut>(&self, operation: F) -> Result<T, Interrupted>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(err) if err.is_transient() => {
                    // Spread over half to one and a half times the backoff, so dispatchers that
                    // lost the store together do not come back together.
                    let wait = backoff.mul_f64(0.5 + random_unit());
                    tracing::warn!(error = %err, retry_in_ms = wait.as_millis() as u64, "store operation failed");
                    metrics::STORE_ERRORS
                        .with_label_values(&["transient"])
                        .inc();
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Err(Interrupted::Shutdown),
                        _ = tokio::time::sleep(wait) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Err(err) => {
                    metrics::STORE_ERRORS
                        .with_label_values(&["permanent"])
                        .inc();
                    return Err(Interrupted::Unprocessable(format!("store: {err}")));
                }
            }
        }
    }
}

/// The span of one attempt at `task`, which its trace (from the record's headers) continues.
pub fn attempt_span(task: &DeliveryTask) -> tracing::Span {
    tracing::info_span!(
        target: telemetry::TARGET,
        "attempt",
        delivery_id = %task.delivery_id,
        endpoint_id = %task.endpoint_id,
        attempt = task.attempts_made + 1,
    )
}

/// Counts a wait for the endpoint's rate limit.
pub(crate) fn note_rate_limit_wait(endpoint: EndpointId, wait: Duration) {
    let endpoint_id = endpoint.to_string();
    let label = labels::endpoints().label(&endpoint_id);
    metrics::RATE_LIMIT_WAITS.with_label_values(&[label]).inc();
    metrics::RATE_LIMIT_WAIT_SECONDS
        .with_label_values(&[label])
        .inc_by(wait.as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_goes_out_only_on_a_claim_with_three_quarters_of_its_lease_left() {
        let lease = Duration::from_secs(60);
        let now = OffsetDateTime::now_utc();
        assert!(leaves_room_to_send(now + lease, lease, now), "fresh");
        assert!(leaves_room_to_send(
            now + time::Duration::seconds(45),
            lease,
            now
        ));
        // Half left is the request timeout at most, and nothing to record the outcome in.
        assert!(!leaves_room_to_send(
            now + time::Duration::seconds(30),
            lease,
            now
        ));
        assert!(!leaves_room_to_send(
            now - time::Duration::seconds(1),
            lease,
            now
        ));
    }
}
