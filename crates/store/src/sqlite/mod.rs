//! The embedded store: one SQLite database file, shared by every process of a single-machine run.
//!
//! WAL journaling lets readers and one writer work at once across processes; write transactions
//! take the write lock up front (`BEGIN IMMEDIATE`) and wait for it (polling every 0.5 ms), so two
//! processes never deadlock upgrading a read lock. `synchronous = FULL`: a write is on disk when it
//! returns, because callers acknowledge clients and commit Kafka offsets on the strength of it.
//! Each process reads on a few connections ([`readers`]) and writes on another, through
//! [`writer`]'s group commit; a thread of its own moves the log into the database file
//! ([`checkpoints`]), so commits do not. Endpoints and subscriptions once read are kept and
//! checked against a counter every change to an endpoint moves ([`endpoint_cache`]).
//!
//! This module runs the [`Store`] methods on those connections; their SQL is in a module per
//! kind of row ([`events`], [`deliveries`], [`endpoints`], [`purge`]), as functions over an open
//! connection. [`replay`] and [`ordered`] implement the replay and strict-queue traits.

mod access;
mod checkpoints;
mod connection;
mod deliveries;
mod endpoint_cache;
mod endpoints;
mod events;
mod health;
mod migrations;
mod ordered;
mod purge;
mod queries;
mod readers;
mod replay;
mod rows;
mod secrets;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use time::OffsetDateTime;

use hookstream_model::delivery::{Attempt, Delivery, DeliveryStatus};
use hookstream_model::endpoint::{CircuitView, Endpoint, EndpointChanges, Subscription};
use hookstream_model::event::{Event, IdempotencyWindow, PublishState};
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::Tenant;
use hookstream_signing::SigningSecret;

use crate::installation::installation_key;
use crate::{
    AttemptClaim, ClaimOutcome, CreateEventOutcome, DeliveryFilter, NewAttempt, NewEvent, Page,
    PageRequest, Purged, RecordOutcome, SecretSealer, Store, StoreError,
};
use checkpoints::Checkpointer;
use connection::{checkpoint_reporter, connect};
use endpoint_cache::EndpointCache;
use endpoints::{live_endpoint, write_endpoint_settings};
use events::create_event_in;
use purge::purge_batch;
use queries::{clamp_limit, into_page, query_all, query_one};
use readers::Readers;
use rows::millis;
use writer::Writer;

/// The embedded SQLite store. Cheap to clone; clones share its connections.
#[derive(Clone)]
pub struct SqliteStore {
    readers: Arc<Readers>,
    /// Held, not used: the checkpoint thread runs while any clone of the store lives.
    _checkpoints: Arc<Checkpointer>,
    endpoints: Arc<EndpointCache>,
    writer: Writer,
    path: PathBuf,
    sealer: SecretSealer,
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Backend(err.to_string())
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`; `sealer` seals the
    /// signing secrets it stores.
    pub async fn open(path: &Path, sealer: SecretSealer) -> Result<Self, StoreError> {
        let path = path.to_owned();
        let opened = path.clone();
        let sealing = sealer.clone();
        let (readers, writer, checkpointer) = tokio::task::spawn_blocking(move || {
            if let Some(dir) = opened.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| StoreError::Backend(format!("creating {}: {e}", dir.display())))?;
            }
            let mut writer = connect(&opened)?;
            writer.pragma_update(None, "journal_mode", "WAL")?;
            writer.pragma_update(None, "synchronous", "FULL")?;
            migrations::migrate(&mut writer)?;
            secrets::seal_plain_secrets(&mut writer, &sealing)?;
            let readers = Readers::open(&opened)?;
            // Checkpoints run on their own thread; the writer checkpoints only as a backstop
            // (see `Writer::start`).
            writer.pragma_update(
                None,
                "journal_size_limit",
                checkpoints::LOG_FILE_LIMIT_BYTES,
            )?;
            let checkpointer = Checkpointer::start(
                checkpoints::connection(&opened)?,
                checkpoints::EVERY,
                checkpoint_reporter(),
            )?;
            Ok::<_, StoreError>((readers, writer, checkpointer))
        })
        .await
        .map_err(|e| StoreError::Backend(format!("opening store: {e}")))??;
        Ok(Self {
            readers: Arc::new(readers),
            _checkpoints: Arc::new(checkpointer),
            endpoints: Arc::default(),
            writer: Writer::start(writer, checkpoints::BACKSTOP_PAGES)?,
            path,
            sealer,
        })
    }

    /// Takes an event (by its stored id, which may not parse) out of the outbox for good.
    async fn set_aside(&self, id: String, reason: String) -> Result<(), StoreError> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE events SET publish_state = ?2, set_aside_reason = ?3 WHERE id = ?1",
                )?
                .execute(params![&id, PublishState::SetAside.as_str(), reason])?;
            if changed == 0 {
                return Err(StoreError::NotFound(id));
            }
            Ok(())
        })
        .await?;
        crate::metered::count_set_aside();
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a read off the async runtime ([`readers::read`]).
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        readers::read(&self.readers, work).await
    }

    /// Runs a read of a row or a few by their key, on this thread when it can
    /// ([`readers::point_read`]).
    async fn point_read<T: Send + 'static>(
        &self,
        work: impl Fn(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        readers::point_read(&self.readers, work).await
    }

    /// Runs `work` in a write transaction, shared with other writes queued at the same time;
    /// returns once it is committed to disk.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.write(work).await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let e = endpoint.clone();
        let sealed = self.sealer.seal(e.id, &e.secret)?;
        self.write(move |conn| endpoints::insert(conn, &e, &sealed))
            .await
    }

    async fn get_endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let sealer = self.sealer.clone();
        let endpoints = self.endpoints.clone();
        self.point_read(move |conn| endpoints.endpoint(conn, id, &sealer, live_endpoint))
            .await
    }

    async fn list_endpoints(
        &self,
        tenant: &Tenant,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, StoreError> {
        let tenant = tenant.to_string();
        let after = page.after.clone().unwrap_or_default();
        let limit = clamp_limit(page);
        let sealer = self.sealer.clone();
        self.read(move |conn| endpoints::page_of(conn, &tenant, &after, limit, &sealer))
            .await
    }

    async fn disable_endpoint(
        &self,
        id: EndpointId,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE endpoints SET disabled = 1, updated_at = ?2
                     WHERE id = ?1 AND deleted_at IS NULL AND disabled = 0",
                )?
                .execute(params![id.to_string(), millis(at)])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
        let e = endpoint.clone();
        self.write(move |conn| write_endpoint_settings(conn, &e))
            .await
    }

    async fn change_endpoint(
        &self,
        id: EndpointId,
        changes: &EndpointChanges,
        at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        let changes = changes.clone();
        let sealer = self.sealer.clone();
        // Read and written in one write transaction: nothing comes between.
        self.write(move |conn| {
            let Some(endpoint) = live_endpoint(conn, id, &sealer)? else {
                return Ok(None);
            };
            write_endpoint_settings(conn, &changes.apply(endpoint, at))?;
            // As stored (times in whole milliseconds), as a later read shows it.
            live_endpoint(conn, id, &sealer)
        })
        .await
    }

    async fn rotate_secret(
        &self,
        id: EndpointId,
        new: &SigningSecret,
        previous_expires_at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        let new = self.sealer.seal(id, new)?;
        let now = millis(OffsetDateTime::now_utc());
        let expires = millis(previous_expires_at);
        let sealer = self.sealer.clone();
        self.write(move |conn| endpoints::rotate(conn, id, &new, expires, now, &sealer))
            .await
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError> {
        let now = millis(OffsetDateTime::now_utc());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE endpoints SET deleted_at = ?2, updated_at = ?2
                     WHERE id = ?1 AND deleted_at IS NULL",
                )?
                .execute(params![id.to_string(), now])?;
            Ok(changed == 1)
        })
        .await
    }

    async fn subscriptions(
        &self,
        tenant: &Tenant,
    ) -> Result<Vec<(EndpointId, Subscription)>, StoreError> {
        // Kept ones are checked on this thread; a list to read goes to the blocking pool.
        let kept = {
            let (endpoints, tenant) = (self.endpoints.clone(), tenant.clone());
            self.point_read(move |conn| endpoints.kept_subscriptions(conn, &tenant))
                .await?
        };
        if let Some(kept) = kept {
            return Ok(kept);
        }
        let (endpoints, tenant) = (self.endpoints.clone(), tenant.clone());
        self.read(move |conn| {
            endpoints.subscriptions(conn, &tenant, |conn| {
                query_all(
                    conn,
                    "SELECT id, event_types FROM endpoints
                     WHERE tenant = ?1 AND deleted_at IS NULL ORDER BY id",
                    [tenant.as_str()],
                    rows::subscriber,
                )
            })
        })
        .await
    }

    async fn create_events(
        &self,
        news: &[NewEvent],
        window: IdempotencyWindow,
    ) -> Result<Vec<CreateEventOutcome>, StoreError> {
        let news = news.to_vec();
        self.write(move |conn| {
            // All or nothing for the whole batch; a later event with the key of an earlier one in
            // the batch sees it, as it would in separate requests.
            news.iter()
                .map(|new| create_event_in(conn, new, window))
                .collect::<Result<Vec<_>, _>>()
        })
        .await
    }

    async fn mark_events_published(&self, ids: &[EventId]) -> Result<(), StoreError> {
        let ids = ids.to_vec();
        self.write(move |conn| events::mark_published(conn, &ids))
            .await
    }

    async fn set_aside_event(&self, id: EventId, reason: &str) -> Result<(), StoreError> {
        self.set_aside(id.to_string(), reason.to_owned()).await
    }

    async fn unpublished_events(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(Event, Vec<Delivery>)>, StoreError> {
        let before = millis(before);
        let (waiting, undecodable) = self
            .read(move |conn| events::unpublished(conn, before, limit))
            .await?;
        // An event that does not decode can never be published: set aside, so the sweep goes
        // on with the others.
        for (id, reason) in undecodable {
            tracing::error!(event = %id, %reason, "an event in the outbox does not decode; set aside");
            self.set_aside(id, format!("does not decode: {reason}"))
                .await?;
        }
        Ok(waiting)
    }

    async fn set_circuit(&self, id: EndpointId, circuit: &CircuitView) -> Result<(), StoreError> {
        let state = circuit.state.as_str();
        let open_until = circuit.open_until.map(millis);
        self.write(move |conn| {
            conn.prepare_cached(
                "UPDATE endpoints SET circuit_state = ?2, circuit_open_until = ?3 WHERE id = ?1",
            )?
            .execute(params![id.to_string(), state, open_until])?;
            Ok(())
        })
        .await
    }

    async fn sending_paused(&self) -> Result<bool, StoreError> {
        self.read(|conn| {
            let value: Option<String> = conn
                .prepare_cached("SELECT value FROM control WHERE name = 'sending_paused'")?
                .query_row([], |row| row.get(0))
                .optional()?;
            Ok(value.as_deref() == Some("true"))
        })
        .await
    }

    async fn set_sending_paused(&self, paused: bool) -> Result<(), StoreError> {
        let now = millis(OffsetDateTime::now_utc());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO control (name, value, updated_at) VALUES ('sending_paused', ?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
            )?
            .execute(params![if paused { "true" } else { "false" }, now])?;
            Ok(())
        })
        .await
    }

    async fn record_installation_setting(
        &self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        let (key, value) = (installation_key(name), value.to_owned());
        let now = millis(OffsetDateTime::now_utc());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO control (name, value, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![key, value, now])?;
            Ok(conn
                .prepare_cached("SELECT value FROM control WHERE name = ?1")?
                .query_row([&key], |row| row.get(0))?)
        })
        .await
    }

    async fn installation_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let key = installation_key(name);
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM control WHERE name = ?1")?
                .query_row([&key], |row| row.get(0))
                .optional()?)
        })
        .await
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        // Not a point read: off the delivery path, and its table is the one most likely to be
        // read from disk rather than from memory.
        self.read(move |conn| {
            query_one(
                conn,
                &format!(
                    "SELECT {} FROM deliveries WHERE id = ?1",
                    rows::DELIVERY_COLUMNS
                ),
                [id.to_string()],
                rows::delivery,
            )
        })
        .await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        let mut conditions = vec!["id > ?".to_owned()];
        let mut values = vec![SqlValue::Text(page.after.clone().unwrap_or_default())];
        let mut push = |column: &str, value: Option<String>| {
            if let Some(value) = value {
                conditions.push(format!("{column} = ?"));
                values.push(SqlValue::Text(value));
            }
        };
        push("tenant", filter.tenant.as_ref().map(|t| t.to_string()));
        push("event_id", filter.event_id.map(|id| id.to_string()));
        push("endpoint_id", filter.endpoint_id.map(|id| id.to_string()));
        push("status", filter.status.map(|s| s.as_str().to_owned()));
        push(
            "event_type",
            filter.event_type.as_ref().map(|t| t.to_string()),
        );
        if let Some(since) = filter.since {
            conditions.push("created_at >= ?".to_owned());
            values.push(SqlValue::Integer(millis(since)));
        }
        if let Some(until) = filter.until {
            conditions.push("created_at < ?".to_owned());
            values.push(SqlValue::Integer(millis(until)));
        }
        let limit = clamp_limit(page);
        values.push(SqlValue::Integer(i64::from(limit) + 1));
        let sql = format!(
            "SELECT {} FROM deliveries WHERE {} ORDER BY id LIMIT ?",
            rows::DELIVERY_COLUMNS,
            conditions.join(" AND ")
        );
        self.read(move |conn| {
            let items = query_all(conn, &sql, params_from_iter(values), rows::delivery)?;
            Ok(into_page(items, limit, |d| d.id.to_string()))
        })
        .await
    }

    async fn claim_attempt(
        &self,
        id: DeliveryId,
        attempts_made: u32,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        self.write(move |conn| deliveries::claim(conn, id, attempts_made, lease))
            .await
    }

    async fn release_claim(&self, claim: &AttemptClaim) -> Result<(), StoreError> {
        let claim = claim.clone();
        self.write(move |conn| deliveries::release(conn, &claim))
            .await
    }

    async fn record_attempt(
        &self,
        claim: &AttemptClaim,
        attempt: &NewAttempt,
        status: DeliveryStatus,
    ) -> Result<RecordOutcome, StoreError> {
        let (claim, a) = (claim.clone(), attempt.clone());
        self.write(move |conn| deliveries::record(conn, &claim, &a, status))
            .await
    }

    async fn list_attempts(&self, id: DeliveryId) -> Result<Vec<Attempt>, StoreError> {
        self.read(move |conn| {
            query_all(
                conn,
                &format!(
                    "SELECT {} FROM attempts WHERE delivery_id = ?1 ORDER BY number",
                    rows::ATTEMPT_COLUMNS
                ),
                [id.to_string()],
                rows::attempt,
            )
        })
        .await
    }

    async fn reseal_secrets(&self) -> Result<crate::SealingCensus, StoreError> {
        self.reseal_all_secrets().await
    }

    async fn purge_expired(
        &self,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Result<Purged, StoreError> {
        let now_ms = millis(now);
        let cutoff = millis(now - retention);
        let mut purged = Purged::default();
        // In rounds, each its own transaction, until every kind (a replay batch's items too)
        // comes back short.
        loop {
            let round = self
                .write(move |conn| purge_batch(conn, now_ms, cutoff))
                .await?;
            let batch = &round.purged;
            purged.idempotency_keys += batch.idempotency_keys;
            purged.deliveries += batch.deliveries;
            purged.attempts += batch.attempts;
            purged.events += batch.events;
            purged.dead_letters += batch.dead_letters;
            purged.batches += batch.batches;
            if round.was_last() {
                return Ok(purged);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 20: a write waiting for another process's lock polls for it, and gets it once
    /// that process commits, instead of failing or sleeping through SQLite's long back-off.
    #[tokio::test]
    async fn a_write_waits_for_another_connections_lock_and_then_commits() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("store.db");
        let store = SqliteStore::open(&path, SecretSealer::plaintext())
            .await
            .expect("the store opens");
        // Another process's writer, holding the write lock.
        let other = connect(&path).expect("a second connection");
        other
            .execute_batch("BEGIN IMMEDIATE")
            .expect("the other connection takes the lock");
        let (locked_tx, locked_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            // Held until the store's write is known to be waiting on it.
            let _ = locked_rx.recv();
            other.execute_batch("COMMIT")
        });
        let mut write = tokio::spawn({
            let store = store.clone();
            async move { store.set_sending_paused(true).await }
        });
        // While the lock is held the write waits; without a busy handler it fails at once.
        let early = tokio::time::timeout(Duration::from_millis(300), &mut write).await;
        assert!(
            early.is_err(),
            "the write ended under a held lock: {early:?}"
        );
        locked_tx.send(()).expect("the holder is waiting");
        holder
            .join()
            .expect("the holder thread")
            .expect("the other connection commits");
        write
            .await
            .expect("the write task")
            .expect("the write commits once the lock is free");
        assert!(store.sending_paused().await.expect("a read"));
    }
}
