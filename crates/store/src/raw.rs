//! Rows as every backend reads them (text, integers, milliseconds), turned into domain values in
//! one place, so stored data is checked the same way whichever store holds it.

use time::OffsetDateTime;

use hookstream_model::delivery::{Attempt, AttemptClass, Delivery, DeliveryStatus};
use hookstream_model::destination::EndpointUrl;
use hookstream_model::endpoint::{CircuitState, CircuitView, Endpoint, Subscription};
use hookstream_model::event::Event;
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::{EventType, IdempotencyKey, Tenant};
use hookstream_signing::SigningSecret;

use crate::StoreError;

pub(crate) fn millis(at: OffsetDateTime) -> i64 {
    // i64 milliseconds cover ±292 million years; saturate rather than wrap beyond.
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(crate) fn from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::corrupt("timestamp", e))
}

pub(crate) struct RawEndpoint {
    pub id: String,
    pub tenant: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub secret: String,
    pub disabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub max_attempts: Option<u32>,
    pub paused: bool,
    pub circuit_state: String,
    pub circuit_open_until: Option<i64>,
}

impl RawEndpoint {
    pub(crate) fn decode(self) -> Result<Endpoint, StoreError> {
        Ok(Endpoint {
            id: EndpointId::parse(&self.id, "id")
                .map_err(|e| StoreError::corrupt("endpoint id", e))?,
            tenant: Tenant::parse(&self.tenant, "tenant")
                .map_err(|e| StoreError::corrupt("endpoint tenant", e))?,
            url: EndpointUrl::parse(&self.url, "url")
                .map_err(|e| StoreError::corrupt("endpoint url", e))?,
            subscription: Subscription::parse(&self.event_types, "event_types")
                .map_err(|e| StoreError::corrupt("endpoint event_types", e))?,
            secret: SigningSecret::parse(&self.secret)
                .map_err(|e| StoreError::corrupt("endpoint secret", e))?,
            disabled: self.disabled,
            max_attempts: self.max_attempts,
            paused: self.paused,
            circuit: CircuitView {
                state: CircuitState::parse(&self.circuit_state).ok_or_else(|| {
                    StoreError::corrupt("endpoint circuit_state", &self.circuit_state)
                })?,
                open_until: self.circuit_open_until.map(from_millis).transpose()?,
            },
            created_at: from_millis(self.created_at)?,
            updated_at: from_millis(self.updated_at)?,
        })
    }
}

pub(crate) struct RawEvent {
    pub id: String,
    pub tenant: String,
    pub event_type: String,
    pub payload: String,
    pub idempotency_key: Option<String>,
    pub created_at: i64,
}

impl RawEvent {
    pub(crate) fn decode(self) -> Result<Event, StoreError> {
        Ok(Event {
            id: EventId::parse(&self.id, "id").map_err(|e| StoreError::corrupt("event id", e))?,
            tenant: Tenant::parse(&self.tenant, "tenant")
                .map_err(|e| StoreError::corrupt("event tenant", e))?,
            event_type: EventType::parse(&self.event_type, "type")
                .map_err(|e| StoreError::corrupt("event type", e))?,
            payload: serde_json::from_str(&self.payload)
                .map_err(|e| StoreError::corrupt("event payload", e))?,
            idempotency_key: self
                .idempotency_key
                .map(|k| IdempotencyKey::parse(&k, "idempotency_key"))
                .transpose()
                .map_err(|e| StoreError::corrupt("event idempotency key", e))?,
            created_at: from_millis(self.created_at)?,
        })
    }
}

pub(crate) struct RawDelivery {
    pub id: String,
    pub event_id: String,
    pub endpoint_id: String,
    pub tenant: String,
    pub event_type: String,
    pub status: String,
    pub attempts: u32,
    pub created_at: i64,
    pub updated_at: i64,
    pub next_attempt_at: Option<i64>,
    pub next_tier: Option<String>,
}

impl RawDelivery {
    pub(crate) fn decode(self) -> Result<Delivery, StoreError> {
        Ok(Delivery {
            id: DeliveryId::parse(&self.id, "id")
                .map_err(|e| StoreError::corrupt("delivery id", e))?,
            event_id: EventId::parse(&self.event_id, "event_id")
                .map_err(|e| StoreError::corrupt("delivery event_id", e))?,
            endpoint_id: EndpointId::parse(&self.endpoint_id, "endpoint_id")
                .map_err(|e| StoreError::corrupt("delivery endpoint_id", e))?,
            tenant: Tenant::parse(&self.tenant, "tenant")
                .map_err(|e| StoreError::corrupt("delivery tenant", e))?,
            event_type: EventType::parse(&self.event_type, "event_type")
                .map_err(|e| StoreError::corrupt("delivery event_type", e))?,
            status: DeliveryStatus::parse(&self.status)
                .ok_or_else(|| StoreError::corrupt("delivery status", &self.status))?,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at.map(from_millis).transpose()?,
            next_tier: self.next_tier,
            created_at: from_millis(self.created_at)?,
            updated_at: from_millis(self.updated_at)?,
        })
    }
}

pub(crate) struct RawAttempt {
    pub delivery_id: String,
    pub number: u32,
    pub started_at: i64,
    pub latency_ms: i64,
    pub status_code: Option<u16>,
    pub class: String,
    pub response_snippet: String,
    pub error: Option<String>,
    pub next_attempt_at: Option<i64>,
    pub tier: Option<String>,
}

impl RawAttempt {
    pub(crate) fn decode(self) -> Result<Attempt, StoreError> {
        Ok(Attempt {
            delivery_id: DeliveryId::parse(&self.delivery_id, "delivery_id")
                .map_err(|e| StoreError::corrupt("attempt delivery_id", e))?,
            number: self.number,
            started_at: from_millis(self.started_at)?,
            latency_ms: u64::try_from(self.latency_ms).unwrap_or(0),
            status_code: self.status_code,
            class: AttemptClass::parse(&self.class)
                .ok_or_else(|| StoreError::corrupt("attempt class", &self.class))?,
            response_snippet: self.response_snippet,
            error: self.error,
            next_attempt_at: self.next_attempt_at.map(from_millis).transpose()?,
            tier: self.tier,
        })
    }
}
