//! Crash safety: each service is killed with SIGKILL under load, at a moment chosen by the load
//! itself, and restarted. Every accepted event must still end delivered or dead-lettered, a
//! delivery that had completed before the kill must not be sent again, and once everything has
//! settled the duplicates are counted against what the killed service can cause.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinSet;

use hookstream_e2e::{Api, Pipeline, Receiver, Service, eventually};

const EVENTS: usize = 200;
const SENDERS: usize = 4;
const SETTLE: Duration = Duration::from_secs(120);

/// Posts one event until ingest acknowledges it, through ingest being down: the same
/// idempotency key makes the retries safe. Returns the event id.
async fn post_until_accepted(api: &Api, n: usize) -> String {
    let key = format!("crash-{n}");
    let body = json!({"tenant": "acme", "type": "order.created", "payload": {"n": n}, "idempotency_key": key})
        .to_string()
        .into_bytes();
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if let Some(answer) = api.try_raw("POST", "/v1/events", body.clone()).await
            && (answer.status == 200 || answer.status == 202)
        {
            return answer.body["id"].as_str().expect("an event id").to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event {n} never accepted"
        );
        // A client's retry pause while ingest restarts.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn crash_and_recover(victim: Service) {
    let mut pipeline = Pipeline::start(&[
        // A killed dispatcher's claims run out after 20 s instead of a minute.
        ("HOOKSTREAM_CLAIM_LEASE", "20s"),
        // Lag is read every second, so the test sees when the topics have drained.
        ("HOOKSTREAM_LAG_INTERVAL", "1s"),
    ])
    .await;
    let steady = Receiver::start().await;
    let flapping = Receiver::start().await;
    flapping.fail_every(3);
    pipeline.api.create_endpoint("acme", &steady.url, &[]).await;
    pipeline
        .api
        .create_endpoint("acme", &flapping.url, &[])
        .await;

    // The load: SENDERS clients posting EVENTS events between them.
    let api = Arc::new(pipeline.api.clone());
    let mut senders = JoinSet::new();
    for sender in 0..SENDERS {
        let api = Arc::clone(&api);
        senders.spawn(async move {
            let mut ids = Vec::new();
            for n in (sender..EVENTS).step_by(SENDERS) {
                ids.push(post_until_accepted(&api, n).await);
            }
            ids
        });
    }

    // Kill when the load is well under way: a third of the webhooks have arrived.
    steady.wait_for(EVENTS / 3, SETTLE).await;
    let completed_before = |deliveries: Vec<serde_json::Value>| -> HashSet<String> {
        deliveries
            .into_iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let delivered_before_kill = if victim == Service::Ingest {
        // Ingest serves the API: look before it dies (a subset of what completed before).
        let before = completed_before(pipeline.api.all_deliveries("status=delivered").await);
        pipeline.kill_service(victim).await;
        before
    } else {
        pipeline.kill_service(victim).await;
        completed_before(pipeline.api.all_deliveries("status=delivered").await)
    };
    pipeline.start_service(victim).await;

    let mut accepted = Vec::new();
    while let Some(ids) = senders.join_next().await {
        accepted.extend(ids.expect("a sender task"));
    }
    assert_eq!(accepted.len(), EVENTS);
    let unique: HashSet<&String> = accepted.iter().collect();
    assert_eq!(
        unique.len(),
        EVENTS,
        "an idempotent retry created a second event"
    );

    // Every accepted event ends, for both endpoints.
    let finals = eventually("every delivery to end", SETTLE, || async {
        let all = pipeline.api.all_deliveries("tenant=acme").await;
        let settled = all.len() == 2 * EVENTS
            && all
                .iter()
                .all(|d| matches!(d["status"].as_str(), Some("delivered" | "dead_lettered")));
        settled.then_some(all)
    })
    .await;
    let by_event: HashMap<&str, usize> = finals.iter().fold(HashMap::new(), |mut m, d| {
        *m.entry(d["event_id"].as_str().unwrap()).or_default() += 1;
        m
    });
    for id in &accepted {
        assert_eq!(
            by_event.get(id.as_str()),
            Some(&2),
            "event {id} lost a delivery"
        );
    }

    // Every delivered delivery reached its receiver.
    let received: HashSet<String> = steady
        .received()
        .iter()
        .chain(flapping.received().iter())
        .filter(|w| (200..300).contains(&w.answered))
        .map(|w| w.header("webhook-id").to_owned())
        .collect();
    for d in finals.iter().filter(|d| d["status"] == "delivered") {
        assert!(
            received.contains(d["id"].as_str().unwrap()),
            "{d} was never received"
        );
    }
    // Settled means nothing is left to send: no task waits on the deliveries topic or a
    // retry tier (copies held while a claim ran out included). Only then are duplicates counted.
    pipeline.wait_until_drained(SETTLE).await;
    // A duplicate is a request after one that was answered 2xx.
    let duplicates: Vec<String> = steady
        .duplicates()
        .into_iter()
        .chain(flapping.duplicates())
        .collect();
    let after_completion: Vec<&String> = duplicates
        .iter()
        .filter(|id| delivered_before_kill.contains(*id))
        .collect();
    let dead = finals
        .iter()
        .filter(|d| d["status"] == "dead_lettered")
        .count();
    println!(
        "{victim:?} killed with SIGKILL: {} events accepted; {} deliveries delivered, {dead} \
         dead-lettered; duplicate POSTs seen by the receivers: {} ({} of deliveries that had \
         completed before the kill)",
        accepted.len(),
        finals.len() - dead,
        duplicates.len(),
        after_completion.len()
    );
    assert!(
        after_completion.is_empty(),
        "deliveries completed before the kill were sent again: {after_completion:?}"
    );
    // Only a dispatcher's death can send a webhook twice: what it had sent and not recorded
    // goes out again once its claims run out, at most the request in flight and the successes
    // before it whose records were still being written on each endpoint's lane (a lane runs at
    // most eight ahead of its records, the dispatcher's `unrecorded::PER_REQUEST`; CI once saw
    // three on one lane). A killed ingest or retry tier only makes copies of
    // tasks, and the claims keep every copy of a delivered task from going out. Counted by
    // delivery, not by request: a resend the flapping endpoint fails is retried, and each of
    // those requests comes after the first 2xx too.
    let allowed = if victim == Service::Dispatcher {
        2 * (1 + 8)
    } else {
        0
    };
    let sent_again: HashSet<&String> = duplicates.iter().collect();
    assert!(
        sent_again.len() <= allowed,
        "{} deliveries sent again after killing {victim:?} (at most {allowed}); duplicate \
         POSTs: {duplicates:?}",
        sent_again.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_dispatcher_loses_nothing() {
    crash_and_recover(Service::Dispatcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_retry_tier_loses_nothing() {
    crash_and_recover(Service::RetryTier).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_ingest_loses_nothing() {
    crash_and_recover(Service::Ingest).await;
}
