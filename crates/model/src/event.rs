//! Events, and the idempotency rules that decide whether a request is a new event.

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use crate::ids::EventId;
use crate::names::{EventType, IdempotencyKey, Tenant};

/// One accepted event. Its payload is kept as sent; it becomes the webhook's `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: EventId,
    pub tenant: Tenant,
    pub event_type: EventType,
    pub payload: Value,
    pub idempotency_key: Option<IdempotencyKey>,
    pub created_at: OffsetDateTime,
}

/// Whether an event's delivery tasks are known to be on Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishState {
    /// Stored, tasks not yet acknowledged by Kafka (in flight, or the request failed or crashed).
    Publishing,
    /// Kafka acknowledged every delivery task.
    Published,
    /// Kafka refuses its tasks as they are (too large, not encodable): taken out of the outbox so
    /// the sweep goes on with the others, and counted for an operator to look at.
    SetAside,
}

impl PublishState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Publishing => "publishing",
            Self::Published => "published",
            Self::SetAside => "set_aside",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "publishing" => Some(Self::Publishing),
            "published" => Some(Self::Published),
            "set_aside" => Some(Self::SetAside),
            _ => None,
        }
    }
}

/// How long an idempotency key keeps answering with its original event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencyWindow(pub Duration);

impl Default for IdempotencyWindow {
    /// 72 hours: longer than any client's retry loop, short enough that keys can be reused.
    fn default() -> Self {
        Self(Duration::from_secs(72 * 3600))
    }
}

/// What an earlier request with the same tenant and idempotency key left behind.
#[derive(Debug, Clone)]
pub struct PriorRequest<'a> {
    pub event: &'a Event,
    pub expires_at: OffsetDateTime,
}

/// The verdict on a request that carries an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyVerdict {
    /// No live prior request: create a new event.
    New,
    /// The same request again within the window: answer with the original event, create nothing.
    Repeat(EventId),
    /// The key was used within the window for a different request: refuse rather than guess.
    Conflict(EventId),
}

impl IdempotencyWindow {
    /// Decides what a request means given the prior request under the same key, if any.
    /// A prior request counts while `now` is before its expiry; a repeat must carry the same
    /// type and payload, since answering a different request with the old event would hide a bug.
    pub fn judge(
        &self,
        prior: Option<PriorRequest<'_>>,
        event_type: &EventType,
        payload: &Value,
        now: OffsetDateTime,
    ) -> IdempotencyVerdict {
        match prior {
            Some(prior) if now < prior.expires_at => {
                if prior.event.event_type == *event_type && prior.event.payload == *payload {
                    IdempotencyVerdict::Repeat(prior.event.id)
                } else {
                    IdempotencyVerdict::Conflict(prior.event.id)
                }
            }
            _ => IdempotencyVerdict::New,
        }
    }

    /// When a key first used at `created_at` stops counting.
    pub fn expiry(&self, created_at: OffsetDateTime) -> OffsetDateTime {
        created_at + self.0
    }
}

/// How deeply a payload may nest objects and lists. Deeper payloads are refused at the edge, so
/// nothing later (signing, storing, a receiver's parser) has to cope with them.
pub const MAX_PAYLOAD_DEPTH: usize = 32;

/// Refuses a payload that nests deeper than [`MAX_PAYLOAD_DEPTH`]. Walks without recursion, so
/// the check itself cannot overflow the stack.
pub fn check_payload_depth(payload: &Value, field: &str) -> Result<(), crate::ValidationError> {
    let mut stack = vec![(payload, 0usize)];
    while let Some((value, depth)) = stack.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth + 1 > MAX_PAYLOAD_DEPTH {
            return Err(crate::ValidationError::new(
                field,
                format!("nests deeper than {MAX_PAYLOAD_DEPTH} levels"),
            ));
        }
        stack.extend(children.map(|child| (child, depth + 1)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_nest_at_most_the_allowed_depth() {
        let nested = |depth: usize| -> Value {
            let mut value = serde_json::json!(1);
            for _ in 0..depth {
                value = serde_json::json!({"a": [value]});
            }
            value
        };
        // Each level above is an object and a list: two levels of nesting.
        assert!(check_payload_depth(&nested(MAX_PAYLOAD_DEPTH / 2), "payload").is_ok());
        let err = check_payload_depth(&nested(MAX_PAYLOAD_DEPTH / 2 + 1), "payload").unwrap_err();
        assert_eq!(err.field, "payload");
        assert!(check_payload_depth(&serde_json::json!("flat"), "payload").is_ok());
    }

    fn event(payload: Value) -> Event {
        Event {
            id: EventId::generate(),
            tenant: Tenant::parse("acme", "tenant").unwrap(),
            event_type: EventType::parse("order.created", "type").unwrap(),
            payload,
            idempotency_key: Some(IdempotencyKey::parse("k-1", "k").unwrap()),
            created_at: OffsetDateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn without_a_prior_request_the_event_is_new() {
        let window = IdempotencyWindow::default();
        let verdict = window.judge(
            None,
            &EventType::parse("order.created", "t").unwrap(),
            &json!({}),
            OffsetDateTime::UNIX_EPOCH,
        );
        assert_eq!(verdict, IdempotencyVerdict::New);
    }

    #[test]
    fn the_same_request_within_the_window_repeats_the_original() {
        let window = IdempotencyWindow::default();
        let original = event(json!({"order": 1, "total": 5}));
        let prior = PriorRequest {
            event: &original,
            expires_at: window.expiry(original.created_at),
        };
        let just_before_expiry = original.created_at + window.0 - Duration::from_secs(1);
        // Key order in the payload does not make it a different request.
        let verdict = window.judge(
            Some(prior),
            &original.event_type,
            &json!({"total": 5, "order": 1}),
            just_before_expiry,
        );
        assert_eq!(verdict, IdempotencyVerdict::Repeat(original.id));
    }

    #[test]
    fn after_the_window_the_key_creates_a_new_event() {
        let window = IdempotencyWindow(Duration::from_secs(60));
        let original = event(json!({"order": 1}));
        let prior = PriorRequest {
            event: &original,
            expires_at: window.expiry(original.created_at),
        };
        let at_expiry = original.created_at + Duration::from_secs(60);
        let verdict = window.judge(
            Some(prior),
            &original.event_type,
            &original.payload,
            at_expiry,
        );
        assert_eq!(verdict, IdempotencyVerdict::New);
    }

    #[test]
    fn a_different_request_under_a_live_key_conflicts() {
        let window = IdempotencyWindow::default();
        let original = event(json!({"order": 1}));
        let now = original.created_at;
        let prior = || PriorRequest {
            event: &original,
            expires_at: window.expiry(original.created_at),
        };
        let other_payload = window.judge(
            Some(prior()),
            &original.event_type,
            &json!({"order": 2}),
            now,
        );
        assert_eq!(other_payload, IdempotencyVerdict::Conflict(original.id));
        let other_type = EventType::parse("order.paid", "t").unwrap();
        let verdict = window.judge(Some(prior()), &other_type, &original.payload, now);
        assert_eq!(verdict, IdempotencyVerdict::Conflict(original.id));
    }
}
