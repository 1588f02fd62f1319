//! What follows an attempt, decided from its outcome alone: delivered, retried (on which tier,
//! when), or dead-lettered (why, and whether the endpoint is disabled). No I/O, so every case is
//! a unit test; the worker carries the decision out. The circuit breaker's decisions live in
//! `breaker`, as pure as these.

use std::time::Duration;

use time::OffsetDateTime;

use hookstream_model::delivery::{AttemptClass, DeliveryStatus};
use hookstream_model::retry::{RetryPolicy, Tier};

use crate::classify::{Disposition, FailurePolicy, disposition};

/// What an attempt came to, and what bears on its follow-up.
#[derive(Debug, Clone)]
pub struct AttemptFacts {
    pub class: AttemptClass,
    /// The attempt's number (1 for the first).
    pub number: u32,
    /// The endpoint's own attempt limit, if it lowers the policy's.
    pub endpoint_max_attempts: Option<u32>,
    /// How long the endpoint asked to be left alone (`Retry-After`).
    pub retry_after: Option<Duration>,
    pub now: OffsetDateTime,
    /// A number in `[0, 1)` that picks the retry jitter.
    pub random: f64,
}

/// What the worker does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    Delivered,
    /// The task waits on `tier` until `due_at`.
    Retry {
        tier: Tier,
        due_at: OffsetDateTime,
    },
    /// Never tried again; a `410 Gone` also disables the endpoint.
    DeadLetter {
        reason: String,
        disable_endpoint: bool,
    },
}

impl Next {
    /// The delivery's status once this is carried out.
    pub fn status(&self) -> DeliveryStatus {
        match self {
            Self::Delivered => DeliveryStatus::Delivered,
            Self::Retry { .. } => DeliveryStatus::Retrying,
            Self::DeadLetter { .. } => DeliveryStatus::DeadLettered,
        }
    }
}

pub fn decide(facts: &AttemptFacts, failures: FailurePolicy, retry: &RetryPolicy) -> Next {
    match disposition(facts.class, failures) {
        Disposition::Delivered => Next::Delivered,
        Disposition::Retry => match retry.plan(
            facts.number,
            facts.endpoint_max_attempts,
            facts.retry_after,
            facts.now,
            facts.random,
        ) {
            Some(plan) => Next::Retry {
                tier: plan.tier,
                due_at: plan.due_at,
            },
            None => Next::DeadLetter {
                reason: format!(
                    "gave up after {} attempts; the last was {}",
                    facts.number,
                    facts.class.as_str()
                ),
                disable_endpoint: false,
            },
        },
        Disposition::Permanent { disable_endpoint } => Next::DeadLetter {
            reason: format!("{} is not retried", facts.class.as_str()),
            disable_endpoint,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hookstream_model::retry::parse_schedule;

    const NOW: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

    fn policy() -> RetryPolicy {
        RetryPolicy::new(parse_schedule("1s,5s,30s").unwrap(), 0.2).unwrap()
    }

    fn facts(class: AttemptClass, number: u32) -> AttemptFacts {
        AttemptFacts {
            class,
            number,
            endpoint_max_attempts: None,
            retry_after: None,
            now: NOW,
            random: 0.5,
        }
    }

    fn decided(facts: &AttemptFacts) -> Next {
        decide(facts, FailurePolicy::default(), &policy())
    }

    #[test]
    fn a_2xx_is_delivered() {
        let next = decided(&facts(AttemptClass::Http2xxDelivered, 1));
        assert_eq!(next, Next::Delivered);
        assert_eq!(next.status(), DeliveryStatus::Delivered);
    }

    #[test]
    fn a_retryable_failure_waits_on_its_tier_until_the_schedule_runs_out() {
        let next = decided(&facts(AttemptClass::Http5xxRetryable, 2));
        assert_eq!(
            next,
            Next::Retry {
                tier: Tier(Duration::from_secs(5)),
                due_at: NOW + Duration::from_secs(5),
            }
        );
        assert_eq!(next.status(), DeliveryStatus::Retrying);
        let last = decided(&facts(AttemptClass::Timeout, 4));
        assert_eq!(
            last,
            Next::DeadLetter {
                reason: "gave up after 4 attempts; the last was TIMEOUT".into(),
                disable_endpoint: false,
            }
        );
        let mut limited = facts(AttemptClass::Http5xxRetryable, 2);
        limited.endpoint_max_attempts = Some(2);
        assert!(matches!(decided(&limited), Next::DeadLetter { .. }));
    }

    #[test]
    fn an_absurd_retry_after_waits_on_the_longest_tier_no_longer() {
        let mut asked = facts(AttemptClass::RateLimited, 1);
        asked.retry_after = Some(Duration::from_secs(31_536_000));
        assert_eq!(
            decided(&asked),
            Next::Retry {
                tier: Tier(Duration::from_secs(30)),
                due_at: NOW + Duration::from_secs(30),
            }
        );
    }

    #[test]
    fn a_410_dead_letters_and_disables_a_400_only_dead_letters() {
        assert_eq!(
            decided(&facts(AttemptClass::Gone, 1)),
            Next::DeadLetter {
                reason: "GONE is not retried".into(),
                disable_endpoint: true,
            }
        );
        assert_eq!(
            decided(&facts(AttemptClass::Http4xxPermanent, 1)),
            Next::DeadLetter {
                reason: "HTTP_4XX_PERMANENT is not retried".into(),
                disable_endpoint: false,
            }
        );
    }

    #[test]
    fn dns_errors_are_permanent_only_when_the_operator_says_so() {
        let dns = facts(AttemptClass::DnsError, 1);
        assert!(matches!(decided(&dns), Next::Retry { .. }));
        let strict = FailurePolicy {
            dns_errors_permanent: true,
            ..FailurePolicy::default()
        };
        assert!(matches!(
            decide(&dns, strict, &policy()),
            Next::DeadLetter { .. }
        ));
    }
}
