//! What operators see: every service's `/metrics` passes `promtool check metrics` and exports
//! what the Grafana dashboards and the alert rules query, queue depth is read from the broker for
//! every consumer group, one delivery retried twice is one connected OpenTelemetry trace, and a
//! service's log filter changes while it runs.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use hookstream_e2e::{
    ExportedSpan, OtlpReceiver, Pipeline, Receiver, Scripted, Service, eventually,
};

const SETTLE: Duration = Duration::from_secs(60);

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Sends one event to tenant `acme`'s endpoints and waits for its deliveries to settle.
async fn send_and_settle(pipeline: &Pipeline) -> Vec<Value> {
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

/// Runs `promtool check metrics` on a scrape; panics with its findings if it has any.
fn promtool_check_metrics(service: &str, scrape: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; `make tools` installs it)");
    child
        .stdin
        .take()
        .expect("promtool stdin")
        .write_all(scrape.as_bytes())
        .expect("writing the scrape to promtool");
    let output = child.wait_with_output().expect("promtool ran");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics on {service}'s /metrics:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The metric families a scrape declares (`# TYPE name kind`).
fn families(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The `hookstream_*` metric names in a query, with histogram suffixes taken off.
fn metrics_in(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("hookstream_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let name = &tail[..end];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(name);
        names.push(base.to_owned());
        rest = &tail[end..];
    }
    names
}

/// Every `expr` (and templating query) in a dashboard.
fn dashboard_queries(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                match (key.as_str(), inner) {
                    ("expr" | "definition", Value::String(query)) => found.push(query.clone()),
                    _ => dashboard_queries(inner, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, found)),
        _ => {}
    }
}

/// Every query of the dashboards in deploy/grafana and of the rules in deploy/prometheus, by
/// the file it is in.
fn deployed_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    let grafana = repository().join("deploy/grafana");
    let mut dashboards = 0;
    for entry in std::fs::read_dir(&grafana).expect("deploy/grafana") {
        let path = entry.expect("a dashboard file").path();
        if path.extension().is_some_and(|e| e == "json") {
            dashboards += 1;
            let text = std::fs::read_to_string(&path).expect("a dashboard");
            let dashboard: Value = serde_json::from_str(&text).expect("dashboard JSON");
            let mut found = Vec::new();
            dashboard_queries(&dashboard, &mut found);
            assert!(!found.is_empty(), "{} has no queries", path.display());
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            queries.extend(found.into_iter().map(|q| (name.clone(), q)));
        }
    }
    assert_eq!(
        dashboards, 4,
        "overview, queues, dead letters, endpoint health"
    );
    let rules = std::fs::read_to_string(repository().join("deploy/prometheus/alerts.yml"))
        .expect("deploy/prometheus/alerts.yml");
    let exprs: Vec<String> = rules
        .split("expr:")
        .skip(1)
        .map(|rest| rest.split("for:").next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(exprs.len(), 12, "one expression per alert");
    queries.extend(exprs.into_iter().map(|q| ("alerts.yml".to_owned(), q)));
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_and_cover_every_dashboard_and_alert() {
    let mut pipeline = Pipeline::start(&[
        ("HOOKSTREAM_LAG_INTERVAL", "200ms"),
        ("HOOKSTREAM_BREAKER_FAILURES", "2"),
        ("HOOKSTREAM_BREAKER_OPEN_FOR", "200ms"),
        ("HOOKSTREAM_SOURCE_TOPICS", "orders.events:cloudevents"),
    ])
    .await;
    pipeline.start_service(Service::Replay).await;
    // One endpoint fails twice (opening its breaker) and then takes the webhook; the other
    // refuses it for good, which dead-letters it.
    let flapping = Receiver::start().await;
    flapping.script(vec![Scripted::status(503), Scripted::status(503)]);
    let refusing = Receiver::start().await;
    refusing.respond_with(400, "no");
    for receiver in [&flapping, &refusing] {
        pipeline
            .api
            .create_endpoint("acme", &receiver.url, &[])
            .await;
    }
    let settled = send_and_settle(&pipeline).await;
    let mut statuses: Vec<&str> = settled
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    statuses.sort_unstable();
    assert_eq!(statuses, ["dead_lettered", "delivered"]);

    // At INFO, per-event lines are left out: of the five attempts only the one that gave its
    // delivery up is logged, and ingest logs no line for the event it accepted.
    let dead_lettered = settled
        .iter()
        .find(|d| d["status"] == "dead_lettered")
        .and_then(|d| d["id"].as_str())
        .unwrap()
        .to_owned();
    let logged = eventually("the dead letter's log line", SETTLE, || async {
        let log = pipeline.log_of(Service::Dispatcher);
        let recorded: Vec<String> = log
            .lines()
            .filter(|line| line.contains("attempt recorded"))
            .map(str::to_owned)
            .collect();
        (!recorded.is_empty()).then_some(recorded)
    })
    .await;
    assert_eq!(logged.len(), 1, "{logged:#?}");
    assert!(
        logged[0].contains(&dead_lettered) && logged[0].contains("next=dead_lettered"),
        "{logged:#?}"
    );
    assert!(
        !pipeline.log_of(Service::Ingest).contains("event accepted"),
        "ingest logged a per-event line at INFO"
    );

    // Each service, its consumer group, and the topics whose lag it reads from the broker.
    let services = [
        (
            Service::Ingest,
            "ingest",
            "hookstream-ingest-sources",
            vec!["orders.events"],
        ),
        (
            Service::Dispatcher,
            "dispatcher",
            "hookstream-dispatcher",
            vec!["hookstream.deliveries"],
        ),
        (
            Service::RetryTier,
            "retry-tier",
            "hookstream-retry-tier",
            vec![
                "hookstream.retry.300ms",
                "hookstream.retry.600ms",
                "hookstream.retry.1s",
            ],
        ),
        (
            Service::Replay,
            "replay",
            "hookstream-replay",
            vec!["hookstream.dlq"],
        ),
    ];
    let mut exported = BTreeSet::new();
    let mut scrapes = HashMap::new();
    for (service, name, group, topics) in &services {
        // Queue depth is read every 200 ms, so every topic's lag shows up within a few reads;
        // replay indexes the dead letter, and the DLQ's size counts it, on their own time.
        let scrape = eventually(&format!("{name}'s consumer lag"), SETTLE, || async {
            let scrape = pipeline.metrics_of(*service).await;
            let lag_of = |topic: &&str| {
                scrape.lines().any(|line| {
                    line.starts_with(&format!("hookstream_consumer_lag{{group=\"{group}\""))
                        && line.contains(&format!("topic=\"{topic}\""))
                })
            };
            let ready = topics.iter().all(lag_of)
                && (*name != "replay"
                    || (scrape.contains("hookstream_dead_letters_indexed_total 1")
                        && scrape
                            .contains("hookstream_topic_records{topic=\"hookstream.dlq\"} 1")));
            ready.then_some(scrape)
        })
        .await;
        promtool_check_metrics(name, &scrape);
        exported.extend(families(&scrape));
        scrapes.insert(*name, scrape);
    }

    // The required families, each where it belongs.
    for (name, family) in [
        ("ingest", "hookstream_events_ingested_total"),
        ("ingest", "hookstream_http_request_duration_seconds"),
        ("ingest", "hookstream_store_operation_duration_seconds"),
        ("dispatcher", "hookstream_delivery_attempts_total"),
        ("dispatcher", "hookstream_delivery_latency_seconds"),
        ("dispatcher", "hookstream_attempt_duration_seconds"),
        ("dispatcher", "hookstream_deliveries_in_flight"),
        ("dispatcher", "hookstream_retry_tasks_written_total"),
        ("dispatcher", "hookstream_circuit_state"),
        ("dispatcher", "hookstream_sending_paused"),
        ("dispatcher", "hookstream_store_errors_total"),
        ("retry-tier", "hookstream_retry_tasks_released_total"),
        ("retry-tier", "hookstream_retry_tasks_waiting"),
        ("replay", "hookstream_topic_records"),
        ("ingest", "hookstream_log_lines_dropped_total"),
        ("dispatcher", "hookstream_log_lines_dropped_total"),
        ("retry-tier", "hookstream_log_lines_dropped_total"),
        ("replay", "hookstream_log_lines_dropped_total"),
    ] {
        assert!(
            families(&scrapes[name]).contains(family),
            "{name} does not export {family}"
        );
    }
    assert!(
        scrapes["ingest"]
            .contains("hookstream_events_ingested_total{source=\"http\",tenant=\"acme\"} 1"),
        "{}",
        scrapes["ingest"]
    );
    assert!(
        scrapes["dispatcher"].contains("class=\"HTTP_5XX_RETRYABLE\",endpoint=\"ep_"),
        "attempts carry their endpoint:\n{}",
        scrapes["dispatcher"]
    );

    // Everything the dashboards and alerts query is exported by some service.
    let queries = deployed_queries();
    let missing: Vec<String> = queries
        .iter()
        .flat_map(|(file, query)| {
            metrics_in(query)
                .into_iter()
                .filter(|name| !exported.contains(name))
                .map(move |name| format!("{file}: {name}"))
        })
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\nexported: {exported:?}"
    );
    let queried: usize = queries.iter().map(|(_, q)| metrics_in(q).len()).sum();
    assert!(
        queried > 30,
        "the dashboards and alerts query {queried} metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_retried_twice_is_one_connected_trace() {
    let collector = OtlpReceiver::start().await;
    let pipeline = Pipeline::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("HOOKSTREAM_LOG_FORMAT", "json"),
        // The per-event lines checked below are at DEBUG.
        (
            "HOOKSTREAM_LOG",
            "info,hookstream_dispatcher=debug,hookstream_ingest=debug",
        ),
    ])
    .await;
    let receiver = Receiver::start().await;
    receiver.script(vec![Scripted::status(503), Scripted::status(503)]);
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    let settled = send_and_settle(&pipeline).await;
    assert_eq!(settled[0]["status"], "delivered");
    assert_eq!(settled[0]["attempts"], 3);

    // ingest, attempt, retry hop, attempt, retry hop, attempt: six spans once all are exported.
    let spans: Vec<ExportedSpan> = eventually("the delivery's six spans", SETTLE, || async {
        let spans = collector.spans();
        let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
        (count("ingest") >= 1 && count("attempt") >= 3 && count("retry_hop") >= 2).then_some(spans)
    })
    .await;
    assert_eq!(spans.len(), 6, "{spans:#?}");
    let ingest = spans.iter().find(|s| s.name == "ingest").unwrap();
    assert!(ingest.parent_span_id.is_empty(), "ingest starts the trace");
    assert!(
        spans.iter().all(|s| s.trace_id == ingest.trace_id),
        "one trace: {spans:#?}"
    );
    // Follow the chain from ingest: each span is the only child of the one before.
    let mut chain = vec![ingest.clone()];
    while let Some(next) = spans
        .iter()
        .find(|s| s.parent_span_id == chain.last().unwrap().span_id)
    {
        chain.push(next.clone());
    }
    let names: Vec<&str> = chain.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "ingest",
            "attempt",
            "retry_hop",
            "attempt",
            "retry_hop",
            "attempt"
        ],
        "{spans:#?}"
    );
    // The JSON logs of each state change name the delivery, the endpoint and the trace.
    let delivery_id = settled[0]["id"].as_str().unwrap();
    // Written by the log thread, so possibly a moment after the store has the outcome.
    let recorded: Vec<Value> = eventually("three attempts logged", SETTLE, || async {
        let recorded: Vec<Value> = pipeline
            .log_of(Service::Dispatcher)
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry["message"] == "attempt recorded")
            .collect();
        (recorded.len() >= 3).then_some(recorded)
    })
    .await;
    assert_eq!(recorded.len(), 3, "{recorded:#?}");
    for entry in &recorded {
        assert_eq!(entry["delivery_id"], delivery_id, "{entry}");
        assert_eq!(entry["endpoint_id"], settled[0]["endpoint_id"], "{entry}");
        assert_eq!(entry["trace_id"], ingest.trace_id.as_str(), "{entry}");
    }
    let accepted = pipeline
        .log_of(Service::Ingest)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|entry| entry["message"] == "event accepted")
        .expect("ingest logged the event in JSON");
    assert_eq!(accepted["trace_id"], ingest.trace_id.as_str(), "{accepted}");

    let services: Vec<&str> = chain.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        [
            "hookstream-ingest",
            "hookstream-dispatcher",
            "hookstream-retry-tier",
            "hookstream-dispatcher",
            "hookstream-retry-tier",
            "hookstream-dispatcher"
        ]
    );
}

/// Runs promtool in deploy/prometheus; panics with what it printed unless it succeeds.
fn promtool(args: &[&str]) {
    let output = Command::new("promtool")
        .args(args)
        .current_dir(repository().join("deploy/prometheus"))
        .output()
        .expect("promtool (Debian's prometheus package; `make tools` installs it)");
    assert!(
        output.status.success(),
        "promtool {args:?}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn alert_rules_and_the_scrape_config_pass_promtool_and_its_unit_tests() {
    promtool(&["check", "rules", "alerts.yml"]);
    promtool(&["check", "config", "prometheus.yml"]);
    // Each alert fires when it should and stays quiet when it should not.
    promtool(&["test", "rules", "alerts.test.yml"]);
}

/// `GET`/`PUT /log-level` on a service's ops port.
async fn log_level(pipeline: &Pipeline, service: Service, new: Option<&str>) -> (u16, Value) {
    let url = format!("{}/log-level", pipeline.ops_url(service));
    let client = reqwest::Client::new();
    let request = match new {
        Some(filter) => client.put(&url).body(filter.to_owned()),
        None => client.get(&url),
    };
    let answer = request.send().await.expect("the ops port answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.expect("a JSON answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filter_changes_while_the_service_runs() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let id = pipeline
        .api
        .create_endpoint("acme", &receiver.url, &["order.created"])
        .await["id"]
        .as_str()
        .expect("an endpoint id")
        .to_owned();
    // A paused endpoint's tasks are held, each with a DEBUG line.
    let paused = pipeline
        .api
        .call("POST", &format!("/v1/endpoints/{id}/pause"), None)
        .await;
    assert_eq!(paused.status, 200, "{}", paused.body);
    let held = |n: f64| {
        let pipeline = &pipeline;
        async move {
            let metrics = pipeline.dispatcher_metrics().await;
            (hookstream_e2e::sum(&metrics, "hookstream_tasks_held_total", "endpoint_paused")? >= n)
                .then_some(())
        }
    };
    let held_lines = || {
        pipeline
            .log_of(Service::Dispatcher)
            .lines()
            .filter(|line| line.contains("task held"))
            .count()
    };

    assert_eq!(
        log_level(&pipeline, Service::Dispatcher, None).await,
        (200, json!({"filter": "info"}))
    );
    send_event(&pipeline).await;
    eventually("a task held at INFO", SETTLE, || held(1.0)).await;
    assert_eq!(held_lines(), 0, "DEBUG lines are not written at INFO");

    // DEBUG from now on, without a restart.
    assert_eq!(
        log_level(&pipeline, Service::Dispatcher, Some("debug")).await,
        (200, json!({"filter": "debug"}))
    );
    let holds_before = {
        let metrics = pipeline.dispatcher_metrics().await;
        hookstream_e2e::sum(&metrics, "hookstream_tasks_held_total", "endpoint_paused")
            .unwrap_or_default()
    };
    send_event(&pipeline).await;
    eventually("a task held at DEBUG", SETTLE, || held(holds_before + 1.0)).await;
    eventually("its DEBUG line", SETTLE, || async {
        (held_lines() >= 1).then_some(())
    })
    .await;

    // A filter that does not parse changes nothing.
    for bad in ["hookstream=loud", "  "] {
        let (status, body) = log_level(&pipeline, Service::Dispatcher, Some(bad)).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert_eq!(
        log_level(&pipeline, Service::Dispatcher, None).await,
        (200, json!({"filter": "debug"}))
    );
    // Every service has it.
    for service in [Service::Ingest, Service::RetryTier] {
        assert_eq!(log_level(&pipeline, service, None).await.0, 200);
    }
}

async fn send_event(pipeline: &Pipeline) {
    let event = pipeline
        .api
        .send_event("acme", "order.created", json!({"order": 1}), None)
        .await;
    assert_eq!(event.status, 202, "{:?}", event.body);
}
