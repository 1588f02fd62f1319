//! A rolling upgrade with ingest ahead of the dispatcher (issue 18, item 4): the newer ingest
//! writes delivery tasks with a schema this dispatcher was not built with. The dispatcher finds
//! the writer's schema on the schemas topic (every writer registers its schema before it
//! writes) and reads the task by Avro resolution; a task whose schema is not registered yet is
//! quarantined, and delivered once it is registered and the quarantine requeued. Nothing is lost.
//!
//! The running binaries are this build; the test plays the newer ingest: it stores the event as
//! ingest does, registers a newer schema and writes the task with it.

use std::time::Duration;

use apache_avro::types::Value;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use hookstream_e2e::{Pipeline, Receiver, eventually, sample, seed};
use hookstream_model::codec::SchemaVersions;
use hookstream_model::delivery::DeliveryStatus;
use hookstream_model::event::IdempotencyWindow;
use hookstream_model::task::DeliveryTask;
use hookstream_store::{NewEvent, Store};

const SETTLE: Duration = Duration::from_secs(120);
const CURRENT_TASK_SCHEMA: &str = include_str!("../../../schemas/avro/delivery_task.v2.avsc");

/// The task schema of a newer build: the current one plus `field` (an int with a default, a
/// change Avro resolution allows in both directions).
fn newer_task_schema(field: &str) -> SchemaVersions {
    let mut schema: serde_json::Value =
        serde_json::from_str(CURRENT_TASK_SCHEMA).expect("the task schema is JSON");
    schema["fields"]
        .as_array_mut()
        .expect("a record's fields")
        .push(serde_json::json!({"name": field, "type": "int", "default": 0}));
    SchemaVersions::new(&[&schema.to_string()])
}

fn hex(fingerprint: [u8; 8]) -> String {
    fingerprint.iter().map(|b| format!("{b:02x}")).collect()
}

/// The task of `new`'s delivery, as a newer ingest writes it: with `schema`, `field` set to 7.
fn newer_task(new: &NewEvent, schema: &SchemaVersions, field: &str) -> Vec<u8> {
    let task = seed::task(new, 0, None);
    let current = DeliveryTask::schemas()
        .decode(&task.encode().expect("encoding the task"))
        .expect("decoding it again");
    let Value::Record(mut fields) = current else {
        panic!("a task is a record")
    };
    fields.push((field.to_owned(), Value::Int(7)));
    schema
        .encode(Value::Record(fields))
        .expect("encoding with the newer schema")
}

async fn produce(producer: &FutureProducer, topic: &str, key: &str, payload: &[u8]) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .unwrap_or_else(|(err, _)| panic!("writing to {topic}: {err}"));
}

async fn register(producer: &FutureProducer, schema: &SchemaVersions) {
    let (fingerprint, text) = schema.current_schema();
    produce(
        producer,
        "hookstream.schemas",
        &hex(fingerprint),
        text.as_bytes(),
    )
    .await;
}

/// The keys on the schemas topic.
fn registered_keys(brokers: &str) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "schemas-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let (_, high) = consumer
        .fetch_watermarks("hookstream.schemas", 0, Duration::from_secs(10))
        .expect("the schemas topic's end");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("hookstream.schemas", 0, Offset::Beginning)
        .expect("a partition");
    consumer.assign(&assignment).expect("assigning");
    let deadline = std::time::Instant::now() + SETTLE;
    let mut keys = Vec::new();
    let mut next = 0;
    while next < high {
        assert!(
            std::time::Instant::now() < deadline,
            "the schemas topic read to its end"
        );
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
            next = message.offset() + 1;
            keys.push(String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned());
        }
    }
    keys
}

async fn undecodable(pipeline: &Pipeline) -> f64 {
    sample(
        &pipeline.dispatcher_metrics().await,
        "hookstream_tasks_quarantined_total{reason=\"undecodable\"}",
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_of_a_newer_ingest_are_delivered_by_an_older_dispatcher() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let store = seed::open_store(&pipeline).await;
    let endpoint = seed::endpoint(&store, &receiver.url).await;

    // Every writer registered the schema it writes as it started.
    let keys = registered_keys(&pipeline.brokers());
    assert!(
        keys.contains(&hex(DeliveryTask::schemas().current_schema().0)),
        "the task schema is registered: {keys:?}"
    );

    // The newer ingest stores two events, as ingest does, and has Kafka acknowledge their tasks.
    let events: Vec<NewEvent> = (0..2)
        .map(|_| seed::event(&endpoint, DeliveryStatus::Pending, 0, Duration::ZERO))
        .collect();
    store
        .create_events(&events, IdempotencyWindow::default())
        .await
        .expect("storing the events");
    let ids: Vec<_> = events.iter().map(|e| e.event.id).collect();
    store
        .mark_events_published(&ids)
        .await
        .expect("marking them published");
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", pipeline.brokers())
        .create()
        .expect("a producer");
    let key = endpoint.id.to_string();

    // Registered first, as a newer ingest does at its start: read and delivered at once.
    let v3 = newer_task_schema("priority");
    register(&producer, &v3).await;
    let first = &events[0];
    let task = newer_task(first, &v3, "priority");
    produce(&producer, "hookstream.deliveries", &key, &task).await;
    let settled = pipeline
        .api
        .settled_deliveries(&first.event.id.to_string(), SETTLE)
        .await;
    assert_eq!(settled[0]["status"], "delivered");
    let sent = receiver.wait_for(1, SETTLE).await;
    assert_eq!(
        sent[0].header("webhook-id"),
        first.deliveries[0].id.to_string()
    );
    assert!(sent[0].body.contains(r#""order":1"#), "{}", sent[0].body);
    assert_eq!(undecodable(&pipeline).await, 0.0);

    // Not registered yet (say the newer ingest's registration was lost): quarantined, not
    // dropped; delivered once it is registered and the quarantine is requeued.
    let v4 = newer_task_schema("region_code");
    let second = &events[1];
    let task = newer_task(second, &v4, "region_code");
    produce(&producer, "hookstream.deliveries", &key, &task).await;
    eventually("the unregistered task quarantined", SETTLE, || async {
        (undecodable(&pipeline).await == 1.0).then_some(())
    })
    .await;
    let waiting = pipeline
        .api
        .deliveries_of(&second.event.id.to_string())
        .await;
    assert_eq!(waiting[0]["status"], "pending");
    register(&producer, &v4).await;
    let printed = pipeline
        .run_to_exit(
            "hookstream-dispatcher",
            &["--requeue-quarantine-and-exit", "true"],
        )
        .await;
    assert!(printed.contains("requeued 1 "), "{printed}");
    let settled = pipeline
        .api
        .settled_deliveries(&second.event.id.to_string(), SETTLE)
        .await;
    assert_eq!(settled[0]["status"], "delivered");
    let sent = receiver.wait_for(2, SETTLE).await;
    assert_eq!(sent.len(), 2, "each delivered once");
    assert_eq!(undecodable(&pipeline).await, 1.0, "not quarantined again");
}
