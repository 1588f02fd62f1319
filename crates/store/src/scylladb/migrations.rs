//! The keyspace's schema: the CQL migrations applied in order at start-up.

use std::time::Duration;

use scylla::client::session::Session;
use time::OffsetDateTime;

use super::{backend, cql, first_row, rows, ts};
use crate::StoreError;

/// The keyspace's schema, brought up to date. Each migration statement is idempotent, so
/// instances that start together may both run one.
pub(super) async fn migrate(session: &Session) -> Result<(), StoreError> {
    session
        .query_unpaged(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version int PRIMARY KEY, applied_at timestamp)",
            (),
        )
        .await
        .map_err(ctx!("creating schema_migrations"))?;
    let result = session
        .query_unpaged("SELECT version FROM schema_migrations", ())
        .await
        .map_err(ctx!("reading schema_migrations"))?;
    let applied: Vec<i32> = rows::<(i32,)>(result)?.into_iter().map(|(v,)| v).collect();
    for (version, script) in cql::MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)) {
        for statement in cql::statements_of(script) {
            // CQL has no `ADD … IF NOT EXISTS`: a column an earlier, interrupted run (or a
            // racing instance) added is skipped.
            let added = cql::added_column(&statement);
            if let Some((table, column)) = added
                && column_exists(session, table, column).await?
            {
                continue;
            }
            if let Err(err) = session.query_unpaged(statement.as_str(), ()).await {
                // A racing instance may have added the column between the check and the
                // ALTER: then the migration's work is done, and starting must not fail.
                let raced = match added {
                    Some((table, column)) => column_exists(session, table, column).await?,
                    None => false,
                };
                if !raced {
                    return Err(StoreError::Backend(format!(
                        "scylla: migration {version}: {err}"
                    )));
                }
            }
        }
        session
            .query_unpaged(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                (*version, ts(OffsetDateTime::now_utc())),
            )
            .await
            .map_err(ctx!("recording a migration"))?;
    }
    session
        .await_schema_agreement()
        .await
        .map_err(ctx!("waiting for schema agreement"))?;
    await_added_columns(session).await
}

/// Waits until every column the migrations add can be read. A racing instance's `ALTER … ADD`
/// shows in `system_schema.columns` (so this instance skips it) a moment before the node's
/// queries know the column: a statement prepared in that moment fails with "Undefined column".
async fn await_added_columns(session: &Session) -> Result<(), StoreError> {
    const TRIES: u32 = 100;
    let added = cql::MIGRATIONS
        .iter()
        .flat_map(|(_, script)| cql::statements_of(script))
        .filter_map(|statement| {
            cql::added_column(&statement)
                .map(|(table, column)| format!("SELECT {column} FROM {table} LIMIT 1"))
        });
    for probe in added {
        let mut tries = 0;
        while let Err(err) = session.query_unpaged(probe.as_str(), ()).await {
            tries += 1;
            if tries == TRIES {
                return Err(StoreError::Backend(format!(
                    "scylla: a migrated column is still unknown (`{probe}`): {err}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

async fn column_exists(session: &Session, table: &str, column: &str) -> Result<bool, StoreError> {
    let keyspace = session
        .get_keyspace()
        .ok_or_else(|| StoreError::Backend("scylla: no keyspace in use".into()))?;
    let result = session
        .query_unpaged(
            "SELECT column_name FROM system_schema.columns \
             WHERE keyspace_name = ? AND table_name = ? AND column_name = ?",
            (keyspace.as_str(), table, column),
        )
        .await
        .map_err(ctx!("reading the schema"))?;
    Ok(first_row::<(String,)>(result)?.is_some())
}
