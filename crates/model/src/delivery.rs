//! Deliveries (one event to one endpoint) and the attempts made to send them.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{DeliveryId, EndpointId, EventId};
use crate::names::{EventType, Tenant};

/// Where a delivery stands: `pending → delivering → delivered`, `delivering → retrying →
/// delivering`, and `→ dead_lettered` when it cannot or may not be tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Created with its event; the task is on (or on its way to) the deliveries topic.
    Pending,
    /// An attempt is under way.
    Delivering,
    /// The endpoint answered 2xx. Final.
    Delivered,
    /// The last attempt failed; the task waits on a retry tier for its next attempt.
    Retrying,
    /// Failed permanently or ran out of attempts; the dead letter is on the DLQ topic. Final.
    DeadLettered,
}

impl DeliveryStatus {
    pub const ALL: [Self; 5] = [
        Self::Pending,
        Self::Delivering,
        Self::Delivered,
        Self::Retrying,
        Self::DeadLettered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivering => "delivering",
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// A final delivery is never sent again, however often its task is consumed.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::DeadLettered)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub event_id: EventId,
    pub endpoint_id: EndpointId,
    pub tenant: Tenant,
    pub event_type: EventType,
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, while `retrying`.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The retry tier the task waits on, while `retrying` (`5s`, `2m`, ...).
    pub next_tier: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl Delivery {
    /// A new delivery of an event to an endpoint, not tried yet.
    pub fn pending(
        id: DeliveryId,
        event_id: EventId,
        endpoint_id: EndpointId,
        tenant: Tenant,
        event_type: EventType,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id,
            event_id,
            endpoint_id,
            tenant,
            event_type,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: None,
            next_tier: None,
            created_at: now,
            updated_at: now,
        }
    }
}

/// What one attempt came to, so that every failure is explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttemptClass {
    #[serde(rename = "HTTP_2XX_DELIVERED")]
    Http2xxDelivered,
    #[serde(rename = "HTTP_5XX_RETRYABLE")]
    Http5xxRetryable,
    #[serde(rename = "HTTP_4XX_PERMANENT")]
    Http4xxPermanent,
    /// 408 Request Timeout and 425 Too Early: a 4xx that asks to be tried again.
    #[serde(rename = "HTTP_4XX_RETRYABLE")]
    Http4xxRetryable,
    RateLimited,
    Gone,
    Redirect,
    Timeout,
    NetworkError,
    TlsError,
    DnsError,
    /// The destination is not allowed by the server's destination policy.
    DestinationBlocked,
    /// The endpoint was deleted or disabled before the attempt; nothing was sent.
    EndpointUnavailable,
}

impl AttemptClass {
    pub const ALL: [Self; 13] = [
        Self::Http2xxDelivered,
        Self::Http5xxRetryable,
        Self::Http4xxPermanent,
        Self::Http4xxRetryable,
        Self::RateLimited,
        Self::Gone,
        Self::Redirect,
        Self::Timeout,
        Self::NetworkError,
        Self::TlsError,
        Self::DnsError,
        Self::DestinationBlocked,
        Self::EndpointUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http2xxDelivered => "HTTP_2XX_DELIVERED",
            Self::Http5xxRetryable => "HTTP_5XX_RETRYABLE",
            Self::Http4xxPermanent => "HTTP_4XX_PERMANENT",
            Self::Http4xxRetryable => "HTTP_4XX_RETRYABLE",
            Self::RateLimited => "RATE_LIMITED",
            Self::Gone => "GONE",
            Self::Redirect => "REDIRECT",
            Self::Timeout => "TIMEOUT",
            Self::NetworkError => "NETWORK_ERROR",
            Self::TlsError => "TLS_ERROR",
            Self::DnsError => "DNS_ERROR",
            Self::DestinationBlocked => "DESTINATION_BLOCKED",
            Self::EndpointUnavailable => "ENDPOINT_UNAVAILABLE",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    pub fn is_success(self) -> bool {
        self == Self::Http2xxDelivered
    }
}

/// One try at sending a delivery, as recorded in the attempt log.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub delivery_id: DeliveryId,
    /// 1 for the first attempt.
    pub number: u32,
    pub started_at: OffsetDateTime,
    pub latency_ms: u64,
    /// The HTTP status, when the endpoint answered at all.
    pub status_code: Option<u16>,
    pub class: AttemptClass,
    /// The start of the response body, or the error, truncated.
    pub response_snippet: String,
    /// What went wrong in words, when something did.
    pub error: Option<String>,
    /// When the next attempt is due, if this one is retried.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// The retry tier chosen for the next attempt, if this one is retried.
    pub tier: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_classes_round_trip_through_their_names() {
        for status in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(status.as_str()), Some(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::Value::String(status.as_str().to_owned())
            );
        }
        for class in AttemptClass::ALL {
            assert_eq!(AttemptClass::parse(class.as_str()), Some(class));
            assert_eq!(
                serde_json::to_value(class).unwrap(),
                serde_json::Value::String(class.as_str().to_owned())
            );
        }
    }

    #[test]
    fn only_delivered_and_dead_lettered_are_final() {
        assert!(DeliveryStatus::Delivered.is_final());
        assert!(DeliveryStatus::DeadLettered.is_final());
        assert!(!DeliveryStatus::Retrying.is_final());
        assert!(!DeliveryStatus::Pending.is_final());
        assert!(!DeliveryStatus::Delivering.is_final());
    }
}
