//! The store contract: one suite, run against the embedded SQLite store and against the CQL node
//! that `HOOKSTREAM_TEST_SCYLLA` names: `make test` starts Apache Cassandra for it, and
//! `make test-scylla` points it at a ScyllaDB node (Docker).

use std::sync::Arc;

use std::time::Duration;

use futures::future::join_all;

use serde_json::json;

use time::OffsetDateTime;

use hookstream_model::api_key::ApiKey;

use hookstream_model::dead_letter::DeadLetter;

use hookstream_model::delivery::{AttemptClass, Delivery, DeliveryStatus};

use hookstream_model::destination::EndpointUrl;

use hookstream_model::endpoint::{
    CircuitState, CircuitView, Endpoint, EndpointChanges, Subscription,
};

use hookstream_model::event::{Event, IdempotencyWindow, PublishState};

use hookstream_model::health::EndpointHealth;

use hookstream_model::ids::{ApiKeyId, BatchId, DeliveryId, EndpointId, EventId};

use hookstream_model::names::{EventType, IdempotencyKey, Tenant};

use hookstream_model::replay::{
    Batch, BatchCounts, BatchSelection, BatchStatus, DeadLetterFilter, ItemOutcome, SkipReason,
};

use hookstream_model::shaping::{Batching, Ordering, RateLimit, Shaping};

use hookstream_model::task::DeliveryTask;
use hookstream_model::traffic::{TrafficReport, minute_of};

use hookstream_signing::SigningSecret;

use hookstream_store::scylladb::{ScyllaLocation, ScyllaStore};

use hookstream_store::sqlite::SqliteStore;

use hookstream_store::{
    AttemptClaim, ClaimOutcome, CreateEventOutcome, DeliveryFilter, InstallationMismatch,
    NewAttempt, NewBatchItem, NewEvent, PageRequest, PrefixRole, QueuedTask, RecordOutcome,
    ReplayStep, ReplayStore, SecretSealer, Store, agree_on_topic_prefix,
};

mod api_keys;
mod attempts;
mod deliveries;
mod endpoints;
mod events;
mod installation;
mod replay;
mod retention;
mod scylla_faults;
mod secrets;

use api_keys::*;
use attempts::*;
use deliveries::*;
use endpoints::*;
use events::*;
use installation::*;
use replay::*;
use retention::*;
use secrets::*;

/// The key every contract test seals secrets with, so the suite runs on sealed secrets.
const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn sealer() -> SecretSealer {
    SecretSealer::from_base64_key(SECRET_KEY).unwrap()
}

struct Fixture {
    store: Arc<dyn Store>,
}

/// One backend's database, shared by every handle a test opens on it (as processes share it).
enum Backend {
    Sqlite(tempfile::TempDir),
    Scylla(ScyllaLocation),
}

impl Backend {
    fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().unwrap())
    }

    /// A fresh keyspace on the node named by `HOOKSTREAM_TEST_SCYLLA` (`host:port`).
    fn scylla() -> Self {
        let node = std::env::var("HOOKSTREAM_TEST_SCYLLA").expect(
            "HOOKSTREAM_TEST_SCYLLA names no CQL node: run `make test` (it starts Apache \
             Cassandra), or set HOOKSTREAM_TEST_SCYLLA=host:port",
        );
        let keyspace = format!(
            "hs_test_{}",
            EventId::generate().to_string()[4..].to_lowercase()
        );
        let location = ScyllaLocation::parse(&format!("{node}/{keyspace}?replication_factor=1"))
            .expect("HOOKSTREAM_TEST_SCYLLA is host:port");
        Self::Scylla(location)
    }

    /// Another handle on the same database.
    async fn open(&self) -> Arc<dyn Store> {
        self.open_with_retention(Duration::from_secs(30 * 86_400))
            .await
    }

    /// A handle whose rows live for `retention` (ScyllaDB writes it as their TTL; the embedded
    /// store is told it when purging).
    async fn open_with_retention(&self, retention: Duration) -> Arc<dyn Store> {
        self.open_with(retention, sealer()).await
    }

    async fn open_with(&self, retention: Duration, sealer: SecretSealer) -> Arc<dyn Store> {
        match self {
            Self::Sqlite(dir) => Arc::new(
                SqliteStore::open(&dir.path().join("store.db"), sealer)
                    .await
                    .unwrap(),
            ),
            Self::Scylla(at) => Arc::new(ScyllaStore::open(at, retention, sealer).await.unwrap()),
        }
    }

    /// A handle that stores secrets in plain text (no key), as an older install did.
    async fn open_without_key(&self) -> Arc<dyn Store> {
        self.open_with(Duration::from_secs(30 * 86_400), SecretSealer::plaintext())
            .await
    }

    async fn fixture(&self) -> Fixture {
        Fixture {
            store: self.open().await,
        }
    }
}

/// Runs each contract test against the embedded store and against the CQL node.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::sqlite()).await
                }
            )*
        }
        mod scylla {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Backend::scylla()).await
                }
            )*
        }
    };
}

fn tenant(name: &str) -> Tenant {
    Tenant::parse(name, "tenant").unwrap()
}

fn event_type(name: &str) -> EventType {
    EventType::parse(name, "type").unwrap()
}

fn endpoint(tenant_name: &str, types: &[&str]) -> Endpoint {
    let now = OffsetDateTime::now_utc();
    let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
    Endpoint {
        id: EndpointId::generate(),
        tenant: tenant(tenant_name),
        url: EndpointUrl::parse("https://hooks.example.com/in", "url").unwrap(),
        subscription: Subscription::parse(&types, "event_types").unwrap(),
        secret: SigningSecret::generate().unwrap(),
        previous_secret: None,
        disabled: false,
        max_attempts: None,
        paused: false,
        circuit: Default::default(),
        shaping: Default::default(),
        created_at: now,
        updated_at: now,
    }
}

fn new_event(tenant_name: &str, key: Option<&str>, endpoints: &[&Endpoint]) -> NewEvent {
    let now = OffsetDateTime::now_utc();
    let event = Event {
        id: EventId::generate(),
        tenant: tenant(tenant_name),
        event_type: event_type("order.created"),
        payload: json!({"order": 1}),
        idempotency_key: key.map(|k| IdempotencyKey::parse(k, "k").unwrap()),
        created_at: now,
    };
    let deliveries = endpoints
        .iter()
        .map(|ep| Delivery {
            id: DeliveryId::generate(),
            event_id: event.id,
            endpoint_id: ep.id,
            tenant: event.tenant.clone(),
            event_type: event.event_type.clone(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: None,
            next_tier: None,
            created_at: now,
            updated_at: now,
        })
        .collect();
    NewEvent { event, deliveries }
}

fn attempt(delivery: DeliveryId, class: AttemptClass, status: Option<u16>) -> NewAttempt {
    NewAttempt {
        delivery_id: delivery,
        started_at: OffsetDateTime::now_utc(),
        latency_ms: 12,
        status_code: status,
        class,
        response_snippet: "ok".into(),
        error: None,
        next_attempt_at: None,
        tier: None,
    }
}

fn queued(endpoint: EndpointId, partition: i32, position: i64) -> QueuedTask {
    QueuedTask {
        endpoint_id: endpoint,
        partition,
        position,
        task: format!("task at {position}").into_bytes(),
    }
}

fn millis(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000_000
}

/// Claims the delivery's next attempt for a task that has made `made`; the claim must be taken.
async fn claim(store: &dyn Store, id: DeliveryId, made: u32) -> AttemptClaim {
    match store.claim_attempt(id, made, LEASE).await.unwrap() {
        ClaimOutcome::Claimed { claim, .. } => claim,
        other => panic!("claim of {id} refused: {other:?}"),
    }
}

/// Claims and records one attempt with `class` and `status`.
async fn record(
    store: &dyn Store,
    id: DeliveryId,
    made: u32,
    class: AttemptClass,
    code: u16,
    status: DeliveryStatus,
) {
    let claim = claim(store, id, made).await;
    let outcome = store
        .record_attempt(&claim, &attempt(id, class, Some(code)), status)
        .await
        .unwrap();
    assert_eq!(outcome, RecordOutcome::Recorded);
}

async fn delivered(store: &dyn Store, id: DeliveryId) {
    record(
        store,
        id,
        0,
        AttemptClass::Http2xxDelivered,
        200,
        DeliveryStatus::Delivered,
    )
    .await;
}

const LEASE: Duration = Duration::from_secs(60);

/// A dead letter of `delivery`; times to the millisecond, as the DLQ record carries them.
fn dead_letter_of(delivery: &Delivery, class: AttemptClass, at: OffsetDateTime) -> DeadLetter {
    let to_millis = |t: OffsetDateTime| {
        t.replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
            .unwrap()
    };
    let at = to_millis(at);
    DeadLetter {
        task: DeliveryTask {
            delivery_id: delivery.id,
            event_id: delivery.event_id,
            endpoint_id: delivery.endpoint_id,
            tenant: delivery.tenant.clone(),
            event_type: delivery.event_type.clone(),
            event_created_at: to_millis(delivery.created_at),
            payload: r#"{"order":1}"#.into(),
            attempts_made: 1,
            due_at: None,
        },
        reason: "endpoint answered HTTP 400, which is permanent".into(),
        last_class: class,
        last_status_code: Some(400),
        last_error: None,
        last_response_snippet: "no".into(),
        dead_lettered_at: at,
    }
}

/// Stores `n` events for `ep` and indexes each delivery as a dead letter, one second apart.
async fn dead_letters(
    f: &Fixture,
    ep: &Endpoint,
    n: usize,
    class: AttemptClass,
) -> Vec<DeadLetter> {
    let start = OffsetDateTime::now_utc() - Duration::from_secs(3600);
    let mut letters = Vec::new();
    for i in 0..n {
        let new = new_event(ep.tenant.as_str(), None, &[ep]);
        f.store
            .create_event(&new, IdempotencyWindow(Duration::from_secs(60)))
            .await
            .unwrap();
        let at = start + Duration::from_secs(i as u64);
        let letter = dead_letter_of(&new.deliveries[0], class, at);
        f.store.index_dead_letter(&letter).await.unwrap();
        letters.push(letter);
    }
    letters
}

fn batch(selection: BatchSelection, allow_repeat: bool) -> Batch {
    let now = OffsetDateTime::now_utc();
    Batch {
        id: BatchId::generate(),
        created_by: "admin".into(),
        tenant: None,
        selection,
        dry_run: false,
        allow_repeat,
        status: BatchStatus::Running,
        created_at: now,
        updated_at: now,
        finished_at: None,
        error: None,
        counts: BatchCounts::default(),
    }
}

fn pending_items(letters: &[DeadLetter]) -> Vec<NewBatchItem> {
    letters
        .iter()
        .map(|l| NewBatchItem {
            dead_delivery_id: l.task.delivery_id,
            endpoint_id: l.task.endpoint_id,
            outcome: ItemOutcome::Pending,
        })
        .collect()
}

fn api_key(tenant: &Tenant, name: &str, hash_byte: u8) -> ApiKey {
    ApiKey {
        id: ApiKeyId::generate(),
        tenant: tenant.clone(),
        name: name.into(),
        key_hash: [hash_byte; 32],
        created_at: now_millis(),
        revoked_at: None,
    }
}

/// Now, to the millisecond that both stores keep.
fn now_millis() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(now.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap()
}

async fn secret_of(store: &Arc<dyn Store>, id: EndpointId) -> SigningSecret {
    store.get_endpoint(id).await.unwrap().unwrap().secret
}

contract!(
    the_first_topic_prefix_recorded_is_the_installations,
    endpoints_are_created_read_updated_listed_and_deleted,
    ordered_queues_keep_position_order_per_endpoint,
    endpoint_health_is_replaced_and_read_back,
    traffic_reports_are_replaced_per_minute_and_reporter,
    delivery_settings_are_stored_with_the_endpoint,
    endpoint_changes_made_side_by_side_are_all_kept,
    endpoint_reads_show_changes_made_by_another_handle,
    endpoint_lists_are_per_tenant_and_paged,
    a_rotated_secret_is_kept_as_previous_until_it_expires,
    only_live_subscribed_endpoints_disabled_ones_too_receive_an_event_type,
    an_idempotent_repeat_returns_the_original_and_creates_nothing,
    unpublished_events_are_listed_until_marked_published,
    a_batch_judges_each_key_against_the_events_before_it,
    a_different_request_under_a_live_key_conflicts,
    an_expired_key_creates_a_new_event,
    racing_requests_with_one_key_create_exactly_one_event,
    attempts_are_numbered_in_order_and_move_the_delivery,
    one_copy_claims_an_attempt_and_a_stale_copy_none,
    disabling_an_endpoint_keeps_an_edit_made_meanwhile,
    final_states_never_change_and_a_retried_record_counts_once,
    concurrent_writes_all_land_and_a_failing_one_fails_alone,
    deliveries_filter_by_event_endpoint_and_status,
    deliveries_filter_by_event_type_and_time,
    rows_past_their_retention_are_removed,
    deliveries_under_way_outlive_the_retention,
    data_survives_reopening_the_file,
    dead_letters_are_indexed_once_and_listed_by_filter_and_page,
    dead_letters_are_listed_by_words_of_their_reason,
    a_batch_replays_each_dead_letter_once_unless_repeats_are_allowed,
    a_cancelled_batch_creates_nothing_more,
    replays_skip_deleted_and_disabled_endpoints,
    batches_are_listed_for_everyone_or_for_one_tenant,
    api_keys_are_kept_per_tenant_and_revoked_once,
    portal_link_revocations_are_kept_and_found,
    an_event_set_aside_leaves_the_outbox_for_good,
    a_planted_plain_secret_is_refused_and_stops_only_its_endpoint,
    secrets_under_an_older_key_are_resealed_so_the_old_key_can_go,
);
