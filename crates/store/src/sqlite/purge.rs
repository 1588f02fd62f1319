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

/// Up to `?2` items of replay batches finished before `?1`, oldest batches first (through
/// `batches_by_update`, then each batch's items by its key).
pub(super) const EXPIRED_BATCH_ITEMS: &str = "DELETE FROM batch_items WHERE (batch_id, position) IN
         (SELECT i.batch_id, i.position FROM batches b JOIN batch_items i ON i.batch_id = b.id
          WHERE b.status != 'running' AND b.updated_at < ?1 LIMIT ?2)";

/// Up to `?2` replay batches finished before `?1` whose items are all gone. (Each round walks
/// the expired batches whose items are not, one key lookup each.)
pub(super) const EMPTIED_BATCHES: &str = "DELETE FROM batches WHERE id IN
         (SELECT b.id FROM batches b WHERE b.status != 'running' AND b.updated_at < ?1
              AND NOT EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = b.id)
          LIMIT ?2)";

/// What one purge transaction removed.
pub(super) struct PurgeRound {
    pub purged: Purged,
    /// Items of finished replay batches (counted apart: [`Purged`] counts the batches).
    pub batch_items: u64,
}

impl PurgeRound {
    /// Whether every kind came back short of [`PURGE_BATCH`]: nothing expired is left.
    pub fn was_last(&self) -> bool {
        let p = &self.purged;
        [
            p.idempotency_keys,
            p.deliveries,
            p.events,
            p.dead_letters,
            p.batches,
            self.batch_items,
        ]
        .iter()
        .all(|&n| n < u64::from(PURGE_BATCH))
    }
}

/// Removes up to [`PURGE_BATCH`] expired rows of each kind.
pub(super) fn purge_batch(
    conn: &Connection,
    now: i64,
    cutoff: i64,
) -> Result<PurgeRound, StoreError> {
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
    // A finished batch's items go a bounded number at a time (a batch can hold many
    // thousands), and the batch with its last one.
    let batch_items = conn
        .prepare_cached(EXPIRED_BATCH_ITEMS)?
        .execute(params![cutoff, PURGE_BATCH])?;
    let batches = conn
        .prepare_cached(EMPTIED_BATCHES)?
        .execute(params![cutoff, PURGE_BATCH])?;
    let purged = Purged {
        idempotency_keys: idempotency_keys as u64,
        deliveries: old.len() as u64,
        attempts: attempts as u64,
        events: events as u64,
        dead_letters: dead_letters as u64,
        batches: batches as u64,
    };
    Ok(PurgeRound {
        purged,
        batch_items: batch_items as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::super::{SqliteStore, connect};
    use super::*;
    use crate::{SecretSealer, Store};

    /// A migrated store in a temporary directory, and a connection of the test's own to it.
    async fn migrated_database() -> (tempfile::TempDir, SqliteStore, Connection) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path, SecretSealer::plaintext())
            .await
            .expect("the store opens");
        let conn = connect(&path).expect("a connection");
        (dir, store, conn)
    }

    /// The steps of SQLite's plan for `statement` (its parameters bound to 0 and 1).
    fn plan_of(conn: &Connection, statement: &str) -> Vec<String> {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .expect("the statement plans")
            .query_map(params![0, 1], |row| row.get::<_, String>(3))
            .expect("the plan reads")
            .collect::<Result<_, _>>()
            .expect("the plan's rows")
    }

    /// The purge reads expired deliveries by age from the partial index, not every settled
    /// delivery through the status index (what the planner picked before it was named).
    #[tokio::test]
    async fn the_purge_reads_expired_deliveries_from_the_settled_index() {
        let (_dir, _store, conn) = migrated_database().await;
        assert_eq!(
            plan_of(&conn, EXPIRED_DELIVERIES),
            vec!["SEARCH deliveries USING INDEX deliveries_settled_by_update (updated_at<?)"],
        );
    }

    /// A replay batch in `status`, last changed at `updated_at`, with `items` items replayed
    /// (as the replay service leaves a created item: its new delivery published).
    fn batch(conn: &Connection, id: &str, status: &str, items: u32, updated_at: i64) {
        conn.execute_batch("BEGIN").expect("a transaction");
        conn.execute(
            "INSERT INTO batches (id, created_by, selection, dry_run, allow_repeat, status,
                                  created_at, updated_at, finished_at)
             VALUES (?1, 'admin', '{}', 0, 0, ?2, ?3, ?3, ?3)",
            params![id, status, updated_at],
        )
        .expect("a batch");
        let mut insert = conn
            .prepare(
                "INSERT INTO batch_items (batch_id, position, dead_delivery_id, endpoint_id,
                                          outcome, delivery_id, published)
                 VALUES (?1, ?2, 'dlv_dead', 'ep_x', 'created', ?3, 1)",
            )
            .expect("the insert prepares");
        for position in 0..items {
            insert
                .execute(params![id, position, format!("dlv_{id}_{position}")])
                .expect("an item");
        }
        conn.execute_batch("COMMIT").expect("the batch commits");
    }

    fn count(conn: &Connection, sql: &str) -> u32 {
        conn.query_row(sql, [], |row| row.get(0)).expect("a count")
    }

    /// A replay batch can hold many thousands of items: one purge transaction removes at most
    /// [`PURGE_BATCH`] of them, so it never holds the write lock (and every delivery waiting
    /// for it) for as long as the largest batches take; the batch row goes with its last item.
    /// A running batch's items and a batch finished within the retention are kept.
    #[tokio::test]
    async fn a_large_finished_batch_is_purged_a_bounded_number_of_items_at_a_time() {
        let (_dir, store, conn) = migrated_database().await;
        let (hour_ago, now) = (1_000, 1_000 + 3_600_000);
        batch(
            &conn,
            "bat_big",
            "completed",
            2 * PURGE_BATCH + 500,
            hour_ago,
        );
        batch(&conn, "bat_small", "cancelled", 3, hour_ago);
        batch(&conn, "bat_running", "running", 5, hour_ago);
        batch(&conn, "bat_recent", "completed", 7, now);
        let kept = |conn: &Connection| {
            count(
                conn,
                "SELECT count(*) FROM batch_items WHERE batch_id IN ('bat_running', 'bat_recent')",
            )
        };

        let first = purge_batch(&conn, now, now - 60_000).expect("a purge round");
        assert!(!first.was_last(), "a full round of items is not the last");
        let first = first.purged;
        let items_left = count(&conn, "SELECT count(*) FROM batch_items");
        assert_eq!(items_left, 2 * PURGE_BATCH + 500 + 3 + 5 + 7 - PURGE_BATCH);
        assert!(first.batches <= 1, "a batch goes only with its last item");
        assert_eq!(
            count(&conn, "SELECT count(*) FROM batches WHERE id = 'bat_big'"),
            1,
            "the large batch stays until its items are gone"
        );

        let later = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now) * 1_000_000)
            .expect("a time");
        let rest = store
            .purge_expired(later, std::time::Duration::from_secs(60))
            .await
            .expect("the purge runs to the end");
        assert_eq!(
            kept(&conn),
            5 + 7,
            "only expired finished batches lose items"
        );
        assert_eq!(count(&conn, "SELECT count(*) FROM batch_items"), 5 + 7);
        let left: Vec<String> = conn
            .prepare("SELECT id FROM batches ORDER BY id")
            .expect("the query prepares")
            .query_map([], |row| row.get(0))
            .expect("the batches read")
            .collect::<Result<_, _>>()
            .expect("the ids");
        assert_eq!(left, ["bat_recent", "bat_running"]);
        assert_eq!(first.batches + rest.batches, 2);
    }

    /// Both batch statements find their rows through indexes: a scan of the items under the
    /// write lock would hold every delivery up for as long as it took.
    #[tokio::test]
    async fn the_batch_purge_searches_by_index() {
        let (_dir, _store, conn) = migrated_database().await;
        for statement in [EXPIRED_BATCH_ITEMS, EMPTIED_BATCHES] {
            let plan = plan_of(&conn, statement);
            assert!(
                plan.iter().all(|step| !step.starts_with("SCAN")),
                "{statement}: {plan:?}"
            );
        }
    }
}
