//! Settings every service of an installation must share, kept in the store. Ingest, which
//! writes the tasks, records its topic prefix the first time it opens the store; the other
//! services with a store check theirs against it. A service with another prefix would write
//! tasks no dispatcher reads, or read topics no ingest writes, while sharing deliveries with the
//! rest. Only ingest records, so a misconfigured dispatcher or replay started first cannot make
//! its prefix the installation's and keep the healthy services from starting.

use crate::{Store, StoreError};

const TOPIC_PREFIX: &str = "topic_prefix";

/// The key of an installation setting in the store's `control` table.
pub(crate) fn installation_key(name: &str) -> String {
    format!("installation.{name}")
}

/// Why a service must not start with the settings it was given.
#[derive(Debug, thiserror::Error)]
pub enum InstallationMismatch {
    #[error(
        "this store belongs to the installation whose topic prefix is `{recorded}` (recorded by \
         ingest when it first used the store), and this service was given `{given}` \
         (HOOKSTREAM_TOPIC_PREFIX): it would use topics the other services do not. Give every \
         service the same prefix (README: \"Every service must have the store's topic prefix\")"
    )]
    TopicPrefix { recorded: String, given: String },
    #[error("checking the topic prefix against the store's: {0}")]
    Store(#[from] StoreError),
}

/// What a service does with the topic prefix it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixRole {
    /// Ingest: records it if none is recorded, else checks it.
    Records,
    /// Every other service with a store: checks it against the one recorded, if any.
    Checks,
}

/// Checks `prefix` against the installation's (recording it first, for [`PrefixRole::Records`]).
/// Returns whether a prefix was recorded to check against.
pub async fn agree_on_topic_prefix<S: Store + ?Sized>(
    store: &S,
    prefix: &str,
    role: PrefixRole,
) -> Result<bool, InstallationMismatch> {
    let recorded = match role {
        PrefixRole::Records => Some(
            store
                .record_installation_setting(TOPIC_PREFIX, prefix)
                .await?,
        ),
        PrefixRole::Checks => store.installation_setting(TOPIC_PREFIX).await?,
    };
    match recorded {
        Some(recorded) if recorded != prefix => Err(InstallationMismatch::TopicPrefix {
            recorded,
            given: prefix.to_owned(),
        }),
        Some(_) => Ok(true),
        None => Ok(false),
    }
}
