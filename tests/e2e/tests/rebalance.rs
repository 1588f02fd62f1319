//! Rebalances with a second dispatcher joining and leaving (issue 18, items 2 and 9): a revoked
//! partition is handed over only once the sends out on it are recorded, and partitions that
//! come back to a dispatcher under the kill switch stay paused.

use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, Service, eventually, sample, sum};

const SETTLE: Duration = Duration::from_secs(90);
/// Enough endpoints that both dispatchers' partitions have some.
const ENDPOINTS: usize = 16;
const PARTITIONS: f64 = 4.0;
/// How long a paused pipeline is watched to show that nothing is read or sent.
const QUIET: Duration = Duration::from_millis(2000);

async fn endpoints(pipeline: &Pipeline, receiver: &Receiver) {
    for _ in 0..ENDPOINTS {
        pipeline
            .api
            .create_endpoint("acme", &receiver.url, &[])
            .await;
    }
}

async fn metric(pipeline: &Pipeline, service: Service, series: &str) -> Option<f64> {
    sample(&pipeline.metrics_of(service).await, series)
}

async fn wait_for_metric(pipeline: &Pipeline, service: Service, series: &str, wanted: f64) {
    eventually(
        &format!("{service:?}: {series} = {wanted}"),
        SETTLE,
        || async { (metric(pipeline, service, series).await? == wanted).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_that_come_back_under_the_kill_switch_stay_paused() {
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_LAG_INTERVAL", "1s")]).await;
    let receiver = Receiver::start().await;
    endpoints(&pipeline, &receiver).await;
    let paused = pipeline.api.call("POST", "/v1/control/pause", None).await;
    assert_eq!(paused.status, 200);
    wait_for_metric(
        &pipeline,
        Service::Dispatcher,
        "hookstream_sending_paused",
        1.0,
    )
    .await;

    // A second dispatcher takes half the partitions, and pauses too.
    pipeline.start_service(Service::SecondDispatcher).await;
    wait_for_metric(
        &pipeline,
        Service::SecondDispatcher,
        "hookstream_sending_paused",
        1.0,
    )
    .await;
    eventually("the partitions shared", SETTLE, || async {
        let second = metric(
            &pipeline,
            Service::SecondDispatcher,
            "hookstream_assigned_partitions",
        )
        .await?;
        let first = metric(
            &pipeline,
            Service::Dispatcher,
            "hookstream_assigned_partitions",
        )
        .await?;
        (second > 0.0 && first + second == PARTITIONS).then_some(())
    })
    .await;

    let event = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(event.status, 202);
    let event_id = event.body["id"].as_str().expect("an event id").to_owned();
    eventually("the tasks to wait on Kafka", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sum(
            &metrics,
            "hookstream_consumer_lag",
            "topic=\"hookstream.deliveries\"",
        )? == ENDPOINTS as f64)
            .then_some(())
    })
    .await;

    // It leaves; its partitions come back to the first, which must not start reading them.
    pipeline.stop_service(Service::SecondDispatcher).await;
    wait_for_metric(
        &pipeline,
        Service::Dispatcher,
        "hookstream_assigned_partitions",
        PARTITIONS,
    )
    .await;
    let watched_until = tokio::time::Instant::now() + QUIET;
    while tokio::time::Instant::now() < watched_until {
        assert_eq!(
            metric(
                &pipeline,
                Service::Dispatcher,
                "hookstream_deliveries_in_flight"
            )
            .await,
            Some(0.0),
            "a partition assigned under the kill switch was read"
        );
        assert!(
            receiver.received().is_empty(),
            "a webhook went out while paused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let resumed = pipeline.api.call("POST", "/v1/control/resume", None).await;
    assert_eq!(resumed.status, 200);
    let settled = pipeline.api.settled_deliveries(&event_id, SETTLE).await;
    assert_eq!(settled.len(), ENDPOINTS);
    assert!(
        settled.iter().all(|d| d["status"] == "delivered"),
        "{settled:?}"
    );
    assert_eq!(receiver.wait_for(ENDPOINTS, SETTLE).await.len(), ENDPOINTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_partition_is_handed_over_once_its_sends_are_recorded() {
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_REQUEST_TIMEOUT", "20s")]).await;
    let receiver = Receiver::start().await;
    // Requests are recorded and not answered until the test says.
    receiver.hold();
    endpoints(&pipeline, &receiver).await;
    let event = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(event.status, 202);
    let event_id = event.body["id"].as_str().expect("an event id").to_owned();
    // Every send is out, none answered: now a second dispatcher joins, and the first is asked
    // to give up partitions while their sends are out. Only then do the answers come.
    receiver.wait_for(ENDPOINTS, SETTLE).await;
    pipeline.start_service(Service::SecondDispatcher).await;
    eventually(
        "the first dispatcher to give up partitions",
        SETTLE,
        || async {
            pipeline
                .log_of(Service::Dispatcher)
                .contains("partitions revoked")
                .then_some(())
        },
    )
    .await;
    receiver.release();
    eventually("the partitions shared", SETTLE, || async {
        let second = metric(
            &pipeline,
            Service::SecondDispatcher,
            "hookstream_assigned_partitions",
        )
        .await?;
        (second > 0.0).then_some(())
    })
    .await;

    let settled = pipeline.api.settled_deliveries(&event_id, SETTLE).await;
    assert!(
        settled.iter().all(|d| d["status"] == "delivered"),
        "{settled:?}"
    );
    assert_eq!(receiver.received().len(), ENDPOINTS, "each sent once");
    // Had a partition been released with its sends out, the new owner's copy of such a task
    // would have found its attempt claimed, and been held or (in partition order) waited.
    let second = pipeline.metrics_of(Service::SecondDispatcher).await;
    assert_eq!(
        sample(
            &second,
            "hookstream_tasks_held_total{reason=\"claimed_elsewhere\"}"
        )
        .unwrap_or(0.0),
        0.0
    );
    assert_eq!(
        sample(&second, "hookstream_claim_waits_total").unwrap_or(0.0),
        0.0
    );
    let first = pipeline.dispatcher_metrics().await;
    let recorded = sample(
        &first,
        "hookstream_handover_sends_total{outcome=\"recorded\"}",
    );
    assert!(
        recorded.is_some_and(|n| n >= 1.0),
        "the revoke waited for the sends out on it: {recorded:?}"
    );
    assert_eq!(
        sample(
            &first,
            "hookstream_handover_sends_total{outcome=\"released\"}"
        ),
        Some(0.0)
    );
}
