//! Sealing the signing secrets stored in plain text before a key was configured, when the
//! operator asks for it (see [`crate::sealing`]).

use super::{ScyllaStore, applied, prepare, rows};
use crate::StoreError;

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
    /// Seals every secret stored in plain text, when the operator asked for it. A row that
    /// does not seal is left, and refused when read: it stops only its own endpoint.
    pub(super) async fn seal_plain_secrets(&self) -> Result<(), StoreError> {
        if !self.sealer.seals_plain_on_open() {
            return Ok(());
        }
        let session = &self.session;
        let (scan, seal_secret, seal_previous) = (
            prepare(session, SCAN).await?,
            prepare(session, SEAL_SECRET).await?,
            prepare(session, SEAL_PREVIOUS).await?,
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
                    match self.sealer.seal_stored(id, stored) {
                        Ok(Some(new)) => {
                            applied(self.run(statement, (new, id, stored)).await?)?;
                            sealed += 1;
                        }
                        Ok(None) => {}
                        Err(err) => {
                            tracing::error!(endpoint = %id, error = %err, "a stored secret does not seal; left as it is");
                        }
                    }
                }
            }
            after = last;
        }
        tracing::info!(
            secrets = sealed,
            "sealed the signing secrets stored in plain text (HOOKSTREAM_SEAL_PLAIN_SECRETS: turn it off again)"
        );
        Ok(())
    }
}
