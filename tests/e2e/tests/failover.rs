//! Failover on a real three-broker Kafka cluster (replication 3, `min.insync.replicas=2`):
//! - a dispatcher killed (SIGKILL) under load: the survivor in its consumer group takes over
//!   its partitions and finishes every delivery, with a bounded number of duplicates;
//! - a broker killed (SIGKILL) under load: no event that ingest acknowledged is lost, and the
//!   pipeline keeps delivering on the two brokers left;
//! - a broker that stops answering (paused: its connections stay open, nothing comes back):
//!   the consuming services still stop in bounded time when asked to.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use tokio::sync::Mutex;

use hookstream_e2e::{
    Broker, KafkaCluster, Pipeline, Receiver, Scripted, Service, eventually, sample,
};

const ENDPOINTS: usize = 8;
const EVENTS: usize = 25;
const SETTLE: Duration = Duration::from_secs(180);

/// Three JVM brokers and a pipeline are most of what two cores can carry: the tests of this
/// file take turns.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The assigned-partitions gauge of a dispatcher, if it has reported one.
fn assigned(metrics: &str) -> Option<i64> {
    sample(metrics, "hookstream_assigned_partitions").map(|n| n as i64)
}

/// A pipeline on the cluster, its topics replicated three times, `min.insync.replicas=2`.
async fn pipeline_on(cluster: &KafkaCluster) -> Pipeline {
    Pipeline::start_on(
        None,
        &cluster.bootstrap_servers(),
        &[
            ("HOOKSTREAM_REPLICATION_FACTOR", "3"),
            ("HOOKSTREAM_MIN_INSYNC_REPLICAS", "2"),
            // The dead dispatcher's claims run out after 20 s instead of a minute.
            ("HOOKSTREAM_CLAIM_LEASE", "20s"),
            // A dead member is noticed after 6 s instead of the default 45 s.
            (
                "HOOKSTREAM_KAFKA_PROPERTIES",
                "session.timeout.ms=6000,heartbeat.interval.ms=500",
            ),
        ],
    )
    .await
}

/// A receiver behind `ENDPOINTS` endpoints, each subscribed to everything.
async fn receiver_with_endpoints(pipeline: &Pipeline) -> Receiver {
    let receiver = Receiver::start().await;
    for _ in 0..ENDPOINTS {
        pipeline
            .api
            .create_endpoint("acme", &receiver.url, &[])
            .await;
    }
    receiver
}

/// Sends `count` events and returns their ids; each must be acknowledged (202).
async fn send_events(pipeline: &Pipeline, from: usize, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in from..from + count {
        let event = pipeline
            .api
            .send_event("acme", "order.created", json!({"n": n}), None)
            .await;
        assert_eq!(event.status, 202, "{:?}", event.body);
        ids.push(event.body["id"].as_str().expect("an event id").to_owned());
    }
    ids
}

/// Every delivery of every event settles as delivered, and the receiver was answered 2xx for
/// each (a delivery id is its webhook's `webhook-id`).
async fn assert_all_delivered(pipeline: &Pipeline, receiver: &Receiver, events: &[String]) {
    let mut expected = HashSet::new();
    for event in events {
        let deliveries = pipeline.api.settled_deliveries(event, SETTLE).await;
        assert_eq!(deliveries.len(), ENDPOINTS, "one delivery per endpoint");
        for delivery in deliveries {
            assert_eq!(delivery["status"], "delivered", "{delivery}");
            expected.insert(delivery["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    let received: HashSet<String> = receiver
        .received()
        .iter()
        .filter(|w| (200..300).contains(&w.answered))
        .map(|w| w.header("webhook-id").to_owned())
        .collect();
    let missing: Vec<&String> = expected.difference(&received).collect();
    assert!(missing.is_empty(), "never arrived: {missing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_surviving_dispatcher_takes_over_a_dead_ones_partitions() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let cluster = KafkaCluster::start(3, 3, 2).await;
    let mut pipeline = pipeline_on(&cluster).await;
    pipeline.start_service(Service::SecondDispatcher).await;

    // Both dispatchers own partitions before the load starts.
    eventually("both dispatchers to own partitions", SETTLE, || async {
        let first = assigned(&pipeline.metrics_of(Service::Dispatcher).await)?;
        let second = assigned(&pipeline.metrics_of(Service::SecondDispatcher).await)?;
        (first > 0 && second > 0 && first + second == 4).then_some(())
    })
    .await;

    let receiver = receiver_with_endpoints(&pipeline).await;
    let mut events = send_events(&pipeline, 0, EVENTS / 2).await;
    // Mid-load, once deliveries flow, the first dispatcher dies.
    receiver.wait_for(ENDPOINTS * 3, SETTLE).await;
    pipeline.kill_service(Service::Dispatcher).await;
    events.extend(send_events(&pipeline, EVENTS / 2, EVENTS - EVENTS / 2).await);

    // The survivor takes over all four partitions and everything is delivered.
    eventually("the survivor to own every partition", SETTLE, || async {
        (assigned(&pipeline.metrics_of(Service::SecondDispatcher).await)? == 4).then_some(())
    })
    .await;
    assert_all_delivered(&pipeline, &receiver, &events).await;

    // What the dead dispatcher sent but had not recorded goes out again once its claims run
    // out: per endpoint, at most the request in flight and the successes before it whose
    // records were still being written (a lane runs at most eight ahead of its records, the
    // dispatcher's `unrecorded::PER_REQUEST`). Nothing recorded as delivered is sent again.
    let allowed = (1 + 8) * ENDPOINTS;
    let duplicates = receiver.duplicates();
    assert!(
        duplicates.len() <= allowed,
        "{} duplicate POSTs after the kill (at most {allowed} allowed): {duplicates:?}",
        duplicates.len(),
    );
}

/// The node id leading partition 0 of the deliveries topic.
fn deliveries_leader(brokers: &str) -> i32 {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a metadata client");
    let metadata = client
        .fetch_metadata(Some("hookstream.deliveries"), Duration::from_secs(30))
        .expect("the deliveries topic's metadata");
    metadata.topics()[0].partitions()[0].leader()
}

/// Whether every partition of the deliveries topic has all three replicas in sync again.
fn fully_replicated(brokers: &str) -> bool {
    let client: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create();
    client
        .ok()
        .and_then(|c| {
            c.fetch_metadata(Some("hookstream.deliveries"), Duration::from_secs(10))
                .ok()
        })
        .is_some_and(|m| {
            m.topics()
                .iter()
                .flat_map(|t| t.partitions())
                .all(|p| p.isr().len() == 3)
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_under_load_loses_no_acknowledged_event() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = KafkaCluster::start(3, 3, 2).await;
    let brokers = cluster.bootstrap_servers();
    let pipeline = pipeline_on(&cluster).await;
    let receiver = receiver_with_endpoints(&pipeline).await;

    // A client sends events one after another, the whole time; what ingest acknowledges (202)
    // must be delivered. During the failover ingest may refuse some (503): not acknowledged,
    // so the client keeps them, as a real one would.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let api = pipeline.api.clone();
    let sender = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        let mut refused = 0;
        for n in 0.. {
            if *stopped.borrow() {
                break;
            }
            let answer = api
                .send_event("acme", "order.created", json!({"n": n}), None)
                .await;
            match answer.status {
                202 => acknowledged.push(answer.body["id"].as_str().unwrap_or_default().to_owned()),
                _ => refused += 1,
            }
        }
        (acknowledged, refused)
    });

    receiver.wait_for(ENDPOINTS * 10, SETTLE).await;
    // The leader of a deliveries partition dies: its leadership (and, as one of three
    // controllers, maybe the quorum's) moves to the two left, while events keep coming.
    let leader = deliveries_leader(&brokers);
    let index = usize::try_from(leader - 1).expect("node ids start at 1");
    cluster.kill(index).await;
    let before = receiver.received().len();
    // With two of three replicas left, min.insync.replicas=2 still holds: delivery goes on.
    receiver.wait_for(before + ENDPOINTS * 10, SETTLE).await;
    stop.send(true).expect("the sender is running");
    let (acknowledged, refused) = sender.await.expect("the sender");
    assert!(
        acknowledged.len() >= 20,
        "ingest kept acknowledging through the failover ({} acknowledged, {refused} refused)",
        acknowledged.len()
    );
    assert_all_delivered(&pipeline, &receiver, &acknowledged).await;

    // The node comes back on its data, catches up and is in sync again; the pipeline goes on.
    cluster.restart(index).await;
    eventually(
        "every deliveries replica to be in sync again",
        SETTLE,
        || async { fully_replicated(&brokers).then_some(()) },
    )
    .await;
    let after = send_events(&pipeline, 0, 5).await;
    assert_all_delivered(&pipeline, &receiver, &[acknowledged, after].concat()).await;
}

/// Sends `signal` (STOP, CONT) to a process.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_stop_in_bounded_time_while_the_broker_does_not_answer() {
    let _turn = ONE_CLUSTER_AT_A_TIME.lock().await;
    // Offsets are committed only at the stop, so each service has some to commit then.
    let mut pipeline = Pipeline::start(&[(
        "HOOKSTREAM_KAFKA_PROPERTIES",
        "auto.commit.interval.ms=600000",
    )])
    .await;
    let receiver = Receiver::start().await;
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    // The first attempt fails, so the retry tier forwards the task back: the dispatcher and
    // the retry tier have each finished a record.
    receiver.script(vec![Scripted::status(503)]);
    let sent = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(sent.status, 202, "{}", sent.body);
    let id = sent.body["id"].as_str().expect("an event id").to_owned();
    let settled = pipeline.api.settled_deliveries(&id, SETTLE).await;
    assert_eq!(settled[0]["status"], "delivered", "{}", settled[0]);

    // The broker stops answering: the final commit waits on a request that never returns
    // (until librdkafka's own 60 s socket timeout). Each service must give up on it and exit,
    // not hang on the commit left behind (`stop_service` allows 30 s).
    let broker = pipeline
        .broker
        .as_ref()
        .and_then(Broker::pid)
        .expect("the broker's pid");
    signal(broker, "STOP");
    for service in [Service::Dispatcher, Service::RetryTier] {
        let log = pipeline.log_path(service).expect("a running service");
        pipeline.stop_service(service).await;
        let log = std::fs::read_to_string(&log).expect("the service's log");
        assert!(
            log.contains("final offset commit and leaving the consumer group timed out"),
            "{service:?} gave up on its final commit: {log}"
        );
    }
    pipeline.stop_service(Service::Ingest).await;
    signal(broker, "CONT");
}
