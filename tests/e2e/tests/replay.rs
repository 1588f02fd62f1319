//! Dead letters and replay end to end: an endpoint fails permanently, its events dead-letter,
//! the endpoint is fixed, a filtered dry run lists exactly them, a replay delivers each exactly
//! once with its link to the dead letter, a cancelled batch stops creating deliveries, and a
//! replay service killed mid-batch neither loses nor repeats work when it restarts.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{Api, Pipeline, Receiver, Service, eventually};

const SETTLE: Duration = Duration::from_secs(60);

/// Starts a pipeline with the replay service, replaying at most `rate` per second per endpoint.
async fn pipeline(rate: &str) -> Pipeline {
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_REPLAY_RATE", rate)]).await;
    pipeline.start_service(Service::Replay).await;
    pipeline
}

/// An endpoint for `event_type` whose receiver refuses everything with a permanent 400.
async fn failing_endpoint(api: &Api, event_type: &str) -> (Receiver, String) {
    let receiver = Receiver::start().await;
    receiver.respond_with(400, "no such customer");
    let endpoint = api
        .create_endpoint("acme", &receiver.url, &[event_type])
        .await;
    let id = endpoint["id"].as_str().expect("an endpoint id").to_owned();
    (receiver, id)
}

async fn send_events(api: &Api, event_type: &str, n: usize) {
    for i in 0..n {
        let answer = api
            .send_event("acme", event_type, json!({"n": i}), None)
            .await;
        assert_eq!(answer.status, 202, "sending an event: {:?}", answer.body);
    }
}

/// Waits until the endpoint has `n` dead letters listed, and returns them.
async fn dead_letters_of(api: &Api, endpoint_id: &str, n: usize) -> Vec<Value> {
    api.dead_letters_of(endpoint_id, n, SETTLE).await
}

fn ids_of(items: &[Value], field: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| i[field].as_str().expect("an id").to_owned())
        .collect()
}

/// Waits until the batch is no longer running, and returns it.
async fn finished_batch(api: &Api, id: &str) -> Value {
    eventually("the batch to finish", SETTLE, || async {
        let batch = api
            .call("GET", &format!("/v1/batches/{id}"), None)
            .await
            .body;
        (batch["status"] != "running").then_some(batch)
    })
    .await
}

async fn batch_items(api: &Api, id: &str) -> Vec<Value> {
    let answer = api
        .call("GET", &format!("/v1/batches/{id}/items?limit=500"), None)
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    answer.body["data"].as_array().cloned().unwrap_or_default()
}

/// The `webhook-id`s answered 2xx, with how often each was.
fn delivered_ids(receiver: &Receiver) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for webhook in receiver.received() {
        if (200..300).contains(&webhook.answered) {
            *counts
                .entry(webhook.header("webhook-id").to_owned())
                .or_default() += 1;
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_dry_run_and_replayed_exactly_once() {
    let pipeline = pipeline("50").await;
    let api = &pipeline.api;
    let (orders, orders_id) = failing_endpoint(api, "order.created").await;
    let (_invoices, invoices_id) = failing_endpoint(api, "invoice.paid").await;
    send_events(api, "order.created", 5).await;
    send_events(api, "invoice.paid", 2).await;

    let dead = dead_letters_of(api, &orders_id, 5).await;
    dead_letters_of(api, &invoices_id, 2).await;
    let first = &dead[0];
    assert_eq!(first["class"], "HTTP_4XX_PERMANENT");
    assert_eq!(first["status_code"], 400);
    assert_eq!(first["event"]["type"], "order.created");
    assert_eq!(first["endpoint"]["id"], orders_id.as_str());
    assert_eq!(first["attempts"].as_array().map(Vec::len), Some(1));
    assert_eq!(first["attempts"][0]["response_snippet"], "no such customer");
    assert!(first["reason"].as_str().is_some_and(|r| !r.is_empty()));
    let dead_ids = ids_of(&dead, "delivery_id");

    // The endpoint is fixed; a dry run lists exactly its dead letters and creates nothing.
    orders.respond_with(200, "ok");
    let filter = json!({"filter": {"endpoint_id": orders_id, "class": "HTTP_4XX_PERMANENT"}});
    let mut dry = filter.clone();
    dry["dry_run"] = json!(true);
    let answer = api.call("POST", "/v1/batches", Some(dry)).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["count"], 5);
    assert_eq!(answer.body["dry_run"], true);
    assert_eq!(answer.body["created_by"], "admin");
    let planned = answer.body["items"].as_array().cloned().unwrap_or_default();
    assert_eq!(ids_of(&planned, "dead_delivery_id"), dead_ids);
    assert!(planned.iter().all(|i| i["outcome"] == "would_replay"));
    let dry_id = answer.body["id"].as_str().expect("a batch id").to_owned();
    let recorded = api
        .call("GET", &format!("/v1/batches/{dry_id}"), None)
        .await;
    assert_eq!(recorded.body["status"], "completed");
    assert_eq!(recorded.body["counts"]["created"], 0);
    let deliveries = api
        .all_deliveries(&format!("endpoint_id={orders_id}"))
        .await;
    assert_eq!(deliveries.len(), 5, "a dry run creates no delivery");

    // The replay: each dead letter once, linked to the delivery that replaces it.
    let answer = api.call("POST", "/v1/batches", Some(filter.clone())).await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let batch_id = answer.body["id"].as_str().expect("a batch id").to_owned();
    let batch = finished_batch(api, &batch_id).await;
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["counts"]["matched"], 5);
    assert_eq!(batch["counts"]["created"], 5);
    let items = batch_items(api, &batch_id).await;
    assert_eq!(ids_of(&items, "dead_delivery_id"), dead_ids);
    let replayed: HashSet<String> = ids_of(&items, "delivery_id").into_iter().collect();
    assert_eq!(replayed.len(), 5);
    assert!(
        dead_ids.iter().all(|id| !replayed.contains(id)),
        "new deliveries, new ids"
    );
    orders.wait_for(5 + 5, SETTLE).await;
    let delivered = eventually("every replay to be answered", SETTLE, || async {
        let delivered = delivered_ids(&orders);
        (delivered.len() == 5).then_some(delivered)
    })
    .await;
    assert_eq!(delivered.keys().cloned().collect::<HashSet<_>>(), replayed);
    assert!(
        delivered.values().all(|&n| n == 1),
        "each exactly once: {delivered:?}"
    );
    let replay = api
        .call(
            "GET",
            &format!(
                "/v1/deliveries/{}",
                items[0]["delivery_id"].as_str().unwrap_or_default()
            ),
            None,
        )
        .await;
    assert_eq!(replay.body["event_id"], dead[0]["event"]["id"]);

    // The same dead letters again: skipped and reported, nothing sent...
    let answer = api.call("POST", "/v1/batches", Some(filter.clone())).await;
    let again = finished_batch(api, answer.body["id"].as_str().unwrap_or_default()).await;
    assert_eq!(again["counts"]["created"], 0);
    assert_eq!(again["counts"]["skipped_by_reason"]["already_replayed"], 5);
    // ...unless asked for explicitly, one delivery at a time here.
    let answer = api
        .call(
            "POST",
            &format!("/v1/deliveries/{}/resend", dead_ids[0]),
            Some(json!({"allow_repeat": true})),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let resent = finished_batch(api, answer.body["id"].as_str().unwrap_or_default()).await;
    assert_eq!(resent["counts"]["created"], 1);
    eventually("the resend to arrive", SETTLE, || async {
        (delivered_ids(&orders).len() == 6).then_some(())
    })
    .await;
    assert_eq!(delivered_ids(&orders).len(), 6);

    // Bad input gets a clear answer.
    let answer = api
        .call(
            "POST",
            "/v1/batches",
            Some(json!({"filter": {"class": "NOPE"}})),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["field"], "filter.class");
    let answer = api
        .call("GET", "/v1/dead-letters?since=yesterday", None)
        .await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.body["field"], "since");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_batch_stops_creating_deliveries_and_recover_replays_an_endpoint() {
    // One replay per second to an endpoint: the batch is still running when it is cancelled.
    let pipeline = pipeline("1").await;
    let api = &pipeline.api;
    let (orders, orders_id) = failing_endpoint(api, "order.created").await;
    send_events(api, "order.created", 5).await;
    dead_letters_of(api, &orders_id, 5).await;
    orders.respond_with(200, "ok");

    let answer = api
        .call(
            "POST",
            &format!("/v1/endpoints/{orders_id}/recover"),
            Some(json!({"since": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    assert_eq!(answer.body["counts"]["matched"], 5);
    let batch_id = answer.body["id"].as_str().expect("a batch id").to_owned();
    eventually("the first replay to be created", SETTLE, || async {
        let items = batch_items(api, &batch_id).await;
        items
            .iter()
            .any(|i| i["outcome"] == "created")
            .then_some(())
    })
    .await;
    let cancelled = api
        .call("POST", &format!("/v1/batches/{batch_id}/cancel"), None)
        .await;
    assert_eq!(cancelled.status, 200, "{:?}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    // The runner notices at its next item and says so.
    eventually("the runner to stop the batch", SETTLE, || async {
        let log = pipeline.log_tail(Service::Replay);
        log.lines()
            .any(|l| l.contains("replay batch stopped") && l.contains(&batch_id))
            .then_some(())
    })
    .await;
    let items = batch_items(api, &batch_id).await;
    let created: Vec<&Value> = items.iter().filter(|i| i["outcome"] == "created").collect();
    assert!(!created.is_empty() && created.len() < 5, "{items:?}");
    assert!(
        items
            .iter()
            .all(|i| i["outcome"] == "created" || i["outcome"] == "pending")
    );
    let batch = api
        .call("GET", &format!("/v1/batches/{batch_id}"), None)
        .await
        .body;
    assert_eq!(batch["status"], "cancelled");
    assert_eq!(batch["counts"]["created"], created.len());
    let deliveries = api
        .all_deliveries(&format!("endpoint_id={orders_id}"))
        .await;
    assert_eq!(
        deliveries.len(),
        5 + created.len(),
        "nothing created after the cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_service_killed_mid_batch_neither_loses_nor_repeats_work() {
    const DEAD: usize = 8;
    let mut pipeline = pipeline("4").await;
    let (orders, orders_id) = failing_endpoint(&pipeline.api, "order.created").await;
    send_events(&pipeline.api, "order.created", DEAD).await;
    let dead = dead_letters_of(&pipeline.api, &orders_id, DEAD).await;
    orders.respond_with(200, "ok");

    let answer = pipeline
        .api
        .call(
            "POST",
            "/v1/batches",
            Some(json!({"delivery_ids": ids_of(&dead, "delivery_id")})),
        )
        .await;
    assert_eq!(answer.status, 202, "{:?}", answer.body);
    let batch_id = answer.body["id"].as_str().expect("a batch id").to_owned();
    eventually("part of the batch to be delivered", SETTLE, || async {
        (delivered_ids(&orders).len() >= 2).then_some(())
    })
    .await;
    pipeline.kill_service(Service::Replay).await;
    pipeline.start_service(Service::Replay).await;

    let batch = finished_batch(&pipeline.api, &batch_id).await;
    assert_eq!(batch["status"], "completed");
    assert_eq!(batch["counts"]["created"], DEAD);
    let items = batch_items(&pipeline.api, &batch_id).await;
    assert!(items.iter().all(|i| i["published"] == true), "{items:?}");
    let replayed: HashSet<String> = ids_of(&items, "delivery_id").into_iter().collect();
    let delivered = eventually("every replay to be answered", SETTLE, || async {
        let delivered = delivered_ids(&orders);
        (delivered.len() == DEAD).then_some(delivered)
    })
    .await;
    assert_eq!(delivered.keys().cloned().collect::<HashSet<_>>(), replayed);
    assert!(
        delivered.values().all(|&n| n == 1),
        "none twice: {delivered:?}"
    );
    let deliveries = pipeline
        .api
        .all_deliveries(&format!("endpoint_id={orders_id}"))
        .await;
    assert_eq!(
        deliveries.len(),
        2 * DEAD,
        "one new delivery per dead letter"
    );
}
