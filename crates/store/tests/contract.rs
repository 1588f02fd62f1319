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
use hookstream_signing::SigningSecret;
use hookstream_store::scylladb::{ScyllaLocation, ScyllaStore};
use hookstream_store::sqlite::SqliteStore;
use hookstream_store::{
    AttemptClaim, ClaimOutcome, CreateEventOutcome, DeliveryFilter, InstallationMismatch,
    NewAttempt, NewBatchItem, NewEvent, PageRequest, PrefixRole, QueuedTask, RecordOutcome,
    ReplayStep, ReplayStore, SecretSealer, Store, agree_on_topic_prefix,
};

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

/// The topic prefix every service must share: the first one ingest records stays, whichever
/// of several racing processes gives it; a process that only checks records nothing, accepts
/// the same prefix and refuses another; the kill switch beside it in the store is untouched.
async fn the_first_topic_prefix_recorded_is_the_installations(backend: Backend) {
    let checker = backend.open().await;
    assert!(
        !agree_on_topic_prefix(checker.as_ref(), "other.", PrefixRole::Checks)
            .await
            .expect("nothing recorded to check against"),
        "a checking service records nothing"
    );
    let handles: Vec<Arc<dyn Store>> = join_all((0..4).map(|_| backend.open())).await;
    // Side by side, as pods started together do.
    let recorded: Vec<String> = join_all(handles.iter().enumerate().map(|(n, store)| {
        let store = Arc::clone(store);
        async move {
            store
                .record_installation_setting("topic_prefix", &format!("racer{n}."))
                .await
                .unwrap()
        }
    }))
    .await;
    assert!(
        recorded.iter().all(|r| *r == recorded[0]) && recorded[0].starts_with("racer"),
        "racing first records agree on one: {recorded:?}"
    );
    let installation = recorded[0].clone();
    assert!(
        agree_on_topic_prefix(checker.as_ref(), &installation, PrefixRole::Checks)
            .await
            .expect("the same prefix")
    );
    assert!(
        agree_on_topic_prefix(handles[0].as_ref(), &installation, PrefixRole::Records)
            .await
            .expect("ingest again with the same prefix")
    );
    match agree_on_topic_prefix(checker.as_ref(), "other.", PrefixRole::Checks).await {
        Err(InstallationMismatch::TopicPrefix { recorded, given }) => {
            assert_eq!((recorded, given.as_str()), (installation.clone(), "other."))
        }
        other => panic!("another prefix must be refused, got {other:?}"),
    }
    match agree_on_topic_prefix(handles[1].as_ref(), "later.", PrefixRole::Records).await {
        Err(InstallationMismatch::TopicPrefix { recorded, .. }) => {
            assert_eq!(recorded, installation, "the first record stays")
        }
        other => panic!("a later ingest with another prefix must be refused, got {other:?}"),
    }
    assert!(!checker.sending_paused().await.unwrap());
}

async fn endpoints_are_created_read_updated_listed_and_deleted(backend: Backend) {
    let f = backend.fixture().await;
    let mut ep = endpoint("acme", &["order.created"]);
    f.store.create_endpoint(&ep).await.unwrap();
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.url, ep.url);
    assert_eq!(read.secret, ep.secret);
    assert_eq!(read.subscription, ep.subscription);

    ep.subscription = Subscription::All;
    ep.disabled = true;
    assert!(f.store.update_endpoint(&ep).await.unwrap());
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.subscription, Subscription::All);
    assert!(read.disabled);

    assert!(f.store.delete_endpoint(ep.id).await.unwrap());
    assert!(f.store.get_endpoint(ep.id).await.unwrap().is_none());
    assert!(!f.store.delete_endpoint(ep.id).await.unwrap());
    assert!(!f.store.update_endpoint(&ep).await.unwrap());
}

/// An endpoint's delivery settings are kept as written, and cleared when set back.
async fn delivery_settings_are_stored_with_the_endpoint(backend: Backend) {
    let f = backend.fixture().await;
    let mut ep = endpoint("acme", &["order.created"]);
    ep.shaping.rate_limit = Some(RateLimit::new(2.5, Some(4), "rate_limit").unwrap());
    f.store.create_endpoint(&ep).await.unwrap();
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.shaping, ep.shaping);

    ep.shaping.rate_limit = Some(RateLimit::new(100.0, None, "rate_limit").unwrap());
    assert!(f.store.update_endpoint(&ep).await.unwrap());
    let listed = f
        .store
        .list_endpoints(&tenant("acme"), &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.items[0].shaping, ep.shaping);

    ep.shaping = Shaping::default();
    assert!(f.store.update_endpoint(&ep).await.unwrap());
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.shaping.rate_limit, None);
}

/// An endpoint's health is replaced by each write and read back as written, by any handle;
/// endpoints with none are left out.
async fn endpoint_health_is_replaced_and_read_back(backend: Backend) {
    let f = backend.fixture().await;
    let other = backend.open().await;
    let (a, b, none) = (
        EndpointId::generate(),
        EndpointId::generate(),
        EndpointId::generate(),
    );
    assert!(f.store.endpoint_health(&[a]).await.unwrap().is_empty());
    let at = OffsetDateTime::now_utc();
    let mut health = EndpointHealth::default();
    health.record(at, Some(12), AttemptClass::Timeout);
    f.store
        .put_endpoint_health(&[(a, health.clone())])
        .await
        .unwrap();
    health.record(at, Some(8), AttemptClass::Http2xxDelivered);
    let mut failing = EndpointHealth::default();
    failing.record(at, None, AttemptClass::DestinationBlocked);
    f.store
        .put_endpoint_health(&[(a, health.clone()), (b, failing.clone())])
        .await
        .unwrap();

    let mut read = other.endpoint_health(&[none, a, b]).await.unwrap();
    read.sort_by_key(|(id, _)| *id == b);
    assert_eq!(read, vec![(a, health), (b, failing)]);
}

fn queued(endpoint: EndpointId, partition: i32, position: i64) -> QueuedTask {
    QueuedTask {
        endpoint_id: endpoint,
        partition,
        position,
        task: format!("task at {position}").into_bytes(),
    }
}

/// A strict endpoint's queue gives its tasks back in position order, whatever order they were
/// put in; putting one again replaces it; endpoints are found by partition until forgotten.
async fn ordered_queues_keep_position_order_per_endpoint(backend: Backend) {
    let f = backend.fixture().await;
    let (a, b) = (EndpointId::generate(), EndpointId::generate());
    assert_eq!(f.store.queue_head(a, -1).await.unwrap(), None);
    for position in [7, 3, 12] {
        f.store.enqueue_task(&queued(a, 2, position)).await.unwrap();
    }
    f.store.enqueue_task(&queued(b, 2, 1)).await.unwrap();
    // Read again after a crash: the same record goes back to its place, not to the end.
    f.store.enqueue_task(&queued(a, 2, 3)).await.unwrap();
    let mut listed = f.store.queued_endpoints(2).await.unwrap();
    listed.sort_by_key(ToString::to_string);
    let mut expected = vec![a, b];
    expected.sort_by_key(ToString::to_string);
    assert_eq!(listed, expected);
    assert!(f.store.queued_endpoints(3).await.unwrap().is_empty());

    let mut seen = Vec::new();
    let mut after = -1;
    while let Some(head) = f.store.queue_head(a, after).await.unwrap() {
        assert_eq!(head, queued(a, 2, head.position));
        seen.push(head.position);
        f.store.dequeue_task(a, head.position).await.unwrap();
        after = head.position;
    }
    assert_eq!(seen, [3, 7, 12]);
    assert_eq!(f.store.queue_head(a, -1).await.unwrap(), None);
    // Removing what is gone already changes nothing.
    f.store.dequeue_task(a, 7).await.unwrap();
    assert_eq!(
        f.store.queue_head(b, -1).await.unwrap(),
        Some(queued(b, 2, 1))
    );

    // Progress is kept per endpoint and partition, and a task queued later leaves it alone.
    assert_eq!(f.store.queue_progress(2, a).await.unwrap(), -1);
    f.store.record_queue_progress(2, a, 12).await.unwrap();
    f.store.enqueue_task(&queued(a, 2, 20)).await.unwrap();
    assert_eq!(f.store.queue_progress(2, a).await.unwrap(), 12);
    assert_eq!(f.store.queue_progress(3, a).await.unwrap(), -1);
    assert_eq!(
        f.store.queue_head(a, 12).await.unwrap(),
        Some(queued(a, 2, 20))
    );
    f.store.dequeue_task(a, 20).await.unwrap();

    f.store.forget_queued_endpoint(2, a).await.unwrap();
    assert_eq!(f.store.queued_endpoints(2).await.unwrap(), vec![b]);
    assert_eq!(f.store.queue_progress(2, a).await.unwrap(), -1);
    // Another handle (a restarted dispatcher) sees the same queue.
    let reopened = backend.open().await;
    assert_eq!(
        reopened.queue_head(b, -1).await.unwrap(),
        Some(queued(b, 2, 1))
    );
}

/// Every change to an endpoint made through another handle (another process) shows in the next
/// read here, though this handle has read the endpoint before (the embedded store keeps what it
/// read and checks it against a counter every change moves).
async fn endpoint_reads_show_changes_made_by_another_handle(backend: Backend) {
    let f = backend.fixture().await;
    let other = backend.open().await;
    let ep = endpoint("acme", &["order.created"]);
    f.store.create_endpoint(&ep).await.unwrap();
    let read = || async { f.store.get_endpoint(ep.id).await.unwrap() };
    assert_eq!(read().await.unwrap().secret, ep.secret);
    assert_eq!(
        read().await.unwrap().secret,
        ep.secret,
        "read twice, unchanged"
    );
    let subscribers = || async {
        let list = f.store.subscriptions(&ep.tenant).await.unwrap();
        list.into_iter().map(|(id, _)| id).collect::<Vec<_>>()
    };
    assert_eq!(subscribers().await, vec![ep.id]);
    assert_eq!(subscribers().await, vec![ep.id], "read twice, unchanged");
    let second = endpoint("acme", &["order.created"]);
    other.create_endpoint(&second).await.unwrap();
    let mut both = vec![ep.id, second.id];
    both.sort();
    assert_eq!(
        subscribers().await,
        both,
        "an endpoint created elsewhere subscribes"
    );

    let now = OffsetDateTime::now_utc();
    let pause = EndpointChanges {
        paused: Some(true),
        ..Default::default()
    };
    other.change_endpoint(ep.id, &pause, now).await.unwrap();
    assert!(read().await.unwrap().paused, "the pause shows");
    let moved = EndpointUrl::parse("https://moved.example.com/hook", "url").unwrap();
    let move_it = EndpointChanges {
        url: Some(moved.clone()),
        ..Default::default()
    };
    other.change_endpoint(ep.id, &move_it, now).await.unwrap();
    assert_eq!(read().await.unwrap().url, moved, "the new URL shows");

    let new = SigningSecret::generate().unwrap();
    other
        .rotate_secret(ep.id, &new, now + time::Duration::hours(1))
        .await
        .unwrap();
    let rotated = read().await.unwrap();
    assert_eq!(rotated.secret, new, "the new secret signs");
    assert_eq!(
        rotated.previous_secret.map(|retiring| retiring.secret),
        Some(ep.secret.clone())
    );

    other
        .set_circuit(
            ep.id,
            &CircuitView {
                state: CircuitState::Open,
                open_until: Some(now + time::Duration::minutes(5)),
            },
        )
        .await
        .unwrap();
    assert_eq!(read().await.unwrap().circuit.state, CircuitState::Open);

    assert!(other.disable_endpoint(ep.id, now).await.unwrap());
    assert!(read().await.unwrap().disabled, "the disabling shows");
    assert_eq!(
        subscribers().await,
        both,
        "a disabled endpoint still gets its new deliveries (kept until it is enabled)"
    );

    assert!(other.delete_endpoint(ep.id).await.unwrap());
    assert!(read().await.is_none(), "the deletion shows");
}

/// A change applies to the endpoint as it stands: changes made side by side, or in between (a
/// `410` disabling it), are all kept, and a deleted endpoint is not changed.
async fn endpoint_changes_made_side_by_side_are_all_kept(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &["order.created"]);
    f.store.create_endpoint(&ep).await.unwrap();
    let now = OffsetDateTime::now_utc();
    assert!(f.store.disable_endpoint(ep.id, now).await.unwrap());
    let moved = EndpointUrl::parse("https://moved.example.com/hook", "url").unwrap();
    let changed = f
        .store
        .change_endpoint(
            ep.id,
            &EndpointChanges {
                url: Some(moved.clone()),
                ..Default::default()
            },
            now,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(changed.disabled, "the disabling made meanwhile is kept");
    assert_eq!(changed.url, moved);

    let limit = RateLimit::new(3.0, None, "rate_limit").unwrap();
    let batch = Batching {
        max_events: 40,
        max_wait_ms: 1_500,
    };
    let changes = [
        EndpointChanges {
            paused: Some(true),
            ..Default::default()
        },
        EndpointChanges {
            rate_limit: Some(Some(limit)),
            ..Default::default()
        },
        EndpointChanges {
            max_attempts: Some(Some(4)),
            ..Default::default()
        },
        EndpointChanges {
            subscription: Some(Subscription::All),
            ..Default::default()
        },
        EndpointChanges {
            disabled: Some(false),
            ..Default::default()
        },
        // Settings kept in one document with the rate limit, changed side by side with it.
        EndpointChanges {
            ordering: Some(Ordering::None),
            ..Default::default()
        },
        EndpointChanges {
            max_in_flight: Some(Some(7)),
            ..Default::default()
        },
        EndpointChanges {
            batch: Some(Some(batch)),
            ..Default::default()
        },
    ];
    let at = OffsetDateTime::now_utc();
    let change = |n: usize| f.store.change_endpoint(ep.id, &changes[n], at);
    let results = tokio::join!(
        change(0),
        change(1),
        change(2),
        change(3),
        change(4),
        change(5),
        change(6),
        change(7)
    );
    let results = [
        results.0, results.1, results.2, results.3, results.4, results.5, results.6, results.7,
    ];
    assert!(
        results.iter().all(|r| matches!(r, Ok(Some(_)))),
        "{results:?}"
    );
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert!(read.paused);
    assert_eq!(read.shaping.rate_limit, Some(limit));
    assert_eq!(read.shaping.ordering, Ordering::None);
    assert_eq!(read.shaping.max_in_flight, Some(7));
    assert_eq!(read.shaping.batch, Some(batch));
    assert_eq!(read.max_attempts, Some(4));
    assert_eq!(read.subscription, Subscription::All);
    assert!(!read.disabled);
    assert_eq!(read.url, moved);

    // A `410` disabling it while a change of another field is made: both are kept.
    for n in 0..5 {
        let url = EndpointUrl::parse(&format!("https://moved.example.com/{n}"), "url").unwrap();
        let changes = EndpointChanges {
            url: Some(url.clone()),
            disabled: None,
            ..Default::default()
        };
        let enable = EndpointChanges {
            disabled: Some(false),
            ..Default::default()
        };
        f.store.change_endpoint(ep.id, &enable, at).await.unwrap();
        let (disabled, changed) = tokio::join!(
            f.store.disable_endpoint(ep.id, at),
            f.store.change_endpoint(ep.id, &changes, at)
        );
        assert!(disabled.unwrap());
        assert!(changed.unwrap().is_some());
        let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
        assert!(read.disabled, "round {n}: the disabling is kept");
        assert_eq!(read.url, url, "round {n}: the change is kept");
    }

    assert!(f.store.delete_endpoint(ep.id).await.unwrap());
    let gone = f
        .store
        .change_endpoint(ep.id, &changes[0], at)
        .await
        .unwrap();
    assert!(gone.is_none());
}

/// A `410 Gone` disables the endpoint as it stands: an edit made while the request was out (a
/// new URL, a pause) is kept.
async fn disabling_an_endpoint_keeps_an_edit_made_meanwhile(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &["order.created"]);
    f.store.create_endpoint(&ep).await.unwrap();
    let mut edited = ep.clone();
    edited.url = EndpointUrl::parse("https://moved.example.com/hook", "url").unwrap();
    edited.paused = true;
    assert!(f.store.update_endpoint(&edited).await.unwrap());

    assert!(
        f.store
            .disable_endpoint(ep.id, OffsetDateTime::now_utc())
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .disable_endpoint(ep.id, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        "disabled already: not disabled by this call"
    );
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert!(read.disabled);
    assert!(read.paused, "the pause made meanwhile stays");
    assert_eq!(read.url, edited.url, "the URL set meanwhile stays");

    assert!(f.store.delete_endpoint(ep.id).await.unwrap());
    assert!(
        !f.store
            .disable_endpoint(ep.id, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        "a deleted endpoint stays deleted"
    );
}

async fn a_rotated_secret_is_kept_as_previous_until_it_expires(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let new = SigningSecret::generate().unwrap();
    let until = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let rotated = f
        .store
        .rotate_secret(ep.id, &new, until)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret, new);
    let previous = rotated.previous_secret.clone().unwrap();
    assert_eq!(previous.secret, ep.secret);
    assert_eq!(millis(previous.expires_at), millis(until));
    let now = OffsetDateTime::now_utc();
    assert_eq!(rotated.signing_secrets(now), vec![&new, &ep.secret]);
    assert_eq!(
        rotated.signing_secrets(until),
        vec![&new],
        "expired: only the new one"
    );
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.previous_secret, rotated.previous_secret);
    // Rotating again retires the secret that was current, not the one before it.
    let newest = SigningSecret::generate().unwrap();
    let again = f
        .store
        .rotate_secret(ep.id, &newest, until)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.previous_secret.unwrap().secret, new);
    f.store.delete_endpoint(ep.id).await.unwrap();
    assert!(
        f.store
            .rotate_secret(ep.id, &newest, until)
            .await
            .unwrap()
            .is_none()
    );
}

fn millis(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos() / 1_000_000
}

async fn endpoint_lists_are_per_tenant_and_paged(backend: Backend) {
    let f = backend.fixture().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let ep = endpoint("acme", &[]);
        f.store.create_endpoint(&ep).await.unwrap();
        ids.push(ep.id);
    }
    f.store
        .create_endpoint(&endpoint("other", &[]))
        .await
        .unwrap();

    let first = f
        .store
        .list_endpoints(&tenant("acme"), &PageRequest::first(3))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 3);
    let second = f
        .store
        .list_endpoints(
            &tenant("acme"),
            &PageRequest {
                after: first.next.clone(),
                limit: 3,
            },
        )
        .await
        .unwrap();
    assert_eq!(second.items.len(), 2);
    assert!(second.next.is_none());
    let mut seen: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|e| e.id)
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids);
}

async fn only_live_subscribed_endpoints_disabled_ones_too_receive_an_event_type(backend: Backend) {
    let f = backend.fixture().await;
    let orders = endpoint("acme", &["order.created"]);
    let everything = endpoint("acme", &["*"]);
    let invoices = endpoint("acme", &["invoice.paid"]);
    let mut disabled = endpoint("acme", &["order.created"]);
    disabled.disabled = true;
    let other_tenant = endpoint("other", &["order.created"]);
    let deleted = endpoint("acme", &["order.created"]);
    for ep in [
        &orders,
        &everything,
        &invoices,
        &disabled,
        &other_tenant,
        &deleted,
    ] {
        f.store.create_endpoint(ep).await.unwrap();
    }
    f.store.delete_endpoint(deleted.id).await.unwrap();

    let subscriptions = f.store.subscriptions(&tenant("acme")).await.unwrap();
    let ids: Vec<_> = subscriptions.iter().map(|(id, _)| *id).collect();
    // A disabled endpoint's deliveries are kept (queued, unsent, by the dispatcher), not lost.
    let mut want = vec![orders.id, everything.id, invoices.id, disabled.id];
    want.sort();
    assert_eq!(ids, want, "the live endpoints of the tenant, in id order");
    let mut got: Vec<_> = subscriptions
        .iter()
        .filter(|(_, subscription)| subscription.matches(&event_type("order.created")))
        .map(|(id, _)| *id)
        .collect();
    got.sort();
    let mut want = vec![orders.id, everything.id, disabled.id];
    want.sort();
    assert_eq!(got, want);
}

async fn an_idempotent_repeat_returns_the_original_and_creates_nothing(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let window = IdempotencyWindow::default();

    let first = new_event("acme", Some("k-1"), &[&ep]);
    assert!(matches!(
        f.store.create_event(&first, window).await.unwrap(),
        CreateEventOutcome::Created
    ));
    let again = new_event("acme", Some("k-1"), &[&ep]);
    match f.store.create_event(&again, window).await.unwrap() {
        CreateEventOutcome::Repeat {
            event,
            state,
            deliveries,
        } => {
            assert_eq!(event.id, first.event.id);
            assert_eq!(state, PublishState::Publishing);
            assert_eq!(deliveries.len(), 1);
            assert_eq!(deliveries[0].id, first.deliveries[0].id);
        }
        other => panic!("expected a repeat, got {other:?}"),
    }

    f.store.mark_event_published(first.event.id).await.unwrap();
    match f.store.create_event(&again, window).await.unwrap() {
        CreateEventOutcome::Repeat { state, .. } => assert_eq!(state, PublishState::Published),
        other => panic!("expected a repeat, got {other:?}"),
    }
    let acme = DeliveryFilter {
        tenant: Some(tenant("acme")),
        ..Default::default()
    };
    let all = f
        .store
        .list_deliveries(&acme, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 1, "the repeat created no delivery");

    // The same key under another tenant is another request.
    let other_ep = endpoint("other", &[]);
    let other = new_event("other", Some("k-1"), &[&other_ep]);
    assert!(matches!(
        f.store.create_event(&other, window).await.unwrap(),
        CreateEventOutcome::Created
    ));
}

async fn unpublished_events_are_listed_until_marked_published(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    let mut old = new_event("acme", None, &[&ep]);
    old.event.created_at -= Duration::from_secs(120);
    let fresh = new_event("acme", None, &[&ep]);
    for new in [&old, &fresh] {
        f.store
            .create_event(new, IdempotencyWindow::default())
            .await
            .unwrap();
    }
    let cutoff = OffsetDateTime::now_utc() - Duration::from_secs(60);
    let stale = f.store.unpublished_events(cutoff, 10).await.unwrap();
    assert_eq!(stale.len(), 1, "only the event older than the cutoff");
    assert_eq!(stale[0].0.id, old.event.id);
    assert_eq!(stale[0].1.len(), 1);
    assert_eq!(stale[0].1[0].id, old.deliveries[0].id);

    f.store.mark_event_published(old.event.id).await.unwrap();
    assert!(
        f.store
            .unpublished_events(cutoff, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_batch_judges_each_key_against_the_events_before_it(backend: Backend) {
    let f = backend.fixture().await;
    let window = IdempotencyWindow::default();
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let first = new_event("acme", Some("k-1"), &[&ep]);
    let mut repeat = new_event("acme", Some("k-1"), &[&ep]);
    repeat.event.created_at = first.event.created_at;
    let mut conflicting = new_event("acme", Some("k-1"), &[&ep]);
    conflicting.event.payload = json!({"order": 2});
    let unkeyed = new_event("acme", None, &[&ep]);

    let outcomes = f
        .store
        .create_events(
            &[first.clone(), repeat, conflicting, unkeyed.clone()],
            window,
        )
        .await
        .unwrap();
    assert!(matches!(outcomes[0], CreateEventOutcome::Created));
    match &outcomes[1] {
        CreateEventOutcome::Repeat { event, .. } => assert_eq!(event.id, first.event.id),
        other => panic!("expected a repeat, got {other:?}"),
    }
    assert!(matches!(
        outcomes[2],
        CreateEventOutcome::Conflict { original } if original == first.event.id
    ));
    assert!(matches!(outcomes[3], CreateEventOutcome::Created));

    let cutoff = OffsetDateTime::now_utc() + Duration::from_secs(1);
    assert_eq!(
        f.store.unpublished_events(cutoff, 10).await.unwrap().len(),
        2
    );
    f.store
        .mark_events_published(&[first.event.id, unkeyed.event.id])
        .await
        .unwrap();
    assert!(
        f.store
            .unpublished_events(cutoff, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_different_request_under_a_live_key_conflicts(backend: Backend) {
    let f = backend.fixture().await;
    let window = IdempotencyWindow::default();
    let first = new_event("acme", Some("k-1"), &[]);
    f.store.create_event(&first, window).await.unwrap();
    let mut different = new_event("acme", Some("k-1"), &[]);
    different.event.payload = json!({"order": 2});
    match f.store.create_event(&different, window).await.unwrap() {
        CreateEventOutcome::Conflict { original } => assert_eq!(original, first.event.id),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn an_expired_key_creates_a_new_event(backend: Backend) {
    let f = backend.fixture().await;
    let window = IdempotencyWindow(Duration::from_secs(60));
    let mut first = new_event("acme", Some("k-1"), &[]);
    first.event.created_at -= Duration::from_secs(61);
    f.store.create_event(&first, window).await.unwrap();
    let second = new_event("acme", Some("k-1"), &[]);
    assert!(matches!(
        f.store.create_event(&second, window).await.unwrap(),
        CreateEventOutcome::Created
    ));
}

async fn racing_requests_with_one_key_create_exactly_one_event(backend: Backend) {
    // Two store handles on one database, as two processes have.
    let a = backend.open().await;
    let b = backend.open().await;
    let window = IdempotencyWindow::default();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let new = new_event("acme", Some("race"), &[]);
            store.create_event(&new, window).await.unwrap()
        }));
    }
    let mut created = 0;
    for task in tasks {
        if matches!(task.await.unwrap(), CreateEventOutcome::Created) {
            created += 1;
        }
    }
    assert_eq!(created, 1);
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

async fn attempts_are_numbered_in_order_and_move_the_delivery(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    let new = new_event("acme", None, &[&ep]);
    f.store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    let id = new.deliveries[0].id;

    let first = match f.store.claim_attempt(id, 0, LEASE).await.unwrap() {
        ClaimOutcome::Claimed { delivery, claim } => {
            assert_eq!(delivery.status, DeliveryStatus::Delivering);
            claim
        }
        other => panic!("not claimed: {other:?}"),
    };
    assert_eq!(first.number, 1);
    let started = f.store.get_delivery(id).await.unwrap().unwrap();
    assert_eq!(started.status, DeliveryStatus::Delivering);
    let due = OffsetDateTime::from_unix_timestamp(2_000_000_000).unwrap();
    let mut failed = attempt(id, AttemptClass::Http5xxRetryable, Some(503));
    failed.next_attempt_at = Some(due);
    failed.tier = Some("5s".into());
    f.store
        .record_attempt(&first, &failed, DeliveryStatus::Retrying)
        .await
        .unwrap();
    let retrying = f.store.get_delivery(id).await.unwrap().unwrap();
    assert_eq!(retrying.status, DeliveryStatus::Retrying);
    assert_eq!(retrying.next_attempt_at, Some(due));
    assert_eq!(retrying.next_tier.as_deref(), Some("5s"));
    let second = claim(&*f.store, id, 1).await;
    assert_eq!(second.number, 2);
    f.store
        .record_attempt(
            &second,
            &attempt(id, AttemptClass::Http2xxDelivered, Some(200)),
            DeliveryStatus::Delivered,
        )
        .await
        .unwrap();

    let delivery = f.store.get_delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert_eq!(delivery.attempts, 2);
    let attempts = f.store.list_attempts(id).await.unwrap();
    let classes: Vec<_> = attempts
        .iter()
        .map(|a| (a.number, a.class, a.status_code))
        .collect();
    assert_eq!(
        classes,
        vec![
            (1, AttemptClass::Http5xxRetryable, Some(503)),
            (2, AttemptClass::Http2xxDelivered, Some(200)),
        ]
    );
    assert_eq!(attempts[0].next_attempt_at, Some(due));
    assert_eq!(attempts[0].tier.as_deref(), Some("5s"));
    assert_eq!(delivery.next_attempt_at, None, "delivered: nothing is due");

    // A final delivery is claimed by no copy, whatever its attempt count.
    for made in [0, 1, 2, 3] {
        assert!(matches!(
            f.store.claim_attempt(id, made, LEASE).await.unwrap(),
            ClaimOutcome::Final(d) if d.status == DeliveryStatus::Delivered
        ));
    }
    assert_eq!(
        f.store
            .claim_attempt(DeliveryId::generate(), 0, LEASE)
            .await
            .unwrap(),
        ClaimOutcome::Missing
    );
}

/// Two copies of one task: only one may send while its claim holds, and a copy behind the
/// store's count is stale.
async fn one_copy_claims_an_attempt_and_a_stale_copy_none(backend: Backend) {
    let f = backend.fixture().await;
    let new = new_event("acme", None, &[&endpoint("acme", &[])]);
    f.store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    let id = new.deliveries[0].id;

    // Racing copies: exactly one wins.
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let store = f.store.clone();
            tokio::spawn(async move { store.claim_attempt(id, 0, LEASE).await.unwrap() })
        })
        .collect();
    let mut claims = Vec::new();
    for racer in racers {
        match racer.await.unwrap() {
            ClaimOutcome::Claimed { claim, .. } => claims.push(claim),
            ClaimOutcome::Busy { until } => assert!(until > OffsetDateTime::now_utc()),
            other => panic!("a racing copy got {other:?}"),
        }
    }
    assert_eq!(claims.len(), 1, "exactly one copy claims the attempt");
    let winner = claims.remove(0);

    // A claim given back unused is free at once, under the same number.
    f.store.release_claim(&winner).await.unwrap();
    let again = claim(&*f.store, id, 0).await;
    assert_eq!(again.number, winner.number);
    assert_ne!(again.token, winner.token);
    // The released claim cannot record over the one that replaced it.
    let late = attempt(id, AttemptClass::Http5xxRetryable, Some(503));
    assert_eq!(
        f.store
            .record_attempt(&winner, &late, DeliveryStatus::Retrying)
            .await
            .unwrap(),
        RecordOutcome::ClaimLost
    );
    f.store
        .record_attempt(&again, &late, DeliveryStatus::Retrying)
        .await
        .unwrap();
    assert!(matches!(
        f.store.claim_attempt(id, 0, LEASE).await.unwrap(),
        ClaimOutcome::Stale(d) if d.attempts == 1
    ));
    assert_eq!(claim(&*f.store, id, 1).await.number, 2);
}

/// A copy whose lease ran out while it was still sending (or a stale copy of any kind) cannot
/// turn a recorded final status into another, and a retried record counts once.
async fn final_states_never_change_and_a_retried_record_counts_once(backend: Backend) {
    let f = backend.fixture().await;
    let new = new_event("acme", None, &[&endpoint("acme", &[])]);
    f.store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    let id = new.deliveries[0].id;

    // The first copy's lease is over at once; a second copy claims the same attempt.
    let slow = match f.store.claim_attempt(id, 0, Duration::ZERO).await.unwrap() {
        ClaimOutcome::Claimed { claim, .. } => claim,
        other => panic!("not claimed: {other:?}"),
    };
    let fast = claim(&*f.store, id, 0).await;
    assert_eq!(fast.number, slow.number);
    let ok = attempt(id, AttemptClass::Http2xxDelivered, Some(200));
    for _ in 0..2 {
        assert_eq!(
            f.store
                .record_attempt(&fast, &ok, DeliveryStatus::Delivered)
                .await
                .unwrap(),
            RecordOutcome::Recorded,
            "recording again with the same claim is answered, not counted"
        );
    }
    for (class, code, status) in [
        (
            AttemptClass::Http5xxRetryable,
            503,
            DeliveryStatus::Retrying,
        ),
        (
            AttemptClass::Http4xxPermanent,
            400,
            DeliveryStatus::DeadLettered,
        ),
    ] {
        assert_eq!(
            f.store
                .record_attempt(&slow, &attempt(id, class, Some(code)), status)
                .await
                .unwrap(),
            RecordOutcome::ClaimLost
        );
    }
    let delivery = f.store.get_delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Delivered);
    assert_eq!(delivery.attempts, 1);
    let attempts = f.store.list_attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].status_code, Some(200));

    // Dead-lettered is as final as delivered.
    let other = new_event("acme", None, &[&endpoint("acme", &[])]);
    f.store
        .create_event(&other, IdempotencyWindow::default())
        .await
        .unwrap();
    let gone = other.deliveries[0].id;
    record(
        &*f.store,
        gone,
        0,
        AttemptClass::Http4xxPermanent,
        400,
        DeliveryStatus::DeadLettered,
    )
    .await;
    assert!(matches!(
        f.store.claim_attempt(gone, 1, LEASE).await.unwrap(),
        ClaimOutcome::Final(d) if d.status == DeliveryStatus::DeadLettered
    ));
}

async fn concurrent_writes_all_land_and_a_failing_one_fails_alone(backend: Backend) {
    let ep = endpoint("acme", &[]);
    let news: Vec<NewEvent> = (0..100).map(|_| new_event("acme", None, &[&ep])).collect();
    let ids: Vec<DeliveryId> = news.iter().map(|n| n.deliveries[0].id).collect();
    {
        let store = backend.open().await;
        store
            .create_events(&news, IdempotencyWindow::default())
            .await
            .unwrap();
        let mut claims = Vec::new();
        for &id in &ids {
            claims.push(claim(&*store, id, 0).await);
        }
        // Queued together, so the embedded store commits them in shared transactions.
        let mut writes = Vec::new();
        for claim in claims {
            let store = store.clone();
            writes.push(tokio::spawn(async move {
                let delivered =
                    attempt(claim.delivery_id, AttemptClass::Http2xxDelivered, Some(200));
                store
                    .record_attempt(&claim, &delivered, DeliveryStatus::Delivered)
                    .await
            }));
        }
        let missing = DeliveryId::generate();
        let doomed = {
            let store = store.clone();
            tokio::spawn(async move {
                let claim = AttemptClaim {
                    delivery_id: missing,
                    number: 1,
                    token: "never taken".into(),
                    until: OffsetDateTime::now_utc(),
                };
                let lost = attempt(missing, AttemptClass::Http2xxDelivered, Some(200));
                store
                    .record_attempt(&claim, &lost, DeliveryStatus::Delivered)
                    .await
            })
        };
        for write in writes {
            assert_eq!(write.await.unwrap().unwrap(), RecordOutcome::Recorded);
        }
        assert!(matches!(
            doomed.await.unwrap(),
            Err(hookstream_store::StoreError::NotFound(_))
        ));
        assert!(store.get_delivery(missing).await.unwrap().is_none());
    }
    // What was acknowledged is on disk.
    let reopened = backend.open().await;
    for id in ids {
        let delivery = reopened.get_delivery(id).await.unwrap().unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Delivered);
        assert_eq!(reopened.list_attempts(id).await.unwrap().len(), 1);
    }
}

async fn rows_past_their_retention_are_removed(backend: Backend) {
    let retention = Duration::from_secs(2);
    let window = IdempotencyWindow(Duration::from_secs(2));
    let store = backend.open_with_retention(retention).await;
    let ep = endpoint("acme", &[]);
    store.create_endpoint(&ep).await.unwrap();
    let new = new_event("acme", Some("kept-briefly"), &[&ep]);
    store.create_event(&new, window).await.unwrap();
    let id = new.deliveries[0].id;
    delivered(&*store, id).await;

    // The embedded store purges on request (here with its clock moved past the retention);
    // ScyllaDB expires the rows by TTL on its own, so that lane waits for the clock.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let later = OffsetDateTime::now_utc() + Duration::from_secs(3);
        store.purge_expired(later, retention).await.unwrap();
        if store.get_delivery(id).await.unwrap().is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(store.list_attempts(id).await.unwrap().is_empty());
    let later = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    assert!(
        store
            .unpublished_events(later, 10)
            .await
            .unwrap()
            .is_empty(),
        "the event went with its deliveries"
    );
    // The key is free again: a different request under it is a new event, not a conflict.
    let mut reuse = new_event("acme", Some("kept-briefly"), &[&ep]);
    reuse.event.payload = json!({"order": 2});
    assert!(matches!(
        store.create_event(&reuse, window).await.unwrap(),
        CreateEventOutcome::Created
    ));
    assert_eq!(
        store.get_endpoint(ep.id).await.unwrap().map(|e| e.id),
        Some(ep.id),
        "endpoints are configuration, not traffic: kept"
    );
}

#[tokio::test]
async fn the_embedded_purge_removes_old_dead_letters_and_finished_batches_only() {
    let backend = Backend::sqlite();
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    // Dead letters from an hour ago, purged with a retention of a minute.
    let letters = dead_letters(&f, &ep, 2, AttemptClass::Http4xxPermanent).await;
    let finished = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&finished, &pending_items(&letters))
        .await
        .unwrap();
    f.store
        .finish_batch(finished.id, BatchStatus::Cancelled, None)
        .await
        .unwrap();
    let running = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&running, &pending_items(&letters))
        .await
        .unwrap();
    let later = OffsetDateTime::now_utc() + Duration::from_secs(120);
    let purged = f
        .store
        .purge_expired(later, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!((purged.dead_letters, purged.batches), (2, 1));
    assert!(f.store.get_batch(finished.id).await.unwrap().is_none());
    assert!(
        f.store.get_batch(running.id).await.unwrap().is_some(),
        "a running batch is never purged"
    );
    let left = f
        .store
        .list_dead_letters(&DeadLetterFilter::default(), &PageRequest::default())
        .await
        .unwrap();
    assert!(left.items.is_empty());
}

/// A delivery still under way (an endpoint paused for longer than the retention, say) outlives
/// the retention, while a finished one of the same age goes: its task would otherwise come back
/// to a store that forgot it. (The embedded purge skips it; ScyllaDB writes it without a TTL
/// until it is final, and then the whole row with one.)
async fn deliveries_under_way_outlive_the_retention(backend: Backend) {
    let retention = Duration::from_secs(2);
    let store = backend.open_with_retention(retention).await;
    let ep = endpoint("acme", &[]);
    store.create_endpoint(&ep).await.unwrap();
    let waiting = new_event("acme", None, &[&ep]);
    let untouched = new_event("acme", None, &[&ep]);
    let done = new_event("acme", None, &[&ep]);
    for new in [&waiting, &untouched, &done] {
        store
            .create_event(new, IdempotencyWindow::default())
            .await
            .unwrap();
    }
    let retrying = waiting.deliveries[0].id;
    let pending = untouched.deliveries[0].id;
    let finished = done.deliveries[0].id;
    record(
        &*store,
        retrying,
        0,
        AttemptClass::Http5xxRetryable,
        503,
        DeliveryStatus::Retrying,
    )
    .await;
    delivered(&*store, finished).await;

    // The embedded store purges on request (its clock moved a year on); ScyllaDB expires rows by
    // TTL on its own, so that lane waits until the finished delivery is gone.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let much_later = OffsetDateTime::now_utc() + Duration::from_secs(365 * 86_400);
        store.purge_expired(much_later, retention).await.unwrap();
        if store.get_delivery(finished).await.unwrap().is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the finished delivery outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(store.list_attempts(finished).await.unwrap().is_empty());
    let kept = store.get_delivery(retrying).await.unwrap().unwrap();
    assert_eq!(kept.status, DeliveryStatus::Retrying);
    assert_eq!(kept.attempts, 1);
    assert_eq!(
        store.get_delivery(pending).await.unwrap().map(|d| d.status),
        Some(DeliveryStatus::Pending)
    );
    // Their tasks, coming back, still claim their next attempts; and once final, they go too.
    assert_eq!(claim(&*store, retrying, 1).await.number, 2);
    delivered(&*store, pending).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let much_later = OffsetDateTime::now_utc() + Duration::from_secs(365 * 86_400);
        store.purge_expired(much_later, retention).await.unwrap();
        if store.get_delivery(pending).await.unwrap().is_none() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a delivery finished late outlived its retention"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn secrets_are_sealed_in_the_file_and_open_only_with_the_key() {
    let backend = Backend::sqlite();
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let rotated_to = SigningSecret::generate().unwrap();
    let until = OffsetDateTime::now_utc() + Duration::from_secs(60);
    f.store
        .rotate_secret(ep.id, &rotated_to, until)
        .await
        .unwrap();
    let Backend::Sqlite(dir) = &backend else {
        unreachable!("an embedded backend")
    };
    // Whatever is on disk, the database and its write-ahead log, holds neither secret.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        for secret in [ep.secret.expose(), rotated_to.expose()] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a secret in plain text on disk"
            );
        }
    }
    let read = f.store.get_endpoint(ep.id).await.unwrap().unwrap();
    assert_eq!(read.secret, rotated_to);
    assert_eq!(read.previous_secret.unwrap().secret, ep.secret);

    let path = dir.path().join("store.db");
    let wrong_key =
        SecretSealer::from_base64_key("BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=").unwrap();
    let other = SqliteStore::open(&path, wrong_key).await.unwrap();
    assert!(matches!(
        other.get_endpoint(ep.id).await,
        Err(hookstream_store::StoreError::Corrupt { .. })
    ));
    let no_key = SqliteStore::open(&path, SecretSealer::plaintext())
        .await
        .unwrap();
    assert!(no_key.get_endpoint(ep.id).await.is_err());
}

#[tokio::test]
async fn the_embedded_purge_keeps_what_is_within_retention() {
    let backend = Backend::sqlite();
    let store = backend.open().await;
    let ep = endpoint("acme", &[]);
    let new = new_event("acme", Some("fresh"), &[&ep]);
    store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    let purged = store
        .purge_expired(OffsetDateTime::now_utc(), Duration::from_secs(86_400))
        .await
        .unwrap();
    assert_eq!(purged, hookstream_store::Purged::default());
    assert!(
        store
            .get_delivery(new.deliveries[0].id)
            .await
            .unwrap()
            .is_some()
    );
    let again = store
        .create_event(&new, IdempotencyWindow::default())
        .await
        .unwrap();
    assert!(
        matches!(again, CreateEventOutcome::Repeat { .. }),
        "key still live"
    );
}

async fn deliveries_filter_by_event_endpoint_and_status(backend: Backend) {
    let f = backend.fixture().await;
    let a = endpoint("acme", &[]);
    let b = endpoint("acme", &[]);
    let first = new_event("acme", None, &[&a, &b]);
    let second = new_event("acme", None, &[&a]);
    for new in [&first, &second] {
        f.store
            .create_event(new, IdempotencyWindow::default())
            .await
            .unwrap();
    }
    delivered(&*f.store, first.deliveries[0].id).await;

    let count = |filter: DeliveryFilter| {
        let store = f.store.clone();
        async move {
            store
                .list_deliveries(&filter, &PageRequest::default())
                .await
                .unwrap()
                .items
                .len()
        }
    };
    assert_eq!(
        count(DeliveryFilter {
            event_id: Some(first.event.id),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(DeliveryFilter {
            endpoint_id: Some(a.id),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(DeliveryFilter {
            tenant: Some(tenant("acme")),
            status: Some(DeliveryStatus::Delivered),
            ..Default::default()
        })
        .await,
        1
    );
    assert_eq!(
        count(DeliveryFilter {
            tenant: Some(tenant("acme")),
            status: Some(DeliveryStatus::Pending),
            ..Default::default()
        })
        .await,
        2
    );
    assert_eq!(
        count(DeliveryFilter {
            tenant: Some(tenant("other")),
            ..Default::default()
        })
        .await,
        0
    );

    let acme = DeliveryFilter {
        tenant: Some(tenant("acme")),
        ..Default::default()
    };
    let page = f
        .store
        .list_deliveries(&acme, &PageRequest::first(2))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 2);
    let rest = f
        .store
        .list_deliveries(
            &acme,
            &PageRequest {
                after: page.next,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next.is_none());

    // ScyllaDB reads deliveries through index tables keyed by tenant, event or endpoint, and
    // refuses a listing that names none rather than scan the whole table.
    let unfiltered = f
        .store
        .list_deliveries(&DeliveryFilter::default(), &PageRequest::default())
        .await;
    match backend {
        Backend::Sqlite(_) => assert_eq!(unfiltered.unwrap().items.len(), 3),
        Backend::Scylla(_) => assert!(
            matches!(&unfiltered, Err(hookstream_store::StoreError::Backend(m)) if m.contains("needs a tenant, event or endpoint filter")),
            "{unfiltered:?}"
        ),
    }
}

async fn data_survives_reopening_the_file(backend: Backend) {
    let ep = endpoint("acme", &[]);
    {
        let store = backend.open().await;
        store.create_endpoint(&ep).await.unwrap();
    }
    let reopened = backend.open().await;
    assert!(reopened.get_endpoint(ep.id).await.unwrap().is_some());
}

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

async fn dead_letters_are_indexed_once_and_listed_by_filter_and_page(backend: Backend) {
    let f = backend.fixture().await;
    let a = endpoint("acme", &[]);
    let b = endpoint("acme", &[]);
    f.store.create_endpoint(&a).await.unwrap();
    f.store.create_endpoint(&b).await.unwrap();
    let of_a = dead_letters(&f, &a, 5, AttemptClass::Http4xxPermanent).await;
    let of_b = dead_letters(&f, &b, 2, AttemptClass::NetworkError).await;
    // Read again after a crash: indexing the same letter changes nothing.
    f.store.index_dead_letter(&of_a[0]).await.unwrap();

    let mut seen = Vec::new();
    let mut page = PageRequest::first(2);
    let filter = DeadLetterFilter {
        endpoint_id: Some(a.id),
        ..Default::default()
    };
    loop {
        let got = f.store.list_dead_letters(&filter, &page).await.unwrap();
        seen.extend(got.items.iter().map(|d| d.letter.task.delivery_id));
        match got.next {
            Some(next) => page.after = Some(next),
            None => break,
        }
    }
    let expected: Vec<DeliveryId> = of_a.iter().map(|l| l.task.delivery_id).collect();
    assert_eq!(
        seen, expected,
        "every letter of the endpoint once, in the order they died"
    );

    let by_class = DeadLetterFilter {
        class: Some(AttemptClass::NetworkError),
        ..Default::default()
    };
    let got = f
        .store
        .list_dead_letters(&by_class, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(got.items.len(), of_b.len());
    let window = DeadLetterFilter {
        endpoint_id: Some(a.id),
        since: Some(of_a[1].dead_lettered_at),
        until: Some(of_a[3].dead_lettered_at),
        ..Default::default()
    };
    let got = f
        .store
        .list_dead_letters(&window, &PageRequest::default())
        .await
        .unwrap();
    let ids: Vec<DeliveryId> = got
        .items
        .iter()
        .map(|d| d.letter.task.delivery_id)
        .collect();
    assert_eq!(
        ids,
        vec![of_a[1].task.delivery_id, of_a[2].task.delivery_id]
    );
    let one = f
        .store
        .get_dead_letter(of_b[0].task.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(one.letter, of_b[0]);
    assert_eq!(one.replays, 0);
}

async fn a_batch_replays_each_dead_letter_once_unless_repeats_are_allowed(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let letters = dead_letters(&f, &ep, 3, AttemptClass::Http4xxPermanent).await;

    let first = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&first, &pending_items(&letters))
        .await
        .unwrap();
    assert_eq!(f.store.running_batches().await.unwrap(), vec![first.id]);
    let mut created = Vec::new();
    for position in 0..3 {
        let replay = DeliveryId::generate();
        let step = f
            .store
            .replay_item(first.id, position, replay)
            .await
            .unwrap();
        assert_eq!(
            step,
            ReplayStep::Decided(ItemOutcome::Created {
                delivery_id: replay,
                published: false
            })
        );
        // A runner that crashed after the write and tries again gets the same answer, and
        // nothing new.
        let again = f
            .store
            .replay_item(first.id, position, DeliveryId::generate())
            .await
            .unwrap();
        assert_eq!(again, step);
        created.push(replay);
    }
    for id in &created {
        let delivery = f.store.get_delivery(*id).await.unwrap().unwrap();
        assert_eq!(delivery.status, DeliveryStatus::Pending);
    }
    // Created but not yet on Kafka: still unfinished, until marked published.
    assert_eq!(
        f.store
            .unfinished_items(first.id, None, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    f.store.mark_item_published(first.id, 0).await.unwrap();
    let left = f.store.unfinished_items(first.id, None, 10).await.unwrap();
    assert_eq!(
        left.iter().map(|i| i.position).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let done = f
        .store
        .finish_batch(first.id, BatchStatus::Completed, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, BatchStatus::Completed);
    assert_eq!(done.counts.created, 3);
    assert!(done.finished_at.is_some());
    assert!(f.store.running_batches().await.unwrap().is_empty());
    let letter = f
        .store
        .get_dead_letter(letters[0].task.delivery_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(letter.replays, 1);

    // A second batch over the same letters skips them all...
    let second = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&second, &pending_items(&letters))
        .await
        .unwrap();
    for position in 0..3 {
        let step = f
            .store
            .replay_item(second.id, position, DeliveryId::generate())
            .await
            .unwrap();
        assert_eq!(
            step,
            ReplayStep::Decided(ItemOutcome::Skipped(SkipReason::AlreadyReplayed))
        );
    }
    let counts = f.store.get_batch(second.id).await.unwrap().unwrap().counts;
    assert_eq!(counts.skipped, vec![(SkipReason::AlreadyReplayed, 3)]);
    // ...unless it asks for repeats.
    let third = batch(
        BatchSelection::Deliveries(vec![letters[0].task.delivery_id]),
        true,
    );
    f.store
        .create_batch(&third, &pending_items(&letters[..1]))
        .await
        .unwrap();
    let step = f
        .store
        .replay_item(third.id, 0, DeliveryId::generate())
        .await
        .unwrap();
    assert!(matches!(
        step,
        ReplayStep::Decided(ItemOutcome::Created { .. })
    ));
    let read = f.store.get_batch(third.id).await.unwrap().unwrap();
    assert_eq!(read.selection, third.selection);
    assert!(read.allow_repeat);
}

async fn a_cancelled_batch_creates_nothing_more(backend: Backend) {
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    f.store.create_endpoint(&ep).await.unwrap();
    let letters = dead_letters(&f, &ep, 2, AttemptClass::Http4xxPermanent).await;
    let b = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&b, &pending_items(&letters))
        .await
        .unwrap();
    let step = f
        .store
        .replay_item(b.id, 0, DeliveryId::generate())
        .await
        .unwrap();
    assert!(matches!(
        step,
        ReplayStep::Decided(ItemOutcome::Created { .. })
    ));
    let cancelled = f
        .store
        .finish_batch(b.id, BatchStatus::Cancelled, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cancelled.status, BatchStatus::Cancelled);
    let replay = DeliveryId::generate();
    let step = f.store.replay_item(b.id, 1, replay).await.unwrap();
    assert_eq!(step, ReplayStep::BatchStopped(BatchStatus::Cancelled));
    assert!(f.store.get_delivery(replay).await.unwrap().is_none());
    // Finishing again changes nothing: a cancelled batch does not become completed.
    let again = f
        .store
        .finish_batch(b.id, BatchStatus::Completed, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.status, BatchStatus::Cancelled);
    let items = f
        .store
        .list_batch_items(b.id, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(items.items[0].outcome.kind(), "created");
    assert_eq!(items.items[1].outcome, ItemOutcome::Pending);
}

async fn replays_skip_deleted_and_disabled_endpoints(backend: Backend) {
    let f = backend.fixture().await;
    let mut disabled = endpoint("acme", &[]);
    let deleted = endpoint("acme", &[]);
    f.store.create_endpoint(&disabled).await.unwrap();
    f.store.create_endpoint(&deleted).await.unwrap();
    let mut letters = dead_letters(&f, &disabled, 1, AttemptClass::Http4xxPermanent).await;
    letters.extend(dead_letters(&f, &deleted, 1, AttemptClass::Http4xxPermanent).await);
    disabled.disabled = true;
    f.store.update_endpoint(&disabled).await.unwrap();
    f.store.delete_endpoint(deleted.id).await.unwrap();
    let b = batch(BatchSelection::Filter(DeadLetterFilter::default()), false);
    f.store
        .create_batch(&b, &pending_items(&letters))
        .await
        .unwrap();
    let first = f
        .store
        .replay_item(b.id, 0, DeliveryId::generate())
        .await
        .unwrap();
    let second = f
        .store
        .replay_item(b.id, 1, DeliveryId::generate())
        .await
        .unwrap();
    assert_eq!(
        first,
        ReplayStep::Decided(ItemOutcome::Skipped(SkipReason::EndpointDisabled))
    );
    assert_eq!(
        second,
        ReplayStep::Decided(ItemOutcome::Skipped(SkipReason::EndpointDeleted))
    );
}

async fn batches_are_listed_for_everyone_or_for_one_tenant(backend: Backend) {
    let f = backend.fixture().await;
    let acme = Tenant::parse("acme", "tenant").unwrap();
    let globex = Tenant::parse("globex", "tenant").unwrap();
    let mut created = Vec::new();
    for tenant in [Some(&acme), None, Some(&globex), Some(&acme)] {
        let mut b = batch(
            BatchSelection::Deliveries(vec![DeliveryId::generate()]),
            false,
        );
        b.tenant = tenant.cloned();
        b.status = BatchStatus::Completed;
        f.store.create_batch(&b, &[]).await.unwrap();
        created.push(b.id);
    }
    let ids = |page: hookstream_store::Page<Batch>| -> Vec<BatchId> {
        page.items.iter().map(|b| b.id).collect()
    };
    let all = f
        .store
        .list_batches(None, &PageRequest::first(10))
        .await
        .unwrap();
    // Newest first by id (ids made within one millisecond sort at random among themselves).
    let mut newest_first = created.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids(all), newest_first);
    let mut acme_ids = [created[0], created[3]];
    acme_ids.sort_by(|a, b| b.cmp(a));

    let first = f
        .store
        .list_batches(Some(&acme), &PageRequest::first(1))
        .await
        .unwrap();
    assert_eq!(first.items[0].tenant.as_ref(), Some(&acme));
    let next = first.next.clone().expect("a second page");
    assert_eq!(ids(first), vec![acme_ids[0]]);
    let second = f
        .store
        .list_batches(
            Some(&acme),
            &PageRequest {
                limit: 1,
                after: Some(next),
            },
        )
        .await
        .unwrap();
    assert!(second.next.is_none());
    assert_eq!(ids(second), vec![acme_ids[1]]);
    let stored = f.store.get_batch(created[2]).await.unwrap().unwrap();
    assert_eq!(stored.tenant.as_ref(), Some(&globex));
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

async fn api_keys_are_kept_per_tenant_and_revoked_once(backend: Backend) {
    let f = backend.fixture().await;
    let acme = Tenant::parse("acme", "tenant").unwrap();
    let globex = Tenant::parse("globex", "tenant").unwrap();
    let ci = api_key(&acme, "ci", 1);
    let mut deploy = api_key(&acme, "deploy", 2);
    // Created a moment later, so the list order is defined.
    deploy.created_at = ci.created_at + time::Duration::milliseconds(1);
    let other = api_key(&globex, "ci", 3);
    for key in [&ci, &deploy, &other] {
        f.store.create_api_key(key).await.unwrap();
    }
    assert_eq!(
        f.store.get_api_key(ci.id).await.unwrap().as_ref(),
        Some(&ci)
    );
    assert_eq!(
        f.store.get_api_key(ApiKeyId::generate()).await.unwrap(),
        None
    );
    assert_eq!(
        f.store.list_api_keys(&acme).await.unwrap(),
        vec![ci.clone(), deploy.clone()]
    );

    // Another tenant's key cannot be revoked through this tenant.
    let at = now_millis();
    assert_eq!(
        f.store.revoke_api_key(&acme, other.id, at).await.unwrap(),
        None
    );
    assert!(
        !f.store
            .get_api_key(other.id)
            .await
            .unwrap()
            .unwrap()
            .is_revoked()
    );

    let revoked = f
        .store
        .revoke_api_key(&acme, ci.id, at)
        .await
        .unwrap()
        .expect("acme's key");
    assert_eq!(revoked.revoked_at, Some(at));
    let later = at + time::Duration::minutes(5);
    let again = f.store.revoke_api_key(&acme, ci.id, later).await.unwrap();
    assert_eq!(
        again.and_then(|k| k.revoked_at),
        Some(at),
        "the first revocation stands"
    );
    assert_eq!(
        f.store
            .get_api_key(ci.id)
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(at)
    );
    assert!(
        !f.store
            .get_api_key(deploy.id)
            .await
            .unwrap()
            .unwrap()
            .is_revoked()
    );
}

async fn an_event_set_aside_leaves_the_outbox_for_good(backend: Backend) {
    let f = backend.fixture().await;
    let window = IdempotencyWindow::default();
    let ep = endpoint("acme", &[]);
    let refused = new_event("acme", Some("too-big"), &[&ep]);
    let fine = new_event("acme", None, &[&ep]);
    f.store
        .create_events(&[refused.clone(), fine.clone()], window)
        .await
        .unwrap();
    f.store
        .set_aside_event(refused.event.id, "kafka refuses the record: too large")
        .await
        .unwrap();

    let cutoff = OffsetDateTime::now_utc() + Duration::from_secs(1);
    let waiting = f.store.unpublished_events(cutoff, 10).await.unwrap();
    let ids: Vec<EventId> = waiting.iter().map(|(event, _)| event.id).collect();
    assert_eq!(ids, vec![fine.event.id], "the sweep goes on without it");
    let again = new_event("acme", Some("too-big"), &[&ep]);
    match f.store.create_event(&again, window).await.unwrap() {
        CreateEventOutcome::Repeat { event, state, .. } => {
            assert_eq!(event.id, refused.event.id);
            assert_eq!(
                state,
                PublishState::SetAside,
                "a repeat is not published again"
            );
        }
        other => panic!("expected a repeat, got {other:?}"),
    }
    assert!(matches!(
        f.store.set_aside_event(EventId::generate(), "x").await,
        Err(hookstream_store::StoreError::NotFound(_))
    ));
}

/// Issue 19, item 7: one event that does not decode stopped every sweep.
#[tokio::test]
async fn the_embedded_sweep_sets_aside_an_event_that_does_not_decode() {
    let backend = Backend::sqlite();
    let f = backend.fixture().await;
    let ep = endpoint("acme", &[]);
    let mut damaged = new_event("acme", None, &[&ep]);
    damaged.event.created_at -= Duration::from_secs(120);
    let fine = new_event("acme", None, &[&ep]);
    f.store
        .create_events(
            &[damaged.clone(), fine.clone()],
            IdempotencyWindow::default(),
        )
        .await
        .unwrap();
    let Backend::Sqlite(dir) = &backend else {
        unreachable!("an embedded backend")
    };
    let raw = rusqlite::Connection::open(dir.path().join("store.db")).unwrap();
    raw.execute(
        "UPDATE events SET payload = 'not json' WHERE id = ?1",
        [damaged.event.id.to_string()],
    )
    .unwrap();

    let cutoff = OffsetDateTime::now_utc() + Duration::from_secs(1);
    let waiting = f.store.unpublished_events(cutoff, 10).await.unwrap();
    let ids: Vec<EventId> = waiting.iter().map(|(event, _)| event.id).collect();
    assert_eq!(ids, vec![fine.event.id]);
    let state: String = raw
        .query_row(
            "SELECT publish_state FROM events WHERE id = ?1",
            [damaged.event.id.to_string()],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(state, "set_aside");
}

/// Fault tests of the ScyllaDB store: statements fail (as a node timing out would) at chosen
/// points of a real write to the CQL node.
mod scylla_faults {
    use super::*;

    async fn open(backend: &Backend) -> ScyllaStore {
        let Backend::Scylla(at) = backend else {
            unreachable!("a ScyllaDB backend")
        };
        ScyllaStore::open(at, Duration::from_secs(30 * 86_400), sealer())
            .await
            .unwrap()
    }

    fn request(tenant_name: &str, ep: &Endpoint, other: &Endpoint) -> Vec<NewEvent> {
        let keyed = |key: &str| new_event(tenant_name, Some(key), &[ep, other]);
        vec![
            keyed("k-a"),
            new_event(tenant_name, None, &[ep, other]),
            keyed("k-b"),
        ]
    }

    async fn deliveries_of(store: &dyn Store, tenant_name: &str) -> Vec<Delivery> {
        let filter = DeliveryFilter {
            tenant: Some(tenant(tenant_name)),
            ..Default::default()
        };
        store
            .list_deliveries(&filter, &PageRequest::default())
            .await
            .unwrap()
            .items
    }

    async fn outbox_ids(store: &dyn Store) -> Vec<EventId> {
        let cutoff = OffsetDateTime::now_utc() + Duration::from_secs(1);
        store
            .unpublished_events(cutoff, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|(event, _)| event.id)
            .collect()
    }

    /// Every service opens the store at start-up, migrating a new keyspace together: an
    /// `ALTER TABLE … ADD` that a racing instance ran first must not fail the others' start.
    #[tokio::test]
    async fn services_opening_a_new_keyspace_together_all_start() {
        let backend = Backend::scylla();
        let opening: Vec<_> = (0..4)
            .map(|_| {
                let Backend::Scylla(at) = &backend else {
                    unreachable!("a ScyllaDB backend")
                };
                let at = at.clone();
                tokio::spawn(async move {
                    ScyllaStore::open(&at, Duration::from_secs(86_400), sealer()).await
                })
            })
            .collect();
        for opened in opening {
            if let Err(err) = opened.await.expect("the opening task ran to its end") {
                panic!("a store failed to open beside the others: {err}");
            }
        }
    }

    /// Issue 19: a batch stored one event at a time stopped at the first error, so a client
    /// retrying after the 503 got the first events twice under different ids.
    #[tokio::test]
    async fn a_batch_that_fails_anywhere_stores_nothing_and_its_retry_stores_it_once() {
        let backend = Backend::scylla();
        let store = open(&backend).await;
        let window = IdempotencyWindow::default();
        let ep = endpoint("acme", &[]);
        let other = endpoint("acme", &[]);
        let mut failures = 0;
        // Every statement of the request fails once in turn, until one plan is never reached.
        for nth in 1.. {
            let name = format!("tenant-{nth}");
            let first_try = request(&name, &ep, &other);
            store.fail_statements(nth, 1);
            let result = store.create_events(&first_try, window).await;
            store.fail_statements(0, 0);
            let Err(err) = result else {
                // Stored: all of it, once.
                assert_eq!(deliveries_of(&store, &name).await.len(), 6, "at {nth}");
                let waiting = outbox_ids(&store).await;
                for new in &first_try {
                    assert!(waiting.contains(&new.event.id), "at {nth}");
                    store.mark_event_published(new.event.id).await.unwrap();
                }
                if nth > 60 {
                    break;
                }
                continue;
            };
            failures += 1;
            assert!(err.to_string().contains("planned fault"), "at {nth}: {err}");
            assert!(
                deliveries_of(&store, &name).await.is_empty(),
                "statement {nth} failed, yet deliveries are listed"
            );
            let waiting = outbox_ids(&store).await;
            for new in &first_try {
                assert!(!waiting.contains(&new.event.id), "at {nth}: in the outbox");
                for d in &new.deliveries {
                    assert!(
                        store.get_delivery(d.id).await.unwrap().is_none(),
                        "at {nth}"
                    );
                }
            }
            // The client's retry: new ids, the same keys.
            let retry = request(&name, &ep, &other);
            let outcomes = store.create_events(&retry, window).await.unwrap();
            assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, CreateEventOutcome::Created)),
                "at {nth}: {outcomes:?}"
            );
            assert_eq!(deliveries_of(&store, &name).await.len(), 6, "at {nth}");
            for new in &retry {
                store.mark_event_published(new.event.id).await.unwrap();
            }
        }
        assert!(
            failures > 30,
            "every step of the request was tried: {failures}"
        );
    }

    /// A plain session on the test's cluster, to plant what the store itself would not write.
    async fn raw_session(at: &ScyllaLocation) -> ::scylla::client::session::Session {
        ::scylla::client::session_builder::SessionBuilder::new()
            .known_nodes(&at.nodes)
            .build()
            .await
            .unwrap()
    }

    /// An endpoint created before the settings column existed has it null: a change of its
    /// settings compares against that null and applies.
    #[tokio::test]
    async fn settings_change_on_an_endpoint_older_than_the_settings_column() {
        let backend = Backend::scylla();
        let Backend::Scylla(at) = &backend else {
            unreachable!("a ScyllaDB backend")
        };
        let store = open(&backend).await;
        let ep = endpoint("acme", &[]);
        store.create_endpoint(&ep).await.unwrap();
        let raw = raw_session(at).await;
        raw.use_keyspace(&at.keyspace, false).await.unwrap();
        raw.query_unpaged(
            "UPDATE endpoints SET shaping = null WHERE id = ?",
            (ep.id.to_string(),),
        )
        .await
        .unwrap();
        let read = store.get_endpoint(ep.id).await.unwrap().unwrap();
        assert_eq!(read.shaping, Shaping::default());

        let changes = EndpointChanges {
            ordering: Some(Ordering::None),
            max_in_flight: Some(Some(12)),
            ..Default::default()
        };
        let changed = store
            .change_endpoint(ep.id, &changes, OffsetDateTime::now_utc())
            .await
            .unwrap()
            .expect("the endpoint, changed");
        assert_eq!(changed.shaping.ordering, Ordering::None);
        assert_eq!(changed.shaping.concurrency(), 12);
    }

    /// Issue 19, item 7: one event that does not decode stopped every sweep.
    #[tokio::test]
    async fn the_sweep_sets_aside_an_event_that_does_not_decode() {
        let backend = Backend::scylla();
        let Backend::Scylla(at) = &backend else {
            unreachable!("a ScyllaDB backend")
        };
        let store = open(&backend).await;
        let ep = endpoint("acme", &[]);
        let damaged = new_event("acme", None, &[&ep]);
        let fine = new_event("acme", None, &[&ep]);
        store
            .create_events(
                &[damaged.clone(), fine.clone()],
                IdempotencyWindow::default(),
            )
            .await
            .unwrap();
        let raw = raw_session(at).await;
        raw.use_keyspace(&at.keyspace, false).await.unwrap();
        raw.query_unpaged(
            "UPDATE events SET payload = 'not json' WHERE id = ?",
            (damaged.event.id.to_string(),),
        )
        .await
        .unwrap();

        let waiting = outbox_ids(&store).await;
        assert_eq!(waiting, vec![fine.event.id]);
        assert_eq!(outbox_ids(&store).await, waiting, "set aside for good");
    }

    /// Issue 19, item 8: dead letters shared one partition per day across tenants, so one
    /// tenant's list read every tenant's letters of the day. A tenant's list now reads its own
    /// partition: with the shared day's rows gone, it still finds its letters.
    #[tokio::test]
    async fn a_tenants_dead_letters_are_read_from_its_own_partition() {
        let backend = Backend::scylla();
        let Backend::Scylla(at) = &backend else {
            unreachable!("a ScyllaDB backend")
        };
        let raw = raw_session(at).await;
        // A keyspace that has kept dead letters per tenant since yesterday.
        open(&backend).await;
        raw.use_keyspace(&at.keyspace, false).await.unwrap();
        let yesterday = (OffsetDateTime::now_utc().unix_timestamp() / 86_400 - 1).to_string();
        raw.query_unpaged(
            "UPDATE control SET value = ? WHERE name = 'dead_letters_by_tenant_from'",
            (yesterday,),
        )
        .await
        .unwrap();
        let store = open(&backend).await;

        let now = OffsetDateTime::now_utc() - Duration::from_secs(60);
        let mut letters = Vec::new();
        for tenant_name in ["acme", "other"] {
            let ep = endpoint(tenant_name, &[]);
            let new = new_event(tenant_name, None, &[&ep]);
            let letter = dead_letter_of(&new.deliveries[0], AttemptClass::Http4xxPermanent, now);
            store.index_dead_letter(&letter).await.unwrap();
            letters.push(letter);
        }
        let today = OffsetDateTime::now_utc().unix_timestamp() / 86_400;
        raw.query_unpaged(
            "DELETE FROM dead_letters_by_day WHERE day = ?",
            (i32::try_from(today).unwrap(),),
        )
        .await
        .unwrap();

        let acme = DeadLetterFilter {
            tenant: Some(tenant("acme")),
            ..Default::default()
        };
        let listed = store
            .list_dead_letters(&acme, &PageRequest::default())
            .await
            .unwrap();
        let ids: Vec<DeliveryId> = listed
            .items
            .iter()
            .map(|d| d.letter.task.delivery_id)
            .collect();
        assert_eq!(ids, vec![letters[0].task.delivery_id]);
        let everyone = store
            .list_dead_letters(&DeadLetterFilter::default(), &PageRequest::default())
            .await
            .unwrap();
        assert!(
            everyone.items.is_empty(),
            "an operator's list reads the shared day"
        );
    }

    /// Issue 19: an event whose key was claimed before its outbox row was written, by a process
    /// that then died, was never published and held its key for the whole window.
    #[tokio::test]
    async fn a_request_that_died_half_way_frees_its_key_and_is_swept_away() {
        let backend = Backend::scylla();
        let ep = endpoint("acme", &[]);
        let window = IdempotencyWindow::default();
        let dying = open(&backend).await;
        let mut keyed = new_event("acme", Some("k-1"), &[&ep]);
        let mut unkeyed = new_event("acme", None, &[&ep]);
        // Created long enough ago for the sweep to give up on them.
        for new in [&mut keyed, &mut unkeyed] {
            new.event.created_at -= Duration::from_secs(600);
        }
        // The process dies after staging the first event (key claimed), mid-way through the second.
        dying.fail_statements(12, u64::MAX);
        assert!(
            dying
                .create_events(&[keyed.clone(), unkeyed.clone()], window)
                .await
                .is_err()
        );

        let alive = open(&backend).await;
        // The event holds its key, staged, with nobody left to decide it: the retry waits for
        // it briefly, abandons it and takes the key.
        let retry = new_event("acme", Some("k-1"), &[&ep]);
        assert!(matches!(
            alive.create_event(&retry, window).await.unwrap(),
            CreateEventOutcome::Created
        ));
        // The sweep never publishes the dead request's events; it removes them.
        let waiting = outbox_ids(&alive).await;
        assert!(waiting.contains(&retry.event.id));
        for new in [&keyed, &unkeyed] {
            assert!(!waiting.contains(&new.event.id));
            for d in &new.deliveries {
                assert!(alive.get_delivery(d.id).await.unwrap().is_none());
            }
        }
        assert_eq!(outbox_ids(&alive).await.len(), waiting.len());
    }
}

/// Issue 19, item 9: a plain secret in the store was accepted although a key was set, so anyone
/// who could write the database could plant one and forge webhooks; and one secret that did not
/// open failed intake for the whole tenant.
async fn a_planted_plain_secret_is_refused_and_stops_only_its_endpoint(backend: Backend) {
    // An install from before the key: its secrets are refused until the operator has them
    // sealed (one start with HOOKSTREAM_SEAL_PLAIN_SECRETS).
    let older = backend.open_without_key().await;
    let from_before = endpoint("acme", &[]);
    older.create_endpoint(&from_before).await.unwrap();
    let refused = backend.open().await.get_endpoint(from_before.id).await;
    assert!(refused.is_err(), "plain text is refused with a key");
    backend
        .open_with(
            Duration::from_secs(30 * 86_400),
            sealer().sealing_plain_secrets_on_open(),
        )
        .await;
    let sealed = backend.open().await;
    let read = sealed.get_endpoint(from_before.id).await.unwrap().unwrap();
    assert_eq!(read.secret, from_before.secret, "sealed, and opens");

    // Planted after that: refused, also by every later start.
    let planted = endpoint("acme", &[]);
    older.create_endpoint(&planted).await.unwrap();
    for store in [sealed.clone(), backend.open().await] {
        let refused = store.get_endpoint(planted.id).await.unwrap_err();
        assert!(refused.to_string().contains("plain text"), "{refused}");
    }
    // Intake reads no secret: the tenant's events still fan out, to both endpoints (the
    // dispatcher refuses the planted one's deliveries).
    let mut subscribed: Vec<_> = sealed
        .subscriptions(&tenant("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    subscribed.sort();
    let mut want = vec![from_before.id, planted.id];
    want.sort();
    assert_eq!(subscribed, want);

    // Rotating gets rid of it: the planted secret does not stay on as the previous one.
    let fresh = SigningSecret::generate().unwrap();
    let until = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let rotated = sealed
        .rotate_secret(planted.id, &fresh, until)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret, fresh);
    assert!(rotated.previous_secret.is_none());
}

async fn secret_of(store: &Arc<dyn Store>, id: EndpointId) -> SigningSecret {
    store.get_endpoint(id).await.unwrap().unwrap().secret
}

/// Issue 24, item 4: the sealing key rotates. Secrets sealed under the single key (the form
/// without a key id) or an older key of the ring are re-sealed under the ring's first key,
/// current and previous secrets of live endpoints (a deleted one's is never read again); after
/// that the old key can go.
async fn secrets_under_an_older_key_are_resealed_so_the_old_key_can_go(backend: Backend) {
    let new_key = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    let ring = |text: &str| SecretSealer::from_key_ring(text).unwrap();
    let days = Duration::from_secs(30 * 86_400);
    let single = backend.open().await;
    let (kept, rotated, deleted) = (
        endpoint("acme", &[]),
        endpoint("acme", &[]),
        endpoint("globex", &[]),
    );
    for ep in [&kept, &rotated, &deleted] {
        single.create_endpoint(ep).await.unwrap();
    }
    let until = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    let rotated = single
        .rotate_secret(rotated.id, &SigningSecret::generate().unwrap(), until)
        .await
        .unwrap()
        .unwrap();
    single.delete_endpoint(deleted.id).await.unwrap();
    // A secret planted in plain text is counted, not sealed: it stays refused.
    let planted = endpoint("acme", &[]);
    backend
        .open_without_key()
        .await
        .create_endpoint(&planted)
        .await
        .unwrap();
    let census = single.reseal_secrets().await.unwrap();
    assert_eq!(
        (census.resealed, census.current, census.plain),
        (0, 3, 1),
        "one key: nothing to re-seal; {census:?}"
    );
    let by_key = |pairs: &[(&str, u64)]| -> std::collections::BTreeMap<String, u64> {
        pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };
    assert_eq!(census.by_key, by_key(&[("unnamed", 3)]));

    // The new key first, the old one after it: everything opens, and one pass re-seals.
    let rotating = backend
        .open_with(
            days,
            ring(&format!("2026-12={new_key},2026-06={SECRET_KEY}")),
        )
        .await;
    assert_eq!(secret_of(&rotating, kept.id).await, kept.secret);
    let census = rotating.reseal_secrets().await.unwrap();
    assert_eq!(
        (
            census.resealed,
            census.current,
            census.older_key,
            census.plain
        ),
        (3, 3, 0, 1),
        "{census:?}"
    );
    assert_eq!(census.by_key, by_key(&[("2026-12", 3)]));
    let again = rotating.reseal_secrets().await.unwrap();
    assert_eq!((again.resealed, again.current), (0, 3), "{again:?}");

    // The old key removed: every secret still opens, the previous one too.
    let new_only = backend
        .open_with(days, ring(&format!("2026-12={new_key}")))
        .await;
    assert_eq!(secret_of(&new_only, kept.id).await, kept.secret);
    let read = new_only.get_endpoint(rotated.id).await.unwrap().unwrap();
    assert_eq!(read.secret, rotated.secret);
    assert_eq!(read.previous_secret, rotated.previous_secret);
    let census = new_only.reseal_secrets().await.unwrap();
    assert_eq!((census.current, census.unopenable), (3, 0), "{census:?}");
    let refused = new_only.get_endpoint(planted.id).await.unwrap_err();
    assert!(refused.to_string().contains("plain text"), "{refused}");
    // A service left on the old key alone opens none of them, and says so.
    assert!(single.get_endpoint(kept.id).await.is_err());
    let stale = backend.open().await.reseal_secrets().await.unwrap();
    assert_eq!((stale.current, stale.unopenable), (0, 3), "{stale:?}");
    assert!(stale.by_key.is_empty(), "{stale:?}");
}

contract!(
    the_first_topic_prefix_recorded_is_the_installations,
    endpoints_are_created_read_updated_listed_and_deleted,
    ordered_queues_keep_position_order_per_endpoint,
    endpoint_health_is_replaced_and_read_back,
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
    rows_past_their_retention_are_removed,
    deliveries_under_way_outlive_the_retention,
    data_survives_reopening_the_file,
    dead_letters_are_indexed_once_and_listed_by_filter_and_page,
    a_batch_replays_each_dead_letter_once_unless_repeats_are_allowed,
    a_cancelled_batch_creates_nothing_more,
    replays_skip_deleted_and_disabled_endpoints,
    batches_are_listed_for_everyone_or_for_one_tenant,
    api_keys_are_kept_per_tenant_and_revoked_once,
    an_event_set_aside_leaves_the_outbox_for_good,
    a_planted_plain_secret_is_refused_and_stops_only_its_endpoint,
    secrets_under_an_older_key_are_resealed_so_the_old_key_can_go,
);
