//! The fault-injection checker (`make chaos`; a short run is part of `make test`).
//!
//! On a real three-broker cluster (replication 3, `min.insync.replicas=2`) it publishes events
//! with known numbers over HTTP and from a CloudEvents source topic to endpoints whose answer
//! is random per request (2xx, 5xx, 429 with a sane and an absurd `Retry-After`, slow answers,
//! answers after the sender gave up, `410 Gone`), while a scheduler kills (SIGKILL) and restarts
//! ingest, the dispatcher, the retry tier, replay and one broker at a time, and adds and removes
//! a second dispatcher to force rebalances. Then it lets the system settle and checks, from the
//! receivers' own logs and the API:
//! - every event reached every endpoint, or is a dead letter there with its reason;
//! - no webhook was sent after its delivery's first recorded 2xx, and no attempt was recorded
//!   after a final one;
//! - nothing is stuck (the topics drain) and nothing was quarantined.
//!
//! It prints a table of what it did and found, and fails on any violation. `CHAOS_MINUTES` sets
//! how long faults are injected (default 2); `CHAOS_SEED` the random choices.
//! Per-endpoint order is not checked: the endpoints keep the default `partition` ordering, which
//! orders first attempts only (retries reorder by design). Under random failures, a rebalance
//! and a kill -9, `ordering.rs` checks that order of first attempts and `strict_order.rs`
//! strict order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use hookstream_e2e::{Api, Chaos, KafkaCluster, Pipeline, Receiver, Service, eventually};

const ENDPOINTS: usize = 4;
/// The endpoint that may answer `410 Gone`.
const GONE: usize = 0;
const SETTLE: Duration = Duration::from_secs(300);
const SOURCE_TOPIC: &str = "chaos-events";
/// Ingest, dispatcher, second dispatcher (kill or add), second dispatcher (remove or add),
/// retry tier, replay, a broker.
const FAULT_KINDS: u64 = 7;

/// A small pseudo-random generator for the scheduler (the receivers have their own).
struct Dice(u64);

impl Dice {
    fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % sides
    }
}

/// What the scheduler did, by kind.
#[derive(Default)]
struct Faults(HashMap<&'static str, usize>);

impl Faults {
    fn note(&mut self, kind: &'static str) {
        *self.0.entry(kind).or_default() += 1;
    }

    fn total(&self) -> usize {
        self.0.values().sum()
    }
}

/// Posts an event until ingest acknowledges it (through ingest being down): the same
/// idempotency key makes the retries safe.
async fn post_until_accepted(api: &Api, n: usize) {
    let body = json!({"tenant": "acme", "type": "chaos.event", "payload": {"via": "http", "n": n},
        "idempotency_key": format!("chaos-{n}")})
    .to_string()
    .into_bytes();
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if let Some(answer) = api.try_raw("POST", "/v1/events", body.clone()).await
            && (answer.status == 200 || answer.status == 202)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event {n} never accepted"
        );
        // A client's pause before it tries again.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes one CloudEvent to the source topic, until the brokers acknowledge it.
async fn produce_until_acknowledged(producer: &FutureProducer, n: usize) {
    let id = format!("chaos-source-{n}");
    let headers = [
        ("ce_specversion", "1.0"),
        ("ce_id", id.as_str()),
        ("ce_source", "/chaos"),
        ("ce_type", "chaos.event"),
        ("ce_tenant", "acme"),
        ("content-type", "application/json"),
    ]
    .iter()
    .fold(OwnedHeaders::new(), |h, (key, value)| {
        h.insert(Header {
            key,
            value: Some(*value),
        })
    });
    let value = json!({"via": "kafka", "n": n}).to_string();
    let record = FutureRecord::to(SOURCE_TOPIC)
        .key("chaos")
        .payload(&value)
        .headers(headers);
    producer
        .send(record, Duration::from_secs(120))
        .await
        .expect("the brokers acknowledge a source record");
}

/// Which event a payload is: how it came in, and its number.
fn number_of(payload: &Value) -> (String, u64) {
    (
        payload["via"].as_str().unwrap_or_default().to_owned(),
        payload["n"].as_u64().unwrap_or(u64::MAX),
    )
}

fn at(text: &str) -> SystemTime {
    OffsetDateTime::parse(text, &Rfc3339)
        .map(SystemTime::from)
        .unwrap_or_else(|e| panic!("`{text}` is not a time: {e}"))
}

/// Records on the quarantine topic (every partition's end minus its start).
fn quarantined(brokers: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a metadata client");
    let metadata = consumer
        .fetch_metadata(Some("hookstream.quarantine"), Duration::from_secs(30))
        .expect("the quarantine's metadata");
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks("hookstream.quarantine", p.id(), Duration::from_secs(30))
                .expect("watermarks");
            high - low
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos() {
    let minutes: f64 = std::env::var("CHAOS_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(2.0);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED_CAFE);
    let faulting = Duration::from_secs_f64(minutes * 60.0);

    let mut cluster = KafkaCluster::start(3, 3, 2).await;
    let brokers = cluster.bootstrap_servers();
    let mut pipeline = Pipeline::start_on(
        None,
        &brokers,
        &[
            ("HOOKSTREAM_REPLICATION_FACTOR", "3"),
            ("HOOKSTREAM_MIN_INSYNC_REPLICAS", "2"),
            (
                "HOOKSTREAM_SOURCE_TOPICS",
                &format!("{SOURCE_TOPIC}:cloudevents"),
            ),
            ("HOOKSTREAM_REQUEST_TIMEOUT", "1s"),
            ("HOOKSTREAM_CLAIM_LEASE", "2s"),
            ("HOOKSTREAM_BREAKER_OPEN_FOR", "2s"),
            ("HOOKSTREAM_LAG_INTERVAL", "1s"),
            // A dead member is noticed after 6 s instead of the default 45 s.
            (
                "HOOKSTREAM_KAFKA_PROPERTIES",
                "session.timeout.ms=6000,heartbeat.interval.ms=500",
            ),
        ],
    )
    .await;
    pipeline.start_service(Service::Replay).await;

    let mut receivers = Vec::new();
    for index in 0..ENDPOINTS {
        let receiver = Receiver::start().await;
        receiver.chaos(Chaos {
            state: seed.wrapping_add(index as u64 * 7919) | 1,
            sender_timeout: Duration::from_secs(1),
            // One endpoint may answer 410 Gone (and is then disabled until enabled again).
            gone_per_mille: if index == GONE { 2 } else { 0 },
        });
        let endpoint = pipeline
            .api
            .create_endpoint("acme", &receiver.url, &[])
            .await;
        let id = endpoint["id"].as_str().expect("an endpoint id").to_owned();
        receivers.push((id, receiver));
    }

    // The load: events over HTTP and from the source topic, the whole time faults go on.
    let stop = Arc::new(AtomicBool::new(false));
    let http_sent = Arc::new(AtomicUsize::new(0));
    let source_sent = Arc::new(AtomicUsize::new(0));
    let http = {
        let (api, stop, sent) = (
            pipeline.api.clone(),
            Arc::clone(&stop),
            Arc::clone(&http_sent),
        );
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                post_until_accepted(&api, n).await;
                n += 1;
                sent.store(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let source = {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .create()
            .expect("a source producer");
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&source_sent));
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                produce_until_acknowledged(&producer, n).await;
                n += 1;
                sent.store(n, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };

    // The faults, drawn from a bag that holds each kind once, so every kind comes up in turn.
    let mut dice = Dice(seed | 1);
    let mut faults = Faults::default();
    let mut broker_down: Option<usize> = None;
    let mut bag: Vec<u64> = Vec::new();
    let started = tokio::time::Instant::now();
    while started.elapsed() < faulting {
        // The pause between faults is the schedule itself, not a wait for anything.
        tokio::time::sleep(Duration::from_millis(1500 + dice.roll(3000))).await;
        if bag.is_empty() {
            bag = (0..FAULT_KINDS).collect();
        }
        let kind = bag.swap_remove(dice.roll(bag.len() as u64) as usize);
        match kind {
            0 => {
                pipeline.kill_service(Service::Ingest).await;
                pipeline.start_service(Service::Ingest).await;
                faults.note("kill -9 ingest");
            }
            1 => {
                pipeline.kill_service(Service::Dispatcher).await;
                pipeline.start_service(Service::Dispatcher).await;
                faults.note("kill -9 dispatcher");
            }
            2 => {
                if pipeline.is_running(Service::SecondDispatcher) {
                    pipeline.kill_service(Service::SecondDispatcher).await;
                    faults.note("kill -9 second dispatcher");
                } else {
                    pipeline.start_service(Service::SecondDispatcher).await;
                    faults.note("add a dispatcher");
                }
            }
            3 => {
                if pipeline.is_running(Service::SecondDispatcher) {
                    pipeline.stop_service(Service::SecondDispatcher).await;
                    faults.note("remove a dispatcher (SIGTERM)");
                } else {
                    pipeline.start_service(Service::SecondDispatcher).await;
                    faults.note("add a dispatcher");
                }
            }
            4 => {
                pipeline.kill_service(Service::RetryTier).await;
                pipeline.start_service(Service::RetryTier).await;
                faults.note("kill -9 retry tier");
            }
            5 => {
                pipeline.kill_service(Service::Replay).await;
                pipeline.start_service(Service::Replay).await;
                faults.note("kill -9 replay");
            }
            _ => match broker_down.take() {
                Some(index) => {
                    cluster.restart(index).await;
                    faults.note("restart the broker");
                }
                None => {
                    let index = dice.roll(3) as usize;
                    cluster.kill(index).await;
                    broker_down = Some(index);
                    faults.note("kill -9 a broker");
                }
            },
        }
    }
    stop.store(true, Ordering::SeqCst);
    if let Some(index) = broker_down {
        cluster.restart(index).await;
    }
    http.await.expect("the HTTP sender");
    source.await.expect("the source producer");
    let http_events = http_sent.load(Ordering::SeqCst);
    let source_events = source_sent.load(Ordering::SeqCst);
    let events = http_events + source_events;

    // Settle: every delivery final, every topic drained.
    // The endpoint that may answer 410 is disabled from then on, and its deliveries of events
    // accepted after that wait, kept, until it is enabled: the receiver is told to stop
    // answering 410, and the endpoint is enabled again (again after any late 410) so they go
    // out. Every endpoint has exactly one delivery per event.
    let (gone_id, gone_receiver) = &receivers[GONE];
    gone_receiver.chaos(Chaos {
        state: seed.wrapping_add(GONE as u64 * 7919) | 1,
        sender_timeout: Duration::from_secs(1),
        gone_per_mille: 0,
    });
    let endpoint_ids: Vec<String> = receivers.iter().map(|(id, _)| id.clone()).collect();
    let deliveries = eventually("every delivery to end", SETTLE, || async {
        let gone = pipeline
            .api
            .call("GET", &format!("/v1/endpoints/{gone_id}"), None)
            .await;
        if gone.body["disabled"] == true {
            let enabled = pipeline
                .api
                .call(
                    "PATCH",
                    &format!("/v1/endpoints/{gone_id}"),
                    Some(json!({"disabled": false})),
                )
                .await;
            assert_eq!(enabled.status, 200, "{}", enabled.body);
        }
        let all = pipeline.api.all_deliveries("tenant=acme").await;
        let count = |id: &str| all.iter().filter(|d| d["endpoint_id"] == id).count();
        let fanned_out = endpoint_ids.iter().all(|id| count(id) == events);
        let done = fanned_out
            && all
                .iter()
                .all(|d| matches!(d["status"].as_str(), Some("delivered" | "dead_lettered")));
        done.then_some(all)
    })
    .await;
    pipeline.wait_until_drained(SETTLE).await;

    // The checks.
    let mut violations: Vec<String> = Vec::new();
    let expected: HashSet<(String, u64)> = (0..http_events as u64)
        .map(|n| ("http".to_owned(), n))
        .chain((0..source_events as u64).map(|n| ("kafka".to_owned(), n)))
        .collect();
    let mut duplicates_before_completion = 0;
    let mut delivered = 0;
    let mut dead_lettered = 0;
    for (index, (endpoint_id, receiver)) in receivers.iter().enumerate() {
        let endpoint_id = endpoint_id.as_str();
        let received = receiver.received();
        let mut requests: HashMap<&str, Vec<&hookstream_e2e::Webhook>> = HashMap::new();
        for webhook in &received {
            requests
                .entry(webhook.header("webhook-id"))
                .or_default()
                .push(webhook);
        }
        let mine: Vec<&Value> = deliveries
            .iter()
            .filter(|d| d["endpoint_id"] == endpoint_id)
            .collect();
        // Every event reached this endpoint (a delivered row, answered 2xx by the receiver), or
        // is a dead letter here: taken from the rows, each row's event from what was sent.
        let mut covered: HashSet<(String, u64)> = HashSet::new();
        for delivery in mine {
            let id = delivery["id"].as_str().expect("a delivery id");
            let attempts = pipeline.api.attempts(id).await;
            let sent = requests.get(id).cloned().unwrap_or_default();
            // No attempt recorded after a final one (one that planned no next attempt).
            let final_at = attempts.iter().position(|a| a["next_attempt_at"].is_null());
            if let Some(at_index) = final_at
                && at_index + 1 < attempts.len()
            {
                violations.push(format!("{id}: attempts recorded after a final one"));
            }
            match delivery["status"].as_str() {
                Some("delivered") => {
                    delivered += 1;
                    let Some(success) =
                        attempts.iter().find(|a| a["class"] == "HTTP_2XX_DELIVERED")
                    else {
                        violations.push(format!("{id}: delivered without a 2xx attempt"));
                        continue;
                    };
                    match sent.iter().find(|w| (200..300).contains(&w.answered)) {
                        Some(answered) => {
                            covered.insert(number_of(&answered.json()["data"]));
                        }
                        None => violations.push(format!(
                            "{id}: delivered, but its receiver never answered 2xx"
                        )),
                    }
                    // The request of the recorded 2xx: the first answered 2xx that arrived
                    // once that attempt had started (times are kept to the millisecond).
                    let started = at(success["started_at"].as_str().unwrap_or_default())
                        - Duration::from_millis(5);
                    let mut in_order = sent.clone();
                    in_order.sort_by_key(|w| w.arrived);
                    let recorded = in_order
                        .iter()
                        .position(|w| w.arrived >= started && (200..300).contains(&w.answered));
                    match recorded {
                        Some(position) if position + 1 < in_order.len() => {
                            violations.push(format!(
                                "{id}: sent {} time(s) after its recorded 2xx",
                                in_order.len() - position - 1
                            ));
                        }
                        Some(_) => {}
                        None => violations.push(format!(
                            "{id}: no request answered 2xx matches its recorded 2xx"
                        )),
                    }
                    let answered_2xx = sent
                        .iter()
                        .filter(|w| (200..300).contains(&w.answered))
                        .count();
                    duplicates_before_completion += answered_2xx.saturating_sub(1);
                }
                _ => {
                    dead_lettered += 1;
                    let letter = eventually("the dead letter to be indexed", SETTLE, || async {
                        let answer = pipeline
                            .api
                            .call("GET", &format!("/v1/dead-letters/{id}"), None)
                            .await;
                        (answer.status == 200).then_some(answer.body)
                    })
                    .await;
                    if letter["reason"].as_str().unwrap_or_default().is_empty() {
                        violations.push(format!("{id}: a dead letter without its reason"));
                    }
                    covered.insert(number_of(&letter["event"]["payload"]));
                    // Nothing goes out once the final attempt is over.
                    if let Some(last) = attempts.last() {
                        let over = at(last["started_at"].as_str().unwrap_or_default())
                            + Duration::from_millis(last["latency_ms"].as_u64().unwrap_or(0) + 5);
                        let after = sent.iter().filter(|w| w.arrived > over).count();
                        if after > 0 {
                            violations.push(format!(
                                "{id}: sent {after} time(s) after it was dead-lettered"
                            ));
                        }
                    }
                }
            }
        }
        // The endpoint that may be disabled is owed the events of its rows; the others, all.
        let owed = if index == GONE {
            let rows = deliveries
                .iter()
                .filter(|d| d["endpoint_id"] == endpoint_id)
                .count();
            if covered.len() != rows {
                violations.push(format!(
                    "endpoint {index}: {rows} deliveries, but {} events accounted for",
                    covered.len()
                ));
            }
            covered.clone()
        } else {
            expected.clone()
        };
        let missing: Vec<_> = owed.difference(&covered).collect();
        if !missing.is_empty() {
            violations.push(format!(
                "endpoint {index}: {} events neither reached it nor are dead letters: {missing:?}",
                missing.len()
            ));
        }
    }
    for kind in [
        "kill -9 ingest",
        "kill -9 dispatcher",
        "kill -9 retry tier",
        "kill -9 replay",
        "kill -9 a broker",
        "add a dispatcher",
    ] {
        if !faults.0.contains_key(kind) {
            violations.push(format!("the run was too short to inject `{kind}`"));
        }
    }
    let in_quarantine = quarantined(&brokers);
    if in_quarantine != 0 {
        violations.push(format!(
            "{in_quarantine} tasks in quarantine; none should be"
        ));
    }

    let mut table = format!(
        "\nchaos ({minutes} min, seed {seed})\n\
         | events (HTTP + source)       | {events} ({http_events} + {source_events}) |\n\
         | deliveries                   | {} |\n\
         | delivered / dead-lettered    | {delivered} / {dead_lettered} |\n\
         | faults injected              | {} |\n",
        deliveries.len(),
        faults.total()
    );
    let mut kinds: Vec<_> = faults.0.iter().collect();
    kinds.sort();
    for (kind, count) in kinds {
        table.push_str(&format!("|   {kind:<27}| {count} |\n"));
    }
    table.push_str(&format!(
        "| duplicates before completion | {duplicates_before_completion} |\n\
         | violations                   | {} |\n",
        violations.len()
    ));
    println!("{table}");
    assert!(
        violations.is_empty(),
        "{table}\nviolations:\n{}",
        violations.join("\n")
    );
}
