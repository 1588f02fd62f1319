//! Kafka-native ingest end to end: records that a separate Kafka client writes to source topics
//! (CloudEvents binary and structured mode, Avro with a Schema Registry) come out as signed
//! webhooks; a poison record is set aside without stopping what follows it; killing ingest
//! mid-stream loses and duplicates nothing.

use std::collections::HashSet;
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::types::Record;
use apache_avro::writer::datum::GenericDatumWriter;
use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

use hookstream_e2e::{Pipeline, Receiver, Service};

const SETTLE: Duration = Duration::from_secs(90);
const INVOICE_SCHEMA: &str = r#"{"type": "record", "name": "InvoicePaid", "fields": [
    {"name": "invoice", "type": "string"}, {"name": "amount", "type": "long"}]}"#;

/// Arrays of arrays of nulls: items that take no bytes, so a few bytes can claim billions.
const NULL_ARRAYS_SCHEMA: &str =
    r#"{"type": "array", "items": {"type": "array", "items": "null"}}"#;
/// A record that contains itself: nesting as deep as the bytes allow.
const NODE_SCHEMA: &str = r#"{"type": "record", "name": "Node", "fields": [
    {"name": "next", "type": ["null", "Node"]}]}"#;

/// A Schema Registry on 127.0.0.1: the invoice schema is id 1, the hostile ones 2 and 3.
async fn schema_registry() -> String {
    let app = axum::Router::new().route(
        "/schemas/ids/{id}",
        axum::routing::get(|Path(id): Path<u32>| async move {
            match id {
                1 => Json(json!({"schema": INVOICE_SCHEMA})).into_response(),
                2 => Json(json!({"schema": NULL_ARRAYS_SCHEMA})).into_response(),
                3 => Json(json!({"schema": NODE_SCHEMA})).into_response(),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

fn producer(brokers: &str) -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .expect("a producer of our own")
}

fn headers(pairs: &[(&str, &str)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(*value),
        })
    })
}

fn ce_headers(id: &str, event_type: &str, content_type: &str) -> OwnedHeaders {
    headers(&[
        ("ce_specversion", "1.0"),
        ("ce_id", id),
        ("ce_source", "/e2e"),
        ("ce_type", event_type),
        ("ce_tenant", "acme"),
        ("content-type", content_type),
    ])
}

async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    headers: OwnedHeaders,
    value: &[u8],
) {
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .headers(headers)
                .payload(value),
            Duration::from_secs(30),
        )
        .await
        .expect("the broker took the record");
}

fn avro_invoice(invoice: &str, amount: i64) -> Vec<u8> {
    let schema = Schema::parse_str(INVOICE_SCHEMA).unwrap();
    let mut record = Record::new(&schema).unwrap();
    record.put("invoice", invoice);
    record.put("amount", amount);
    let mut framed = vec![0, 0, 0, 0, 1];
    framed.extend(
        GenericDatumWriter::builder(&schema)
            .build()
            .unwrap()
            .write_value_to_vec(record)
            .unwrap(),
    );
    framed
}

/// The records of the rejected topic, with their reason headers.
async fn rejected_reasons(brokers: &str, count: usize) -> Vec<String> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-rejected-reader")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("a consumer of our own");
    consumer
        .subscribe(&["hookstream.ingest.rejected"])
        .expect("subscribing to the rejected topic");
    let mut reasons = Vec::new();
    while reasons.len() < count {
        let message = tokio::time::timeout(SETTLE, consumer.recv())
            .await
            .expect("a rejected record within the time limit")
            .expect("reading the rejected topic");
        let reason = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "hookstream-rejected-reason"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .expect("a reason header");
        reasons.push(reason);
    }
    reasons
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_in_every_format_become_signed_webhooks_and_poison_is_set_aside() {
    let registry = schema_registry().await;
    let pipeline = Pipeline::start(&[
        (
            "HOOKSTREAM_SOURCE_TOPICS",
            "domain-events:cloudevents,billing:avro",
        ),
        ("HOOKSTREAM_SCHEMA_REGISTRY_URL", &registry),
    ])
    .await;
    let receiver = Receiver::start().await;
    let endpoint = pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    let producer = producer(&pipeline.brokers());

    send(
        &producer,
        "domain-events",
        "shop",
        ce_headers("order-1", "order.created", "application/json"),
        br#"{"order": 1}"#,
    )
    .await;
    // Poison: no CloudEvents attributes at all. What comes after it must still go through.
    send(
        &producer,
        "domain-events",
        "shop",
        headers(&[]),
        b"not an event",
    )
    .await;
    let structured = json!({
        "specversion": "1.0", "id": "order-2", "source": "/e2e", "type": "order.shipped",
        "tenant": "acme", "data": {"order": 2}
    });
    send(
        &producer,
        "domain-events",
        "shop",
        headers(&[("content-type", "application/cloudevents+json")]),
        structured.to_string().as_bytes(),
    )
    .await;
    send(
        &producer,
        "billing",
        "billing",
        ce_headers("inv-7", "invoice.paid", "application/avro"),
        &avro_invoice("inv-7", 500),
    )
    .await;

    let webhooks = receiver.wait_for(3, SETTLE).await;
    let mut got: Vec<(String, Value)> = webhooks
        .iter()
        .map(|w| {
            let body = w.json();
            (
                body["type"].as_str().unwrap().to_owned(),
                body["data"].clone(),
            )
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (
                "invoice.paid".to_owned(),
                json!({"invoice": "inv-7", "amount": 500})
            ),
            ("order.created".to_owned(), json!({"order": 1})),
            ("order.shipped".to_owned(), json!({"order": 2})),
        ]
    );
    let secret = endpoint["secret"].as_str().unwrap();
    assert!(webhooks.iter().all(|w| w.signature_verifies(secret)));

    let reasons = rejected_reasons(&pipeline.brokers(), 1).await;
    assert_eq!(
        reasons,
        vec!["missing CloudEvents header `ce_specversion`".to_owned()]
    );
    let metrics = pipeline.metrics_of(Service::Ingest).await;
    assert_eq!(
        hookstream_e2e::sample(
            &metrics,
            r#"hookstream_source_records_total{outcome="rejected",topic="domain-events"}"#
        ),
        Some(1.0)
    );
}

/// An Avro `long` (zig-zag varint).
fn avro_long(n: i64) -> Vec<u8> {
    let mut v = ((n << 1) ^ (n >> 63)) as u64;
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_that_decode_to_too_much_are_set_aside_and_ingest_stays_up() {
    let registry = schema_registry().await;
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_SOURCE_TOPICS", "billing:avro"),
        ("HOOKSTREAM_SCHEMA_REGISTRY_URL", &registry),
    ])
    .await;
    let receiver = Receiver::start().await;
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    let producer = producer(&pipeline.brokers());

    // About 20 bytes asking for 40 million nulls (some 2 GiB decoded).
    let mut nulls = vec![0, 0, 0, 0, 2];
    nulls.extend(avro_long(4));
    for _ in 0..4 {
        nulls.extend(avro_long(10_000_000));
        nulls.extend(avro_long(0));
    }
    nulls.extend(avro_long(0));
    assert!(nulls.len() < 32);
    // 256 KiB of a record nesting itself 262,000 levels deep (one byte a level).
    let mut deep = vec![0, 0, 0, 0, 3];
    deep.extend(std::iter::repeat_n(2u8, 262_000));
    deep.push(0);
    for (id, bomb) in [("bomb-1", &nulls), ("bomb-2", &deep)] {
        send(
            &producer,
            "billing",
            "billing",
            ce_headers(id, "invoice.paid", "application/avro"),
            bomb,
        )
        .await;
    }
    send(
        &producer,
        "billing",
        "billing",
        ce_headers("inv-8", "invoice.paid", "application/avro"),
        &avro_invoice("inv-8", 800),
    )
    .await;

    // What follows the bombs gets through, from the same ingest.
    let webhooks = receiver.wait_for(1, SETTLE).await;
    assert_eq!(
        webhooks[0].json()["data"],
        json!({"invoice": "inv-8", "amount": 800})
    );
    assert_eq!(
        pipeline.health_of(Service::Ingest).await.0,
        200,
        "ingest is up"
    );
    let reasons = rejected_reasons(&pipeline.brokers(), 2).await;
    assert!(
        reasons[0].contains("more than an event may hold"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("contains itself"), "{reasons:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_ingest_mid_stream_loses_and_duplicates_nothing_and_keeps_order() {
    const RECORDS: usize = 150;
    let mut pipeline =
        Pipeline::start(&[("HOOKSTREAM_SOURCE_TOPICS", "domain-events:cloudevents")]).await;
    let receiver = Receiver::start().await;
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    let producer = producer(&pipeline.brokers());
    // One key: one source partition, so the records have one order to keep.
    let send_range = |range: std::ops::Range<usize>| {
        let producer = &producer;
        async move {
            for n in range {
                let id = format!("order-{n}");
                let value = json!({"n": n}).to_string();
                send(
                    producer,
                    "domain-events",
                    "shop",
                    ce_headers(&id, "order.created", "application/json"),
                    value.as_bytes(),
                )
                .await;
            }
        }
    };
    // Kill ingest while it works through the first part of the stream (offsets are committed
    // every second, so some of what it took in is read again), go on producing while it is
    // down, then bring it back.
    send_range(0..RECORDS * 2 / 3).await;
    receiver.wait_for(RECORDS / 4, SETTLE).await;
    pipeline.kill_service(Service::Ingest).await;
    send_range(RECORDS * 2 / 3..RECORDS).await;
    pipeline.start_service(Service::Ingest).await;

    let webhooks = receiver.wait_for(RECORDS, SETTLE).await;
    let order: Vec<u64> = webhooks
        .iter()
        .map(|w| w.json()["data"]["n"].as_u64().expect("n"))
        .collect();
    let distinct: HashSet<u64> = order.iter().copied().collect();
    assert_eq!(distinct.len(), RECORDS, "every record delivered");
    assert!(receiver.duplicates().is_empty(), "no webhook sent twice");
    assert_eq!(order.len(), RECORDS, "nothing extra: {order:?}");
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "one partition, one endpoint: in order: {order:?}"
    );
}
