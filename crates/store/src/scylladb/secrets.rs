//! The passes over every stored signing secret: sealing those stored in plain text (when the
//! operator asks for it) and re-sealing those under an older key (see [`crate::sealing`]).

use scylla::statement::prepared::PreparedStatement;

use super::{ScyllaStore, applied, prepare, rows};
use crate::{SealingCensus, StoreError};

/// Endpoints read per page of a scan.
const PAGE: i32 = 500;

const SCAN: &str = "SELECT id, secret, previous_secret, deleted_at, token(id) FROM endpoints \
     WHERE token(id) > ? LIMIT ?";
/// Only the value read is replaced: a rotation meanwhile wins.
const SET_SECRET: &str = "UPDATE endpoints SET secret = ? WHERE id = ? IF secret = ?";
const SET_PREVIOUS: &str =
    "UPDATE endpoints SET previous_secret = ? WHERE id = ? IF previous_secret = ?";

/// The secret columns, in the order of the scan.
const COLUMNS: [&str; 2] = ["secret", "previous_secret"];

type ScanRow = (
    String,
    Option<String>,
    Option<String>,
    Option<scylla::value::CqlTimestamp>,
    i64,
);

/// One endpoint of a scan: its id, whether it is deleted, and its stored secrets with the
/// statement that replaces each.
type Scanned<'a> = (String, bool, [(&'a PreparedStatement, Option<String>); 2]);

/// A scan of every endpoint's secrets, page by page in token order.
struct SecretScan {
    scan: PreparedStatement,
    set_secret: PreparedStatement,
    set_previous: PreparedStatement,
    after: Option<i64>,
}

impl SecretScan {
    async fn prepare(store: &ScyllaStore) -> Result<Self, StoreError> {
        let session = &store.session;
        Ok(Self {
            scan: prepare(session, SCAN).await?,
            set_secret: prepare(session, SET_SECRET).await?,
            set_previous: prepare(session, SET_PREVIOUS).await?,
            after: Some(i64::MIN),
        })
    }

    /// The next page: each endpoint's id and its stored secrets, with the statement that
    /// replaces each; empty at the end.
    async fn next_page(&mut self, store: &ScyllaStore) -> Result<Vec<Scanned<'_>>, StoreError> {
        let Some(after) = self.after else {
            return Ok(Vec::new());
        };
        let page = rows::<ScanRow>(store.run(&self.scan, (after, PAGE)).await?)?;
        self.after = page.last().map(|row| row.4);
        Ok(page
            .into_iter()
            .map(|(id, secret, previous, deleted_at, _)| {
                (
                    id,
                    deleted_at.is_some(),
                    [(&self.set_secret, secret), (&self.set_previous, previous)],
                )
            })
            .collect())
    }
}

impl ScyllaStore {
    /// Seals every secret stored in plain text, when the operator asked for it. A row that
    /// does not seal is left, and refused when read: it stops only its own endpoint.
    pub(super) async fn seal_plain_secrets(&self) -> Result<(), StoreError> {
        if !self.sealer.seals_plain_on_open() {
            return Ok(());
        }
        let mut scan = SecretScan::prepare(self).await?;
        let mut sealed = 0u64;
        loop {
            let page = scan.next_page(self).await?;
            if page.is_empty() {
                break;
            }
            for (id, _, secrets) in &page {
                for (statement, stored) in secrets {
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
        }
        tracing::info!(
            secrets = sealed,
            "sealed the signing secrets stored in plain text (HOOKSTREAM_SEAL_PLAIN_SECRETS: turn it off again)"
        );
        Ok(())
    }

    /// See [`crate::Store::reseal_secrets`].
    pub(super) async fn reseal_all_secrets(&self) -> Result<SealingCensus, StoreError> {
        let mut scan = SecretScan::prepare(self).await?;
        let mut census = SealingCensus::default();
        loop {
            let page = scan.next_page(self).await?;
            if page.is_empty() {
                break;
            }
            // A deleted endpoint's secret is never read again.
            for (id, _, secrets) in page.iter().filter(|(_, deleted, _)| !deleted) {
                for ((statement, stored), column) in secrets.iter().zip(COLUMNS) {
                    let Some(stored) = stored else { continue };
                    if let Some(reseal) = census.survey(&self.sealer, id, column, stored) {
                        // Only the value read is replaced: a rotation meanwhile wins.
                        let replaced =
                            applied(self.run(statement, (&reseal.new, id, stored)).await?)?;
                        census.resealed(&self.sealer, reseal, replaced);
                    }
                }
            }
        }
        Ok(census)
    }
}
