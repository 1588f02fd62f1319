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
mod dead_letters;
mod health;
mod intake;
mod location;
mod ordered;
mod outbox;
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
use scylla::value::CqlTimestamp;
use time::OffsetDateTime;

use hookstream_model::delivery::{Attempt, Delivery, DeliveryStatus};
use hookstream_model::endpoint::{CircuitView, Endpoint, EndpointChanges, Subscription};
use hookstream_model::event::{Event, IdempotencyWindow};
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::Tenant;
use hookstream_signing::SigningSecret;

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
mod claims;
mod decode;
mod deliveries;
mod endpoints;
mod migrations;

use decode::{
    AttemptRow, DeliveryRow, DeliveryWithClaimRow, EndpointRow, EventRow, applied, first_row,
    into_page, raw_attempt, raw_delivery, raw_endpoint, rows,
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
    upsert_traffic_report = cql::UPSERT_TRAFFIC_REPORT,
    insert_portal_link_revocation = cql::INSERT_PORTAL_LINK_REVOCATION,
    select_portal_link_revocation = cql::SELECT_PORTAL_LINK_REVOCATION,
    select_traffic_reports = cql::SELECT_TRAFFIC_REPORTS,
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
    /// When the outbox table of older versions was last found empty (see [`outbox`]).
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
        self.insert_endpoint(e).await
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
        self.endpoints_page(tenant, page).await
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
        self.write_endpoint(e).await
    }

    async fn change_endpoint(
        &self,
        id: EndpointId,
        changes: &EndpointChanges,
        at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        self.apply_endpoint_changes(id, changes, at).await
    }

    async fn rotate_secret(
        &self,
        id: EndpointId,
        new: &SigningSecret,
        previous_expires_at: OffsetDateTime,
    ) -> Result<Option<Endpoint>, StoreError> {
        self.rotate_endpoint_secret(id, new, previous_expires_at)
            .await
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
        self.subscriptions_of(tenant).await
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
        self.deliveries_page(filter, page).await
    }

    async fn claim_attempt(
        &self,
        id: DeliveryId,
        attempts_made: u32,
        lease: Duration,
    ) -> Result<ClaimOutcome, StoreError> {
        self.claim(id, attempts_made, lease).await
    }

    async fn release_claim(&self, claim: &AttemptClaim) -> Result<(), StoreError> {
        self.release(claim).await
    }

    async fn record_attempt(
        &self,
        claim: &AttemptClaim,
        a: &NewAttempt,
        status: DeliveryStatus,
    ) -> Result<RecordOutcome, StoreError> {
        self.record(claim, a, status).await
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
