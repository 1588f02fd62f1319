//! Nothing is dropped silently (issue 18, items 4 and 7): a delivery task the dispatcher cannot
//! decode (a schema it does not know: a rolling upgrade with ingest ahead of it) or cannot
//! process (a store row refused for good) goes to the quarantine topic as it was read, with its
//! reason; it holds up nothing behind it, is counted, and is delivered once the cause is fixed
//! and the quarantine requeued.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, eventually, sample};

const SETTLE: Duration = Duration::from_secs(120);
const PARTITIONS: i32 = 4;

/// A record as it sits on the quarantine topic.
struct Quarantined {
    payload: Vec<u8>,
    reason: String,
}

/// Every record on the quarantine topic, once there are `expected` of them.
fn read_quarantine(brokers: &str, expected: usize) -> Vec<Quarantined> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "quarantine-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset("hookstream.quarantine", partition, Offset::Beginning)
            .expect("a partition");
    }
    consumer
        .assign(&assignment)
        .expect("assigning the quarantine");
    let deadline = std::time::Instant::now() + SETTLE;
    let mut records = Vec::new();
    while records.len() < expected {
        assert!(
            std::time::Instant::now() < deadline,
            "the quarantine holds {} records, not {expected}",
            records.len()
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
            let reason = message
                .headers()
                .and_then(|h| {
                    h.iter()
                        .find(|h| h.key == "hookstream-quarantine-reason")
                        .and_then(|h| h.value)
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                })
                .unwrap_or_default();
            records.push(Quarantined {
                payload: message.payload().unwrap_or_default().to_vec(),
                reason,
            });
        }
    }
    records
}

async fn quarantined(pipeline: &Pipeline, reason: &str) -> Option<f64> {
    sample(
        &pipeline.dispatcher_metrics().await,
        &format!("hookstream_tasks_quarantined_total{{reason=\"{reason}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_cannot_be_processed_are_quarantined_and_delivered_once_fixed() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let good = pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    let good_id = good["id"].as_str().expect("an endpoint id").to_owned();
    let fixable = pipeline
        .api
        .create_endpoint("beta", &receiver.url, &[])
        .await;
    let fixable_id = fixable["id"].as_str().expect("an endpoint id").to_owned();

    // A newer ingest's task (a schema fingerprint this dispatcher does not know) and a record
    // that is no task at all, on the good endpoint's partition, ahead of a real event.
    let newer_schema: Vec<u8> = [0xC3, 0x01]
        .into_iter()
        .chain([0xAB; 8])
        .chain(*b"\x02\x04future")
        .collect();
    let not_a_task = b"not a delivery task".to_vec();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", pipeline.brokers())
        .create()
        .expect("a producer");
    for payload in [&newer_schema, &not_a_task] {
        producer
            .send(
                FutureRecord::to("hookstream.deliveries")
                    .key(&good_id)
                    .payload(payload),
                Duration::from_secs(10),
            )
            .await
            .expect("a record on the deliveries topic");
    }
    let event = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(event.status, 202);
    // The endpoint behind them is not held up.
    receiver.wait_for(1, SETTLE).await;
    eventually("two undecodable tasks quarantined", SETTLE, || async {
        (quarantined(&pipeline, "undecodable").await? == 2.0).then_some(())
    })
    .await;

    // The other endpoint is paused, so its task waits; meanwhile its store row is damaged.
    let paused = pipeline
        .api
        .call("POST", &format!("/v1/endpoints/{fixable_id}/pause"), None)
        .await;
    assert_eq!(paused.status, 200);
    let held_event = pipeline
        .api
        .send_event("beta", "order.created", json!({"n": 2}), None)
        .await;
    assert_eq!(held_event.status, 202);
    let held_event_id = held_event.body["id"]
        .as_str()
        .expect("an event id")
        .to_owned();
    eventually("the paused endpoint's task to be held", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sample(
            &metrics,
            "hookstream_tasks_held_total{reason=\"endpoint_paused\"}",
        )? >= 1.0)
            .then_some(())
    })
    .await;
    let store = rusqlite::Connection::open(pipeline.store_path()).expect("the store file");
    store
        .busy_timeout(Duration::from_secs(10))
        .expect("a busy timeout");
    let set_event_types = |value: &str| {
        store
            .execute(
                "UPDATE endpoints SET event_types = ?1 WHERE id = ?2",
                rusqlite::params![value, fixable_id],
            )
            .expect("writing the endpoint row")
    };
    assert_eq!(set_event_types("{damaged"), 1);

    // The damaged row wedges nothing: the task is quarantined, the delivery stays open.
    eventually(
        "the task of the damaged endpoint quarantined",
        SETTLE,
        || async { (quarantined(&pipeline, "unprocessable").await? == 1.0).then_some(()) },
    )
    .await;
    let records = read_quarantine(&pipeline.brokers(), 3);
    let mut undecodable: Vec<&[u8]> = records
        .iter()
        .filter(|r| r.reason.starts_with("undecodable"))
        .map(|r| r.payload.as_slice())
        .collect();
    undecodable.sort();
    let mut produced = vec![newer_schema.as_slice(), not_a_task.as_slice()];
    produced.sort();
    assert_eq!(
        undecodable, produced,
        "kept byte for byte, for a newer dispatcher"
    );
    assert!(
        records
            .iter()
            .any(|r| r.reason.contains("corrupt") && r.reason.contains("store")),
        "the store's refusal is the reason: {:?}",
        records.iter().map(|r| &r.reason).collect::<Vec<_>>()
    );
    let open = pipeline.api.deliveries_of(&held_event_id).await;
    assert_ne!(open[0]["status"], "delivered");

    // The cause is fixed; the quarantine goes back on the deliveries topic.
    assert_eq!(set_event_types("[]"), 1);
    let resumed = pipeline
        .api
        .call("POST", &format!("/v1/endpoints/{fixable_id}/resume"), None)
        .await;
    assert_eq!(resumed.status, 200);
    let printed = pipeline
        .run_to_exit(
            "hookstream-dispatcher",
            &["--requeue-quarantine-and-exit", "true"],
        )
        .await;
    assert!(printed.contains("requeued 3 "), "{printed}");

    let settled = pipeline
        .api
        .settled_deliveries(&held_event_id, SETTLE)
        .await;
    assert_eq!(settled[0]["status"], "delivered");
    let delivery_id = settled[0]["id"].as_str().expect("a delivery id");
    let sent: Vec<_> = receiver
        .received()
        .into_iter()
        .filter(|w| w.header("webhook-id") == delivery_id)
        .collect();
    assert_eq!(sent.len(), 1, "delivered once");

    // What still cannot be decoded is quarantined again, and a second requeue takes only that.
    eventually(
        "the undecodable tasks back in quarantine",
        SETTLE,
        || async { (quarantined(&pipeline, "undecodable").await? == 4.0).then_some(()) },
    )
    .await;
    let printed = pipeline
        .run_to_exit(
            "hookstream-dispatcher",
            &["--requeue-quarantine-and-exit", "true"],
        )
        .await;
    assert!(printed.contains("requeued 2 "), "{printed}");
}
