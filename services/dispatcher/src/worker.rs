//! Delivering one task: check the store, send, classify, record, durably.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use hookstream_model::delivery::{AttemptClass, DeliveryStatus};
use hookstream_model::destination::DestinationPolicy;
use hookstream_model::task::DeliveryTask;
use hookstream_runtime::shutdown::CancellationToken;
use hookstream_store::{NewAttempt, Store, StoreError};

use crate::classify::{classify_failure, classify_status};
use crate::metrics;
use crate::sender::{SendOutcome, Sender};

/// The task was not finished because the process is stopping; its offset stays uncommitted and
/// the task is consumed again after the restart.
#[derive(Debug)]
pub struct Interrupted;

/// Everything needed to deliver a task.
pub struct Worker {
    pub store: Arc<dyn Store>,
    pub sender: Sender,
    pub destinations: DestinationPolicy,
    pub shutdown: CancellationToken,
}

impl Worker {
    /// Delivers `task` and records the outcome. Returns only once the outcome is durable in the
    /// store (so the offset may be committed), or with [`Interrupted`] on shutdown.
    pub async fn deliver(&self, task: &DeliveryTask) -> Result<(), Interrupted> {
        let id = task.delivery_id;
        // Mark `delivering` and learn where the delivery stands, in one step.
        let Some(delivery) = self.durably(|| self.store.start_attempt(id)).await? else {
            tracing::error!(delivery_id = %id, "task for a delivery the store does not know; skipped");
            metrics::TASKS_SKIPPED
                .with_label_values(&["unknown_delivery"])
                .inc();
            return Ok(());
        };
        if delivery.status.is_final() {
            // Consumed again after a restart or rebalance: already settled, do not resend.
            tracing::debug!(delivery_id = %id, status = %delivery.status, "already final; not sent again");
            metrics::TASKS_SKIPPED
                .with_label_values(&["already_final"])
                .inc();
            return Ok(());
        }

        let endpoint = self
            .durably(|| self.store.get_endpoint(task.endpoint_id))
            .await?;
        let attempt = match endpoint {
            Some(endpoint) if !endpoint.disabled => {
                if let Err(reason) = self.destination_allowed(&endpoint.url) {
                    refused(task, AttemptClass::DestinationBlocked, reason)
                } else {
                    self.send(&endpoint, task).await
                }
            }
            Some(_) => refused(
                task,
                AttemptClass::EndpointUnavailable,
                "endpoint is disabled".into(),
            ),
            None => refused(
                task,
                AttemptClass::EndpointUnavailable,
                "endpoint was deleted".into(),
            ),
        };

        // Until the retry tiers exist, every failure is final.
        let status = if attempt.class.is_success() {
            DeliveryStatus::Delivered
        } else {
            DeliveryStatus::Failed
        };
        let number = self
            .durably(|| self.store.record_attempt(&attempt, status))
            .await?;
        metrics::ATTEMPTS
            .with_label_values(&[attempt.class.as_str()])
            .inc();
        metrics::ATTEMPT_DURATION
            .with_label_values(&[attempt.class.as_str()])
            .observe(attempt.latency_ms as f64 / 1000.0);
        tracing::info!(
            delivery_id = %id,
            endpoint_id = %task.endpoint_id,
            event_id = %task.event_id,
            attempt = number,
            class = attempt.class.as_str(),
            status_code = attempt.status_code,
            latency_ms = attempt.latency_ms,
            "attempt recorded"
        );
        Ok(())
    }

    fn destination_allowed(
        &self,
        url: &hookstream_model::destination::EndpointUrl,
    ) -> Result<(), String> {
        // The URL was checked at creation; the policy may have tightened since. Host names are
        // resolved by the HTTP client; checking resolved addresses comes with the SSRF work.
        self.destinations.check(url, "url").map_err(|e| e.reason)
    }

    async fn send(
        &self,
        endpoint: &hookstream_model::endpoint::Endpoint,
        task: &DeliveryTask,
    ) -> NewAttempt {
        let result = self.sender.send(endpoint, task).await;
        let latency_ms = u64::try_from(result.latency.as_millis()).unwrap_or(u64::MAX);
        let (status_code, class, response_snippet, error) = match result.outcome {
            SendOutcome::Answered { status, snippet } => {
                let class = classify_status(status);
                let error =
                    (!class.is_success()).then(|| format!("endpoint answered HTTP {status}"));
                (Some(status), class, snippet, error)
            }
            SendOutcome::Failed { failure, message } => (
                None,
                classify_failure(failure),
                String::new(),
                Some(message),
            ),
        };
        NewAttempt {
            delivery_id: task.delivery_id,
            started_at: result.started_at,
            latency_ms,
            status_code,
            class,
            response_snippet,
            error,
        }
    }

    /// Runs a store operation until it succeeds, backing off between tries, or until shutdown.
    /// The outcome of a task must be durable before its offset is committed, so a store outage
    /// holds the task rather than dropping it.
    async fn durably<T, F, Fut>(&self, operation: F) -> Result<T, Interrupted>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut backoff = Duration::from_millis(100);
        loop {
            match operation().await {
                Ok(value) => return Ok(value),
                Err(err) => {
                    tracing::warn!(error = %err, retry_in_ms = backoff.as_millis() as u64, "store operation failed");
                    tokio::select! {
                        _ = self.shutdown.cancelled() => return Err(Interrupted),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// An attempt that sent nothing, explained.
fn refused(task: &DeliveryTask, class: AttemptClass, reason: String) -> NewAttempt {
    NewAttempt {
        delivery_id: task.delivery_id,
        started_at: OffsetDateTime::now_utc(),
        latency_ms: 0,
        status_code: None,
        class,
        response_snippet: String::new(),
        error: Some(reason),
    }
}
