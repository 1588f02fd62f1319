//! Per-endpoint rate limits (issue 21, item 2): the limit holds over a minute, waiting for it
//! spends no attempt and holds up no other endpoint, and changing it with tasks waiting loses
//! nothing. Set, shown, changed and refused through the API.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use hookstream_e2e::{Pipeline, Receiver, sum};

const SETTLE: Duration = Duration::from_secs(120);

/// Creates an endpoint of `acme` for `event_type` with `rate_limit`; returns its id.
async fn endpoint(pipeline: &Pipeline, url: &str, event_type: &str, rate_limit: Value) -> String {
    let settings = json!({"rate_limit": rate_limit});
    pipeline
        .api
        .create_endpoint_with("acme", url, &[event_type], settings)
        .await
}

/// Sends `count` events of `event_type` in one batch request.
async fn send(pipeline: &Pipeline, event_type: &str, count: usize) {
    pipeline
        .api
        .send_numbered("acme", event_type, 0..count)
        .await;
}

/// The endpoint's `count` deliveries once all are recorded as delivered.
async fn delivered(pipeline: &Pipeline, endpoint_id: &str, count: usize) -> Vec<Value> {
    pipeline.api.delivered_to(endpoint_id, count, SETTLE).await
}

fn seconds_between(first: SystemTime, last: SystemTime) -> f64 {
    last.duration_since(first).unwrap_or_default().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limited_endpoint_gets_its_rate_over_a_minute_and_the_others_are_not_held_up() {
    const RATE: f64 = 5.0;
    const EVENTS: usize = 301;
    // A backlog longer than the lane wait would be parked on a tier and come back in its own
    // time; this test measures the limit alone.
    // One partition: the other endpoint's tasks sit among the limited one's.
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_MAX_LANE_WAIT", "120s"),
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "1"),
    ])
    .await;
    let limited = Receiver::start().await;
    let other = Receiver::start().await;
    let limited_id = endpoint(
        &pipeline,
        &limited.url,
        "order.created",
        json!({"per_second": RATE, "burst": 2}),
    )
    .await;
    endpoint(&pipeline, &other.url, "order.created", Value::Null).await;
    send(&pipeline, "order.created", EVENTS).await;

    // The other endpoint has all of its webhooks while the limited one is a few seconds in.
    let others = other.wait_for(EVENTS, SETTLE).await;
    let so_far = limited.received().len();
    assert!(
        so_far < EVENTS / 4,
        "the other endpoint waited for the limited one ({so_far} of {EVENTS} limited sent)"
    );
    assert_eq!(others.len(), EVENTS);

    // 300 intervals at 5 a second: a minute.
    let webhooks = limited.wait_for(EVENTS, SETTLE).await;
    let mut arrived: Vec<SystemTime> = webhooks.iter().map(|w| w.arrived).collect();
    arrived.sort();
    let span = seconds_between(arrived[0], arrived[EVENTS - 1]);
    let rate = (EVENTS - 1) as f64 / span;
    assert!(
        (RATE * 0.9..=RATE * 1.1).contains(&rate),
        "{rate:.2} a second over {span:.1} s, limit {RATE}"
    );
    // Nor faster over any stretch: with a burst of 2, eleven deliveries take at least the
    // time of nine periods.
    let fastest_ten = arrived
        .windows(11)
        .map(|w| seconds_between(w[0], w[10]))
        .fold(f64::INFINITY, f64::min);
    assert!(
        fastest_ten >= 9.0 / RATE * 0.9,
        "ten intervals in {fastest_ten:.2} s"
    );
    assert!(limited.duplicates().is_empty());

    // Waiting spent no attempt, and the waits show per endpoint.
    for delivery in delivered(&pipeline, &limited_id, EVENTS).await {
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }
    let metrics = pipeline.dispatcher_metrics().await;
    let waits = sum(
        &metrics,
        "hookstream_rate_limit_waits_total",
        &format!("endpoint=\"{limited_id}\""),
    );
    assert!(waits.is_some_and(|n| n >= 1.0), "waits: {waits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifting_a_limit_with_tasks_waiting_loses_nothing() {
    const EVENTS: usize = 30;
    // The 30 s backlog stays in the lane (not parked on a tier) until the limit is lifted.
    let pipeline = Pipeline::start(&[("HOOKSTREAM_MAX_LANE_WAIT", "120s")]).await;
    let receiver = Receiver::start().await;
    let id = endpoint(
        &pipeline,
        &receiver.url,
        "order.created",
        json!({"per_second": 1, "burst": 1}),
    )
    .await;
    send(&pipeline, "order.created", EVENTS).await;
    receiver.wait_for(2, SETTLE).await;

    let lifted = pipeline
        .api
        .call(
            "PATCH",
            &format!("/v1/endpoints/{id}"),
            Some(json!({"rate_limit": null})),
        )
        .await;
    assert_eq!(lifted.status, 200);
    assert_eq!(lifted.body["rate_limit"], Value::Null);
    // At 1 a second the rest would take half a minute more; lifted, they go at once.
    let webhooks = receiver.wait_for(EVENTS, Duration::from_secs(20)).await;
    assert_eq!(
        webhooks.len(),
        EVENTS,
        "all delivered soon after the limit was lifted"
    );
    assert!(receiver.duplicates().is_empty());
    for delivery in delivered(&pipeline, &id, EVENTS).await {
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_is_set_shown_changed_and_refused_through_the_api() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let api = &pipeline.api;
    let id = endpoint(
        &pipeline,
        &receiver.url,
        "order.created",
        json!({"per_second": 2.5}),
    )
    .await;
    let path = format!("/v1/endpoints/{id}");
    let shown = api.call("GET", &path, None).await;
    assert_eq!(
        shown.body["rate_limit"],
        json!({"per_second": 2.5, "burst": 3}),
        "a burst of one second's worth when left out"
    );
    let changed = api
        .call(
            "PATCH",
            &path,
            Some(json!({"rate_limit": {"per_second": 100, "burst": 10}})),
        )
        .await;
    assert_eq!(
        changed.body["rate_limit"],
        json!({"per_second": 100.0, "burst": 10})
    );
    let untouched = api
        .call("PATCH", &path, Some(json!({"max_attempts": 3})))
        .await;
    assert_eq!(untouched.body["rate_limit"]["burst"], 10);
    let listed = api.call("GET", "/v1/endpoints?tenant=acme", None).await;
    assert_eq!(listed.body["data"][0]["rate_limit"]["burst"], 10);

    for (rate_limit, field) in [
        (json!({"per_second": -1}), "rate_limit.per_second"),
        (json!({"per_second": 0}), "rate_limit.per_second"),
        (json!({"per_second": 1e9}), "rate_limit.per_second"),
        (json!({"burst": 4}), "rate_limit.per_second"),
        (json!({"per_second": 1, "burst": 0}), "rate_limit.burst"),
        (json!({"per_second": 1, "burst": 2.5}), "rate_limit.burst"),
        (json!({"per_second": 1, "bursts": 2}), "rate_limit.bursts"),
        (json!("fast"), "rate_limit"),
    ] {
        let create = json!({"tenant": "acme", "url": receiver.url, "rate_limit": rate_limit});
        let patch = json!({"rate_limit": rate_limit});
        for (method, path, body) in [("POST", "/v1/endpoints", create), ("PATCH", &*path, patch)] {
            let refused = api.call(method, path, Some(body)).await;
            assert_eq!(refused.status, 400, "{method} {rate_limit}");
            assert_eq!(refused.body["field"], field, "{method} {rate_limit}");
        }
    }
    let after = api.call("GET", &path, None).await;
    assert_eq!(
        after.body["rate_limit"]["per_second"], 100.0,
        "refusals changed nothing"
    );
    let listed = api.call("GET", "/v1/endpoints?tenant=acme", None).await;
    assert_eq!(listed.body["data"].as_array().map(Vec::len), Some(1));
}
