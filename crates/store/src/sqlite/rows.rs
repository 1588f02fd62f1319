//! Reading SQLite rows into the shared raw rows of [`crate::raw`].

use rusqlite::Row;

use hookstream_model::delivery::{Attempt, Delivery};
use hookstream_model::endpoint::{Endpoint, Subscription};
use hookstream_model::event::Event;
use hookstream_model::ids::EndpointId;

use crate::claim::StoredClaim;
use crate::raw::{RawAttempt, RawDelivery, RawEndpoint, RawEvent};
pub(super) use crate::raw::{from_millis, millis};
use crate::{SecretSealer, StoreError};

/// Reads a row's columns into a value, keeping SQLite errors and corrupt data apart.
pub(super) type RowResult<T> = Result<Result<T, StoreError>, rusqlite::Error>;

pub(super) const ENDPOINT_COLUMNS: &str = "id, tenant, url, event_types, secret, disabled, created_at, updated_at, max_attempts, paused, \
     circuit_state, circuit_open_until, previous_secret, previous_secret_expires_at, shaping";

/// An endpoint's id and subscription, from `id, event_types`: all that fan-out needs.
pub(super) fn subscriber(row: &Row<'_>) -> RowResult<(EndpointId, Subscription)> {
    let id: String = row.get(0)?;
    let event_types: String = row.get(1)?;
    Ok((|| {
        let id = EndpointId::parse(&id, "id").map_err(|e| StoreError::corrupt("endpoint id", e))?;
        let types: Vec<String> = serde_json::from_str(&event_types)
            .map_err(|e| StoreError::corrupt("endpoint event_types", e))?;
        let subscription = Subscription::parse(&types, "event_types")
            .map_err(|e| StoreError::corrupt("endpoint event_types", e))?;
        Ok((id, subscription))
    })())
}

pub(super) fn endpoint(row: &Row<'_>, sealer: &SecretSealer) -> RowResult<Endpoint> {
    let event_types: String = row.get(3)?;
    let event_types: Vec<String> = match serde_json::from_str(&event_types) {
        Ok(types) => types,
        Err(e) => return Ok(Err(StoreError::corrupt("endpoint event_types", e))),
    };
    Ok(RawEndpoint {
        id: row.get(0)?,
        tenant: row.get(1)?,
        url: row.get(2)?,
        event_types,
        secret: row.get(4)?,
        disabled: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
        max_attempts: row.get(8)?,
        paused: row.get(9)?,
        circuit_state: row.get(10)?,
        circuit_open_until: row.get(11)?,
        previous_secret: row.get(12)?,
        previous_secret_expires_at: row.get(13)?,
        shaping: row.get(14)?,
    }
    .decode(sealer))
}

pub(super) const EVENT_COLUMNS: &str =
    "id, tenant, event_type, payload, idempotency_key, created_at, publish_state";

pub(super) fn event(row: &Row<'_>) -> RowResult<(Event, String)> {
    let raw = RawEvent {
        id: row.get(0)?,
        tenant: row.get(1)?,
        event_type: row.get(2)?,
        payload: row.get(3)?,
        idempotency_key: row.get(4)?,
        created_at: row.get(5)?,
    };
    let state: String = row.get(6)?;
    Ok(raw.decode().map(|event| (event, state)))
}

pub(super) const DELIVERY_COLUMNS: &str = "id, event_id, endpoint_id, tenant, event_type, status, \
     attempts, created_at, updated_at, next_attempt_at, next_tier";

pub(super) fn delivery(row: &Row<'_>) -> RowResult<Delivery> {
    Ok(RawDelivery {
        id: row.get(0)?,
        event_id: row.get(1)?,
        endpoint_id: row.get(2)?,
        tenant: row.get(3)?,
        event_type: row.get(4)?,
        status: row.get(5)?,
        attempts: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        next_attempt_at: row.get(9)?,
        next_tier: row.get(10)?,
    }
    .decode())
}

/// A delivery with its claim columns, read after [`DELIVERY_COLUMNS`].
pub(super) fn delivery_with_claim(row: &Row<'_>) -> RowResult<(Delivery, StoredClaim)> {
    let token: Option<String> = row.get(11)?;
    let until: Option<i64> = row.get(12)?;
    let claim = until
        .map(from_millis)
        .transpose()
        .map(|until| StoredClaim { token, until });
    Ok(delivery(row)?.and_then(|d| claim.map(|c| (d, c))))
}

pub(super) const ATTEMPT_COLUMNS: &str = "delivery_id, number, started_at, latency_ms, \
     status_code, class, response_snippet, error, next_attempt_at, tier";

pub(super) fn attempt(row: &Row<'_>) -> RowResult<Attempt> {
    Ok(RawAttempt {
        delivery_id: row.get(0)?,
        number: row.get(1)?,
        started_at: row.get(2)?,
        latency_ms: row.get(3)?,
        status_code: row.get(4)?,
        class: row.get(5)?,
        response_snippet: row.get(6)?,
        error: row.get(7)?,
        next_attempt_at: row.get(8)?,
        tier: row.get(9)?,
    }
    .decode())
}
