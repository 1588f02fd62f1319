use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::scylladb::{ScyllaLocation, ScyllaStore};
use crate::sqlite::SqliteStore;
use crate::{MeteredStore, SecretSealer, Store, StoreError};

/// Where the store lives, parsed from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// `sqlite://PATH`: the embedded store in one file (created if missing).
    Sqlite(PathBuf),
    /// `scylla://HOST[:PORT][,HOST…]/KEYSPACE[?replication_factor=N]`: ScyllaDB (or Cassandra).
    Scylla(ScyllaLocation),
}

impl StoreLocation {
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidLocation {
            location: text.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| {
            invalid("expected SCHEME://…, for example sqlite://data/hookstream.db")
        })?;
        match scheme {
            "sqlite" if !rest.is_empty() => Ok(Self::Sqlite(PathBuf::from(rest))),
            "sqlite" => Err(invalid("sqlite:// needs a file path")),
            "scylla" => ScyllaLocation::parse(rest)
                .map(Self::Scylla)
                .map_err(|reason| invalid(&reason)),
            other => Err(invalid(&format!(
                "unknown store `{other}`; this build supports sqlite://PATH and scylla://HOSTS/KEYSPACE"
            ))),
        }
    }
}

/// Opens the store at `location`, creating and migrating it as needed. `retention` is how long
/// ScyllaDB keeps deliveries, attempts and events (their TTL).
/// `sealer` seals the signing secrets the store holds. Every operation is timed and its errors
/// counted ([`MeteredStore`]).
pub async fn open(
    location: &StoreLocation,
    retention: Duration,
    sealer: SecretSealer,
) -> Result<Arc<dyn Store>, StoreError> {
    let backend: Arc<dyn Store> = match location {
        StoreLocation::Sqlite(path) => Arc::new(SqliteStore::open(path, sealer).await?),
        StoreLocation::Scylla(at) => Arc::new(ScyllaStore::open(at, retention, sealer).await?),
    };
    Ok(Arc::new(MeteredStore::new(backend)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_parse() {
        assert_eq!(
            StoreLocation::parse("sqlite://data/h.db").unwrap(),
            StoreLocation::Sqlite("data/h.db".into())
        );
        assert_eq!(
            StoreLocation::parse("sqlite:///var/lib/h.db").unwrap(),
            StoreLocation::Sqlite("/var/lib/h.db".into())
        );
        assert!(StoreLocation::parse("sqlite://").is_err());
        assert!(StoreLocation::parse("data/h.db").is_err());
        assert!(StoreLocation::parse("postgres://x").is_err());
        assert!(matches!(
            StoreLocation::parse("scylla://db1,db2/hookstream").unwrap(),
            StoreLocation::Scylla(at) if at.nodes.len() == 2 && at.keyspace == "hookstream"
        ));
        assert!(StoreLocation::parse("scylla://db1").is_err());
    }
}
