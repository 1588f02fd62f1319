//! One tenant cannot take ingest's memory or its places (issue 19, item 2): endpoints per
//! tenant are bounded, so are the bytes of webhooks one request may make (payload × endpoints),
//! and the requests of one tenant in progress at once.

use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_is_held_to_its_endpoints_and_its_fan_out() {
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_MAX_ENDPOINTS_PER_TENANT", "3"),
        ("HOOKSTREAM_MAX_FANOUT_BYTES", "1000"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let api = &pipeline.api;
    for _ in 0..3 {
        api.create_endpoint("acme", &receiver.url, &[]).await;
    }
    let fourth = api
        .call(
            "POST",
            "/v1/endpoints",
            Some(json!({"tenant": "acme", "url": receiver.url})),
        )
        .await;
    assert_eq!(fourth.status, 409, "{:?}", fourth.body);
    assert_eq!(fourth.body["type"], "urn:hookstream:problem:endpoint-limit");
    // Another tenant has its own allowance.
    api.create_endpoint("beta", &receiver.url, &[]).await;

    // 400 bytes to 3 endpoints is 1,200 bytes of webhooks: refused whole, nothing stored.
    let large = json!({"blob": "x".repeat(390)});
    let refused = api
        .send_event("acme", "order.created", large.clone(), None)
        .await;
    assert_eq!(refused.status, 413, "{:?}", refused.body);
    assert_eq!(
        refused.body["type"],
        "urn:hookstream:problem:fan-out-too-large"
    );
    // The same payload to beta's one endpoint is within the limit.
    let one = api.send_event("beta", "order.created", large, None).await;
    assert_eq!(one.status, 202, "{:?}", one.body);

    // In a batch, the event that would pass the limit fails alone.
    let small = json!({"n": "y".repeat(120)});
    let event = |payload: &serde_json::Value| json!({"tenant": "acme", "type": "order.created", "payload": payload});
    let batch = api
        .call(
            "POST",
            "/v1/events:batch",
            Some(json!({"events": [event(&small), event(&small), event(&small)]})),
        )
        .await;
    assert_eq!(batch.status, 200, "{:?}", batch.body);
    let statuses: Vec<_> = batch.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, [202, 202, 413], "{:?}", batch.body);

    // One event of beta and two of acme to three endpoints: seven webhooks, none of the refused.
    let webhooks = receiver.wait_for(7, Duration::from_secs(60)).await;
    assert_eq!(webhooks.len(), 7);
    let large_ones = webhooks
        .iter()
        .filter(|w| w.body.contains(&"x".repeat(390)))
        .count();
    assert_eq!(
        large_ones, 1,
        "only beta's copy of the large payload went out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_with_a_request_in_progress_at_its_limit_is_told_to_come_back() {
    let pipeline = Pipeline::start(&[("HOOKSTREAM_TENANT_MAX_CONCURRENT_REQUESTS", "1")]).await;
    let receiver = Receiver::start().await;
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;

    // The store takes no writes for now: acme's first event waits inside ingest.
    let held = pipeline.hold_an_event_request("acme").await;
    let busy = tokio::time::timeout(
        Duration::from_secs(10),
        pipeline
            .api
            .send_event("acme", "order.created", json!({"n": 2}), None),
    )
    .await
    .expect("turned away at once, not queued");
    assert_eq!(busy.status, 503, "{:?}", busy.body);
    assert_eq!(busy.body["type"], "urn:hookstream:problem:tenant-busy");

    let first = held.release().await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let after = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": 3}), None)
        .await;
    assert_eq!(after.status, 202, "{:?}", after.body);
}
