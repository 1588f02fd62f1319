//! Settings every service of an installation must share, kept in the store: the first service
//! to open it records its own, and every later one must have the same. A service with another
//! topic prefix would write tasks no dispatcher reads, or read topics no ingest writes, while
//! sharing deliveries with the rest.

use crate::{Store, StoreError};

/// The key of an installation setting in the store's `control` table.
pub(crate) fn installation_key(name: &str) -> String {
    format!("installation.{name}")
}

/// Why a service must not start with the settings it was given.
#[derive(Debug, thiserror::Error)]
pub enum InstallationMismatch {
    #[error(
        "this store belongs to the installation whose topic prefix is `{recorded}` (recorded by \
         the first service that used it), and this service was given `{given}` \
         (HOOKSTREAM_TOPIC_PREFIX): it would use topics the other services do not. Give every \
         service the same prefix (README: \"Every service must have the store's topic prefix\")"
    )]
    TopicPrefix { recorded: String, given: String },
    #[error("checking the topic prefix against the store's: {0}")]
    Store(#[from] StoreError),
}

/// Records `prefix` as the installation's topic prefix if none is, else checks it is the one.
pub async fn agree_on_topic_prefix<S: Store + ?Sized>(
    store: &S,
    prefix: &str,
) -> Result<(), InstallationMismatch> {
    let recorded = store
        .record_installation_setting("topic_prefix", prefix)
        .await?;
    if recorded == prefix {
        Ok(())
    } else {
        Err(InstallationMismatch::TopicPrefix {
            recorded,
            given: prefix.to_owned(),
        })
    }
}
