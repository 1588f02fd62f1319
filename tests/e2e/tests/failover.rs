//! Two dispatchers in one consumer group; one dies (SIGKILL) under load and the survivor takes
//! over its partitions and finishes its work.
//!
//! Runs on librdkafka's mock cluster, which evicts a dead group member after its session timeout
//! and reassigns its partitions (Tansu does not; see the architecture notes). The mock serves
//! the Kafka protocol over TCP on 127.0.0.1; its topics are created by the test.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, Service, eventually, sample};

const ENDPOINTS: usize = 8;
const EVENTS: usize = 25;
const SETTLE: Duration = Duration::from_secs(120);

/// The assigned-partitions gauge of a dispatcher, if it has reported one.
fn assigned(metrics: &str) -> Option<i64> {
    sample(metrics, "hookstream_assigned_partitions").map(|n| n as i64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_surviving_dispatcher_takes_over_a_dead_ones_partitions() {
    let cluster = MockCluster::new(1).expect("a mock Kafka cluster");
    for topic in [
        "hookstream.deliveries",
        "hookstream.dlq",
        "hookstream.retry.300ms",
        "hookstream.retry.600ms",
        "hookstream.retry.1s",
    ] {
        cluster
            .create_topic(topic, 4, 1)
            .expect("creating a mock topic");
    }
    let brokers = cluster.bootstrap_servers();
    let mut pipeline = Pipeline::start_on(
        None,
        &brokers,
        &[
            ("HOOKSTREAM_CREATE_TOPICS", "false"),
            // A dead member is noticed after 6 s instead of the default 45 s.
            (
                "HOOKSTREAM_KAFKA_PROPERTIES",
                "session.timeout.ms=6000,heartbeat.interval.ms=500",
            ),
        ],
    )
    .await;
    pipeline.start_service(Service::SecondDispatcher).await;

    // Both dispatchers own partitions before the load starts.
    eventually("both dispatchers to own partitions", SETTLE, || async {
        let first = assigned(&pipeline.metrics_of(Service::Dispatcher).await)?;
        let second = assigned(&pipeline.metrics_of(Service::SecondDispatcher).await)?;
        (first > 0 && second > 0 && first + second == 4).then_some(())
    })
    .await;

    let receiver = Receiver::start().await;
    for _ in 0..ENDPOINTS {
        pipeline
            .api
            .create_endpoint("acme", &receiver.url, &[])
            .await;
    }
    let mut events = Vec::new();
    for n in 0..EVENTS {
        if n == EVENTS / 2 {
            // Mid-load, the first dispatcher dies.
            receiver.wait_for(ENDPOINTS * 3, SETTLE).await;
            pipeline.kill_service(Service::Dispatcher).await;
        }
        let event = pipeline
            .api
            .send_event("acme", "order.created", json!({"n": n}), None)
            .await;
        assert_eq!(event.status, 202, "{:?}", event.body);
        events.push(event.body["id"].as_str().unwrap().to_owned());
    }

    // The survivor takes over all four partitions and everything is delivered.
    eventually("the survivor to own every partition", SETTLE, || async {
        (assigned(&pipeline.metrics_of(Service::SecondDispatcher).await)? == 4).then_some(())
    })
    .await;
    for event in &events {
        for delivery in pipeline.api.settled_deliveries(event, SETTLE).await {
            assert_eq!(delivery["status"], "delivered", "{delivery}");
        }
    }
    let received: HashSet<String> = receiver
        .received()
        .iter()
        .map(|w| w.header("webhook-id").to_owned())
        .collect();
    assert_eq!(received.len(), ENDPOINTS * EVENTS, "every delivery arrived");
    println!(
        "failover: {} deliveries, {} duplicate POSTs after the kill",
        ENDPOINTS * EVENTS,
        receiver.duplicates().len()
    );
}
