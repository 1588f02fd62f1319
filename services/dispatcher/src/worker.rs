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
use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use hookstream_egress::{DestinationResolver, ResolveError};
use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::delivery::{AttemptClass, DeliveryStatus};
use hookstream_model::destination::EndpointUrl;
use hookstream_model::endpoint::{CircuitState, CircuitView, Endpoint};
use hookstream_model::ids::{DeliveryId, EndpointId};
use hookstream_model::ops_event::{OpsEvent, OpsKind};
use hookstream_model::retry::{RetryPolicy, Tier, parse_retry_after};
use hookstream_model::shaping::{Ordering, Shaping};
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::labels;
use hookstream_runtime::shutdown::CancellationToken;
use hookstream_runtime::telemetry;
use hookstream_store::{AttemptClaim, ClaimOutcome, NewAttempt, RecordOutcome, Store, StoreError};

use crate::breaker::{Admission, Breakers, Circuit};
use crate::classify::{Disposition, FailurePolicy, classify_failure, classify_status, disposition};
use crate::concurrency::{Concurrency, LaneSettings};
use crate::decision::{self, AttemptFacts, Next};
use crate::endpoint_health::HealthKeeper;
use crate::metrics;
use crate::rate_limits::RateLimits;
use crate::routing::Routing;
use crate::sender::{SendOutcome, SendResult, Sender};

/// How long a task waits on a tier when its endpoint's backlog is full (rounded up to a tier).
const BACKLOG_HOLD: Duration = Duration::from_secs(30);
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

/// One attempt's result, before the store numbers it.
pub(crate) struct Outcome {
    attempt: NewAttempt,
    retry_after: Option<Duration>,
    /// The random draw that spreads its retry (see `RetryPolicy::plan`). The deliveries of one
    /// batch share it, so the ones on the same attempt come back together.
    jitter: f64,
}

impl Outcome {
    /// The same outcome for another delivery sent in the same request (a batch).
    pub(crate) fn for_delivery(&self, delivery_id: DeliveryId) -> Self {
        Self {
            attempt: NewAttempt {
                delivery_id,
                ..self.attempt.clone()
            },
            retry_after: self.retry_after,
            jitter: self.jitter,
        }
    }

    pub(crate) fn class(&self) -> AttemptClass {
        self.attempt.class
    }

    /// Whether the endpoint took it.
    pub(crate) fn is_success(&self) -> bool {
        self.attempt.class.is_success()
    }

    /// Whether the endpoint's breaker counts it against the endpoint.
    pub(crate) fn counts_as_failure(&self, failures: FailurePolicy) -> bool {
        disposition(self.attempt.class, failures) == Disposition::Retry
    }
}

/// How far [`Worker::deliver`] took a task.
pub enum Progress {
    /// Its outcome is durable: the offset may be committed.
    Finished,
    /// It was delivered; the attempt is still to be recorded with [`Worker::record_delivered`].
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
    /// [`CLAIM_RECHECK`], the tasks behind it waiting: on a tier, they would go first. The wait
    /// is not the endpoint's pace (see `crate::lanes::Stopwatch`).
    ClaimedElsewhere,
}

/// A delivered task whose attempt is not recorded yet.
pub struct Settlement {
    pub(crate) task: DeliveryTask,
    pub(crate) claim: AttemptClaim,
    pub(crate) outcome: Outcome,
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

    /// Asks the endpoint's breaker whether a task may go out, recording any change of state.
    pub(crate) async fn admit(&self, endpoint: &Endpoint) -> Result<Admission, Interrupted> {
        let recorded = match endpoint.circuit.state {
            CircuitState::Closed => Circuit::Closed { failures: 0 },
            CircuitState::Open => Circuit::Open {
                until: endpoint
                    .circuit
                    .open_until
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            },
            CircuitState::HalfOpen => Circuit::Probing,
        };
        let (admission, transition) = {
            let mut breakers = self.breakers();
            breakers.seed(endpoint.id, recorded);
            breakers.admit(endpoint.id, OffsetDateTime::now_utc())
        };
        if let Some(transition) = transition {
            self.persist_circuit(endpoint.id, transition.to).await?;
        }
        Ok(admission)
    }

    /// Counts a request to the endpoint in its health (one per batch: one request).
    pub(crate) fn count_in_health(&self, endpoint: EndpointId, outcome: &Outcome) {
        self.health.record(
            endpoint,
            outcome.attempt.started_at,
            Some(outcome.attempt.latency_ms),
            outcome.attempt.class,
        );
    }

    /// Tells the endpoint's breaker how a sent task went, recording any change of state.
    pub(crate) async fn record_circuit(
        &self,
        endpoint: EndpointId,
        failed: bool,
    ) -> Result<(), Interrupted> {
        let transition = self
            .breakers()
            .record(endpoint, failed, OffsetDateTime::now_utc());
        if let Some(transition) = transition {
            self.persist_circuit(endpoint, transition.to).await?;
        }
        Ok(())
    }

    fn breakers(&self) -> std::sync::MutexGuard<'_, Breakers> {
        // The breakers hold no invariant a panic could break halfway; keep using them.
        self.breakers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Shows the breaker's new state in the store (for the API) and in the metrics.
    async fn persist_circuit(
        &self,
        endpoint: EndpointId,
        circuit: Circuit,
    ) -> Result<(), Interrupted> {
        let view = match circuit {
            Circuit::Closed { .. } => CircuitView::default(),
            Circuit::Open { until } => CircuitView {
                state: CircuitState::Open,
                open_until: Some(until),
            },
            Circuit::Probing => CircuitView {
                state: CircuitState::HalfOpen,
                open_until: None,
            },
        };
        self.durably(|| self.store.set_circuit(endpoint, &view))
            .await?;
        metrics::CIRCUIT_TRANSITIONS
            .with_label_values(&[view.state.as_str()])
            .inc();
        let id = endpoint.to_string();
        if labels::endpoints().admits(&id) {
            let state = match view.state {
                CircuitState::Closed => 0,
                CircuitState::HalfOpen => 1,
                CircuitState::Open => 2,
            };
            metrics::CIRCUIT_STATE.with_label_values(&[&id]).set(state);
        }
        metrics::CIRCUITS_OPEN.set(self.breakers().open_count() as i64);
        tracing::warn!(
            endpoint_id = %endpoint,
            state = view.state.as_str(),
            trace_id = %telemetry::trace_id(&tracing::Span::current()),
            "circuit breaker changed"
        );
        Ok(())
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

    /// Holds a task of an endpoint whose backlog in this dispatcher is full. The wait is long
    /// enough that the backlog goes down meanwhile rather than the task coming straight back.
    pub async fn hold_backlog(&self, task: &DeliveryTask) -> Result<(), Interrupted> {
        let tier = self.retry.tier_for_wait(BACKLOG_HOLD);
        self.hold(task, tier, "endpoint_backlog").await
    }

    /// A task that may not go out yet (paused endpoint, open breaker) waits on a tier with its
    /// attempt count unchanged and comes back to look again. Holding it in memory instead would
    /// let one such endpoint fill the dispatcher and stall the others.
    pub(crate) async fn hold(
        &self,
        task: &DeliveryTask,
        tier: Tier,
        reason: &str,
    ) -> Result<(), Interrupted> {
        let mut held = task.clone();
        held.due_at = Some(OffsetDateTime::now_utc() + tier.0);
        self.routing.to_retry_tier(&held, &tier.name()).await?;
        metrics::TASKS_HELD.with_label_values(&[reason]).inc();
        tracing::debug!(
            delivery_id = %task.delivery_id,
            endpoint_id = %task.endpoint_id,
            reason,
            tier = %tier,
            trace_id = %telemetry::trace_id(&tracing::Span::current()),
            "task held"
        );
        Ok(())
    }

    /// Routes and records an attempt's outcome. A queue head's retry is only recorded, with
    /// its due time: the head stays in its queue and is tried again then.
    pub(crate) async fn settle(
        &self,
        task: &DeliveryTask,
        claim: &AttemptClaim,
        endpoint: Option<&Endpoint>,
        outcome: Outcome,
        route: Route,
    ) -> Result<(), Interrupted> {
        let Outcome {
            mut attempt,
            retry_after,
            jitter,
        } = outcome;
        let number = claim.number;
        let facts = AttemptFacts {
            class: attempt.class,
            number,
            endpoint_max_attempts: endpoint.and_then(|e| e.max_attempts),
            retry_after,
            now: OffsetDateTime::now_utc(),
            random: jitter,
        };
        let next = decision::decide(&facts, self.failures, &self.retry);
        match &next {
            Next::Delivered => {}
            Next::Retry { due_at, .. } if route == Route::QueueHead => {
                metrics::RETRIES_WRITTEN
                    .with_label_values(&["in_place"])
                    .inc();
                attempt.next_attempt_at = Some(*due_at);
            }
            Next::Retry { tier, due_at } => {
                let mut waiting = task.clone();
                waiting.attempts_made = number;
                waiting.due_at = Some(*due_at);
                let tier = tier.name();
                self.routing.to_retry_tier(&waiting, &tier).await?;
                metrics::RETRIES_WRITTEN.with_label_values(&[&tier]).inc();
                attempt.next_attempt_at = Some(*due_at);
                attempt.tier = Some(tier);
            }
            Next::DeadLetter {
                reason,
                disable_endpoint,
            } => {
                self.dead_letter(task, number, &attempt, reason.clone())
                    .await?;
                if *disable_endpoint {
                    self.disable(endpoint).await?;
                }
            }
        }
        let status = next.status();

        let recorded = match self
            .durably(|| self.store.record_attempt(claim, &attempt, status))
            .await
        {
            Ok(recorded) => recorded,
            // A queue head's retry is routed nowhere but this record, and its dead letter is
            // told by it: without it the head would be sent (and dead-lettered) again and
            // again. It is set aside (quarantined) instead.
            Err(Interrupted::Unprocessable(reason))
                if route == Route::QueueHead && !matches!(next, Next::Delivered) =>
            {
                return Err(Interrupted::Unprocessable(reason));
            }
            // The outcome is routed already (the next task written, or the webhook delivered):
            // quarantining this task too would make a second live copy. It is finished; only
            // the attempt log misses the attempt.
            Err(Interrupted::Unprocessable(reason)) => {
                tracing::error!(
                    delivery_id = %task.delivery_id,
                    attempt = number,
                    class = attempt.class.as_str(),
                    %reason,
                    "attempt not recorded: the store refuses it; its outcome is routed"
                );
                metrics::ATTEMPTS_UNRECORDED.inc();
                return Ok(());
            }
            Err(shutdown) => return Err(shutdown),
        };
        if recorded == RecordOutcome::ClaimLost {
            // Only when this attempt outlasted its lease and another copy claimed it: that
            // copy's outcome is the one recorded.
            metrics::CLAIMS_LOST.inc();
            tracing::warn!(
                delivery_id = %task.delivery_id,
                attempt = number,
                class = attempt.class.as_str(),
                "attempt outlasted its claim; another copy's outcome is recorded instead"
            );
            return Ok(());
        }
        let endpoint_id = task.endpoint_id.to_string();
        let endpoint_label = labels::endpoints().label(&endpoint_id);
        metrics::ATTEMPTS
            .with_label_values(&[attempt.class.as_str(), endpoint_label])
            .inc();
        metrics::ATTEMPT_DURATION
            .with_label_values(&[endpoint_label])
            .observe(attempt.latency_ms as f64 / 1000.0);
        if status == DeliveryStatus::Delivered {
            let waited = OffsetDateTime::now_utc() - task.event_created_at;
            metrics::DELIVERY_LATENCY.observe(waited.as_seconds_f64().max(0.0));
        }
        // One line per attempt is per-event detail (DEBUG; the attempt log has it all), except
        // the one that gives a delivery up, which an operator acts on.
        macro_rules! attempt_recorded {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    delivery_id = %task.delivery_id,
                    endpoint_id = %task.endpoint_id,
                    event_id = %task.event_id,
                    attempt = number,
                    class = attempt.class.as_str(),
                    status_code = attempt.status_code,
                    latency_ms = attempt.latency_ms,
                    next = %status,
                    tier = attempt.tier.as_deref().unwrap_or(""),
                    trace_id = %telemetry::trace_id(&tracing::Span::current()),
                    "attempt recorded"
                )
            };
        }
        if status == DeliveryStatus::DeadLettered {
            attempt_recorded!(tracing::Level::INFO);
        } else {
            attempt_recorded!(tracing::Level::DEBUG);
        }
        Ok(())
    }

    async fn dead_letter(
        &self,
        task: &DeliveryTask,
        number: u32,
        attempt: &NewAttempt,
        reason: String,
    ) -> Result<(), Interrupted> {
        let mut last = task.clone();
        last.attempts_made = number;
        last.due_at = None;
        let letter = DeadLetter {
            task: last,
            reason,
            last_class: attempt.class,
            last_status_code: attempt.status_code,
            last_error: attempt.error.clone(),
            last_response_snippet: attempt.response_snippet.clone(),
            dead_lettered_at: OffsetDateTime::now_utc(),
        };
        self.routing.to_dlq(&letter).await?;
        metrics::DEAD_LETTERED.inc();
        Ok(())
    }

    /// `410 Gone`: the endpoint says it is gone for good; send it nothing more until someone
    /// enables it again through the API.
    async fn disable(&self, endpoint: Option<&Endpoint>) -> Result<(), Interrupted> {
        let Some(endpoint) = endpoint else {
            return Ok(());
        };
        // Only the flag: writing back the whole endpoint as read before the attempt would undo
        // an edit made through the API while the request was out.
        let now = OffsetDateTime::now_utc();
        let changed = self
            .durably(|| self.store.disable_endpoint(endpoint.id, now))
            .await?;
        tracing::warn!(endpoint_id = %endpoint.id, "endpoint answered 410 Gone; disabled");
        // An operator endpoint's own changes are not told: they would go round to it.
        if changed && !endpoint.subscription.is_operational() {
            self.health.tell(OpsEvent::endpoint_changed(
                OpsKind::EndpointDisabled,
                endpoint.id,
                &endpoint.tenant,
                "the endpoint answered 410 Gone",
                now,
            ));
        }
        Ok(())
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

/// Counts a wait for the endpoint's rate limit.
pub(crate) fn note_rate_limit_wait(endpoint: EndpointId, wait: Duration) {
    let endpoint_id = endpoint.to_string();
    let label = labels::endpoints().label(&endpoint_id);
    metrics::RATE_LIMIT_WAITS.with_label_values(&[label]).inc();
    metrics::RATE_LIMIT_WAIT_SECONDS
        .with_label_values(&[label])
        .inc_by(wait.as_secs_f64());
}

/// What one request came to, as the attempt of `delivery_id`.
pub(crate) fn outcome_of(delivery_id: DeliveryId, result: SendResult) -> Outcome {
    let latency_ms = u64::try_from(result.latency.as_millis()).unwrap_or(u64::MAX);
    let (status_code, class, response_snippet, error, retry_after) = match result.outcome {
        SendOutcome::Answered {
            status,
            snippet,
            retry_after,
        } => {
            let class = classify_status(status);
            let error = (!class.is_success()).then(|| format!("endpoint answered HTTP {status}"));
            let retry_after = retry_after.and_then(|v| parse_retry_after(&v, SystemTime::now()));
            (Some(status), class, snippet, error, retry_after)
        }
        SendOutcome::Failed { failure, message } => (
            None,
            classify_failure(failure),
            String::new(),
            Some(message),
            None,
        ),
    };
    Outcome {
        attempt: NewAttempt {
            delivery_id,
            started_at: result.started_at,
            latency_ms,
            status_code,
            class,
            response_snippet,
            error,
            next_attempt_at: None,
            tier: None,
        },
        retry_after,
        jitter: random_unit(),
    }
}

/// An attempt that sent nothing, explained.
fn refused(task: &DeliveryTask, class: AttemptClass, reason: String) -> Outcome {
    Outcome {
        attempt: NewAttempt {
            delivery_id: task.delivery_id,
            started_at: OffsetDateTime::now_utc(),
            latency_ms: 0,
            status_code: None,
            class,
            response_snippet: String::new(),
            error: Some(reason),
            next_attempt_at: None,
            tier: None,
        },
        retry_after: None,
        jitter: random_unit(),
    }
}

/// A random number in `[0, 1)` for the retry jitter; 0.5 (no jitter) if the system has no
/// randomness to give.
pub(crate) fn random_unit() -> f64 {
    getrandom::u64().map_or(0.5, |n| (n >> 11) as f64 / (1u64 << 53) as f64)
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
