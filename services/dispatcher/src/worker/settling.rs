//! What becomes of an attempt's outcome: routed on (a retry tier, the dead-letter topic) and
//! recorded, in that order; and a task that may not go out yet, held on a tier.

use std::time::Duration;

use time::OffsetDateTime;

use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::delivery::DeliveryStatus;
use hookstream_model::endpoint::Endpoint;
use hookstream_model::ops_event::{OpsEvent, OpsKind};
use hookstream_model::retry::Tier;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::labels;
use hookstream_runtime::telemetry;
use hookstream_store::{AttemptClaim, NewAttempt, RecordOutcome};

use crate::outcome::Outcome;
use crate::progress::{Interrupted, Route};

use crate::decision::{self, AttemptFacts, Next};
use crate::metrics;

use super::Worker;

/// How long a task waits on a tier when its endpoint's backlog is full (rounded up to a tier).
const BACKLOG_HOLD: Duration = Duration::from_secs(30);

impl Worker {
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
}
