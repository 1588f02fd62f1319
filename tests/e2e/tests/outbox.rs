//! Outbox recovery (issue 18, item 8): after a long Kafka outage, a thousand events that ingest
//! stored but never had acknowledged are republished in batches at publishing speed (the sweep
//! used to take 100 per tick, one at a time: about 3 events a second), and a delivery that had
//! already been attempted is not republished to skip its retry schedule.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use hookstream_e2e::{Broker, Pipeline, Receiver, Service};
use hookstream_model::delivery::{Delivery, DeliveryStatus};
use hookstream_model::destination::EndpointUrl;
use hookstream_model::endpoint::{Endpoint, Subscription};
use hookstream_model::event::{Event, IdempotencyWindow};
use hookstream_model::ids::{DeliveryId, EndpointId, EventId};
use hookstream_model::names::{EventType, Tenant};
use hookstream_signing::SigningSecret;
use hookstream_store::sqlite::SqliteStore;
use hookstream_store::{NewEvent, SecretSealer, Store};

const EVENTS: usize = 1000;
const RETRYING: usize = 5;
/// The key every pipeline of the tests seals secrets with.
const SECRET_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// An event stored ten minutes ago (well past the outbox grace) and never published, with one
/// delivery in `status` after `attempts` attempts.
fn unpublished(endpoint: &Endpoint, status: DeliveryStatus, attempts: u32) -> NewEvent {
    let then = OffsetDateTime::now_utc() - Duration::from_secs(600);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_outbox_is_republished_in_batches_without_skipping_retries() {
    let broker = Broker::start().await;
    let address = broker.address.clone();
    let mut pipeline = Pipeline::start_only(
        Some(broker),
        &address,
        &[("HOOKSTREAM_OUTBOX_GRACE", "60s")],
        &[],
    )
    .await;
    let receiver = Receiver::start().await;

    // What ingest left behind: the events are stored, their tasks never reached Kafka.
    let sealer = SecretSealer::from_base64_key(SECRET_KEY).expect("the test key");
    let store = SqliteStore::open(&pipeline.store_path(), sealer)
        .await
        .expect("the pipeline's store");
    let now = OffsetDateTime::now_utc();
    let endpoint = Endpoint {
        id: EndpointId::generate(),
        tenant: Tenant::parse("acme", "tenant").expect("a tenant"),
        url: EndpointUrl::parse(&receiver.url, "url").expect("the receiver's URL"),
        subscription: Subscription::All,
        secret: SigningSecret::generate().expect("a secret"),
        previous_secret: None,
        disabled: false,
        max_attempts: None,
        paused: false,
        circuit: Default::default(),
        created_at: now,
        updated_at: now,
    };
    store
        .create_endpoint(&endpoint)
        .await
        .expect("the endpoint");
    let waiting: Vec<NewEvent> = (0..EVENTS)
        .map(|_| unpublished(&endpoint, DeliveryStatus::Pending, 0))
        .collect();
    // Attempted once and waiting on a retry tier for an hour: not to be sent now.
    let retrying: Vec<NewEvent> = (0..RETRYING)
        .map(|_| unpublished(&endpoint, DeliveryStatus::Retrying, 1))
        .collect();
    for chunk in waiting.chunks(250).chain([retrying.as_slice()]) {
        store
            .create_events(chunk, IdempotencyWindow::default())
            .await
            .expect("storing the events");
    }

    // Ingest's first sweep takes the whole backlog.
    for service in [Service::Ingest, Service::Dispatcher, Service::RetryTier] {
        pipeline.start_service(service).await;
    }
    receiver.wait_for(EVENTS, Duration::from_secs(60)).await;

    let sent: std::collections::HashSet<String> = receiver
        .received()
        .iter()
        .map(|w| w.header("webhook-id").to_owned())
        .collect();
    for new in &retrying {
        assert!(
            !sent.contains(&new.deliveries[0].id.to_string()),
            "a delivery waiting on its retry tier was republished and sent early"
        );
    }
    for new in &waiting {
        assert!(sent.contains(&new.deliveries[0].id.to_string()));
    }
    assert!(receiver.duplicates().is_empty());
}
