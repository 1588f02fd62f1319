//! The ScyllaDB store, for deployments that outgrow one machine.
//!
//! - Consistency: every statement runs at `LOCAL_QUORUM` (a write acknowledged to a client or
//!   before a Kafka offset commit is on a quorum of the local datacenter's replicas); the
//!   lightweight transactions (idempotency keys, attempt counting, endpoint changes) use
//!   `LOCAL_SERIAL`.
//! - Routing: statements are prepared, so the driver's default policy routes each one to a
//!   replica that owns its partition (token-aware).
//! - Retention: rows that grow with traffic are written `USING TTL` (see [`cql`]).
//! - Lists page by id (ids sort by creation time), one bounded partition read at a time; lists
//!   by endpoint or tenant walk day buckets from the cursor's day.

mod access;
mod cql;
mod health;
mod intake;
mod location;
mod ordered;
mod replay;
mod secrets;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::frame::types::{Consistency, SerialConsistency};
use scylla::response::query_result::QueryResult;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlTimestamp, MaybeUnset};
use time::OffsetDateTime;

use hookstream_model::delivery::{Attempt, Delivery, DeliveryStatus};
use hookstream_model::endpoint::{CircuitView, Endpoint, EndpointChanges, Subscription};
use hookstream_model::event::{Event, IdempotencyWindow};
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::Tenant;
use hookstream_model::shaping::Shaping;
use hookstream_signing::SigningSecret;

use crate::claim::{ClaimDecision, RecordDecision, decide_claim, decide_record};
use crate::installation::installation_key;
use crate::raw::millis;
use crate::{
    AttemptClaim, ClaimOutcome, CreateEventOutcome, DeliveryFilter, NewAttempt, NewEvent, Page,
    PageRequest, Purged, RecordOutcome, SecretSealer, Store, StoreError,
};
use cql::{day_of, ttl_seconds};

/// Turns a driver error into a store error that says what was being done.
fn backend(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    move |err| StoreError::Backend(format!("scylla: {what}: {err}"))
}

macro_rules! ctx {
    ($what:literal) => {
        |err| backend($what)(&err)
    };
}

// After `ctx!`, which they use.
mod decode;
mod deliveries;
mod migrations;

use decode::{
    AttemptRow, DeliveryRow, DeliveryWithClaimRow, EndpointRow, EventRow, SubscriberRow, applied,
    first_row, into_page, raw_attempt, raw_delivery, raw_endpoint, rows,
};
pub use location::ScyllaLocation;
use migrations::migrate;

/// The `control` row naming the first day of `dead_letters_by_tenant_day` lists.
const TENANT_DEAD_LETTERS_FROM: &str = "dead_letters_by_tenant_from";

/// How often a compare-and-set is tried again after another writer changed the row first.
const CAS_ROUNDS: usize = 16;
/// Events one `mark_events_published` call marks at once.
const MARKS_AT_ONCE: usize = 16;

fn ts(at: OffsetDateTime) -> CqlTimestamp {
    CqlTimestamp(millis(at))
}

/// Declares the prepared statements once: the struct and the code preparing each at open.
macro_rules! prepared_statements {
    ($($name:ident = $text:expr,)*) => {
        struct Prepared {
            $($name: PreparedStatement,)*
        }

        impl Prepared {
            async fn new(session: &Session) -> Result<Self, StoreError> {
                Ok(Self {
                    $($name: prepare(session, &$text).await?,)*
                })
            }
        }
    };
}

async fn prepare(session: &Session, text: &str) -> Result<PreparedStatement, StoreError> {
    session
        .prepare(text)
        .await
        .map_err(|e| StoreError::Backend(format!("scylla: preparing `{text}`: {e}")))
}

// The prepared statements, prepared once at open.
prepared_statements! {
    insert_endpoint = cql::insert_endpoint(),
    insert_endpoint_of_tenant = cql::INSERT_ENDPOINT_OF_TENANT,
    select_endpoint = cql::select_endpoint(),
    select_endpoint_ids_of_tenant = cql::SELECT_ENDPOINT_IDS_OF_TENANT,
    update_endpoint = cql::UPDATE_ENDPOINT,
    change_endpoint = cql::CHANGE_ENDPOINT,
    change_endpoint_shaping = cql::CHANGE_ENDPOINT_SHAPING,
    select_shaping = cql::SELECT_SHAPING,
    disable_endpoint = cql::DISABLE_ENDPOINT,
    delete_endpoint = cql::DELETE_ENDPOINT,
    rotate_secret = cql::ROTATE_SECRET,
    select_secret = cql::SELECT_SECRET,
    select_subscriber = cql::SELECT_SUBSCRIBER,
    select_endpoint_tenant = cql::SELECT_ENDPOINT_TENANT,
    set_circuit = cql::SET_CIRCUIT,
    claim_key = cql::CLAIM_KEY,
    reclaim_key = cql::RECLAIM_KEY,
    select_key = cql::SELECT_KEY,
    insert_event = cql::insert_event(),
    delete_event = cql::DELETE_EVENT,
    select_event = cql::select_event(),
    mark_published = cql::MARK_PUBLISHED,
    set_event_state = cql::SET_EVENT_STATE,
    decide_request = cql::DECIDE_REQUEST,
    select_request = cql::SELECT_REQUEST,
    release_key = cql::RELEASE_KEY,
    insert_outbox = cql::INSERT_OUTBOX,
    delete_outbox = cql::DELETE_OUTBOX,
    select_outbox = cql::SELECT_OUTBOX,
    delete_unpublished = cql::DELETE_UNPUBLISHED,
    select_unpublished = cql::SELECT_UNPUBLISHED,
    write_delivery = cql::WRITE_DELIVERY,
    delete_delivery = cql::DELETE_DELIVERY,
    select_delivery = cql::select_delivery(),
    insert_delivery_of_event = cql::INSERT_DELIVERY_OF_EVENT,
    insert_delivery_of_endpoint = cql::INSERT_DELIVERY_OF_ENDPOINT,
    insert_delivery_of_tenant = cql::INSERT_DELIVERY_OF_TENANT,
    select_delivery_ids_of_event = cql::SELECT_DELIVERY_IDS_OF_EVENT,
    select_delivery_ids_of_endpoint = cql::SELECT_DELIVERY_IDS_OF_ENDPOINT,
    select_delivery_ids_of_tenant = cql::SELECT_DELIVERY_IDS_OF_TENANT,
    select_delivery_with_claim = cql::select_delivery_with_claim(),
    claim_attempt = cql::CLAIM_ATTEMPT,
    release_claim = cql::RELEASE_CLAIM,
    count_attempt = cql::COUNT_ATTEMPT,
    finish_attempt = cql::FINISH_ATTEMPT,
    insert_attempt = cql::insert_attempt(),
    select_attempts = cql::select_attempts(),
    select_control = cql::SELECT_CONTROL,
    upsert_endpoint_health = cql::UPSERT_ENDPOINT_HEALTH,
    select_endpoint_health = cql::SELECT_ENDPOINT_HEALTH,
    upsert_control = cql::UPSERT_CONTROL,
    insert_dead_letter = cql::INSERT_DEAD_LETTER,
    insert_dead_letter_of_day = cql::INSERT_DEAD_LETTER_OF_DAY,
    insert_dead_letter_of_tenant_day = cql::INSERT_DEAD_LETTER_OF_TENANT_DAY,
    select_dead_letters_of_tenant_day = cql::SELECT_DEAD_LETTERS_OF_TENANT_DAY,
    insert_control_once = cql::INSERT_CONTROL_ONCE,
    select_dead_letter = cql::SELECT_DEAD_LETTER,
    select_dead_letters_of_day = cql::SELECT_DEAD_LETTERS_OF_DAY,
    claim_dead_letter = cql::CLAIM_DEAD_LETTER,
    insert_batch = cql::INSERT_BATCH,
    select_batch = cql::SELECT_BATCH,
    insert_batch_id = cql::INSERT_BATCH_ID,
    select_batch_ids = cql::SELECT_BATCH_IDS,
    insert_running = cql::INSERT_RUNNING,
    delete_running = cql::DELETE_RUNNING,
    select_running = cql::SELECT_RUNNING,
    finish_batch = cql::FINISH_BATCH,
    touch_batch = cql::TOUCH_BATCH,
    insert_item = cql::INSERT_ITEM,
    select_items = cql::SELECT_ITEMS,
    select_item = cql::SELECT_ITEM,
    decide_item = cql::DECIDE_ITEM,
    publish_item = cql::PUBLISH_ITEM,
    insert_batch_id_of_tenant = cql::INSERT_BATCH_ID_OF_TENANT,
    select_batch_ids_of_tenant = cql::SELECT_BATCH_IDS_OF_TENANT,
    insert_api_key = cql::INSERT_API_KEY,
    insert_api_key_of_tenant = cql::INSERT_API_KEY_OF_TENANT,
    select_api_key = cql::SELECT_API_KEY,
    select_api_key_ids_of_tenant = cql::SELECT_API_KEY_IDS_OF_TENANT,
    revoke_api_key = cql::REVOKE_API_KEY,
    insert_queued = cql::INSERT_QUEUED,
    select_queue_head = cql::SELECT_QUEUE_HEAD,
    delete_queued = cql::DELETE_QUEUED,
    insert_queued_endpoint = cql::INSERT_QUEUED_ENDPOINT,
    select_queued_endpoints = cql::SELECT_QUEUED_ENDPOINTS,
    delete_queued_endpoint = cql::DELETE_QUEUED_ENDPOINT,
    select_queue_progress = cql::SELECT_QUEUE_PROGRESS,
    update_queue_progress = cql::UPDATE_QUEUE_PROGRESS,
}

/// Statement failures a test planned: `skip` statements run, then `fail` fail.
#[derive(Default)]
struct PlannedFaults {
    skip: AtomicU64,
    fail: AtomicU64,
}

impl PlannedFaults {
    fn fails_now(&self) -> bool {
        let take = |counter: &AtomicU64| {
            counter
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
        };
        if self.fail.load(Ordering::SeqCst) == 0 || take(&self.skip) {
            return false;
        }
        take(&self.fail)
    }
}

/// The ScyllaDB store. Cheap to clone; clones share one session.
#[derive(Clone)]
pub struct ScyllaStore {
    session: Arc<Session>,
    statements: Arc<Prepared>,
    retention: Duration,
    sealer: SecretSealer,
    /// When the outbox table of older versions was last found empty (see [`intake`]).
    legacy_outbox_checked: Arc<std::sync::Mutex<Option<tokio::time::Instant>>>,
    /// The first day whose dead letters are also kept per tenant, once known (see
    /// `tenant_dead_letters_from`).
    tenant_dead_letters_from: Arc<std::sync::OnceLock<i32>>,
    /// Faults planned by a test: see [`Self::fail_statements`].
    planned_faults: Arc<PlannedFaults>,
}

impl ScyllaStore {
    /// Connects, creates the keyspace if missing, applies migrations and prepares statements.
    /// Rows that grow with traffic live for `retention`.
    pub async fn open(
        location: &ScyllaLocation,
        retention: Duration,
        sealer: SecretSealer,
    ) -> Result<Self, StoreError> {
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .build();
        let session = SessionBuilder::new()
            .known_nodes(&location.nodes)
            .default_execution_profile_handle(profile.into_handle())
            .build()
            .await
            .map_err(ctx!("connecting"))?;
        let keyspace = &location.keyspace;
        session
            .query_unpaged(
                format!(
                    "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
                     {{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
                    location.replication_factor
                ),
                (),
            )
            .await
            .map_err(ctx!("creating the keyspace"))?;
        session
            .use_keyspace(keyspace, false)
            .await
            .map_err(ctx!("using the keyspace"))?;
        migrate(&session).await?;
        let statements = Prepared::new(&session).await?;
        let store = Self {
            session: Arc::new(session),
            statements: Arc::new(statements),
            retention,
            sealer,
            legacy_outbox_checked: Arc::default(),
            tenant_dead_letters_from: Arc::default(),
            planned_faults: Arc::default(),
        };
        store.seal_plain_secrets().await?;
        Ok(store)
    }

    /// For fault tests: from the `nth` statement this handle (and its clones) runs from now,
    /// `count` statements fail with a backend error, as a node timing out would, instead of
    /// reaching the node. A process that crashes is `count = u64::MAX`.
    #[doc(hidden)]
    pub fn fail_statements(&self, nth: u64, count: u64) {
        self.planned_faults
            .skip
            .store(nth.saturating_sub(1), Ordering::SeqCst);
        self.planned_faults.fail.store(count, Ordering::SeqCst);
    }

    /// The first day whose dead letters are all in `dead_letters_by_tenant_day`, once one is
    /// recorded (see [`Self::record_tenant_dead_letters`]); until then none is.
    async fn tenant_dead_letters_from(&self) -> Result<i32, StoreError> {
        if let Some(day) = self.tenant_dead_letters_from.get() {
            return Ok(*day);
        }
        let result = self
            .run(&self.statements.select_control, (TENANT_DEAD_LETTERS_FROM,))
            .await?;
        let Some((Some(value),)) = first_row::<(Option<String>,)>(result)? else {
            return Ok(i32::MAX);
        };
        let day = value
            .parse()
            .map_err(|_| StoreError::corrupt("control dead_letters_by_tenant_from", value))?;
        Ok(*self.tenant_dead_letters_from.get_or_init(|| day))
    }

    /// Records, the first time this version indexes a dead letter, the day from which tenant
    /// lists read `dead_letters_by_tenant_day`: two days on, so indexers of the older version
    /// (which write the shared table only) are gone by then; the first record stays.
    async fn record_tenant_dead_letters(&self) -> Result<(), StoreError> {
        if self.tenant_dead_letters_from.get().is_some() {
            return Ok(());
        }
        let now = OffsetDateTime::now_utc();
        let from = (day_of(now) + 2).to_string();
        self.run(
            &self.statements.insert_control_once,
            (TENANT_DEAD_LETTERS_FROM, from, ts(now)),
        )
        .await?;
        self.tenant_dead_letters_from().await.map(|_| ())
    }

    fn ttl(&self) -> i32 {
        ttl_seconds(self.retention)
    }

    async fn run(
        &self,
        statement: &PreparedStatement,
        values: impl scylla::serialize::row::SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        if self.planned_faults.fails_now() {
            return Err(StoreError::Backend(
                "scylla: executing: a planned fault (test)".into(),
            ));
        }
        self.session
            .execute_unpaged(statement, values)
            .await
            .map_err(|e| backend("executing")(&e))
    }
}

#[async_trait]
impl Store for ScyllaStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.session
            .query_unpaged("SELECT release_version FROM system.local", ())
            .await
            .map(|_| ())
            .map_err(ctx!("ping"))
    }

    async fn create_endpoint(&self, e: &Endpoint) -> Result<(), StoreError> {
        let id = e.id.to_string();
        self.run(
            &self.statements.insert_endpoint,
            (
                &id,
                e.tenant.as_str(),
                e.url.as_str(),
                e.subscription.to_list(),
                self.sealer.seal(e.id, &e.secret)?,
                e.disabled,
                ts(e.created_at),
                ts(e.updated_at),
                e.max_attempts.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                e.paused,
                e.circuit.state.as_str(),
                e.circuit.open_until.map(ts),
                e.shaping.to_json(),
            ),
        )
        .await?;
        self.run(
            &self.statements.insert_endpoint_of_tenant,
            (e.tenant.as_str(), &id),
        )
        .await?;
        Ok(())
    }

    async fn get_endpoint(&self, id: EndpointId) -> Result<Option<Endpoint>, StoreError> {
        let result = self
            .run(&self.statements.select_endpoint, (id.to_string(),))
            .await?;
        first_row::<EndpointRow>(result)?
            .and_then(raw_endpoint)
            .map(|raw| raw.decode(&self.sealer))
            .transpose()
    }

    async fn list_endpoints(
        &self,
        tenant: &Tenant,
        page: &PageRequest,
    ) -> Result<Page<Endpoint>, StoreError> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT);
        let wanted = limit as usize + 1;
        let mut cursor = page.after.clone().unwrap_or_default();
        let mut items = Vec::new();
        // Deleted endpoints stay in the tenant's index; read on until the page is full.
        loop {
            let ids = self
                .ids(
                    &self.statements.select_endpoint_ids_of_tenant,
                    (tenant.as_str(), &cursor, wanted as i32),
                )
                .await?;
            let exhausted = ids.len() < wanted;
            for id in &ids {
                let id = EndpointId::parse(id, "id")
                    .map_err(|e| StoreError::corrupt("endpoint id", e))?;
                if let Some(endpoint) = self.get_endpoint(id).await? {
                    items.push(endpoint);
                }
            }
            match ids.last() {
                Some(last) if !exhausted && items.len() < wanted => cursor = last.clone(),
                _ => break,
            }
        }
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|e| e.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn disable_endpoint(
        &self,
        id: EndpointId,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        applied(
            self.run(&self.statements.disable_endpoint, (ts(at), id.to_string()))
                .await?,
        )
    }

    async fn update_endpoint(&self, e: &Endpoint) -> Result<bool, StoreError> {
        applied(
            self.run(
                &self.statements.update_endpoint,
                (
                    e.url.as_str(),
                    e.subscription.to_list(),
                    e.disabled,
                    ts(e.updated_at),
                    e.max_attempts.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
                    e.paused,
                    e.shaping.to_json(),
                    e.id.to_string(),
                ),
            )
            .await?,
        )
    }

    async fn change_endpoint(
        &self,
        id: EndpointId,
        changes: &EndpointChanges,
        at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        // Only the given columns are written, each its own cell, so a change made side by side
        // (a pause, a `410` disabling it) is kept without a read-compare-retry. The settings
        // document is the exception: written whole, under a compare-and-set on what it was.
        for _ in 0..5 {
            let result = self
                .run(&self.statements.select_shaping, (id.to_string(),))
                .await?;
            let Some((Some(tenant), stored, None)) =
                first_row::<(Option<String>, Option<String>, Option<CqlTimestamp>)>(result)?
            else {
                return Ok(None);
            };
            let shaping = if changes.changes_shaping() {
                let current = Shaping::from_json(stored.as_deref())
                    .map_err(|e| StoreError::corrupt("endpoint shaping", e))?
                    .within_bounds();
                Some(changes.apply_to_shaping(current).to_json())
            } else {
                None
            };
            let columns = (
                MaybeUnset::from_option(changes.url.as_ref().map(|u| u.as_str())),
                MaybeUnset::from_option(changes.subscription.as_ref().map(Subscription::to_list)),
                MaybeUnset::from_option(changes.disabled),
                ts(at),
                MaybeUnset::from_option(
                    changes
                        .max_attempts
                        .map(|n| n.map(|n| i32::try_from(n).unwrap_or(i32::MAX))),
                ),
                MaybeUnset::from_option(changes.paused),
                MaybeUnset::from_option(shaping.clone()),
                id.to_string(),
                tenant.as_str(),
            );
            let result = match shaping {
                None => self.run(&self.statements.change_endpoint, columns).await?,
                Some(_) => {
                    let (a, b, c, d, e, f, g, h, i) = columns;
                    let condition = (a, b, c, d, e, f, g, h, i, stored.as_deref());
                    self.run(&self.statements.change_endpoint_shaping, condition)
                        .await?
                }
            };
            if applied(result)? {
                return self.get_endpoint(id).await;
            }
            // Deleted meanwhile, or its settings changed since they were read: read again.
        }
        Err(StoreError::Backend(
            "scylla: the endpoint's settings kept changing; try again".into(),
        ))
    }

    async fn rotate_secret(
        &self,
        id: EndpointId,
        new: &SigningSecret,
        previous_expires_at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        // Compare-and-set on the secret read: of two rotations racing, one wins and the other
        // reads again, so the secret that retires is always the one that was current.
        // The compare is on the stored (sealed) text, which is what the row holds.
        let sealed = self.sealer.seal(id, new)?;
        for _ in 0..5 {
            let result = self
                .run(&self.statements.select_secret, (id.to_string(),))
                .await?;
            let Some((Some(current), deleted_at)) =
                first_row::<(Option<String>, Option<CqlTimestamp>)>(result)?
            else {
                return Ok(None);
            };
            if deleted_at.is_some() {
                return Ok(None);
            }
            // A secret that does not open (planted in plain text, sealed under another key)
            // does not keep signing: rotating is how an operator gets rid of it.
            let retiring = self
                .sealer
                .open(&id.to_string(), &current)
                .is_ok()
                .then_some(current.as_str());
            let result = self
                .run(
                    &self.statements.rotate_secret,
                    (
                        &sealed,
                        retiring,
                        ts(previous_expires_at),
                        ts(OffsetDateTime::now_utc()),
                        id.to_string(),
                        &current,
                    ),
                )
                .await?;
            if applied(result)? {
                return self.get_endpoint(id).await;
            }
        }
        Err(StoreError::Backend(
            "scylla: the endpoint's secret kept changing; try again".into(),
        ))
    }

    async fn delete_endpoint(&self, id: EndpointId) -> Result<bool, StoreError> {
        let now = ts(OffsetDateTime::now_utc());
        applied(
            self.run(&self.statements.delete_endpoint, (now, now, id.to_string()))
                .await?,
        )
    }

    async fn subscriptions(
        &self,
        tenant: &Tenant,
    ) -> Result<Vec<(EndpointId, Subscription)>, StoreError> {
        let page = PageRequest::MAX_LIMIT as i32;
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let ids = self
                .ids(
                    &self.statements.select_endpoint_ids_of_tenant,
                    (tenant.as_str(), &cursor, page),
                )
                .await?;
            for id in &ids {
                let result = self.run(&self.statements.select_subscriber, (id,)).await?;
                // A disabled endpoint is subscribed too: its deliveries are kept until it is enabled.
                let Some((types, _disabled, deleted_at)) = first_row::<SubscriberRow>(result)?
                else {
                    continue;
                };
                let types = types.unwrap_or_default();
                let subscription = Subscription::parse(&types, "event_types")
                    .map_err(|e| StoreError::corrupt("endpoint event_types", e))?;
                if deleted_at.is_none() {
                    let id = EndpointId::parse(id, "id")
                        .map_err(|e| StoreError::corrupt("endpoint id", e))?;
                    out.push((id, subscription));
                }
            }
            match ids.last() {
                Some(last) if ids.len() == page as usize => cursor = last.clone(),
                _ => return Ok(out),
            }
        }
    }

    async fn create_events(
        &self,
        news: &[NewEvent],
        window: IdempotencyWindow,
    ) -> Result<Vec<CreateEventOutcome>, StoreError> {
        self.create_all(news, window).await
    }

    async fn mark_events_published(&self, ids: &[EventId]) -> Result<(), StoreError> {
        // Three round trips an event, so a group of hundreds (ingest gathers them) goes several
        // at a time, not one after another.
        futures::stream::iter(ids.iter().copied())
            .map(|id| self.mark_published(id))
            .buffer_unordered(MARKS_AT_ONCE)
            .try_collect::<()>()
            .await
    }

    async fn set_aside_event(&self, id: EventId, reason: &str) -> Result<(), StoreError> {
        self.set_aside(id, reason).await
    }

    async fn unpublished_events(
        &self,
        before: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(Event, Vec<Delivery>)>, StoreError> {
        self.sweep_outbox(before, limit).await
    }

    async fn set_circuit(&self, id: EndpointId, circuit: &CircuitView) -> Result<(), StoreError> {
        self.run(
            &self.statements.set_circuit,
            (
                circuit.state.as_str(),
                circuit.open_until.map(ts),
                id.to_string(),
            ),
        )
        .await
        .map(|_| ())
    }

    async fn sending_paused(&self) -> Result<bool, StoreError> {
        let result = self
            .run(&self.statements.select_control, ("sending_paused",))
            .await?;
        Ok(first_row::<(Option<String>,)>(result)?
            .and_then(|(value,)| value)
            .as_deref()
            == Some("true"))
    }

    async fn set_sending_paused(&self, paused: bool) -> Result<(), StoreError> {
        self.run(
            &self.statements.upsert_control,
            (
                "sending_paused",
                if paused { "true" } else { "false" },
                ts(OffsetDateTime::now_utc()),
            ),
        )
        .await
        .map(|_| ())
    }

    async fn record_installation_setting(
        &self,
        name: &str,
        value: &str,
    ) -> Result<String, StoreError> {
        // Read first: every start after the first finds it, without a Paxos round that pods
        // started together would contend on.
        if let Some(recorded) = self.installation_setting(name).await? {
            return Ok(recorded);
        }
        let key = installation_key(name);
        self.run(
            &self.statements.insert_control_once,
            (key.as_str(), value, ts(OffsetDateTime::now_utc())),
        )
        .await?;
        self.installation_setting(name).await?.ok_or_else(|| {
            StoreError::corrupt(
                "control",
                format!("{key} has no value after it was recorded"),
            )
        })
    }

    async fn installation_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let key = installation_key(name);
        let result = self
            .run(&self.statements.select_control, (key.as_str(),))
            .await?;
        Ok(match first_row::<(Option<String>,)>(result)? {
            Some((Some(recorded),)) => Some(recorded),
            _ => None,
        })
    }

    async fn get_delivery(&self, id: DeliveryId) -> Result<Option<Delivery>, StoreError> {
        self.delivery_by_text(&id.to_string()).await
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<Page<Delivery>, StoreError> {
        let limit = page.limit.clamp(1, PageRequest::MAX_LIMIT);
        let after = page.after.clone().unwrap_or_default();
        let keep = |d: &Delivery| {
            filter.tenant.as_ref().is_none_or(|t| d.tenant == *t)
                && filter.event_id.is_none_or(|id| d.event_id == id)
                && filter.endpoint_id.is_none_or(|id| d.endpoint_id == id)
                && filter.status.is_none_or(|s| d.status == s)
        };
        // Another tenant's endpoint or event lists nothing, without reading its deliveries
        // (the time a read of its days takes would tell its volume).
        if let Some(tenant) = &filter.tenant
            && !self.belongs_to(tenant, filter).await?
        {
            return Ok(into_page(Vec::new(), limit));
        }
        let found = if let Some(event_id) = filter.event_id {
            let ids = self
                .ids(
                    &self.statements.select_delivery_ids_of_event,
                    (event_id.to_string(), &after, i32::MAX),
                )
                .await?;
            let mut found: Vec<Delivery> = self
                .deliveries_by_ids(&ids)
                .await?
                .into_iter()
                .filter(keep)
                .collect();
            found.truncate(limit as usize + 1);
            found
        } else if let Some(endpoint_id) = filter.endpoint_id {
            self.scan_days(
                &self.statements.select_delivery_ids_of_endpoint,
                &endpoint_id.to_string(),
                &after,
                self.first_day(&after),
                limit,
                keep,
            )
            .await?
        } else if let Some(tenant) = &filter.tenant {
            self.scan_days(
                &self.statements.select_delivery_ids_of_tenant,
                tenant.as_str(),
                &after,
                self.first_day(&after),
                limit,
                keep,
            )
            .await?
        } else {
            return Err(StoreError::Backend(
                "scylla: listing deliveries needs a tenant, event or endpoint filter".into(),
            ));
        };
        Ok(into_page(found, limit))
    }

    async fn claim_attempt(
        &self,
        id: DeliveryId,
        attempts_made: u32,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        let text = id.to_string();
        // A lost compare-and-set means another copy changed the row since it was read: read it
        // again and decide again.
        for _ in 0..CAS_ROUNDS {
            let Some((delivery, stored)) = self.delivery_with_claim(&text).await? else {
                return Ok(ClaimOutcome::Missing);
            };
            let now = OffsetDateTime::now_utc();
            let number = match decide_claim(&delivery, &stored, attempts_made, now, lease) {
                ClaimDecision::Final => return Ok(ClaimOutcome::Final(delivery)),
                ClaimDecision::Stale => return Ok(ClaimOutcome::Stale(delivery)),
                ClaimDecision::Busy(until) => return Ok(ClaimOutcome::Busy { until }),
                ClaimDecision::Claim { number } => number,
            };
            let claim = AttemptClaim::new(id, number, now + lease);
            let taken = applied(
                self.run(
                    &self.statements.claim_attempt,
                    (
                        self.delivery_ttl(DeliveryStatus::Delivering),
                        ts(now),
                        claim.token.as_str(),
                        ts(claim.until),
                        &text,
                        delivery.status.as_str(),
                        i32::try_from(delivery.attempts).unwrap_or(i32::MAX),
                        stored.token.as_deref(),
                    ),
                )
                .await?,
            )?;
            if taken {
                let delivery = Delivery {
                    status: DeliveryStatus::Delivering,
                    updated_at: now,
                    ..delivery
                };
                return Ok(ClaimOutcome::Claimed { delivery, claim });
            }
        }
        Err(StoreError::Backend(format!(
            "scylla: delivery {text} changed under {CAS_ROUNDS} claims in a row"
        )))
    }

    async fn release_claim(&self, claim: &AttemptClaim) -> Result<(), StoreError> {
        // Not applied: the claim was lost or its attempt recorded; either way nothing to do.
        self.run(
            &self.statements.release_claim,
            (
                claim.delivery_id.to_string(),
                claim.token.as_str(),
                i32::try_from(claim.number.saturating_sub(1)).unwrap_or(i32::MAX),
            ),
        )
        .await?;
        Ok(())
    }

    async fn record_attempt(
        &self,
        claim: &AttemptClaim,
        a: &NewAttempt,
        status: DeliveryStatus,
    ) -> Result<RecordOutcome, StoreError> {
        let text = claim.delivery_id.to_string();
        let ttl = self.ttl();
        let number = i32::try_from(claim.number).unwrap_or(i32::MAX);
        // The log row goes first and the count second, so an attempt that was counted always
        // has its row, whatever fails or crashes in between. The number is this claim's alone
        // (while its lease holds), so writing the row again on a retried call is harmless.
        let mut row_written = false;
        for _ in 0..CAS_ROUNDS {
            let (delivery, stored) = self
                .delivery_with_claim(&text)
                .await?
                .ok_or_else(|| StoreError::NotFound(text.clone()))?;
            let decision =
                decide_record(delivery.status, delivery.attempts, &stored, claim, status);
            if decision == RecordDecision::ClaimLost {
                return Ok(RecordOutcome::ClaimLost);
            }
            if !row_written {
                self.insert_attempt_row(&text, number, a, ttl).await?;
                row_written = true;
            }
            if decision == RecordDecision::AlreadyCounted {
                return Ok(RecordOutcome::Recorded);
            }
            let now = ts(OffsetDateTime::now_utc());
            let next_at = a.next_attempt_at.map(ts);
            let result = if status.is_final() {
                self.run(
                    &self.statements.finish_attempt,
                    (
                        ttl,
                        delivery.event_id.to_string(),
                        delivery.endpoint_id.to_string(),
                        delivery.tenant.as_str(),
                        delivery.event_type.as_str(),
                        ts(delivery.created_at),
                        number,
                        status.as_str(),
                        now,
                        next_at,
                        a.tier.as_deref(),
                        claim.token.as_str(),
                        &text,
                        claim.token.as_str(),
                        number - 1,
                    ),
                )
                .await?
            } else {
                self.run(
                    &self.statements.count_attempt,
                    (
                        self.delivery_ttl(status),
                        number,
                        status.as_str(),
                        now,
                        next_at,
                        a.tier.as_deref(),
                        &text,
                        claim.token.as_str(),
                        number - 1,
                    ),
                )
                .await?
            };
            let counted = applied(result)?;
            if counted {
                return Ok(RecordOutcome::Recorded);
            }
        }
        Err(StoreError::Backend(format!(
            "scylla: delivery {text} changed under {CAS_ROUNDS} records in a row"
        )))
    }

    async fn list_attempts(&self, id: DeliveryId) -> Result<Vec<Attempt>, StoreError> {
        let result = self
            .run(&self.statements.select_attempts, (id.to_string(),))
            .await?;
        rows::<AttemptRow>(result)?
            .into_iter()
            .map(|row| raw_attempt(row).decode())
            .collect()
    }

    async fn reseal_secrets(&self) -> Result<crate::SealingCensus, StoreError> {
        self.reseal_all_secrets().await
    }

    async fn purge_expired(
        &self,
        _now: OffsetDateTime,
        _retention: Duration,
    ) -> Result<Purged, StoreError> {
        // Every growing table is written USING TTL: ScyllaDB drops expired rows itself.
        Ok(Purged::default())
    }
}
