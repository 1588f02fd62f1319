//! The passes over every stored signing secret: sealing those stored in plain text (when the
//! operator asks for it) and re-sealing those under an older key (see [`crate::sealing`]).

use rusqlite::{Connection, params};

use crate::{SealingCensus, SecretSealer, StoreError};

use super::SqliteStore;

/// Endpoints read, and re-sealed in one write transaction, per page of the re-sealing pass.
const PAGE: u32 = 500;

/// The secret columns of `endpoints`.
const COLUMNS: [&str; 2] = ["secret", "previous_secret"];

/// One endpoint's stored secrets, by [`COLUMNS`].
type StoredSecrets = (String, [Option<String>; 2]);

/// Seals the secrets stored in plain text, when the operator asked for it. A row that does not
/// seal (not a secret at all) is left, and refused when read: it stops only its own endpoint,
/// not the start.
pub(super) fn seal_plain_secrets(
    conn: &mut Connection,
    sealer: &SecretSealer,
) -> Result<(), StoreError> {
    if !sealer.seals_plain_on_open() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let stored: Vec<StoredSecrets> = tx
        .prepare("SELECT id, secret, previous_secret FROM endpoints")?
        .query_map([], |row| Ok((row.get(0)?, [row.get(1)?, row.get(2)?])))?
        .collect::<Result<_, _>>()?;
    let mut sealed = 0;
    for (id, secrets) in stored {
        for (column, stored) in COLUMNS.into_iter().zip(secrets) {
            let Some(stored) = stored else { continue };
            match sealer.seal_stored(&id, &stored) {
                Ok(Some(new)) => {
                    tx.execute(
                        &format!("UPDATE endpoints SET {column} = ?2 WHERE id = ?1"),
                        params![id, new],
                    )?;
                    sealed += 1;
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::error!(endpoint = %id, column, error = %err, "a stored secret does not seal; left as it is");
                }
            }
        }
    }
    tx.commit()?;
    tracing::info!(
        secrets = sealed,
        "sealed the signing secrets stored in plain text (HOOKSTREAM_SEAL_PLAIN_SECRETS: turn it off again)"
    );
    Ok(())
}

/// One stored secret to replace, if it is still `old`.
struct Replacement {
    column: &'static str,
    id: String,
    old: String,
    new: String,
}

/// Replaces each secret that is still as read (a rotation meanwhile wins); whether each was.
fn replace_secrets(conn: &Connection, changes: &[Replacement]) -> Result<Vec<bool>, StoreError> {
    let mut replaced = Vec::with_capacity(changes.len());
    for change in changes {
        let column = change.column;
        let rows = conn
            .prepare_cached(&format!(
                "UPDATE endpoints SET {column} = ?3 WHERE id = ?1 AND {column} = ?2"
            ))?
            .execute(params![change.id, change.old, change.new])?;
        replaced.push(rows == 1);
    }
    Ok(replaced)
}

impl SqliteStore {
    /// See [`crate::Store::reseal_secrets`]: a page of endpoints read at a time, its
    /// re-sealed secrets written in one transaction, each only where it is still as read.
    pub(super) async fn reseal_all_secrets(&self) -> Result<SealingCensus, StoreError> {
        let mut census = SealingCensus::default();
        let mut after = String::new();
        loop {
            let from = after.clone();
            let page: Vec<StoredSecrets> = self
                .read(move |conn| {
                    Ok(conn
                        .prepare_cached(
                            "SELECT id, secret, previous_secret FROM endpoints
                             WHERE id > ?1 AND deleted_at IS NULL ORDER BY id LIMIT ?2",
                        )?
                        .query_map(params![from, PAGE], |row| {
                            Ok((row.get(0)?, [row.get(1)?, row.get(2)?]))
                        })?
                        .collect::<Result<_, _>>()?)
                })
                .await?;
            let Some((last, _)) = page.last() else { break };
            after = last.clone();
            let mut changes: Vec<Replacement> = Vec::new();
            let mut reseals = Vec::new();
            for (id, secrets) in &page {
                for (column, stored) in COLUMNS.into_iter().zip(secrets) {
                    let Some(stored) = stored else { continue };
                    if let Some(reseal) = census.survey(&self.sealer, id, column, stored) {
                        changes.push(Replacement {
                            column,
                            id: id.clone(),
                            old: stored.clone(),
                            new: reseal.new.clone(),
                        });
                        reseals.push(reseal);
                    }
                }
            }
            if changes.is_empty() {
                continue;
            }
            let replaced = self
                .write(move |conn| replace_secrets(conn, &changes))
                .await?;
            for (reseal, replaced) in reseals.into_iter().zip(replaced) {
                census.resealed(&self.sealer, reseal, replaced);
            }
        }
        Ok(census)
    }
}

#[cfg(test)]
mod tests {
    use super::super::connect;
    use super::*;

    /// The compare in the replacement is what keeps a secret rotated during a pass: the pass
    /// read the old one, and must not write its re-sealed copy over the new one.
    #[tokio::test]
    async fn a_secret_changed_since_the_pass_read_it_is_not_replaced() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("store.db");
        SqliteStore::open(&path, SecretSealer::plaintext())
            .await
            .expect("the store opens");
        let conn = connect(&path).expect("a connection");
        conn.execute(
            "INSERT INTO endpoints (id, tenant, url, event_types, secret, disabled, created_at, updated_at)
             VALUES ('ep_1', 'acme', 'https://hooks.example.com/in', '[\"*\"]', 'rotated meanwhile', 0, 0, 0)",
            [],
        )
        .expect("the endpoint is written");
        let change = |old: &str| Replacement {
            column: "secret",
            id: "ep_1".into(),
            old: old.into(),
            new: "re-sealed".into(),
        };
        let stored = |conn: &Connection| -> String {
            conn.query_row(
                "SELECT secret FROM endpoints WHERE id = 'ep_1'",
                [],
                |row| row.get(0),
            )
            .expect("the row")
        };
        assert_eq!(
            replace_secrets(&conn, &[change("as the pass read it")]).unwrap(),
            vec![false]
        );
        assert_eq!(stored(&conn), "rotated meanwhile");
        assert_eq!(
            replace_secrets(&conn, &[change("rotated meanwhile")]).unwrap(),
            vec![true]
        );
        assert_eq!(stored(&conn), "re-sealed");
    }
}
