//! Failures end explained: retried on the delay tiers with backoff, or dead-lettered, never
//! dropped and never retried forever. Real broker, real processes, receivers on 127.0.0.1; the
//! test pipeline's tiers are 300ms, 600ms and 1s (so 4 attempts at most).

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use hookstream_e2e::{Pipeline, Receiver, Scripted, Service, eventually, sample};

const SETTLE: Duration = Duration::from_secs(60);

fn time_of(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("a timestamp"), &Rfc3339).expect("RFC 3339")
}

/// Sends one event to the tenant's endpoints and waits for all its deliveries to settle.
async fn settle_one_event(pipeline: &Pipeline) -> Vec<Value> {
    let event = pipeline
        .api
        .send_event("acme", "order.created", json!({"order": 1}), None)
        .await;
    assert_eq!(event.status, 202, "{:?}", event.body);
    pipeline
        .api
        .settled_deliveries(event.body["id"].as_str().unwrap(), SETTLE)
        .await
}

/// Sends one event to the tenant's one endpoint and waits for its delivery to settle.
async fn deliver_one(pipeline: &Pipeline) -> Value {
    let settled = settle_one_event(pipeline).await;
    assert_eq!(settled.len(), 1);
    settled[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_endpoint_gets_every_event_after_backoff() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    // Fails twice (a 503, then a 408), then recovers.
    receiver.script(vec![Scripted::status(503), Scripted::status(408)]);
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;

    let delivery = deliver_one(&pipeline).await;
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["attempts"], 3);

    let attempts = pipeline
        .api
        .attempts(delivery["id"].as_str().unwrap())
        .await;
    let classes: Vec<&str> = attempts
        .iter()
        .map(|a| a["class"].as_str().unwrap())
        .collect();
    assert_eq!(
        classes,
        [
            "HTTP_5XX_RETRYABLE",
            "HTTP_4XX_RETRYABLE",
            "HTTP_2XX_DELIVERED"
        ]
    );
    assert_eq!(attempts[0]["tier"], "300ms");
    assert_eq!(attempts[1]["tier"], "600ms");
    assert!(
        attempts[2]["tier"].is_null(),
        "a delivered attempt has no next tier"
    );
    // Each retry waited at least its tier's delay less the 20 % jitter.
    for (i, least_ms) in [(1, 240), (2, 480)] {
        let waited = time_of(&attempts[i]["started_at"]) - time_of(&attempts[i - 1]["started_at"]);
        assert!(
            waited >= time::Duration::milliseconds(least_ms),
            "attempt {} came {waited} after the previous one",
            i + 1
        );
        let due = time_of(&attempts[i - 1]["next_attempt_at"]);
        assert!(time_of(&attempts[i]["started_at"]) >= due - time::Duration::milliseconds(5));
    }
    // The receiver saw the same webhook-id on every attempt.
    let webhooks = receiver.wait_for(3, SETTLE).await;
    assert!(
        webhooks
            .iter()
            .all(|w| w.header("webhook-id") == delivery["id"].as_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_failure_is_dead_lettered_after_one_attempt() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(400, "unknown field `order`");
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;

    let delivery = deliver_one(&pipeline).await;
    assert_eq!(delivery["status"], "dead_lettered");
    assert_eq!(delivery["attempts"], 1);
    assert!(delivery["next_attempt_at"].is_null());
    let attempts = pipeline
        .api
        .attempts(delivery["id"].as_str().unwrap())
        .await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["class"], "HTTP_4XX_PERMANENT");
    assert_eq!(attempts[0]["status_code"], 400);
    assert_eq!(attempts[0]["response_snippet"], "unknown field `order`");
    assert_eq!(
        receiver.received().len(),
        1,
        "a permanent failure is not retried"
    );

    // Lists filter by status and endpoint; the metrics count the attempt and the dead letter.
    let dead = pipeline
        .api
        .call("GET", "/v1/deliveries?status=dead_lettered", None)
        .await;
    assert_eq!(dead.body["data"].as_array().unwrap().len(), 1);
    let endpoint_id = delivery["endpoint_id"].as_str().unwrap();
    let by_endpoint = pipeline
        .api
        .call(
            "GET",
            &format!("/v1/deliveries?endpoint_id={endpoint_id}"),
            None,
        )
        .await;
    assert_eq!(by_endpoint.body["data"].as_array().unwrap().len(), 1);
    eventually("the attempt metrics", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sample(
            &metrics,
            &format!(
                r#"hookstream_delivery_attempts_total{{class="HTTP_4XX_PERMANENT",endpoint="{endpoint_id}"}}"#
            ),
        ) == Some(1.0)
            && sample(&metrics, "hookstream_dead_lettered_total") == Some(1.0))
        .then_some(())
    })
    .await;

    // The dead letter is on the DLQ topic with the task, the last attempt and the reason.
    let letter = read_one_dead_letter(&pipeline.brokers()).await;
    assert_eq!(
        letter.task.delivery_id.to_string(),
        delivery["id"].as_str().unwrap()
    );
    assert_eq!(letter.task.attempts_made, 1);
    assert_eq!(
        letter.task.payload, r#"{"order":1}"#,
        "the payload travels for replay"
    );
    assert_eq!(letter.last_class.as_str(), "HTTP_4XX_PERMANENT");
    assert_eq!(letter.last_status_code, Some(400));
    assert_eq!(letter.last_response_snippet, "unknown field `order`");
    assert!(
        letter.reason.contains("HTTP_4XX_PERMANENT"),
        "{}",
        letter.reason
    );
}

/// Reads the first record of the DLQ topic, as the replay service will.
async fn read_one_dead_letter(brokers: &str) -> hookstream_model::dead_letter::DeadLetter {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::Message;

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "e2e-dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("a DLQ consumer");
    consumer
        .subscribe(&["hookstream.dlq"])
        .expect("subscribing to the DLQ");
    let message = tokio::time::timeout(SETTLE, consumer.recv())
        .await
        .expect("a dead letter within the time limit")
        .expect("reading the DLQ");
    hookstream_model::dead_letter::DeadLetter::decode(message.payload().expect("a payload"))
        .expect("a decodable dead letter")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stop_at_the_endpoint_limit_and_the_delivery_is_dead_lettered() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(503, "down");
    let endpoint = pipeline
        .api
        .call(
            "POST",
            "/v1/endpoints",
            Some(json!({"tenant": "acme", "url": receiver.url, "max_attempts": 2})),
        )
        .await;
    assert_eq!(endpoint.status, 201, "{:?}", endpoint.body);
    assert_eq!(endpoint.body["max_attempts"], 2);

    let delivery = deliver_one(&pipeline).await;
    assert_eq!(delivery["status"], "dead_lettered");
    assert_eq!(delivery["attempts"], 2);
    let attempts = pipeline
        .api
        .attempts(delivery["id"].as_str().unwrap())
        .await;
    assert_eq!(attempts[0]["tier"], "300ms");
    assert!(attempts[0]["next_attempt_at"].is_string());
    assert!(
        attempts[1]["next_attempt_at"].is_null(),
        "no attempt after the last"
    );
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    // A tier as long as the Retry-After asked for: up to the longest tier, it is honoured.
    let pipeline = Pipeline::start(&[("HOOKSTREAM_RETRY_SCHEDULE", "300ms,600ms,3s")]).await;
    let receiver = Receiver::start().await;
    receiver.script(vec![Scripted {
        status: 429,
        headers: vec![("retry-after", "3".to_owned())],
    }]);
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;

    let delivery = deliver_one(&pipeline).await;
    assert_eq!(delivery["status"], "delivered");
    let attempts = pipeline
        .api
        .attempts(delivery["id"].as_str().unwrap())
        .await;
    assert_eq!(attempts[0]["class"], "RATE_LIMITED");
    // The 3s tier carries it, and jitter never makes it due before the 3 s asked for.
    assert_eq!(attempts[0]["tier"], "3s");
    let waited = time_of(&attempts[1]["started_at"]) - time_of(&attempts[0]["started_at"]);
    assert!(waited >= time::Duration::seconds(3), "waited only {waited}");
}

/// Hostile `Retry-After` values: a year, one that overflows `now + delay`, an HTTP date in 9999.
const ABSURD_RETRY_AFTER: [&str; 3] = ["31536000", "999999999999", "Fri, 31 Dec 9999 23:59:59 GMT"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_retry_after_is_capped_and_holds_back_no_other_endpoint() {
    // One partition: every endpoint's retries wait in each tier's only partition, in order, so
    // a task parked for a year at the head of the longest tier would hold back all behind it.
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "1"),
        // The breaker stays out of it: four failures in a row are under its threshold.
        ("HOOKSTREAM_BREAKER_FAILURES", "5"),
    ])
    .await;
    let mut hostile = Vec::new();
    for value in ABSURD_RETRY_AFTER {
        let receiver = Receiver::start().await;
        receiver.script(vec![
            Scripted {
                status: 429,
                headers: vec![("retry-after", value.to_owned())],
            };
            4
        ]);
        let endpoint = pipeline
            .api
            .create_endpoint("acme", &receiver.url, &[])
            .await;
        hostile.push((receiver, endpoint["id"].as_str().unwrap().to_owned()));
    }
    // Another endpoint fails three times: its last retry waits on the longest tier (1s),
    // behind the hostile endpoints' tasks.
    let patient = Receiver::start().await;
    patient.script(vec![
        Scripted::status(503),
        Scripted::status(503),
        Scripted::status(503),
    ]);
    let patient_endpoint = pipeline
        .api
        .create_endpoint("acme", &patient.url, &[])
        .await;

    let settled = settle_one_event(&pipeline).await;
    assert_eq!(settled.len(), 4);
    let of = |endpoint: &str| {
        settled
            .iter()
            .find(|d| d["endpoint_id"] == endpoint)
            .cloned()
            .expect("a delivery per endpoint")
    };
    let delivered = of(patient_endpoint["id"].as_str().unwrap());
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    assert_eq!(delivered["attempts"], 4);

    // Each hostile endpoint was asked again after the longest tier, not in a year: it used its
    // four attempts within seconds and ended as a dead letter.
    for ((receiver, endpoint), value) in hostile.iter().zip(ABSURD_RETRY_AFTER) {
        assert_eq!(receiver.received().len(), 4, "Retry-After {value}");
        let delivery = of(endpoint);
        assert_eq!(delivery["status"], "dead_lettered", "{delivery}");
        let attempts = pipeline
            .api
            .attempts(delivery["id"].as_str().unwrap())
            .await;
        assert_eq!(attempts.len(), 4, "{attempts:?}");
        for pair in attempts.windows(2) {
            assert_eq!(pair[0]["class"], "RATE_LIMITED");
            assert_eq!(pair[0]["tier"], "1s", "capped at the longest tier");
            let waited = time_of(&pair[1]["started_at"]) - time_of(&pair[0]["started_at"]);
            assert!(
                waited < time::Duration::seconds(10),
                "waited {waited} after Retry-After {value}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_dead_letters_and_disables_the_endpoint_whose_new_deliveries_wait_until_it_is_enabled()
{
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    receiver.script(vec![Scripted::status(410)]);
    let endpoint = pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    let id = endpoint["id"].as_str().unwrap();

    let delivery = deliver_one(&pipeline).await;
    assert_eq!(delivery["status"], "dead_lettered");
    let attempts = pipeline
        .api
        .attempts(delivery["id"].as_str().unwrap())
        .await;
    assert_eq!(attempts[0]["class"], "GONE");
    let read = pipeline
        .api
        .call("GET", &format!("/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(read.body["disabled"], true);

    // Disabled, its new deliveries are kept, unsent, in its queue in the store.
    const KEPT: usize = 3;
    let mut kept_events = Vec::new();
    for n in 0..KEPT {
        let event = pipeline
            .api
            .send_event("acme", "order.created", json!({"kept": n}), None)
            .await;
        assert_eq!(event.body["deliveries"], 1, "{}", event.body);
        kept_events.push(event.body["id"].as_str().unwrap().to_owned());
    }
    pipeline.wait_for_queued(KEPT, SETTLE).await;
    for event_id in &kept_events {
        let kept = pipeline.api.deliveries_of(event_id).await;
        assert_ne!(kept[0]["status"], "delivered");
        assert_ne!(kept[0]["status"], "dead_lettered");
    }
    assert_eq!(receiver.received().len(), 1, "nothing sent while disabled");

    // Enabled again, what was kept goes back to the deliveries topic and out, and so does
    // what comes next.
    let enabled = pipeline
        .api
        .call(
            "PATCH",
            &format!("/v1/endpoints/{id}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(enabled.status, 200);
    for event_id in &kept_events {
        let kept = pipeline.api.settled_deliveries(event_id, SETTLE).await;
        assert_eq!(kept[0]["status"], "delivered", "{kept:?}");
    }
    let metrics = pipeline.dispatcher_metrics().await;
    assert_eq!(
        sample(&metrics, "hookstream_queue_released_total"),
        Some(KEPT as f64)
    );
    let delivery = deliver_one(&pipeline).await;
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(receiver.received().len(), KEPT + 2, "each once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_retried_and_explained() {
    let pipeline = Pipeline::start(&[]).await;
    // An address nothing listens on yet.
    let port = hookstream_e2e::free_port();
    let url = format!("http://127.0.0.1:{port}/hook");
    pipeline.api.create_endpoint("acme", &url, &[]).await;
    let event = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    let event_id = event.body["id"].as_str().unwrap().to_owned();
    let first = eventually("the first failed attempt", SETTLE, || async {
        let deliveries = pipeline.api.deliveries_of(&event_id).await;
        (deliveries[0]["status"] == "retrying").then(|| deliveries[0].clone())
    })
    .await;
    let attempts = pipeline.api.attempts(first["id"].as_str().unwrap()).await;
    assert_eq!(attempts[0]["class"], "NETWORK_ERROR");
    assert!(
        attempts[0]["error"].as_str().unwrap().len() > 5,
        "the error is explained"
    );
    assert!(first["next_attempt_at"].is_string());
    assert!(first["next_tier"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_holds_an_endpoint_without_spending_attempts_until_a_probe_succeeds() {
    let mut pipeline = Pipeline::start(&[
        ("HOOKSTREAM_BREAKER_FAILURES", "3"),
        // Longer than a dispatcher restart takes here, so the restarted one meets it open.
        ("HOOKSTREAM_BREAKER_OPEN_FOR", "30s"),
    ])
    .await;
    let receiver = Receiver::start().await;
    receiver.respond_with(503, "down");
    let endpoint = pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    let id = endpoint["id"].as_str().unwrap().to_owned();
    assert_eq!(endpoint["circuit"]["state"], "closed");

    let mut events = Vec::new();
    for n in 0..5 {
        let event = pipeline
            .api
            .send_event("acme", "order.created", json!({"n": n}), None)
            .await;
        events.push(event.body["id"].as_str().unwrap().to_owned());
    }
    // Three failures in a row open the breaker; the API shows it.
    let open = eventually("the circuit to open", SETTLE, || async {
        let endpoint = pipeline
            .api
            .call("GET", &format!("/v1/endpoints/{id}"), None)
            .await;
        (endpoint.body["circuit"]["state"] == "open").then_some(endpoint.body)
    })
    .await;
    assert!(open["circuit"]["open_until"].is_string());
    assert_eq!(
        receiver.received().len(),
        3,
        "nothing is sent once the breaker is open"
    );

    let open_until = time_of(&open["circuit"]["open_until"]);

    // The endpoint recovers, and the dispatcher restarts: the new one takes the breaker up where
    // it was recorded, so nothing goes out before `open_until`, however long the restart took;
    // after it, one probe closes the breaker.
    receiver.respond_with(200, "ok");
    pipeline.stop_service(Service::Dispatcher).await;
    pipeline.start_service(Service::Dispatcher).await;
    let restarted = OffsetDateTime::now_utc();
    assert!(
        restarted < open_until,
        "the restart ended at {restarted}, after the open period ({open_until}): nothing tested"
    );
    let mut attempts = 0;
    let mut retried = 0;
    for event in &events {
        for delivery in pipeline.api.settled_deliveries(event, SETTLE).await {
            assert_eq!(delivery["status"], "delivered", "{delivery}");
            let n = delivery["attempts"].as_u64().unwrap();
            attempts += n;
            retried += usize::from(n == 2);
            let log = pipeline
                .api
                .attempts(delivery["id"].as_str().unwrap())
                .await;
            let success = log.last().expect("an attempt");
            // Timestamps are kept to the millisecond.
            assert!(
                time_of(&success["started_at"]) >= open_until - time::Duration::milliseconds(1),
                "sent at {} while the breaker was open until {open_until}",
                success["started_at"]
            );
        }
    }
    assert_eq!(
        attempts, 8,
        "3 failures and 5 successes: no attempt spent while open"
    );
    assert_eq!(retried, 3);
    assert_eq!(receiver.received().len(), 8);
    let closed = pipeline
        .api
        .call("GET", &format!("/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(closed.body["circuit"]["state"], "closed");
    // The restarted dispatcher saw the probe close the breaker.
    let metrics = pipeline.dispatcher_metrics().await;
    assert_eq!(
        sample(
            &metrics,
            r#"hookstream_circuit_transitions_total{to="closed"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_deliveries_survive_a_restart_and_go_out_when_enabled_or_are_dead_lettered_when_deleted()
 {
    let mut pipeline = Pipeline::start(&[]).await;
    let enabled_later = Receiver::start().await;
    let deleted_later = Receiver::start().await;
    let mut ids = Vec::new();
    for receiver in [&enabled_later, &deleted_later] {
        let id = pipeline
            .api
            .create_endpoint_with("acme", &receiver.url, &["kept.thing"], json!({}))
            .await;
        let disabled = pipeline
            .api
            .call(
                "PATCH",
                &format!("/v1/endpoints/{id}"),
                Some(json!({"disabled": true})),
            )
            .await;
        assert_eq!(disabled.status, 200, "{}", disabled.body);
        ids.push(id);
    }
    let mut events = Vec::new();
    for n in 0..2 {
        let event = pipeline
            .api
            .send_event("acme", "kept.thing", json!({"n": n}), None)
            .await;
        events.push(event.body["id"].as_str().unwrap().to_owned());
    }
    pipeline.wait_for_queued(4, SETTLE).await;

    // A new dispatcher finds the queues in the store and keeps adding to them.
    pipeline.stop_service(Service::Dispatcher).await;
    pipeline.start_service(Service::Dispatcher).await;
    let event = pipeline
        .api
        .send_event("acme", "kept.thing", json!({"n": 2}), None)
        .await;
    events.push(event.body["id"].as_str().unwrap().to_owned());
    pipeline.wait_for_queued(2, SETTLE).await;
    assert!(enabled_later.received().is_empty() && deleted_later.received().is_empty());

    // One is deleted: its kept deliveries are dead-lettered. The other is enabled: its go out.
    let deleted = pipeline
        .api
        .call("DELETE", &format!("/v1/endpoints/{}", ids[1]), None)
        .await;
    assert_eq!(deleted.status, 204);
    let enabled = pipeline
        .api
        .call(
            "PATCH",
            &format!("/v1/endpoints/{}", ids[0]),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    for event_id in &events {
        let settled = pipeline.api.settled_deliveries(event_id, SETTLE).await;
        assert_eq!(settled.len(), 2);
        for delivery in settled {
            let expected = if delivery["endpoint_id"] == ids[0].as_str() {
                "delivered"
            } else {
                "dead_lettered"
            };
            assert_eq!(delivery["status"], expected, "{delivery}");
        }
    }
    assert_eq!(enabled_later.received().len(), 3);
    assert!(deleted_later.received().is_empty());
}
