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

/// The health once the dispatcher has judged `attempts` of the hour, with its `status`.
async fn health_judged(pipeline: &Pipeline, endpoint: &str, attempts: u64, status: &str) -> Value {
    eventually(
        &format!("{endpoint}'s health at {attempts} attempts, {status}"),
        SETTLE,
        || async {
            let health = health(pipeline, endpoint).await;
            (health["windows"][1]["attempts"] == attempts && health["status"] == status)
                .then_some(health)
        },
    )
    .await
}

/// The status and problem field of a request with these health rules.
async fn refused_rules(pipeline: &Pipeline, method: &str, path: &str, body: Value) -> String {
    let answer = pipeline.api.call(method, path, Some(body)).await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    answer.body["errors"][0]["field"]
        .as_str()
        .or_else(|| answer.body["field"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_rules_warn_then_disable_an_endpoint_whose_deliveries_wait_and_go_out_once_it_is_enabled()
 {
    // Five failures in a row would open the endpoint's circuit breaker for five minutes.
    let pipeline = Pipeline::start(&[("HOOKSTREAM_BREAKER_FAILURES", "100")]).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(503, "down");
    // One attempt each: every event is one failure.
    let rules = json!({"warn_streak": 2, "disable_streak": 4});
    let id = pipeline
        .api
        .create_endpoint_with(
            "acme",
            &receiver.url,
            &["rule.thing"],
            json!({"max_attempts": 1, "health_rules": rules}),
        )
        .await;
    let read = pipeline
        .api
        .call("GET", &format!("/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(read.body["health_rules"], rules);
    assert_eq!(health(&pipeline, &id).await["status"], "healthy");

    // Three failures in a row pass the warning's two.
    for n in 0..3 {
        send(&pipeline, "rule.thing", n).await;
    }
    let warned = health_judged(&pipeline, &id, 3, "warning").await;
    assert!(
        warned["warning"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("3 attempts in a row failed")),
        "{warned}"
    );
    assert!(warned["warning"]["at"].is_string(), "{warned}");
    assert_eq!(warned["disabled_by_rules"], Value::Null);

    // The fourth reaches the disabling streak.
    send(&pipeline, "rule.thing", 3).await;
    let disabled = health_judged(&pipeline, &id, 4, "disabled").await;
    assert!(
        disabled["disabled_by_rules"]["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("4 attempts in a row failed")),
        "{disabled}"
    );
    let read = pipeline
        .api
        .call("GET", &format!("/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(read.body["disabled"], true);

    // Disabled, a new event's delivery is kept, unsent.
    let event = pipeline
        .api
        .send_event("acme", "rule.thing", json!({"n": 4}), None)
        .await;
    assert_eq!(event.body["deliveries"], 1, "{}", event.body);
    let event_id = event.body["id"].as_str().expect("an event id").to_owned();
    pipeline.wait_for_queued(1, SETTLE).await;
    assert_eq!(receiver.received().len(), 4, "nothing sent once disabled");

    // Enabled again while still failing: the kept delivery goes out (and fails), and the run
    // of failures starts over, so this failure does not disable it again.
    let enabled = pipeline
        .api
        .call(
            "PATCH",
            &format!("/v1/endpoints/{id}"),
            Some(json!({"disabled": false})),
        )
        .await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    receiver.wait_for(5, SETTLE).await;
    let started_over = health_judged(&pipeline, &id, 5, "healthy").await;
    assert_eq!(started_over["failure_streak"], 1, "{started_over}");
    assert_eq!(started_over["warning"], Value::Null);
    assert_eq!(started_over["disabled_by_rules"], Value::Null);
    let kept = pipeline.api.settled_deliveries(&event_id, SETTLE).await;
    assert_eq!(kept[0]["status"], "dead_lettered", "one attempt, failed");

    // Fixed: the next event is delivered and the run of failures ends.
    receiver.respond_with(200, "ok");
    send(&pipeline, "rule.thing", 5).await;
    receiver.wait_for(6, SETTLE).await;
    let healthy = health_judged(&pipeline, &id, 6, "healthy").await;
    assert_eq!(healthy["failure_streak"], 0);
    let read = pipeline
        .api
        .call("GET", &format!("/v1/endpoints/{id}"), None)
        .await;
    assert_eq!(read.body["disabled"], false);

    let metrics = pipeline.dispatcher_metrics().await;
    for change in ["warning", "disabled"] {
        let series = format!("hookstream_endpoint_health_changes_total{{change=\"{change}\"}}");
        assert_eq!(sample(&metrics, &series), Some(1.0), "{series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warning_ends_when_the_endpoint_recovers_and_contradictory_rules_are_refused() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    receiver.respond_with(500, "down");
    let id = pipeline
        .api
        .create_endpoint_with(
            "acme",
            &receiver.url,
            &["rule.thing"],
            json!({"max_attempts": 1, "health_rules": {"warn_streak": 1, "disable_after": "never"}}),
        )
        .await;
    for n in 0..2 {
        send(&pipeline, "rule.thing", n).await;
    }
    health_judged(&pipeline, &id, 2, "warning").await;
    receiver.respond_with(200, "ok");
    send(&pipeline, "rule.thing", 2).await;
    let recovered = health_judged(&pipeline, &id, 3, "healthy").await;
    assert_eq!(recovered["warning"], Value::Null);
    let metrics = pipeline.dispatcher_metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "hookstream_endpoint_health_changes_total{change=\"recovered\"}"
        ),
        Some(1.0)
    );

    // Rules that contradict each other, or are out of range, name their field; nothing changes.
    let path = format!("/v1/endpoints/{id}");
    for (rules, field) in [
        (
            json!({"warn_streak": 5, "disable_streak": 5}),
            "health_rules.disable_streak",
        ),
        (json!({"disable_streak": 3}), "health_rules.disable_streak"),
        (json!({"warn_window": "0m"}), "health_rules.warn_window"),
        (json!({"warn_window": "2h"}), "health_rules.warn_window"),
        (json!({"disable_after": "0s"}), "health_rules.disable_after"),
        (
            json!({"warn_success_rate": 0}),
            "health_rules.warn_success_rate",
        ),
        (
            json!({"warn_success_rate": 1.5}),
            "health_rules.warn_success_rate",
        ),
        (
            json!({"warn_min_attempts": 0}),
            "health_rules.warn_min_attempts",
        ),
        (json!({"warn_after": "1m"}), "health_rules.warn_after"),
        (json!("strict"), "health_rules"),
    ] {
        let field_named =
            refused_rules(&pipeline, "PATCH", &path, json!({"health_rules": rules})).await;
        assert_eq!(field_named, field, "{rules}");
    }
    let created = refused_rules(
        &pipeline,
        "POST",
        "/v1/endpoints",
        json!({"tenant": "acme", "url": receiver.url, "health_rules": {"warn_streak": 0}}),
    )
    .await;
    assert_eq!(created, "health_rules.warn_streak");
    let read = pipeline.api.call("GET", &path, None).await;
    assert_eq!(
        read.body["health_rules"],
        json!({"warn_streak": 1, "disable_after": "never"})
    );
    // `null` goes back to the installation's rules.
    let reset = pipeline
        .api
        .call("PATCH", &path, Some(json!({"health_rules": null})))
        .await;
    assert_eq!(reset.body["health_rules"], Value::Null);
}

/// The overview of all tenants at once (issue 23): the attempts every dispatcher reports, summed
/// over the last minutes, and the breakers open now, checked against the store; admin only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_sums_every_tenants_attempts_and_lists_the_open_breakers() {
    // Two failures in a row open an endpoint's breaker.
    let pipeline = Pipeline::start(&[("HOOKSTREAM_BREAKER_FAILURES", "2")]).await;
    let healthy = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.respond_with(500, "down");
    pipeline
        .api
        .create_endpoint_with("acme", &healthy.url, &["ok.thing"], json!({}))
        .await;
    let failing_id = pipeline
        .api
        .create_endpoint_with(
            "globex",
            &failing.url,
            &["bad.thing"],
            json!({"max_attempts": 1}),
        )
        .await;

    // Nothing sent yet: no attempts, no rate; the dispatcher reports all the same.
    let quiet = eventually("the dispatcher's first report", SETTLE, || async {
        let overview = overview(&pipeline).await;
        (overview["dispatchers_reporting"] == 1).then_some(overview)
    })
    .await;
    assert_eq!(quiet["attempts"], 0, "{quiet}");
    assert_eq!(quiet["success_rate"], Value::Null, "{quiet}");
    assert_eq!(
        quiet["minutes"].as_array().map(Vec::len),
        Some(5),
        "{quiet}"
    );
    assert_eq!(quiet["open_breakers"], json!([]), "{quiet}");
    assert_eq!(quiet["sending_paused"], false);

    for n in 0..3 {
        send_as(&pipeline, "acme", "ok.thing", n).await;
    }
    for n in 0..2 {
        send_as(&pipeline, "globex", "bad.thing", n).await;
    }
    healthy.wait_for(3, SETTLE).await;
    let busy = eventually("the overview counting 5 attempts", SETTLE, || async {
        let overview = overview(&pipeline).await;
        (overview["attempts"] == 5
            && overview["open_breakers"]
                .as_array()
                .is_some_and(|b| !b.is_empty()))
        .then_some(overview)
    })
    .await;
    assert_eq!(busy["succeeded"], 3, "{busy}");
    assert_eq!(busy["success_rate"], 0.6, "{busy}");
    let per_minute: u64 = busy["minutes"]
        .as_array()
        .expect("minutes")
        .iter()
        .map(|m| m["attempts"].as_u64().expect("a count"))
        .sum();
    assert_eq!(per_minute, 5, "{busy}");
    let window = busy["window_seconds"].as_f64().expect("seconds");
    assert!((241.0..=300.0).contains(&window), "{busy}");
    assert!((busy["per_second"].as_f64().expect("a rate") - 5.0 / window).abs() < 1e-9);
    let breakers = busy["open_breakers"].as_array().expect("breakers");
    assert_eq!(breakers.len(), 1, "{busy}");
    assert_eq!(breakers[0]["endpoint_id"], failing_id.as_str());
    assert_eq!(breakers[0]["tenant"], "globex");
    assert_eq!(breakers[0]["state"], "open");
    assert!(breakers[0]["open_until"].is_string(), "{busy}");
    assert_eq!(busy["open_breakers_truncated"], false);

    // Every tenant's traffic at once: not for a tenant key.
    let key = pipeline
        .api
        .call(
            "POST",
            "/v1/tenants/acme/api-keys",
            Some(json!({"name": "overview"})),
        )
        .await;
    assert_eq!(key.status, 201, "{}", key.body);
    let refused = pipeline
        .api
        .raw("GET", "/v1/overview", None, key.body["key"].as_str())
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
}

async fn overview(pipeline: &Pipeline) -> Value {
    let answer = pipeline.api.call("GET", "/v1/overview", None).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

async fn send_as(pipeline: &Pipeline, tenant: &str, event_type: &str, n: usize) {
    let answer = pipeline
        .api
        .send_event(tenant, event_type, json!({"n": n}), None)
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
}
