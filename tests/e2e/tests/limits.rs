//! Input that could hurt: a tenant over its event rate gets 429 with Retry-After (and other
//! tenants do not), deeply nested payloads are refused with a problem document.

use serde_json::{Value, json};

use hookstream_e2e::Pipeline;

fn nested(depth: usize) -> Value {
    (0..depth).fold(json!(1), |inner, _| json!([inner]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_is_told_when_to_come_back_and_others_are_not_held() {
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_TENANT_RATE", "1"),
        ("HOOKSTREAM_TENANT_BURST", "2"),
    ])
    .await;
    let api = &pipeline.api;
    // One request: its events are counted one after another within microseconds, so the
    // burst of two goes through and the rest is over the rate.
    let events: Vec<Value> = (0..5)
        .map(|n| json!({"tenant": "acme", "type": "order.created", "payload": {"n": n}}))
        .collect();
    let answer = api
        .call("POST", "/v1/events:batch", Some(json!({"events": events})))
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let statuses: Vec<u64> = answer.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["status"].as_u64().expect("a status"))
        .collect();
    assert_eq!(statuses, vec![202, 202, 429, 429, 429]);
    assert_eq!(
        answer.body["results"][2]["problem"]["type"],
        "urn:hookstream:problem:rate-limited"
    );

    let other = api
        .send_event("globex", "order.created", json!({}), None)
        .await;
    assert_eq!(
        other.status, 202,
        "another tenant is not held: {:?}",
        other.body
    );

    // A single event of the limited tenant: refused with a Retry-After while the rate (one a
    // second) has not refilled. A few tries at most, in case a try lands on a refill.
    let mut refused = None;
    for _ in 0..5 {
        let answer = api
            .send_event("acme", "order.created", json!({}), None)
            .await;
        if answer.status == 429 {
            refused = Some(answer);
            break;
        }
    }
    let refused = refused.expect("a 429 for the tenant over its rate");
    assert_eq!(refused.content_type, "application/problem+json");
    let seconds: u64 = refused
        .retry_after
        .as_deref()
        .and_then(|s| s.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&seconds), "{seconds}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_and_oversize_input_gets_a_problem_never_a_server_error() {
    let pipeline = Pipeline::start(&[]).await;
    let api = &pipeline.api;
    let deep = api
        .send_event("acme", "order.created", nested(33), None)
        .await;
    assert_eq!(deep.status, 400, "{:?}", deep.body);
    assert_eq!(deep.body["field"], "payload");
    assert!(
        api.send_event("acme", "order.created", nested(32), None)
            .await
            .status
            < 300
    );

    // Deeper than the JSON parser goes at all: still a 400, not a crash.
    let very_deep = format!(
        r#"{{"tenant": "acme", "type": "t", "payload": {}1{}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let answer = api
        .raw(
            "POST",
            "/v1/events",
            Some(very_deep.into_bytes()),
            Some(hookstream_e2e::TOKEN),
        )
        .await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);

    let oversize = json!({"tenant": "acme", "type": "t", "payload": "x".repeat(300 * 1024)});
    let answer = api.call("POST", "/v1/events", Some(oversize)).await;
    assert_eq!(answer.status, 413);
    assert_eq!(answer.content_type, "application/problem+json");

    let batch_deep = json!({"events": [{"tenant": "acme", "type": "t", "payload": nested(40)}]});
    let answer = api.call("POST", "/v1/events:batch", Some(batch_deep)).await;
    assert_eq!(answer.body["results"][0]["status"], 400);
    assert_eq!(
        answer.body["results"][0]["problem"]["field"],
        "events[0].payload"
    );
}
