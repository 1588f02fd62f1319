//! One slow endpoint does not stop the instance (issue 18, item 6): an endpoint that answers
//! after 200 ms with a backlog far over its share keeps at most its per-endpoint limit in the
//! dispatcher (the rest wait on a tier), the other endpoints' deliveries flow meanwhile, and the
//! consumer keeps polling, so the group never drops it.

use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, eventually, sample};

const SETTLE: Duration = Duration::from_secs(120);
const SLOW_EVENTS: usize = 200;
const FAST_ENDPOINTS: usize = 20;
const FAST_EVENTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoints_backlog_holds_up_no_other_endpoint() {
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_MAX_IN_FLIGHT", "30"),
        ("HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT", "5"),
        // A member that stops polling for 10 s is dropped from the group.
        (
            "HOOKSTREAM_KAFKA_PROPERTIES",
            "max.poll.interval.ms=10000,session.timeout.ms=6000",
        ),
    ])
    .await;
    let slow = Receiver::start().await;
    slow.answer_after(Duration::from_millis(200));
    pipeline
        .api
        .create_endpoint("acme", &slow.url, &["slow.thing"])
        .await;
    let fast = Receiver::start().await;
    for _ in 0..FAST_ENDPOINTS {
        pipeline
            .api
            .create_endpoint("acme", &fast.url, &["fast.thing"])
            .await;
    }

    // The slow endpoint's backlog is read first: it alone would fill the instance several times
    // over, and it is ahead of the others' tasks in what the consumer has fetched.
    for n in 0..SLOW_EVENTS {
        let event = pipeline
            .api
            .send_event("acme", "slow.thing", json!({"n": n}), None)
            .await;
        assert_eq!(event.status, 202);
    }
    slow.wait_for(1, SETTLE).await;
    for n in 0..FAST_EVENTS {
        let event = pipeline
            .api
            .send_event("acme", "fast.thing", json!({"n": n}), None)
            .await;
        assert_eq!(event.status, 202);
    }

    // Every other endpoint is served while the slow one has most of its backlog ahead of it.
    fast.wait_for(FAST_ENDPOINTS * FAST_EVENTS, Duration::from_secs(15))
        .await;
    let slow_so_far = slow.received().len();
    assert!(
        slow_so_far < SLOW_EVENTS / 2,
        "the slow endpoint was not the bottleneck ({slow_so_far} of {SLOW_EVENTS} already sent)"
    );
    let metrics = pipeline.dispatcher_metrics().await;
    assert!(
        sample(&metrics, "hookstream_deliveries_in_flight").unwrap_or(f64::MAX) <= 30.0,
        "the instance limit holds"
    );
    assert!(
        sample(
            &metrics,
            "hookstream_tasks_held_total{reason=\"endpoint_backlog\"}"
        )
        .unwrap_or(0.0)
            > 0.0,
        "the backlog over the endpoint's limit waits on a tier"
    );

    // The slow endpoint gets everything, in time, and the dispatcher kept its partitions all
    // along (one assignment, at start): it never stopped polling.
    eventually(
        "the slow endpoint's backlog delivered",
        Duration::from_secs(300),
        || async { (slow.received().len() >= SLOW_EVENTS).then_some(()) },
    )
    .await;
    let log = pipeline.log_of(hookstream_e2e::Service::Dispatcher);
    assert_eq!(
        log.matches("partitions revoked").count(),
        0,
        "the dispatcher lost its partitions: {}",
        pipeline.log_tail(hookstream_e2e::Service::Dispatcher)
    );
    assert!(slow.duplicates().is_empty() && fast.duplicates().is_empty());
}
