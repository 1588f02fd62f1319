//! Endpoints as this process last read them, checked against one counter before each use.
//!
//! The dispatcher reads the endpoint of every task it sends, and reading the row (a lookup, then
//! decoding: the URL, the JSON event types, opening the sealed secrets) was about a tenth of its
//! CPU (issue 20); ingest reads a tenant's subscriptions for every request, a hop to the blocking
//! pool each time. Every change to the `endpoints` table moves a counter in the same transaction
//! (the triggers of migration 0014), whichever process makes it: to a random value, so a database
//! restored from a copy does not bring back a value a process has kept rows under. A read takes
//! the counter first and hands back what was kept under that same value; otherwise it reads the
//! rows and keeps them under the value it took. Counter first, rows second: rows newer than their
//! counter are read again next time, never served older than the counter says. Without the
//! counter's row (never so after the migration) nothing is kept and every read reads the rows.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension};

use hookstream_model::endpoint::{Endpoint, Subscription};
use hookstream_model::ids::EndpointId;
use hookstream_model::names::Tenant;

use crate::{SecretSealer, StoreError};

/// A tenant's live endpoints (disabled ones too) and what each subscribes to.
pub(super) type Subscriptions = Vec<(EndpointId, Subscription)>;

/// Endpoints, and tenants' subscription lists, kept at most; past it that map starts over (a
/// change to any endpoint empties both anyway). An endpoint is about half a kilobyte.
const MAX_KEPT: usize = 10_000;

/// What was read under one value of the counter.
#[derive(Default)]
pub(super) struct EndpointCache {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// `None` until the first read: no counter value has been seen.
    generation: Option<i64>,
    endpoints: HashMap<EndpointId, Endpoint>,
    subscriptions: HashMap<Tenant, Subscriptions>,
}

impl Kept {
    /// Empties both maps unless they were read under `generation`.
    fn at(&mut self, generation: i64) -> &mut Self {
        // Another value starts over. (A read that took the counter just before a change may
        // start over at the older value: the next read then reads its rows once more.)
        if self.generation != Some(generation) {
            self.endpoints.clear();
            self.subscriptions.clear();
            self.generation = Some(generation);
        }
        self
    }
}

impl EndpointCache {
    /// The live endpoint `id`: kept if nothing changed in `endpoints` since it was read, else
    /// read by `read_row` (and kept).
    pub(super) fn endpoint(
        &self,
        conn: &Connection,
        id: EndpointId,
        sealer: &SecretSealer,
        read_row: impl Fn(
            &Connection,
            EndpointId,
            &SecretSealer,
        ) -> Result<Option<Endpoint>, StoreError>,
    ) -> Result<Option<Endpoint>, StoreError> {
        let Some(generation) = read_generation(conn)? else {
            return read_row(conn, id, sealer);
        };
        if let Some(endpoint) = self.kept_at(generation, id) {
            return Ok(Some(endpoint));
        }
        let endpoint = read_row(conn, id, sealer)?;
        // A deleted or unknown endpoint is not kept: those reads are rare.
        if let Some(endpoint) = &endpoint {
            self.keep(generation, endpoint.clone());
        }
        Ok(endpoint)
    }

    fn kept_at(&self, generation: i64, id: EndpointId) -> Option<Endpoint> {
        let kept = self.lock();
        if kept.generation != Some(generation) {
            return None;
        }
        kept.endpoints.get(&id).cloned()
    }

    fn keep(&self, generation: i64, endpoint: Endpoint) {
        let mut kept = self.lock();
        let kept = kept.at(generation);
        if kept.endpoints.len() >= MAX_KEPT && !kept.endpoints.contains_key(&endpoint.id) {
            kept.endpoints.clear();
        }
        kept.endpoints.insert(endpoint.id, endpoint);
    }

    /// The tenant's subscriptions if kept under the counter as it is now; `None` (read them
    /// with [`Self::subscriptions`]) if not.
    pub(super) fn kept_subscriptions(
        &self,
        conn: &Connection,
        tenant: &Tenant,
    ) -> Result<Option<Subscriptions>, StoreError> {
        let Some(generation) = read_generation(conn)? else {
            return Ok(None);
        };
        let kept = self.lock();
        if kept.generation != Some(generation) {
            return Ok(None);
        }
        Ok(kept.subscriptions.get(tenant).cloned())
    }

    /// The tenant's subscriptions, read by `read_list` (and kept).
    pub(super) fn subscriptions(
        &self,
        conn: &Connection,
        tenant: &Tenant,
        read_list: impl FnOnce(&Connection) -> Result<Subscriptions, StoreError>,
    ) -> Result<Subscriptions, StoreError> {
        let Some(generation) = read_generation(conn)? else {
            return read_list(conn);
        };
        let list = read_list(conn)?;
        let mut kept = self.lock();
        let kept = kept.at(generation);
        if kept.subscriptions.len() >= MAX_KEPT && !kept.subscriptions.contains_key(tenant) {
            kept.subscriptions.clear();
        }
        kept.subscriptions.insert(tenant.clone(), list.clone());
        Ok(list)
    }

    /// The map holds only copies, so one a panic left behind is still sound.
    fn lock(&self) -> MutexGuard<'_, Kept> {
        self.kept
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The counter; `None` if its row is missing, so a lost row costs speed, not every read.
fn read_generation(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT generation FROM endpoint_generation WHERE id = 1")?
        .query_row([], |row| row.get(0))
        .optional()?)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use hookstream_signing::SigningSecret;

    use super::*;
    use crate::sqlite::{SqliteStore, connect, live_endpoint};

    /// The row is read once while nothing changes, and again after a change made on another
    /// connection (another process), whichever column it touches.
    #[tokio::test]
    async fn a_kept_endpoint_is_read_again_only_after_a_change_from_any_connection() {
        let (_dir, path, id, secret) = store_with_endpoint().await;
        let sealer = SecretSealer::plaintext();
        let other = connect(&path).expect("another process's connection");
        let conn = connect(&path).expect("this process's connection");
        let cache = EndpointCache::default();
        let rows_read = AtomicUsize::new(0);
        let read = || {
            cache
                .endpoint(&conn, id, &sealer, |conn, id, sealer| {
                    rows_read.fetch_add(1, Ordering::Relaxed);
                    live_endpoint(conn, id, sealer)
                })
                .expect("the endpoint reads")
                .expect("the endpoint is live")
        };
        assert_eq!(read().secret, secret);
        assert!(!read().paused);
        assert_eq!(rows_read.load(Ordering::Relaxed), 1, "kept after one read");

        other
            .execute(
                "UPDATE endpoints SET paused = 1 WHERE id = ?1",
                [id.to_string()],
            )
            .expect("the pause is written");
        assert!(read().paused, "the change shows");
        assert!(read().paused);
        assert_eq!(rows_read.load(Ordering::Relaxed), 2, "read once more");

        other
            .execute("DELETE FROM endpoints WHERE id = ?1", [id.to_string()])
            .expect("the endpoint is removed");
        let gone = cache
            .endpoint(&conn, id, &sealer, live_endpoint)
            .expect("the read runs");
        assert!(
            gone.is_none(),
            "a removed endpoint is not served from memory"
        );
    }

    /// A change that lands just after the row was read, before it is kept, is not hidden:
    /// the counter was read before the row, so the next read reads the row again.
    #[tokio::test]
    async fn a_change_landing_while_the_row_is_read_shows_in_the_next_read() {
        let (_dir, path, id, _) = store_with_endpoint().await;
        let sealer = SecretSealer::plaintext();
        let other = connect(&path).expect("another process's connection");
        let conn = connect(&path).expect("this process's connection");
        let cache = EndpointCache::default();
        let changed = std::sync::atomic::AtomicBool::new(false);
        let first = cache
            .endpoint(&conn, id, &sealer, |conn, id, sealer| {
                let row = live_endpoint(conn, id, sealer);
                if !changed.swap(true, Ordering::Relaxed) {
                    other
                        .execute(
                            "UPDATE endpoints SET paused = 1 WHERE id = ?1",
                            [id.to_string()],
                        )
                        .expect("the pause is written");
                }
                row
            })
            .expect("the endpoint reads")
            .expect("the endpoint is live");
        assert!(!first.paused, "read before the pause");
        let next = cache
            .endpoint(&conn, id, &sealer, live_endpoint)
            .expect("the endpoint reads")
            .expect("the endpoint is live");
        assert!(next.paused, "the pause that landed meanwhile shows");
    }

    /// Without the counter's row nothing is kept, and every read still reads the endpoint.
    #[tokio::test]
    async fn without_the_counter_every_read_reads_the_row() {
        let (_dir, path, id, _) = store_with_endpoint().await;
        let sealer = SecretSealer::plaintext();
        let conn = connect(&path).expect("a connection");
        conn.execute("DELETE FROM endpoint_generation", [])
            .expect("the counter's row is removed");
        let cache = EndpointCache::default();
        let rows_read = AtomicUsize::new(0);
        for _ in 0..2 {
            let endpoint = cache
                .endpoint(&conn, id, &sealer, |conn, id, sealer| {
                    rows_read.fetch_add(1, Ordering::Relaxed);
                    live_endpoint(conn, id, sealer)
                })
                .expect("the endpoint reads");
            assert!(endpoint.is_some());
        }
        assert_eq!(rows_read.load(Ordering::Relaxed), 2);
        let acme = Tenant::parse("acme", "tenant").expect("a tenant");
        let kept = cache
            .kept_subscriptions(&conn, &acme)
            .expect("the check runs");
        assert!(kept.is_none(), "no list is served without the counter");
    }

    /// The triggers that move the counter exist on the newest schema: a migration that
    /// rebuilds `endpoints` drops them, and kept endpoints would then never be read again.
    #[tokio::test]
    async fn every_change_to_endpoints_moves_the_counter() {
        let (_dir, path, ..) = store_with_endpoint().await;
        let conn = connect(&path).expect("a connection");
        let mut triggers: Vec<String> = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'endpoints'
                 ORDER BY name",
            )
            .expect("the schema reads")
            .query_map([], |row| row.get(0))
            .expect("the schema reads")
            .collect::<Result<_, _>>()
            .expect("the names read");
        triggers.sort();
        assert_eq!(
            triggers,
            [
                "endpoints_deleted",
                "endpoints_inserted",
                "endpoints_updated"
            ]
        );
    }

    /// A store with one live endpoint of tenant `acme`, written on a connection of its own.
    async fn store_with_endpoint() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        EndpointId,
        SigningSecret,
    ) {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("store.db");
        let sealer = SecretSealer::plaintext();
        SqliteStore::open(&path, sealer.clone())
            .await
            .expect("the store opens");
        let id = EndpointId::generate();
        let secret = SigningSecret::generate().expect("a secret");
        let sealed = sealer.seal(id, &secret).expect("the secret seals");
        connect(&path)
            .expect("a connection")
            .execute(
                "INSERT INTO endpoints (id, tenant, url, event_types, secret, disabled, created_at, updated_at)
                 VALUES (?1, 'acme', 'https://hooks.example.com/in', '[\"*\"]', ?2, 0, 0, 0)",
                rusqlite::params![id.to_string(), sealed],
            )
            .expect("the endpoint is written");
        (dir, path, id, secret)
    }

    /// A tenant's subscriptions are kept until any endpoint changes, on any connection.
    #[tokio::test]
    async fn kept_subscriptions_go_with_a_change_from_any_connection() {
        let (_dir, path, id, _) = store_with_endpoint().await;
        let other = connect(&path).expect("another process's connection");
        let conn = connect(&path).expect("this process's connection");
        let cache = EndpointCache::default();
        let acme = Tenant::parse("acme", "tenant").expect("a tenant");
        let read_list = |conn: &Connection| {
            crate::sqlite::query_all(
                conn,
                "SELECT id, event_types FROM endpoints
                 WHERE tenant = 'acme' AND deleted_at IS NULL AND disabled = 0",
                [],
                crate::sqlite::rows::subscriber,
            )
        };
        let kept = |cache: &EndpointCache| {
            cache
                .kept_subscriptions(&conn, &acme)
                .expect("the counter reads")
                .map(|list| list.into_iter().map(|(id, _)| id).collect::<Vec<_>>())
        };
        assert_eq!(kept(&cache), None, "nothing kept before the first read");
        let read = cache
            .subscriptions(&conn, &acme, read_list)
            .expect("the list reads");
        assert_eq!(read.len(), 1);
        assert_eq!(kept(&cache), Some(vec![id]));

        other
            .execute(
                "UPDATE endpoints SET disabled = 1 WHERE id = ?1",
                [id.to_string()],
            )
            .expect("the endpoint is disabled");
        assert_eq!(kept(&cache), None, "a change elsewhere drops the kept list");
        let read = cache
            .subscriptions(&conn, &acme, read_list)
            .expect("the list reads");
        assert!(
            read.is_empty(),
            "the disabled endpoint is gone from the list"
        );
    }

    /// A full set starts over instead of growing without bound.
    #[test]
    fn the_set_is_bounded() {
        let cache = EndpointCache::default();
        let sealer = SecretSealer::plaintext();
        // Opened as the store's connections are: after SQLite's process-wide settings.
        super::super::connection::keep_savepoint_journals_in_memory();
        let conn = Connection::open_in_memory().expect("a database");
        conn.execute_batch(
            "CREATE TABLE endpoint_generation (id INTEGER PRIMARY KEY, generation INTEGER);
             INSERT INTO endpoint_generation VALUES (1, 7);",
        )
        .expect("the counter");
        let template = sample_endpoint();
        for _ in 0..=MAX_KEPT {
            let endpoint = Endpoint {
                id: EndpointId::generate(),
                ..template.clone()
            };
            cache
                .endpoint(&conn, endpoint.id, &sealer, |_, _, _| {
                    Ok(Some(endpoint.clone()))
                })
                .expect("the read");
        }
        assert_eq!(cache.lock().endpoints.len(), 1, "started over when full");
    }

    fn sample_endpoint() -> Endpoint {
        use hookstream_model::destination::EndpointUrl;
        use hookstream_model::endpoint::Subscription;
        use hookstream_model::names::Tenant;
        Endpoint {
            id: EndpointId::generate(),
            tenant: Tenant::parse("acme", "tenant").expect("a tenant"),
            url: EndpointUrl::parse("https://hooks.example.com/in", "url").expect("a url"),
            subscription: Subscription::parse(&["*".to_owned()], "event_types")
                .expect("a subscription"),
            secret: SigningSecret::generate().expect("a secret"),
            previous_secret: None,
            disabled: false,
            max_attempts: None,
            paused: false,
            circuit: Default::default(),
            shaping: Default::default(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            updated_at: time::OffsetDateTime::UNIX_EPOCH,
        }
    }
}
