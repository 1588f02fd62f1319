//! `POST /v1/events:batch`: many events in one request, each with its own idempotency key and
//! result, delivered like events posted one by one.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{Pipeline, Receiver};

const SETTLE: Duration = Duration::from_secs(60);

fn event(n: usize, key: &str) -> Value {
    json!({
        "tenant": "acme",
        "type": "order.created",
        "payload": {"order": n},
        "idempotency_key": key,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_answers_per_event_and_delivers_each_once() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let api = &pipeline.api;
    api.create_endpoint("acme", &receiver.url, &["order.created"])
        .await;

    // An earlier single post whose key the batch repeats, and one it reuses for something else.
    let earlier = api
        .send_event("acme", "order.created", json!({"order": 0}), Some("k-0"))
        .await;
    assert_eq!(earlier.status, 202, "{:?}", earlier.body);
    let reused = api
        .send_event("acme", "order.created", json!({"order": 99}), Some("k-99"))
        .await;
    assert_eq!(reused.status, 202);

    let mut events: Vec<Value> = (0..5).map(|n| event(n, &format!("k-{n}"))).collect();
    events.push(json!({"tenant": "acme", "type": "", "payload": {}})); // invalid type
    events.push(event(100, "k-99")); // same key, different payload
    events.push(event(1, "k-1")); // repeats an event earlier in this batch
    let answer = api
        .call("POST", "/v1/events:batch", Some(json!({"events": events})))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let results = answer.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 8, "one result per event, in order");

    assert_eq!(results[0]["status"], 200, "k-0 was posted before");
    assert_eq!(results[0]["id"], earlier.body["id"]);
    assert_eq!(results[0]["repeat"], true);
    for result in &results[1..5] {
        assert_eq!(result["status"], 202, "{result}");
        assert_eq!(result["deliveries"], 1);
    }
    assert_eq!(results[5]["status"], 400);
    assert_eq!(results[5]["problem"]["field"], "events[5].type");
    assert_eq!(results[6]["status"], 409);
    assert_eq!(results[6]["problem"]["field"], "idempotency_key");
    assert_eq!(results[7]["status"], 200, "{}", results[7]);
    assert_eq!(results[7]["id"], results[1]["id"]);

    // Events 0..5 and 99: six webhooks, each once, including the four new from the batch.
    let webhooks = receiver.wait_for(6, SETTLE).await;
    let orders: HashSet<i64> = webhooks
        .iter()
        .map(|w| w.json()["data"]["order"].as_i64().expect("order"))
        .collect();
    assert_eq!(orders, HashSet::from([0, 1, 2, 3, 4, 99]));
    assert!(
        receiver.duplicates().is_empty(),
        "{:?}",
        receiver.duplicates()
    );
    for result in &results[1..5] {
        let id = result["id"].as_str().expect("event id");
        let deliveries = api.settled_deliveries(id, SETTLE).await;
        assert_eq!(deliveries.len(), 1);
        assert_eq!(deliveries[0]["status"], "delivered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_batch_is_refused_whole_and_creates_nothing() {
    let pipeline = Pipeline::start(&[]).await;
    let api = &pipeline.api;

    for (body, field) in [
        (json!({}), "events"),
        (json!({"events": "nope"}), "events"),
        (json!({"events": []}), "events"),
        (
            json!({"events": (0..1001).map(|n| event(n, &format!("k-{n}"))).collect::<Vec<_>>()}),
            "events",
        ),
        (json!({"events": [event(1, "k-1")], "extra": 1}), "extra"),
    ] {
        let answer = api.call("POST", "/v1/events:batch", Some(body)).await;
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert_eq!(answer.body["field"], field, "{:?}", answer.body);
    }
    // A single event over the per-event limit fails alone, as its own problem.
    let big = json!({"tenant": "acme", "type": "t", "payload": "x".repeat(300 * 1024)});
    let answer = api
        .call(
            "POST",
            "/v1/events:batch",
            Some(json!({"events": [big, event(1, "k-1")]})),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["results"][0]["status"], 400);
    assert_eq!(answer.body["results"][0]["problem"]["field"], "events[0]");
    assert_eq!(answer.body["results"][1]["status"], 202);

    let listed = api.all_deliveries("").await;
    assert!(
        listed.is_empty(),
        "nobody subscribed, so no deliveries: {listed:?}"
    );
}
