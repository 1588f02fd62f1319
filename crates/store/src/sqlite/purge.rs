//! The embedded store's purge: what outlived its retention, removed a bounded batch at a time.

use rusqlite::{Connection, params};

use crate::{Purged, StoreError};

/// Rows removed per purge transaction: keeps each one, and the writes waiting behind it, short.
pub(super) const PURGE_BATCH: u32 = 1000;

/// Up to `?2` settled deliveries last changed before `?1`. Only final deliveries go: one still
/// under way (a long-paused endpoint's, say) keeps its row, or its task would be dropped as
/// unknown when it comes back. Named, the index is read from its oldest entry; left to the
/// planner, it read every settled delivery through the status index.
pub(super) const EXPIRED_DELIVERIES: &str =
    "SELECT id FROM deliveries INDEXED BY deliveries_settled_by_update
     WHERE updated_at < ?1 AND status IN ('delivered', 'dead_lettered') LIMIT ?2";

/// Removes up to [`PURGE_BATCH`] expired rows of each kind.
pub(super) fn purge_batch(conn: &Connection, now: i64, cutoff: i64) -> Result<Purged, StoreError> {
    let idempotency_keys = conn
        .prepare_cached(
            "DELETE FROM idempotency_keys WHERE (tenant, key) IN
                 (SELECT tenant, key FROM idempotency_keys WHERE expires_at < ?1 LIMIT ?2)",
        )?
        .execute(params![now, PURGE_BATCH])?;
    let old: Vec<String> = conn
        .prepare_cached(EXPIRED_DELIVERIES)?
        .query_map(params![cutoff, PURGE_BATCH], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    let mut attempts = 0;
    for id in &old {
        attempts += conn
            .prepare_cached("DELETE FROM attempts WHERE delivery_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM deliveries WHERE id = ?1")?
            .execute([id])?;
    }
    // An event goes once its deliveries have.
    let events = conn
        .prepare_cached(
            "DELETE FROM events WHERE id IN
                 (SELECT e.id FROM events e WHERE e.created_at < ?1
                      AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id)
                  LIMIT ?2)",
        )?
        .execute(params![cutoff, PURGE_BATCH])?;
    let dead_letters = conn
        .prepare_cached(
            "DELETE FROM dead_letters WHERE delivery_id IN
                 (SELECT delivery_id FROM dead_letters WHERE dead_lettered_at < ?1 LIMIT ?2)",
        )?
        .execute(params![cutoff, PURGE_BATCH])?;
    let batches: Vec<String> = conn
        .prepare_cached(
            "SELECT id FROM batches WHERE status != 'running' AND updated_at < ?1 LIMIT ?2",
        )?
        .query_map(params![cutoff, PURGE_BATCH], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for id in &batches {
        conn.prepare_cached("DELETE FROM batch_items WHERE batch_id = ?1")?
            .execute([id])?;
        conn.prepare_cached("DELETE FROM batches WHERE id = ?1")?
            .execute([id])?;
    }
    Ok(Purged {
        idempotency_keys: idempotency_keys as u64,
        deliveries: old.len() as u64,
        attempts: attempts as u64,
        events: events as u64,
        dead_letters: dead_letters as u64,
        batches: batches.len() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{SqliteStore, connect};
    use super::*;
    use crate::SecretSealer;

    /// The purge reads expired deliveries by age from the partial index, not every settled
    /// delivery through the status index (what the planner picked before it was named).
    #[tokio::test]
    async fn the_purge_reads_expired_deliveries_from_the_settled_index() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("store.db");
        SqliteStore::open(&path, SecretSealer::plaintext())
            .await
            .expect("the store opens");
        let conn = connect(&path).expect("a connection");
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {EXPIRED_DELIVERIES}"))
            .expect("the query plans")
            .query_map(params![0, 1], |row| row.get::<_, String>(3))
            .expect("the plan reads")
            .collect::<Result<_, _>>()
            .expect("the plan's rows");
        assert_eq!(
            plan,
            vec!["SEARCH deliveries USING INDEX deliveries_settled_by_update (updated_at<?)"],
        );
    }
}
