//! Writing a pipeline's store directly, for the states the public API cannot produce on demand:
//! what a crashed ingest leaves behind, deliveries waiting on a retry tier. The store is the
//! pipeline's own SQLite file, opened with the key its services seal secrets with.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use time::OffsetDateTime;

use hookstream_model::delivery::{Delivery, DeliveryStatus};
use hookstream_model::destination::EndpointUrl;
use hookstream_model::endpoint::{Endpoint, Subscription};
use hookstream_model::event::{Event, IdempotencyWindow};
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::{EventType, Tenant};
use hookstream_model::task::DeliveryTask;
use hookstream_signing::SigningSecret;
use hookstream_store::sqlite::SqliteStore;
use hookstream_store::{NewEvent, SecretSealer, Store};

use crate::Pipeline;

/// The key every pipeline of the tests seals secrets with.
pub const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The pipeline's store.
pub async fn open_store(pipeline: &Pipeline) -> SqliteStore {
    let sealer = SecretSealer::from_base64_key(SECRET_KEY).expect("the test key");
    SqliteStore::open(&pipeline.store_path(), sealer)
        .await
        .expect("the pipeline's store")
}

/// Stores an endpoint of tenant `acme` subscribed to everything, sending to `url`.
pub async fn endpoint(store: &SqliteStore, url: &str) -> Endpoint {
    let endpoint = endpoint_value(url);
    store
        .create_endpoint(&endpoint)
        .await
        .expect("the endpoint");
    endpoint
}

/// An endpoint of tenant `acme` subscribed to everything, sending to `url`, not stored.
pub fn endpoint_value(url: &str) -> Endpoint {
    let now = OffsetDateTime::now_utc();
    Endpoint {
        id: EndpointId::generate(),
        tenant: Tenant::parse("acme", "tenant").expect("a tenant"),
        url: EndpointUrl::parse(url, "url").expect("the receiver's URL"),
        subscription: Subscription::All,
        secret: SigningSecret::generate().expect("a secret"),
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

/// An event created `age` ago (and not yet published) with one delivery to `endpoint`, in
/// `status` after `attempts` attempts; one that was attempted waits for an hour.
pub fn event(
    endpoint: &Endpoint,
    status: DeliveryStatus,
    attempts: u32,
    age: Duration,
) -> NewEvent {
    let then = OffsetDateTime::now_utc() - age;
    let event = Event {
        id: EventId::generate(),
        tenant: endpoint.tenant.clone(),
        event_type: EventType::parse("order.created", "event_type").expect("a type"),
        payload: json!({"order": 1}),
        idempotency_key: None,
        created_at: then,
    };
    let delivery = Delivery {
        id: DeliveryId::generate(),
        event_id: event.id,
        endpoint_id: endpoint.id,
        tenant: event.tenant.clone(),
        event_type: event.event_type.clone(),
        status,
        attempts,
        next_attempt_at: (attempts > 0)
            .then(|| OffsetDateTime::now_utc() + Duration::from_secs(3600)),
        next_tier: None,
        created_at: then,
        updated_at: then,
    };
    NewEvent {
        event,
        deliveries: vec![delivery],
    }
}

/// The task of `new`'s first delivery after `attempts_made` attempts, due at `due_at`.
pub fn task(new: &NewEvent, attempts_made: u32, due_at: Option<OffsetDateTime>) -> DeliveryTask {
    let delivery = &new.deliveries[0];
    DeliveryTask {
        delivery_id: delivery.id,
        event_id: new.event.id,
        endpoint_id: delivery.endpoint_id,
        tenant: delivery.tenant.clone(),
        event_type: delivery.event_type.clone(),
        event_created_at: new.event.created_at,
        payload: new.event.payload.to_string(),
        attempts_made,
        due_at,
    }
}

/// Writes `task` to `topic` of the pipeline's broker, keyed as ingest keys it.
pub async fn publish_task(pipeline: &Pipeline, topic: &str, task: &DeliveryTask) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", pipeline.brokers())
        .create()
        .expect("a producer");
    let bytes = task.encode().expect("an encoded task");
    producer
        .send(
            FutureRecord::to(topic).key(&task.key()).payload(&bytes),
            Duration::from_secs(10),
        )
        .await
        .expect("the task on its topic");
}

/// Stores `events` as already published, so ingest's outbox does not publish them: the test
/// writes their tasks itself.
pub async fn store_published(store: &SqliteStore, events: &[NewEvent]) {
    store
        .create_events(events, IdempotencyWindow::default())
        .await
        .expect("storing the events");
    store
        .mark_events_published(&events.iter().map(|e| e.event.id).collect::<Vec<_>>())
        .await
        .expect("marking them published");
}
