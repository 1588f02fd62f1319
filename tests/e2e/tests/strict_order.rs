//! Strict ordering (issue 21, item 1): an endpoint's next event is not sent until the one before
//! it is delivered or dead-lettered, across retries, a rebalance and a dispatcher `kill -9`,
//! checked at the receiver; a dead letter holds the queue until its replay (which goes out
//! first) or goes on, as the endpoint says; the backlog waits in the store, not in memory, and
//! other endpoints are not held up; changing the mode with deliveries in flight loses nothing.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{
    Api, Chaos, Pipeline, Receiver, Scripted, Service, Webhook, eventually, sample, sum,
};

const SETTLE: Duration = Duration::from_secs(240);

/// Creates a strict endpoint of `acme` for `order.created` (dead letters hold); returns its id.
async fn strict_endpoint(api: &Api, url: &str) -> String {
    api.create_endpoint_with(
        "acme",
        url,
        &["order.created"],
        json!({"ordering": "strict"}),
    )
    .await
}

/// The event number a webhook carries (`{"n": …}`).
fn number(webhook: &Webhook) -> u64 {
    webhook.json()["data"]["n"]
        .as_u64()
        .expect("a numbered event")
}

/// Checks strict order as the receiver saw it: the first request carries event 0, and each
/// request after carries the event of the one before (sent again after a failure, or after a
/// crash lost its outcome) or the next event, and the next only once the one before was
/// answered 2xx or is dead-lettered (`dead`: delivery ids). Ends at event `last`.
fn assert_strict_order(arrivals: &[Webhook], dead: &HashSet<String>, last: u64) {
    let mut current: Option<(u64, &str, bool)> = None;
    for (index, webhook) in arrivals.iter().enumerate() {
        let n = number(webhook);
        let id = webhook.header("webhook-id");
        let answered = (200..300).contains(&webhook.answered);
        current = match current {
            None => {
                assert_eq!(n, 0, "the first request carries the first event");
                Some((n, id, answered))
            }
            Some((at, at_id, settled)) if n == at => Some((at, at_id, settled || answered)),
            Some((at, at_id, settled)) if n == at + 1 => {
                assert!(
                    settled || dead.contains(at_id),
                    "request {index}: event {n} sent before event {at} was delivered or dead-lettered"
                );
                Some((n, id, answered))
            }
            Some((at, ..)) => panic!("request {index}: event {n} sent after event {at}"),
        };
    }
    assert_eq!(current.map(|(n, ..)| n), Some(last), "every event was sent");
}

/// The ids of the endpoint's deliveries in `status`.
async fn with_status(pipeline: &Pipeline, endpoint_id: &str, status: &str) -> HashSet<String> {
    pipeline
        .api
        .all_deliveries(&format!("endpoint_id={endpoint_id}&status={status}"))
        .await
        .iter()
        .map(|d| d["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Waits until every one of the endpoint's `count` deliveries is final; returns the
/// dead-lettered ones.
async fn settled(pipeline: &Pipeline, endpoint_id: &str, count: usize) -> HashSet<String> {
    eventually("every delivery to settle", SETTLE, || async {
        let delivered = with_status(pipeline, endpoint_id, "delivered").await;
        let dead = with_status(pipeline, endpoint_id, "dead_lettered").await;
        (delivered.len() + dead.len() == count).then_some(dead)
    })
    .await
}

/// The value of a dispatcher gauge, once it has one.
async fn gauge_reaches(pipeline: &Pipeline, series: &str, value: f64) {
    eventually(&format!("{series} to reach {value}"), SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sample(&metrics, series) == Some(value)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_order_holds_under_random_failures_a_rebalance_and_a_kill_9() {
    const EVENTS: usize = 60;
    const STRICT: usize = 3;
    let mut pipeline = Pipeline::start(&[
        // One partition: the other endpoint's tasks sit among the strict ones'.
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "1"),
        // Hostile answers time out after 1 s; a killed dispatcher's claim runs out after 10 s.
        ("HOOKSTREAM_REQUEST_TIMEOUT", "1s"),
        ("HOOKSTREAM_CLAIM_LEASE", "10s"),
        // A killed member is noticed after 6 s instead of 45 s.
        (
            "HOOKSTREAM_KAFKA_PROPERTIES",
            "session.timeout.ms=6000,heartbeat.interval.ms=500",
        ),
    ])
    .await;
    let api = &pipeline.api;
    let mut strict = Vec::new();
    for index in 0..STRICT {
        let receiver = Receiver::start().await;
        receiver.chaos(Chaos {
            state: 0x5EED_0000 + index as u64 * 7919,
            sender_timeout: Duration::from_secs(1),
            gone_per_mille: 0,
        });
        // Chaos fails four in ten: some deliveries run out of attempts, and the queue goes on.
        let id = api
            .create_endpoint_with(
                "acme",
                &receiver.url,
                &["order.created"],
                json!({"ordering": "strict", "on_dead_letter": "continue"}),
            )
            .await;
        strict.push((receiver, id));
    }
    let other = Receiver::start().await;
    api.create_endpoint_with("acme", &other.url, &["order.created"], json!({}))
        .await;
    api.send_numbered("acme", "order.created", 0..EVENTS).await;

    // A second dispatcher joins; the partition's owner then stops (a graceful handover to the
    // live one, mid-retry for some queues) and comes back; then the owner dies mid-flight
    // (kill -9) and comes back: each move hands the queues over.
    let watched = &strict[0].0;
    watched.wait_for(15, SETTLE).await;
    pipeline.start_service(Service::SecondDispatcher).await;
    let owner = owner_of_the_partition(&pipeline).await;
    pipeline.stop_service(owner).await;
    watched.wait_for(25, SETTLE).await;
    pipeline.start_service(owner).await;
    watched.wait_for(35, SETTLE).await;
    let owner = owner_of_the_partition(&pipeline).await;
    pipeline.kill_service(owner).await;
    watched.wait_for(45, SETTLE).await;
    pipeline.start_service(owner).await;

    other.wait_for(EVENTS, SETTLE).await;
    for (receiver, id) in &strict {
        let dead = settled(&pipeline, id, EVENTS).await;
        assert_strict_order(&receiver.received(), &dead, EVENTS as u64 - 1);
    }
}

/// The dispatcher that owns the deliveries topic's one partition, once exactly one does.
async fn owner_of_the_partition(pipeline: &Pipeline) -> Service {
    eventually("one owner of the partition", SETTLE, || async {
        let mut owners = Vec::new();
        for service in [Service::Dispatcher, Service::SecondDispatcher] {
            if !pipeline.is_running(service) {
                continue;
            }
            let metrics = pipeline.metrics_of(service).await;
            if sample(&metrics, "hookstream_assigned_partitions") == Some(1.0) {
                owners.push(service);
            }
        }
        (owners.len() == 1).then(|| owners[0])
    })
    .await
}

/// Replays one dead letter through the API, once the replay service has indexed it.
async fn resend(pipeline: &Pipeline, delivery_id: &str) {
    eventually("the dead letter to be resent", SETTLE, || async {
        let resend = pipeline
            .api
            .call(
                "POST",
                &format!("/v1/deliveries/{delivery_id}/resend"),
                Some(json!({})),
            )
            .await;
        match resend.status {
            202 => Some(()),
            409 if resend.body["type"] == "urn:hookstream:problem:dead-letter-not-indexed" => None,
            _ => panic!("resend refused: {}", resend.body),
        }
    })
    .await;
}

/// The endpoint's one dead letter not among `known`, once it is recorded.
async fn new_dead_letter(
    pipeline: &Pipeline,
    endpoint_id: &str,
    known: &HashSet<String>,
) -> String {
    eventually("the dead letter to be recorded", SETTLE, || async {
        let dead = with_status(pipeline, endpoint_id, "dead_lettered").await;
        let new: Vec<String> = dead.difference(known).cloned().collect();
        (new.len() == 1).then(|| new[0].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_holds_the_queue_until_its_replay_goes_first_or_the_endpoint_says_continue() {
    let mut pipeline = Pipeline::start(&[
        // One partition: the other endpoint's tasks sit behind the held queue's.
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "1"),
        (
            "HOOKSTREAM_KAFKA_PROPERTIES",
            "session.timeout.ms=6000,heartbeat.interval.ms=500",
        ),
    ])
    .await;
    pipeline.start_service(Service::Replay).await;
    let receiver = Receiver::start().await;
    let other = Receiver::start().await;
    let api = &pipeline.api;
    let id = strict_endpoint(api, &receiver.url).await;
    api.create_endpoint_with("acme", &other.url, &["order.created"], json!({}))
        .await;
    let shown = api.call("GET", &format!("/v1/endpoints/{id}"), None).await;
    assert_eq!(shown.body["on_dead_letter"], "hold", "the default");
    let mut dead = HashSet::new();

    // Event 0 is refused for good: the queue stops at its dead letter.
    receiver.script(vec![Scripted::status(400)]);
    api.send_numbered("acme", "order.created", 0..5).await;
    gauge_reaches(&pipeline, "hookstream_strict_queues_held", 1.0).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing after the dead letter"
    );
    other.wait_for(5, SETTLE).await;
    let first = new_dead_letter(&pipeline, &id, &dead).await;
    dead.insert(first.clone());
    // The four behind it wait in the store: the dispatcher holds none of them.
    assert_eq!(with_status(&pipeline, &id, "pending").await.len(), 4);
    gauge_reaches(&pipeline, "hookstream_deliveries_in_flight", 0.0).await;

    // Its replay goes out first, then the rest in order.
    resend(&pipeline, &first).await;
    receiver.wait_for(6, SETTLE).await;
    let numbers: Vec<u64> = receiver.received().iter().map(number).collect();
    assert_eq!(numbers, [0, 0, 1, 2, 3, 4]);
    gauge_reaches(&pipeline, "hookstream_strict_queues_held", 0.0).await;

    // Held at event 5 again; replayed while the dispatcher is down, the replay still goes
    // first once it is back.
    receiver.script(vec![Scripted::status(400)]);
    pipeline
        .api
        .send_numbered("acme", "order.created", 5..8)
        .await;
    gauge_reaches(&pipeline, "hookstream_strict_queues_held", 1.0).await;
    assert_eq!(
        receiver.received().len(),
        7,
        "nothing after the dead letter"
    );
    let fifth = new_dead_letter(&pipeline, &id, &dead).await;
    dead.insert(fifth.clone());
    pipeline.kill_service(Service::Dispatcher).await;
    resend(&pipeline, &fifth).await;
    pipeline.start_service(Service::Dispatcher).await;
    receiver.wait_for(10, SETTLE).await;

    // Held at event 8; switched to `continue`, the queue goes on without it.
    receiver.script(vec![Scripted::status(400)]);
    let api = &pipeline.api;
    api.send_numbered("acme", "order.created", 8..10).await;
    gauge_reaches(&pipeline, "hookstream_strict_queues_held", 1.0).await;
    assert_eq!(
        receiver.received().len(),
        11,
        "nothing after the dead letter"
    );
    let changed = api
        .call(
            "PATCH",
            &format!("/v1/endpoints/{id}"),
            Some(json!({"on_dead_letter": "continue"})),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    receiver.wait_for(12, SETTLE).await;

    // Under `continue` a dead letter stops nothing.
    receiver.script(vec![Scripted::status(400)]);
    api.send_numbered("acme", "order.created", 10..12).await;
    receiver.wait_for(14, SETTLE).await;
    let numbers: Vec<u64> = receiver.received().iter().map(number).collect();
    assert_eq!(numbers, [0, 0, 1, 2, 3, 4, 5, 5, 6, 7, 8, 9, 10, 11]);
    // Twelve events and two replays: events 0, 5, 8 and 10 dead-lettered, the rest delivered.
    let dead = settled(&pipeline, &id, 14).await;
    assert_eq!(dead.len(), 4);
    other.wait_for(12, SETTLE).await;
    assert!(receiver.duplicates().is_empty() && other.duplicates().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_from_strict_to_partition_to_none_and_back_with_deliveries_in_flight_loses_nothing()
 {
    const EVENTS: usize = 150;
    const MORE: usize = 50;
    let pipeline = Pipeline::start(&[]).await;
    let api = &pipeline.api;
    let receiver = Receiver::start().await;
    receiver.answer_after(Duration::from_millis(10));
    let id = strict_endpoint(api, &receiver.url).await;
    let path = format!("/v1/endpoints/{id}");
    api.send_numbered("acme", "order.created", 0..EVENTS).await;

    receiver.wait_for(30, SETTLE).await;
    let partition = api
        .call("PATCH", &path, Some(json!({"ordering": "partition"})))
        .await;
    assert_eq!(partition.status, 200, "{}", partition.body);
    receiver.wait_for(60, SETTLE).await;
    let unordered = api
        .call("PATCH", &path, Some(json!({"ordering": "none"})))
        .await;
    assert_eq!(unordered.status, 200, "{}", unordered.body);
    receiver.wait_for(90, SETTLE).await;
    let back = api
        .call("PATCH", &path, Some(json!({"ordering": "strict"})))
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    api.delivered_to(&id, EVENTS, SETTLE).await;

    // Events sent after the change go out in order again, each once.
    api.send_numbered("acme", "order.created", EVENTS..EVENTS + MORE)
        .await;
    receiver.wait_for(EVENTS + MORE, SETTLE).await;
    api.delivered_to(&id, EVENTS + MORE, SETTLE).await;
    assert!(receiver.duplicates().is_empty(), "none sent twice");
    let received = receiver.received();
    let ids: HashSet<&str> = received.iter().map(|w| w.header("webhook-id")).collect();
    assert_eq!(ids.len(), EVENTS + MORE, "none lost");
    let later: Vec<u64> = received
        .iter()
        .map(number)
        .filter(|n| *n >= EVENTS as u64)
        .collect();
    let expected: Vec<u64> = (EVENTS as u64..(EVENTS + MORE) as u64).collect();
    assert_eq!(later, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strict_burst_past_the_lane_limits_is_queued_in_order_not_parked() {
    const EVENTS: usize = 120;
    // A lane keeps five tasks: the burst overflows it before the dispatcher has read the new
    // endpoint's settings, and every overflowing task must still keep its place.
    let pipeline = Pipeline::start(&[("HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT", "5")]).await;
    let receiver = Receiver::start().await;
    let id = strict_endpoint(&pipeline.api, &receiver.url).await;
    pipeline
        .api
        .send_numbered("acme", "order.created", 0..EVENTS)
        .await;
    receiver.wait_for(EVENTS, SETTLE).await;
    let numbers: Vec<u64> = receiver.received().iter().map(number).collect();
    let expected: Vec<u64> = (0..EVENTS as u64).collect();
    assert_eq!(numbers, expected);
    pipeline.api.delivered_to(&id, EVENTS, SETTLE).await;
    let metrics = pipeline.dispatcher_metrics().await;
    assert_eq!(
        sum(
            &metrics,
            "hookstream_tasks_held_total",
            "reason=\"endpoint_backlog\""
        ),
        None,
        "none parked on a tier"
    );
    assert!(
        sum(&metrics, "hookstream_strict_tasks_queued_total", "")
            .is_some_and(|n| n >= EVENTS as f64)
    );
}

/// Sends `order.created` events numbered `numbers` to `acme`, each carrying `pad_bytes` of
/// padding, in requests of at most 8 MB.
async fn send_padded(api: &Api, numbers: std::ops::Range<usize>, pad_bytes: usize) {
    let pad = "x".repeat(pad_bytes);
    let per_request = (8 * 1024 * 1024 / pad_bytes).max(1);
    let numbers: Vec<usize> = numbers.collect();
    for chunk in numbers.chunks(per_request) {
        let events: Vec<serde_json::Value> = chunk
            .iter()
            .map(|n| json!({"tenant": "acme", "type": "order.created", "payload": {"n": n, "pad": pad}}))
            .collect();
        let answer = api
            .call("POST", "/v1/events:batch", Some(json!({"events": events})))
            .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let results = answer.body["results"].as_array().expect("results");
        assert!(
            results.iter().all(|r| r["status"] == 202),
            "{}",
            answer.body
        );
    }
}

/// The resident memory of a process, in bytes, from `/proc/<pid>/status`.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status");
    kib * 1024
}

/// Waits until the dispatcher has queued `count` strict tasks in the store.
async fn queued_reaches(pipeline: &Pipeline, count: usize) {
    eventually(&format!("{count} tasks queued"), SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        sum(&metrics, "hookstream_strict_tasks_queued_total", "")
            .is_some_and(|n| n >= count as f64)
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_strict_backlog_waits_in_the_store_and_the_dispatchers_memory_does_not_grow_with_it()
 {
    // Two backlogs of 48 MB each behind a head that is not answered. The first brings the
    // dispatcher's buffers (Kafka's prefetch, the allocator's arenas) to their working size;
    // the second must then cost it next to nothing: the tasks are in the store.
    const PAD: usize = 192 * 1024;
    const EACH: usize = 256;
    const BACKLOG_BYTES: u64 = (PAD * EACH) as u64;
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let id = strict_endpoint(&pipeline.api, &receiver.url).await;
    receiver.hold();

    send_padded(&pipeline.api, 0..EACH, PAD).await;
    queued_reaches(&pipeline, EACH).await;
    let pid = pipeline
        .pid(Service::Dispatcher)
        .expect("the dispatcher runs");
    let after_first = resident_bytes(pid);

    send_padded(&pipeline.api, EACH..2 * EACH, PAD).await;
    queued_reaches(&pipeline, 2 * EACH).await;
    let after_second = resident_bytes(pid);
    let grown = after_second.saturating_sub(after_first);
    assert!(
        grown < BACKLOG_BYTES / 4,
        "the dispatcher grew by {grown} bytes ({after_first} -> {after_second}) for a backlog of {BACKLOG_BYTES}"
    );
    // Still one request out: the backlog waited behind its head.
    let sent: HashSet<u64> = receiver.received().iter().map(number).collect();
    assert_eq!(sent, HashSet::from([0]), "only the head was sent");

    // Nothing of it was lost: once the receiver answers, all of it goes out in order.
    receiver.release();
    pipeline.api.delivered_to(&id, 2 * EACH, SETTLE).await;
    assert_strict_order(&receiver.received(), &HashSet::new(), 2 * EACH as u64 - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_dispatcher_records_the_strict_head_it_has_out_and_sends_nothing_new() {
    let mut pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let id = strict_endpoint(&pipeline.api, &receiver.url).await;
    // The head's request is out, unanswered, with two events queued behind it.
    receiver.hold();
    pipeline
        .api
        .send_numbered("acme", "order.created", 0..3)
        .await;
    receiver.wait_for(1, SETTLE).await;

    pipeline.request_stop(Service::Dispatcher);
    // The drain waits for the head's send, which is no consumed task of its own.
    eventually("the dispatcher to drain its send", SETTLE, || async {
        let log = pipeline.log_of(Service::Dispatcher);
        log.lines()
            .any(|line| line.contains("draining") && line.contains("sending=true"))
            .then_some(())
    })
    .await;
    // Answered while the dispatcher stops: recorded before it exits, not sent again.
    receiver.release();
    pipeline.stop_service(Service::Dispatcher).await;
    assert_eq!(
        receiver.received().len(),
        1,
        "nothing new after the stop began"
    );
    let delivered = with_status(&pipeline, &id, "delivered").await;
    assert_eq!(delivered.len(), 1, "the head's answer was recorded");

    pipeline.start_service(Service::Dispatcher).await;
    pipeline.api.delivered_to(&id, 3, SETTLE).await;
    let numbers: Vec<u64> = receiver.received().iter().map(number).collect();
    assert_eq!(numbers, [0, 1, 2]);
}
