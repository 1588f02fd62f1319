//! One attempt's result, before the store numbers it: what a request came to, or why nothing
//! was sent.

use std::time::{Duration, SystemTime};

use time::OffsetDateTime;

use hookstream_model::delivery::AttemptClass;
use hookstream_model::ids::DeliveryId;
use hookstream_model::retry::parse_retry_after;
use hookstream_model::task::DeliveryTask;
use hookstream_store::NewAttempt;

use crate::classify::{Disposition, FailurePolicy, classify_failure, classify_status, disposition};
use crate::sender::{SendOutcome, SendResult};

/// One attempt's result, before the store numbers it.
pub(crate) struct Outcome {
    pub(crate) attempt: NewAttempt,
    pub(crate) retry_after: Option<Duration>,
    /// The random draw that spreads its retry (see `RetryPolicy::plan`). The deliveries of one
    /// batch share it, so the ones on the same attempt come back together.
    pub(crate) jitter: f64,
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
pub(crate) fn refused(task: &DeliveryTask, class: AttemptClass, reason: String) -> Outcome {
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
