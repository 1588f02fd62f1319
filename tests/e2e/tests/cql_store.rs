//! The whole pipeline on the ScyllaDB store, against the real CQL node that `make test` starts
//! (Apache Cassandra; `HOOKSTREAM_TEST_SCYLLA` names it): ingest → dispatcher → retry tier →
//! dead-letter topic → replay service, every state read back through the API from CQL tables.

use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{Pipeline, Receiver, Scripted, Service, eventually};

const SETTLE: Duration = Duration::from_secs(120);

/// A keyspace of its own on the test's CQL node, as a `HOOKSTREAM_STORE` value.
fn cql_store() -> String {
    let node = std::env::var("HOOKSTREAM_TEST_SCYLLA").expect(
        "HOOKSTREAM_TEST_SCYLLA names no CQL node: run `make test` (it starts Apache Cassandra), \
         or set HOOKSTREAM_TEST_SCYLLA=host:port",
    );
    let keyspace = format!("hs_e2e_{}", std::process::id());
    format!("scylla://{node}/{keyspace}?replication_factor=1")
}

/// The deliveries of an event once every one of them has reached `status`.
async fn deliveries_with_status(pipeline: &Pipeline, event: &str, status: &str) -> Vec<Value> {
    eventually(
        &format!("the deliveries to be {status}"),
        SETTLE,
        || async {
            let deliveries = pipeline.api.deliveries_of(event).await;
            (!deliveries.is_empty() && deliveries.iter().all(|d| d["status"] == status))
                .then_some(deliveries)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_retried_dead_lettered_and_replayed_on_a_cql_store() {
    let store = cql_store();
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_STORE", &store)]).await;
    pipeline.start_service(Service::Replay).await;
    let api = &pipeline.api;

    // Delivered at the first attempt.
    let happy = Receiver::start().await;
    api.create_endpoint("acme", &happy.url, &["order.created"])
        .await;
    // Two 503s, then a 200: through the retry tier twice.
    let flaky = Receiver::start().await;
    flaky.script(vec![
        Scripted::status(503),
        Scripted::status(503),
        Scripted::status(200),
    ]);
    api.create_endpoint("acme", &flaky.url, &["invoice.paid"])
        .await;
    // A permanent 400: dead-lettered at once.
    let broken = Receiver::start().await;
    broken.respond_with(400, "no such customer");
    let broken_endpoint = api
        .create_endpoint("acme", &broken.url, &["refund.issued"])
        .await;
    let broken_id = broken_endpoint["id"].as_str().expect("an endpoint id");

    let send = |event_type: &'static str| async move {
        let answer = api
            .send_event("acme", event_type, json!({"n": 1}), Some(event_type))
            .await;
        assert_eq!(answer.status, 202, "{:?}", answer.body);
        answer.body["id"].as_str().expect("an event id").to_owned()
    };
    let ordered = send("order.created").await;
    let paid = send("invoice.paid").await;
    let refunded = send("refund.issued").await;

    // The idempotency window lives in CQL too: the same key answers with the same event.
    let again = api
        .send_event(
            "acme",
            "order.created",
            json!({"n": 1}),
            Some("order.created"),
        )
        .await;
    assert_eq!(again.body["id"], ordered.as_str(), "{:?}", again.body);

    deliveries_with_status(&pipeline, &ordered, "delivered").await;
    let retried = deliveries_with_status(&pipeline, &paid, "delivered").await;
    let delivery_id = retried[0]["id"].as_str().expect("a delivery id");
    let attempts = api.attempts(delivery_id).await;
    let classes: Vec<&str> = attempts
        .iter()
        .filter_map(|a| a["class"].as_str())
        .collect();
    assert_eq!(
        classes,
        [
            "HTTP_5XX_RETRYABLE",
            "HTTP_5XX_RETRYABLE",
            "HTTP_2XX_DELIVERED"
        ],
        "every attempt is recorded, in order"
    );
    deliveries_with_status(&pipeline, &refunded, "dead_lettered").await;

    // The replay service indexed the dead letter from the DLQ topic into CQL.
    let dead = eventually("the dead letter to be listed", SETTLE, || async {
        let answer = api
            .call(
                "GET",
                &format!("/v1/dead-letters?endpoint_id={broken_id}"),
                None,
            )
            .await;
        let data = answer.body["data"].as_array().cloned().unwrap_or_default();
        (data.len() == 1).then_some(data)
    })
    .await;
    assert_eq!(dead[0]["class"], "HTTP_4XX_PERMANENT");

    // Fixed, then replayed: a dry run first, then the batch, which delivers it once.
    broken.respond_with(200, "ok");
    let filter = json!({"filter": {"endpoint_id": broken_id}});
    let mut dry = filter.clone();
    dry["dry_run"] = json!(true);
    let planned = api.call("POST", "/v1/batches", Some(dry)).await;
    assert_eq!(planned.status, 200, "{:?}", planned.body);
    assert_eq!(planned.body["count"], 1);
    let started = api.call("POST", "/v1/batches", Some(filter)).await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    let batch_id = started.body["id"].as_str().expect("a batch id").to_owned();
    let batch = eventually("the batch to finish", SETTLE, || async {
        let batch = api
            .call("GET", &format!("/v1/batches/{batch_id}"), None)
            .await
            .body;
        (batch["status"] != "running").then_some(batch)
    })
    .await;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["counts"]["created"], 1, "{batch}");
    let delivered = eventually("the replay to be answered 200", SETTLE, || async {
        let ok: Vec<_> = broken
            .received()
            .into_iter()
            .filter(|w| w.answered == 200)
            .collect();
        (!ok.is_empty()).then_some(ok)
    })
    .await;
    assert_eq!(delivered.len(), 1, "the replay is sent once");
    assert_eq!(
        happy.received().len(),
        1,
        "the idempotent repeat sent nothing"
    );
}
