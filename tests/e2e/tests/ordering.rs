//! Ordering modes (issue 21, item 1): an endpoint in `none` mode takes up to `max_in_flight`
//! requests at once and holds up no other endpoint; a request still out holds its partition's
//! committed offset, so a crash sends it again and nothing delivered after it; changing the mode
//! with deliveries in flight loses none. In `partition` order, first attempts keep the events'
//! order under random failures, a rebalance and a `kill -9`. Set, shown, changed and refused
//! through the API.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{Chaos, Pipeline, Receiver, Service, eventually, sample, sum};

const SETTLE: Duration = Duration::from_secs(120);

/// Creates an endpoint of `acme` for `order.created` with these extra settings; returns its id.
async fn endpoint(pipeline: &Pipeline, url: &str, settings: Value) -> String {
    pipeline
        .api
        .create_endpoint_with("acme", url, &["order.created"], settings)
        .await
}

/// Sends `count` `order.created` events in one batch request.
async fn send(pipeline: &Pipeline, count: usize) {
    pipeline
        .api
        .send_numbered("acme", "order.created", 0..count)
        .await;
}

/// The endpoint's deliveries once `count` are recorded delivered.
async fn delivered(pipeline: &Pipeline, endpoint_id: &str, count: usize) -> Vec<Value> {
    pipeline.api.delivered_to(endpoint_id, count, SETTLE).await
}

/// The distinct `webhook-id`s a receiver got.
fn ids(receiver: &Receiver) -> HashSet<String> {
    receiver
        .received()
        .iter()
        .map(|w| w.header("webhook-id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unordered_endpoint_takes_up_to_max_in_flight_at_once_and_holds_up_no_other() {
    const EVENTS: usize = 20;
    // One partition: the other endpoint's tasks sit among the stuck one's.
    let pipeline = Pipeline::start(&[("HOOKSTREAM_DELIVERIES_PARTITIONS", "1")]).await;
    let unordered = Receiver::start().await;
    let ordered = Receiver::start().await;
    let id = endpoint(
        &pipeline,
        &unordered.url,
        json!({"ordering": "none", "max_in_flight": 4}),
    )
    .await;
    endpoint(&pipeline, &ordered.url, json!({})).await;
    // Nothing is answered: the requests out pile up at the receiver.
    unordered.hold();
    send(&pipeline, EVENTS).await;

    unordered.wait_for(4, SETTLE).await;
    // The other endpoint gets everything while this one has four requests stuck.
    ordered.wait_for(EVENTS, SETTLE).await;
    assert_eq!(
        unordered.received().len(),
        4,
        "no more than max_in_flight requests out at once"
    );

    unordered.release();
    unordered.wait_for(EVENTS, SETTLE).await;
    assert_eq!(unordered.peak_concurrency(), 4);
    assert_eq!(
        ordered.peak_concurrency(),
        1,
        "partition order: one at a time"
    );
    assert!(unordered.duplicates().is_empty());
    assert_eq!(ids(&unordered).len(), EVENTS);
    for delivery in delivered(&pipeline, &id, EVENTS).await {
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_still_out_holds_the_committed_offset_so_a_crash_resends_it_and_nothing_delivered()
 {
    const EVENTS: usize = 30;
    // Room to kill the dispatcher while the stuck request is out; the lease lets the restarted
    // dispatcher send it again soon after.
    let mut pipeline = Pipeline::start(&[
        ("HOOKSTREAM_REQUEST_TIMEOUT", "20s"),
        ("HOOKSTREAM_CLAIM_LEASE", "40s"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let id = endpoint(
        &pipeline,
        &receiver.url,
        json!({"ordering": "none", "max_in_flight": 8}),
    )
    .await;
    receiver.hold_next(1);
    send(&pipeline, EVENTS).await;

    // Every other delivery goes through past the stuck one, and is recorded.
    receiver.wait_for(EVENTS, SETTLE).await;
    let stuck = receiver.received()[0].header("webhook-id").to_owned();
    eventually("the others to be recorded", SETTLE, || async {
        let deliveries = pipeline
            .api
            .all_deliveries(&format!("endpoint_id={id}&status=delivered"))
            .await;
        (deliveries.len() == EVENTS - 1).then_some(())
    })
    .await;

    // Killed with the stuck request out: its offset, and so those after it, were not committed.
    pipeline.kill_service(Service::Dispatcher).await;
    receiver.release();
    pipeline.start_service(Service::Dispatcher).await;

    for delivery in delivered(&pipeline, &id, EVENTS).await {
        assert_eq!(delivery["status"], "delivered", "{delivery}");
    }
    let webhooks = receiver.received();
    let sent_again: Vec<&str> = webhooks
        .iter()
        .map(|w| w.header("webhook-id"))
        .filter(|w| *w == stuck)
        .collect();
    assert!(
        sent_again.len() >= 2,
        "the stuck delivery was sent again after the crash"
    );
    let others = webhooks
        .iter()
        .filter(|w| w.header("webhook-id") != stuck)
        .count();
    assert_eq!(others, EVENTS - 1, "a delivered webhook was sent again");
    // The tasks behind the stuck one were read again and found delivered.
    let metrics = pipeline.dispatcher_metrics().await;
    let skipped = sum(
        &metrics,
        "hookstream_tasks_skipped_total",
        "reason=\"already_final\"",
    );
    assert!(skipped.is_some_and(|n| n >= 1.0), "skipped: {skipped:?}");
}

/// Checks `partition` order as the receiver saw it: each event's first request came after the
/// first request of every event before it (later requests, retries and resends after a crash,
/// may come at any time); every event from 0 to `last` arrived.
fn assert_first_attempts_in_order(arrivals: &[hookstream_e2e::Webhook], last: u64) {
    let mut seen = HashSet::new();
    let mut firsts = Vec::new();
    for webhook in arrivals {
        let n = webhook.json()["data"]["n"]
            .as_u64()
            .expect("a numbered event");
        if seen.insert(n) {
            firsts.push(n);
        }
    }
    let expected: Vec<u64> = (0..=last).collect();
    assert_eq!(firsts, expected, "first attempts out of order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_order_holds_for_first_attempts_under_random_failures_a_rebalance_and_a_kill_9() {
    const FIRST: usize = 60;
    const EVENTS: usize = 100;
    const ENDPOINTS: usize = 2;
    let mut pipeline = Pipeline::start(&[
        // One partition: both endpoints' tasks share it.
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "1"),
        // Hostile answers time out after 1 s. A killed dispatcher's claims run out after 30 s:
        // the lane waits for them about as long as its default wait limit, which a stall that
        // long would pass (and park the tasks behind them, out of order).
        ("HOOKSTREAM_REQUEST_TIMEOUT", "1s"),
        ("HOOKSTREAM_CLAIM_LEASE", "30s"),
        // An endpoint that fails often opens its breaker: closed again after 2 s, not 5 min.
        ("HOOKSTREAM_BREAKER_OPEN_FOR", "2s"),
        // A killed member is noticed after 6 s instead of 45 s.
        (
            "HOOKSTREAM_KAFKA_PROPERTIES",
            "session.timeout.ms=6000,heartbeat.interval.ms=500",
        ),
    ])
    .await;
    let mut receivers = Vec::new();
    for index in 0..ENDPOINTS {
        let receiver = Receiver::start().await;
        receiver.chaos(Chaos {
            state: 0x0DE2_0000 + index as u64 * 104_729,
            sender_timeout: Duration::from_secs(1),
            gone_per_mille: 0,
        });
        let id = endpoint(&pipeline, &receiver.url, json!({})).await;
        receivers.push((receiver, id));
    }
    send(&pipeline, FIRST).await;

    // The partition moves to a second dispatcher or stays, then the first dies mid-flight and
    // comes back: its tasks not yet committed are read again.
    let watched = &receivers[0].0;
    watched.wait_for(15, SETTLE).await;
    pipeline.start_service(Service::SecondDispatcher).await;
    watched.wait_for(30, SETTLE).await;
    // The partition's owner dies with claims out: the in-flight request's, and those its lane
    // took ahead.
    let owner = eventually("one owner of the partition", SETTLE, || async {
        let first = assigned(&pipeline, Service::Dispatcher).await;
        let second = assigned(&pipeline, Service::SecondDispatcher).await;
        match (first, second) {
            (Some(1.0), Some(0.0) | None) => Some(Service::Dispatcher),
            (Some(0.0) | None, Some(1.0)) => Some(Service::SecondDispatcher),
            _ => None,
        }
    })
    .await;
    pipeline.kill_service(owner).await;
    // More events keep coming, two a second, while the partition's next owner waits for the
    // killed one's claims: they join the lane behind the waiting delivery.
    let api = pipeline.api.clone();
    let later = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(500));
        for n in FIRST..EVENTS {
            pace.tick().await;
            api.send_numbered("acme", "order.created", n..n + 1).await;
        }
    });
    watched.wait_for(40, SETTLE).await;
    pipeline.start_service(owner).await;
    later.await.expect("the later events were sent");

    for (receiver, id) in &receivers {
        eventually("every delivery to settle", SETTLE, || async {
            let finished = pipeline
                .api
                .all_deliveries(&format!("endpoint_id={id}"))
                .await
                .iter()
                .filter(|d| d["status"] == "delivered" || d["status"] == "dead_lettered")
                .count();
            (finished == EVENTS).then_some(())
        })
        .await;
        assert_first_attempts_in_order(&receiver.received(), EVENTS as u64 - 1);
    }
    // The next owner found the killed one's claims held, and waited for them in the lane.
    let mut waits = 0.0;
    for service in [Service::Dispatcher, Service::SecondDispatcher] {
        let metrics = pipeline.metrics_of(service).await;
        waits += sample(&metrics, "hookstream_claim_waits_total").unwrap_or(0.0);
    }
    assert!(waits >= 1.0, "no delivery waited for a claim");
}

/// How many partitions a running dispatcher has.
async fn assigned(pipeline: &Pipeline, service: Service) -> Option<f64> {
    let metrics = pipeline.metrics_of(service).await;
    sample(&metrics, "hookstream_assigned_partitions")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_ordering_with_deliveries_in_flight_loses_nothing() {
    const EVENTS: usize = 200;
    // A 200-event backlog at 20 ms a request, one at a time, is 4 s: it stays in the lane.
    let pipeline = Pipeline::start(&[("HOOKSTREAM_MAX_LANE_WAIT", "120s")]).await;
    let receiver = Receiver::start().await;
    receiver.answer_after(Duration::from_millis(20));
    let id = endpoint(
        &pipeline,
        &receiver.url,
        json!({"ordering": "none", "max_in_flight": 8}),
    )
    .await;
    let path = format!("/v1/endpoints/{id}");
    send(&pipeline, EVENTS).await;

    receiver.wait_for(40, SETTLE).await;
    let ordered = pipeline
        .api
        .call("PATCH", &path, Some(json!({"ordering": "partition"})))
        .await;
    assert_eq!(ordered.status, 200, "{}", ordered.body);
    let at_change = receiver.received().len();
    // The requests out when it changed, and those started before the lane read the change
    // (at most max_in_flight each), finish; after them, one at a time.
    receiver.wait_for(at_change + 20, SETTLE).await;
    receiver.reset_peak_concurrency();
    let ordered_from = receiver.received().len();
    receiver.wait_for(ordered_from + 20, SETTLE).await;
    assert_eq!(receiver.peak_concurrency(), 1, "one at a time once ordered");

    let unordered = pipeline
        .api
        .call("PATCH", &path, Some(json!({"ordering": "none"})))
        .await;
    assert_eq!(unordered.status, 200, "{}", unordered.body);
    receiver.wait_for(EVENTS, SETTLE).await;
    assert!(receiver.duplicates().is_empty());
    assert_eq!(ids(&receiver).len(), EVENTS);
    for delivery in delivered(&pipeline, &id, EVENTS).await {
        assert_eq!(delivery["attempts"], 1, "{delivery}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordering_and_max_in_flight_are_set_shown_changed_and_refused_through_the_api() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let api = &pipeline.api;
    let plain = endpoint(&pipeline, &receiver.url, json!({})).await;
    let shown = api
        .call("GET", &format!("/v1/endpoints/{plain}"), None)
        .await;
    assert_eq!(shown.body["ordering"], "partition", "the default");
    assert_eq!(shown.body["max_in_flight"], 10, "the default");
    assert_eq!(shown.body["on_dead_letter"], "hold", "the default");

    let id = endpoint(
        &pipeline,
        &receiver.url,
        json!({"ordering": "none", "max_in_flight": 50}),
    )
    .await;
    let path = format!("/v1/endpoints/{id}");
    let shown = api.call("GET", &path, None).await;
    assert_eq!(
        (&shown.body["ordering"], &shown.body["max_in_flight"]),
        (&json!("none"), &json!(50))
    );
    let changed = api
        .call("PATCH", &path, Some(json!({"max_in_flight": 3})))
        .await;
    assert_eq!(changed.body["max_in_flight"], 3);
    assert_eq!(changed.body["ordering"], "none", "untouched");
    let back = api
        .call(
            "PATCH",
            &path,
            Some(json!({"max_in_flight": null, "rate_limit": {"per_second": 5}})),
        )
        .await;
    assert_eq!(back.body["max_in_flight"], 10, "null: the default");
    assert_eq!(back.body["rate_limit"]["per_second"], 5.0);
    assert_eq!(back.body["ordering"], "none", "kept beside the rate limit");

    for (body, field) in [
        (json!({"max_in_flight": 0}), "max_in_flight"),
        (json!({"max_in_flight": 501}), "max_in_flight"),
        (json!({"max_in_flight": -1}), "max_in_flight"),
        (json!({"max_in_flight": 1e12}), "max_in_flight"),
        (json!({"max_in_flight": "8"}), "max_in_flight"),
        (json!({"ordering": "random"}), "ordering"),
        (json!({"ordering": 1}), "ordering"),
        (json!({"on_dead_letter": "skip"}), "on_dead_letter"),
        (json!({"on_dead_letter": false}), "on_dead_letter"),
    ] {
        let mut create = json!({"tenant": "acme", "url": receiver.url});
        if let (Some(create), Value::Object(extra)) = (create.as_object_mut(), body.clone()) {
            create.extend(extra);
        }
        for (method, path, body) in [
            ("POST", "/v1/endpoints", create),
            ("PATCH", &*path, body.clone()),
        ] {
            let refused = api.call(method, path, Some(body.clone())).await;
            assert_eq!(refused.status, 400, "{method} {body}");
            assert_eq!(refused.body["field"], field, "{method} {body}");
        }
    }
    let after = api.call("GET", &path, None).await;
    assert_eq!(after.body["max_in_flight"], 10, "refusals changed nothing");
    assert_eq!(after.body["ordering"], "none", "refusals changed nothing");
    let strict = api
        .call(
            "PATCH",
            &path,
            Some(json!({"ordering": "strict", "on_dead_letter": "continue"})),
        )
        .await;
    assert_eq!(
        (&strict.body["ordering"], &strict.body["on_dead_letter"]),
        (&json!("strict"), &json!("continue"))
    );
    let default = api
        .call(
            "PATCH",
            &path,
            Some(json!({"ordering": null, "on_dead_letter": null})),
        )
        .await;
    assert_eq!(default.body["ordering"], "partition", "null: the default");
    assert_eq!(default.body["on_dead_letter"], "hold", "null: the default");
}
