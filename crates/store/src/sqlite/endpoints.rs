//! Endpoints as stored: their settings, secrets (sealed) and pages of them.

use rusqlite::{Connection, OptionalExtension, params};

use hookstream_model::endpoint::Endpoint;
use hookstream_model::ids::EndpointId;

use crate::{Page, SecretSealer, StoreError};

use super::queries::{into_page, query_all, query_one};
use super::rows::{self, millis};

/// Writes what an endpoint's owner can change (and its pause); false if it is not live.
pub(super) fn write_endpoint_settings(conn: &Connection, e: &Endpoint) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE endpoints SET url = ?2, event_types = ?3, disabled = ?4, updated_at = ?5,
                    max_attempts = ?6, paused = ?7, shaping = ?8
             WHERE id = ?1 AND deleted_at IS NULL",
        )?
        .execute(params![
            e.id.to_string(),
            e.url.as_str(),
            serde_json::to_string(&e.subscription.to_list())
                .map_err(|err| StoreError::corrupt("endpoint event_types", err))?,
            e.disabled,
            millis(e.updated_at),
            e.max_attempts,
            e.paused,
            e.shaping.to_json(),
        ])?;
    Ok(changed == 1)
}

/// A live (not deleted) endpoint, its secrets opened.
pub(super) fn live_endpoint(
    conn: &Connection,
    id: EndpointId,
    sealer: &SecretSealer,
) -> Result<Option<Endpoint>, StoreError> {
    query_one(
        conn,
        &format!(
            "SELECT {} FROM endpoints WHERE id = ?1 AND deleted_at IS NULL",
            rows::ENDPOINT_COLUMNS
        ),
        [id.to_string()],
        |row| rows::endpoint(row, sealer),
    )
}

/// Inserts a new endpoint, its secret `sealed`.
pub(super) fn insert(conn: &Connection, e: &Endpoint, sealed: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
                "INSERT INTO endpoints (id, tenant, url, event_types, secret, disabled, created_at, updated_at, max_attempts, shaping)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                e.id.to_string(),
                e.tenant.as_str(),
                e.url.as_str(),
                serde_json::to_string(&e.subscription.to_list())
                    .map_err(|err| StoreError::corrupt("endpoint event_types", err))?,
                sealed,
                e.disabled,
                millis(e.created_at),
                millis(e.updated_at),
                e.max_attempts,
                e.shaping.to_json(),
            ])?;
    Ok(())
}

/// A page of a tenant's live endpoints after `after`.
pub(super) fn page_of(
    conn: &Connection,
    tenant: &str,
    after: &str,
    limit: u32,
    sealer: &SecretSealer,
) -> Result<Page<Endpoint>, StoreError> {
    let items = query_all(
        conn,
        &format!(
            "SELECT {} FROM endpoints
                     WHERE tenant = ?1 AND deleted_at IS NULL AND id > ?2
                     ORDER BY id LIMIT ?3",
            rows::ENDPOINT_COLUMNS
        ),
        params![tenant, after, limit + 1],
        |row| rows::endpoint(row, sealer),
    )?;
    Ok(into_page(items, limit, |e| e.id.to_string()))
}

/// Puts `new` (sealed) in place of an endpoint's secret, keeping the current one, if it opens,
/// as the previous secret until `expires`.
pub(super) fn rotate(
    conn: &Connection,
    id: EndpointId,
    new: &str,
    expires: i64,
    now: i64,
    sealer: &SecretSealer,
) -> Result<Option<Endpoint>, StoreError> {
    let current: Option<String> = conn
        .prepare_cached("SELECT secret FROM endpoints WHERE id = ?1 AND deleted_at IS NULL")?
        .query_row([id.to_string()], |row| row.get(0))
        .optional()?;
    let Some(current) = current else {
        return Ok(None);
    };
    // A secret that does not open (planted in plain text, sealed under another key)
    // does not keep signing: rotating is how an operator gets rid of it.
    let retiring = sealer
        .open(&id.to_string(), &current)
        .is_ok()
        .then_some(current);
    conn.prepare_cached(
        "UPDATE endpoints SET previous_secret = ?5, previous_secret_expires_at = ?3,
                        secret = ?2, updated_at = ?4
                 WHERE id = ?1 AND deleted_at IS NULL",
    )?
    .execute(params![id.to_string(), new, expires, now, retiring])?;
    live_endpoint(conn, id, sealer)
}
