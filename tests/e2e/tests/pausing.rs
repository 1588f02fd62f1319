//! The kill switch and per-endpoint pause: held tasks are not failed and spend no attempts.

use std::time::Duration;

use serde_json::json;
use time::OffsetDateTime;

use hookstream_e2e::{Pipeline, Receiver, eventually, sample, seed, sum};
use hookstream_model::delivery::DeliveryStatus;
use hookstream_model::endpoint::EndpointChanges;
use hookstream_model::ids::EndpointId;
use hookstream_store::Store;

const SETTLE: Duration = Duration::from_secs(60);
/// How long a paused pipeline is watched to show that nothing goes out.
const QUIET: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_holds_all_sending_until_resumed() {
    // Lag is read every second, so the test sees the held task quickly.
    let pipeline = Pipeline::start(&[("HOOKSTREAM_LAG_INTERVAL", "1s")]).await;
    let receiver = Receiver::start().await;
    let api = &pipeline.api;
    api.create_endpoint("acme", &receiver.url, &[]).await;

    let paused = api.call("POST", "/v1/control/pause", None).await;
    assert_eq!(paused.status, 200);
    assert_eq!(paused.body["sending_paused"], true);
    assert_eq!(
        api.call("GET", "/v1/control", None).await.body["sending_paused"],
        true
    );
    // The dispatcher polls the switch every 500 ms; wait until it says it is paused.
    eventually(
        "the dispatcher to pause",
        Duration::from_secs(5),
        || async {
            let metrics = pipeline.dispatcher_metrics().await;
            (sample(&metrics, "hookstream_sending_paused") == Some(1.0)).then_some(())
        },
    )
    .await;

    let event = api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(
        event.status, 202,
        "ingest still accepts while sending is paused"
    );
    let event_id = event.body["id"].as_str().unwrap().to_owned();
    // The task waits on Kafka, unconsumed (fetching is paused): its group's lag shows it. Only
    // from then on is the silence worth anything.
    eventually("the task to wait on Kafka", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sum(
            &metrics,
            "hookstream_consumer_lag",
            "topic=\"hookstream.deliveries\"",
        )? == 1.0)
            .then_some(())
    })
    .await;
    let quiet = tokio::time::timeout(QUIET, receiver.wait_for(1, QUIET * 2)).await;
    assert!(
        quiet.is_err(),
        "a webhook went out while sending was paused"
    );
    let held = api.deliveries_of(&event_id).await;
    assert_eq!(held[0]["attempts"], 0, "a held task spends no attempt");
    assert_ne!(held[0]["status"], "dead_lettered");

    let resumed = api.call("POST", "/v1/control/resume", None).await;
    assert_eq!(resumed.body["sending_paused"], false);
    let settled = api.settled_deliveries(&event_id, SETTLE).await;
    assert_eq!(settled[0]["status"], "delivered");
    assert_eq!(settled[0]["attempts"], 1);
    assert_eq!(receiver.wait_for(1, SETTLE).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_endpoint_waits_while_the_others_are_served() {
    let pipeline = Pipeline::start(&[]).await;
    let paused_receiver = Receiver::start().await;
    let other = Receiver::start().await;
    let api = &pipeline.api;
    let paused_ep = api.create_endpoint("acme", &paused_receiver.url, &[]).await;
    api.create_endpoint("acme", &other.url, &[]).await;
    let id = paused_ep["id"].as_str().unwrap();

    let paused = api
        .call("POST", &format!("/v1/endpoints/{id}/pause"), None)
        .await;
    assert_eq!(paused.status, 200);
    assert_eq!(paused.body["paused"], true);

    let event = api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    let event_id = event.body["id"].as_str().unwrap().to_owned();
    other.wait_for(1, SETTLE).await;
    let quiet = tokio::time::timeout(QUIET, paused_receiver.wait_for(1, QUIET * 2)).await;
    assert!(quiet.is_err(), "the paused endpoint got a webhook");
    let deliveries = api.deliveries_of(&event_id).await;
    let held = deliveries
        .iter()
        .find(|d| d["endpoint_id"] == id)
        .expect("the paused endpoint's delivery");
    assert_eq!(held["attempts"], 0, "a held task spends no attempt");

    let resumed = api
        .call("POST", &format!("/v1/endpoints/{id}/resume"), None)
        .await;
    assert_eq!(resumed.body["paused"], false);
    for delivery in api.settled_deliveries(&event_id, SETTLE).await {
        assert_eq!(delivery["status"], "delivered");
        assert_eq!(delivery["attempts"], 1);
    }
    assert_eq!(paused_receiver.wait_for(1, SETTLE).await.len(), 1);
    let metrics = pipeline.dispatcher_metrics().await;
    let held = sample(
        &metrics,
        r#"hookstream_tasks_held_total{reason="endpoint_paused"}"#,
    );
    assert!(
        held.is_some_and(|n| n >= 1.0),
        "holding shows in the metrics: {held:?}"
    );
}

/// Copies of tasks that need nothing (their delivery is delivered, or they are stale) are
/// skipped while their endpoint is paused, as at any other time: only a copy still to be sent
/// goes round the hold tier until the endpoint is resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_endpoint_holds_only_the_copies_still_to_be_sent() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let store = seed::open_store(&pipeline).await;
    let endpoint = seed::endpoint(&store, &receiver.url).await;
    pause(&store, endpoint.id, true).await;
    let delivered = seed::event(&endpoint, DeliveryStatus::Delivered, 1, Duration::ZERO);
    let retried = seed::event(&endpoint, DeliveryStatus::Retrying, 2, Duration::ZERO);
    let pending = seed::event(&endpoint, DeliveryStatus::Pending, 0, Duration::ZERO);
    let events = [delivered, retried, pending];
    seed::store_published(&store, &events).await;
    // In this order on the endpoint's partition: a copy of a delivered task, a copy from
    // before the retried delivery's second attempt, and a task still to be sent.
    for (new, attempts_made) in events.iter().zip([0, 1, 0]) {
        let task = seed::task(new, attempts_made, None);
        seed::publish_task(&pipeline, "hookstream.deliveries", &task).await;
    }

    // The lane takes them in order, so once the last is held the first two were looked at.
    eventually("the task still to be sent to be held", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sum(&metrics, "hookstream_tasks_held_total", "endpoint_paused")? >= 1.0).then_some(())
    })
    .await;
    let metrics = pipeline.dispatcher_metrics().await;
    for reason in ["already_final", "stale"] {
        let skipped = sum(
            &metrics,
            "hookstream_tasks_skipped_total",
            &format!("reason=\"{reason}\""),
        );
        assert_eq!(skipped, Some(1.0), "copies skipped as {reason}");
    }

    pause(&store, endpoint.id, false).await;
    let webhooks = receiver.wait_for(1, SETTLE).await;
    assert_eq!(
        webhooks[0].header("webhook-id"),
        events[2].deliveries[0].id.to_string()
    );
    let quiet = tokio::time::timeout(QUIET, receiver.wait_for(2, QUIET * 2)).await;
    assert!(quiet.is_err(), "a settled copy was sent");
}

/// Pauses or resumes the endpoint straight in the store.
async fn pause(store: &impl Store, id: EndpointId, paused: bool) {
    let changes = EndpointChanges {
        paused: Some(paused),
        ..EndpointChanges::default()
    };
    let changed = store
        .change_endpoint(id, &changes, OffsetDateTime::now_utc())
        .await
        .expect("changing the endpoint");
    assert!(changed.is_some_and(|e| e.paused == paused));
}
