//! The one-time sealing of signing secrets stored in plain text before a key was configured
//! (see [`crate::sealing`]).

use time::OffsetDateTime;

use super::{ScyllaStore, applied, first_row, rows, ts};
use crate::StoreError;

/// The `control` row recording that the pass ran.
const SECRETS_SEALED: &str = "secrets_sealed";
/// Endpoints read per page of the scan.
const PAGE: i32 = 500;

const SCAN: &str = "SELECT id, secret, previous_secret, token(id) FROM endpoints \
     WHERE token(id) > ? LIMIT ?";
/// Only the plain text read is replaced: a rotation meanwhile wins.
const SEAL_SECRET: &str = "UPDATE endpoints SET secret = ? WHERE id = ? IF secret = ?";
const SEAL_PREVIOUS: &str =
    "UPDATE endpoints SET previous_secret = ? WHERE id = ? IF previous_secret = ?";

type ScanRow = (String, Option<String>, Option<String>, i64);

impl ScyllaStore {
    /// Seals every secret stored in plain text, once per keyspace, when a key is configured.
    pub(super) async fn seal_plain_secrets(&self) -> Result<(), StoreError> {
        if !self.sealer.seals() {
            return Ok(());
        }
        let s = &self.statements;
        let done = self.run(&s.select_control, (SECRETS_SEALED,)).await?;
        if first_row::<(Option<String>,)>(done)?.is_some() {
            return Ok(());
        }
        let query = |text: &'static str| {
            let session = &self.session;
            async move {
                session
                    .prepare(text)
                    .await
                    .map_err(|e| StoreError::Backend(format!("scylla: preparing `{text}`: {e}")))
            }
        };
        let (scan, seal_secret, seal_previous) = (
            query(SCAN).await?,
            query(SEAL_SECRET).await?,
            query(SEAL_PREVIOUS).await?,
        );
        let mut after = i64::MIN;
        let mut sealed = 0u64;
        loop {
            let page = rows::<ScanRow>(self.run(&scan, (after, PAGE)).await?)?;
            let Some(last) = page.last().map(|row| row.3) else {
                break;
            };
            for (id, secret, previous, _) in &page {
                for (statement, stored) in [(&seal_secret, secret), (&seal_previous, previous)] {
                    let Some(stored) = stored else { continue };
                    if let Some(new) = self.sealer.seal_stored(id, stored)? {
                        applied(self.run(statement, (new, id, stored)).await?)?;
                        sealed += 1;
                    }
                }
            }
            after = last;
        }
        self.run(
            &s.upsert_control,
            (
                SECRETS_SEALED,
                "true".to_owned(),
                ts(OffsetDateTime::now_utc()),
            ),
        )
        .await?;
        if sealed > 0 {
            tracing::info!(
                secrets = sealed,
                "sealed signing secrets stored in plain text"
            );
        }
        Ok(())
    }
}
