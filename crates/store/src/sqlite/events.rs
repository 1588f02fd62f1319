//! Events and the deliveries they fan out to: stored under the idempotency window, marked
//! published once Kafka has their tasks, and found again by the outbox sweep when not.

use rusqlite::{Connection, OptionalExtension, params};
use time::OffsetDateTime;

use hookstream_model::delivery::Delivery;
use hookstream_model::event::{
    Event, IdempotencyVerdict, IdempotencyWindow, PriorRequest, PublishState,
};
use hookstream_model::ids::EventId;
use hookstream_model::names::Tenant;

use crate::{CreateEventOutcome, NewEvent, StoreError};

use super::queries::{query_all, query_one};
use super::rows::{self, millis};

/// The event an idempotency key points at, with its publish state and the key's expiry.
fn load_prior_request(
    conn: &Connection,
    tenant: &Tenant,
    key: &str,
) -> Result<Option<(Event, String, OffsetDateTime)>, StoreError> {
    let Some((event_id, expires_at)) = conn
        .prepare_cached(
            "SELECT event_id, expires_at FROM idempotency_keys WHERE tenant = ?1 AND key = ?2",
        )?
        .query_row(params![tenant.as_str(), key], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
        })
        .optional()?
    else {
        return Ok(None);
    };
    let event = query_one(
        conn,
        &format!("SELECT {} FROM events WHERE id = ?1", rows::EVENT_COLUMNS),
        [&event_id],
        rows::event,
    )?
    .ok_or_else(|| {
        StoreError::corrupt("idempotency key", format!("event {event_id} is missing"))
    })?;
    Ok(Some((event.0, event.1, rows::from_millis(expires_at)?)))
}

pub(super) fn deliveries_of_event(
    conn: &Connection,
    id: EventId,
) -> Result<Vec<Delivery>, StoreError> {
    query_all(
        conn,
        &format!(
            "SELECT {} FROM deliveries WHERE event_id = ?1 ORDER BY id",
            rows::DELIVERY_COLUMNS
        ),
        [id.to_string()],
        rows::delivery,
    )
}

/// Inserts one delivery in the open transaction.
pub(super) fn insert_delivery(conn: &Connection, d: &Delivery) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO deliveries ({}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        rows::DELIVERY_COLUMNS
    ))?
    .execute(params![
        d.id.to_string(),
        d.event_id.to_string(),
        d.endpoint_id.to_string(),
        d.tenant.as_str(),
        d.event_type.as_str(),
        d.status.as_str(),
        d.attempts,
        millis(d.created_at),
        millis(d.updated_at),
        d.next_attempt_at.map(millis),
        d.next_tier,
    ])?;
    Ok(())
}

/// Stores one event and its deliveries in the open transaction, applying the idempotency window
/// to its key.
pub(super) fn create_event_in(
    conn: &Connection,
    new: &NewEvent,
    window: IdempotencyWindow,
) -> Result<CreateEventOutcome, StoreError> {
    let event = &new.event;
    if let Some(key) = &event.idempotency_key {
        let prior = load_prior_request(conn, &event.tenant, key.as_str())?;
        let verdict = window.judge(
            prior.as_ref().map(|(prior, _, expires_at)| PriorRequest {
                event: prior,
                expires_at: *expires_at,
            }),
            &event.event_type,
            &event.payload,
            event.created_at,
        );
        match (verdict, prior) {
            (IdempotencyVerdict::Repeat(_), Some((prior, state, _))) => {
                let deliveries = deliveries_of_event(conn, prior.id)?;
                let state = PublishState::parse(&state)
                    .ok_or_else(|| StoreError::corrupt("event publish_state", &state))?;
                return Ok(CreateEventOutcome::Repeat {
                    event: prior,
                    state,
                    deliveries,
                });
            }
            (IdempotencyVerdict::Conflict(original), _) => {
                return Ok(CreateEventOutcome::Conflict { original });
            }
            _ => {}
        }
        conn.prepare_cached(
            "INSERT OR REPLACE INTO idempotency_keys (tenant, key, event_id, expires_at)
                 VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            event.tenant.as_str(),
            key.as_str(),
            event.id.to_string(),
            millis(window.expiry(event.created_at)),
        ])?;
    }
    conn.prepare_cached(
            "INSERT INTO events (id, tenant, event_type, payload, idempotency_key, created_at, publish_state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            event.id.to_string(),
            event.tenant.as_str(),
            event.event_type.as_str(),
            event.payload.to_string(),
            event.idempotency_key.as_ref().map(|k| k.as_str()),
            millis(event.created_at),
            PublishState::Publishing.as_str(),
        ])?;
    {
        for d in &new.deliveries {
            insert_delivery(conn, d)?;
        }
    }
    Ok(CreateEventOutcome::Created)
}

/// Marks events whose tasks Kafka has as published.
pub(super) fn mark_published(conn: &Connection, ids: &[EventId]) -> Result<(), StoreError> {
    for id in ids {
        let changed = conn
            .prepare_cached("UPDATE events SET publish_state = ?2 WHERE id = ?1")?
            .execute(params![id.to_string(), PublishState::Published.as_str()])?;
        if changed == 0 {
            return Err(StoreError::NotFound(id.to_string()));
        }
    }
    Ok(())
}

/// What the outbox sweep finds: events to publish again with their deliveries, and the ids of
/// those that do not decode with the reason.
pub(super) type Outbox = (Vec<(Event, Vec<Delivery>)>, Vec<(String, String)>);

/// Events still publishing that were created before `before` (oldest first, at most
/// `limit`), with their deliveries; and, apart, the ids of those that do not decode, and why.
pub(super) fn unpublished(
    conn: &Connection,
    before: i64,
    limit: u32,
) -> Result<Outbox, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM events
                     WHERE publish_state = 'publishing' AND created_at < ?1
                     ORDER BY created_at LIMIT ?2",
        rows::EVENT_COLUMNS
    ))?;
    let mut waiting = Vec::new();
    let mut undecodable = Vec::new();
    let mut found = stmt.query(params![before, limit])?;
    while let Some(row) = found.next()? {
        let decoded = rows::event(row)?.and_then(|(event, _)| {
            let deliveries = deliveries_of_event(conn, event.id)?;
            Ok((event, deliveries))
        });
        match decoded {
            Ok(entry) => waiting.push(entry),
            Err(err @ StoreError::Corrupt { .. }) => {
                undecodable.push((row.get::<_, String>(0)?, err.to_string()))
            }
            Err(err) => return Err(err),
        }
    }
    Ok((waiting, undecodable))
}
