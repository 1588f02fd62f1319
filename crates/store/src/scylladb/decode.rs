//! Rows read back: the row types of the statements and their conversion into the model.

use scylla::response::query_result::QueryResult;
use scylla::value::CqlTimestamp;

use hookstream_model::delivery::Delivery;

use super::backend;
use crate::raw::{RawAttempt, RawDelivery, RawEndpoint};
use crate::{Page, StoreError};

pub(super) type EndpointRow = (
    String,
    String,
    String,
    Option<Vec<String>>,
    String,
    bool,
    CqlTimestamp,
    CqlTimestamp,
    Option<i32>,
    Option<bool>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<CqlTimestamp>,
);
/// `event_types, disabled, deleted_at` of an endpoint: what fan-out needs, no secret.
pub(super) type SubscriberRow = (Option<Vec<String>>, Option<bool>, Option<CqlTimestamp>);
pub(super) type EventRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    CqlTimestamp,
    Option<String>,
    Option<String>,
);
pub(super) type DeliveryRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i32,
    CqlTimestamp,
    CqlTimestamp,
    Option<CqlTimestamp>,
    Option<String>,
);
pub(super) type DeliveryWithClaimRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    i32,
    CqlTimestamp,
    CqlTimestamp,
    Option<CqlTimestamp>,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
);
pub(super) type AttemptRow = (
    String,
    i32,
    CqlTimestamp,
    i64,
    Option<i32>,
    String,
    Option<String>,
    Option<String>,
    Option<CqlTimestamp>,
    Option<String>,
);

/// Every row of a result, typed.
pub(super) fn rows<R>(result: QueryResult) -> Result<Vec<R>, StoreError>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    let rows = result.into_rows_result().map_err(ctx!("reading rows"))?;
    rows.rows::<R>()
        .map_err(ctx!("reading rows"))?
        // A row that does not read (a null where a value must be: cells expired one by one)
        // will not read next time either: corrupt, not an outage to wait out.
        .map(|row| row.map_err(|e| StoreError::corrupt("a row", e.to_string())))
        .collect()
}

pub(super) fn first_row<R>(result: QueryResult) -> Result<Option<R>, StoreError>
where
    R: for<'f, 'm> scylla::deserialize::row::DeserializeRow<'f, 'm>,
{
    Ok(rows::<R>(result)?.into_iter().next())
}

/// Whether a lightweight transaction applied: its `[applied]` column, found by name. ScyllaDB
/// always returns the row as it stands beside it; Cassandra returns only `[applied]` when the
/// write applied and the row only when it did not, so neither the column count nor the
/// position is relied on.
pub(super) fn applied(result: QueryResult) -> Result<bool, StoreError> {
    let rows = result
        .into_rows_result()
        .map_err(ctx!("reading a conditional answer"))?;
    let column = rows
        .column_specs()
        .iter()
        .position(|spec| spec.name() == "[applied]")
        .ok_or_else(|| {
            StoreError::Backend("scylla: no [applied] in a conditional answer".into())
        })?;
    // The other columns vary with the outcome and the server: read them untyped.
    rows.rows::<scylla::value::Row>()
        .map_err(ctx!("reading a conditional answer"))?
        .next()
        .transpose()
        .map_err(|e| backend("reading a conditional answer")(&e))?
        .and_then(|row| row.columns.into_iter().nth(column).flatten())
        .and_then(|value| value.as_boolean())
        .ok_or_else(|| StoreError::Backend("scylla: [applied] is not a boolean".into()))
}

pub(super) fn raw_endpoint(row: EndpointRow) -> Option<RawEndpoint> {
    let (
        id,
        tenant,
        url,
        event_types,
        secret,
        disabled,
        created_at,
        updated_at,
        max_attempts,
        paused,
        circuit_state,
        circuit_open_until,
        shaping,
        previous_secret,
        previous_secret_expires_at,
        deleted_at,
    ) = row;
    deleted_at.is_none().then(|| RawEndpoint {
        id,
        tenant,
        url,
        event_types: event_types.unwrap_or_default(),
        secret,
        disabled,
        created_at: created_at.0,
        updated_at: updated_at.0,
        max_attempts: max_attempts.and_then(|n| u32::try_from(n).ok()),
        paused: paused.unwrap_or(false),
        circuit_state: circuit_state.unwrap_or_else(|| "closed".into()),
        circuit_open_until: circuit_open_until.map(|t| t.0),
        previous_secret,
        previous_secret_expires_at: previous_secret_expires_at.map(|t| t.0),
        shaping,
    })
}

pub(super) fn raw_delivery(row: DeliveryRow) -> RawDelivery {
    let (
        id,
        event_id,
        endpoint_id,
        tenant,
        event_type,
        status,
        attempts,
        created_at,
        updated_at,
        next_attempt_at,
        next_tier,
    ) = row;
    RawDelivery {
        id,
        event_id,
        endpoint_id,
        tenant,
        event_type,
        status,
        attempts: u32::try_from(attempts).unwrap_or(0),
        created_at: created_at.0,
        updated_at: updated_at.0,
        next_attempt_at: next_attempt_at.map(|t| t.0),
        next_tier,
    }
}

pub(super) fn raw_attempt(row: AttemptRow) -> RawAttempt {
    let (
        delivery_id,
        number,
        started_at,
        latency_ms,
        status_code,
        class,
        response_snippet,
        error,
        next_attempt_at,
        tier,
    ) = row;
    RawAttempt {
        delivery_id,
        number: u32::try_from(number).unwrap_or(0),
        started_at: started_at.0,
        latency_ms,
        status_code: status_code.and_then(|c| u16::try_from(c).ok()),
        class,
        response_snippet: response_snippet.unwrap_or_default(),
        error,
        next_attempt_at: next_attempt_at.map(|t| t.0),
        tier,
    }
}

pub(super) fn into_page(mut items: Vec<Delivery>, limit: u32) -> Page<Delivery> {
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|d| d.id.to_string())
    } else {
        None
    };
    Page { items, next }
}
