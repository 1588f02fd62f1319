//! Ordering modes (issue 21, item 1): an endpoint in `none` mode takes up to `max_in_flight`
//! requests at once and holds up no other endpoint; a request still out holds its partition's
//! committed offset, so a crash sends it again and nothing delivered after it; changing the mode
//! with deliveries in flight loses none. Set, shown, changed and refused through the API.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{Pipeline, Receiver, Service, eventually, sum};

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
