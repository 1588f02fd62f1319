//! No webhook is sent again after it succeeded, however its task is re-read (issue 18, items 2
//! and 9):
//! - a second dispatcher joins and then leaves (SIGTERM, no crash) while slow endpoints have
//!   work queued: the rebalances make both re-read uncommitted tasks, and the attempt claims
//!   keep every copy of a delivered task from going out again;
//! - a dispatcher told to stop starts no new request: only the one in flight finishes, and the
//!   restarted dispatcher sends the rest once each.

use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, Service, eventually, sample};

const SETTLE: Duration = Duration::from_secs(180);

async fn send_events(pipeline: &Pipeline, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let event = pipeline
            .api
            .send_event("acme", "order.created", json!({"n": n}), None)
            .await;
        assert_eq!(event.status, 202, "{:?}", event.body);
        ids.push(event.body["id"].as_str().expect("an event id").to_owned());
    }
    ids
}

/// Waits until every delivery of every event is final and returns how many are delivered.
async fn settle(pipeline: &Pipeline, events: &[String]) -> usize {
    let mut delivered = 0;
    for event in events {
        for delivery in pipeline.api.settled_deliveries(event, SETTLE).await {
            assert_eq!(delivery["status"], "delivered", "{delivery}");
            delivered += 1;
        }
    }
    delivered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_joining_and_leaving_resends_nothing_delivered() {
    const ENDPOINTS: usize = 40;
    const EVENTS: usize = 30;
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_DELIVERIES_PARTITIONS", "8")]).await;
    let receiver = Receiver::start().await;
    // Slow enough that each endpoint has work queued through both rebalances.
    receiver.answer_after(Duration::from_millis(300));
    for _ in 0..ENDPOINTS {
        pipeline
            .api
            .create_endpoint("acme", &receiver.url, &[])
            .await;
    }
    let events = send_events(&pipeline, EVENTS).await;

    receiver.wait_for(ENDPOINTS * 2, SETTLE).await;
    pipeline.start_service(Service::SecondDispatcher).await;
    eventually(
        "the second dispatcher to own partitions",
        SETTLE,
        || async {
            let metrics = pipeline.metrics_of(Service::SecondDispatcher).await;
            (sample(&metrics, "hookstream_assigned_partitions")? > 0.0).then_some(())
        },
    )
    .await;
    let so_far = receiver.received().len();
    receiver.wait_for(so_far + ENDPOINTS * 2, SETTLE).await;
    pipeline.stop_service(Service::SecondDispatcher).await;

    assert_eq!(settle(&pipeline, &events).await, ENDPOINTS * EVENTS);
    let duplicates = receiver.duplicates();
    assert!(
        duplicates.is_empty(),
        "{} webhooks sent again after a 2xx: {duplicates:?}",
        duplicates.len()
    );
    let metrics = pipeline.dispatcher_metrics().await;
    assert!(
        sample(&metrics, "hookstream_claims_lost_total").unwrap_or(0.0) == 0.0,
        "no attempt should outlast its claim here"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_dispatcher_starts_no_new_request() {
    const ENDPOINTS: usize = 8;
    const EVENTS: usize = 3;
    let mut pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    for _ in 0..ENDPOINTS {
        pipeline
            .api
            .create_endpoint("acme", &receiver.url, &[])
            .await;
    }
    // Every endpoint's lane has its first request out, unanswered, and the rest queued.
    receiver.hold();
    let events = send_events(&pipeline, EVENTS).await;
    receiver.wait_for(ENDPOINTS, SETTLE).await;

    pipeline.request_stop(Service::Dispatcher);
    eventually("the dispatcher to begin stopping", SETTLE, || async {
        pipeline
            .log_of(Service::Dispatcher)
            .contains("shutdown requested")
            .then_some(())
    })
    .await;
    // The requests in flight are answered and finish; nothing new may start.
    receiver.release();
    pipeline.stop_service(Service::Dispatcher).await;
    assert_eq!(
        receiver.received().len(),
        ENDPOINTS,
        "requests started after the stop began"
    );

    pipeline.start_service(Service::Dispatcher).await;
    assert_eq!(settle(&pipeline, &events).await, ENDPOINTS * EVENTS);
    let duplicates = receiver.duplicates();
    assert!(
        duplicates.is_empty(),
        "sent again after a 2xx: {duplicates:?}"
    );
}
