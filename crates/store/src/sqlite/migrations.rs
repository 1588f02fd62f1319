//! Versioned schema migrations, applied in order at open, each exactly once.

use rusqlite::{Connection, TransactionBehavior};

/// Every migration, oldest first. Append only: an applied migration is never edited.
const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        include_str!("../../../../schemas/store/sqlite/0001_init.sql"),
    ),
    (
        2,
        include_str!("../../../../schemas/store/sqlite/0002_retries.sql"),
    ),
    (
        3,
        include_str!("../../../../schemas/store/sqlite/0003_pause.sql"),
    ),
    (
        4,
        include_str!("../../../../schemas/store/sqlite/0004_circuit.sql"),
    ),
    (
        5,
        include_str!("../../../../schemas/store/sqlite/0005_retention.sql"),
    ),
    (
        6,
        include_str!("../../../../schemas/store/sqlite/0006_replay.sql"),
    ),
    (
        7,
        include_str!("../../../../schemas/store/sqlite/0007_secret_rotation.sql"),
    ),
    (
        8,
        include_str!("../../../../schemas/store/sqlite/0008_tenant_access.sql"),
    ),
    (
        9,
        include_str!("../../../../schemas/store/sqlite/0009_attempt_claims.sql"),
    ),
    (
        10,
        include_str!("../../../../schemas/store/sqlite/0010_set_aside.sql"),
    ),
    (
        11,
        include_str!("../../../../schemas/store/sqlite/0011_shaping.sql"),
    ),
    (
        12,
        include_str!("../../../../schemas/store/sqlite/0012_ordered_queues.sql"),
    ),
    (
        13,
        include_str!("../../../../schemas/store/sqlite/0013_settled_by_update.sql"),
    ),
    (
        14,
        include_str!("../../../../schemas/store/sqlite/0014_endpoint_generation.sql"),
    ),
    (
        15,
        include_str!("../../../../schemas/store/sqlite/0015_endpoint_health.sql"),
    ),
    (
        16,
        include_str!("../../../../schemas/store/sqlite/0016_traffic_reports.sql"),
    ),
    (
        17,
        include_str!("../../../../schemas/store/sqlite/0017_portal_link_revocations.sql"),
    ),
];

/// Brings the database up to the newest version. Safe to run from several processes at once:
/// the check and the migration happen in one immediate (write-locked) transaction.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
        [],
        |row| row.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, unixepoch() * 1000)",
            [version],
        )?;
    }
    tx.commit()
}
