//! The kill switch and per-endpoint pause: held tasks are not failed and spend no attempts.

use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, eventually, sample, sum};

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
