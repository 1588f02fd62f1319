//! Running queries and cutting their rows into pages.

use rusqlite::{Connection, OptionalExtension};

use crate::{Page, PageRequest, StoreError};

use super::rows::RowResult;

/// Runs a query and reads every row with `read`.
pub(super) fn query_all<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: impl Fn(&rusqlite::Row<'_>) -> RowResult<T>,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |row| read(row))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row??);
    }
    Ok(out)
}

pub(super) fn query_one<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    read: impl Fn(&rusqlite::Row<'_>) -> RowResult<T>,
) -> Result<Option<T>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    stmt.query_row(params, |row| read(row))
        .optional()?
        .transpose()
}

/// Cuts a list fetched with `limit + 1` rows into a page and the next cursor.
pub(super) fn into_page<T>(
    mut items: Vec<T>,
    limit: u32,
    cursor_of: impl Fn(&T) -> String,
) -> Page<T> {
    let limit = limit as usize;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(cursor_of)
    } else {
        None
    };
    Page { items, next }
}

pub(super) fn clamp_limit(page: &PageRequest) -> u32 {
    page.limit.clamp(1, PageRequest::MAX_LIMIT)
}
