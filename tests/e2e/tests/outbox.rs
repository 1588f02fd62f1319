//! Outbox recovery (issue 18, item 8): after a long Kafka outage, a thousand events that ingest
//! stored but never had acknowledged are republished in batches at publishing speed (the sweep
//! used to take 100 per tick, one at a time: about 3 events a second), and a delivery that had
//! already been attempted is not republished to skip its retry schedule.
//!
//! Issue 19, item 7: an event Kafka refuses as it is (a task larger than the broker takes) used
//! to fail every sweep, so no event behind it was ever republished; it is now set aside.

use std::time::Duration;

use hookstream_e2e::{Broker, Pipeline, Receiver, Service, seed};
use hookstream_model::delivery::DeliveryStatus;
use hookstream_model::event::IdempotencyWindow;
use hookstream_store::{NewEvent, Store};

const EVENTS: usize = 1000;
const RETRYING: usize = 5;
/// Well past the outbox grace.
const LONG_AGO: Duration = Duration::from_secs(600);

/// A broker and a receiver, with no service started: the test stores what ingest left behind,
/// then starts them.
async fn no_service_yet() -> (Pipeline, Receiver) {
    let broker = Broker::start().await;
    let address = broker.address.clone();
    let pipeline = Pipeline::start_only(
        Some(broker),
        &address,
        &[("HOOKSTREAM_OUTBOX_GRACE", "60s")],
        &[],
    )
    .await;
    (pipeline, Receiver::start().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_outbox_is_republished_in_batches_without_skipping_retries() {
    let (mut pipeline, receiver) = no_service_yet().await;

    // What ingest left behind: the events are stored, their tasks never reached Kafka.
    let store = seed::open_store(&pipeline).await;
    let endpoint = seed::endpoint(&store, &receiver.url).await;
    let waiting: Vec<NewEvent> = (0..EVENTS)
        .map(|_| seed::event(&endpoint, DeliveryStatus::Pending, 0, LONG_AGO))
        .collect();
    // Attempted once and waiting on a retry tier for an hour: not to be sent now.
    let retrying: Vec<NewEvent> = (0..RETRYING)
        .map(|_| seed::event(&endpoint, DeliveryStatus::Retrying, 1, LONG_AGO))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_kafka_refuses_is_set_aside_and_the_sweep_goes_on() {
    let (mut pipeline, receiver) = no_service_yet().await;

    // Stored before the others and larger than Kafka takes (1 MB a record): no sweep can
    // publish it. The events behind it wait on the same sweep.
    let store = seed::open_store(&pipeline).await;
    let endpoint = seed::endpoint(&store, &receiver.url).await;
    let mut refused = seed::event(&endpoint, DeliveryStatus::Pending, 0, LONG_AGO);
    refused.event.payload = serde_json::json!({"blob": "x".repeat(1_500_000)});
    let behind: Vec<NewEvent> = (0..3)
        .map(|_| seed::event(&endpoint, DeliveryStatus::Pending, 0, LONG_AGO / 2))
        .collect();
    store
        .create_events(&[refused.clone()], IdempotencyWindow::default())
        .await
        .expect("storing the refused event");
    store
        .create_events(&behind, IdempotencyWindow::default())
        .await
        .expect("storing the events behind it");

    for service in [Service::Ingest, Service::Dispatcher, Service::RetryTier] {
        pipeline.start_service(service).await;
    }
    receiver
        .wait_for(behind.len(), Duration::from_secs(60))
        .await;
    let sent: Vec<String> = receiver
        .received()
        .iter()
        .map(|w| w.header("webhook-id").to_owned())
        .collect();
    for new in &behind {
        assert!(sent.contains(&new.deliveries[0].id.to_string()));
    }
    assert!(!sent.contains(&refused.deliveries[0].id.to_string()));

    // Counted, for the alert, and out of the outbox: the next sweeps do not meet it again.
    let metrics = pipeline.metrics_of(Service::Ingest).await;
    assert!(
        metrics.contains("hookstream_outbox_set_aside_total 1"),
        "{metrics}"
    );
    // The sweep marks what it published (the old sweep failed on the refusal every time and
    // republished the same events at every tick, never getting past them).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let later = time::OffsetDateTime::now_utc();
        let left = store.unpublished_events(later, 10).await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still in the outbox: {:?}",
            left.iter().map(|(event, _)| event.id).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
