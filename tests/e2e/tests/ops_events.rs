//! Operational events (issue 22, item 3): an endpoint warned of, disabled (by its rules, or by
//! a `410`) and recovered, a delivery dead-lettered and a replay batch finished are written to
//! `hookstream.ops-events` as CloudEvents and sent, as signed webhooks through the pipeline, to
//! the tenant's operator endpoints (those subscribed to `hookstream.*` types), and to no other
//! tenant's. An operator endpoint's own failures raise none (no recursion), and tenants cannot
//! publish in the reserved namespace.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use serde_json::{Value, json};

use hookstream_e2e::{
    Pipeline, Receiver, Service, Webhook, eventually, sample, sum, verify_with_reference_library,
};

const SETTLE: Duration = Duration::from_secs(90);

const ALL_OPS: [&str; 5] = [
    "hookstream.endpoint.warning",
    "hookstream.endpoint.disabled",
    "hookstream.endpoint.recovered",
    "hookstream.delivery.dead_lettered",
    "hookstream.batch.finished",
];

async fn pipeline() -> Pipeline {
    // Failures in a row would open an endpoint's circuit breaker for minutes.
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_BREAKER_FAILURES", "100")]).await;
    pipeline.start_service(Service::Replay).await;
    pipeline
}

async fn send(pipeline: &Pipeline, tenant: &str, event_type: &str, n: usize) {
    let answer = pipeline
        .api
        .send_event(tenant, event_type, json!({"n": n}), None)
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
}

/// An operator endpoint of `tenant` for every operational event; its receiver and secret.
async fn operator(pipeline: &Pipeline, tenant: &str) -> (Receiver, String, String) {
    let receiver = Receiver::start().await;
    let created = pipeline
        .api
        .create_endpoint(tenant, &receiver.url, &ALL_OPS)
        .await;
    let id = created["id"].as_str().expect("an endpoint id").to_owned();
    let secret = created["secret"].as_str().expect("a secret").to_owned();
    (receiver, id, secret)
}

/// The webhooks of `event_type` the receiver took (answered 2xx), in arrival order.
fn of_type(receiver: &Receiver, event_type: &str) -> Vec<Value> {
    receiver
        .received()
        .iter()
        .filter(|w| (200..300).contains(&w.answered))
        .map(Webhook::json)
        .filter(|body| body["type"] == event_type)
        .collect()
}

/// Waits until the receiver has `n` webhooks of `event_type`, and returns their bodies.
async fn wait_for_type(receiver: &Receiver, event_type: &str, n: usize) -> Vec<Value> {
    eventually(&format!("{n} webhooks of {event_type}"), SETTLE, || async {
        let found = of_type(receiver, event_type);
        (found.len() >= n).then_some(found)
    })
    .await
}

/// Reads the ops-events topic from its start until `done` holds for what was read: the
/// CloudEvents in order, each with its record's content-type.
async fn read_ops_topic(
    brokers: &str,
    group: &str,
    done: impl Fn(&[(Value, String)]) -> bool,
) -> Vec<(Value, String)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("a consumer of our own");
    consumer
        .subscribe(&["hookstream.ops-events"])
        .expect("subscribing to the ops-events topic");
    let mut read = Vec::new();
    while !done(&read) {
        let message = tokio::time::timeout(SETTLE, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("no more operational events; read so far: {read:#?}"))
            .expect("reading the ops-events topic");
        let content_type = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "content-type"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        let event: Value =
            serde_json::from_slice(message.payload().expect("a value")).expect("JSON");
        read.push((event, content_type));
    }
    read
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operational_event_reaches_the_topic_and_the_tenants_operator_endpoint_signed() {
    let pipeline = pipeline().await;
    let api = &pipeline.api;
    let (acme_ops, acme_ops_id, acme_secret) = operator(&pipeline, "acme").await;
    // Operational webhooks are retried like any: every third request fails.
    acme_ops.fail_every(3);
    let (globex_ops, _, _) = operator(&pipeline, "globex").await;
    // A tenant endpoint for every type (`*`) takes its tenant's own events only.
    let everything = Receiver::start().await;
    api.create_endpoint("acme", &everything.url, &["*"]).await;

    // Fails until fixed: a dead letter per event, a warning after three failures in a row
    // (more than two), disabled at four.
    let failing = Receiver::start().await;
    failing.respond_with(503, "down");
    let failing_id = api
        .create_endpoint_with(
            "acme",
            &failing.url,
            &["rule.thing"],
            json!({"max_attempts": 1, "health_rules": {"warn_streak": 2, "disable_streak": 4}}),
        )
        .await;
    // Warned after two failures in a row (more than one), never disabled; recovers with a
    // success.
    let wobbly = Receiver::start().await;
    wobbly.respond_with(500, "down");
    let wobbly_id = api
        .create_endpoint_with(
            "acme",
            &wobbly.url,
            &["wobbly.thing"],
            json!({"max_attempts": 1, "health_rules": {"warn_streak": 1, "disable_after": "never"}}),
        )
        .await;
    // Answers 410, to requests sent side by side: disabled once, told once.
    let gone = Receiver::start().await;
    gone.respond_with(410, "gone");
    let gone_id = api
        .create_endpoint_with(
            "acme",
            &gone.url,
            &["gone.thing"],
            json!({"ordering": "none"}),
        )
        .await;
    // Another tenant's dead letter goes to its own operators only.
    let globex_failing = Receiver::start().await;
    globex_failing.respond_with(400, "no");
    api.create_endpoint("globex", &globex_failing.url, &["bill.thing"])
        .await;
    // A tenant without operator endpoints: its dead letter is told on the topic, and ingest
    // skips it (nothing to send it to).
    let initech_failing = Receiver::start().await;
    initech_failing.respond_with(400, "no");
    api.create_endpoint("initech", &initech_failing.url, &["bill.thing"])
        .await;

    for n in 0..4 {
        send(&pipeline, "acme", "rule.thing", n).await;
    }
    for n in 0..2 {
        send(&pipeline, "acme", "wobbly.thing", n).await;
    }
    api.send_numbered("acme", "gone.thing", 0..3).await;
    send(&pipeline, "globex", "bill.thing", 0).await;
    send(&pipeline, "initech", "bill.thing", 0).await;

    // Four of the failing endpoint's and two of the wobbly one's dead letters, and the gone
    // one's (those sent before it was disabled; the rest are kept).
    let dead_of = |dead: &[Value], endpoint: &str| {
        dead.iter()
            .filter(|d| d["data"]["endpoint_id"] == endpoint)
            .count()
    };
    let dead = eventually("the dead letters told", SETTLE, || async {
        let dead = of_type(&acme_ops, "hookstream.delivery.dead_lettered");
        (dead_of(&dead, &failing_id) >= 4
            && dead_of(&dead, &wobbly_id) >= 2
            && dead_of(&dead, &gone_id) >= 1)
            .then_some(dead)
    })
    .await;
    assert_eq!(dead_of(&dead, &failing_id), 4, "{dead:#?}");
    assert_eq!(dead_of(&dead, &wobbly_id), 2, "{dead:#?}");
    let first = dead
        .iter()
        .find(|d| d["data"]["endpoint_id"] == failing_id)
        .expect("one of the failing endpoint's");
    assert_eq!(first["data"]["event_type"], "rule.thing");
    assert_eq!(first["data"]["attempts"], 1);
    assert_eq!(first["data"]["last_class"], "HTTP_5XX_RETRYABLE");
    assert_eq!(first["data"]["last_status_code"], 503);
    assert!(first["data"]["delivery_id"].is_string(), "{first}");
    assert!(first["data"]["event_id"].is_string(), "{first}");
    eventually(
        "initech's dead letter skipped by ingest",
        SETTLE,
        || async {
            let metrics = pipeline.metrics_of(Service::Ingest).await;
            (sum(
                &metrics,
                "hookstream_source_records_total",
                "outcome=\"no_operator\"",
            )? >= 1.0)
                .then_some(())
        },
    )
    .await;

    let warnings = wait_for_type(&acme_ops, "hookstream.endpoint.warning", 2).await;
    let warned: Vec<&Value> = warnings.iter().map(|w| &w["data"]["endpoint_id"]).collect();
    assert!(warned.contains(&&json!(failing_id)), "{warnings:#?}");
    assert!(warned.contains(&&json!(wobbly_id)), "{warnings:#?}");
    let disabled = wait_for_type(&acme_ops, "hookstream.endpoint.disabled", 2).await;
    let by_rules = disabled
        .iter()
        .find(|d| d["data"]["endpoint_id"] == failing_id)
        .expect("the failing endpoint disabled by its rules");
    assert!(
        by_rules["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("4 attempts in a row failed")),
        "{by_rules}"
    );
    let by_gone = disabled
        .iter()
        .find(|d| d["data"]["endpoint_id"] == gone_id)
        .expect("the 410 endpoint disabled");
    assert!(
        by_gone["data"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("410")),
        "{by_gone}"
    );

    // The wobbly endpoint succeeds: its warning ends.
    wobbly.respond_with(200, "ok");
    send(&pipeline, "acme", "wobbly.thing", 2).await;
    eventually("the wobbly endpoint's recovery", SETTLE, || async {
        of_type(&acme_ops, "hookstream.endpoint.recovered")
            .iter()
            .any(|r| r["data"]["endpoint_id"] == wobbly_id)
            .then_some(())
    })
    .await;

    // The failing endpoint is fixed and enabled; its dead letters are replayed in a batch of
    // the tenant's, whose end is told.
    failing.respond_with(200, "ok");
    let enabled = api
        .call(
            "PATCH",
            &format!("/v1/endpoints/{failing_id}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    let batch = api
        .call(
            "POST",
            "/v1/batches",
            Some(json!({"filter": {"tenant": "acme", "endpoint_id": failing_id}})),
        )
        .await;
    assert_eq!(batch.status, 202, "{}", batch.body);
    let batch_id = batch.body["id"].as_str().expect("a batch id").to_owned();
    let finished = wait_for_type(&acme_ops, "hookstream.batch.finished", 1).await;
    assert_eq!(finished[0]["data"]["batch_id"], batch_id);
    assert_eq!(finished[0]["data"]["status"], "completed");
    assert_eq!(finished[0]["data"]["matched"], 4);
    assert_eq!(finished[0]["data"]["replayed"], 4);
    failing.wait_for(4 + 4, SETTLE).await;

    // Every operational webhook is signed with the operator endpoint's secret, checked by the
    // reference library; those that failed were tried again, and none taken came twice.
    let received = eventually(
        "every failed request tried again until taken",
        SETTLE,
        || async {
            let received = acme_ops.received();
            let taken = |id: &str| {
                received
                    .iter()
                    .any(|w| w.header("webhook-id") == id && (200..300).contains(&w.answered))
            };
            received
                .iter()
                .filter(|w| w.answered == 503)
                .all(|w| taken(w.header("webhook-id")))
                .then_some(received.clone())
        },
    )
    .await;
    assert!(
        received.iter().any(|w| w.answered == 503),
        "every third request fails"
    );
    let signed: Vec<(&Webhook, &str)> =
        received.iter().map(|w| (w, acme_secret.as_str())).collect();
    verify_with_reference_library(&signed);
    assert!(
        acme_ops.duplicates().is_empty(),
        "{:?}",
        acme_ops.duplicates()
    );

    // The other tenant's operators got their own dead letter, none of acme's.
    let globex_dead = wait_for_type(&globex_ops, "hookstream.delivery.dead_lettered", 1).await;
    assert_eq!(globex_dead[0]["data"]["event_type"], "bill.thing");
    for webhook in globex_ops.received() {
        let body = webhook.json();
        assert_ne!(body["data"]["endpoint_id"], json!(failing_id), "{body}");
        assert_ne!(body["data"]["endpoint_id"], json!(wobbly_id), "{body}");
    }
    // `*` is the tenant's own types: its ten events, nothing else.
    everything.wait_for(4 + 3 + 3, SETTLE).await;
    assert!(
        everything.received().iter().all(|w| !w.json()["type"]
            .as_str()
            .unwrap_or_default()
            .starts_with("hookstream.")),
        "a catch-all endpoint got an operational event"
    );

    // The topic has each as a structured CloudEvent of its tenant.
    let read = read_ops_topic(&pipeline.brokers(), "e2e-ops-reader", |read| {
        read.iter().any(|(e, _)| {
            e["type"] == "hookstream.batch.finished" && e["data"]["batch_id"] == batch_id
        })
    })
    .await;
    let mut types: HashMap<String, usize> = HashMap::new();
    for (event, content_type) in &read {
        assert_eq!(content_type, "application/cloudevents+json");
        assert_eq!(event["specversion"], "1.0", "{event}");
        assert_eq!(event["source"], "/hookstream", "{event}");
        assert!(
            event["id"].is_string() && event["time"].is_string(),
            "{event}"
        );
        assert!(
            ["acme", "globex", "initech"]
                .iter()
                .any(|tenant| event["tenant"] == *tenant),
            "{event}"
        );
        *types
            .entry(event["type"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    for event_type in ALL_OPS {
        assert!(
            types.contains_key(event_type),
            "{event_type} on the topic: {types:?}"
        );
    }
    // Nothing told is about the operator endpoint itself (its failed requests are its own).
    assert!(
        read.iter()
            .all(|(e, _)| e["subject"] != acme_ops_id && e["data"]["endpoint_id"] != acme_ops_id)
    );

    // Each change was told once, and acme's operators got nothing of globex's.
    let taken = |event_type: &str| of_type(&acme_ops, event_type);
    let subjects = |events: &[Value]| {
        let mut subjects: Vec<String> = events
            .iter()
            .map(|e| {
                e["data"]["endpoint_id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        subjects.sort();
        subjects
    };
    let sorted = |ids: &[&str]| {
        let mut ids: Vec<String> = ids.iter().map(|id| (*id).to_owned()).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        subjects(&taken("hookstream.endpoint.disabled")),
        sorted(&[&failing_id, &gone_id])
    );
    assert_eq!(
        subjects(&taken("hookstream.endpoint.warning")),
        sorted(&[&failing_id, &wobbly_id])
    );
    assert_eq!(
        subjects(&taken("hookstream.endpoint.recovered")),
        sorted(&[&wobbly_id])
    );
    assert_eq!(taken("hookstream.batch.finished").len(), 1);
    let dead = taken("hookstream.delivery.dead_lettered");
    let distinct: std::collections::HashSet<&Value> =
        dead.iter().map(|d| &d["data"]["delivery_id"]).collect();
    assert_eq!(distinct.len(), dead.len(), "each dead letter told once");
    assert!(
        dead.iter().all(|d| {
            ["rule.thing", "wobbly.thing", "gone.thing"]
                .iter()
                .any(|t| d["data"]["event_type"] == *t)
        }),
        "{dead:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_operator_endpoint_raises_no_operational_events_and_the_namespace_is_reserved() {
    let pipeline = pipeline().await;
    let api = &pipeline.api;
    // The operator endpoint fails: warned after two failures in a row, disabled at two.
    let operator = Receiver::start().await;
    operator.respond_with(500, "down");
    let operator_id = api
        .create_endpoint_with(
            "acme",
            &operator.url,
            &ALL_OPS,
            json!({"max_attempts": 1, "health_rules": {"warn_streak": 1, "disable_streak": 2}}),
        )
        .await;
    let failing = Receiver::start().await;
    failing.respond_with(400, "no");
    api.create_endpoint("acme", &failing.url, &["order.created"])
        .await;

    // Two dead letters are told to the operator endpoint, which fails both: its own dead
    // letters and its warning and disabling are not told.
    for n in 0..2 {
        send(&pipeline, "acme", "order.created", n).await;
    }
    operator.wait_for(2, SETTLE).await;
    eventually("the operator endpoint disabled", SETTLE, || async {
        let health = api
            .call("GET", &format!("/v1/endpoints/{operator_id}/health"), None)
            .await;
        (health.body["status"] == "disabled").then_some(())
    })
    .await;
    eventually("its dead letters indexed, not told", SETTLE, || async {
        let metrics = pipeline.metrics_of(Service::Replay).await;
        let not_told = "hookstream_ops_events_total{outcome=\"not_told\",type=\"hookstream.delivery.dead_lettered\"}";
        (sample(&metrics, not_told) == Some(2.0)).then_some(())
    })
    .await;
    let metrics = pipeline.dispatcher_metrics().await;
    let health_changes = |change: &str| {
        sample(
            &metrics,
            &format!("hookstream_endpoint_health_changes_total{{change=\"{change}\"}}"),
        )
    };
    assert_eq!(health_changes("warning"), Some(1.0));
    assert_eq!(health_changes("disabled"), Some(1.0));

    // A third dead letter marks the end of what could have been told before it: the topic
    // (one tenant, one partition, in order) holds the three dead letters of the failing
    // endpoint and nothing about the operator endpoint.
    send(&pipeline, "acme", "order.created", 2).await;
    let read = read_ops_topic(&pipeline.brokers(), "e2e-ops-recursion", |read| {
        read.iter()
            .filter(|(e, _)| e["type"] == "hookstream.delivery.dead_lettered")
            .count()
            >= 3
    })
    .await;
    for (event, _) in &read {
        assert_eq!(
            event["type"], "hookstream.delivery.dead_lettered",
            "{event}"
        );
        assert_ne!(event["data"]["endpoint_id"], json!(operator_id), "{event}");
        assert_ne!(event["subject"], json!(operator_id), "{event}");
    }
    // The disabled operator endpoint keeps the third (it is not lost, and not sent).
    pipeline.wait_for_queued(1, SETTLE).await;
    assert_eq!(operator.received().len(), 2);

    // Tenants cannot publish operational events, nor subscribe to unknown ones.
    let refused = api
        .send_event("acme", "hookstream.endpoint.disabled", json!({}), None)
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(field_of(&refused.body), "type", "{}", refused.body);
    let unknown = api
        .call(
            "POST",
            "/v1/endpoints",
            Some(json!({"tenant": "acme", "url": operator.url, "event_types": ["hookstream.endpoint.deleted"]})),
        )
        .await;
    assert_eq!(unknown.status, 400, "{}", unknown.body);
    assert_eq!(
        field_of(&unknown.body),
        "event_types[0]",
        "{}",
        unknown.body
    );
}

/// The field a problem document names.
fn field_of(problem: &Value) -> &str {
    problem["errors"][0]["field"]
        .as_str()
        .or_else(|| problem["field"].as_str())
        .unwrap_or_default()
}
