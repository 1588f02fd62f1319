//! Health that tells the truth (issue 18): a send wedged past its claim's lease (here, by a
//! store that does not take writes) turns the dispatcher's `/readyz` red and shows in the
//! oldest-send gauge, while `/healthz` stays green (restarting would not mend the store); it
//! turns ready again once the send is recorded.

use std::time::Duration;

use serde_json::json;

use hookstream_e2e::{Pipeline, Receiver, Service, eventually, sample};

const SETTLE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_wedged_past_its_lease_turns_readyz_red_until_it_is_recorded() {
    let pipeline = Pipeline::start(&[
        ("HOOKSTREAM_REQUEST_TIMEOUT", "1s"),
        ("HOOKSTREAM_CLAIM_LEASE", "2s"),
    ])
    .await;
    let receiver = Receiver::start().await;
    pipeline
        .api
        .create_endpoint("acme", &receiver.url, &[])
        .await;
    assert_eq!(pipeline.health_of(Service::Dispatcher).await.0, 200);

    // The request goes out and is never answered: it times out after 1 s, and its outcome
    // then has to be written to a store that another process keeps locked.
    receiver.hold();
    let event = pipeline
        .api
        .send_event("acme", "order.created", json!({"n": 1}), None)
        .await;
    assert_eq!(event.status, 202);
    receiver.wait_for(1, SETTLE).await;
    let store = rusqlite::Connection::open(pipeline.store_path()).expect("the store file");
    store
        .execute_batch("BEGIN EXCLUSIVE")
        .expect("the store's write lock");

    let body = eventually("/readyz to fail", SETTLE, || async {
        let (status, body) = pipeline.readiness_of(Service::Dispatcher).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("send"), "{body}");
    assert_eq!(
        pipeline.health_of(Service::Dispatcher).await.0,
        200,
        "the process itself is fine: no restart"
    );
    // The gauge is set every second.
    eventually("the gauge to show the wedged send", SETTLE, || async {
        let metrics = pipeline.dispatcher_metrics().await;
        (sample(&metrics, "hookstream_oldest_send_seconds")? > 2.0).then_some(())
    })
    .await;

    store.execute_batch("ROLLBACK").expect("releasing the lock");
    eventually("/readyz to pass again", SETTLE, || async {
        (pipeline.readiness_of(Service::Dispatcher).await.0 == 200).then_some(())
    })
    .await;
    receiver.release();
}
