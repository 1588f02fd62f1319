//! The dead-letter index and replay batches in the embedded store.

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use time::OffsetDateTime;

use hookstream_model::dead_letter::DeadLetter;
use hookstream_model::ids::{BatchId, DeliveryId};
use hookstream_model::names::Tenant;
use hookstream_model::replay::{
    Batch, BatchCounts, BatchItem, BatchStatus, DeadLetterFilter, EndpointState, IndexedDeadLetter,
    ItemOutcome, SkipReason, skip_reason,
};

use super::rows::{RowResult, millis};
use super::{SqliteStore, clamp_limit, into_page, query_all, query_one};
use crate::raw::{self, RawBatch, RawBatchItem};
use crate::{NewBatchItem, Page, PageRequest, ReplayStep, ReplayStore, StoreError};

const BATCH_COLUMNS: &str = "id, created_by, selection, dry_run, allow_repeat, status, error, \
     created_at, updated_at, finished_at, tenant";
/// Rows read at a time while a dead-letter list matches reasons on the rows themselves.
const REASON_SCAN_CHUNK: usize = 100;
/// Most rows one list reads to match reasons: past it, the page ends early (maybe empty) with
/// its `next` after the last row read, so one request never walks the whole table in one read.
const REASON_SCAN_BUDGET: usize = 2_000;

const ITEM_COLUMNS: &str = "batch_id, position, dead_delivery_id, endpoint_id, outcome, skip_reason, delivery_id, published";

fn dead_letter(row: &rusqlite::Row<'_>) -> RowResult<IndexedDeadLetter> {
    let letter: Vec<u8> = row.get(0)?;
    let replays: u32 = row.get(1)?;
    Ok(raw::decode_dead_letter(&letter, replays))
}

fn raw_batch(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawBatch> {
    Ok(RawBatch {
        id: row.get(0)?,
        created_by: row.get(1)?,
        selection: row.get(2)?,
        dry_run: row.get(3)?,
        allow_repeat: row.get(4)?,
        status: row.get(5)?,
        error: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        finished_at: row.get(9)?,
        tenant: row.get(10)?,
    })
}

fn item(row: &rusqlite::Row<'_>) -> RowResult<BatchItem> {
    Ok(RawBatchItem {
        batch_id: row.get(0)?,
        position: row.get(1)?,
        dead_delivery_id: row.get(2)?,
        endpoint_id: row.get(3)?,
        outcome: row.get(4)?,
        skip_reason: row.get(5)?,
        delivery_id: row.get(6)?,
        published: row.get(7)?,
    }
    .decode())
}

/// Counts a batch's items by outcome.
fn counts(conn: &Connection, id: &str) -> Result<BatchCounts, StoreError> {
    let groups = query_all(
        conn,
        // One stored row of each group decodes as that group's outcome (counting needs only
        // its kind and reason; MIN picks any delivery id the group has).
        "SELECT outcome, skip_reason, MIN(delivery_id), COUNT(*) FROM batch_items
         WHERE batch_id = ?1 GROUP BY outcome, skip_reason",
        [id],
        |row| {
            let kind: String = row.get(0)?;
            let reason: Option<String> = row.get(1)?;
            let delivery: Option<String> = row.get(2)?;
            let n: u32 = row.get(3)?;
            Ok(
                raw::decode_outcome(&kind, reason.as_deref(), delivery.as_deref(), false)
                    .map(|outcome| (outcome, n)),
            )
        },
    )?;
    let mut counts = BatchCounts::default();
    for (outcome, n) in groups {
        counts.add(&outcome, n);
    }
    Ok(counts)
}

fn load_batch(conn: &Connection, id: &str) -> Result<Option<Batch>, StoreError> {
    let raw = conn
        .prepare_cached(&format!(
            "SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?1"
        ))?
        .query_row([id], raw_batch)
        .optional()?;
    raw.map(|raw| raw.decode(counts(conn, id)?)).transpose()
}

/// Decides one pending item inside the open transaction; see [`ReplayStore::replay_item`].
fn replay_in(
    conn: &Connection,
    batch: &str,
    position: u32,
    new_delivery: DeliveryId,
) -> Result<ReplayStep, StoreError> {
    let Some((status, allow_repeat)) = conn
        .prepare_cached("SELECT status, allow_repeat FROM batches WHERE id = ?1")?
        .query_row([batch], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, bool>(1)?))
        })
        .optional()?
    else {
        return Err(StoreError::NotFound(batch.to_owned()));
    };
    let item = query_one(
        conn,
        &format!("SELECT {ITEM_COLUMNS} FROM batch_items WHERE batch_id = ?1 AND position = ?2"),
        params![batch, position],
        item,
    )?
    .ok_or_else(|| StoreError::NotFound(format!("{batch} item {position}")))?;
    if item.outcome != ItemOutcome::Pending {
        return Ok(ReplayStep::Decided(item.outcome));
    }
    let status =
        BatchStatus::parse(&status).ok_or_else(|| StoreError::corrupt("batch status", &status))?;
    if status != BatchStatus::Running {
        return Ok(ReplayStep::BatchStopped(status));
    }
    let dead = item.dead_delivery_id.to_string();
    let letter = query_one(
        conn,
        "SELECT letter, replays FROM dead_letters WHERE delivery_id = ?1",
        [&dead],
        dead_letter,
    )?;
    let endpoint: Option<(Option<i64>, bool)> = conn
        .prepare_cached("SELECT deleted_at, disabled FROM endpoints WHERE id = ?1")?
        .query_row([item.endpoint_id.to_string()], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    let endpoint = match endpoint {
        None | Some((Some(_), _)) => EndpointState::Deleted,
        Some((None, true)) => EndpointState::Disabled,
        Some((None, false)) => EndpointState::Live,
    };
    let skip = skip_reason(letter.as_ref().map(|l| l.replays), allow_repeat, endpoint);
    let outcome = match (skip, letter) {
        // `skip_reason` says NotDeadLettered when there is no letter, so (None, None) is this arm.
        (Some(_), _) | (None, None) => {
            let reason = skip.unwrap_or(SkipReason::NotDeadLettered);
            conn.prepare_cached(
                "UPDATE batch_items SET outcome = 'skipped', skip_reason = ?3
                 WHERE batch_id = ?1 AND position = ?2",
            )?
            .execute(params![batch, position, reason.as_str()])?;
            ItemOutcome::Skipped(reason)
        }
        (None, Some(letter)) => {
            let replay = letter
                .letter
                .replay_delivery(new_delivery, OffsetDateTime::now_utc());
            super::events::insert_delivery(conn, &replay)?;
            conn.prepare_cached(
                "UPDATE dead_letters SET replays = replays + 1 WHERE delivery_id = ?1",
            )?
            .execute([&dead])?;
            conn.prepare_cached(
                "UPDATE batch_items SET outcome = 'created', delivery_id = ?3
                 WHERE batch_id = ?1 AND position = ?2",
            )?
            .execute(params![batch, position, replay.id.to_string()])?;
            ItemOutcome::Created {
                delivery_id: replay.id,
                published: false,
            }
        }
    };
    conn.prepare_cached("UPDATE batches SET updated_at = ?2 WHERE id = ?1")?
        .execute(params![batch, millis(OffsetDateTime::now_utc())])?;
    Ok(ReplayStep::Decided(outcome))
}

#[async_trait]
impl ReplayStore for SqliteStore {
    async fn index_dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let bytes = letter
            .encode()
            .map_err(|e| StoreError::Backend(format!("encoding a dead letter: {e}")))?;
        let task = &letter.task;
        let values = (
            task.delivery_id.to_string(),
            task.event_id.to_string(),
            task.endpoint_id.to_string(),
            task.tenant.to_string(),
            task.event_type.to_string(),
            letter.last_class.as_str(),
            millis(letter.dead_lettered_at),
        );
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO dead_letters (delivery_id, event_id, endpoint_id, tenant, event_type,
                     class, dead_lettered_at, letter)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (delivery_id) DO NOTHING",
            )?
            .execute(params![
                values.0, values.1, values.2, values.3, values.4, values.5, values.6, bytes
            ])?;
            Ok(())
        })
        .await
    }

    async fn get_dead_letter(
        &self,
        id: DeliveryId,
    ) -> Result<Option<IndexedDeadLetter>, StoreError> {
        self.read(move |conn| {
            query_one(
                conn,
                "SELECT letter, replays FROM dead_letters WHERE delivery_id = ?1",
                [id.to_string()],
                dead_letter,
            )
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        page: &PageRequest,
    ) -> Result<Page<IndexedDeadLetter>, StoreError> {
        // The cursor is `<millis>:<delivery id>` of the last item of the previous page.
        let (after_ms, after_id) = match page.after.as_deref().map(|c| c.split_once(':')) {
            None => (i64::MIN, String::new()),
            Some(Some((ms, id))) => (
                ms.parse().map_err(|_| {
                    StoreError::InvalidCursor(page.after.clone().unwrap_or_default())
                })?,
                id.to_owned(),
            ),
            Some(None) => {
                return Err(StoreError::InvalidCursor(
                    page.after.clone().unwrap_or_default(),
                ));
            }
        };
        let mut conditions = vec!["(dead_lettered_at, delivery_id) > (?, ?)".to_owned()];
        let mut values = vec![SqlValue::Integer(after_ms), SqlValue::Text(after_id)];
        let mut push = |condition: &str, value: Option<SqlValue>| {
            if let Some(value) = value {
                conditions.push(condition.to_owned());
                values.push(value);
            }
        };
        let text = |s: String| SqlValue::Text(s);
        push(
            "tenant = ?",
            filter.tenant.as_ref().map(|t| text(t.to_string())),
        );
        push(
            "endpoint_id = ?",
            filter.endpoint_id.map(|id| text(id.to_string())),
        );
        push(
            "event_type = ?",
            filter.event_type.as_ref().map(|t| text(t.to_string())),
        );
        push(
            "class = ?",
            filter.class.map(|c| text(c.as_str().to_owned())),
        );
        push(
            "dead_lettered_at >= ?",
            filter.since.map(|t| SqlValue::Integer(millis(t))),
        );
        push(
            "dead_lettered_at < ?",
            filter.until.map(|t| SqlValue::Integer(millis(t))),
        );
        let limit = clamp_limit(page);
        let wanted = limit as usize + 1;
        // The reason is inside the stored letter, so it is matched on the rows read: rows are
        // read in order, a chunk at a time from where the last chunk ended, until the page
        // is full or none are left.
        let chunk = if filter.reason.is_some() {
            REASON_SCAN_CHUNK
        } else {
            wanted
        };
        values.push(SqlValue::Integer(chunk as i64));
        let sql = format!(
            "SELECT letter, replays FROM dead_letters WHERE {}
             ORDER BY dead_lettered_at, delivery_id LIMIT ?",
            conditions.join(" AND ")
        );
        let filter = filter.clone();
        let cursor_of = |d: &IndexedDeadLetter| {
            format!(
                "{}:{}",
                millis(d.letter.dead_lettered_at),
                d.letter.task.delivery_id
            )
        };
        self.read(move |conn| {
            let mut values = values.clone();
            let mut items = Vec::with_capacity(wanted);
            let mut scanned = 0;
            let mut last_read = None;
            let exhausted = loop {
                let rows = query_all(conn, &sql, params_from_iter(values.iter()), dead_letter)?;
                scanned += rows.len();
                let exhausted = rows.len() < chunk;
                if let Some(last) = rows.last() {
                    // The next chunk starts after the last row read (the first two values
                    // are the cursor).
                    values[0] = SqlValue::Integer(millis(last.letter.dead_lettered_at));
                    values[1] = SqlValue::Text(last.letter.task.delivery_id.to_string());
                    last_read = Some(cursor_of(last));
                }
                items.extend(rows.into_iter().filter(|d| filter.matches(&d.letter)));
                if exhausted || items.len() >= wanted || scanned >= REASON_SCAN_BUDGET {
                    break exhausted;
                }
            };
            items.truncate(wanted);
            if items.len() < wanted && !exhausted {
                // The budget ran out first: the next page goes on from the last row read.
                return Ok(Page {
                    items,
                    next: last_read,
                });
            }
            Ok(into_page(items, limit, cursor_of))
        })
        .await
    }

    async fn create_batch(&self, batch: &Batch, items: &[NewBatchItem]) -> Result<(), StoreError> {
        let b = batch.clone();
        let items = items.to_vec();
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO batches ({BATCH_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(params![
                b.id.to_string(),
                b.created_by,
                raw::selection_json(&b.selection),
                b.dry_run,
                b.allow_repeat,
                b.status.as_str(),
                b.error,
                millis(b.created_at),
                millis(b.updated_at),
                b.finished_at.map(millis),
                b.tenant.as_ref().map(|t| t.as_str().to_owned()),
            ])?;
            let mut insert = conn.prepare_cached(&format!(
                "INSERT INTO batch_items ({ITEM_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?;
            for (position, item) in items.iter().enumerate() {
                let (kind, reason, delivery, published) = raw::outcome_columns(&item.outcome);
                insert.execute(params![
                    b.id.to_string(),
                    position as u32,
                    item.dead_delivery_id.to_string(),
                    item.endpoint_id.to_string(),
                    kind,
                    reason,
                    delivery,
                    published,
                ])?;
            }
            Ok(())
        })
        .await
    }

    async fn get_batch(&self, id: BatchId) -> Result<Option<Batch>, StoreError> {
        self.read(move |conn| load_batch(conn, &id.to_string()))
            .await
    }

    async fn list_batches(
        &self,
        tenant: Option<&Tenant>,
        page: &PageRequest,
    ) -> Result<Page<Batch>, StoreError> {
        let limit = clamp_limit(page);
        // Newest first: the cursor is the last id shown, and the next page lies below it.
        let before = page.after.clone().unwrap_or_else(|| "bat_~".to_owned());
        let tenant = tenant.map(|t| t.as_str().to_owned());
        self.read(move |conn| {
            let raws: Vec<RawBatch> = match tenant {
                None => conn
                    .prepare_cached(&format!(
                        "SELECT {BATCH_COLUMNS} FROM batches WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
                    ))?
                    .query_map(params![before, i64::from(limit) + 1], raw_batch)?
                    .collect::<Result<_, _>>()?,
                Some(tenant) => conn
                    .prepare_cached(&format!(
                        "SELECT {BATCH_COLUMNS} FROM batches WHERE tenant = ?1 AND id < ?2
                         ORDER BY id DESC LIMIT ?3"
                    ))?
                    .query_map(params![tenant, before, i64::from(limit) + 1], raw_batch)?
                    .collect::<Result<_, _>>()?,
            };
            let mut batches = Vec::with_capacity(raws.len());
            for raw in raws {
                let id = raw.id.clone();
                batches.push(raw.decode(counts(conn, &id)?)?);
            }
            Ok(into_page(batches, limit, |b| b.id.to_string()))
        })
        .await
    }

    async fn list_batch_items(
        &self,
        id: BatchId,
        page: &PageRequest,
    ) -> Result<Page<BatchItem>, StoreError> {
        let limit = clamp_limit(page);
        let after: i64 = match &page.after {
            None => -1,
            Some(cursor) => cursor
                .parse()
                .map_err(|_| StoreError::InvalidCursor(cursor.clone()))?,
        };
        self.read(move |conn| {
            let items = query_all(
                conn,
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM batch_items WHERE batch_id = ?1 AND position > ?2
                     ORDER BY position LIMIT ?3"
                ),
                params![id.to_string(), after, i64::from(limit) + 1],
                item,
            )?;
            Ok(into_page(items, limit, |i| i.position.to_string()))
        })
        .await
    }

    async fn running_batches(&self) -> Result<Vec<BatchId>, StoreError> {
        self.read(|conn| {
            let ids: Vec<String> = conn
                .prepare_cached("SELECT id FROM batches WHERE status = 'running' ORDER BY id")?
                .query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            ids.iter()
                .map(|id| BatchId::parse(id, "id").map_err(|e| StoreError::corrupt("batch id", e)))
                .collect()
        })
        .await
    }

    async fn unfinished_items(
        &self,
        id: BatchId,
        after: Option<u32>,
        limit: u32,
    ) -> Result<Vec<BatchItem>, StoreError> {
        let after = after.map_or(-1, i64::from);
        self.read(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {ITEM_COLUMNS} FROM batch_items
                     WHERE batch_id = ?1 AND position > ?2
                       AND (outcome = 'pending' OR (outcome = 'created' AND published = 0))
                     ORDER BY position LIMIT ?3"
                ),
                params![id.to_string(), after, limit],
                item,
            )
        })
        .await
    }

    async fn finish_batch(
        &self,
        id: BatchId,
        status: BatchStatus,
        error: Option<String>,
    ) -> Result<Option<Batch>, StoreError> {
        let now = millis(OffsetDateTime::now_utc());
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE batches SET status = ?2, error = ?3, updated_at = ?4, finished_at = ?4
                 WHERE id = ?1 AND status = 'running'",
            )?
            .execute(params![id.to_string(), status.as_str(), error, now])?;
            load_batch(conn, &id.to_string())
        })
        .await
    }

    async fn replay_item(
        &self,
        id: BatchId,
        position: u32,
        new_delivery: DeliveryId,
    ) -> Result<ReplayStep, StoreError> {
        self.write(move |conn| replay_in(conn, &id.to_string(), position, new_delivery))
            .await
    }

    async fn mark_item_published(&self, id: BatchId, position: u32) -> Result<(), StoreError> {
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE batch_items SET published = 1 WHERE batch_id = ?1 AND position = ?2",
            )?
            .execute(params![id.to_string(), position])?;
            Ok(())
        })
        .await
    }
}
