//! One slow endpoint does not stop the instance (issue 18, item 6): an endpoint that answers
//! after 200 ms with a backlog far over its share keeps at most its per-endpoint limit in the
//! dispatcher (the rest wait on a tier), the other endpoints' deliveries flow meanwhile, and the
//! consumer keeps polling, so the group never drops it.

use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, eventually, sample};

const SETTLE: Duration = Duration::from_secs(120);
const SLOW_EVENTS: usize = 200;
const FAST_ENDPOINTS: usize = 20;
const FAST_EVENTS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoints_backlog_holds_up_no_other_endpoint() {
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_MAX_IN_FLIGHT", "30"),
        ("HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT", "5"),
        // A member that stops polling for 10 s is dropped from the group.
        (
            "HOOKSTREAM_KAFKA_PROPERTIES",
            "max.poll.interval.ms=10000,session.timeout.ms=6000",
        ),
    ])
    .await;
    let slow = Receiver::start().await;
    slow.answer_after(Duration::from_millis(200));
    pipeline
        .api
        .create_endpoint("acme", &slow.url, &["slow.thing"])
        .await;
    let fast = Receiver::start().await;
    for _ in 0..FAST_ENDPOINTS {
        pipeline
            .api
            .create_endpoint("acme", &fast.url, &["fast.thing"])
            .await;
    }

    // The slow endpoint's backlog is read first: it alone would fill the instance several times
    // over, and it is ahead of the others' tasks in what the consumer has fetched.
    for n in 0..SLOW_EVENTS {
        let event = pipeline
            .api
            .send_event("acme", "slow.thing", json!({"n": n}), None)
            .await;
        assert_eq!(event.status, 202);
    }
    slow.wait_for(1, SETTLE).await;
    for n in 0..FAST_EVENTS {
        let event = pipeline
            .api
            .send_event("acme", "fast.thing", json!({"n": n}), None)
            .await;
        assert_eq!(event.status, 202);
    }

    // Every other endpoint is served while the slow one has most of its backlog ahead of it.
    fast.wait_for(FAST_ENDPOINTS * FAST_EVENTS, Duration::from_secs(15))
        .await;
    let slow_so_far = slow.received().len();
    assert!(
        slow_so_far < SLOW_EVENTS / 2,
        "the slow endpoint was not the bottleneck ({slow_so_far} of {SLOW_EVENTS} already sent)"
    );
    let metrics = pipeline.dispatcher_metrics().await;
    assert!(
        sample(&metrics, "hookstream_deliveries_in_flight").unwrap_or(f64::MAX) <= 30.0,
        "the instance limit holds"
    );
    assert!(
        sample(
            &metrics,
            "hookstream_tasks_held_total{reason=\"endpoint_backlog\"}"
        )
        .unwrap_or(0.0)
            > 0.0,
        "the backlog over the endpoint's limit waits on a tier"
    );

    // The slow endpoint gets everything, in time, and the dispatcher kept its partitions all
    // along (one assignment, at start): it never stopped polling.
    eventually(
        "the slow endpoint's backlog delivered",
        Duration::from_secs(300),
        || async { (slow.received().len() >= SLOW_EVENTS).then_some(()) },
    )
    .await;
    let log = pipeline.log_of(hookstream_e2e::Service::Dispatcher);
    assert_eq!(
        log.matches("partitions revoked").count(),
        0,
        "the dispatcher lost its partitions: {}",
        pipeline.log_tail(hookstream_e2e::Service::Dispatcher)
    );
    assert!(slow.duplicates().is_empty() && fast.duplicates().is_empty());
}

/// How many of the pipeline's tasks waited on a tier because their endpoint's lane was full or
/// behind.
async fn held_for_backlog(pipeline: &Pipeline) -> f64 {
    let metrics = pipeline.dispatcher_metrics().await;
    sample(
        &metrics,
        "hookstream_tasks_held_total{reason=\"endpoint_backlog\"}",
    )
    .unwrap_or(0.0)
}

async fn in_flight(pipeline: &Pipeline) -> f64 {
    let metrics = pipeline.dispatcher_metrics().await;
    sample(&metrics, "hookstream_deliveries_in_flight").unwrap_or(f64::MAX)
}

/// A batch of `count` events of `event_type`, numbered from `first`, each with `padding` bytes
/// of payload besides its number.
fn batch(event_type: &str, first: usize, count: usize, padding: usize) -> serde_json::Value {
    let events: Vec<_> = (first..first + count)
        .map(|n| {
            json!({
                "tenant": "acme",
                "type": event_type,
                "payload": {"n": n, "padding": "x".repeat(padding)},
            })
        })
        .collect();
    json!({ "events": events })
}

/// Posts events `first..first + count` of `event_type` in one batch (see [`batch`]).
async fn send_batch(pipeline: &Pipeline, event_type: &str, first: usize, count: usize) {
    let answer = pipeline
        .api
        .call(
            "POST",
            "/v1/events:batch",
            Some(batch(event_type, first, count, 0)),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

/// A receiver behind a new endpoint of the pipeline's tenant, for `event_type`, taking up to
/// `max_in_flight` requests at once in no order.
async fn unordered_endpoint(pipeline: &Pipeline, event_type: &str, max_in_flight: u32) -> Receiver {
    let receiver = Receiver::start().await;
    pipeline
        .api
        .create_endpoint_with(
            "acme",
            &receiver.url,
            &[event_type],
            json!({"ordering": "none", "max_in_flight": max_in_flight}),
        )
        .await;
    receiver
}

/// The `n` of each webhook answered 2xx, in the order they arrived.
fn delivered_in_order(receiver: &Receiver) -> Vec<u64> {
    receiver
        .received()
        .iter()
        .filter(|webhook| (200..300).contains(&webhook.answered))
        .filter_map(|webhook| webhook.json()["data"]["n"].as_u64())
        .collect()
}

/// Each of `0..count` delivered (answered 2xx) exactly once, in whatever order.
fn assert_each_delivered_once(receiver: &Receiver, count: usize) {
    let mut delivered = delivered_in_order(receiver);
    delivered.sort_unstable();
    assert_eq!(delivered, (0..count as u64).collect::<Vec<_>>());
    assert!(receiver.duplicates().is_empty());
}

/// A pipeline with `settings` and one endpoint, subscribed to `event_type`, whose requests
/// outlast any wait of the test (the request timeout is long).
async fn pipeline_and_endpoint(
    settings: &[(&str, &str)],
    event_type: &str,
) -> (Pipeline, Receiver) {
    let mut all = vec![("HOOKSTREAM_REQUEST_TIMEOUT", "120s")];
    all.extend_from_slice(settings);
    let pipeline = Pipeline::start(&all).await;
    let receiver = Receiver::start().await;
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[event_type])
        .await;
    (pipeline, receiver)
}

/// An endpoint that keeps up is not parked on a tier for the depth of its backlog alone: a
/// burst of 300 to an endpoint answering in 20 ms (six seconds of backlog, under the default
/// 30 s lane wait) waits in its lane and goes out in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deep_backlog_of_an_endpoint_that_keeps_up_waits_in_its_lane_in_order() {
    const BACKLOG: usize = 300;
    let (pipeline, receiver) =
        pipeline_and_endpoint(&[("HOOKSTREAM_DELIVERIES_PARTITIONS", "1")], "deep.thing").await;
    receiver.answer_after(Duration::from_millis(20));
    let answer = pipeline
        .api
        .call(
            "POST",
            "/v1/events:batch",
            Some(batch("deep.thing", 0, BACKLOG, 0)),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    // The burst is in the dispatcher at once, far deeper than the endpoint answers.
    eventually("a deep backlog in the dispatcher", SETTLE, || async {
        (in_flight(&pipeline).await >= (BACKLOG / 2) as f64).then_some(())
    })
    .await;

    receiver.wait_for(BACKLOG, SETTLE).await;
    assert_eq!(held_for_backlog(&pipeline).await, 0.0, "no task was parked");
    let expected: Vec<u64> = (0..BACKLOG as u64).collect();
    assert_eq!(
        delivered_in_order(&receiver),
        expected,
        "the backlog went out in the order it was sent"
    );
    assert!(receiver.duplicates().is_empty());
}

/// A burst far deeper than an endpoint's backlog limit, to an endpoint that keeps up, does not
/// go round a retry tier (30 s, and the CPU of writing and reading each task again): its
/// partition stops fetching until the lane has room, and the burst goes out at the endpoint's
/// pace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_to_an_endpoint_that_keeps_up_waits_in_kafka_not_on_a_tier() {
    const BURST: usize = 600;
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "1"),
        ("HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT", "20"),
    ])
    .await;
    let receiver = unordered_endpoint(&pipeline, "busy.thing", 10).await;
    let started = std::time::Instant::now();
    send_batch(&pipeline, "busy.thing", 0, BURST).await;

    receiver.wait_for(BURST, SETTLE).await;
    let metrics = pipeline.dispatcher_metrics().await;
    let holds = sample(&metrics, "hookstream_partition_holds_total").unwrap_or(0.0);
    let parked = held_for_backlog(&pipeline).await;
    println!(
        "{BURST} delivered in {:?}: {holds} holds, {parked} parked",
        started.elapsed()
    );
    assert!(holds >= 1.0, "the partition was never held");
    // Without holds all but the lane's twenty (580) would be parked; a stall of the test
    // machine longer than a hold allows (a quarter second without a delivery) parks some: one
    // CI run on a loaded machine parked 99 (the burst took twice its usual time).
    assert!(
        parked <= (BURST / 4) as f64,
        "{parked} of {BURST} tasks parked on a tier"
    );
    assert_each_delivered_once(&receiver, BURST);
    assert_eq!(
        sample(&metrics, "hookstream_partitions_held"),
        Some(0.0),
        "the hold ended with the burst"
    );
}

/// A hold delays the partition's other endpoints only so long: a busy endpoint's backlog that
/// takes far longer than 10 s to drain is held until its tasks are read 10 s late, then parked,
/// so an endpoint in partition order behind it on the same partition gets its events, in order,
/// without waiting for the whole backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_delays_the_partitions_other_endpoints_only_up_to_its_lag_bound() {
    // Two at once, answered after 5 ms: its lane of ten drains well within a quarter second,
    // so it is held, while the store's work per delivery (in a debug build) keeps it to about
    // 250 a second: some twenty seconds of backlog.
    const BUSY: usize = 5000;
    // Within the steady endpoint's own lane: its tasks past that would be parked once late,
    // as any endpoint's overflow is.
    const STEADY: usize = 10;
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "1"),
        ("HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT", "10"),
    ])
    .await;
    let busy = unordered_endpoint(&pipeline, "busy.thing", 2).await;
    busy.answer_after(Duration::from_millis(5));
    let steady = Receiver::start().await;
    pipeline
        .api
        .create_endpoint("acme", &steady.url, &["steady.thing"])
        .await;
    for first in (0..BUSY).step_by(1000) {
        send_batch(&pipeline, "busy.thing", first, 1000).await;
    }
    let sent = std::time::Instant::now();
    send_batch(&pipeline, "steady.thing", 0, STEADY).await;

    steady.wait_for(STEADY, SETTLE).await;
    let waited = sent.elapsed();
    let busy_by_then = delivered_in_order(&busy).len();
    let metrics = pipeline.dispatcher_metrics().await;
    let holds = sample(&metrics, "hookstream_partition_holds_total").unwrap_or(0.0);
    let parked = held_for_backlog(&pipeline).await;
    println!(
        "steady endpoint served in {waited:?}, with {busy_by_then} of {BUSY} busy tasks \
         delivered: {holds} holds, {parked} parked"
    );
    assert!(holds >= 1.0, "the partition was never held");
    // Its lane drains fast all along: only the lag bound parks its tasks.
    assert!(
        parked >= 1.0,
        "the busy endpoint's late tasks were never parked"
    );
    assert!(
        busy_by_then + 100 < BUSY,
        "the steady endpoint waited for the busy one's whole backlog ({busy_by_then} of {BUSY} \
         delivered first, in {waited:?})"
    );
    let expected: Vec<u64> = (0..STEADY as u64).collect();
    assert_eq!(delivered_in_order(&steady), expected, "in order");
    assert!(steady.duplicates().is_empty());

    busy.wait_for(BUSY, SETTLE).await;
    assert_each_delivered_once(&busy, BUSY);
}

/// Held partitions move and stop like any others: a second dispatcher joining in the middle of
/// two bursts takes a partition (perhaps a held one), and the first is then stopped with its
/// holds; every task is delivered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_partitions_lose_nothing_across_a_rebalance_and_a_stop() {
    const BURST: usize = 400;
    let mut pipeline = Pipeline::start(&[
        ("HOOKSTREAM_DELIVERIES_PARTITIONS", "2"),
        ("HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT", "20"),
    ])
    .await;
    let mut receivers = Vec::new();
    for event_type in ["busy.a", "busy.b"] {
        let receiver = unordered_endpoint(&pipeline, event_type, 2).await;
        // About 100 a second: the bursts last seconds, held all along.
        receiver.answer_after(Duration::from_millis(20));
        send_batch(&pipeline, event_type, 0, BURST).await;
        receivers.push(receiver);
    }
    let delivered = |receivers: &[Receiver]| -> usize {
        receivers.iter().map(|r| delivered_in_order(r).len()).sum()
    };

    eventually("a partition held", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sample(&metrics, "hookstream_partitions_held").unwrap_or(0.0) >= 1.0).then_some(())
    })
    .await;
    pipeline
        .start_service(hookstream_e2e::Service::SecondDispatcher)
        .await;
    eventually("half of the bursts delivered", SETTLE, || async {
        (delivered(&receivers) >= BURST).then_some(())
    })
    .await;
    pipeline
        .stop_service(hookstream_e2e::Service::Dispatcher)
        .await;

    for receiver in &receivers {
        receiver.wait_for(BURST, SETTLE).await;
    }
    eventually("every task delivered", SETTLE, || async {
        (delivered(&receivers) >= 2 * BURST).then_some(())
    })
    .await;
    for receiver in &receivers {
        assert_each_delivered_once(receiver, BURST);
    }
}

/// An endpoint that has stopped answering cannot fill the instance however high the count
/// limit: once a new task would wait longer than `HOOKSTREAM_MAX_LANE_WAIT`, it waits on a tier
/// instead, only the stuck send stays in the instance, and everything is delivered once the
/// endpoint answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_falls_behind_sends_its_new_tasks_to_a_tier() {
    const LATER: usize = 10;
    let (pipeline, receiver) = pipeline_and_endpoint(
        &[
            ("HOOKSTREAM_MAX_LANE_WAIT", "1s"),
            ("HOOKSTREAM_MAX_QUEUED_PER_ENDPOINT", "900"),
        ],
        "stuck.thing",
    )
    .await;
    receiver.hold();
    let first = pipeline
        .api
        .send_event("acme", "stuck.thing", json!({"n": 0}), None)
        .await;
    assert_eq!(first.status, 202);
    receiver.wait_for(1, SETTLE).await;
    // The dispatcher's own clock says the first send has been out longer than the lane wait.
    eventually("the first send out over a second", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        let oldest = sample(&metrics, "hookstream_oldest_send_seconds").unwrap_or(0.0);
        (oldest > 1.5).then_some(())
    })
    .await;

    let answer = pipeline
        .api
        .call(
            "POST",
            "/v1/events:batch",
            Some(batch("stuck.thing", 1, LATER, 0)),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    eventually("the later tasks parked on a tier", SETTLE, || async {
        (held_for_backlog(&pipeline).await >= LATER as f64).then_some(())
    })
    .await;
    // Parked tasks come back from the tier and are parked again while the endpoint is stuck;
    // in the dispatcher stays the stuck send, and at most the parked ones on their way out.
    assert!(in_flight(&pipeline).await <= (1 + LATER) as f64);
    eventually(
        "only the stuck send left in the instance",
        SETTLE,
        || async { (in_flight(&pipeline).await == 1.0).then_some(()) },
    )
    .await;

    receiver.release();
    eventually("everything delivered", SETTLE, || async {
        (delivered_in_order(&receiver).len() > LATER).then_some(())
    })
    .await;
    assert_each_delivered_once(&receiver, 1 + LATER);
}

/// One endpoint's tasks hold at most a tenth of the instance's byte budget: past that, however
/// few they are, they wait on a tier, and all are delivered once the endpoint answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_holds_at_most_a_tenth_of_the_byte_budget() {
    const EVENTS: usize = 20;
    let (pipeline, receiver) = pipeline_and_endpoint(
        &[
            // A lane may hold 4 KB: four of these tasks (the limit is checked before one joins).
            ("HOOKSTREAM_MAX_IN_FLIGHT_BYTES", "40000"),
            ("HOOKSTREAM_MAX_LANE_WAIT", "10m"),
        ],
        "big.thing",
    )
    .await;
    receiver.hold();
    let answer = pipeline
        .api
        .call(
            "POST",
            "/v1/events:batch",
            Some(batch("big.thing", 0, EVENTS, 1000)),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    receiver.wait_for(1, SETTLE).await;
    // Parked tasks leave the instance once Kafka has them; the lane keeps what its bytes allow.
    eventually("the tasks over the lane's bytes parked", SETTLE, || async {
        let parked = held_for_backlog(&pipeline).await >= (EVENTS - 5) as f64;
        (parked && in_flight(&pipeline).await <= 5.0).then_some(())
    })
    .await;

    receiver.release();
    eventually("everything delivered", SETTLE, || async {
        (delivered_in_order(&receiver).len() >= EVENTS).then_some(())
    })
    .await;
    assert_each_delivered_once(&receiver, EVENTS);
}
