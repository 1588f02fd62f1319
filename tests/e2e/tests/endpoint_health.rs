//! Endpoint health (issue 22, item 1): each endpoint's success rate and latency over 5 minutes
//! and an hour, its run of failures, its last success and failure, counted by the dispatcher
//! and shown by `GET /v1/endpoints/{id}/health`, in the endpoint list and as metrics; the run of
//! failures goes on across a dispatcher restart.

use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{Pipeline, Receiver, Service, eventually, sample};

/// The dispatcher writes health every 5 s.
const SETTLE: Duration = Duration::from_secs(60);

async fn health(pipeline: &Pipeline, endpoint: &str) -> Value {
    let answer = pipeline
        .api
        .call("GET", &format!("/v1/endpoints/{endpoint}/health"), None)
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// The health once its hour counts `attempts` (the test takes well under an hour, not always
/// under the 4 to 5 minutes of the short window).
async fn health_with(pipeline: &Pipeline, endpoint: &str, attempts: u64) -> Value {
    eventually(
        &format!("{endpoint}'s health counting {attempts} attempts"),
        SETTLE,
        || async {
            let health = health(pipeline, endpoint).await;
            (health["windows"][1]["attempts"] == attempts).then_some(health)
        },
    )
    .await
}

async fn send(pipeline: &Pipeline, event_type: &str, n: usize) {
    let answer = pipeline
        .api
        .send_event("acme", event_type, json!({"n": n}), None)
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_shows_successes_failures_and_a_run_of_failures_that_survives_a_restart() {
    let mut pipeline = Pipeline::start(&[]).await;
    let healthy = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.respond_with(500, "down");
    let ok_id = pipeline
        .api
        .create_endpoint_with("acme", &healthy.url, &["ok.thing"], json!({}))
        .await;
    // One attempt each: every event is one failure, dead-lettered at once.
    let failing_id = pipeline
        .api
        .create_endpoint_with(
            "acme",
            &failing.url,
            &["bad.thing"],
            json!({"max_attempts": 1}),
        )
        .await;

    // Never sent to: empty windows, no streak, nothing last.
    let empty = health(&pipeline, &ok_id).await;
    assert_eq!(empty["windows"][0]["window"], "5m");
    assert_eq!(empty["windows"][1]["window"], "1h");
    assert_eq!(empty["windows"][0]["attempts"], 0);
    assert_eq!(empty["windows"][0]["success_rate"], Value::Null);
    assert_eq!(empty["failure_streak"], 0);
    assert_eq!(empty["last_success_at"], Value::Null);
    assert_eq!(empty["last_failure"], Value::Null);

    for n in 0..5 {
        send(&pipeline, "ok.thing", n).await;
    }
    for n in 0..3 {
        send(&pipeline, "bad.thing", n).await;
    }
    healthy.wait_for(5, SETTLE).await;

    let ok = health_with(&pipeline, &ok_id, 5).await;
    for window in ok["windows"].as_array().expect("windows") {
        assert_eq!(window["succeeded"], 5, "{window}");
        assert_eq!(window["success_rate"], 1.0, "{window}");
        let p99 = window["latency_ms"]["p99"].as_u64().expect("a p99");
        assert!(p99 <= 10_000, "{window}");
    }
    assert_eq!(ok["failure_streak"], 0);
    assert_eq!(ok["failing_since"], Value::Null);
    assert!(ok["last_success_at"].is_string(), "{ok}");
    assert_eq!(ok["last_failure"], Value::Null);

    let bad = health_with(&pipeline, &failing_id, 3).await;
    assert_eq!(bad["windows"][1]["succeeded"], 0);
    assert_eq!(bad["windows"][1]["success_rate"], 0.0);
    assert_eq!(bad["failure_streak"], 3);
    assert!(bad["failing_since"].is_string(), "{bad}");
    assert_eq!(bad["last_success_at"], Value::Null);
    assert_eq!(bad["last_failure"]["class"], "HTTP_5XX_RETRYABLE");

    // In the list, each endpoint with its own.
    let listed = pipeline
        .api
        .call("GET", "/v1/endpoints?tenant=acme", None)
        .await;
    assert_eq!(listed.status, 200);
    let data = listed.body["data"].as_array().expect("a page").clone();
    let streak_of = |id: &str| {
        data.iter()
            .find(|endpoint| endpoint["id"] == id)
            .map(|endpoint| endpoint["health"]["failure_streak"].clone())
    };
    assert_eq!(streak_of(&ok_id), Some(json!(0)));
    assert_eq!(streak_of(&failing_id), Some(json!(3)));

    // As metrics, within the endpoint label cap (set once the write is done).
    let ratio = format!("hookstream_endpoint_success_ratio{{endpoint=\"{ok_id}\",window=\"1h\"}}");
    let streak = format!("hookstream_endpoint_failure_streak{{endpoint=\"{failing_id}\"}}");
    eventually("the health metrics", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sample(&metrics, &ratio) == Some(1.0) && sample(&metrics, &streak) == Some(3.0))
            .then_some(())
    })
    .await;

    // A new dispatcher goes on from what the last one wrote: the fourth failure makes a run
    // of four, counted in the same windows.
    let failing_since = bad["failing_since"].clone();
    pipeline.stop_service(Service::Dispatcher).await;
    pipeline.start_service(Service::Dispatcher).await;
    send(&pipeline, "bad.thing", 3).await;
    let bad = health_with(&pipeline, &failing_id, 4).await;
    assert_eq!(bad["failure_streak"], 4);
    assert_eq!(bad["failing_since"], failing_since);

    // And a success ends it.
    failing.respond_with(200, "ok");
    send(&pipeline, "bad.thing", 4).await;
    let recovered = health_with(&pipeline, &failing_id, 5).await;
    assert_eq!(recovered["failure_streak"], 0);
    assert_eq!(recovered["failing_since"], Value::Null);
    assert!(recovered["last_success_at"].is_string());
    assert_eq!(recovered["last_failure"]["class"], "HTTP_5XX_RETRYABLE");
    assert_eq!(recovered["windows"][1]["success_rate"], 0.2);
}
