//! Claims taken ahead: an endpoint's lane in partition order claims the attempts of its queued
//! jobs together and sends them one after another on those claims. They must go out once each,
//! in order, and a dispatcher killed while holding some must not lose their deliveries.

use std::time::Duration;

use hookstream_e2e::{Pipeline, Receiver, Service, eventually, sample};

const SETTLE: Duration = Duration::from_secs(120);
const QUEUED: usize = 40;

/// The numbers (`payload.n`) of the webhooks received, in arrival order.
fn numbers(receiver: &Receiver) -> Vec<u64> {
    receiver
        .received()
        .iter()
        .map(|webhook| {
            webhook.json()["data"]["n"]
                .as_u64()
                .expect("a numbered event")
        })
        .collect()
}

/// Sends event 0, waits until the receiver has it (held or answered), then sends the `QUEUED`
/// events that queue behind it in the endpoint's lane.
async fn send_first_then_queue(pipeline: &Pipeline, receiver: &Receiver) {
    pipeline
        .api
        .send_numbered("acme", "order.created", 0..1)
        .await;
    receiver.wait_for(1, SETTLE).await;
    pipeline
        .api
        .send_numbered("acme", "order.created", 1..QUEUED + 1)
        .await;
}

fn claims_ahead(metrics: &str, outcome: &str) -> f64 {
    sample(
        metrics,
        &format!("hookstream_claims_ahead_total{{outcome=\"{outcome}\"}}"),
    )
    .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_jobs_go_out_on_claims_taken_ahead_once_each_in_order() {
    let pipeline = Pipeline::start(&[]).await;
    let receiver = Receiver::start().await;
    let endpoint = pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    // The first webhook is held, so the ones after it queue in the endpoint's lane.
    receiver.hold_next(1);
    send_first_then_queue(&pipeline, &receiver).await;
    eventually("the lane to have the jobs queued", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sample(&metrics, "hookstream_deliveries_in_flight")? >= (QUEUED + 1) as f64).then_some(())
    })
    .await;
    receiver.release();

    let id = endpoint["id"].as_str().unwrap();
    pipeline.api.delivered_to(id, QUEUED + 1, SETTLE).await;
    let expected: Vec<u64> = (0..=QUEUED as u64).collect();
    assert_eq!(
        numbers(&receiver),
        expected,
        "once each, in partition order"
    );
    let metrics = pipeline.dispatcher_metrics().await;
    // All but the held first one and perhaps the last few went out on a claim taken ahead.
    assert!(
        claims_ahead(&metrics, "used") >= (QUEUED - 8) as f64,
        "{metrics}"
    );
    assert_eq!(claims_ahead(&metrics, "given_back"), 0.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_ahead_of_a_killed_dispatcher_run_out_and_their_deliveries_go_once() {
    let mut pipeline = Pipeline::start(&[
        ("HOOKSTREAM_REQUEST_TIMEOUT", "2s"),
        // Long enough that a lane whose sends take the whole timeout still claims ahead (as
        // many as it sends in a quarter of the lease), and that the claims a killed
        // dispatcher took are still held when its partitions move to the restarted one.
        ("HOOKSTREAM_CLAIM_LEASE", "60s"),
        // Every send here times out until the kill; an open breaker would hold the
        // deliveries for its whole open period after the restart.
        ("HOOKSTREAM_BREAKER_FAILURES", "1000"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let endpoint = pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    // Nothing is answered: the first send times out, the lane claims the next jobs ahead and
    // sends the first of them, which hangs too.
    receiver.hold();
    send_first_then_queue(&pipeline, &receiver).await;
    eventually("a send on a claim taken ahead", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (claims_ahead(&metrics, "used") >= 1.0).then_some(())
    })
    .await;
    // Killed holding the claims of the jobs behind that send, none of them sent.
    pipeline.kill_service(Service::Dispatcher).await;
    // Its requests are gone before the receiver answers, so none counts as heard.
    eventually(
        "the killed dispatcher's requests to close",
        SETTLE,
        || async { (receiver.open_requests() == 0).then_some(()) },
    )
    .await;
    receiver.release();
    pipeline.start_service(Service::Dispatcher).await;

    let id = endpoint["id"].as_str().unwrap();
    pipeline.api.delivered_to(id, QUEUED + 1, SETTLE).await;
    // The restarted dispatcher found the killed one's claims still held, and waited them out
    // in the lane, in order (on the hold tier, the jobs behind would have gone first).
    let metrics = pipeline.dispatcher_metrics().await;
    assert!(
        sample(&metrics, "hookstream_claim_waits_total").unwrap_or(0.0) >= 1.0,
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "hookstream_tasks_held_total{reason=\"claimed_elsewhere\"}"
        ),
        None,
        "{metrics}"
    );
    let duplicates = receiver.duplicates();
    assert!(
        duplicates.is_empty(),
        "sent again after a 2xx: {duplicates:?}"
    );
    let mut delivered = delivered_in_order(&receiver);
    delivered.sort_unstable();
    let expected: Vec<u64> = (0..=QUEUED as u64).collect();
    assert_eq!(delivered, expected, "each delivered once");
    // First attempts in partition order (a retry comes when due, after later ones).
    let mut seen = std::collections::HashSet::new();
    let firsts: Vec<u64> = numbers(&receiver)
        .into_iter()
        .filter(|n| seen.insert(*n))
        .collect();
    assert_eq!(firsts, expected, "first attempts in order");
}

/// Numbers of the webhooks a receiver answered 2xx, in the order they arrived.
fn delivered_in_order(receiver: &Receiver) -> Vec<u64> {
    receiver
        .received()
        .iter()
        .filter(|webhook| (200..300).contains(&webhook.answered))
        .map(|webhook| {
            webhook.json()["data"]["n"]
                .as_u64()
                .expect("a numbered event")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_waits_for_the_claims_taken_ahead_and_the_next_owner_sends_in_order() {
    const ENDPOINTS: usize = 8;
    const EVENTS: usize = 6;
    // The held requests outlast a dispatcher's start and a rebalance without timing out.
    let mut pipeline = Pipeline::start(&[("HOOKSTREAM_REQUEST_TIMEOUT", "60s")]).await;
    // One receiver per endpoint, so each endpoint's order can be read.
    let mut receivers = Vec::new();
    for _ in 0..ENDPOINTS {
        let receiver = Receiver::start().await;
        pipeline
            .api
            .create_endpoint("acme", &receiver.url, &[])
            .await;
        receivers.push(receiver);
    }
    // A first webhook answered at once, so each lane's pace is fast and it claims ahead.
    pipeline
        .api
        .send_numbered("acme", "order.created", 0..1)
        .await;
    for receiver in &receivers {
        receiver.wait_for(1, SETTLE).await;
    }
    // The second webhook is held while the others queue behind it; once it is answered each
    // lane sends the third on a claim taken ahead with those of the ones queued behind it,
    // and that request is held too.
    for receiver in &receivers {
        receiver.hold_next(2);
    }
    pipeline
        .api
        .send_numbered("acme", "order.created", 1..EVENTS)
        .await;
    for receiver in &receivers {
        receiver.wait_for(2, SETTLE).await;
    }
    eventually("the jobs queued behind the held ones", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        let queued = ENDPOINTS * (EVENTS - 1);
        (sample(&metrics, "hookstream_deliveries_in_flight")? >= queued as f64).then_some(())
    })
    .await;
    for receiver in &receivers {
        receiver.release_held();
    }
    for receiver in &receivers {
        receiver.wait_for(3, SETTLE).await;
    }
    let metrics = pipeline.dispatcher_metrics().await;
    assert!(
        claims_ahead(&metrics, "used") >= ENDPOINTS as f64,
        "each lane's held send went out on a claim taken ahead: {metrics}"
    );
    // A second dispatcher joins while the claims are held; only then do the answers come.
    pipeline.start_service(Service::SecondDispatcher).await;
    eventually(
        "the first dispatcher to give up partitions",
        SETTLE,
        || async {
            pipeline
                .log_of(Service::Dispatcher)
                .contains("partitions revoked")
                .then_some(())
        },
    )
    .await;
    for receiver in &receivers {
        receiver.release();
    }

    let expected: Vec<u64> = (0..EVENTS as u64).collect();
    for receiver in &receivers {
        receiver.wait_for(EVENTS, SETTLE).await;
        eventually("every webhook delivered", SETTLE, || async {
            (delivered_in_order(receiver).len() >= EVENTS).then_some(())
        })
        .await;
        assert_eq!(
            delivered_in_order(receiver),
            expected,
            "once each, in partition order, across the rebalance"
        );
    }
    // The revoke gave the claims back before the partitions moved: the new owner found none of
    // their attempts claimed.
    let second = pipeline.metrics_of(Service::SecondDispatcher).await;
    assert_eq!(
        sample(
            &second,
            "hookstream_tasks_held_total{reason=\"claimed_elsewhere\"}"
        )
        .unwrap_or(0.0),
        0.0,
        "{second}"
    );
    assert_eq!(
        sample(&second, "hookstream_claim_waits_total").unwrap_or(0.0),
        0.0,
        "{second}"
    );
    assert!(
        sample(&second, "hookstream_assigned_partitions").is_some_and(|n| n > 0.0),
        "the second dispatcher took partitions: {second}"
    );
}
