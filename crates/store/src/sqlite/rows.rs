//! Converting between rows and domain values.

use rusqlite::Row;
use time::OffsetDateTime;

use hookstream_model::delivery::{Attempt, AttemptClass, Delivery, DeliveryStatus};
use hookstream_model::destination::EndpointUrl;
use hookstream_model::endpoint::{CircuitState, CircuitView, Endpoint, Subscription};
use hookstream_model::event::Event;
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::{EventType, IdempotencyKey, Tenant};
use hookstream_signing::SigningSecret;

use crate::StoreError;

pub(super) fn millis(at: OffsetDateTime) -> i64 {
    // i64 milliseconds cover ±292 million years; saturate rather than wrap beyond.
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

pub(super) fn from_millis(ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map_err(|e| StoreError::corrupt("timestamp", e))
}

/// Reads a row's columns into a value, keeping SQLite errors and corrupt data apart.
pub(super) type RowResult<T> = Result<Result<T, StoreError>, rusqlite::Error>;

pub(super) const ENDPOINT_COLUMNS: &str = "id, tenant, url, event_types, secret, disabled, created_at, updated_at, max_attempts, paused, \
     circuit_state, circuit_open_until";

pub(super) fn endpoint(row: &Row<'_>) -> RowResult<Endpoint> {
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let url: String = row.get(2)?;
    let event_types: String = row.get(3)?;
    let secret: String = row.get(4)?;
    let disabled: bool = row.get(5)?;
    let created_at: i64 = row.get(6)?;
    let updated_at: i64 = row.get(7)?;
    let max_attempts: Option<u32> = row.get(8)?;
    let paused: bool = row.get(9)?;
    let circuit_state: String = row.get(10)?;
    let circuit_open_until: Option<i64> = row.get(11)?;
    Ok((|| {
        let types: Vec<String> = serde_json::from_str(&event_types)
            .map_err(|e| StoreError::corrupt("endpoint event_types", e))?;
        Ok(Endpoint {
            id: EndpointId::parse(&id, "id").map_err(|e| StoreError::corrupt("endpoint id", e))?,
            tenant: Tenant::parse(&tenant, "tenant")
                .map_err(|e| StoreError::corrupt("endpoint tenant", e))?,
            url: EndpointUrl::parse(&url, "url")
                .map_err(|e| StoreError::corrupt("endpoint url", e))?,
            subscription: Subscription::parse(&types, "event_types")
                .map_err(|e| StoreError::corrupt("endpoint event_types", e))?,
            secret: SigningSecret::parse(&secret)
                .map_err(|e| StoreError::corrupt("endpoint secret", e))?,
            disabled,
            max_attempts,
            paused,
            circuit: CircuitView {
                state: CircuitState::parse(&circuit_state)
                    .ok_or_else(|| StoreError::corrupt("endpoint circuit_state", &circuit_state))?,
                open_until: circuit_open_until.map(from_millis).transpose()?,
            },
            created_at: from_millis(created_at)?,
            updated_at: from_millis(updated_at)?,
        })
    })())
}

pub(super) const EVENT_COLUMNS: &str =
    "id, tenant, event_type, payload, idempotency_key, created_at, publish_state";

pub(super) fn event(row: &Row<'_>) -> RowResult<(Event, String)> {
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let event_type: String = row.get(2)?;
    let payload: String = row.get(3)?;
    let key: Option<String> = row.get(4)?;
    let created_at: i64 = row.get(5)?;
    let state: String = row.get(6)?;
    Ok((|| {
        let event = Event {
            id: EventId::parse(&id, "id").map_err(|e| StoreError::corrupt("event id", e))?,
            tenant: Tenant::parse(&tenant, "tenant")
                .map_err(|e| StoreError::corrupt("event tenant", e))?,
            event_type: EventType::parse(&event_type, "type")
                .map_err(|e| StoreError::corrupt("event type", e))?,
            payload: serde_json::from_str(&payload)
                .map_err(|e| StoreError::corrupt("event payload", e))?,
            idempotency_key: key
                .map(|k| IdempotencyKey::parse(&k, "idempotency_key"))
                .transpose()
                .map_err(|e| StoreError::corrupt("event idempotency key", e))?,
            created_at: from_millis(created_at)?,
        };
        Ok((event, state))
    })())
}

pub(super) const DELIVERY_COLUMNS: &str = "id, event_id, endpoint_id, tenant, event_type, status, \
     attempts, created_at, updated_at, next_attempt_at, next_tier";

pub(super) fn delivery(row: &Row<'_>) -> RowResult<Delivery> {
    let id: String = row.get(0)?;
    let event_id: String = row.get(1)?;
    let endpoint_id: String = row.get(2)?;
    let tenant: String = row.get(3)?;
    let event_type: String = row.get(4)?;
    let status: String = row.get(5)?;
    let attempts: u32 = row.get(6)?;
    let created_at: i64 = row.get(7)?;
    let updated_at: i64 = row.get(8)?;
    let next_attempt_at: Option<i64> = row.get(9)?;
    let next_tier: Option<String> = row.get(10)?;
    Ok((|| {
        Ok(Delivery {
            id: DeliveryId::parse(&id, "id").map_err(|e| StoreError::corrupt("delivery id", e))?,
            event_id: EventId::parse(&event_id, "event_id")
                .map_err(|e| StoreError::corrupt("delivery event_id", e))?,
            endpoint_id: EndpointId::parse(&endpoint_id, "endpoint_id")
                .map_err(|e| StoreError::corrupt("delivery endpoint_id", e))?,
            tenant: Tenant::parse(&tenant, "tenant")
                .map_err(|e| StoreError::corrupt("delivery tenant", e))?,
            event_type: EventType::parse(&event_type, "event_type")
                .map_err(|e| StoreError::corrupt("delivery event_type", e))?,
            status: DeliveryStatus::parse(&status)
                .ok_or_else(|| StoreError::corrupt("delivery status", &status))?,
            attempts,
            next_attempt_at: next_attempt_at.map(from_millis).transpose()?,
            next_tier,
            created_at: from_millis(created_at)?,
            updated_at: from_millis(updated_at)?,
        })
    })())
}

pub(super) const ATTEMPT_COLUMNS: &str = "delivery_id, number, started_at, latency_ms, \
     status_code, class, response_snippet, error, next_attempt_at, tier";

pub(super) fn attempt(row: &Row<'_>) -> RowResult<Attempt> {
    let delivery_id: String = row.get(0)?;
    let number: u32 = row.get(1)?;
    let started_at: i64 = row.get(2)?;
    let latency_ms: i64 = row.get(3)?;
    let status_code: Option<u16> = row.get(4)?;
    let class: String = row.get(5)?;
    let response_snippet: String = row.get(6)?;
    let error: Option<String> = row.get(7)?;
    let next_attempt_at: Option<i64> = row.get(8)?;
    let tier: Option<String> = row.get(9)?;
    Ok((|| {
        Ok(Attempt {
            delivery_id: DeliveryId::parse(&delivery_id, "delivery_id")
                .map_err(|e| StoreError::corrupt("attempt delivery_id", e))?,
            number,
            started_at: from_millis(started_at)?,
            latency_ms: u64::try_from(latency_ms).unwrap_or(0),
            status_code,
            class: AttemptClass::parse(&class)
                .ok_or_else(|| StoreError::corrupt("attempt class", &class))?,
            response_snippet,
            error,
            next_attempt_at: next_attempt_at.map(from_millis).transpose()?,
            tier,
        })
    })())
}
