//! Batched webhooks (issue 21, item 3): up to `max_events` deliveries, or what came within
//! `max_wait`, go as one POST whose body is a JSON array of the usual bodies, signed once with
//! the batch's own `webhook-id` (checked by the public `standardwebhooks` library). Every
//! delivery records the attempt; a retryable failure retries the batch; a permanent one
//! dead-letters each delivery with the reason. Other endpoints are not held up, and switching
//! batching on and off with deliveries in flight loses none.

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

use hookstream_e2e::{
    Pipeline, Receiver, Scripted, Service, Webhook, sum, verify_with_reference_library,
};

const SETTLE: Duration = Duration::from_secs(120);
/// The retry schedule of these tests: short, and its longest delay bounds `max_wait`.
const SCHEDULE: &str = "300ms,600ms,3s";

/// One partition: the other endpoints' tasks sit among the batched ones'.
async fn pipeline() -> Pipeline {
    Pipeline::start(&[
        ("HOOKSTREAM_RETRY_SCHEDULE", SCHEDULE),
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "1"),
    ])
    .await
}

/// Creates an endpoint of `acme` for `event_type` with `settings`; returns its id and secret.
async fn endpoint(
    pipeline: &Pipeline,
    url: &str,
    event_type: &str,
    settings: Value,
) -> (String, String) {
    let mut body = json!({"tenant": "acme", "url": url, "event_types": [event_type]});
    if let (Some(body), Value::Object(settings)) = (body.as_object_mut(), settings) {
        body.extend(settings);
    }
    let created = pipeline.api.call("POST", "/v1/endpoints", Some(body)).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let field = |name: &str| created.body[name].as_str().expect(name).to_owned();
    (field("id"), field("secret"))
}

/// The numbers (`{"n": …}` payloads) a batched webhook carries, in its order.
fn numbers_in(webhook: &Webhook) -> Vec<u64> {
    let body = webhook.json();
    let items = body.as_array().expect("a batch's body is a JSON array");
    items
        .iter()
        .map(|item| {
            assert_eq!(item["type"], "batch.test", "{item}");
            assert!(item["timestamp"].is_string(), "{item}");
            item["data"]["n"].as_u64().expect("a numbered payload")
        })
        .collect()
}

fn since(start: SystemTime, at: SystemTime) -> Duration {
    at.duration_since(start).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_goes_when_full_or_when_its_first_delivery_has_waited_and_others_are_not_held_up() {
    let pipeline = pipeline().await;
    let batched = Receiver::start().await;
    let plain = Receiver::start().await;
    let settings = json!({"batch": {"max_events": 5, "max_wait": "3s"}});
    let (batched_id, secret) = endpoint(&pipeline, &batched.url, "batch.test", settings).await;
    let (plain_id, _) = endpoint(&pipeline, &plain.url, "batch.test", json!({})).await;

    let sent = SystemTime::now();
    pipeline
        .api
        .send_numbered("acme", "batch.test", 0..12)
        .await;

    // Twelve deliveries at once: two full batches, then the last two once the first of them
    // has waited `max_wait`.
    let webhooks = batched.wait_for(3, SETTLE).await;
    let sizes: Vec<usize> = webhooks.iter().map(|w| numbers_in(w).len()).collect();
    assert_eq!(sizes, [5, 5, 2], "batch sizes");
    let carried: Vec<u64> = webhooks.iter().flat_map(numbers_in).collect();
    assert_eq!(
        carried,
        (0..12).collect::<Vec<u64>>(),
        "every event once, in order"
    );
    let waited = since(sent, webhooks[2].arrived);
    assert!(
        waited >= Duration::from_secs(3),
        "the last batch went after {waited:?}, before its first delivery waited 3s"
    );
    assert!(
        waited < Duration::from_secs(15),
        "the last batch waited {waited:?}"
    );

    // The other endpoint got each event alone, and was not held up by the batches filling.
    let singles = plain.wait_for(12, SETTLE).await;
    let last_single = singles.iter().map(|w| w.arrived).max().expect("webhooks");
    assert!(
        last_single < webhooks[2].arrived,
        "the unbatched endpoint waited for the batched one"
    );
    assert!(singles.iter().all(|w| w.json().is_object()));

    // Signed once per batch, with the batch's own id, as the reference library checks.
    let ids: HashSet<&str> = webhooks.iter().map(|w| w.header("webhook-id")).collect();
    assert_eq!(ids.len(), 3, "each batch has an id of its own");
    assert!(ids.iter().all(|id| id.starts_with("batch_")), "{ids:?}");
    assert!(webhooks.iter().all(|w| w.signature_verifies(&secret)));
    let checked: Vec<(&Webhook, &str)> = webhooks.iter().map(|w| (w, secret.as_str())).collect();
    verify_with_reference_library(&checked);

    // Every delivery of the batches recorded its attempt.
    for delivery in pipeline.api.delivered_to(&batched_id, 12, SETTLE).await {
        let id = delivery["id"].as_str().expect("a delivery id");
        let attempts = pipeline.api.attempts(id).await;
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0]["status_code"], 200, "{attempts:?}");
    }
    pipeline.api.delivered_to(&plain_id, 12, SETTLE).await;
    let metrics = pipeline.dispatcher_metrics().await;
    assert!(
        sum(&metrics, "hookstream_batches_sent_total", "").unwrap_or(0.0) >= 3.0,
        "batches counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_retried_whole_and_a_permanent_failure_dead_letters_each_delivery() {
    let mut pipeline = pipeline().await;
    // It indexes the dead letters the API lists.
    pipeline.start_service(Service::Replay).await;
    let receiver = Receiver::start().await;
    let settings = json!({"batch": {"max_events": 3, "max_wait": "1s"}});
    let (endpoint_id, secret) = endpoint(&pipeline, &receiver.url, "batch.test", settings).await;

    // The first request fails; the three deliveries come back from their retry tier together
    // and go out again as the same batch.
    receiver.script(vec![Scripted::status(503)]);
    pipeline.api.send_numbered("acme", "batch.test", 0..3).await;
    let delivered = pipeline.api.delivered_to(&endpoint_id, 3, SETTLE).await;
    let webhooks = receiver.received();
    assert_eq!(webhooks.len(), 2, "one failed request, one retry");
    assert_eq!(webhooks[0].answered, 503);
    assert_eq!(numbers_in(&webhooks[0]), [0, 1, 2]);
    // The retry tier puts the three back side by side, in no set order.
    let mut retried = numbers_in(&webhooks[1]);
    retried.sort_unstable();
    assert_eq!(retried, [0, 1, 2], "the batch is retried whole");
    assert_eq!(
        webhooks[0].header("webhook-id"),
        webhooks[1].header("webhook-id"),
        "a retried batch keeps its id"
    );
    let checked: Vec<(&Webhook, &str)> = webhooks.iter().map(|w| (w, secret.as_str())).collect();
    verify_with_reference_library(&checked);
    for delivery in &delivered {
        let attempts = pipeline
            .api
            .attempts(delivery["id"].as_str().expect("id"))
            .await;
        let classes: Vec<&str> = attempts
            .iter()
            .map(|a| a["class"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            classes,
            ["HTTP_5XX_RETRYABLE", "HTTP_2XX_DELIVERED"],
            "{attempts:?}"
        );
    }

    // A permanent refusal dead-letters every delivery of the batch, each with the reason.
    receiver.respond_with(400, "no");
    let started = Instant::now();
    pipeline.api.send_numbered("acme", "batch.test", 3..5).await;
    let letters = pipeline.api.dead_letters_of(&endpoint_id, 2, SETTLE).await;
    for letter in &letters {
        let reason = letter["reason"].as_str().unwrap_or("");
        assert!(!reason.is_empty(), "{letter}");
        assert_eq!(letter["status_code"], 400, "{letter}");
    }
    let requests = receiver.received();
    assert_eq!(requests.len(), 3, "one request for the refused batch");
    assert_eq!(numbers_in(&requests[2]), [3, 4]);
    assert!(started.elapsed() < SETTLE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_batching_on_and_off_with_deliveries_in_flight_loses_nothing_and_bad_settings_name_their_field()
 {
    let pipeline = pipeline().await;
    let receiver = Receiver::start().await;
    let (endpoint_id, _) = endpoint(&pipeline, &receiver.url, "batch.test", json!({})).await;
    let patch = |change: Value| {
        let api = &pipeline.api;
        let path = format!("/v1/endpoints/{endpoint_id}");
        async move { api.call("PATCH", &path, Some(change)).await }
    };

    // Deliveries go out while the setting flips on and off under them.
    pipeline
        .api
        .send_numbered("acme", "batch.test", 0..100)
        .await;
    let on = patch(json!({"batch": {"max_events": 20, "max_wait": "500ms"}})).await;
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(
        on.body["batch"],
        json!({"max_events": 20, "max_wait": "500ms"})
    );
    pipeline
        .api
        .send_numbered("acme", "batch.test", 100..200)
        .await;
    let off = patch(json!({"batch": null})).await;
    assert!(off.body["batch"].is_null(), "{}", off.body);
    pipeline
        .api
        .send_numbered("acme", "batch.test", 200..250)
        .await;
    let on = patch(json!({"batch": {"max_events": 1000, "max_wait": "3s"}})).await;
    assert_eq!(on.status, 200, "{}", on.body);
    pipeline
        .api
        .send_numbered("acme", "batch.test", 250..300)
        .await;

    pipeline.api.delivered_to(&endpoint_id, 300, SETTLE).await;
    let mut seen = Vec::new();
    for webhook in receiver.received() {
        match webhook.json() {
            Value::Array(items) => {
                seen.extend(items.iter().map(|i| i["data"]["n"].as_u64().expect("n")))
            }
            single => seen.push(single["data"]["n"].as_u64().expect("n")),
        }
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (0..300).collect::<Vec<u64>>(),
        "each event exactly once"
    );
    assert!(receiver.duplicates().is_empty());

    // Bad settings get a 400 naming the field, and change nothing.
    let cases = [
        (
            json!({"batch": {"max_events": 0, "max_wait": "1s"}}),
            "batch.max_events",
        ),
        (
            json!({"batch": {"max_events": 1001, "max_wait": "1s"}}),
            "batch.max_events",
        ),
        (
            json!({"batch": {"max_events": 10, "max_wait": "4s"}}),
            "batch.max_wait",
        ),
        (
            json!({"batch": {"max_events": 10, "max_wait": "-1s"}}),
            "batch.max_wait",
        ),
        (json!({"batch": {"max_events": 10}}), "batch.max_wait"),
        (json!({"batch": 5}), "batch"),
        (json!({"ordering": "strict"}), "batch"),
    ];
    for (change, field) in cases {
        let answer = patch(change.clone()).await;
        assert_eq!(answer.status, 400, "{change}: {}", answer.body);
        assert_eq!(answer.body["field"], field, "{change}: {}", answer.body);
    }
    let create = pipeline
        .api
        .call(
            "POST",
            "/v1/endpoints",
            Some(json!({
                "tenant": "acme",
                "url": receiver.url,
                "ordering": "strict",
                "batch": {"max_events": 10, "max_wait": "1s"},
            })),
        )
        .await;
    assert_eq!(create.status, 400, "{}", create.body);
    assert_eq!(create.body["field"], "batch");
    let read = pipeline
        .api
        .call("GET", &format!("/v1/endpoints/{endpoint_id}"), None)
        .await;
    assert_eq!(
        read.body["batch"],
        json!({"max_events": 1000, "max_wait": "3s"})
    );
    assert_eq!(read.body["ordering"], "partition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_with_a_batch_out_and_others_gathering_loses_none_and_resends_no_delivered_one()
 {
    let mut pipeline = Pipeline::start(&[
        ("HOOKSTREAM_RETRY_SCHEDULE", SCHEDULE),
        // The killed dispatcher's claims run out after 10 s instead of a minute.
        ("HOOKSTREAM_REQUEST_TIMEOUT", "5s"),
        ("HOOKSTREAM_CLAIM_LEASE", "10s"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let settings = json!({"batch": {"max_events": 10, "max_wait": "3s"}});
    let (endpoint_id, _) = endpoint(&pipeline, &receiver.url, "batch.test", settings).await;

    // Two batches delivered and recorded before the kill.
    pipeline
        .api
        .send_numbered("acme", "batch.test", 0..20)
        .await;
    pipeline.api.delivered_to(&endpoint_id, 20, SETTLE).await;
    assert_eq!(receiver.received().len(), 2);

    // The third batch is out, unanswered, and the rest gather behind it when the dispatcher
    // is killed. (The receiver would refuse it: it is not counted as delivered.)
    receiver.respond_with(503, "down");
    receiver.hold();
    pipeline
        .api
        .send_numbered("acme", "batch.test", 20..45)
        .await;
    receiver.wait_for(3, SETTLE).await;
    pipeline.kill_service(Service::Dispatcher).await;
    receiver.respond_with(200, "ok");
    receiver.release();
    pipeline.start_service(Service::Dispatcher).await;

    pipeline.api.delivered_to(&endpoint_id, 45, SETTLE).await;
    let requests = receiver.received();
    let mut delivered: Vec<u64> = Vec::new();
    let mut sent_before_kill = 0;
    for webhook in &requests {
        let numbers = numbers_in(webhook);
        sent_before_kill += numbers.iter().filter(|n| **n < 20).count();
        if (200..300).contains(&webhook.answered) {
            delivered.extend(numbers);
        }
    }
    assert_eq!(
        sent_before_kill, 20,
        "a delivery recorded before the kill was sent again"
    );
    delivered.sort_unstable();
    assert_eq!(
        delivered,
        (0..45).collect::<Vec<u64>>(),
        "every event delivered exactly once"
    );
    assert!(receiver.duplicates().is_empty());
}
