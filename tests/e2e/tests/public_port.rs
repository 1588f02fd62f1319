//! Ingest's public port (issue 19, items 3 and 4). Slow and greedy clients cannot hold it:
//! connections that never finish their headers are closed after the header timeout, a body
//! that trickles ends in `408`, and past the concurrency limit requests are answered `503`
//! with `Retry-After` at once. And it serves the API alone: health and metrics (every
//! tenant's name and volume) are on the ops port. With a management address (issue 24, item 2)
//! it takes events only, and the management API is served on that address alone.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use serde_json::json;

use hookstream_e2e::{Api, Pipeline, Receiver, Service, TOKEN, eventually, free_port};

/// Connections that start a request and never finish its headers.
const SLOW_CLIENTS: usize = 300;

fn address(pipeline: &Pipeline) -> String {
    pipeline
        .api
        .base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

/// Reads until the server closes the connection; returns what it sent.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut sent = Vec::new();
    let mut buf = [0u8; 1024];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => sent.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(within, read_all).await.ok()?;
    Some(String::from_utf8_lossy(&sent).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_headers_are_closed() {
    let pipeline = Pipeline::start(&[("HOOKSTREAM_HTTP_HEADER_TIMEOUT", "2s")]).await;
    let address = address(&pipeline);
    let mut slow = Vec::with_capacity(SLOW_CLIENTS);
    for _ in 0..SLOW_CLIENTS {
        let mut stream = TcpStream::connect(&address).await.expect("a connection");
        stream
            .write_all(b"POST /v1/events HTTP/1.1\r\nHost: ingest\r\nX-Slow: ")
            .await
            .expect("half a request");
        slow.push(stream);
    }
    // Meanwhile the API answers everyone else.
    let answer = pipeline
        .api
        .call("GET", "/v1/endpoints?tenant=acme", None)
        .await;
    assert_eq!(answer.status, 200);

    let started = Instant::now();
    for stream in &mut slow {
        let left = Duration::from_secs(20).saturating_sub(started.elapsed());
        assert!(
            until_closed(stream, left).await.is_some(),
            "a connection without headers was still open after 20 s"
        );
    }
}

/// Starts an authenticated `POST /v1/events` that declares `declared` bytes of body and
/// sends 10 of them.
async fn trickle(address: &str, declared: usize) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.expect("a connection");
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: ingest\r\nContent-Type: application/json\r\n\
         Authorization: Bearer {}\r\nContent-Length: {declared}\r\n\r\n{{\"tenant\":",
        hookstream_e2e::TOKEN
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("the headers and some body");
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_times_out_and_bodies_past_the_budget_are_turned_away() {
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_HTTP_BODY_TIMEOUT", "2s"),
        ("HOOKSTREAM_HTTP_MAX_BODY_BYTES_IN_FLIGHT", "1000"),
    ])
    .await;
    let address = address(&pipeline);
    // 800 of the 1,000 bytes are promised and do not come.
    let mut slow = trickle(&address, 800).await;
    // Once it is being received, a second body of 500 bytes does not fit: turned away at once
    // (until then it is read, and found not to be an event: 400).
    let busy = eventually(
        "a body past the budget to be turned away",
        Duration::from_secs(30),
        || async {
            let answer = pipeline
                .api
                .raw(
                    "POST",
                    "/v1/events",
                    Some(vec![b' '; 500]),
                    Some(hookstream_e2e::TOKEN),
                )
                .await;
            (answer.status == 503).then_some(answer)
        },
    )
    .await;
    assert_eq!(busy.retry_after.as_deref(), Some("1"));
    assert_eq!(busy.body["type"], "urn:hookstream:problem:overloaded");

    let answered = until_closed(&mut slow, Duration::from_secs(20))
        .await
        .expect("the trickling request ended within 20 s");
    assert!(answered.starts_with("HTTP/1.1 408"), "{answered}");
    // Its bytes are free again: the same body is read, and found not to be an event.
    let answer = pipeline
        .api
        .raw(
            "POST",
            "/v1/events",
            Some(vec![b' '; 500]),
            Some(hookstream_e2e::TOKEN),
        )
        .await;
    assert_eq!(answer.status, 400, "{:?}", answer.body);
    // Without a token nothing is read at all.
    let anonymous = reqwest::Client::new()
        .post(format!("{}/v1/events", pipeline.api.base))
        .body(vec![b' '; 500])
        .send()
        .await
        .expect("an answer");
    assert_eq!(anonymous.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_requests_are_answered_503_at_once() {
    let pipeline = Pipeline::start(&[("HOOKSTREAM_HTTP_MAX_CONCURRENT_REQUESTS", "1")]).await;
    let receiver = Receiver::start().await;
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    // The store takes no writes for now: the first event waits inside ingest.
    let held = pipeline.hold_an_event_request("acme").await;
    // A trickling body holds no place: it is still being received.
    let _slow = trickle(&address(&pipeline), 100).await;
    let busy = tokio::time::timeout(
        Duration::from_secs(10),
        pipeline.api.call("GET", "/v1/endpoints?tenant=acme", None),
    )
    .await
    .expect("turned away at once, not queued");
    assert_eq!(busy.status, 503, "{:?}", busy.body);
    assert_eq!(busy.body["type"], "urn:hookstream:problem:overloaded");

    let first = held.release().await;
    assert_eq!(first.status, 202, "{:?}", first.body);
    let after = pipeline
        .api
        .call("GET", "/v1/endpoints?tenant=acme", None)
        .await;
    assert_eq!(after.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_are_served_on_the_ops_port_only() {
    let pipeline = Pipeline::start(&[]).await;
    let base = pipeline.api.base.trim_end_matches('/').to_owned();
    for path in ["/metrics", "/healthz", "/readyz"] {
        // Without a token the API asks for one; with the admin token there is no such route.
        let answer = reqwest::get(format!("{base}{path}"))
            .await
            .expect("an answer");
        let status = answer.status().as_u16();
        let body = answer.text().await.unwrap_or_default();
        assert_eq!(status, 401, "{path} on the API port: {body}");
        assert!(
            !body.contains("hookstream_"),
            "{path} on the API port: {body}"
        );
        let answer = pipeline.api.call("GET", path, None).await;
        assert_eq!(
            answer.status, 404,
            "{path} on the API port: {:?}",
            answer.body
        );
    }
    assert_eq!(pipeline.health_of(Service::Ingest).await.0, 200);
    let (status, ready) = pipeline.readiness_of(Service::Ingest).await;
    assert_eq!(status, 200, "{ready}");
    assert!(
        pipeline
            .metrics_of(Service::Ingest)
            .await
            .contains("hookstream_http_requests_shed_total"),
        "ingest's metrics are on its ops port"
    );
}

/// The paths a port's OpenAPI document names.
async fn documented_paths(api: &Api) -> Vec<String> {
    let document: serde_json::Value = reqwest::get(format!("{}/v1/openapi.json", api.base))
        .await
        .expect("the document")
        .json()
        .await
        .expect("JSON");
    let mut paths: Vec<String> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .cloned()
        .collect();
    paths.sort();
    paths
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_management_address_the_api_port_takes_events_only() {
    let management_addr = format!("127.0.0.1:{}", free_port());
    let pipeline = Pipeline::start(&[("HOOKSTREAM_MANAGEMENT_ADDR", &management_addr)]).await;
    let intake = &pipeline.api;
    let management = Api::new(format!("http://{management_addr}"), TOKEN);
    let receiver = Receiver::start().await;

    // Endpoints are made on the management port; the public one has no such route.
    let endpoint = json!({"tenant": "acme", "url": receiver.url, "event_types": ["order.created"]});
    let refused = intake.call("POST", "/v1/endpoints", Some(endpoint)).await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    for path in ["/v1/control", "/v1/dead-letters?tenant=acme", "/v1/batches"] {
        let answer = intake.call("GET", path, None).await;
        assert_eq!(
            answer.status, 404,
            "{path} on the public port: {}",
            answer.body
        );
    }
    management
        .create_endpoint("acme", &receiver.url, &["order.created"])
        .await;

    // Events go in on the public port, one by one or in a batch, and not on the management one.
    let sent = intake
        .send_event("acme", "order.created", json!({"n": 0}), None)
        .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    intake.send_numbered("acme", "order.created", 1..3).await;
    let refused = management
        .send_event("acme", "order.created", json!({"n": 9}), None)
        .await;
    assert_eq!(refused.status, 404, "{}", refused.body);
    receiver.wait_for(3, Duration::from_secs(60)).await;
    let event_id = sent.body["id"].as_str().expect("an event id");
    let deliveries = management
        .settled_deliveries(event_id, Duration::from_secs(60))
        .await;
    assert_eq!(deliveries[0]["status"], "delivered");

    // Each port needs the token, and its document describes what it serves.
    let anonymous = intake
        .raw("POST", "/v1/events", Some(b"{}".to_vec()), None)
        .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        documented_paths(intake).await,
        ["/v1/events", "/v1/events:batch"]
    );
    let managed = documented_paths(&management).await;
    assert!(managed.iter().any(|p| p == "/v1/endpoints"), "{managed:?}");
    assert!(
        !managed.iter().any(|p| p.starts_with("/v1/events")),
        "{managed:?}"
    );
}
